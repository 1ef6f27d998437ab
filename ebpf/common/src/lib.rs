//! `#[repr(C)]` types and constants shared by the XDP program (`killkrill-ebpf`) and user
//! space. One definition here keeps both sides byte-compatible; sizes are pinned by
//! compile-time assertions so a field added on one side cannot silently shift the other.
//!
//! The program steers UDP datagrams for configured ports to AF_XDP sockets; see
//! docs/capture.md for the behaviour and docs/adr/0009-xdp-steering-policy.md for why.
#![no_std]

/// Name of the XDP program inside the object file.
pub const XDP_PROGRAM_NAME: &str = "killkrill_xdp";
/// Per-CPU counter array, indexed by [`counter_index`].
pub const COUNTERS_MAP_NAME: &str = "KILLKRILL_COUNTERS";
/// Hash map: UDP destination port (host order, `u16`) -> [`XdpListener`] (`u32`).
pub const PORTS_MAP_NAME: &str = "KILLKRILL_PORTS";
/// XSKMAP: rx queue index -> AF_XDP socket.
pub const SOCKETS_MAP_NAME: &str = "KILLKRILL_SOCKETS";
/// Array of one [`XdpSettings`].
pub const SETTINGS_MAP_NAME: &str = "KILLKRILL_SETTINGS";
/// LPM tries of source prefixes: key `{prefix_len: u32, address: [u8; 4 or 16]}`, value `u32` 1.
pub const ALLOW_V4_MAP_NAME: &str = "KILLKRILL_ALLOW_V4";
pub const ALLOW_V6_MAP_NAME: &str = "KILLKRILL_ALLOW_V6";
pub const DENY_V4_MAP_NAME: &str = "KILLKRILL_DENY_V4";
pub const DENY_V6_MAP_NAME: &str = "KILLKRILL_DENY_V6";
/// LRU hash: [`SourceAddress`] -> [`TokenBucket`].
pub const RATE_MAP_NAME: &str = "KILLKRILL_RATE";

/// Every map the program has, for pinning.
pub const MAP_NAMES: [&str; 9] = [
    COUNTERS_MAP_NAME,
    PORTS_MAP_NAME,
    SOCKETS_MAP_NAME,
    SETTINGS_MAP_NAME,
    ALLOW_V4_MAP_NAME,
    ALLOW_V6_MAP_NAME,
    DENY_V4_MAP_NAME,
    DENY_V6_MAP_NAME,
    RATE_MAP_NAME,
];

/// Largest rx queue index an AF_XDP socket can be registered for, plus one.
pub const MAX_QUEUES: u32 = 256;
/// Most UDP ports that can be steered at once.
pub const MAX_PORTS: u32 = 64;
/// Most prefixes in each allow or deny trie.
pub const MAX_PREFIXES: u32 = 16_384;
/// Sources tracked by the rate limiter; the least recently seen are forgotten first.
pub const MAX_RATE_SOURCES: u32 = 65_536;
/// Bounds user space enforces so that `rate * fill_ns` cannot overflow in the program.
pub const MAX_RATE_PER_SECOND: u64 = 1_000_000_000;
pub const MAX_BURST: u64 = 1_000_000_000;
/// Tokens are counted in billionths, so that nanoseconds times a per-second rate is exact.
pub const NANO_TOKENS_PER_TOKEN: u64 = 1_000_000_000;

/// Which listener a steered port belongs to; index into the counters. `None` collects
/// what belongs to no listener (other traffic, fragments, frames cut short).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpListener {
    None = 0,
    Syslog = 1,
    Statsd = 2,
    Influx = 3,
}

impl XdpListener {
    pub const COUNT: u32 = 4;
    pub const ALL: [XdpListener; Self::COUNT as usize] =
        [XdpListener::None, XdpListener::Syslog, XdpListener::Statsd, XdpListener::Influx];

    /// Stable label used in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            XdpListener::None => "none",
            XdpListener::Syslog => "syslog",
            XdpListener::Statsd => "statsd",
            XdpListener::Influx => "influx",
        }
    }

    /// The listener stored in the ports map; `None` for values the program does not know.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(XdpListener::Syslog),
            2 => Some(XdpListener::Statsd),
            3 => Some(XdpListener::Influx),
            _ => None,
        }
    }
}

