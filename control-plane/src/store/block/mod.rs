//! Log blocks: thousands of messages stored as one zstd-compressed columnar body, with
//! an index row (time range, severity and facility masks, Bloom filters over hosts, apps,
//! source addresses and message words) that lets a query skip the block unread.
//!
//! Body layout, format version 6 (all integers LEB128 varints unless noted; "ref" is 0
//! for none or 1 + an index into the dictionary):
//!
//! ```text
//! u8 version | count | dictionary: n, then n × (len, bytes) | base received_ns (zigzag)
//! count × received_ns delta from the previous row (zigzag)
//! count × source address (dictionary index), by host
//! count × source port
//! count × listener (dictionary index) | count × format (dictionary index), by host
//! count × u8 facility | count × u8 severity
//! count × version (255 = none), by host | count × event time digits (255 = none), by host
//! ref hostname, in byte planes (`planes.rs`) | count × ref app
//! procid (`fields.rs`), in byte planes | count × ref msgid | parse error | frame flag
//! u8 event time reference | per present event time: its distance from it (`fields.rs`)
//! count × structured-data length (0 = none, else len + 1)
//! count × frame of a flagged row: 0 = none, 2 × len + 1 = the whole frame,
//!   2 × (len + 1) = the part of the frame before the row's message (which it ends with)
//! structured data bytes | frame bytes
//! messages: words and separators as codes into a ranked piece dictionary, IPv4
//!   addresses as four bytes (`words.rs`)
//! ```
//!
//! "By host" (`write_by_host`): 0 where the row's value is that of the last row with the
//! same hostname ref (for a host's first row, the previous row's), else the value + 1.
//!
//! Columns of one kind sit together and the text comes last, so zstd sees similar bytes
//! side by side; that, and the dictionaries, is most of the compression. Each section
//! (each line above, and each part of the message column) starts a zstd block of its own
//! inside the one frame, so that each is coded with tables fitted to its bytes
//! (`sections.rs`, ADR 0053).
//!
//! Older versions, all still read (`tests/fixtures/log_block_v*.zst` keep one of each
//! under test); only version 6 is written (ADR 0057):
//! - Version 5 (ADR 0054) wrote the hostname refs and process ids as varints, the octets
//!   and dots of an IPv4 address in a message as pieces, and piece k as code k + 1
//!   (`words.rs`).
//! - Version 4 (ADR 0049) wrote the format as its dictionary index, the version and the
//!   event time digits as one byte a row, and right after the digits the event times,
//!   each measured from the previous one of its precision (no reference byte); its source
//!   column was by host, except that a host's first row always had its value.
//! - Version 3 (ADR 0048) was version 4 with the source column as dictionary indexes.
//! - Version 2 (ADR 0036) wrote each event time as its zigzag distance in nanoseconds
//!   from the row's receive time, the process id as a ref like the other text fields, a
//!   flagged row's whole frame (its length as len + 1, 0 = none), and every separator of a
//!   message as a code (`words.rs`).
//! - Version 1 is version 2 up to the refs; then come count × structured-data length,
//!   count × message length, count × raw length, and the structured data, message and raw
//!   bytes.

mod cut;
mod fields;
pub mod filter;
mod planes;
mod reencode;
mod sections;
mod varint;
mod words;

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use hashbrown::HashTable;
use killkrill_dataplane::batch::{LogEntry, TextField};
use killkrill_parsers::framing::FrameFlag;
use killkrill_parsers::syslog::SyslogFormat;
use rustc_hash::FxHashMap;
use thiserror::Error;

use fields::{EventReference, EventTimeReader, EventTimeWriter, ProcidValue};
#[cfg(test)]
use reencode::MessagesFrom;
pub use reencode::RowRef;
use varint::{Reader, put_i64, put_u64};

/// The body format written by this build.
pub const FORMAT_VERSION: u8 = 6;
/// The oldest body format this build still reads.
pub const OLDEST_FORMAT_VERSION: u8 = 1;
/// Row numbers live in the low 16 bits of a message id.
pub const MAX_ROWS: usize = 1 << 16;
/// A decompressed body larger than this is refused as damaged (a block holds at most
/// `MAX_ROWS` frames of at most 64 KiB each only in theory; real ones are a few MiB).
const MAX_BODY_BYTES: usize = 1 << 30;
const NONE_U8: u8 = u8::MAX;
const ROLE_HOST: u8 = 1;
const ROLE_APP: u8 = 2;
/// Severity mask bit for rows without a severity (bits 0..=7 are the severities).
pub const SEVERITY_NONE_BIT: u32 = 8;
/// Facility mask bit for rows without a facility (bits 0..=23 are the facilities).
pub const FACILITY_NONE_BIT: u32 = 24;

