//! `query` and `api`: latency of the selective and broad searches, and the request rate
//! of a simple authenticated query, all through the real HTTP API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use killkrill_perf::prng::SplitMix64;
use serde_json::Value;

use crate::corpus;
use crate::fill::Filled;
use crate::server::Appliance;

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map_or_else(|_| String::new(), |t| t.to_string())
}

/// Latencies in microseconds, printed as one line.
pub struct Latencies {
    pub name: &'static str,
    pub histogram: Histogram<u64>,
    pub rows: u64,
}

impl Latencies {
    fn new(name: &'static str) -> anyhow::Result<Self> {
        Ok(Self { name, histogram: Histogram::new_with_bounds(1, 600_000_000, 3)?, rows: 0 })
    }

    pub fn line(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut line = format!(
            "{}: {} queries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.name,
            self.histogram.len(),
            ms(self.histogram.value_at_quantile(0.5)),
            ms(self.histogram.value_at_quantile(0.99)),
            ms(self.histogram.max()),
        );
        if self.rows > 0 {
            line +=
                &format!(", {:.1} rows per answer", self.rows as f64 / self.histogram.len().max(1) as f64);
        }
        line
    }
}

async fn timed_get(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<(Duration, Value)> {
    let started = Instant::now();
    let answer = client.get(url).bearer_auth(key).send().await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.is_success(), "GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    Ok((elapsed, serde_json::from_slice(&body)?))
}

/// The selective (one host, last hour, one word) and broad (`q=error` over the day)
/// searches, `iterations` each, a different host and word every time; then the same two
/// over older data, ending 2 to 23 hours before the day's end, which compaction has merged
/// into large blocks by then (ADR 0055).
pub async fn run_queries(
    appliance: &Appliance,
    filled: &Filled,
    iterations: u64,
) -> anyhow::Result<Vec<Latencies>> {
    let key = appliance.api_key().await?;
    let client = reqwest::Client::new();
    let day_end = filled.day_start_ns + DAY_NS;
    let mut rng = SplitMix64::new(42);
    let mut selective = Latencies::new("selective (one host, last hour, one word)")?;
    let mut broad = Latencies::new("broad (q=error over the day, first page)")?;
    let mut older_selective = Latencies::new("selective, an hour ending 2 to 23 hours ago")?;
    let mut older_broad = Latencies::new("broad, first page of a day ending 2 to 23 hours ago")?;
    // The recent pair, then the older pair, each after a few unrecorded rounds (the first
    // queries warm the page cache): an older broad search decodes far more than the cache
    // of decoded blocks keeps, so interleaved it would measure the recent searches' misses.
    let mut latencies = [(&mut selective, &mut broad), (&mut older_selective, &mut older_broad)];
    for (pair, (selective, broad)) in latencies.iter_mut().enumerate() {
        // The searches of the last hour end at the day's end, the broad one somewhere in
        // the last hour so that no two are alike; the older ones 2 to 23 hours back.
        let end = |rng: &mut SplitMix64, within: i64| {
            if pair == 0 {
                day_end - rng.below(within as u64) as i64
            } else {
                day_end - 2 * HOUR_NS - rng.below(21 * HOUR_NS as u64) as i64
            }
        };
        for round in 0..iterations + 3 {
            let recorded = round >= 3;
            let selective_end = end(&mut rng, 1);
            let broad_end = end(&mut rng, HOUR_NS);
            let host = corpus::host_name(rng.below(corpus::HOSTS));
            let (word, _) = corpus::TERMS[rng.below(corpus::TERMS.len() as u64) as usize];
            let url = appliance.url(&format!(
                "/api/v1/logs?host={host}&q={word}&start={}&end={}&limit=100",
                rfc3339(selective_end - HOUR_NS),
                rfc3339(selective_end)
            ));
            time_search(&client, &url, &key, recorded.then_some(&mut **selective)).await?;
            let url = appliance.url(&format!(
                "/api/v1/logs?q=error&start={}&end={}&limit=100",
                rfc3339(broad_end - DAY_NS),
                rfc3339(broad_end)
            ));
            time_search(&client, &url, &key, recorded.then_some(&mut **broad)).await?;
        }
    }
    Ok(vec![selective, broad, older_selective, older_broad])
}

/// Runs one search, recording its latency and rows where `latencies` is given.
async fn time_search(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    latencies: Option<&mut Latencies>,
) -> anyhow::Result<()> {
    let (elapsed, body) = timed_get(client, url, key).await?;
    if let Some(latencies) = latencies {
        latencies.histogram.saturating_record(elapsed.as_micros() as u64);
        latencies.rows += body["logs"].as_array().map_or(0, Vec::len) as u64;
    }
    Ok(())
}

/// What the concurrent client measured.
pub struct Throughput {
    pub requests: u64,
    pub seconds: f64,
    pub latencies: Latencies,
}

impl Throughput {
    pub fn line(&self) -> String {
        format!("{:.0} requests/s; {}", self.requests as f64 / self.seconds, self.latencies.line())
    }
}

/// What the clients of `api` ask.
#[derive(Clone)]
pub enum Requests {
    /// The same path every time (the answer cache may serve it).
    Fixed(String),
    /// A different simple search every time (`distinct_path`): the answer cache cannot
    /// serve them, so each is a search of its own.
    Distinct { day_end_ns: i64 },
}

impl Requests {
    pub fn describe(&self) -> String {
        match self {
            Self::Fixed(path) => format!("GET {path}"),
            Self::Distinct { .. } => "distinct simple searches".to_owned(),
        }
    }
}

/// A simple search no client asked before: the newest messages up to a time somewhere in
/// the last ten minutes of the day (to the nanosecond, so no two are alike), of one host,
/// one app, some severities or none, 1 to 50 rows; or, a third of the time when the last
/// answer had one, the next page after its cursor.
fn distinct_path(rng: &mut SplitMix64, day_end_ns: i64, cursor: Option<&str>, last: &mut String) -> String {
    if let Some(cursor) = cursor
        && rng.below(3) == 0
    {
        return format!("{last}&cursor={cursor}");
    }
    let end = day_end_ns - rng.below(600_000_000_000) as i64;
    let mut path = format!("/api/v1/logs?end={}&limit={}", rfc3339(end), 1 + rng.below(50));
    match rng.below(5) {
        0 => {}
        1 => path += &format!("&host={}", corpus::host_name(rng.below(corpus::HOSTS))),
        2 => path += &format!("&app={}", corpus::app_name(rng.below(1_000))),
        3 => {
            path +=
                ["&severity=%3C%3Dwarning", "&severity=err", "&severity=info,notice"][rng.below(3) as usize]
        }
        _ => {
            path += &format!("&app={}&severity=%3C%3Dwarning", corpus::app_name(rng.below(1_000)));
        }
    }
    last.clone_from(&path);
    path
}

/// The `next_cursor` of an answer, found without parsing the whole body (the clients
/// share the server's cores): it is the answer's last field.
fn next_cursor(body: &[u8]) -> Option<String> {
    const FIELD: &[u8] = b"\"next_cursor\":\"";
    let at = body.windows(FIELD.len()).rposition(|window| window == FIELD)? + FIELD.len();
    let rest = &body[at..];
    let end = rest.iter().position(|&byte| byte == b'"')?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_owned)
}

