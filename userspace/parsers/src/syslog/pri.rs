//! `<PRI>`: facility * 8 + severity, 0..=191 (RFC 5424 section 6.2.1, RFC 3164 section 4.1.1).

/// user.notice, what RFC 3164 section 4.3.3 tells a relay to assume when no PRI is sent.
pub(super) const DEFAULT_PRI: u8 = 13;

/// The largest valid PRI: facility 23 (local7), severity 7 (debug).
const MAX_PRI: u16 = 191;

pub(super) enum Pri {
    /// `len` counts the `<` and `>`.
    Valid { value: u8, len: usize },
    /// `<digits>` well formed but above 191; the header after it is still worth reading.
    OutOfRange { len: usize },
    /// No `<` at all: RFC 3164 content without a header.
    Missing,
    /// A `<` not followed by 1 to 3 digits and `>`: nothing can be trusted after it.
    Malformed,
}

/// Leading zeros (`<013>`) break RFC 5424's "no leading zeros" rule but lose nothing, so
/// they are read as the number they spell.
pub(super) fn read_pri(frame: &[u8]) -> Pri {
    let Some(after_open) = frame.strip_prefix(b"<") else {
        return Pri::Missing;
    };
    let mut value: u16 = 0;
    for (index, &byte) in after_open.iter().enumerate().take(4) {
        match byte {
            b'0'..=b'9' if index < 3 => value = value * 10 + u16::from(byte - b'0'),
            b'>' if index > 0 => {
                let len = index + 2;
                return match u8::try_from(value) {
                    Ok(value) if u16::from(value) <= MAX_PRI => Pri::Valid { value, len },
                    _ => Pri::OutOfRange { len },
                };
            }
            _ => return Pri::Malformed,
        }
    }
    Pri::Malformed
}
