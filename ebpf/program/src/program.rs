use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap, lpm_trie::Key},
    programs::XdpContext,
};
use killkrill_ebpf_common::{
    COUNTER_SLOTS, ETHER_TYPE_IPV4, ETHER_TYPE_IPV6, ETHER_TYPE_QINQ, ETHER_TYPE_VLAN, EthernetHeader,
    IP_PROTOCOL_UDP, IPV6_NEXT_HEADER_AUTH, IPV6_NEXT_HEADER_DEST_OPTS, IPV6_NEXT_HEADER_FRAGMENT,
    IPV6_NEXT_HEADER_HOP_BY_HOP, IPV6_NEXT_HEADER_ROUTING, MAX_IPV6_EXTENSION_HEADERS, MAX_PORTS,
    MAX_PREFIXES, MAX_QUEUES, MAX_RATE_SOURCES, NANO_TOKENS_PER_TOKEN, SourceAddress, TokenBucket,
    XdpListener, XdpReason, XdpSettings, counter_index,
};

#[map(name = "KILLKRILL_COUNTERS")]
static KILLKRILL_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);
#[map(name = "KILLKRILL_PORTS")]
static KILLKRILL_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(MAX_PORTS, 0);
#[map(name = "KILLKRILL_SOCKETS")]
static KILLKRILL_SOCKETS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);
#[map(name = "KILLKRILL_SETTINGS")]
static KILLKRILL_SETTINGS: Array<XdpSettings> = Array::with_max_entries(1, 0);
#[map(name = "KILLKRILL_ALLOW_V4")]
static KILLKRILL_ALLOW_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "KILLKRILL_ALLOW_V6")]
static KILLKRILL_ALLOW_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "KILLKRILL_DENY_V4")]
static KILLKRILL_DENY_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "KILLKRILL_DENY_V6")]
static KILLKRILL_DENY_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "KILLKRILL_RATE")]
static KILLKRILL_RATE: LruHashMap<SourceAddress, TokenBucket> =
    LruHashMap::with_max_entries(MAX_RATE_SOURCES, 0);

const VLAN_TAG_LEN: usize = 4;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const MAX_VLAN_TAGS: usize = 2;
/// Keeps header offsets small and provably bounded for the verifier; no real stack of
/// headers in front of UDP comes near it.
const MAX_HEADER_OFFSET: usize = 512;

/// What the walk of a frame found.
enum Verdict {
    /// Not for a listener: pass untouched.
    Other,
    Fragment,
    /// Cut short or inconsistent, before a listener could be told.
    Malformed,
    /// A UDP datagram for `listener` whose UDP length disagrees with the frame.
    MalformedFor(XdpListener),
    /// A well-formed UDP datagram for `listener` from `source`.
    Matched(XdpListener, Source),
}

#[derive(Clone, Copy)]
enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

#[xdp]
pub fn killkrill_xdp(ctx: XdpContext) -> u32 {
    count(XdpListener::None, XdpReason::Seen);
    match classify(&ctx) {
        Verdict::Other => pass(XdpListener::None, XdpReason::Passed),
        Verdict::Fragment => pass(XdpListener::None, XdpReason::Fragment),
        Verdict::Malformed => pass(XdpListener::None, XdpReason::Malformed),
        Verdict::MalformedFor(listener) => pass(listener, XdpReason::Malformed),
        Verdict::Matched(listener, source) => {
            count(listener, XdpReason::Matched);
            steer(&ctx, listener, source)
        }
    }
}

/// Applies the source policy to a matched datagram and redirects it to the socket of its
/// rx queue, or passes it when there is none.
#[inline(always)]
fn steer(ctx: &XdpContext, listener: XdpListener, source: Source) -> u32 {
    let settings = KILLKRILL_SETTINGS.get(0).copied().unwrap_or_default();
    if !source_allowed(source, settings.allow_list_active != 0) {
        return drop_counted(listener, XdpReason::Denied);
    }
    if settings.rate_per_second != 0 && !take_token(source, &settings) {
        return drop_counted(listener, XdpReason::RateLimited);
    }
    let queue = ctx.rx_queue_index();
    match KILLKRILL_SOCKETS.get(queue) {
        None => pass(listener, XdpReason::PassedNoSocket),
        // The kernel drops a redirect to a socket bound to another queue; pass it instead.
        Some(bound_queue) if bound_queue != queue => pass(listener, XdpReason::RedirectFailed),
        Some(_) => {
            // A socket removed since the lookup makes the helper return the flags' action
            // (XDP_PASS); anything but XDP_REDIRECT is a failure, and the frame is passed.
            match KILLKRILL_SOCKETS.redirect(queue, u64::from(xdp_action::XDP_PASS)) {
                Ok(action) if action == xdp_action::XDP_REDIRECT => {
                    count(listener, XdpReason::Redirected);
                    action
                }
                _ => pass(listener, XdpReason::RedirectFailed),
            }
        }
    }
}

