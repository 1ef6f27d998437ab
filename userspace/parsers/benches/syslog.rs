//! Syslog parsing throughput, in messages and bytes per second, for ~250-byte frames: RFC 5424
//! with structured data, and an RFC 3164 mix of the senders the parser has quirks for.
//!
//! A few hundred distinct frames are cycled so that branch predictors cannot learn one
//! message by heart.

use std::hint::black_box;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use killkrill_parsers::syslog::{ParseOptions, parse_syslog};

const DISTINCT_FRAMES: usize = 320;

const HOSTS: &[&str] = &["web-01.prod.example.net", "db-17", "edge-router-3.dc2", "WIN-DC01", "fw01"];
const APPS: &[&str] = &["nginx", "postgres", "sshd", "billing-api", "Microsoft-Windows-Security-Auditing"];

/// Pads `frame` with message words up to about `target` bytes.
fn padded(mut frame: String, target: usize) -> Vec<u8> {
    const WORDS: &[&str] =
        &["request", "completed", "user=ops", "status=200", "bytes=5120", "path=/api/v1/items"];
    let mut word = 0;
    while frame.len() < target {
        frame.push(' ');
        frame.push_str(WORDS[word % WORDS.len()]);
        word += 1;
    }
    frame.into_bytes()
}

fn rfc5424_frames() -> Vec<Vec<u8>> {
    (0..DISTINCT_FRAMES)
        .map(|i| {
            let frame = format!(
                "<{pri}>1 2024-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}+0{zone}:00 {host} {app} {pid} REQ{msgid} \
                 [req@32473 id=\"{i:08x}\" method=\"GET\" path=\"/api/v1/items\\\"{i}\\\"\"][origin ip=\"192.0.2.{octet}\" \
                 software=\"killkrill-bench\"] \u{FEFF}request",
                pri = 8 + i % 184,
                month = 1 + i % 12,
                day = 1 + i % 28,
                hour = i % 24,
                minute = i % 60,
                second = (i * 7) % 60,
                micros = i * 3_117 % 1_000_000,
                zone = i % 10,
                host = HOSTS[i % HOSTS.len()],
                app = APPS[i % APPS.len()],
                pid = 1000 + i,
                msgid = i % 17,
                octet = i % 250,
            );
            padded(frame, 250)
        })
        .collect()
}

const MONTHS: &[&str] = &["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Linux daemons, Cisco IOS and ASA, Juniper, Fortinet, NXLog and rsyslog's ISO timestamps.
fn rfc3164_frames() -> Vec<Vec<u8>> {
    (0..DISTINCT_FRAMES)
        .map(|i| {
            let month = MONTHS[i % 12];
            let (day, hour, minute, second) = (1 + i % 28, i % 24, i % 60, (i * 7) % 60);
            let host = HOSTS[i % HOSTS.len()];
            let frame = match i % 7 {
                0 => format!("<38>{month} {day:>2} {hour:02}:{minute:02}:{second:02} {host} sshd[{}]: Accepted publickey for deploy from 198.51.100.{} port 50122 ssh2", 2000 + i, i % 250),
                1 => format!("<189>{}: *{month} {day:>2} {hour:02}:{minute:02}:{second:02}.{:03}: %LINEPROTO-5-UPDOWN: Line protocol on Interface GigabitEthernet0/{}, changed state to up", 100 + i, i % 1000, i % 48),
                2 => format!("<166>{month} {day:02} 2024 {hour:02}:{minute:02}:{second:02} {host} : %ASA-6-302013: Built outbound TCP connection {} for outside:203.0.113.{}/443 (203.0.113.9/443) to inside:10.1.1.5/51000", 10_000 + i, i % 250),
                3 => format!("<28>{month} {day:>2} {hour:02}:{minute:02}:{second:02} {host} mgd[{}]: UI_COMMIT: User 'ops' requested 'commit' operation (comment: change {i})", 3000 + i),
                4 => format!("<189>date=2024-{:02}-{day:02} time={hour:02}:{minute:02}:{second:02} devname=\"FG100E-{i}\" devid=\"FG100E0000000001\" logid=\"0000000013\" type=\"traffic\" subtype=\"forward\" level=\"notice\" srcip=10.0.0.{} dstip=192.0.2.80 action=\"accept\"", 1 + i % 12, i % 250),
                5 => format!("<14>{month} {day:>2} {hour:02}:{minute:02}:{second:02} WIN-DC01 Microsoft-Windows-Security-Auditing[624]: An account was successfully logged on. Subject: Security ID: S-1-5-18 Logon ID: 0x{i:x}"),
                _ => format!("<30>2024-{:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:06}+02:00 {host} nginx[{}]: 203.0.113.5 - - \"GET /api/v1/items/{i} HTTP/1.1\" 200", 1 + i % 12, i * 31 % 1_000_000, 900 + i),
            };
            padded(frame, 250)
        })
        .collect()
}

/// Touches the parsed fields so that nothing is optimised away.
fn parse_all(frames: &[Vec<u8>], options: &ParseOptions) -> usize {
    frames
        .iter()
        .map(|frame| {
            let parsed = parse_syslog(black_box(frame), options);
            parsed.message.len()
                + parsed.hostname.map_or(0, str::len)
                + parsed.timestamp.map_or(0, |timestamp| usize::from(timestamp.fractional_digits))
                + usize::from(parsed.parse_error.is_some())
        })
        .sum()
}

fn bench_frames(group: &mut BenchmarkGroup<'_, WallTime>, frames: &[Vec<u8>], options: &ParseOptions) {
    let count = u64::try_from(frames.len()).expect("count fits");
    let bytes = u64::try_from(frames.iter().map(Vec::len).sum::<usize>()).expect("bytes fit");
    group.throughput(Throughput::Elements(count));
    group.bench_function("messages", |b| b.iter(|| parse_all(frames, options)));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("bytes", |b| b.iter(|| parse_all(frames, options)));
}

fn options(time_zone: TimeZone) -> ParseOptions {
    let received_at: Timestamp = "2024-06-15T12:00:00Z".parse().expect("valid receive time");
    ParseOptions { received_at, time_zone }
}

fn syslog(c: &mut Criterion) {
    let utc = options(TimeZone::UTC);
    let rfc5424 = rfc5424_frames();
    let rfc3164 = rfc3164_frames();

    let mut group = c.benchmark_group("syslog_rfc5424_structured_data");
    bench_frames(&mut group, &rfc5424, &utc);
    group.finish();

    let mut group = c.benchmark_group("syslog_rfc3164_vendor_mix");
    bench_frames(&mut group, &rfc3164, &utc);
    group.finish();

    // Zone-less timestamps read in a zone with DST rules: the jiff lookup path.
    let paris = options(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("valid POSIX zone"));
    let mut group = c.benchmark_group("syslog_rfc3164_vendor_mix_in_cet");
    bench_frames(&mut group, &rfc3164, &paris);
    group.finish();
}

criterion_group!(benches, syslog);
criterion_main!(benches);
