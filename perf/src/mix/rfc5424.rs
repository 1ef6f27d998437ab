//! RFC 5424 messages: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD...] MSG`.

use super::MessageDraw;
use super::marker::write_marker;
use super::pools::{self, HostStyle};
use crate::ascii::write_u64;
use crate::civil_time::UtcDateTime;
use crate::prng::SplitMix64;

/// Facilities a fleet actually uses: user, daemon, auth, authpriv, local0..local7.
const FACILITIES: [u64; 11] = [1, 3, 4, 10, 16, 17, 18, 19, 20, 21, 23];

pub(super) fn write(draw: &mut MessageDraw, out: &mut Vec<u8>) {
    let facility = *draw.rng.pick(&FACILITIES);
    let severity = draw_severity(&mut draw.rng);
    out.push(b'<');
    write_u64(out, facility * 8 + severity);
    out.extend_from_slice(b">1 ");
    UtcDateTime::from_unix_nanos(draw.marker.send_unix_nanos).write_rfc3339_micros(out);
    out.push(b' ');
    pools::write_host(&mut draw.rng, HostStyle::Fqdn, out);
    out.push(b' ');
    pools::write_app(&mut draw.rng, out);
    out.push(b' ');
    if draw.rng.percent(85) {
        write_u64(out, draw.rng.between(2, 65_535));
    } else {
        out.push(b'-');
    }
    out.push(b' ');
    out.extend_from_slice(draw.rng.pick(&pools::MSGIDS).as_bytes());
    out.push(b' ');
    write_structured_data(draw, out);
    out.push(b' ');
    write_sentence(&mut draw.rng, out);
    out.push(b' ');
    write_marker(out, draw.marker);
    draw.pad_body(out, 0);
}

/// Mostly informational, with the warning/error tail a real fleet shows.
pub(super) fn draw_severity(rng: &mut SplitMix64) -> u64 {
    match rng.below(100) {
        0..3 => 3,
        3..13 => 4,
        13..38 => 5,
        38..93 => 6,
        _ => 7,
    }
}

const SD_TEMPLATES: usize = 6;

/// Short messages carry no structured data, the rest mostly carry one to three elements
/// (SD-IDs distinct within a message, as RFC 5424 section 6.3.2 requires).
fn write_structured_data(draw: &mut MessageDraw, out: &mut Vec<u8>) {
    if draw.target_len < 170 || !draw.rng.percent(92) {
        out.push(b'-');
        return;
    }
    let most = ((draw.target_len - 100) / 90).clamp(1, 3) as u64;
    let count = draw.rng.between(1, most) as usize;
    let first = draw.rng.below(SD_TEMPLATES as u64) as usize;
    for k in 0..count {
        write_sd_element((first + k) % SD_TEMPLATES, &mut draw.rng, out);
    }
}

fn write_sd_element(template: usize, rng: &mut SplitMix64, out: &mut Vec<u8>) {
    match template {
        0 => {
            out.extend_from_slice(b"[timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"");
            write_u64(out, rng.between(100, 900_000));
            out.extend_from_slice(b"\"]");
        }
        1 => {
            out.extend_from_slice(b"[origin ip=\"");
            pools::write_inside_ip(rng, out);
            out.extend_from_slice(b"\" software=\"fleetd\" swVersion=\"2.");
            write_u64(out, rng.below(20));
            out.extend_from_slice(b"\"]");
        }
        2 => {
            out.extend_from_slice(b"[meta sequenceId=\"");
            write_u64(out, rng.between(1, 2_147_483_647));
            out.extend_from_slice(b"\" sysUpTime=\"");
            write_u64(out, rng.below(400_000_000));
            out.extend_from_slice(b"\" language=\"en-US\"]");
        }
        3 => {
            out.extend_from_slice(b"[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"");
            write_u64(out, rng.between(1000, 1099));
            out.extend_from_slice(b"\"]");
        }
        4 => {
            // PARAM-VALUE escapes (RFC 5424 section 6.3.3): `\"`, `\\` and `\]`.
            out.extend_from_slice(b"[http@32473 method=\"");
            out.extend_from_slice(rng.pick(&["GET", "GET", "POST", "PUT", "DELETE"]).as_bytes());
            out.extend_from_slice(b"\" path=\"/api/v1/orders/");
            write_u64(out, rng.below(1_000_000));
            out.extend_from_slice(b"\" agent=\"curl/8.5 \\\"probe\\\"\" note=\"C:\\\\tmp [x\\]\"]");
        }
        _ => {
            out.extend_from_slice(b"[trace@32473 traceId=\"");
            write_hex(out, rng.next_u64(), 16);
            write_hex(out, rng.next_u64(), 16);
            out.extend_from_slice(b"\" spanId=\"");
            write_hex(out, rng.next_u64(), 16);
            out.extend_from_slice(b"\"]");
        }
    }
}

fn write_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((value >> (i * 4)) & 0xf) as usize]);
    }
}

fn write_sentence(rng: &mut SplitMix64, out: &mut Vec<u8>) {
    match rng.below(6) {
        0 => {
            out.extend_from_slice(b"Accepted publickey for ");
            out.extend_from_slice(rng.pick(&pools::USERS).as_bytes());
            out.extend_from_slice(b" from ");
            pools::write_inside_ip(rng, out);
            out.extend_from_slice(b" port ");
            write_u64(out, pools::draw_ephemeral_port(rng));
            out.extend_from_slice(b" ssh2");
        }
        1 => {
            out.extend_from_slice(b"request completed method=GET path=/api/v1/items/");
            write_u64(out, rng.below(100_000));
            out.extend_from_slice(b" status=");
            write_u64(out, *rng.pick(&[200, 200, 200, 201, 204, 301, 404, 429, 500, 503]));
            out.extend_from_slice(b" duration_ms=");
            write_u64(out, rng.below(2500));
        }
        2 => {
            out.extend_from_slice(b"health check failed for backend ");
            pools::write_inside_ip(rng, out);
            out.push(b':');
            write_u64(out, pools::draw_service_port(rng));
            out.extend_from_slice(b": connection refused");
        }
        3 => {
            out.extend_from_slice(b"job ");
            write_u64(out, rng.below(1_000_000));
            out.extend_from_slice(b" finished in ");
            write_u64(out, rng.below(60_000));
            out.extend_from_slice(b" ms rows=");
            write_u64(out, rng.below(50_000));
        }
        4 => {
            out.extend_from_slice(b"Connection closed by ");
            pools::write_outside_ip(rng, out);
            out.extend_from_slice(b" port ");
            write_u64(out, pools::draw_ephemeral_port(rng));
            out.extend_from_slice(b" [preauth]");
        }
        _ => {
            out.extend_from_slice(b"cache eviction pass removed ");
            write_u64(out, rng.below(10_000));
            out.extend_from_slice(b" entries, resident ");
            write_u64(out, rng.below(4096));
            out.extend_from_slice(b" MiB");
        }
    }
}
