//! JSON logs and Prometheus metrics, shaped as ../shared/CONVENTIONS.md asks and as the
//! control plane does it (docs/adr/0006-telemetry.md).

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::{Error, SERVICE_NAME};

/// Installs the JSON logger at `level` (a level name or a tracing filter directive), with
/// the formatter the appliance and the agent use (`killkrill-logging`).
pub fn init_logging(level: &str) -> Result<(), Error> {
    killkrill_logging::init(SERVICE_NAME, level)
        .map_err(|error| Error::Config(format!("LOG_LEVEL = {error}")))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route, never the raw URI, to keep labels bounded.
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    pub method: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// A bounded cause (`Error::metric_label`).
    pub reason: &'static str,
}

/// Seconds; reconciles sit in the low buckets, HTTP answers too.
const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every metric the operator serves.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_errors: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpRouteLabels, Histogram>,
    pub http_active: Gauge,
    pub reconciliations: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_errors = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpRouteLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        let http_active = Gauge::default();
        let reconciliations = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(BUCKETS);
        registry.register("http_requests", "HTTP requests answered", http_requests.clone());
        registry.register("http_errors", "HTTP requests answered with a 5xx status", http_errors.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        registry.register("http_requests_active", "HTTP requests being answered", http_active.clone());
        registry.register(
            "killkrill_operator_reconciliations",
            "Reconciles of Ingestors, by result",
            reconciliations.clone(),
        );
        registry.register(
            "killkrill_operator_reconcile_errors",
            "Failed reconciles, by cause",
            reconcile_errors.clone(),
        );
        registry.register(
            "killkrill_operator_reconcile_duration_seconds",
            "Time one reconcile of one Ingestor took",
            reconcile_duration.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            http_requests,
            http_errors,
            http_duration,
            http_active,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
        }
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, elapsed: Duration, error: Option<&Error>) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciliations.get_or_create(&ReconcileLabels { result }).inc();
        if let Some(error) = error {
            self.reconcile_errors.get_or_create(&ErrorLabels { reason: error.metric_label() }).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[derive(Debug)]
struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if let Some(bytes) = resident_memory_bytes() {
            ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX)).encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(seconds) = cpu_seconds() {
            ConstCounter::new(seconds).encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

/// Resident memory in bytes, from /proc/self/statm.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

/// User plus system CPU time, from /proc/self/stat (fields 14 and 15, in clock ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / clock_ticks_per_second())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
