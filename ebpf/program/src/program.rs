use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use killkrill_ebpf_common::{
    ETHER_TYPE_IPV4, ETHER_TYPE_IPV6, ETHER_TYPE_QINQ, ETHER_TYPE_VLAN, EthernetHeader, IP_PROTOCOL_UDP,
    IPV6_NEXT_HEADER_FRAGMENT, PacketCounter,
};

#[map(name = "KILLKRILL_COUNTERS")]
static KILLKRILL_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PacketCounter::COUNT, 0);

const VLAN_TAG_LEN: usize = 4;
const IPV6_HEADER_LEN: usize = 40;
const MAX_VLAN_TAGS: usize = 2;

#[xdp]
pub fn killkrill_xdp(ctx: XdpContext) -> u32 {
    count(PacketCounter::Seen);
    match classify(&ctx) {
        Ok(Some(counter)) | Err(counter) => count(counter),
        Ok(None) => {}
    }
    count(PacketCounter::Passed);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(counter: PacketCounter) {
    if let Some(slot) = KILLKRILL_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += 1 };
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
fn read_u16_be(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let bytes: *const [u8; 2] = header(ctx, offset)?;
    // SAFETY: `header` checked the two bytes lie inside the frame.
    Some(u16::from_be_bytes(unsafe { *bytes }))
}

#[inline(always)]
fn read_u8(ctx: &XdpContext, offset: usize) -> Option<u8> {
    let byte: *const u8 = header(ctx, offset)?;
    // SAFETY: `header` checked the byte lies inside the frame.
    Some(unsafe { *byte })
}

/// Walks Ethernet, up to two VLAN tags and the IP header. `Ok(Some(counter))` names what
/// the frame is when that is worth counting (UDP, fragment), `Ok(None)` is other traffic,
/// `Err(Malformed)` a frame whose headers are cut short or inconsistent.
#[inline(always)]
fn classify(ctx: &XdpContext) -> Result<Option<PacketCounter>, PacketCounter> {
    let ethernet: *const EthernetHeader = header(ctx, 0).ok_or(PacketCounter::Malformed)?;
    // SAFETY: bounds checked by `header`.
    let mut ether_type = u16::from_be_bytes(unsafe { (*ethernet).ether_type });
    let mut offset = core::mem::size_of::<EthernetHeader>();
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETHER_TYPE_VLAN && ether_type != ETHER_TYPE_QINQ {
            break;
        }
        ether_type = read_u16_be(ctx, offset + 2).ok_or(PacketCounter::Malformed)?;
        offset += VLAN_TAG_LEN;
    }
    match ether_type {
        ETHER_TYPE_IPV4 => {
            let version_ihl = read_u8(ctx, offset).ok_or(PacketCounter::Malformed)?;
            let header_len = usize::from(version_ihl & 0x0f) * 4;
            if version_ihl >> 4 != 4 || header_len < 20 {
                return Err(PacketCounter::Malformed);
            }
            let flags_fragment = read_u16_be(ctx, offset + 6).ok_or(PacketCounter::Malformed)?;
            // More-fragments flag or a non-zero fragment offset.
            if flags_fragment & 0x3fff != 0 {
                return Ok(Some(PacketCounter::Fragment));
            }
            let protocol = read_u8(ctx, offset + 9).ok_or(PacketCounter::Malformed)?;
            if protocol == IP_PROTOCOL_UDP {
                // The UDP header must be inside the frame too.
                read_u16_be(ctx, offset + header_len + 6).ok_or(PacketCounter::Malformed)?;
                return Ok(Some(PacketCounter::Udp));
            }
            Ok(None)
        }
        ETHER_TYPE_IPV6 => {
            let next_header = read_u8(ctx, offset + 6).ok_or(PacketCounter::Malformed)?;
            if next_header == IPV6_NEXT_HEADER_FRAGMENT {
                return Ok(Some(PacketCounter::Fragment));
            }
            if next_header == IP_PROTOCOL_UDP {
                read_u16_be(ctx, offset + IPV6_HEADER_LEN + 6).ok_or(PacketCounter::Malformed)?;
                return Ok(Some(PacketCounter::Udp));
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}