#[inline(always)]
fn pass(listener: XdpListener, reason: XdpReason) -> u32 {
    count(listener, reason);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn drop_counted(listener: XdpListener, reason: XdpReason) -> u32 {
    count(listener, reason);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn count(listener: XdpListener, reason: XdpReason) {
    if let Some(slot) = KILLKRILL_COUNTERS.get_ptr_mut(counter_index(listener, reason)) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += 1 };
    }
}

/// Deny wins; a non-empty allow list admits only the sources it lists.
#[inline(always)]
fn source_allowed(source: Source, allow_list_active: bool) -> bool {
    match source {
        Source::V4(address) => {
            let key = Key::new(32, address);
            if KILLKRILL_DENY_V4.get(&key).is_some() {
                return false;
            }
            !allow_list_active || KILLKRILL_ALLOW_V4.get(&key).is_some()
        }
        Source::V6(address) => {
            let key = Key::new(128, address);
            if KILLKRILL_DENY_V6.get(&key).is_some() {
                return false;
            }
            !allow_list_active || KILLKRILL_ALLOW_V6.get(&key).is_some()
        }
    }
}

/// Token bucket per source. Buckets are shared by CPUs and updated without atomics: two
/// CPUs taking a token from one bucket at the same instant may both succeed, which errs
/// towards accepting (RSS usually keeps one source on one queue anyway).
#[inline(always)]
fn take_token(source: Source, settings: &XdpSettings) -> bool {
    let key = source_key(source);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let full = settings.burst * NANO_TOKENS_PER_TOKEN;
    match KILLKRILL_RATE.get_ptr_mut(key) {
        Some(bucket) => {
            // SAFETY: the pointer is the map's value for this key, valid during this run.
            let bucket = unsafe { &mut *bucket };
            let mut elapsed = now.wrapping_sub(bucket.updated_ns);
            if elapsed > settings.fill_ns {
                elapsed = settings.fill_ns;
            }
            // User space bounds rate and burst so that this cannot overflow.
            let mut tokens = bucket.nano_tokens + elapsed * settings.rate_per_second;
            if tokens > full {
                tokens = full;
            }
            bucket.updated_ns = now;
            if tokens < NANO_TOKENS_PER_TOKEN {
                bucket.nano_tokens = tokens;
                return false;
            }
            bucket.nano_tokens = tokens - NANO_TOKENS_PER_TOKEN;
            true
        }
        None => {
            if full < NANO_TOKENS_PER_TOKEN {
                return false;
            }
            let bucket = TokenBucket { nano_tokens: full - NANO_TOKENS_PER_TOKEN, updated_ns: now };
            // A full LRU map evicts its oldest entry; a failed insert only forgets the bucket.
            let _ = KILLKRILL_RATE.insert(key, bucket, 0);
            true
        }
    }
}

#[inline(always)]
fn source_key(source: Source) -> SourceAddress {
    match source {
        Source::V6(bytes) => SourceAddress { bytes },
        Source::V4([a, b, c, d]) => {
            SourceAddress { bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] }
        }
    }
}

/// Returns the pointer to `T` at `offset` if the whole `T` lies inside the frame.
#[inline(always)]
fn header<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let value: *const T = header(ctx, offset)?;
    // SAFETY: `header` checked the value lies inside the frame; packet data has no
    // alignment guarantee, hence the unaligned read.
    Some(unsafe { value.read_unaligned() })
}

#[inline(always)]
fn read_u16_be(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// Walks Ethernet, up to two VLAN tags, the IP header (and IPv6 extension headers) and
/// UDP, and says what the frame is.
#[inline(always)]
fn classify(ctx: &XdpContext) -> Verdict {
    let Some(ethernet) = read::<EthernetHeader>(ctx, 0) else { return Verdict::Malformed };
    let mut ether_type = u16::from_be_bytes(ethernet.ether_type);
    let mut offset = core::mem::size_of::<EthernetHeader>();
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETHER_TYPE_VLAN && ether_type != ETHER_TYPE_QINQ {
            break;
        }
        let Some(inner) = read_u16_be(ctx, offset + 2) else { return Verdict::Malformed };
        ether_type = inner;
        offset += VLAN_TAG_LEN;
    }
    let walked = match ether_type {
        ETHER_TYPE_IPV4 => ipv4(ctx, offset),
        ETHER_TYPE_IPV6 => ipv6(ctx, offset),
        _ => return Verdict::Other,
    };
    match walked {
        Ok((udp_offset, source)) => udp(ctx, udp_offset, source),
        Err(verdict) => verdict,
    }
}

