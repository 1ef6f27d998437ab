//! Metric lines: DogStatsD (statsd with `#tags`) and Influx line protocol. Each line carries
//! its seq and send time in a tag or field, since a metrics receiver keeps no message text
//! to put a `kk=` marker in.

use super::MessageDraw;
use super::pools::{self, HostStyle};
use crate::ascii::{write_fixed_point, write_u64};

const METRIC_NAMES: [&str; 12] = [
    "http.requests",
    "http.request.duration",
    "db.query.duration",
    "queue.depth",
    "cache.hits",
    "cache.misses",
    "jobs.completed",
    "jobs.failed",
    "bytes.sent",
    "conn.active",
    "gc.pause",
    "users.unique",
];

/// `http.requests:3|c|@0.5|#host:edge-r0042,env:prod,kkrun:7,kkseq:42,kkts:1700000000123456789`
pub(super) fn write_statsd(draw: &mut MessageDraw, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    out.extend_from_slice(rng.pick(&METRIC_NAMES).as_bytes());
    out.push(b':');
    let (kind, sampled): (&[u8], bool) = match rng.below(10) {
        0..4 => (b"c", rng.percent(20)),
        4..6 => (b"g", false),
        6..8 => (b"ms", rng.percent(20)),
        8 => (b"h", false),
        _ => (b"s", false),
    };
    if kind == b"ms" || kind == b"h" {
        write_fixed_point(out, rng.below(500_000), 3);
    } else {
        write_u64(out, rng.below(1000));
    }
    out.push(b'|');
    out.extend_from_slice(kind);
    if sampled {
        out.extend_from_slice(b"|@0.5");
    }
    out.extend_from_slice(b"|#host:");
    pools::write_host(rng, HostStyle::Short, out);
    out.extend_from_slice(b",env:");
    out.extend_from_slice(rng.pick(&["prod", "prod", "staging"]).as_bytes());
    out.extend_from_slice(b",kkrun:");
    write_u64(out, u64::from(draw.marker.run_id));
    out.extend_from_slice(b",kkseq:");
    write_u64(out, draw.marker.seq);
    out.extend_from_slice(b",kkts:");
    write_u64(out, draw.marker.send_unix_nanos);
}

/// `cpu,host=edge-r0042,dc=dc3 usage=12.5,count=3i,kkrun=7u,kkseq=42u 1700000000123456789`;
/// the line's own timestamp is the send time.
pub(super) fn write_influx(draw: &mut MessageDraw, out: &mut Vec<u8>) {
    let rng = &mut draw.rng;
    let (measurement, field) =
        *rng.pick(&[("cpu", "usage"), ("mem", "used_percent"), ("disk", "io_util"), ("net", "rx_mbps")]);
    out.extend_from_slice(measurement.as_bytes());
    out.extend_from_slice(b",host=");
    pools::write_host(rng, HostStyle::Short, out);
    out.extend_from_slice(b",dc=dc");
    write_u64(out, rng.between(1, 8));
    out.push(b' ');
    out.extend_from_slice(field.as_bytes());
    out.push(b'=');
    write_fixed_point(out, rng.below(100_000), 2);
    out.extend_from_slice(b",count=");
    write_u64(out, rng.below(10_000));
    out.extend_from_slice(b"i,kkrun=");
    write_u64(out, u64::from(draw.marker.run_id));
    out.extend_from_slice(b"u,kkseq=");
    write_u64(out, draw.marker.seq);
    out.extend_from_slice(b"u ");
    write_u64(out, draw.marker.send_unix_nanos);
}
