//! Ethernet + IPv4 + UDP frames built by hand for the AF_XDP sender, sans-IO: a header
//! template made once per run, then one copy and one IPv4 checksum per frame.

use std::fmt;
use std::net::SocketAddrV4;
use std::str::FromStr;

/// Ethernet (14) + IPv4 without options (20) + UDP (8).
pub const HEADERS_LEN: usize = 14 + 20 + 8;
/// IPv4 + UDP headers, what a datagram's payload loses to the MTU.
pub const IP_UDP_HEADERS_LEN: usize = 20 + 8;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IP_OFFSET: usize = 14;
const UDP_OFFSET: usize = IP_OFFSET + 20;
const TTL: u8 = 64;
const PROTOCOL_UDP: u8 = 17;
/// Don't Fragment: frames are sized to the MTU, and a router must not split them.
const FLAGS_DF: [u8; 2] = [0x40, 0x00];

/// A 48-bit Ethernet address, written and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A MAC address that is not six `:`-separated hex bytes.
#[derive(Debug, thiserror::Error)]
#[error("bad MAC address {0:?}: expected six hex bytes like aa:bb:cc:dd:ee:ff")]
pub struct BadMacAddr(String);

impl FromStr for MacAddr {
    type Err = BadMacAddr;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = || BadMacAddr(value.to_owned());
        let mut bytes = [0u8; 6];
        let mut parts = value.trim().split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(bytes))
    }
}

/// The fixed part of every frame a run sends: addresses, ports, TTL, protocol.
#[derive(Debug, Clone)]
pub struct FrameTemplate {
    headers: [u8; HEADERS_LEN],
}

impl FrameTemplate {
    pub fn new(source_mac: MacAddr, dest_mac: MacAddr, source: SocketAddrV4, dest: SocketAddrV4) -> Self {
        let mut h = [0u8; HEADERS_LEN];
        h[0..6].copy_from_slice(&dest_mac.0);
        h[6..12].copy_from_slice(&source_mac.0);
        h[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut h[IP_OFFSET..UDP_OFFSET];
        ip[0] = 0x45; // version 4, 5 words of header
        ip[6..8].copy_from_slice(&FLAGS_DF);
        ip[8] = TTL;
        ip[9] = PROTOCOL_UDP;
        ip[12..16].copy_from_slice(&source.ip().octets());
        ip[16..20].copy_from_slice(&dest.ip().octets());
        let udp = &mut h[UDP_OFFSET..];
        udp[0..2].copy_from_slice(&source.port().to_be_bytes());
        udp[2..4].copy_from_slice(&dest.port().to_be_bytes());
        // The UDP checksum stays 0, "none computed", which IPv4 allows (RFC 768).
        Self { headers: h }
    }

    /// Writes the frame carrying `payload` into `out` and returns its length. `out` must hold
    /// [`HEADERS_LEN`] + `payload.len()` bytes, and the payload must fit an IPv4 datagram.
    pub fn write(&self, ident: u16, payload: &[u8], out: &mut [u8]) -> usize {
        let len = HEADERS_LEN + payload.len();
        let total_len = u16::try_from(IP_UDP_HEADERS_LEN + payload.len()).expect("payload fits IPv4");
        let udp_len = total_len - 20;
        let frame = &mut out[..len];
        frame[..HEADERS_LEN].copy_from_slice(&self.headers);
        let ip = &mut frame[IP_OFFSET..UDP_OFFSET];
        ip[2..4].copy_from_slice(&total_len.to_be_bytes());
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
        let checksum = ipv4_header_checksum(ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame[UDP_OFFSET + 4..UDP_OFFSET + 6].copy_from_slice(&udp_len.to_be_bytes());
        frame[HEADERS_LEN..].copy_from_slice(payload);
        len
    }
}

/// The RFC 791 header checksum over `header` with its checksum field (bytes 10..12) taken
/// as zero: the one's complement of the one's complement sum of its 16-bit words.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, word) in header.chunks(2).enumerate() {
        if i == 5 {
            continue;
        }
        let hi = u32::from(word[0]) << 8;
        sum += hi | word.get(1).map_or(0, |lo| u32::from(*lo));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_textbook_example() {
        // The classic example header (checksum 0xb861).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&header), 0xb861);
    }

    #[test]
    fn frames_carry_addresses_lengths_and_a_valid_checksum() {
        let template = FrameTemplate::new(
            "02:00:00:00:00:01".parse().unwrap(),
            "02:00:00:00:00:02".parse().unwrap(),
            "10.203.250.2:40000".parse().unwrap(),
            "10.203.250.1:514".parse().unwrap(),
        );
        let mut out = [0u8; 2048];
        let len = template.write(7, b"hello", &mut out);
        let frame = &out[..len];
        assert_eq!(len, HEADERS_LEN + 5);
        assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        let ip = &frame[14..34];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 33);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 7);
        assert_eq!(&ip[12..16], &[10, 203, 250, 2]);
        assert_eq!(&ip[16..20], &[10, 203, 250, 1]);
        // A receiver sums the whole header, checksum included, to 0xffff.
        let sum: u32 = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
        let udp = &frame[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 40000);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 514);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 13);
        assert_eq!(&udp[6..8], &[0, 0]);
        assert_eq!(&frame[42..], b"hello");
    }

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "AA:bb:0c:dd:ee:ff".parse().unwrap();
        assert_eq!(mac.0, [0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0xff]);
        assert_eq!(mac.to_string(), "aa:bb:0c:dd:ee:ff");
        for bad in ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb:cc:dd:ee:fg", "aaa:bb:cc:dd:ee:f"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
