//! Each branch of the program on hand-built frames: the action it returns and exactly the
//! counters it moves. Needs root (CAP_BPF); skipped with a printed reason otherwise.

use killkrill_dataplane::xdp::{
    RateLimit, XDP_DROP, XDP_PASS, XdpCounters, XdpListener, XdpReason, XdpSteering, parse_prefixes,
};

use super::frames::{ETHER_IPV4, ETHER_IPV6, Udp, ethernet};

const SYSLOG_PORT: u16 = 5514;
const STATSD_PORT: u16 = 8125;
const INFLUX_PORT: u16 = 8089;
const OTHER_PORT: u16 = 9999;

use XdpListener::{Influx, None as Unmatched, Statsd, Syslog};
use XdpReason::*;

/// The loaded program with the three listeners' ports, or None (printed) where the
/// kernel refuses BPF.
pub(super) fn steering() -> Option<XdpSteering> {
    let mut steering = match XdpSteering::load() {
        Ok(steering) => steering,
        Err(error) => {
            eprintln!("skipped: the kernel refused the XDP program here ({error}); run as root");
            return None;
        }
    };
    steering.set_ports(&[(SYSLOG_PORT, Syslog), (STATSD_PORT, Statsd), (INFLUX_PORT, Influx)]).unwrap();
    Some(steering)
}

/// Runs `frame` and checks the action and that exactly `expected` counters moved, by one.
struct Runner {
    steering: XdpSteering,
    sent: Vec<(XdpListener, XdpReason)>,
    start: XdpCounters,
}

impl Runner {
    fn new(steering: XdpSteering) -> Self {
        let start = steering.counters().unwrap();
        Self { steering, sent: Vec::new(), start }
    }

    fn check(&mut self, name: &str, frame: &[u8], action: u32, expected: &[(XdpListener, XdpReason)]) {
        let before = self.steering.counters().unwrap();
        let got =
            self.steering.test_run(frame).unwrap_or_else(|error| panic!("{name}: test run failed: {error}"));
        assert_eq!(got, action, "{name}: action");
        let moved = self.steering.counters().unwrap().since(&before);
        let mut wanted: Vec<_> = expected.to_vec();
        wanted.push((Unmatched, Seen));
        for (listener, reason, value) in moved.iter() {
            let expected = u64::from(wanted.contains(&(listener, reason)));
            assert_eq!(value, expected, "{name}: counter {}/{}", listener.label(), reason.label());
        }
        self.sent.extend(wanted);
    }

    /// The counters since the start equal the sum of what every check expected.
    fn check_totals(&self) {
        let total = self.steering.counters().unwrap().since(&self.start);
        for (listener, reason, value) in total.iter() {
            let expected = self.sent.iter().filter(|&&sent| sent == (listener, reason)).count() as u64;
            assert_eq!(value, expected, "total {}/{}", listener.label(), reason.label());
        }
    }
}