#[derive(Debug, Error)]
pub enum BlockError {
    #[error("damaged log block: {0}")]
    Damaged(&'static str),
    #[error("log block format {0} is newer than this build understands")]
    UnknownVersion(u8),
    #[error("log block has more than {MAX_ROWS} messages")]
    TooManyRows,
    #[error("compression failed: {0}")]
    Compression(#[source] std::io::Error),
}

/// What the index row of a block holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    /// Random 128-bit id, hex: the same block delivered twice is stored once.
    pub block_id: String,
    pub format_version: u8,
    pub min_received_ns: i64,
    pub max_received_ns: i64,
    pub message_count: u32,
    pub severity_mask: u32,
    pub facility_mask: u32,
    pub parse_error_count: u32,
    /// Bytes of the frames as received.
    pub raw_bytes: u64,
    pub field_filter: Vec<u8>,
    pub token_filter: Vec<u8>,
}

#[derive(Debug)]
pub struct EncodedBlock {
    pub summary: BlockSummary,
    /// The zstd-compressed body.
    pub payload: Vec<u8>,
}

/// Builds blocks, keeping its buffers and compression context between blocks.
pub struct BlockEncoder {
    compressor: sections::SectionCompressor,
    /// Where each section of `body` ends: the compressor starts a zstd block there.
    section_ends: Vec<usize>,
    /// Dictionary lookup: each entry's hash and index, compared against the arena.
    dictionary: HashTable<(u64, u32)>,
    /// Every dictionary value, back to back, and where each one lies.
    dictionary_bytes: Vec<u8>,
    dictionary_order: Vec<Range<usize>>,
    /// Per dictionary entry: which field filter keys it has been added as.
    dictionary_roles: Vec<u8>,
    body: Vec<u8>,
    columns: Columns,
    /// Dictionary index of each source address seen in this block.
    addresses: FxHashMap<IpAddr, u32>,
    field_filter: filter::FilterBuilder,
    token_filter: filter::FilterBuilder,
    address_text: String,
    messages: words::MessageCoder,
    /// A message of a decoded block being encoded again (`encode_rows`).
    message_scratch: Vec<u8>,
}

#[derive(Default)]
struct Columns {
    received: Vec<u8>,
    /// Per row: the source address's dictionary index, and the hostname ref (0 for none,
    /// else index + 1); the source column is written from both (`write_by_host`).
    source_rows: Vec<u32>,
    host_rows: Vec<u32>,
    /// Scratch of `write_by_host`: per hostname ref, the value of its last row.
    last_by_host: Vec<u32>,
    port: Vec<u8>,
    listener: Vec<u8>,
    /// Per row: the format's dictionary index (written by host, like the source, the
    /// version and the event time digits).
    format_rows: Vec<u32>,
    facility: Vec<u8>,
    severity: Vec<u8>,
    version: Vec<u8>,
    event_digits: Vec<u8>,
    event_times: EventTimeWriter,
    /// Varints of the app, msgid, parse error and frame flag refs, by `RefColumn`. The
    /// hostname's and process id's entries stay empty: those columns are written as byte
    /// planes, from `host_rows` and from `procid_values` (`fields::procid_value`).
    refs: [Vec<u8>; 6],
    procid_values: Vec<u64>,
    /// Structured data, then the raw frame.
    lengths: [Vec<u8>; 2],
    texts: [Vec<u8>; 2],
}

/// Writes a column by host: 0 where a row's value is its host's last row's (for the first
/// row of a host, the previous row's), else the value + 1. A host nearly always sends from
/// one address, in one format and syslog version, with one timestamp precision, so these
/// columns all but vanish (ADR 0049, 0054); where nearly every row has a host of its own
/// (text that did not parse, read as a hostname), they are as small as a column that
/// repeats the previous row.
fn write_by_host(
    body: &mut Vec<u8>,
    values: impl Iterator<Item = u32>,
    host_rows: &[u32],
    last_by_host: &mut Vec<u32>,
    dictionary_len: usize,
) {
    last_by_host.clear();
    last_by_host.resize(dictionary_len + 1, u32::MAX);
    let mut previous = u32::MAX;
    for (value, &host) in values.zip(host_rows) {
        let last = &mut last_by_host[host as usize];
        let reference = if *last == u32::MAX { previous } else { *last };
        put_u64(body, if reference == value { 0 } else { u64::from(value) + 1 });
        *last = value;
        previous = value;
    }
}

/// What the first row of a host repeats in a column written by host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FirstOfHost {
    /// Nothing: its value is always written (format 4's source column).
    Written,
    /// The previous row's value (format 5).
    RepeatsPreviousRow,
}

/// Reads back in place a column [`write_by_host`] wrote: each row's value. `last_by_host`
/// is scratch, kept across the columns of a block.
fn resolve_by_host(
    values: &mut [u64],
    host_rows: &[u32],
    first_of_host: FirstOfHost,
    last_by_host: &mut Vec<u64>,
    dictionary_len: usize,
) -> Result<(), BlockError> {
    // No value is u64::MAX: the written value + 1 would not fit.
    last_by_host.clear();
    last_by_host.resize(dictionary_len + 1, u64::MAX);
    let mut previous = u64::MAX;
    for (value, &host) in values.iter_mut().zip(host_rows) {
        let last = last_by_host.get_mut(host as usize).ok_or(BlockError::Damaged("hostname ref"))?;
        if *value == 0 {
            let reference = match first_of_host {
                FirstOfHost::RepeatsPreviousRow if *last == u64::MAX => previous,
                _ => *last,
            };
            if reference == u64::MAX {
                return Err(BlockError::Damaged("by-host column: nothing to repeat"));
            }
            *value = reference;
        } else {
            *value -= 1;
        }
        *last = *value;
        previous = *value;
    }
    Ok(())
}

