//! The subject of an X.509 certificate as a short string ("C=FR,O=Example,CN=router-7"),
//! for the log line that records who connected. A small DER walk rather than a full X.509
//! crate: only the subject name is needed, and every read is bounds-checked, so a
//! malformed certificate gives `None`, never a panic.

/// The subject distinguished name of a DER certificate, attributes in certificate order.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, certificate, _) = read_tlv(der, SEQUENCE)?;
    let (_, tbs, _) = read_tlv(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT is optional (absent means v1).
    if rest.first() == Some(&0xa0) {
        rest = read_any(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = read_any(rest)?.2;
    }
    let (_, name, _) = read_tlv(rest, SEQUENCE)?;
    format_name(name)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

fn format_name(mut name: &[u8]) -> Option<String> {
    let mut out = String::new();
    while !name.is_empty() {
        let (_, mut set, rest) = read_tlv(name, SET)?;
        name = rest;
        while !set.is_empty() {
            let (_, attribute, rest) = read_tlv(set, SEQUENCE)?;
            set = rest;
            let (_, oid, value) = read_tlv(attribute, OID)?;
            let (tag, value, _) = read_any(value)?;
            if !out.is_empty() {
                out.push(',');
            }
            push_attribute_name(&mut out, oid);
            out.push('=');
            push_string(&mut out, tag, value);
        }
    }
    Some(out)
}

fn push_attribute_name(out: &mut String, oid: &[u8]) {
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => {
            push_dotted_oid(out, oid);
            return;
        }
    };
    out.push_str(short);
}

fn push_dotted_oid(out: &mut String, oid: &[u8]) {
    use std::fmt::Write as _;
    let Some((&first, rest)) = oid.split_first() else { return };
    let _ = write!(out, "{}.{}", first / 40, first % 40);
    let mut arc: u64 = 0;
    for &byte in rest {
        arc = arc.saturating_mul(128).saturating_add(u64::from(byte & 0x7f));
        if byte & 0x80 == 0 {
            let _ = write!(out, ".{arc}");
            arc = 0;
        }
    }
}

fn push_string(out: &mut String, tag: u8, value: &[u8]) {
    const BMP_STRING: u8 = 0x1e;
    if tag == BMP_STRING {
        let units = value.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        out.extend(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)));
    } else {
        out.extend(String::from_utf8_lossy(value).chars().map(|c| if c.is_control() { '?' } else { c }));
    }
}

/// Reads one TLV whose tag must be `tag`.
fn read_tlv(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let read = read_any(input)?;
    (read.0 == tag).then_some(read)
}

/// Reads one TLV (single-byte tag, definite length): its tag, contents and what follows.
fn read_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (bytes, after) = rest.split_at(octets);
        rest = after;
        bytes.iter().fold(0usize, |length, &byte| (length << 8) | usize::from(byte))
    };
    if rest.len() < length {
        return None;
    }
    let (contents, after) = rest.split_at(length);
    Some((tag, contents, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made once with
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj
    /// "/C=FR/O=Krill Test/CN=router-7" -days 1`.
    const CERTIFICATE_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBwDCCAWWgAwIBAgIUZZq4rSi/EDP2bI0AhBr72jDOCvswCgYIKoZIzj0EAwIw
NTELMAkGA1UEBhMCRlIxEzARBgNVBAoMCktyaWxsIFRlc3QxETAPBgNVBAMMCHJv
dXRlci03MB4XDTI2MTEyMzE0MjYxM1oXDTI2MTEyNDE0MjYxM1owNTELMAkGA1UE
BhMCRlIxEzARBgNVBAoMCktyaWxsIFRlc3QxETAPBgNVBAMMCHJvdXRlci03MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkndU2QmJqK3P3VMp4rmpdyavyEJXaAYw
WGcsmkEsmpJMcKvL/LIzCO3ED/TcREo/TI7lHw5oHivKgFdQJTPJ8KNTMFEwHQYD
VR0OBBYEFJr6vzgtSNY/rLpK1HjaR6LNLLKVMB8GA1UdIwQYMBaAFJr6vzgtSNY/
rLpK1HjaR6LNLLKVMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh
AJjOY2AmtdskxbWyEXpDvc6p7nZRvSWzkwsw23BuhG3qAiEAv5AIiyC+C07GtR0Q
RG8zh7uT2tKq0UQe1WTmXmBqp/8=
-----END CERTIFICATE-----";

    fn der() -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(CERTIFICATE_PEM.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn subject_is_read_in_certificate_order() {
        assert_eq!(certificate_subject(&der()).as_deref(), Some("C=FR,O=Krill Test,CN=router-7"));
    }

    #[test]
    fn truncated_or_garbage_certificates_give_none() {
        let der = der();
        for length in [0, 1, 2, 10, 50, 100] {
            assert_eq!(certificate_subject(&der[..length]), None, "cut at {length}");
        }
        assert_eq!(certificate_subject(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(certificate_subject(b"not a certificate"), None);
    }

    #[test]
    fn unknown_attributes_are_shown_as_dotted_oids() {
        let mut out = String::new();
        push_dotted_oid(&mut out, &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37]);
        assert_eq!(out, "1.3.6.1.4.1.311");
    }
}
