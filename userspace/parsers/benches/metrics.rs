//! statsd/DogStatsD and Influx line protocol parsing throughput, in lines per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use killkrill_parsers::influx::{InfluxFieldValue, InfluxItem, InfluxPrecision, parse_influx};
use killkrill_parsers::statsd::{StatsdItem, parse_statsd};

/// What a DogStatsD client library sends: mostly counters and timers with a few tags,
/// some distributions and gauges, the odd set, event and service check.
const DOGSTATSD_LINES: &[&str] = &[
    "web.requests:1|c|#env:prod,service:web,version:1.4.2",
    "web.request.duration:12.7|ms|@0.25|#env:prod,service:web,endpoint:/api/v1/items",
    "web.response.bytes:5120|d|#env:prod,service:web,status:200",
    "db.pool.in_use:7|g|#env:prod,db:orders",
    "queue.depth:-3|g|#queue:emails",
    "cache.hits:1|c|@0.1|#cache:sessions",
    "worker.jobs.processed:1|c|#env:prod,worker:billing|c:ci-83c1f0",
    "payload.size:512:1024:2048|h|#endpoint:/upload",
    "unique.visitors:9f8e7d6c|s",
    "gc.pause:0.42|ms|#runtime:jvm|T1700000000",
    "_e{14,20}:Deploy started|rolling out build 77|t:info|#env:prod",
    "_sc|web.health|0|h:web-3|#env:prod|m:all good",
];

const INFLUX_LINES: &[&str] = &[
    "cpu,cpu=cpu-total,host=web-1 usage_user=2.5,usage_system=1.25,usage_idle=96.25 1700000000000000000",
    "mem,host=web-1 used=4294967296i,available_percent=61.3 1700000000000000000",
    "disk,device=sda1,fstype=ext4,mode=rw,path=/var/lib/data free=1024u,inodes_used=77i 1700000000000000000",
    "net,host=web-1,interface=eth0 bytes_recv=123456789i,bytes_sent=987654321i,err_in=0i 1700000000000000000",
    "system,host=web-1 uptime_format=\"12 days,  3:04\",n_users=2i,load1=0.31 1700000000000000000",
    "procstat,exe=nginx,process_name=nginx\\ worker running=true,cpu_usage=0.7 1700000000000000000",
];

/// A datagram of about `lines` lines, cycling through `sample`.
fn datagram(sample: &[&str], lines: usize) -> Vec<u8> {
    sample.iter().cycle().take(lines).flat_map(|line| [line.as_bytes(), b"\n"].concat()).collect()
}

/// Touches every value so the parse cannot be optimised away.
fn consume_statsd(datagram: &[u8]) -> usize {
    parse_statsd(datagram)
        .map(|item| match item {
            StatsdItem::Metric(metric) => black_box(metric.name).len() + metric.tags.iter().count(),
            StatsdItem::Event(event) => black_box(event.title).len(),
            StatsdItem::ServiceCheck(check) => usize::from(check.status),
            StatsdItem::Reject(reject) => reject.line.len(),
        })
        .sum()
}

fn consume_influx(datagram: &[u8]) -> usize {
    parse_influx(datagram, InfluxPrecision::Nanoseconds)
        .map(|item| match item {
            InfluxItem::Point(point) => {
                let tags = point.tags().map(|tag| tag.value.unescaped().len()).sum::<usize>();
                let fields = point
                    .fields()
                    .map(|field| match field.value {
                        InfluxFieldValue::String(text) => text.unescaped().len(),
                        other => usize::from(matches!(other, InfluxFieldValue::Boolean(true))),
                    })
                    .sum::<usize>();
                tags + fields
            }
            InfluxItem::Reject(reject) => reject.line.len(),
        })
        .sum()
}

fn metrics(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("metrics");
    // 1,200 lines: about the most a jumbo-frame statsd datagram batch holds.
    let lines = 1200;
    let statsd = datagram(DOGSTATSD_LINES, lines);
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function("statsd_dogstatsd_mix_lines", |bencher| {
        bencher.iter(|| consume_statsd(black_box(&statsd)))
    });
    let influx = datagram(INFLUX_LINES, lines);
    group.bench_function("influx_telegraf_mix_lines", |bencher| {
        bencher.iter(|| consume_influx(black_box(&influx)))
    });
    // The same work counted in bytes, for comparison with link and framing rates.
    group.throughput(Throughput::Bytes(statsd.len() as u64));
    group.bench_function("statsd_dogstatsd_mix_bytes", |bencher| {
        bencher.iter(|| consume_statsd(black_box(&statsd)))
    });
    group.throughput(Throughput::Bytes(influx.len() as u64));
    group.bench_function("influx_telegraf_mix_bytes", |bencher| {
        bencher.iter(|| consume_influx(black_box(&influx)))
    });
    group.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
