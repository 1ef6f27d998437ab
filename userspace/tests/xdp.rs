//! The XDP program, run by the kernel on hand-built frames (BPF_PROG_TEST_RUN): each
//! frame's verdict and the counter it moves. Needs root or CAP_BPF; skipped with a
//! printed reason where the kernel refuses.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use killkrill_dataplane::xdp;
use killkrill_ebpf_common::{PacketCounter, XDP_PROGRAM_NAME};

const XDP_PASS: u32 = 2;

fn ethernet(ether_type: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

fn ipv4_udp(options_words: u8, flags_fragment: u16, payload: &[u8]) -> Vec<u8> {
    let header_len = 20 + usize::from(options_words) * 4;
    let total = header_len + 8 + payload.len();
    let mut packet = vec![0x40 | (5 + options_words), 0];
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 1]);
    packet.extend_from_slice(&flags_fragment.to_be_bytes());
    packet.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    packet.extend(std::iter::repeat_n(1u8, usize::from(options_words) * 4));
    packet.extend_from_slice(&40000u16.to_be_bytes());
    packet.extend_from_slice(&514u16.to_be_bytes());
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}

fn ipv6_udp(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&[next_header, 64]);
    packet.extend_from_slice(&[0xfd; 16]);
    packet.extend_from_slice(&[0xfd; 16]);
    packet.extend_from_slice(&[0x9c, 0x40, 0x02, 0x02, 0, 8 + payload.len() as u8, 0, 0]);
    packet.extend_from_slice(payload);
    packet
}

fn vlan(tags: &[u16], inner_type: u16, packet: Vec<u8>) -> Vec<u8> {
    let mut frame = ethernet(if tags.len() > 1 { 0x88a8 } else { 0x8100 });
    for (index, tag) in tags.iter().enumerate() {
        frame.extend_from_slice(&tag.to_be_bytes());
        let next = if index + 1 < tags.len() { 0x8100 } else { inner_type };
        frame.extend_from_slice(&next.to_be_bytes());
    }
    frame.extend(packet);
    frame
}

fn with(mut head: Vec<u8>, tail: Vec<u8>) -> Vec<u8> {
    head.extend(tail);
    head
}

#[test]
fn every_frame_is_passed_and_counted_by_kind() {
    let ebpf = match xdp::load() {
        Ok(ebpf) => ebpf,
        Err(error) => {
            eprintln!("skipped: the kernel refused the XDP program here ({error}); run as root");
            return;
        }
    };
    let payload = b"<13>hello";
    let cases: Vec<(&str, Vec<u8>, Option<PacketCounter>)> = vec![
        ("IPv4 UDP", with(ethernet(0x0800), ipv4_udp(0, 0, payload)), Some(PacketCounter::Udp)),
        (
            "IPv4 UDP with IP options",
            with(ethernet(0x0800), ipv4_udp(2, 0, payload)),
            Some(PacketCounter::Udp),
        ),
        (
            "IPv4 first fragment",
            with(ethernet(0x0800), ipv4_udp(0, 0x2000, payload)),
            Some(PacketCounter::Fragment),
        ),
        (
            "IPv4 later fragment",
            with(ethernet(0x0800), ipv4_udp(0, 0x0010, payload)),
            Some(PacketCounter::Fragment),
        ),
        ("IPv6 UDP", with(ethernet(0x86dd), ipv6_udp(17, payload)), Some(PacketCounter::Udp)),
        (
            "IPv6 fragment header",
            with(ethernet(0x86dd), ipv6_udp(44, payload)),
            Some(PacketCounter::Fragment),
        ),
        ("one VLAN tag", vlan(&[100], 0x0800, ipv4_udp(0, 0, payload)), Some(PacketCounter::Udp)),
        ("two VLAN tags", vlan(&[100, 200], 0x86dd, ipv6_udp(17, payload)), Some(PacketCounter::Udp)),
        ("ARP", with(ethernet(0x0806), vec![0; 28]), None),
        ("truncated IPv4 header", with(ethernet(0x0800), vec![0x45, 0, 0]), Some(PacketCounter::Malformed)),
        (
            "IPv4 header length below 20",
            with(ethernet(0x0800), {
                let mut packet = ipv4_udp(0, 0, payload);
                packet[0] = 0x44;
                packet
            }),
            Some(PacketCounter::Malformed),
        ),
        (
            "UDP header cut short",
            with(ethernet(0x0800), ipv4_udp(0, 0, b"")[..24].to_vec()),
            Some(PacketCounter::Malformed),
        ),
    ];
    let program: &Xdp = ebpf.program(XDP_PROGRAM_NAME).unwrap().try_into().unwrap();
    for (name, frame, counter) in &cases {
        let before = xdp::read_counters(&ebpf).unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .unwrap_or_else(|error| panic!("{name}: test run failed: {error}"));
        assert_eq!(result.return_value, XDP_PASS, "{name}: everything goes to the kernel stack for now");
        let after = xdp::read_counters(&ebpf).unwrap();
        let moved = |counter: PacketCounter| after[counter as usize] - before[counter as usize];
        assert_eq!(moved(PacketCounter::Seen), 1, "{name}");
        assert_eq!(moved(PacketCounter::Passed), 1, "{name}");
        for other in [PacketCounter::Udp, PacketCounter::Fragment, PacketCounter::Malformed] {
            let expected = u64::from(*counter == Some(other));
            assert_eq!(moved(other), expected, "{name}: counter {}", other.label());
        }
    }
}
