//! The pools messages draw from: a fleet of 5,000 hosts, ~300 applications, users,
//! addresses and filler words. Hosts and apps are derived from an index rather than stored,
//! so the pools cost no memory and no start-up time.

use crate::ascii::{write_ipv4, write_u64, write_zero_padded};
use crate::prng::SplitMix64;

pub const HOST_COUNT: u64 = 5000;

const HOST_ROLES: [&str; 10] = ["edge-r", "core-r", "fw", "sw", "srv", "lb", "ap", "db", "app", "vpn"];

/// How a device names itself in its messages.
#[derive(Clone, Copy)]
pub enum HostStyle {
    /// `edge-r0042.dc3.example.net`
    Fqdn,
    /// `edge-r0042`
    Short,
    /// `WIN-SRV0042`, as Windows machines name themselves.
    Windows,
}

/// Appends host `rng`-drawn from the fleet of [`HOST_COUNT`].
pub fn write_host(rng: &mut SplitMix64, style: HostStyle, out: &mut Vec<u8>) {
    let index = rng.below(HOST_COUNT);
    let role = HOST_ROLES[(index % HOST_ROLES.len() as u64) as usize];
    let number = index / HOST_ROLES.len() as u64;
    match style {
        HostStyle::Windows => {
            out.extend_from_slice(b"WIN-");
            let letters = role.trim_end_matches("-r").bytes().map(|b| b.to_ascii_uppercase());
            out.extend(letters);
        }
        HostStyle::Fqdn | HostStyle::Short => out.extend_from_slice(role.as_bytes()),
    }
    write_zero_padded(out, number, 4);
    if let HostStyle::Fqdn = style {
        out.extend_from_slice(b".dc");
        write_u64(out, index % 8 + 1);
        out.extend_from_slice(b".example.net");
    }
}

/// Daemons found on most Linux fleets, used as-is.
const SYSTEM_APPS: [&str; 60] = [
    "sshd",
    "cron",
    "CRON",
    "systemd",
    "systemd-logind",
    "systemd-resolved",
    "kernel",
    "sudo",
    "su",
    "dhclient",
    "NetworkManager",
    "chronyd",
    "ntpd",
    "named",
    "unbound",
    "dnsmasq",
    "rsyslogd",
    "auditd",
    "polkitd",
    "dbus-daemon",
    "nginx",
    "haproxy",
    "httpd",
    "apache2",
    "postfix/smtpd",
    "postfix/qmgr",
    "postfix/cleanup",
    "dovecot",
    "slapd",
    "sssd",
    "kubelet",
    "containerd",
    "dockerd",
    "etcd",
    "kube-proxy",
    "coredns",
    "snmpd",
    "zabbix_agentd",
    "telegraf",
    "node_exporter",
    "mysqld",
    "postgres",
    "redis-server",
    "mongod",
    "rabbitmq",
    "kafka",
    "zookeeper",
    "elasticsearch",
    "java",
    "python3",
    "php-fpm",
    "squid",
    "openvpn",
    "strongswan",
    "keepalived",
    "bird",
    "frr",
    "lldpd",
    "smartd",
    "anacron",
];

const SERVICES: [&str; 24] = [
    "orders",
    "payments",
    "billing",
    "catalog",
    "search",
    "checkout",
    "inventory",
    "shipping",
    "auth",
    "profile",
    "ledger",
    "pricing",
    "cart",
    "notify",
    "reports",
    "gateway",
    "media",
    "geo",
    "fraud",
    "ratings",
    "sessions",
    "export",
    "ingest",
    "audit",
];

const SERVICE_ROLES: [&str; 10] =
    ["-api", "-worker", "-sync", "-cron", "-consumer", "-web", "-batch", "-proxy", "-cache", "-admin"];

/// Number of distinct application names: 60 daemons and 240 fleet services.
pub const APP_COUNT: u64 = (SYSTEM_APPS.len() + SERVICES.len() * SERVICE_ROLES.len()) as u64;