impl Columns {
    fn clear(&mut self) {
        for column in [
            &mut self.received,
            &mut self.port,
            &mut self.listener,
            &mut self.facility,
            &mut self.severity,
            &mut self.version,
            &mut self.event_digits,
        ] {
            column.clear();
        }
        self.refs.iter_mut().chain(&mut self.lengths).chain(&mut self.texts).for_each(Vec::clear);
        self.source_rows.clear();
        self.host_rows.clear();
        self.procid_values.clear();
        self.format_rows.clear();
        self.event_times.clear();
    }

    /// The frame of a flagged row. When the frame ends with the row's message (nearly
    /// always), only the part before it is kept: the message is stored anyway.
    fn push_raw(&mut self, raw: Option<&[u8]>, message: &[u8]) {
        let (value, bytes) = match raw {
            None => (0, &[][..]),
            Some(raw) => match raw.strip_suffix(message) {
                Some(prefix) if !message.is_empty() => (2 * (prefix.len() as u64 + 1), prefix),
                _ => (2 * raw.len() as u64 + 1, raw),
            },
        };
        put_u64(&mut self.lengths[1], value);
        self.texts[1].extend_from_slice(bytes);
    }

    /// A row's event time (Unix nanoseconds and fractional digits), if it has one.
    fn push_event(&mut self, event: Option<(i64, u8)>, received: i64) {
        match event {
            Some((nanos, digits)) => {
                let digits = digits.min(9);
                self.event_digits.push(digits);
                self.event_times.put(nanos, digits, received);
            }
            None => self.event_digits.push(NONE_U8),
        }
    }
}

pub fn format_label(format: SyslogFormat) -> &'static str {
    match format {
        SyslogFormat::Rfc5424 => "rfc5424",
        SyslogFormat::Rfc3164 => "rfc3164",
        SyslogFormat::Unknown => "unknown",
    }
}

fn format_slot(format: SyslogFormat) -> usize {
    match format {
        SyslogFormat::Rfc5424 => 0,
        SyslogFormat::Rfc3164 => 1,
        SyslogFormat::Unknown => 2,
    }
}

pub fn frame_flag_label(flag: FrameFlag) -> &'static str {
    match flag {
        FrameFlag::Truncated => "truncated",
        FrameFlag::Incomplete => "incomplete",
        FrameFlag::FramingError => "framing_error",
    }
}

impl BlockEncoder {
    /// `level` is the zstd level (1 is fast and already compresses syslog well).
    pub fn new(level: i32) -> Result<Self, BlockError> {
        Ok(Self {
            compressor: sections::SectionCompressor::new(level).map_err(BlockError::Compression)?,
            section_ends: Vec::new(),
            dictionary: HashTable::new(),
            dictionary_bytes: Vec::new(),
            dictionary_order: Vec::new(),
            dictionary_roles: Vec::new(),
            body: Vec::new(),
            columns: Columns::default(),
            addresses: FxHashMap::default(),
            field_filter: filter::FilterBuilder::new(filter::FIELD_BITS_PER_KEY),
            token_filter: filter::FilterBuilder::default(),
            address_text: String::new(),
            messages: words::MessageCoder::default(),
            message_scratch: Vec::new(),
        })
    }

    fn intern(&mut self, value: &[u8]) -> u32 {
        let hash = xxhash_rust::xxh3::xxh3_64(value);
        let (bytes, order) = (&self.dictionary_bytes, &self.dictionary_order);
        // The stored hash first: the bytes are read only for the entry that matches.
        let equal =
            |&(stored, index): &(u64, u32)| stored == hash && bytes[order[index as usize].clone()] == *value;
        if let Some(&(_, index)) = self.dictionary.find(hash, equal) {
            return index;
        }
        let index = self.dictionary_order.len() as u32;
        let start = self.dictionary_bytes.len();
        self.dictionary_bytes.extend_from_slice(value);
        self.dictionary_order.push(start..self.dictionary_bytes.len());
        self.dictionary_roles.push(0);
        self.dictionary.insert_unique(hash, (hash, index), |&(stored, _)| stored);
        index
    }

    /// The dictionary index of a source address, formatting and hashing each address
    /// once per block rather than once per message.
    fn address_index(&mut self, ip: IpAddr) -> u32 {
        if let Some(&index) = self.addresses.get(&ip) {
            return index;
        }
        self.address_text.clear();
        {
            use std::fmt::Write as _;
            let _ = write!(self.address_text, "{ip}");
        }
        let text = std::mem::take(&mut self.address_text);
        let index = self.intern(text.as_bytes());
        self.field_filter.insert(filter::field_hash(filter::FIELD_SOURCE, text.as_bytes()));
        self.address_text = text;
        self.addresses.insert(ip, index);
        index
    }

    /// Writes a reference to `value` in `column` (the hostname's goes to `host_rows`, the
    /// caller's); returns its dictionary index.
    fn put_ref(&mut self, column: usize, value: Option<&[u8]>) -> Option<u32> {
        let index = value.map(|value| self.intern(value));
        if column != RefColumn::Hostname as usize {
            put_u64(&mut self.columns.refs[column], index.map_or(0, |index| u64::from(index) + 1));
        }
        index
    }