/// The UDP header's offset and the source address, or what to do with the frame.
#[inline(always)]
fn ipv4(ctx: &XdpContext, offset: usize) -> Result<(usize, Source), Verdict> {
    let Some(version_ihl) = read::<u8>(ctx, offset) else { return Err(Verdict::Malformed) };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_MIN_HEADER_LEN {
        return Err(Verdict::Malformed);
    }
    // The fixed header must be whole before any field is trusted.
    let Some(fixed) = read::<[u8; IPV4_MIN_HEADER_LEN]>(ctx, offset) else { return Err(Verdict::Malformed) };
    let flags_fragment = u16::from_be_bytes([fixed[6], fixed[7]]);
    // More-fragments flag or a non-zero fragment offset.
    if flags_fragment & 0x3fff != 0 {
        return Err(Verdict::Fragment);
    }
    if fixed[9] != IP_PROTOCOL_UDP {
        return Err(Verdict::Other);
    }
    let source = Source::V4([fixed[12], fixed[13], fixed[14], fixed[15]]);
    Ok((offset + header_len, source))
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize) -> Result<(usize, Source), Verdict> {
    let Some(fixed) = read::<[u8; IPV6_HEADER_LEN]>(ctx, offset) else { return Err(Verdict::Malformed) };
    if fixed[0] >> 4 != 6 {
        return Err(Verdict::Malformed);
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&fixed[8..24]);
    let mut next_header = fixed[6];
    let mut offset = offset + IPV6_HEADER_LEN;
    for _ in 0..MAX_IPV6_EXTENSION_HEADERS {
        let length = match next_header {
            IP_PROTOCOL_UDP => return Ok((offset, Source::V6(source))),
            IPV6_NEXT_HEADER_FRAGMENT => return Err(Verdict::Fragment),
            IPV6_NEXT_HEADER_HOP_BY_HOP | IPV6_NEXT_HEADER_ROUTING | IPV6_NEXT_HEADER_DEST_OPTS => {
                let Some([next, units]) = read::<[u8; 2]>(ctx, offset) else {
                    return Err(Verdict::Malformed);
                };
                next_header = next;
                (usize::from(units) + 1) * 8
            }
            // The authentication header counts its length in 4-octet units, minus 2.
            IPV6_NEXT_HEADER_AUTH => {
                let Some([next, units]) = read::<[u8; 2]>(ctx, offset) else {
                    return Err(Verdict::Malformed);
                };
                next_header = next;
                (usize::from(units) + 2) * 4
            }
            _ => return Err(Verdict::Other),
        };
        offset += length;
        if offset > MAX_HEADER_OFFSET {
            return Err(Verdict::Malformed);
        }
    }
    if next_header == IP_PROTOCOL_UDP {
        return Ok((offset, Source::V6(source)));
    }
    Err(Verdict::Other)
}

#[inline(always)]
fn udp(ctx: &XdpContext, offset: usize, source: Source) -> Verdict {
    if offset > MAX_HEADER_OFFSET {
        return Verdict::Malformed;
    }
    let Some(header) = read::<[u8; UDP_HEADER_LEN]>(ctx, offset) else { return Verdict::Malformed };
    let port = u16::from_be_bytes([header[2], header[3]]);
    let Some(listener) = KILLKRILL_PORTS.get_ptr(port).and_then(|value| {
        // SAFETY: the pointer is the map's value for this key, valid during this run.
        XdpListener::from_u32(unsafe { *value })
    }) else {
        return Verdict::Other;
    };
    // The UDP length covers header and payload and must fit in what arrived; Ethernet
    // padding may follow it. Zero (IPv6 jumbograms) is not supported: malformed.
    let udp_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let available = ctx.data_end() - ctx.data() - offset;
    if udp_len < UDP_HEADER_LEN || udp_len > available {
        return Verdict::MalformedFor(listener);
    }
    Verdict::Matched(listener, source)
}