#[test]
fn every_branch_returns_its_action_and_moves_its_counter() {
    let Some(steering) = steering() else { return };
    let mut run = Runner::new(steering);
    let no_socket = |listener| vec![(listener, Matched), (listener, PassedNoSocket)];

    run.check("syslog IPv4", &Udp::to(SYSLOG_PORT).build(), XDP_PASS, &no_socket(Syslog));
    run.check(
        "statsd IPv4",
        &Udp::to(STATSD_PORT).payload(b"hits:1|c").build(),
        XDP_PASS,
        &no_socket(Statsd),
    );
    run.check("influx IPv4", &Udp::to(INFLUX_PORT).payload(b"cpu v=1").build(), XDP_PASS, &no_socket(Influx));
    run.check("other port", &Udp::to(OTHER_PORT).build(), XDP_PASS, &[(Unmatched, Passed)]);
    run.check(
        "IPv4 with options",
        &Udp { options_words: 3, ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "IPv4 with the longest header (IHL 15)",
        &Udp { options_words: 10, ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check("IPv6", &Udp::to(SYSLOG_PORT).from("2001:db8::7").build(), XDP_PASS, &no_socket(Syslog));
    run.check(
        "IPv6 to another port",
        &Udp::to(OTHER_PORT).from("2001:db8::7").build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );
    run.check(
        "IPv6 with hop-by-hop, routing, destination options and AH",
        &Udp { ipv6_extensions: vec![0, 43, 60, 51], ..Udp::to(STATSD_PORT).from("2001:db8::7") }.build(),
        XDP_PASS,
        &no_socket(Statsd),
    );
    run.check(
        "IPv6 with more extension headers than the walk follows",
        &Udp { ipv6_extensions: vec![0, 60, 60, 60, 60, 60, 60], ..Udp::to(STATSD_PORT).from("2001:db8::7") }
            .build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );
    run.check("one VLAN tag", &Udp::to(SYSLOG_PORT).vlan(&[100]).build(), XDP_PASS, &no_socket(Syslog));
    run.check(
        "two VLAN tags, IPv6",
        &Udp::to(INFLUX_PORT).from("2001:db8::7").vlan(&[100, 200]).build(),
        XDP_PASS,
        &no_socket(Influx),
    );
    run.check(
        "three VLAN tags are not followed",
        &Udp::to(SYSLOG_PORT).vlan(&[100, 200, 300]).build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );
    run.check(
        "IPv4 first fragment",
        &Udp { flags_fragment: 0x2000, ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &[(Unmatched, Fragment)],
    );
    run.check(
        "IPv4 later fragment",
        &Udp { flags_fragment: 0x0010, ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &[(Unmatched, Fragment)],
    );
    run.check(
        "IPv4 don't-fragment flag alone is no fragment",
        &Udp { flags_fragment: 0x4000, ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "IPv6 fragment header",
        &Udp { ipv6_extensions: vec![44], ..Udp::to(SYSLOG_PORT).from("2001:db8::7") }.build(),
        XDP_PASS,
        &[(Unmatched, Fragment)],
    );
    run.check(
        "IPv6 fragment header after hop-by-hop",
        &Udp { ipv6_extensions: vec![0, 44], ..Udp::to(SYSLOG_PORT).from("2001:db8::7") }.build(),
        XDP_PASS,
        &[(Unmatched, Fragment)],
    );
    run.check(
        "TCP to a steered port number",
        &Udp { protocol: 6, ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );
    run.check("ARP", &ethernet(0x0806, &[0; 28]), XDP_PASS, &[(Unmatched, Passed)]);
    run.check(
        "zero-length UDP payload",
        &Udp::to(SYSLOG_PORT).payload(b"").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "Ethernet padding after the datagram",
        &Udp { padding: 18, ..Udp::to(SYSLOG_PORT).payload(b"<13>x") }.build(),
        XDP_PASS,
        &no_socket(Syslog),
    );

    // Bad input: passed to the kernel and counted, never dropped.
    let syslog = Udp::to(SYSLOG_PORT).build();
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (EINVAL), so a
    // frame cut inside it cannot reach the program this way; the header alone can.
    assert!(run.steering.test_run(&syslog[..10]).is_err(), "the kernel refuses runts");
    run.check("Ethernet header only", &ethernet(ETHER_IPV4, &[]), XDP_PASS, &[(Unmatched, Malformed)]);
    run.check("VLAN tag cut short", &ethernet(0x8100, &[0, 100]), XDP_PASS, &[(Unmatched, Malformed)]);
    run.check("IPv4 header cut short", &syslog[..14 + 12], XDP_PASS, &[(Unmatched, Malformed)]);
    run.check(
        "IPv6 header cut short",
        &Udp::to(SYSLOG_PORT).from("2001:db8::7").build()[..14 + 30],
        XDP_PASS,
        &[(Unmatched, Malformed)],
    );
    run.check("UDP header cut short", &syslog[..14 + 20 + 5], XDP_PASS, &[(Unmatched, Malformed)]);
    run.check(
        "IPv4 header length below 20",
        &Udp { ihl_words: Some(4), ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &[(Unmatched, Malformed)],
    );
    run.check(
        "IPv4 header length past the frame",
        &Udp { ihl_words: Some(15), ..Udp::to(SYSLOG_PORT).payload(b"") }.build(),
        XDP_PASS,
        &[(Unmatched, Malformed)],
    );
    run.check(
        "IP version 6 in an IPv4 EtherType",
        &ethernet(ETHER_IPV4, &Udp::to(SYSLOG_PORT).from("2001:db8::7").build()[14..]),
        XDP_PASS,
        &[(Unmatched, Malformed)],
    );
    run.check(
        "IP version 4 in an IPv6 EtherType",
        &ethernet(ETHER_IPV6, &[&syslog[14..], &[0u8; 40][..]].concat()),
        XDP_PASS,
        &[(Unmatched, Malformed)],
    );
    run.check(
        "IPv6 extension header cut short",
        &Udp { ipv6_extensions: vec![0], ..Udp::to(SYSLOG_PORT).from("2001:db8::7") }.build()[..14 + 40 + 1],
        XDP_PASS,
        &[(Unmatched, Malformed)],
    );
    run.check(
        "UDP length below its header",
        &Udp { udp_len: Some(7), ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &[(Syslog, Malformed)],
    );
    run.check(
        "UDP length zero",
        &Udp { udp_len: Some(0), ..Udp::to(SYSLOG_PORT) }.build(),
        XDP_PASS,
        &[(Syslog, Malformed)],
    );
    run.check(
        "UDP length past the frame",
        &Udp { udp_len: Some(1000), ..Udp::to(STATSD_PORT) }.build(),
        XDP_PASS,
        &[(Statsd, Malformed)],
    );
    run.check(
        "bad UDP length to another port is not ours",
        &Udp { udp_len: Some(3), ..Udp::to(OTHER_PORT) }.build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );
    run.check_totals();
}

#[test]
fn deny_and_allow_lists_apply_to_steered_ports_only() {
    let Some(mut steering) = steering() else { return };
    steering.set_deny_list(&parse_prefixes(&["10.0.0.0/8", "2001:db8:bad::/48"]).unwrap()).unwrap();
    let mut run = Runner::new(steering);
    let denied = |listener| vec![(listener, Matched), (listener, Denied)];
    let no_socket = |listener| vec![(listener, Matched), (listener, PassedNoSocket)];

    run.check("denied IPv4 source", &Udp::to(SYSLOG_PORT).build(), XDP_DROP, &denied(Syslog));
    run.check(
        "denied IPv6 source",
        &Udp::to(STATSD_PORT).from("2001:db8:bad::9").build(),
        XDP_DROP,
        &denied(Statsd),
    );
    run.check(
        "other IPv6 source",
        &Udp::to(STATSD_PORT).from("2001:db8:900d::9").build(),
        XDP_PASS,
        &no_socket(Statsd),
    );
    run.check(
        "other IPv4 source",
        &Udp::to(SYSLOG_PORT).from("192.0.2.5").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "denied source to another port is not ours to judge",
        &Udp::to(OTHER_PORT).build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );

    // A non-empty allow list admits only what it lists, in both families; deny still wins.
    run.steering.set_deny_list(&parse_prefixes(&["192.0.2.66"]).unwrap()).unwrap();
    run.steering.set_allow_list(&parse_prefixes(&["192.0.2.0/24"]).unwrap()).unwrap();
    run.check(
        "allowed source",
        &Udp::to(SYSLOG_PORT).from("192.0.2.5").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check("source off the allow list", &Udp::to(SYSLOG_PORT).build(), XDP_DROP, &denied(Syslog));
    run.check(
        "IPv6 source with an IPv4-only allow list",
        &Udp::to(INFLUX_PORT).from("2001:db8::7").build(),
        XDP_DROP,
        &denied(Influx),
    );
    run.check(
        "allowed and denied: deny wins",
        &Udp::to(SYSLOG_PORT).from("192.0.2.66").build(),
        XDP_DROP,
        &denied(Syslog),
    );
    run.check(
        "the old deny list was replaced",
        &Udp::to(SYSLOG_PORT).from("192.0.2.7").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "off the allow list, to another port",
        &Udp::to(OTHER_PORT).build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );

    run.steering.set_allow_list(&[]).unwrap();
    run.steering.set_deny_list(&[]).unwrap();
    run.check("lists cleared", &Udp::to(SYSLOG_PORT).build(), XDP_PASS, &no_socket(Syslog));
    run.check(
        "lists cleared, IPv6",
        &Udp::to(SYSLOG_PORT).from("2001:db8:bad::9").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check_totals();
}

#[test]
fn rate_limit_passes_the_burst_then_drops_per_source() {
    let Some(mut steering) = steering() else { return };
    // One token a second: nothing refills noticeably while the test runs.
    steering.set_rate_limit(Some(RateLimit { per_second: 1, burst: 5 })).unwrap();
    let mut run = Runner::new(steering);
    let limited = |listener| vec![(listener, Matched), (listener, RateLimited)];
    let no_socket = |listener| vec![(listener, Matched), (listener, PassedNoSocket)];

    let frame = Udp::to(SYSLOG_PORT).from("198.51.100.1").build();
    for index in 0..5 {
        run.check(&format!("burst message {index}"), &frame, XDP_PASS, &no_socket(Syslog));
    }
    for index in 0..3 {
        run.check(&format!("over the burst {index}"), &frame, XDP_DROP, &limited(Syslog));
    }
    run.check(
        "the limit is per source, not per listener",
        &Udp::to(STATSD_PORT).from("198.51.100.1").build(),
        XDP_DROP,
        &limited(Statsd),
    );
    run.check(
        "another source has its own bucket",
        &Udp::to(SYSLOG_PORT).from("198.51.100.2").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "IPv6 sources have buckets too",
        &Udp::to(SYSLOG_PORT).from("2001:db8::1").build(),
        XDP_PASS,
        &no_socket(Syslog),
    );
    run.check(
        "other ports are not limited",
        &Udp::to(OTHER_PORT).from("198.51.100.1").build(),
        XDP_PASS,
        &[(Unmatched, Passed)],
    );
    run.steering.set_rate_limit(None).unwrap();
    run.check("limit removed", &frame, XDP_PASS, &no_socket(Syslog));
    run.check_totals();
}

#[test]
fn ports_are_replaced_and_checked() {
    let Some(mut steering) = steering() else { return };
    assert_eq!(
        steering.ports().unwrap(),
        [(SYSLOG_PORT, Syslog), (INFLUX_PORT, Influx), (STATSD_PORT, Statsd)]
    );
    steering.set_ports(&[(SYSLOG_PORT, Statsd), (OTHER_PORT, Syslog)]).unwrap();
    assert_eq!(steering.ports().unwrap(), [(SYSLOG_PORT, Statsd), (OTHER_PORT, Syslog)]);
    let mut run = Runner::new(steering);
    run.check(
        "port moved to another listener",
        &Udp::to(SYSLOG_PORT).build(),
        XDP_PASS,
        &[(Statsd, Matched), (Statsd, PassedNoSocket)],
    );
    run.check("port removed", &Udp::to(INFLUX_PORT).build(), XDP_PASS, &[(Unmatched, Passed)]);

    let error = run.steering.set_ports(&[(514, Syslog), (514, Statsd)]).unwrap_err().to_string();
    assert!(error.contains("port 514 is given to both syslog and statsd"), "{error}");
    let error = run.steering.set_ports(&[(514, Unmatched)]).unwrap_err().to_string();
    assert!(error.contains("no listener"), "{error}");
    let too_many: Vec<_> = (1000..1100).map(|port| (port, Syslog)).collect();
    assert!(run.steering.set_ports(&too_many).unwrap_err().to_string().contains("too many ports"));
    assert_eq!(
        run.steering.ports().unwrap(),
        [(SYSLOG_PORT, Statsd), (OTHER_PORT, Syslog)],
        "a refused change leaves the ports as they were"
    );
    let error = run.steering.register_socket(100_000, std::io::stdin()).unwrap_err().to_string();
    assert!(error.contains("rx queue 100000 is out of range"), "{error}");
    run.steering.unregister_socket(3).unwrap();
}
