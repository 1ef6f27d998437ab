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
/// searches, `iterations` each, a different host and word every time.
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
    // A few unrecorded rounds first: the first queries warm the page cache.
    for round in 0..iterations + 3 {
        let host = corpus::host_name(rng.below(corpus::HOSTS));
        let (word, _) = corpus::TERMS[rng.below(corpus::TERMS.len() as u64) as usize];
        let url = appliance.url(&format!(
            "/api/v1/logs?host={host}&q={word}&start={}&end={}&limit=100",
            rfc3339(day_end - HOUR_NS),
            rfc3339(day_end)
        ));
        let (elapsed, body) = timed_get(&client, &url, &key).await?;
        if round >= 3 {
            selective.histogram.saturating_record(elapsed.as_micros() as u64);
            selective.rows += body["logs"].as_array().map_or(0, Vec::len) as u64;
        }
        // The broad search ends somewhere in the last hour, so no two are alike.
        let end = day_end - rng.below(HOUR_NS as u64) as i64;
        let url = appliance.url(&format!(
            "/api/v1/logs?q=error&start={}&end={}&limit=100",
            rfc3339(end - DAY_NS),
            rfc3339(end)
        ));
        let (elapsed, body) = timed_get(&client, &url, &key).await?;
        if round >= 3 {
            broad.histogram.saturating_record(elapsed.as_micros() as u64);
            broad.rows += body["logs"].as_array().map_or(0, Vec::len) as u64;
        }
    }
    Ok(vec![selective, broad])
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

/// `connections` keep-alive clients sending `path` with an API key for `duration`.
pub async fn run_api(
    appliance: &Appliance,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let key = Arc::new(appliance.api_key().await?);
    let url = Arc::new(appliance.url(path));
    // One check outside the clock: the path must answer 200.
    timed_get(&reqwest::Client::new(), &url, &key).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (key, url, stop, failures) = (key.clone(), url.clone(), stop.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            // One client per task, one connection each, kept alive.
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match client.get(url.as_str()).bearer_auth(key.as_str()).send().await {
                    Ok(answer) if answer.status().is_success() => {
                        answer.bytes().await?;
                        histogram.saturating_record(sent.elapsed().as_micros() as u64);
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