    /// Writes a row's process id: a decimal as its number, anything else by reference.
    fn put_procid(&mut self, procid: Option<&[u8]>) {
        let value = match procid {
            None => ProcidValue::None,
            Some(text) => match fields::decimal(text) {
                Some(number) => ProcidValue::Decimal(number),
                None => ProcidValue::Entry(self.intern(text)),
            },
        };
        self.columns.procid_values.push(fields::procid_value(value));
    }

    /// Adds a host or app to the field filter the first time it is seen in that role.
    fn key_field(&mut self, index: u32, role: u8, kind: u8, value: &[u8]) {
        let roles = &mut self.dictionary_roles[index as usize];
        if *roles & role == 0 {
            *roles |= role;
            self.field_filter.insert(filter::field_hash(kind, value));
        }
    }

    /// Encodes and compresses `entries` (at most [`MAX_ROWS`]) into one block.
    pub fn encode<'a>(
        &mut self,
        entries: impl IntoIterator<Item = LogEntry<'a>>,
    ) -> Result<EncodedBlock, BlockError> {
        self.begin_block();
        let mut count = 0usize;
        let mut min_received = i64::MAX;
        let mut max_received = i64::MIN;
        let mut previous_received: Option<i64> = None;
        let mut base_received = 0i64;
        let mut severity_mask = 0u32;
        let mut facility_mask = 0u32;
        let mut parse_error_count = 0u32;
        let mut raw_bytes = 0u64;
        let mut listener_seen = None;
        let mut format_seen: [Option<u32>; 3] = [None; 3];
        for entry in entries {
            count += 1;
            if count > MAX_ROWS {
                return Err(BlockError::TooManyRows);
            }
            let received = i64::try_from(entry.received_at().as_nanosecond()).unwrap_or(i64::MAX);
            min_received = min_received.min(received);
            max_received = max_received.max(received);
            let previous = *previous_received.get_or_insert_with(|| {
                base_received = received;
                received
            });
            put_i64(&mut self.columns.received, received.wrapping_sub(previous));
            previous_received = Some(received);

            let source = entry.source();
            let source_index = self.address_index(source.ip());
            self.columns.source_rows.push(source_index);
            put_u64(&mut self.columns.port, u64::from(source.port()));
            // A handful of distinct values per block: remembered by value, not hashed per row.
            let listener = match listener_seen {
                Some((kind, index)) if kind == entry.listener() => index,
                _ => {
                    let index = self.intern(entry.listener().label().as_bytes());
                    listener_seen = Some((entry.listener(), index));
                    index
                }
            };
            put_u64(&mut self.columns.listener, u64::from(listener));
            let format = match format_seen[format_slot(entry.format())] {
                Some(index) => index,
                None => {
                    let index = self.intern(format_label(entry.format()).as_bytes());
                    format_seen[format_slot(entry.format())] = Some(index);
                    index
                }
            };
            self.columns.format_rows.push(format);

            let facility = entry.facility();
            let severity = entry.severity();
            self.columns.facility.push(facility.unwrap_or(NONE_U8));
            self.columns.severity.push(severity.unwrap_or(NONE_U8));
            self.columns.version.push(entry.version().unwrap_or(NONE_U8));
            severity_mask |= 1 << severity.map_or(SEVERITY_NONE_BIT, |s| u32::from(s.min(7)));
            facility_mask |= 1 << facility.map_or(FACILITY_NONE_BIT, |f| u32::from(f.min(23)));
            let event =
                entry.timestamp().map(|timestamp| (timestamp.unix_nanos, timestamp.fractional_digits));
            self.columns.push_event(event, received);

            // Bytes, not `&str`: the parser made them UTF-8, and checking again was 2% of encoding.
            let hostname = entry.text_bytes(TextField::Hostname);
            let app_name = entry.text_bytes(TextField::AppName);
            let host_index = self.put_ref(0, hostname);
            self.columns.host_rows.push(host_index.map_or(0, |index| index + 1));
            let app_index = self.put_ref(1, app_name);
            // Filter keys are hashed once per distinct host or app, not once per message.
            if let (Some(index), Some(host)) = (host_index, hostname) {
                self.key_field(index, ROLE_HOST, filter::FIELD_HOST, host);
            }
            if let (Some(index), Some(app)) = (app_index, app_name) {
                self.key_field(index, ROLE_APP, filter::FIELD_APP, app);
            }
            self.put_procid(entry.text_bytes(TextField::Procid));
            self.put_ref(3, entry.text_bytes(TextField::Msgid));
            self.put_ref(4, entry.parse_error().map(|error| error.reason().as_bytes()));
            self.put_ref(5, entry.frame_flag().map(|flag| frame_flag_label(flag).as_bytes()));

            let flagged = entry.parse_error().is_some() || entry.frame_flag().is_some();
            parse_error_count += u32::from(flagged);
            let structured_data = entry.text_bytes(TextField::StructuredData);
            let message = entry.message();
            let raw = entry.raw();
            raw_bytes += raw.len() as u64;
            put_u64(&mut self.columns.lengths[0], structured_data.map_or(0, |sd| sd.len() as u64 + 1));
            if let Some(sd) = structured_data {
                self.columns.texts[0].extend_from_slice(sd);
            }
            self.columns.push_raw(flagged.then_some(raw), message);
            self.messages.push(message, &mut self.token_filter);
        }
        self.finish(BlockTotals {
            count,
            base_received,
            min_received,
            max_received,
            severity_mask,
            facility_mask,
            parse_error_count,
            raw_bytes,
        })
    }
}

