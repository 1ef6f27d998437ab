//! BSD syslog (RFC 3164) in the shapes real devices send: a Linux host, Cisco IOS, Cisco
//! ASA, Juniper SRX, Fortinet key=value and Windows through NXLog. Receivers must cope with
//! all of them, and each stresses a different corner of a BSD parser (no hostname, a
//! sequence-number prefix, a year in the timestamp, no header at all).

use super::MessageDraw;
use super::marker::write_marker;
use super::pools::{self, HostStyle};
use super::rfc5424::draw_severity;
use crate::ascii::{write_u64, write_zero_padded};
use crate::civil_time::UtcDateTime;
use crate::prng::SplitMix64;

pub(super) fn write(draw: &mut MessageDraw, out: &mut Vec<u8>) {
    let time = UtcDateTime::from_unix_nanos(draw.marker.send_unix_nanos);
    match draw.rng.below(100) {
        0..35 => write_linux(draw, time, out),
        35..50 => write_cisco_ios(draw, time, out),
        50..65 => write_cisco_asa(draw, time, out),
        65..75 => write_juniper(draw, time, out),
        75..90 => write_fortinet(draw, time, out),
        _ => write_windows(draw, time, out),
    }
}

fn write_pri(out: &mut Vec<u8>, facility: u64, severity: u64) {
    out.push(b'<');
    write_u64(out, facility * 8 + severity);
    out.push(b'>');
}

fn finish_with_marker(draw: &mut MessageDraw, out: &mut Vec<u8>) {
    out.push(b' ');
    write_marker(out, draw.marker);
    draw.pad_body(out, 0);
}

/// `<38>Jan  2 10:11:12 edge-r0042 sshd[2212]: Failed password for ...`
fn write_linux(draw: &mut MessageDraw, time: UtcDateTime, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    let is_sshd = rng.percent(40);
    write_pri(out, if is_sshd { 10 } else { 3 }, draw_severity(rng));
    time.write_bsd(out);
    out.push(b' ');
    pools::write_host(rng, HostStyle::Short, out);
    out.push(b' ');
    if is_sshd {
        out.extend_from_slice(b"sshd[");
        write_u64(out, rng.between(300, 65_535));
        out.extend_from_slice(b"]: ");
        out.extend_from_slice(if rng.percent(50) {
            b"Failed password for "
        } else {
            b"Accepted password for "
        });
        out.extend_from_slice(rng.pick(&pools::USERS).as_bytes());
        out.extend_from_slice(b" from ");
        pools::write_outside_ip(rng, out);
        out.extend_from_slice(b" port ");
        write_u64(out, pools::draw_ephemeral_port(rng));
        out.extend_from_slice(b" ssh2");
    } else {
        pools::write_app(rng, out);
        out.push(b'[');
        write_u64(out, rng.between(300, 65_535));
        out.extend_from_slice(b"]: ");
        out.extend_from_slice(rng.pick(&LINUX_SENTENCES).as_bytes());
    }
    finish_with_marker(draw, out);
}

const LINUX_SENTENCES: [&str; 6] = [
    "Started Session of user root.",
    "pam_unix(sudo:session): session opened for user root by (uid=0)",
    "Reloading configuration after SIGHUP",
    "worker process exited on signal 9, respawning",
    "DHCPACK of lease renewed, next renewal in 1800 seconds",
    "out of memory: Killed process in cgroup, oom_score_adj 0",
];

