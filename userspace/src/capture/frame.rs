//! Reading the UDP datagram back out of an Ethernet frame the XDP program steered here.
//!
//! The program has already checked the headers; this walk repeats the same rules (two VLAN
//! tags, IPv4 options, the common IPv6 extension headers) because user space must not
//! trust memory the kernel and a BPF program wrote, and it must stay panic-free on
//! anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use killkrill_ebpf_common::{
    ETHER_TYPE_IPV4, ETHER_TYPE_IPV6, ETHER_TYPE_QINQ, ETHER_TYPE_VLAN, IP_PROTOCOL_UDP,
    IPV6_NEXT_HEADER_AUTH, IPV6_NEXT_HEADER_DEST_OPTS, IPV6_NEXT_HEADER_HOP_BY_HOP, IPV6_NEXT_HEADER_ROUTING,
    MAX_IPV6_EXTENSION_HEADERS,
};

/// A UDP datagram inside a frame.
#[derive(Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub source: SocketAddr,
    pub destination_port: u16,
    pub payload: &'a [u8],
}

fn u16_at(frame: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(offset)?, *frame.get(offset + 1)?]))
}

/// The datagram in `frame`, or None when the frame is not a whole, unfragmented UDP
/// datagram over IPv4 or IPv6.
pub fn udp_datagram(frame: &[u8]) -> Option<UdpDatagram<'_>> {
    let mut ether_type = u16_at(frame, 12)?;
    let mut offset = 14;
    for _ in 0..2 {
        if ether_type != ETHER_TYPE_VLAN && ether_type != ETHER_TYPE_QINQ {
            break;
        }
        ether_type = u16_at(frame, offset + 2)?;
        offset += 4;
    }
    let (source, udp_offset) = match ether_type {
        ETHER_TYPE_IPV4 => {
            let header = frame.get(offset..offset + 20)?;
            let header_len = usize::from(header[0] & 0x0f) * 4;
            let fragmented = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
            if header[0] >> 4 != 4 || header_len < 20 || fragmented || header[9] != IP_PROTOCOL_UDP {
                return None;
            }
            let ip = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
            (IpAddr::V4(ip), offset + header_len)
        }
        ETHER_TYPE_IPV6 => {
            let header = frame.get(offset..offset + 40)?;
            if header[0] >> 4 != 6 {
                return None;
            }
            let mut source = [0u8; 16];
            source.copy_from_slice(&header[8..24]);
            let mut next_header = header[6];
            let mut offset = offset + 40;
            for _ in 0..MAX_IPV6_EXTENSION_HEADERS {
                if next_header == IP_PROTOCOL_UDP {
                    break;
                }
                let units = usize::from(*frame.get(offset + 1)?);
                let length = match next_header {
                    IPV6_NEXT_HEADER_HOP_BY_HOP | IPV6_NEXT_HEADER_ROUTING | IPV6_NEXT_HEADER_DEST_OPTS => {
                        (units + 1) * 8
                    }
                    IPV6_NEXT_HEADER_AUTH => (units + 2) * 4,
                    _ => return None,
                };
                next_header = *frame.get(offset)?;
                offset += length;
            }
            if next_header != IP_PROTOCOL_UDP {
                return None;
            }
            (IpAddr::V6(Ipv6Addr::from(source)), offset)
        }
        _ => return None,
    };
    let header = frame.get(udp_offset..udp_offset + 8)?;
    let source_port = u16::from_be_bytes([header[0], header[1]]);
    let destination_port = u16::from_be_bytes([header[2], header[3]]);
    let udp_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    // Ethernet padding may follow the datagram: the UDP length says where it ends.
    let payload = frame.get(udp_offset + 8..udp_offset.checked_add(udp_len)?)?;
    Some(UdpDatagram { source: SocketAddr::new(source, source_port), destination_port, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_frame(vlan: bool, options_words: u8, payload: &[u8], padding: usize) -> Vec<u8> {
        let mut frame = vec![0; 12];
        if vlan {
            frame.extend_from_slice(&[0x81, 0x00, 0, 7]);
        }
        frame.extend_from_slice(&[0x08, 0x00, 0x45 + options_words, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(&[192, 0, 2, 9, 10, 0, 0, 2]);
        frame.extend(std::iter::repeat_n(1u8, usize::from(options_words) * 4));
        frame.extend_from_slice(&[0x9c, 0x40, 0x15, 0x8a]);
        frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        frame.extend(std::iter::repeat_n(0u8, padding));
        frame
    }

    #[test]
    fn ipv4_datagrams_come_out_without_padding() {
        let frame = ipv4_frame(true, 2, b"<13>hi", 20);
        let datagram = udp_datagram(&frame).unwrap();
        assert_eq!(datagram.source, "192.0.2.9:40000".parse().unwrap());
        assert_eq!(datagram.destination_port, 5514);
        assert_eq!(datagram.payload, b"<13>hi");
        assert_eq!(udp_datagram(&ipv4_frame(false, 0, b"", 0)).unwrap().payload, b"");
    }

    #[test]
    fn ipv6_datagrams_behind_extension_headers_come_out() {
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 30, 0, 64]);
        let source: Ipv6Addr = "2001:db8::9".parse().unwrap();
        frame.extend_from_slice(&source.octets());
        frame.extend_from_slice(&[0; 16]);
        frame.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop -> dest opts
        frame.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]); // dest opts -> UDP
        frame.extend_from_slice(&[0x9c, 0x40, 0x15, 0x8a, 0, 10, 0, 0, b'o', b'k']);
        let datagram = udp_datagram(&frame).unwrap();
        assert_eq!(datagram.source, SocketAddr::new(source.into(), 40000));
        assert_eq!(datagram.payload, b"ok");
    }

    #[test]
    fn anything_short_or_odd_is_refused_without_panicking() {
        let good = ipv4_frame(false, 0, b"<13>hello", 0);
        for cut in 0..good.len() - 9 {
            assert!(udp_datagram(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut fragment = good.clone();
        fragment[20] = 0x20;
        assert!(udp_datagram(&fragment).is_none());
        let mut long = good.clone();
        long[14 + 20 + 5] = 200;
        assert!(udp_datagram(&long).is_none(), "UDP length past the frame");
        let mut bad_ihl = good;
        bad_ihl[14] = 0x44;
        assert!(udp_datagram(&bad_ihl).is_none());
        for length in 0..64 {
            let noise: Vec<u8> = (0..length).map(|i| (i * 37 % 251) as u8).collect();
            let _ = udp_datagram(&noise);
        }
    }
}
