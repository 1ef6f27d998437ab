//! The stream journal: what a TCP or TLS listener reads is written to a local file before
//! it is framed, so that a crash (kill -9) of the process loses nothing the listener took
//! off a connection (docs/adr/0031).
//!
//! A listener writes one segment at a time. Every batch it hands off carries a
//! [`JournalTicket`] naming the segment its frames came from; at each hand-off the
//! listener starts a new segment and copies into it the bytes each connection still has
//! buffered (a partial frame, or frames not yet taken under back pressure), so that a
//! segment holds everything the batches after it need. When the writer has committed (or
//! spooled) a batch it acks the ticket, which deletes that segment. On start the
//! control plane replays the segments left by a crash ([`replay_dir`]) before any listener
//! runs: the same framer cuts the same frames, and a connection whose close was not
//! journaled ends with its partial frame flagged incomplete, as a live close would.
//!
//! Writes go to the page cache (no fsync): the journal survives the process, not the
//! machine. A segment whose batch was committed just before a crash, and not yet deleted,
//! is replayed again: at least once, so a crash can duplicate up to one batch per listener.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use killkrill_parsers::framing::{FrameFlag, SyslogFramer};

const MAGIC: &[u8; 4] = b"KKJ1";
const EXTENSION: &str = "kkj";
/// kind, connection, time, address, port, length, checksum.
const RECORD_HEADER_BYTES: usize = 1 + 8 + 8 + 16 + 2 + 4 + 4;

/// What a journal record says about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Bytes read from the connection.
    Data = 1,
    /// The bytes the connection had buffered when the segment started: they replace
    /// whatever an earlier segment left for it.
    Carry = 2,
    /// The connection closed; its partial frame, if any, is kept flagged incomplete.
    Close = 3,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Data),
            2 => Some(Self::Carry),
            3 => Some(Self::Close),
            _ => None,
        }
    }
}

/// Names the segment a batch's frames came from; acked once the batch is durable.
#[derive(Debug)]
pub struct JournalTicket {
    path: PathBuf,
}

impl JournalTicket {
    /// The batch is committed (or spooled): its segment goes. The listener has moved on
    /// to the next segment when it handed the batch off, so nothing writes to this one.
    pub fn ack(self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %error, "Cannot delete a journal segment; it will be replayed at the next start.");
        }
    }
}

/// Appends a listener's records, one segment at a time.
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    file: File,
    segment: u64,
    record: Vec<u8>,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.{EXTENSION}"))
}

fn create_segment(dir: &Path, segment: u64) -> std::io::Result<File> {
    let mut file = OpenOptions::new().create_new(true).write(true).open(segment_path(dir, segment))?;
    file.write_all(MAGIC)?;
    Ok(file)
}

impl JournalWriter {
    /// Opens a fresh journal in `dir` (created if missing). Segments already there belong
    /// to an earlier run and must have been replayed; numbering continues after them.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let next = segments(dir)?.last().map_or(0, |(segment, _)| segment + 1);
        Ok(Self {
            dir: dir.to_owned(),
            file: create_segment(dir, next)?,
            segment: next,
            record: Vec::with_capacity(64 * 1024 + RECORD_HEADER_BYTES),
        })
    }

    /// The ticket for batches filled from the current segment.
    pub fn ticket(&self) -> JournalTicket {
        JournalTicket { path: segment_path(&self.dir, self.segment) }
    }

    /// Writes one record, in one write call.
    pub fn append(
        &mut self,
        kind: RecordKind,
        connection: u64,
        peer: SocketAddr,
        time: Timestamp,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let length = u32::try_from(bytes.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let time_ns = i64::try_from(time.as_nanosecond()).unwrap_or(i64::MAX);
        self.record.clear();
        self.record.push(kind as u8);
        self.record.extend_from_slice(&connection.to_le_bytes());
        self.record.extend_from_slice(&time_ns.to_le_bytes());
        self.record.extend_from_slice(&ip.octets());
        self.record.extend_from_slice(&peer.port().to_le_bytes());
        self.record.extend_from_slice(&length.to_le_bytes());
        let checksum = record_checksum(&self.record, bytes);
        self.record.extend_from_slice(&checksum.to_le_bytes());
        self.record.extend_from_slice(bytes);
        self.file.write_all(&self.record)
    }

    /// Closes the current segment and starts the next; the caller then writes the
    /// connections' buffered bytes as `Carry` records.
    pub fn rotate(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next)?;
        self.segment = next;
        Ok(())
    }
}

fn record_checksum(header: &[u8], bytes: &[u8]) -> u32 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(header);
    hasher.update(bytes);
    hasher.digest() as u32
}

