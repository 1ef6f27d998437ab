//! Rows of decoded blocks written again as new blocks: compaction (`store/compaction.rs`)
//! regroups the rows of several blocks by host. Every field is carried over exactly as
//! stored; the dictionary entries of the old blocks are interned once per block, not once
//! per row.

use rustc_hash::FxHashMap;

use super::varint::{put_i64, put_u64};
use super::words::ADDRESSES_FROM_FORMAT;
use super::{
    BlockEncoder, BlockError, BlockTotals, DecodedBlock, EncodedBlock, FACILITY_NONE_BIT, MAX_ROWS, NONE_U8,
    ROLE_APP, ROLE_HOST, RefColumn, SEVERITY_NONE_BIT, filter,
};

/// Where compaction takes a coded block's messages from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // `Text` is for the test that both give the same block
pub(super) enum MessagesFrom {
    /// The piece codes, mapped onto the new block's pieces (formats 3 to 5; ADR 0052).
    Codes,
    /// The rendered text, cut again (what formats 1 and 2 always take).
    Text,
}

/// One row of one of the decoded blocks handed to [`BlockEncoder::encode_rows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRef {
    /// Index into the `blocks` slice.
    pub block: u32,
    pub row: u32,
}

impl BlockEncoder {
    /// Encodes `rows` of `blocks` (at most [`MAX_ROWS`], in the order given) into one block,
    /// field for field as the messages were first stored. `raw_bytes` is the summary's
    /// figure: a block keeps the frames of flagged rows only, so the size of the others
    /// is carried over from the old index rows by the caller.
    pub fn encode_rows(
        &mut self,
        blocks: &[&DecodedBlock],
        rows: &[RowRef],
        raw_bytes: u64,
    ) -> Result<EncodedBlock, BlockError> {
        self.encode_rows_with(blocks, rows, raw_bytes, MessagesFrom::Codes)
    }

    /// [`Self::encode_rows`], with messages of coded blocks taken from their codes or (for
    /// the test that both give the same block) from their rendered text.
    pub(super) fn encode_rows_with(
        &mut self,
        blocks: &[&DecodedBlock],
        rows: &[RowRef],
        raw_bytes: u64,
        messages_from: MessagesFrom,
    ) -> Result<EncodedBlock, BlockError> {
        if rows.len() > MAX_ROWS {
            return Err(BlockError::TooManyRows);
        }
        self.begin_block();
        // (old block, old dictionary index) -> new dictionary index.
        let mut interned: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        let mut min_received = i64::MAX;
        let mut max_received = i64::MIN;
        let mut previous_received: Option<i64> = None;
        let mut base_received = 0i64;
        let mut severity_mask = 0u32;
        let mut facility_mask = 0u32;
        let mut parse_error_count = 0u32;
        for &RowRef { block: which, row } in rows {
            let block = *blocks.get(which as usize).ok_or(BlockError::Damaged("row of an unknown block"))?;
            let row = row as usize;
            if row >= block.len() {
                return Err(BlockError::Damaged("row out of range"));
            }
            let mut intern = |encoder: &mut Self, index: u32| -> u32 {
                *interned.entry((which, index)).or_insert_with(|| encoder.intern(block.entry(index)))
            };
            let received = block.received_ns[row];
            min_received = min_received.min(received);
            max_received = max_received.max(received);
            let previous = *previous_received.get_or_insert_with(|| {
                base_received = received;
                received
            });
            put_i64(&mut self.columns.received, received.wrapping_sub(previous));
            previous_received = Some(received);

            let source_index = match block.source_ip(row) {
                Some(ip) => self.address_index(ip),
                None => {
                    // Not an address (never written by this build): kept as text.
                    let index = intern(self, block.source[row]);
                    self.field_filter
                        .insert(filter::field_hash(filter::FIELD_SOURCE, block.entry(block.source[row])));
                    index
                }
            };
            self.columns.source_rows.push(source_index);
            put_u64(&mut self.columns.port, u64::from(block.port[row]));
            let listener = intern(self, block.listener[row]);
            put_u64(&mut self.columns.listener, u64::from(listener));
            let format = intern(self, block.format[row]);
            self.columns.format_rows.push(format);

            let (facility, severity) = (block.facility[row], block.severity[row]);
            self.columns.facility.push(facility);
            self.columns.severity.push(severity);
            self.columns.version.push(block.version[row]);
            let severity_bit =
                if severity == NONE_U8 { SEVERITY_NONE_BIT } else { u32::from(severity.min(7)) };
            let facility_bit =
                if facility == NONE_U8 { FACILITY_NONE_BIT } else { u32::from(facility.min(23)) };
            severity_mask |= 1 << severity_bit;
            facility_mask |= 1 << facility_bit;
            self.columns.push_event(block.event[row], received);

            for column in 0..self.columns.refs.len() {
                let reference = block.refs[column][row];
                if column == RefColumn::Procid as usize {
                    self.put_procid((reference != 0).then(|| block.entry(reference - 1)));
                    continue;
                }
                let index = (reference != 0).then(|| intern(self, reference - 1));
                if column == RefColumn::Hostname as usize {
                    self.columns.host_rows.push(index.map_or(0, |index| index + 1));
                } else {
                    put_u64(&mut self.columns.refs[column], index.map_or(0, |index| u64::from(index) + 1));
                }
                let role = match column {
                    0 => Some((ROLE_HOST, filter::FIELD_HOST)),
                    1 => Some((ROLE_APP, filter::FIELD_APP)),
                    _ => None,
                };
                if let (Some(index), Some((role, kind))) = (index, role) {
                    let value = &self.dictionary_bytes[self.dictionary_order[index as usize].clone()];
                    let roles = &mut self.dictionary_roles[index as usize];
                    if *roles & role == 0 {
                        *roles |= role;
                        self.field_filter.insert(filter::field_hash(kind, value));
                    }
                }
            }
            let flagged = block.refs[4][row] != 0 || block.refs[5][row] != 0;
            parse_error_count += u32::from(flagged);
            match &block.structured_data[row] {
                Some(range) => {
                    put_u64(&mut self.columns.lengths[0], range.len() as u64 + 1);
                    self.columns.texts[0].extend_from_slice(&block.body[range.clone()]);
                }
                None => put_u64(&mut self.columns.lengths[0], 0),
            }
            // A block before format 6 coded an address as pieces: its text is cut again,
            // so that the new block holds the address as `encode` would.
            let coded = match messages_from {
                MessagesFrom::Codes if block.format_version() >= ADDRESSES_FROM_FORMAT => {
                    block.coded_row(row)
                }
                MessagesFrom::Codes | MessagesFrom::Text => None,
            };
            // From codes, only a flagged row builds its text: its frame is stored without it.
            let message = match (&coded, block.raw(row)) {
                (Some(_), None) => &[][..],
                _ => block.message_into(row, &mut self.message_scratch),
            };
            self.columns.push_raw(block.raw(row), message);
            match coded {
                Some(coded) => self.messages.push_coded(which as usize, coded, &mut self.token_filter),
                None => self.messages.push(message, &mut self.token_filter),
            }
        }
        self.finish(BlockTotals {
            count: rows.len(),
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