/// A decompressed block, column by column.
#[derive(Debug)]
pub struct DecodedBlock {
    format_version: u8,
    body: Vec<u8>,
    dictionary: Vec<Range<usize>>,
    pub received_ns: Vec<i64>,
    source: Vec<u32>,
    port: Vec<u16>,
    listener: Vec<u32>,
    format: Vec<u32>,
    facility: Vec<u8>,
    severity: Vec<u8>,
    version: Vec<u8>,
    event: Vec<Option<(i64, u8)>>,
    refs: [Vec<u32>; 6],
    structured_data: Vec<Option<Range<usize>>>,
    messages: MessageColumn,
    raw: Vec<Option<Range<usize>>>,
    /// Parsed source addresses, one per dictionary entry that is an address.
    addresses: Vec<Option<IpAddr>>,
}

/// The messages of a decoded block.
#[derive(Debug)]
enum MessageColumn {
    /// Formats 1 and 2: every message's text, back to back, and where each lies.
    Text(Vec<u8>, Vec<Range<usize>>),
    /// Formats 3 and 4: codes into pieces of the body, rendered row by row when asked for.
    Coded(words::CodedMessages),
}

/// Which text field a `refs` column holds.
#[derive(Clone, Copy)]
pub enum RefColumn {
    Hostname = 0,
    AppName = 1,
    Procid = 2,
    Msgid = 3,
    ParseError = 4,
    FrameFlag = 5,
}

/// What `encode` and compaction's `encode_rows` gather over a block's rows besides its
/// columns and dictionary: the rest of the body's head and of the index row.
struct BlockTotals {
    count: usize,
    base_received: i64,
    min_received: i64,
    max_received: i64,
    severity_mask: u32,
    facility_mask: u32,
    parse_error_count: u32,
    raw_bytes: u64,
}

impl BlockEncoder {
    /// Forgets the previous block's dictionary, columns, filters and pieces (keeping
    /// their buffers): the start of both `encode` and `encode_rows`.
    fn begin_block(&mut self) {
        self.dictionary.clear();
        self.dictionary_bytes.clear();
        self.dictionary_order.clear();
        self.dictionary_roles.clear();
        self.columns.clear();
        self.addresses.clear();
        self.field_filter.clear();
        self.token_filter.clear();
        self.messages.clear();
    }

    /// Lays out the body from the gathered columns, compresses it and makes the index row:
    /// one writer of the format for both ways a block is built.
    fn finish(&mut self, totals: BlockTotals) -> Result<EncodedBlock, BlockError> {
        let (min_received, max_received) =
            if totals.count == 0 { (0, 0) } else { (totals.min_received, totals.max_received) };
        let body = &mut self.body;
        let ends = &mut self.section_ends;
        body.clear();
        ends.clear();
        body.push(FORMAT_VERSION);
        put_u64(body, totals.count as u64);
        put_u64(body, self.dictionary_order.len() as u64);
        for range in &self.dictionary_order {
            put_u64(body, range.len() as u64);
            body.extend_from_slice(&self.dictionary_bytes[range.clone()]);
        }
        ends.push(body.len());
        put_i64(body, totals.base_received);
        body.extend_from_slice(&self.columns.received);
        ends.push(body.len());
        let columns = &mut self.columns;
        let hosts = self.dictionary_order.len();
        let by_host = |body: &mut Vec<u8>, values: &mut dyn Iterator<Item = u32>, last: &mut Vec<u32>| {
            write_by_host(body, values, &columns.host_rows, last, hosts)
        };
        let mut last = std::mem::take(&mut columns.last_by_host);
        by_host(body, &mut columns.source_rows.iter().copied(), &mut last);
        ends.push(body.len());
        for column in [&columns.port, &columns.listener] {
            body.extend_from_slice(column);
            ends.push(body.len());
        }
        by_host(body, &mut columns.format_rows.iter().copied(), &mut last);
        ends.push(body.len());
        for column in [&columns.facility, &columns.severity] {
            body.extend_from_slice(column);
            ends.push(body.len());
        }
        for column in [&columns.version, &columns.event_digits] {
            by_host(body, &mut column.iter().map(|&value| u32::from(value)), &mut last);
            ends.push(body.len());
        }
        for (column, varints) in columns.refs.iter().enumerate() {
            if column == RefColumn::Hostname as usize {
                planes::put_planes(body, &columns.host_rows, ends);
            } else if column == RefColumn::Procid as usize {
                planes::put_planes(body, &columns.procid_values, ends);
            } else {
                body.extend_from_slice(varints);
                ends.push(body.len());
            }
        }
        // After the hostname refs: the reader needs each row's digits, which it resolves by host.
        columns.event_times.write(body);
        ends.push(body.len());
        for column in columns.lengths.iter().chain(&columns.texts) {
            body.extend_from_slice(column);
            ends.push(body.len());
        }
        columns.last_by_host = last;
        self.messages.write(body, ends);
        let payload = self.compressor.compress(body, ends).map_err(BlockError::Compression)?;
        Ok(EncodedBlock {
            summary: BlockSummary {
                block_id: format!("{:032x}", rand::random::<u128>()),
                format_version: FORMAT_VERSION,
                min_received_ns: min_received,
                max_received_ns: max_received,
                message_count: totals.count as u32,
                severity_mask: totals.severity_mask,
                facility_mask: totals.facility_mask,
                parse_error_count: totals.parse_error_count,
                raw_bytes: totals.raw_bytes,
                field_filter: self.field_filter.finish(),
                token_filter: self.token_filter.finish(),
            },
            payload,
        })
    }
}