/// Why a frame was counted. Append only: user space and dashboards rely on the numbering.
///
/// Every frame counts `Seen` (listener `None`) and then exactly one of: `Passed`,
/// `Fragment` or `Malformed` under listener `None`, or `Matched` or `Malformed` under the
/// listener whose port it was sent to. Every `Matched` frame then counts exactly one of
/// `Redirected`, `PassedNoSocket`, `Denied`, `RateLimited`, `RedirectFailed`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpReason {
    /// Every frame the program saw (listener `None` only).
    Seen = 0,
    /// Not for a listener (other ports, other protocols); passed to the kernel untouched.
    Passed = 1,
    /// IP fragments; always passed, the kernel reassembles them.
    Fragment = 2,
    /// Headers cut short or inconsistent; passed to the kernel, which drops what it must.
    Malformed = 3,
    /// UDP datagrams for a configured port.
    Matched = 4,
    /// Redirected to the AF_XDP socket of the rx queue.
    Redirected = 5,
    /// No AF_XDP socket registered for the rx queue: passed to the kernel, where the
    /// socket listener receives it.
    PassedNoSocket = 6,
    /// Dropped: the source is on the deny list, or not on a non-empty allow list.
    Denied = 7,
    /// Dropped: the source's token bucket was empty.
    RateLimited = 8,
    /// The socket registered for the queue is bound to another queue (a redirect would
    /// be dropped by the kernel), or the redirect helper failed: passed to the kernel.
    RedirectFailed = 9,
}

impl XdpReason {
    pub const COUNT: u32 = 10;
    pub const ALL: [XdpReason; Self::COUNT as usize] = [
        XdpReason::Seen,
        XdpReason::Passed,
        XdpReason::Fragment,
        XdpReason::Malformed,
        XdpReason::Matched,
        XdpReason::Redirected,
        XdpReason::PassedNoSocket,
        XdpReason::Denied,
        XdpReason::RateLimited,
        XdpReason::RedirectFailed,
    ];

    /// Stable label used in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            XdpReason::Seen => "seen",
            XdpReason::Passed => "passed",
            XdpReason::Fragment => "fragment",
            XdpReason::Malformed => "malformed",
            XdpReason::Matched => "matched",
            XdpReason::Redirected => "redirected",
            XdpReason::PassedNoSocket => "passed_no_socket",
            XdpReason::Denied => "denied",
            XdpReason::RateLimited => "rate_limited",
            XdpReason::RedirectFailed => "redirect_failed",
        }
    }
}

/// Number of slots in the counter map.
pub const COUNTER_SLOTS: u32 = XdpListener::COUNT * XdpReason::COUNT;

/// The counter map slot of a listener and reason.
#[inline(always)]
pub const fn counter_index(listener: XdpListener, reason: XdpReason) -> u32 {
    listener as u32 * XdpReason::COUNT + reason as u32
}

/// Run-time settings, the only entry of the settings array. All zero means: no allow
/// list, no rate limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpSettings {
    /// 1 when the allow list is non-empty: only listed sources are accepted (both
    /// families; an IPv4-only allow list refuses every IPv6 source).
    pub allow_list_active: u32,
    pub reserved: u32,
    /// Tokens added per second to each source's bucket; 0 disables rate limiting.
    pub rate_per_second: u64,
    /// Bucket size in tokens (messages).
    pub burst: u64,
    /// Nanoseconds an empty bucket takes to fill (`burst * 1e9 / rate`, rounded up); the
    /// program caps elapsed time at this so that `elapsed * rate` cannot overflow.
    pub fill_ns: u64,
}
const _: () = assert!(core::mem::size_of::<XdpSettings>() == 32);

/// A source address as the rate limiter keys it: IPv6, or IPv4 mapped into IPv6
/// (`::ffff:a.b.c.d`), network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceAddress {
    pub bytes: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SourceAddress>() == 16);

/// One source's token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens left, in billionths ([`NANO_TOKENS_PER_TOKEN`]).
    pub nano_tokens: u64,
    /// `bpf_ktime_get_ns` when the bucket was last refilled.
    pub updated_ns: u64,
}
const _: () = assert!(core::mem::size_of::<TokenBucket>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` structs of integers with no padding (sizes pinned above).
    unsafe impl aya::Pod for super::XdpSettings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SourceAddress {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TokenBucket {}
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
pub const IPV6_NEXT_HEADER_HOP_BY_HOP: u8 = 0;
pub const IPV6_NEXT_HEADER_ROUTING: u8 = 43;
pub const IPV6_NEXT_HEADER_FRAGMENT: u8 = 44;
pub const IPV6_NEXT_HEADER_AUTH: u8 = 51;
pub const IPV6_NEXT_HEADER_DEST_OPTS: u8 = 60;
/// Most IPv6 extension headers walked looking for UDP; a longer chain is passed to the
/// kernel as other traffic (counted `Passed`), which handles any length.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 6;
