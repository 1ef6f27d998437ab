//! The scale store's messages: one day of syslog from a fleet of hosts, deterministic
//! from the message number so that every fill of the same size holds the same data and
//! the query phase knows which hosts and words exist.

use killkrill_perf::prng::SplitMix64;

/// Hosts in the fleet (`host-0000` ... ); every block of an arrival-ordered store holds
/// nearly all of them, as a real site's blocks do.
pub const HOSTS: u64 = 2_000;
/// Words the selective query looks for, with how often they occur (per mille of messages).
pub const TERMS: &[(&str, u64)] = &[("error", 20), ("timeout", 12), ("denied", 8), ("restarted", 4)];

const APPS: &[&str] = &[
    "sshd",
    "kernel",
    "systemd",
    "cron",
    "nginx",
    "postfix",
    "dhcpd",
    "named",
    "ntpd",
    "sudo",
    "haproxy",
    "dockerd",
    "kubelet",
    "containerd",
    "rsyslogd",
    "auditd",
    "snmpd",
    "bgpd",
    "ospfd",
    "lldpd",
    "smartd",
    "mysqld",
    "postgres",
    "redis",
    "java",
    "node",
    "python3",
    "firewalld",
    "NetworkManager",
    "chronyd",
    "polkitd",
    "udisksd",
    "zabbix_agentd",
    "filebeat",
    "telegraf",
    "consul",
];
const USERS: &[&str] = &["root", "admin", "deploy", "backup", "nagios", "ada", "grace", "linus", "ken"];
const PATHS: &[&str] = &["/", "/api/v2/orders", "/login", "/static/app.js", "/health", "/metrics", "/cart"];
const IFACES: &[&str] = &["eth0", "eth1", "bond0", "ens3", "Gi0/1", "Te1/0/4", "xe-0/0/2"];

/// One of the apps of the corpus (`index` modulo their number).
pub fn app_name(index: u64) -> &'static str {
    APPS[(index % APPS.len() as u64) as usize]
}

pub fn host_name(host: u64) -> String {
    format!("host-{host:04}")
}

/// Receive time of message `index`: evenly spread over 24 hours.
pub fn received_ns(day_start_ns: i64, index: u64, total: u64) -> i64 {
    const DAY_NS: u128 = 86_400_000_000_000;
    day_start_ns + (u128::from(index) * DAY_NS / u128::from(total.max(1))) as i64
}

/// Writes message `index` into `frame` (cleared first) and says who sent it.
pub fn write(index: u64, received_ns: i64, frame: &mut Vec<u8>) -> u64 {
    use std::io::Write as _;
    let mut rng = SplitMix64::for_item(0x5ca1e, index);
    let host = rng.below(HOSTS);
    let app = *rng.pick(APPS);
    let pid = 100 + rng.below(30_000);
    // The words of `TERMS` at their rates, everything else from ordinary templates.
    let roll = rng.below(1_000);
    let mut threshold = 0;
    let mut term = None;
    for (word, per_mille) in TERMS {
        threshold += per_mille;
        if roll < threshold {
            term = Some(*word);
            break;
        }
    }
    let severity = match term {
        Some("error") => 3,
        Some(_) => 4,
        None => [6, 6, 6, 5, 7][rng.below(5) as usize],
    };
    let pri = 8 * (1 + rng.below(4) as u8) + severity;
    frame.clear();
    let time =
        jiff::Timestamp::from_nanosecond(i128::from(received_ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // RFC 5424 from most hosts, BSD syslog from a third, as a mixed site has.
    let _ = if host.is_multiple_of(3) {
        let civil = time.to_zoned(jiff::tz::TimeZone::UTC);
        write!(frame, "<{pri}>{} {} {app}[{pid}]: ", civil.strftime("%b %e %H:%M:%S"), host_name(host))
    } else {
        write!(frame, "<{pri}>1 {time:.3} {} {app} {pid} - - ", host_name(host))
    };
    let user = *rng.pick(USERS);
    let iface = *rng.pick(IFACES);
    let address = format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254));
    let number = rng.below(100_000);
    let _ = match term {
        Some("error") => match rng.below(4) {
            0 => write!(
                frame,
                "error: connection to {address}:5432 failed: connection refused (attempt {})",
                number % 9
            ),
            1 => {
                write!(frame, "I/O error on device sd{} sector {number}", (b'a' + (number % 4) as u8) as char)
            }
            2 => write!(
                frame,
                "request {} {} failed with error 500 after {} ms",
                number,
                rng.pick(PATHS),
                number % 3000
            ),
            _ => write!(frame, "{iface}: link error, resetting adapter (tx queue {})", number % 16),
        },
        Some("timeout") => {
            write!(frame, "upstream timeout after {} ms talking to {address}", number % 30_000)
        }
        Some("denied") => {
            write!(frame, "permission denied for user {user} from {address} port {}", 1024 + number % 60_000)
        }
        Some(word) => write!(frame, "service {app} {word} (exit status {})", number % 4),
        None => match rng.below(6) {
            0 => write!(
                frame,
                "Accepted publickey for {user} from {address} port {} ssh2",
                1024 + number % 60_000
            ),
            1 => write!(
                frame,
                "{} {} {} 200 {} \"Mozilla/5.0\"",
                address,
                rng.pick(["GET", "POST"].as_slice()),
                rng.pick(PATHS),
                number
            ),
            2 => write!(frame, "Started session {number} of user {user}."),
            3 => write!(frame, "{iface}: link up, 10000 Mbps full duplex, flow control rx/tx"),
            4 => write!(frame, "CRON ({user}) CMD (/usr/local/bin/job-{} --quiet)", number % 40),
            _ => write!(
                frame,
                "synchronized to {address}, stratum {}, offset {}us",
                1 + number % 4,
                number % 900
            ),
        },
    };
    host
}

/// The source address of `host`'s messages.
pub fn source(host: u64) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([10, 200, (host / 250) as u8, (host % 250) as u8 + 1], 514))
}
