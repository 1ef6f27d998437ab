//! `#[repr(C)]` types and constants shared by the XDP program (`killkrill-ebpf`) and user
//! space. One definition here keeps both sides byte-compatible; sizes are pinned by
//! compile-time assertions so a field added on one side cannot silently shift the other.
#![no_std]

/// Name of the XDP program inside the object file.
pub const XDP_PROGRAM_NAME: &str = "killkrill_xdp";
/// Name of the per-CPU counter array map.
pub const COUNTERS_MAP_NAME: &str = "KILLKRILL_COUNTERS";

/// Why the XDP program counted a packet; the value is the index into the per-CPU counter
/// array. Append only: user space and dashboards rely on the numbering.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketCounter {
    /// Every frame the program saw.
    Seen = 0,
    /// Frames handed to the kernel stack unchanged.
    Passed = 1,
    /// IPv4 or IPv6 UDP datagrams (not fragments).
    Udp = 2,
    /// Frames whose headers were cut short or inconsistent; passed to the kernel.
    Malformed = 3,
    /// IP fragments; always passed to the kernel, which reassembles them.
    Fragment = 4,
}

impl PacketCounter {
    /// Number of counters, i.e. the size of the counter array map.
    pub const COUNT: u32 = 5;
    pub const ALL: [PacketCounter; Self::COUNT as usize] = [
        PacketCounter::Seen,
        PacketCounter::Passed,
        PacketCounter::Udp,
        PacketCounter::Malformed,
        PacketCounter::Fragment,
    ];

    /// Stable label used in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            PacketCounter::Seen => "seen",
            PacketCounter::Passed => "passed",
            PacketCounter::Udp => "udp",
            PacketCounter::Malformed => "malformed",
            PacketCounter::Fragment => "fragment",
        }
    }
}

/// Ethernet header as it is on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthernetHeader {
    pub destination: [u8; 6],
    pub source: [u8; 6],
    /// Big-endian EtherType.
    pub ether_type: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<EthernetHeader>() == 14);

pub const ETHER_TYPE_IPV4: u16 = 0x0800;
pub const ETHER_TYPE_IPV6: u16 = 0x86dd;
pub const ETHER_TYPE_VLAN: u16 = 0x8100;
pub const ETHER_TYPE_QINQ: u16 = 0x88a8;
pub const IP_PROTOCOL_UDP: u8 = 17;
pub const IPV6_NEXT_HEADER_FRAGMENT: u8 = 44;