/// The journal segments in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        if let Some(segment) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()) {
            found.push((segment, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// One record read back.
#[derive(Debug)]
struct Record {
    kind: RecordKind,
    connection: u64,
    time: Timestamp,
    peer: SocketAddr,
    bytes: Vec<u8>,
}

/// The records of one segment, up to the first that is cut short or damaged (a write
/// interrupted by the crash); whether such a tail was found.
fn read_segment(path: &Path) -> std::io::Result<(Vec<Record>, bool)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut records = Vec::new();
    let Some(mut rest) = data.strip_prefix(MAGIC.as_slice()) else {
        return Ok((records, !data.is_empty()));
    };
    while !rest.is_empty() {
        let Some((header, after)) = rest.split_at_checked(RECORD_HEADER_BYTES) else {
            return Ok((records, true));
        };
        let field = |at: usize, len: usize| &header[at..at + len];
        let length = u32::from_le_bytes(field(35, 4).try_into().unwrap_or_default()) as usize;
        let checksum = u32::from_le_bytes(field(39, 4).try_into().unwrap_or_default());
        let Some((bytes, after)) = after.split_at_checked(length) else {
            return Ok((records, true));
        };
        let kind = RecordKind::from_byte(header[0]);
        let (Some(kind), true) = (kind, record_checksum(&header[..39], bytes) == checksum) else {
            return Ok((records, true));
        };
        let octets: [u8; 16] = field(17, 16).try_into().unwrap_or_default();
        let ip = Ipv6Addr::from(octets);
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        let port = u16::from_le_bytes(field(33, 2).try_into().unwrap_or_default());
        let time_ns = i64::from_le_bytes(field(9, 8).try_into().unwrap_or_default());
        records.push(Record {
            kind,
            connection: u64::from_le_bytes(field(1, 8).try_into().unwrap_or_default()),
            time: Timestamp::from_nanosecond(i128::from(time_ns)).unwrap_or(Timestamp::UNIX_EPOCH),
            peer: SocketAddr::new(ip, port),
            bytes: bytes.to_vec(),
        });
        rest = after;
    }
    Ok((records, false))
}

/// A frame recovered from a journal.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayedFrame<'a> {
    pub bytes: &'a [u8],
    pub flag: Option<FrameFlag>,
    pub peer: SocketAddr,
    /// When the bytes holding the frame's end were read.
    pub received_at: Timestamp,
}

/// What a replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub segments: usize,
    pub frames: u64,
    /// Segments whose last record was cut short by the crash (the records before it count).
    pub torn_segments: usize,
}

struct ReplayedConnection {
    peer: SocketAddr,
    framer: SyslogFramer,
}

/// Replays every segment in `dir` (a listener's journal) in order, handing each frame to
/// `frame`, and returns the segments' paths so the caller can delete them once the frames
/// are durable.
pub fn replay_dir(
    dir: &Path,
    max_frame_bytes: usize,
    mut frame: impl FnMut(ReplayedFrame<'_>),
) -> std::io::Result<(ReplaySummary, Vec<PathBuf>)> {
    let mut summary = ReplaySummary::default();
    let mut connections: HashMap<u64, ReplayedConnection> = HashMap::new();
    let mut last_time = Timestamp::UNIX_EPOCH;
    let found = segments(dir)?;
    for (_, path) in &found {
        let (records, torn) = read_segment(path)?;
        summary.segments += 1;
        summary.torn_segments += usize::from(torn);
        for record in records {
            last_time = record.time;
            let mut emit = |bytes: &[u8], flag, peer| {
                summary.frames += 1;
                frame(ReplayedFrame { bytes, flag, peer, received_at: record.time });
            };
            match record.kind {
                RecordKind::Data => {
                    let connection = connections.entry(record.connection).or_insert_with(|| {
                        ReplayedConnection { peer: record.peer, framer: SyslogFramer::new(max_frame_bytes) }
                    });
                    connection.framer.feed(&record.bytes);
                    while let Some(next) = connection.framer.next_frame() {
                        emit(next.bytes, next.flag, connection.peer);
                    }
                }
                RecordKind::Carry => {
                    // What the connection had buffered when this segment began: the same
                    // bytes an earlier segment left, if that one was replayed too.
                    let mut framer = SyslogFramer::new(max_frame_bytes);
                    framer.feed(&record.bytes);
                    while let Some(next) = framer.next_frame() {
                        emit(next.bytes, next.flag, record.peer);
                    }
                    connections.insert(record.connection, ReplayedConnection { peer: record.peer, framer });
                }
                RecordKind::Close => {
                    if let Some(mut connection) = connections.remove(&record.connection) {
                        while let Some(next) = connection.framer.finish() {
                            emit(next.bytes, next.flag, connection.peer);
                        }
                    }
                }
            }
        }
    }
    // Connections the crash cut: their partial frames are kept, flagged incomplete.
    let mut open: Vec<_> = connections.into_iter().collect();
    open.sort_unstable_by_key(|(id, _)| *id);
    for (_, mut connection) in open {
        while let Some(next) = connection.framer.finish() {
            summary.frames += 1;
            frame(ReplayedFrame {
                bytes: next.bytes,
                flag: next.flag,
                peer: connection.peer,
                received_at: last_time,
            });
        }
    }
    Ok((summary, found.into_iter().map(|(_, path)| path).collect()))
}

/// The listeners' journal directories under `root` (one per listener address).
pub fn journal_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    match std::fs::read_dir(root) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    dirs.sort();
    Ok(dirs)
}