pub fn decode(payload: &[u8]) -> Result<DecodedBlock, BlockError> {
    let size = zstd::zstd_safe::get_frame_content_size(payload)
        .ok()
        .flatten()
        .ok_or(BlockError::Damaged("compressed frame has no size"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&size| size <= MAX_BODY_BYTES)
        .ok_or(BlockError::Damaged("body larger than any block"))?;
    let body = zstd::bulk::decompress(payload, size).map_err(|_| BlockError::Damaged("zstd frame"))?;
    parse_body(body)
}

fn parse_body(body: Vec<u8>) -> Result<DecodedBlock, BlockError> {
    let mut reader = Reader::new(&body);
    let format_version = reader.u8()?;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&format_version) {
        return Err(BlockError::UnknownVersion(format_version));
    }
    let count = reader.len()?;
    if count > MAX_ROWS {
        return Err(BlockError::TooManyRows);
    }
    let dictionary_len = reader.len()?;
    let mut dictionary = Vec::with_capacity(dictionary_len);
    for _ in 0..dictionary_len {
        let len = reader.len()?;
        let start = reader.position();
        reader.take(len)?;
        dictionary.push(start..start + len);
    }
    let dictionary_index = |value: u64| -> Result<u32, BlockError> {
        usize::try_from(value)
            .ok()
            .filter(|&index| index < dictionary.len())
            .map(|index| index as u32)
            .ok_or(BlockError::Damaged("dictionary index out of range"))
    };
    let mut received_ns = Vec::with_capacity(count);
    let mut current = reader.i64()?;
    for _ in 0..count {
        current = current.wrapping_add(reader.i64()?);
        received_ns.push(current);
    }
    // Resolved once the hostname refs are read (formats 4 and 5 write it by host).
    let mut source_values = Vec::with_capacity(count);
    for _ in 0..count {
        source_values.push(reader.u64()?);
    }
    let mut port = Vec::with_capacity(count);
    for _ in 0..count {
        port.push(u16::try_from(reader.u64()?).map_err(|_| BlockError::Damaged("port"))?);
    }
    let mut listener = Vec::with_capacity(count);
    for _ in 0..count {
        listener.push(dictionary_index(reader.u64()?)?);
    }
    // Format 5 writes the format, the version and the event time digits by host: they are
    // resolved, and the event times read, once the hostname refs are.
    let by_host = format_version >= 5;
    let mut format_values = Vec::with_capacity(count);
    for _ in 0..count {
        format_values.push(reader.u64()?);
    }
    let facility = reader.take(count)?.to_vec();
    let severity = reader.take(count)?.to_vec();
    let (mut version_values, mut digit_values) = (Vec::new(), Vec::new());
    let (mut version, mut digits) = (Vec::new(), Vec::new());
    if by_host {
        for values in [&mut version_values, &mut digit_values] {
            values.reserve(count);
            for _ in 0..count {
                values.push(reader.u64()?);
            }
        }
    } else {
        version = reader.take(count)?.to_vec();
        digits = reader.take(count)?.to_vec();
    }
    let mut event = Vec::new();
    if !by_host {
        event = read_event_times(&mut reader, format_version, &digits, &received_ns)?;
    }
    let mut refs: [Vec<u32>; 6] = Default::default();
    // Rows whose process id is a decimal (format 3): entered in the dictionary below.
    let mut decimal_procids = Vec::new();
    for (column, values) in refs.iter_mut().enumerate() {
        values.reserve(count);
        // Format 6 writes the hostname and process id columns as byte planes.
        let in_planes = format_version >= 6
            && (column == RefColumn::Hostname as usize || column == RefColumn::Procid as usize);
        let plane_values = if in_planes { planes::read_planes(&mut reader, count)? } else { Vec::new() };
        for row in 0..count {
            let value = match plane_values.get(row) {
                Some(&value) => value,
                None => reader.u64()?,
            };
            if format_version >= 3 && column == RefColumn::Procid as usize {
                values.push(match fields::procid_from_value(value)? {
                    ProcidValue::None => 0,
                    ProcidValue::Entry(index) => dictionary_index(u64::from(index))? + 1,
                    ProcidValue::Decimal(number) => {
                        decimal_procids.push((row, number));
                        0
                    }
                });
                continue;
            }
            values.push(if value == 0 { 0 } else { dictionary_index(value - 1)? + 1 });
        }
    }
    let host_rows = &refs[RefColumn::Hostname as usize];
    let mut last_by_host = Vec::new();
    let first_of_host = if by_host { FirstOfHost::RepeatsPreviousRow } else { FirstOfHost::Written };
    let mut resolve = |values: &mut [u64]| {
        resolve_by_host(values, host_rows, first_of_host, &mut last_by_host, dictionary.len())
    };
    if format_version >= 4 {
        resolve(&mut source_values)?;
    }
    let source =
        source_values.iter().map(|&value| dictionary_index(value)).collect::<Result<Vec<u32>, _>>()?;
    if by_host {
        resolve(&mut format_values)?;
        let byte = |&value: &u64| u8::try_from(value).map_err(|_| BlockError::Damaged("by-host byte column"));
        resolve(&mut version_values)?;
        version = version_values.iter().map(byte).collect::<Result<_, _>>()?;
        resolve(&mut digit_values)?;
        digits = digit_values.iter().map(byte).collect::<Result<_, _>>()?;
        event = read_event_times(&mut reader, format_version, &digits, &received_ns)?;
    }
    let format =
        format_values.iter().map(|&value| dictionary_index(value)).collect::<Result<Vec<u32>, _>>()?;
    let optional_ranges = |lengths: &[usize], reader: &mut Reader<'_>| {
        let mut ranges = Vec::with_capacity(lengths.len());
        for &len in lengths {
            ranges.push(if len == 0 {
                None
            } else {
                let start = reader.position();
                reader.take(len - 1)?;
                Some(start..start + len - 1)
            });
        }
        Ok::<_, BlockError>(ranges)
    };
    let (structured_data, messages, mut raw);
    // Rows whose frame is stored as the part before their message (format 3).
    let mut raw_prefixes = Vec::new();
    if format_version == 1 {
        let sd_lengths = reader.lengths(count)?;
        let message_lengths = reader.lengths(count)?;
        let raw_lengths = reader.lengths(count)?;
        structured_data = optional_ranges(&sd_lengths, &mut reader)?;
        let mut ranges = Vec::with_capacity(count);
        let mut text = Vec::new();
        for len in message_lengths {
            let start = text.len();
            text.extend_from_slice(reader.take(len)?);
            ranges.push(start..text.len());
        }
        messages = MessageColumn::Text(text, ranges);
        raw = optional_ranges(&raw_lengths, &mut reader)?;
    } else if format_version == 2 {
        let sd_lengths = reader.lengths(count)?;
        let raw_lengths = reader.lengths(count)?;
        structured_data = optional_ranges(&sd_lengths, &mut reader)?;
        raw = optional_ranges(&raw_lengths, &mut reader)?;
        let (text, ranges) = words::read_v2(&mut reader, count)?;
        messages = MessageColumn::Text(text, ranges);
    } else {
        let sd_lengths = reader.lengths(count)?;
        // 0: none; 2 × len + 1: the whole frame; 2 × (len + 1): the part before the message.
        let mut raw_lengths = Vec::with_capacity(count);
        for row in 0..count {
            let value = usize::try_from(reader.u64()?).map_err(|_| BlockError::Damaged("frame length"))?;
            raw_lengths.push(match value {
                0 => 0,
                whole if whole & 1 == 1 => (whole >> 1) + 1,
                prefix => {
                    raw_prefixes.push(row);
                    prefix >> 1
                }
            });
        }
        structured_data = optional_ranges(&sd_lengths, &mut reader)?;
        raw = optional_ranges(&raw_lengths, &mut reader)?;
        messages = MessageColumn::Coded(words::read(&mut reader, count, format_version)?);
    }
    if reader.position() != body.len() {
        return Err(BlockError::Damaged("trailing bytes"));
    }
    let addresses = dictionary
        .iter()
        .map(|range| std::str::from_utf8(&body[range.clone()]).ok().and_then(|text| text.parse().ok()))
        .collect();
    // Decimal process ids become dictionary entries after the stored ones, once per
    // number, so that rows read them (and compaction copies them) as any other text.
    // Sized up front: where every row has a process id of its own, growing the map and
    // formatting through `fmt` were a tenth of decoding a merged block (perf, ADR 0057).
    let mut body = body;
    let mut decimal_entries: FxHashMap<u64, u32> =
        FxHashMap::with_capacity_and_hasher(decimal_procids.len(), Default::default());
    body.reserve(decimal_procids.len() * 6);
    dictionary.reserve(decimal_procids.len());
    let mut digits = itoa::Buffer::new();
    for (row, number) in decimal_procids {
        let index = *decimal_entries.entry(number).or_insert_with(|| {
            let start = body.len();
            body.extend_from_slice(digits.format(number).as_bytes());
            dictionary.push(start..body.len());
            dictionary.len() as u32 - 1
        });
        refs[RefColumn::Procid as usize][row] = index + 1;
    }
    // A frame stored as the part before its message gets its message back (rendered
    // from the body, so appended after the rendering: the body only grows).
    let mut message = Vec::new();
    for row in raw_prefixes {
        if let (Some(prefix), MessageColumn::Coded(coded)) = (raw[row].clone(), &messages) {
            message.clear();
            coded.render(&body, row, &mut message);
            let start = body.len();
            body.extend_from_within(prefix);
            body.extend_from_slice(&message);
            raw[row] = Some(start..body.len());
        }
    }
    Ok(DecodedBlock {
        format_version,
        dictionary,
        received_ns,
        source,
        port,
        listener,
        format,
        facility,
        severity,
        version,
        event,
        refs,
        structured_data,
        messages,
        raw,
        addresses,
        body,
    })
}