/// `<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console ...`: IOS sends
/// no hostname by default, prefixes a message counter, and stars unsynchronised clocks.
fn write_cisco_ios(draw: &mut MessageDraw, time: UtcDateTime, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    let (mnemonic, severity) = *rng.pick(&[
        ("%SYS-5-CONFIG_I", 5),
        ("%LINEPROTO-5-UPDOWN", 5),
        ("%LINK-3-UPDOWN", 3),
        ("%SEC-6-IPACCESSLOGP", 6),
    ]);
    write_pri(out, 23, severity);
    write_u64(out, draw.marker.seq % 1_000_000);
    out.extend_from_slice(b": ");
    if rng.percent(30) {
        out.push(b'*');
    }
    time.write_bsd(out);
    out.push(b'.');
    write_zero_padded(out, time.millis(), 3);
    out.extend_from_slice(b": ");
    out.extend_from_slice(mnemonic.as_bytes());
    out.extend_from_slice(b": ");
    match mnemonic {
        "%SYS-5-CONFIG_I" => {
            out.extend_from_slice(b"Configured from console by ");
            out.extend_from_slice(rng.pick(&pools::USERS).as_bytes());
            out.extend_from_slice(b" on vty0 (");
            pools::write_inside_ip(rng, out);
            out.push(b')');
        }
        "%SEC-6-IPACCESSLOGP" => {
            out.extend_from_slice(b"list 101 denied tcp ");
            pools::write_outside_ip(rng, out);
            out.push(b'(');
            write_u64(out, pools::draw_ephemeral_port(rng));
            out.extend_from_slice(b") -> ");
            pools::write_inside_ip(rng, out);
            out.push(b'(');
            write_u64(out, pools::draw_service_port(rng));
            out.extend_from_slice(b"), 1 packet");
        }
        _ => {
            out.extend_from_slice(b"Line protocol on Interface GigabitEthernet0/");
            write_u64(out, rng.below(48));
            out.extend_from_slice(if rng.percent(50) {
                b", changed state to up"
            } else {
                b", changed state to down"
            });
        }
    }
    finish_with_marker(draw, out);
}

/// `<166>Mar 01 2024 18:46:11 fw0042 : %ASA-6-302013: Built outbound TCP connection ...`:
/// the ASA writes a year and a zero-padded day, and a space before the colon.
fn write_cisco_asa(draw: &mut MessageDraw, time: UtcDateTime, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    let built = rng.percent(70);
    write_pri(out, 20, if built { 6 } else { 4 });
    out.extend_from_slice(time.month_abbreviation());
    out.push(b' ');
    write_zero_padded(out, u64::from(time.day), 2);
    out.push(b' ');
    write_u64(out, time.year.unsigned_abs());
    out.push(b' ');
    time.write_time(out);
    out.push(b' ');
    pools::write_host(rng, HostStyle::Short, out);
    out.extend_from_slice(b" : ");
    if built {
        out.extend_from_slice(b"%ASA-6-302013: Built outbound TCP connection ");
        write_u64(out, rng.below(4_000_000_000));
        out.extend_from_slice(b" for outside:");
        write_ip_port_pair(rng, out, true);
        out.extend_from_slice(b" to inside:");
        write_ip_port_pair(rng, out, false);
    } else {
        out.extend_from_slice(b"%ASA-4-106023: Deny tcp src outside:");
        pools::write_outside_ip(rng, out);
        out.push(b'/');
        write_u64(out, pools::draw_ephemeral_port(rng));
        out.extend_from_slice(b" dst inside:");
        pools::write_inside_ip(rng, out);
        out.push(b'/');
        write_u64(out, pools::draw_service_port(rng));
        out.extend_from_slice(b" by access-group \"outside_in\" [0x0, 0x0]");
    }
    finish_with_marker(draw, out);
}

/// `1.2.3.4/443 (1.2.3.4/443)`, the ASA's real and mapped address.
fn write_ip_port_pair(rng: &mut SplitMix64, out: &mut Vec<u8>, outside: bool) {
    let start = out.len();
    if outside {
        pools::write_outside_ip(rng, out);
        out.push(b'/');
        write_u64(out, pools::draw_service_port(rng));
    } else {
        pools::write_inside_ip(rng, out);
        out.push(b'/');
        write_u64(out, pools::draw_ephemeral_port(rng));
    }
    let end = out.len();
    out.extend_from_slice(b" (");
    out.extend_from_within(start..end);
    out.push(b')');
}

/// `<14>Mar  1 18:46:11 srx0042 RT_FLOW: RT_FLOW_SESSION_CREATE: session created ...`
fn write_juniper(draw: &mut MessageDraw, time: UtcDateTime, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    write_pri(out, 1, 6);
    time.write_bsd(out);
    out.push(b' ');
    pools::write_host(rng, HostStyle::Short, out);
    let create = rng.percent(60);
    out.extend_from_slice(if create {
        b" RT_FLOW: RT_FLOW_SESSION_CREATE: session created "
    } else {
        b" RT_FLOW: RT_FLOW_SESSION_CLOSE: session closed TCP FIN: "
    });
    let flow_start = out.len();
    pools::write_inside_ip(rng, out);
    out.push(b'/');
    write_u64(out, pools::draw_ephemeral_port(rng));
    out.extend_from_slice(b"->");
    pools::write_outside_ip(rng, out);
    out.push(b'/');
    write_u64(out, pools::draw_service_port(rng));
    let flow_end = out.len();
    out.extend_from_slice(b" 0x0 junos-https ");
    out.extend_from_within(flow_start..flow_end);
    out.extend_from_slice(b" 0x0 N/A N/A N/A N/A 6 trust-to-untrust trust untrust ");
    write_u64(out, rng.below(100_000_000));
    out.extend_from_slice(b" N/A(N/A) reth1.0 UNKNOWN UNKNOWN UNKNOWN N/A N/A -1");
    finish_with_marker(draw, out);
}

