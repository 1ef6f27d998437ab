//! The marker token `kk=<run_id>.<seq>.<send_unix_nanos>` embedded in each syslog message's
//! text, so a scan of what a receiver stored yields loss (by seq) and latency (by send time)
//! whatever the receiver did to the header.

use crate::ascii::{parse_u64, write_u64};

/// What a marker says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub run_id: u32,
    pub seq: u64,
    pub send_unix_nanos: u64,
}

pub const MARKER_KEY: &[u8] = b"kk=";

/// Appends `kk=<run_id>.<seq>.<send_unix_nanos>`.
pub fn write_marker(out: &mut Vec<u8>, marker: Marker) {
    out.extend_from_slice(MARKER_KEY);
    write_u64(out, u64::from(marker.run_id));
    out.push(b'.');
    write_u64(out, marker.seq);
    out.push(b'.');
    write_u64(out, marker.send_unix_nanos);
}

/// Finds the first well-formed marker anywhere in `text`. The key must start a token (line
/// start or after a non-alphanumeric byte, so `askk=` does not match) and the three numbers
/// must end at a non-digit; a malformed candidate is skipped, not fatal.
pub fn parse_marker(text: &[u8]) -> Option<Marker> {
    let mut from = 0;
    while let Some(found) = find(&text[from..], MARKER_KEY) {
        let key_at = from + found;
        let starts_token = key_at == 0 || !is_word_byte(text[key_at - 1]);
        if starts_token && let Some(marker) = parse_marker_value(&text[key_at + MARKER_KEY.len()..]) {
            return Some(marker);
        }
        from = key_at + 1;
    }
    None
}

fn parse_marker_value(value: &[u8]) -> Option<Marker> {
    let end = value.iter().position(|b| !(b.is_ascii_digit() || *b == b'.')).unwrap_or(value.len());
    let mut parts = value[..end].split(|b| *b == b'.');
    let run_id = u32::try_from(parse_u64(parts.next()?)?).ok()?;
    let seq = parse_u64(parts.next()?)?;
    let send_unix_nanos = parse_u64(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some(Marker { run_id, seq, send_unix_nanos })
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_anywhere_in_a_line() {
        let marker = Marker { run_id: 7, seq: 123_456, send_unix_nanos: 1_700_000_000_000_000_001 };
        let mut line = b"2024-01-01T00:00:00Z host app: some text ".to_vec();
        write_marker(&mut line, marker);
        line.extend_from_slice(b" trailing words");
        assert_eq!(parse_marker(&line), Some(marker));
        let mut bare = Vec::new();
        write_marker(&mut bare, marker);
        assert_eq!(parse_marker(&bare), Some(marker));
    }

    #[test]
    fn malformed_or_embedded_keys_are_skipped() {
        assert_eq!(parse_marker(b"kk=1.2 no third part"), None);
        assert_eq!(parse_marker(b"askk=1.2.3"), None);
        assert_eq!(parse_marker(b"kk=1.2.3.4"), None);
        assert_eq!(parse_marker(b"kk=x kk=1.2.3\"").map(|m| m.seq), Some(2));
        assert_eq!(parse_marker(b"key=\"kk=4.5.6\"").map(|m| m.run_id), Some(4));
    }
}