/// The event times of a block's rows, from their digits column (`fields.rs`).
fn read_event_times(
    reader: &mut Reader<'_>,
    format_version: u8,
    digits: &[u8],
    received_ns: &[i64],
) -> Result<Vec<Option<(i64, u8)>>, BlockError> {
    let mut event_times = if format_version >= 5 {
        EventTimeReader::new(EventReference::from_byte(reader.u8()?)?)
    } else {
        EventTimeReader::default()
    };
    let mut event = Vec::with_capacity(digits.len());
    for (&digits, &received) in digits.iter().zip(received_ns) {
        event.push(match digits {
            NONE_U8 => None,
            _ if format_version >= 3 => Some((event_times.read(reader, digits, received)?, digits)),
            _ => Some((received.wrapping_add(reader.i64()?), digits)),
        });
    }
    Ok(event)
}

fn optional_u8(value: u8) -> Option<u8> {
    (value != NONE_U8).then_some(value)
}

impl DecodedBlock {
    /// The body format the block was written in.
    pub fn format_version(&self) -> u8 {
        self.format_version
    }

    pub fn len(&self) -> usize {
        self.received_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received_ns.is_empty()
    }

    fn entry(&self, index: u32) -> &[u8] {
        &self.body[self.dictionary[index as usize].clone()]
    }