/// The directory of the listener `label` bound to `address`, under `root`.
pub fn listener_dir(root: &Path, label: &str, address: SocketAddr) -> PathBuf {
    let address = address.to_string().replace([':', '[', ']'], "_");
    root.join(format!("{label}-{address}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 7], port))
    }

    /// A replayed frame's text, flag and peer.
    type Seen = (String, Option<FrameFlag>, SocketAddr);

    fn replay(dir: &Path) -> (Vec<Seen>, ReplaySummary, usize) {
        let mut frames = Vec::new();
        let (summary, paths) = replay_dir(dir, 1024, |frame| {
            frames.push((String::from_utf8_lossy(frame.bytes).into_owned(), frame.flag, frame.peer));
        })
        .unwrap();
        (frames, summary, paths.len())
    }

    #[test]
    fn frames_split_across_reads_and_segments_come_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = JournalWriter::open(dir.path()).unwrap();
        let now = Timestamp::now();
        journal.append(RecordKind::Data, 1, peer(1), now, b"<13>one\n<13>tw").unwrap();
        journal.append(RecordKind::Data, 2, peer(2), now, b"10 <13>octets").unwrap();
        let first = journal.ticket();
        // Hand-off: the next segment starts with what each connection still buffers.
        journal.rotate().unwrap();
        journal.append(RecordKind::Carry, 1, peer(1), now, b"<13>tw").unwrap();
        journal.append(RecordKind::Data, 1, peer(1), now, b"o\n").unwrap();
        journal.append(RecordKind::Close, 2, peer(2), now, b"").unwrap();
        journal.append(RecordKind::Data, 3, peer(3), now, b"<13>cut sh").unwrap();

        // Both segments replayed: the carried bytes replace the first segment's tail.
        let (frames, summary, segments) = replay(dir.path());
        let texts: Vec<&str> = frames.iter().map(|(text, _, _)| text.as_str()).collect();
        assert_eq!(texts, ["<13>one", "<13>octets", "<13>two", "<13>cut sh"]);
        assert_eq!(frames[1].2, peer(2));
        assert_eq!(frames[3].1, Some(FrameFlag::Incomplete), "the crash cut connection 3 mid-frame");
        assert_eq!((summary.segments, summary.frames, segments), (2, 4, 2));

        // Once the first segment's batch is acked it goes; the second still replays whole.
        first.ack();
        assert_eq!(super::segments(dir.path()).unwrap().len(), 1);
        let (frames, _, _) = replay(dir.path());
        let texts: Vec<&str> = frames.iter().map(|(text, _, _)| text.as_str()).collect();
        assert_eq!(texts, ["<13>two", "<13>cut sh"], "connection 2 closed with nothing buffered");
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_earlier_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = JournalWriter::open(dir.path()).unwrap();
        journal.append(RecordKind::Data, 1, peer(1), Timestamp::now(), b"<13>kept\n").unwrap();
        journal.append(RecordKind::Data, 1, peer(1), Timestamp::now(), b"<13>torn\n").unwrap();
        drop(journal);
        let path = segments(dir.path()).unwrap()[0].1.clone();
        let length = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(length - 3).unwrap();
        let (frames, summary, _) = replay(dir.path());
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, "<13>kept");
        assert_eq!(summary.torn_segments, 1);

        // A flipped byte is caught by the checksum.
        let mut data = std::fs::read(&path).unwrap();
        data[MAGIC.len() + RECORD_HEADER_BYTES + 5] ^= 0x20;
        std::fs::write(&path, data).unwrap();
        let (frames, _, _) = replay(dir.path());
        assert!(frames.is_empty(), "{frames:?}");
    }

    #[test]
    fn a_new_writer_continues_the_numbering_and_ipv6_peers_survive() {
        let dir = tempfile::tempdir().unwrap();
        drop(JournalWriter::open(dir.path()).unwrap());
        let mut journal = JournalWriter::open(dir.path()).unwrap();
        assert!(journal.ticket().path.ends_with("00000000000000000001.kkj"));
        let v6: SocketAddr = "[2001:db8::5]:6514".parse().unwrap();
        journal.append(RecordKind::Data, 9, v6, Timestamp::now(), b"<13>six\n").unwrap();
        let (frames, summary, segments) = replay(dir.path());
        assert_eq!(frames, [("<13>six".to_owned(), None, v6)]);
        assert_eq!((summary.segments, segments), (2, 2), "the empty first segment counts too");
        assert_eq!(
            listener_dir(Path::new("/j"), "syslog-tcp", v6),
            Path::new("/j/syslog-tcp-_2001_db8__5__6514")
        );
    }
}