/// Appends an application name from the pool of [`APP_COUNT`].
pub fn write_app(rng: &mut SplitMix64, out: &mut Vec<u8>) {
    let index = rng.below(APP_COUNT) as usize;
    if let Some(app) = SYSTEM_APPS.get(index) {
        out.extend_from_slice(app.as_bytes());
    } else {
        let service = index - SYSTEM_APPS.len();
        out.extend_from_slice(SERVICES[service % SERVICES.len()].as_bytes());
        out.extend_from_slice(SERVICE_ROLES[service / SERVICES.len()].as_bytes());
    }
}

pub const USERS: [&str; 16] = [
    "root", "admin", "alice", "bob", "carol", "deploy", "backup", "nagios", "jenkins", "ubuntu", "ec2-user",
    "svc_ldap", "mallory", "operator", "git", "postgres",
];

pub const MSGIDS: [&str; 12] =
    ["-", "-", "-", "ID47", "AUDIT", "LOGIN", "REQ", "HEALTH", "TXN", "CONF", "CONN", "GC"];

/// Appends a private-looking IPv4 address (RFC 1918 ranges, or a documentation range for
/// "outside" peers) as text only; nothing is ever sent to it.
pub fn write_inside_ip(rng: &mut SplitMix64, out: &mut Vec<u8>) {
    let third = rng.below(256) as u8;
    let fourth = rng.between(1, 254) as u8;
    write_ipv4(out, [10, rng.below(32) as u8, third, fourth]);
}

/// Appends an address from the RFC 5737 documentation ranges.
pub fn write_outside_ip(rng: &mut SplitMix64, out: &mut Vec<u8>) {
    let prefix: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let [a, b, c] = *rng.pick(&prefix);
    write_ipv4(out, [a, b, c, rng.between(1, 254) as u8]);
}

pub fn draw_ephemeral_port(rng: &mut SplitMix64) -> u64 {
    rng.between(32_768, 60_999)
}

pub fn draw_service_port(rng: &mut SplitMix64) -> u64 {
    *rng.pick(&[22, 53, 80, 123, 443, 443, 443, 514, 993, 3306, 5432, 6443, 8080, 8443])
}

/// Words to pad bodies to their drawn size; common log vocabulary so that compression and
/// token filters see text like production's, not one repeated byte.
pub const FILLER_WORDS: &[&str] = &[
    "request",
    "completed",
    "in",
    "ms",
    "status",
    "ok",
    "error",
    "retry",
    "upstream",
    "timeout",
    "connection",
    "closed",
    "by",
    "peer",
    "user",
    "session",
    "opened",
    "for",
    "from",
    "port",
    "to",
    "the",
    "a",
    "of",
    "and",
    "with",
    "cache",
    "miss",
    "hit",
    "queue",
    "depth",
    "worker",
    "started",
    "stopped",
    "reload",
    "config",
    "applied",
    "version",
    "checksum",
    "mismatch",
    "disk",
    "usage",
    "percent",
    "memory",
    "pressure",
    "gc",
    "pause",
    "thread",
    "pool",
    "exhausted",
    "latency",
    "high",
    "low",
    "backend",
    "healthy",
    "unhealthy",
    "tls",
    "handshake",
    "failed",
    "certificate",
    "expires",
    "in",
    "days",
    "lease",
    "renewed",
    "interface",
    "up",
    "down",
    "link",
    "flap",
    "detected",
    "vlan",
    "neighbor",
    "established",
    "idle",
    "bytes",
    "packets",
    "dropped",
    "rate",
    "limit",
    "exceeded",
    "token",
    "refresh",
    "denied",
    "granted",
    "policy",
    "rule",
    "matched",
    "id",
    "trace",
    "span",
    "parent",
    "job",
    "scheduled",
    "duration",
    "rows",
    "affected",
    "commit",
    "rollback",
    "lock",
    "wait",
    "deadlock",
    "resolved",
    "shard",
    "replica",
    "leader",
    "elected",
    "term",
    "snapshot",
    "written",
    "compaction",
    "level",
    "files",
    "merged",
    "warning",
    "notice",
    "info",
    "debug",
];