/// `<189>date=2024-01-02 time=10:11:12 devname="FG100E" ... msg="..."`: FortiOS sends no
/// BSD header at all, only key=value pairs after the PRI. The marker is a pair of its own.
fn write_fortinet(draw: &mut MessageDraw, time: UtcDateTime, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    write_pri(out, 23, 5);
    out.extend_from_slice(b"date=");
    time.write_date(out);
    out.extend_from_slice(b" time=");
    time.write_time(out);
    out.extend_from_slice(b" devname=\"FG100E-");
    let device = rng.below(200);
    write_zero_padded(out, device, 3);
    out.extend_from_slice(b"\" devid=\"FG100E3919000");
    write_zero_padded(out, device, 3);
    out.extend_from_slice(b"\" eventtime=");
    write_u64(out, draw.marker.send_unix_nanos);
    out.extend_from_slice(
        b" logid=\"0000000013\" type=\"traffic\" subtype=\"forward\" level=\"notice\" vd=\"root\" srcip=",
    );
    pools::write_inside_ip(rng, out);
    out.extend_from_slice(b" srcport=");
    write_u64(out, pools::draw_ephemeral_port(rng));
    out.extend_from_slice(b" srcintf=\"port1\" dstip=");
    pools::write_outside_ip(rng, out);
    out.extend_from_slice(b" dstport=");
    write_u64(out, pools::draw_service_port(rng));
    out.extend_from_slice(b" dstintf=\"wan1\" proto=6 action=\"");
    out.extend_from_slice(rng.pick(&["accept", "accept", "close", "deny"]).as_bytes());
    out.extend_from_slice(b"\" policyid=");
    write_u64(out, rng.between(1, 300));
    out.extend_from_slice(b" sentbyte=");
    write_u64(out, rng.below(10_000_000));
    out.extend_from_slice(b" rcvdbyte=");
    write_u64(out, rng.below(10_000_000));
    out.push(b' ');
    write_marker(out, draw.marker);
    out.extend_from_slice(b" msg=\"session ");
    out.extend_from_slice(rng.pick(&["allowed by policy", "closed by peer", "denied by policy"]).as_bytes());
    draw.pad_body(out, 1);
    out.push(b'"');
}

/// `<14>Mar  1 18:46:11 WIN-SRV0042 Microsoft-Windows-Security-Auditing[604]: An account ...`,
/// NXLog's `to_syslog_bsd()` rendering of the Windows event log.
fn write_windows(draw: &mut MessageDraw, time: UtcDateTime, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    write_pri(out, 1, if rng.percent(80) { 6 } else { 4 });
    time.write_bsd(out);
    out.push(b' ');
    pools::write_host(rng, HostStyle::Windows, out);
    out.push(b' ');
    let (source, event_id, text) = *rng.pick(&[
        ("Microsoft-Windows-Security-Auditing", 4624, "An account was successfully logged on."),
        ("Microsoft-Windows-Security-Auditing", 4625, "An account failed to log on."),
        ("Microsoft-Windows-Security-Auditing", 4634, "An account was logged off."),
        ("Service_Control_Manager", 7036, "The Windows Update service entered the running state."),
    ]);
    out.extend_from_slice(source.as_bytes());
    out.push(b'[');
    write_u64(out, rng.between(400, 9000));
    out.extend_from_slice(b"]: ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b" EventID=");
    write_u64(out, event_id);
    out.extend_from_slice(b" Account Name: ");
    out.extend_from_slice(rng.pick(&pools::USERS).as_bytes());
    out.extend_from_slice(b" Logon Type: ");
    write_u64(out, *rng.pick(&[2, 3, 3, 5, 10]));
    out.extend_from_slice(b" Source Network Address: ");
    pools::write_inside_ip(rng, out);
    finish_with_marker(draw, out);
}
