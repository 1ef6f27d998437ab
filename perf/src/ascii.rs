//! Appending numbers as ASCII without `format!`, so message writers never allocate.

/// Appends `value` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `value` in decimal, left-padded with zeros to `width` digits.
pub fn write_zero_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    write_padded(out, value, width, b'0');
}

/// Appends `value` in decimal, left-padded with spaces to `width` (the BSD syslog day).
pub fn write_space_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    write_padded(out, value, width, b' ');
}

fn write_padded(out: &mut Vec<u8>, value: u64, width: usize, pad: u8) {
    let digits = decimal_digits(value);
    for _ in digits..width {
        out.push(pad);
    }
    write_u64(out, value);
}

/// Appends an IPv4 address in dotted form.
pub fn write_ipv4(out: &mut Vec<u8>, octets: [u8; 4]) {
    for (i, octet) in octets.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        write_u64(out, u64::from(*octet));
    }
}

/// Appends `value` with a fixed number of fraction digits (`scaled` is value × 10^places).
pub fn write_fixed_point(out: &mut Vec<u8>, scaled: u64, places: u32) {
    let unit = 10u64.pow(places);
    write_u64(out, scaled / unit);
    out.push(b'.');
    write_zero_padded(out, scaled % unit, places as usize);
}

fn decimal_digits(mut value: u64) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// Parses an unsigned decimal number; `None` on empty input, a non-digit or overflow.
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_like_format() {
        let mut out = Vec::new();
        for v in [0u64, 7, 10, 99, 12345, u64::MAX] {
            out.clear();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        out.clear();
        write_zero_padded(&mut out, 42, 4);
        write_space_padded(&mut out, 3, 2);
        write_fixed_point(&mut out, 12_005, 3);
        assert_eq!(out, b"0042 312.005");
    }

    #[test]
    fn parse_rejects_non_digits_and_overflow() {
        assert_eq!(parse_u64(b"123"), Some(123));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
    }
}
