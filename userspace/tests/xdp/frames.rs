//! Hand-built Ethernet frames for the XDP tests.

use std::net::IpAddr;

pub const ETHER_IPV4: u16 = 0x0800;
pub const ETHER_IPV6: u16 = 0x86dd;

/// What to build; `udp_len` overrides the UDP length field, `ihl_words` the IPv4 header
/// length (the options bytes still follow `options_words`).
#[derive(Clone)]
pub struct Udp {
    pub source: IpAddr,
    pub port: u16,
    pub payload: Vec<u8>,
    pub vlan_tags: Vec<u16>,
    pub options_words: u8,
    pub flags_fragment: u16,
    pub protocol: u8,
    pub ipv6_extensions: Vec<u8>,
    pub udp_len: Option<u16>,
    pub ihl_words: Option<u8>,
    pub padding: usize,
}

impl Udp {
    pub fn to(port: u16) -> Self {
        Self {
            source: "10.0.0.1".parse().unwrap(),
            port,
            payload: b"<13>1 2026-11-23T10:00:00Z host app - - - hello".to_vec(),
            vlan_tags: Vec::new(),
            options_words: 0,
            flags_fragment: 0,
            protocol: 17,
            ipv6_extensions: Vec::new(),
            udp_len: None,
            ihl_words: None,
            padding: 0,
        }
    }

    pub fn from(mut self, source: &str) -> Self {
        self.source = source.parse().unwrap();
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn vlan(mut self, tags: &[u16]) -> Self {
        self.vlan_tags = tags.to_vec();
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        let ether_type = if self.source.is_ipv4() { ETHER_IPV4 } else { ETHER_IPV6 };
        for (index, tag) in self.vlan_tags.iter().enumerate() {
            // Outer tag of a stack is 802.1ad, inner ones 802.1Q.
            let tpid: u16 = if index == 0 && self.vlan_tags.len() > 1 { 0x88a8 } else { 0x8100 };
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tag.to_be_bytes());
        }
        frame.extend_from_slice(&ether_type.to_be_bytes());
        let udp = self.udp();
        match self.source {
            IpAddr::V4(source) => {
                let header_len = 20 + usize::from(self.options_words) * 4;
                let total = (header_len + udp.len()) as u16;
                let ihl = self.ihl_words.unwrap_or(5 + self.options_words);
                frame.extend_from_slice(&[0x40 | ihl, 0]);
                frame.extend_from_slice(&total.to_be_bytes());
                frame.extend_from_slice(&[0, 1]);
                frame.extend_from_slice(&self.flags_fragment.to_be_bytes());
                frame.extend_from_slice(&[64, self.protocol, 0, 0]);
                frame.extend_from_slice(&source.octets());
                frame.extend_from_slice(&[10, 0, 0, 2]);
                frame.extend(std::iter::repeat_n(1u8, usize::from(self.options_words) * 4));
            }
            IpAddr::V6(source) => {
                let extensions = self.extension_headers();
                let first = self.ipv6_extensions.first().copied().unwrap_or(self.protocol);
                frame.extend_from_slice(&[0x60, 0, 0, 0]);
                frame.extend_from_slice(&((extensions.len() + udp.len()) as u16).to_be_bytes());
                frame.extend_from_slice(&[first, 64]);
                frame.extend_from_slice(&source.octets());
                frame.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
                frame.extend(extensions);
            }
        }
        frame.extend(udp);
        frame.extend(std::iter::repeat_n(0u8, self.padding));
        frame
    }

    fn udp(&self) -> Vec<u8> {
        let mut udp = Vec::new();
        udp.extend_from_slice(&40000u16.to_be_bytes());
        udp.extend_from_slice(&self.port.to_be_bytes());
        let len = self.udp_len.unwrap_or((8 + self.payload.len()) as u16);
        udp.extend_from_slice(&len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&self.payload);
        udp
    }

    /// Each listed extension header, chained, the last pointing at `protocol`.
    fn extension_headers(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (index, &kind) in self.ipv6_extensions.iter().enumerate() {
            let next = self.ipv6_extensions.get(index + 1).copied().unwrap_or(self.protocol);
            match kind {
                // Authentication header: 12 fixed bytes + 4 of ICV = 16 = (2 + 2) * 4.
                51 => bytes.extend_from_slice(&[next, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
                // Fragment header: 8 bytes, offset 0, more fragments.
                44 => bytes.extend_from_slice(&[next, 0, 0, 1, 0, 0, 0, 7]),
                // Hop-by-hop, routing, destination options: 16 bytes = (1 + 1) * 8.
                _ => {
                    bytes.extend_from_slice(&[next, 1]);
                    bytes.extend(std::iter::repeat_n(0u8, 14));
                }
            }
        }
        bytes
    }
}

/// An Ethernet header with `ether_type` and `rest` after it.
pub fn ethernet(ether_type: u16, rest: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(rest);
    frame
}