    fn entry_text(&self, index: u32) -> &str {
        std::str::from_utf8(self.entry(index)).unwrap_or("")
    }

    pub fn source_ip(&self, row: usize) -> Option<IpAddr> {
        self.addresses[self.source[row] as usize]
    }

    pub fn source(&self, row: usize) -> String {
        match self.source_ip(row) {
            Some(ip) => SocketAddr::new(ip, self.port[row]).to_string(),
            None => self.entry_text(self.source[row]).to_owned(),
        }
    }

    pub fn listener(&self, row: usize) -> &str {
        self.entry_text(self.listener[row])
    }

    pub fn format(&self, row: usize) -> &str {
        self.entry_text(self.format[row])
    }

    pub fn facility(&self, row: usize) -> Option<u8> {
        optional_u8(self.facility[row])
    }

    pub fn severity(&self, row: usize) -> Option<u8> {
        optional_u8(self.severity[row])
    }

    pub fn version(&self, row: usize) -> Option<u8> {
        optional_u8(self.version[row])
    }

    /// The sender's timestamp (Unix nanoseconds) and its written fractional digits.
    pub fn event_time(&self, row: usize) -> Option<(i64, u8)> {
        self.event[row]
    }

    pub fn text(&self, column: RefColumn, row: usize) -> Option<&str> {
        match self.refs[column as usize][row] {
            0 => None,
            reference => Some(self.entry_text(reference - 1)),
        }
    }

    pub fn structured_data(&self, row: usize) -> Option<&str> {
        self.structured_data[row].clone().and_then(|range| std::str::from_utf8(&self.body[range]).ok())
    }

    /// The message of `row`, built in `scratch` when the block stores it as codes.
    pub fn message_into<'a>(&'a self, row: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match &self.messages {
            MessageColumn::Text(text, ranges) => &text[ranges[row].clone()],
            MessageColumn::Coded(coded) => {
                scratch.clear();
                coded.render(&self.body, row, scratch);
                scratch
            }
        }
    }

    /// Message `row` as its piece codes (formats 3 to 5), for compaction; None for a
    /// block that keeps its messages as text.
    fn coded_row(&self, row: usize) -> Option<words::CodedRow<'_>> {
        match &self.messages {
            MessageColumn::Text(..) => None,
            MessageColumn::Coded(coded) => coded.coded_row(&self.body, row),
        }
    }

    /// The codes of this block's pieces that are `word` (ASCII case ignored), for
    /// `message_has_word`; None when the block keeps its messages as text (formats 1, 2).
    pub fn word_codes(&self, word: &[u8]) -> Option<Vec<u32>> {
        match &self.messages {
            MessageColumn::Text(..) => None,
            MessageColumn::Coded(coded) => Some(coded.codes_of(&self.body, word)),
        }
    }

    /// Whether message `row` has `word` as one of its words (ASCII case ignored), given
    /// `codes` from `word_codes(word)`: the answer `filter::tokens` gives on the text, read
    /// from the piece codes (docs/adr/0051).
    pub fn message_has_word(&self, row: usize, codes: &[u32], word: &[u8]) -> bool {
        match &self.messages {
            MessageColumn::Text(text, ranges) => {
                filter::tokens(&text[ranges[row].clone()]).any(|token| token.eq_ignore_ascii_case(word))
            }
            MessageColumn::Coded(coded) => coded.has_word(&self.body, row, codes, word),
        }
    }

    /// The message of `row`; `message_into` spares the allocation in a loop.
    pub fn message(&self, row: usize) -> std::borrow::Cow<'_, [u8]> {
        match &self.messages {
            MessageColumn::Text(text, ranges) => std::borrow::Cow::Borrowed(&text[ranges[row].clone()]),
            MessageColumn::Coded(coded) => {
                let mut text = Vec::new();
                coded.render(&self.body, row, &mut text);
                std::borrow::Cow::Owned(text)
            }
        }
    }

    pub fn raw(&self, row: usize) -> Option<&[u8]> {
        self.raw[row].clone().map(|range| &self.body[range])
    }
}

#[cfg(test)]
mod tests;