/// `connections` keep-alive clients sending `requests` with an API key for `duration`.
pub async fn run_api(
    appliance: &Appliance,
    requests: &Requests,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let key = Arc::new(appliance.api_key().await?);
    let base = Arc::new(appliance.url(""));
    // One check outside the clock: the requests must answer 200.
    let first = match requests {
        Requests::Fixed(path) => path.clone(),
        Requests::Distinct { day_end_ns } => {
            distinct_path(&mut SplitMix64::new(7), *day_end_ns, None, &mut String::new())
        }
    };
    timed_get(&reqwest::Client::new(), &format!("{base}{first}"), &key).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (key, base, stop, failures) = (key.clone(), base.clone(), stop.clone(), failures.clone());
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            // One client per task, one connection each, kept alive.
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut rng = SplitMix64::new(1_000 + connection as u64);
            let (mut cursor, mut last) = (None::<String>, String::new());
            while !stop.load(Ordering::Relaxed) {
                let path = match &requests {
                    Requests::Fixed(path) => path.clone(),
                    Requests::Distinct { day_end_ns } => {
                        distinct_path(&mut rng, *day_end_ns, cursor.as_deref(), &mut last)
                    }
                };
                let sent = Instant::now();
                match client.get(format!("{base}{path}")).bearer_auth(key.as_str()).send().await {
                    Ok(answer) if answer.status().is_success() => {
                        let body = answer.bytes().await?;
                        histogram.saturating_record(sent.elapsed().as_micros() as u64);
                        if matches!(requests, Requests::Distinct { .. }) {
                            cursor = next_cursor(&body);
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(histogram)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Latencies::new("simple authenticated query")?;
    for task in tasks {
        latencies.histogram.add(task.await??)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} requests failed");
    Ok(Throughput { requests: latencies.histogram.len(), seconds, latencies })
}
