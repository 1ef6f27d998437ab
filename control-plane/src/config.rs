//! The appliance's configuration: one typed tree, layered as defaults, then the TOML
//! file, then environment variables, then command-line flags (each layer wins over the
//! one before). Unknown keys are errors that name the key and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Where a listener binds, or `"off"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddress {
    Off,
    On(SocketAddr),
}

impl ListenAddress {
    pub fn address(self) -> Option<SocketAddr> {
        match self {
            ListenAddress::Off => None,
            ListenAddress::On(address) => Some(address),
        }
    }
}

impl TryFrom<String> for ListenAddress {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl std::str::FromStr for ListenAddress {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.eq_ignore_ascii_case("off") {
            return Ok(ListenAddress::Off);
        }
        value
            .parse()
            .map(ListenAddress::On)
            .map_err(|_| format!("`{value}` is not ADDRESS:PORT (e.g. 0.0.0.0:514 or [::]:514) or \"off\""))
    }
}

impl From<ListenAddress> for String {
    fn from(value: ListenAddress) -> Self {
        match value {
            ListenAddress::Off => "off".to_owned(),
            ListenAddress::On(address) => address.to_string(),
        }
    }
}

/// Which store backend holds the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    /// Embedded SQLite file in the data directory; no server needed.
    Sqlite,
    /// PostgreSQL at `store.database_url`.
    Postgres,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded store and local state. Created if missing.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub syslog: SyslogConfig,
    pub store: StoreConfig,
    pub batch: BatchConfig,
    pub log: LogConfig,
    pub capture: CaptureSection,
    pub ingest: IngestConfig,
    pub metrics: MetricsConfig,
    pub auth: AuthConfig,
    pub dataplane: DataplaneSection,
}

/// A secret setting: kept out of `Debug` output so that it cannot reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("\"<redacted>\"")
    }
}

/// Users, tokens and login throttling (docs/security.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Serve `/metrics` without credentials (Prometheus scrapers); when false it needs a
    /// viewer token or API key, on the API port and on the metrics port.
    pub metrics_public: bool,
    /// Secret that signs access tokens (HS256), at least 32 bytes. Unset: one is generated
    /// at first start and kept in the store, shared by every control plane on that store.
    /// Environment: KILLKRILL_AUTH__JWT_SECRET.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token (JWT), in seconds.
    pub access_token_ttl_s: u64,
    /// Lifetime of a refresh token, in seconds (each use replaces it with a new one).
    pub refresh_token_ttl_s: u64,
    /// Failed logins per minute from one client address, and for one username; past it,
    /// logins answer 429 until the minute is over.
    pub login_failures_per_minute: u32,
    /// Consecutive failed logins that lock an account...
    pub lockout_threshold: u32,
    /// ...for this many seconds.
    pub lockout_s: u64,
    /// Seconds a verified API key is remembered, so that busy clients do not cost a store
    /// look-up per request; 0 turns it off. A key deleted on another control plane of the
    /// same store keeps working here for at most this long (docs/adr/0035).
    pub api_key_cache_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            metrics_public: true,
            jwt_secret: None,
            access_token_ttl_s: 900,
            refresh_token_ttl_s: 7 * 86_400,
            login_failures_per_minute: 10,
            lockout_threshold: 5,
            lockout_s: 900,
            api_key_cache_s: 5,
        }
    }
}

impl AuthConfig {
    fn validate(&self) -> Result<(), Error> {
        for (key, value, low, high) in [
            ("auth.access_token_ttl_s", self.access_token_ttl_s, 1, 86_400),
            ("auth.refresh_token_ttl_s", self.refresh_token_ttl_s, 60, 90 * 86_400),
            ("auth.login_failures_per_minute", u64::from(self.login_failures_per_minute), 1, 100_000),
            ("auth.lockout_threshold", u64::from(self.lockout_threshold), 1, 1_000),
            ("auth.lockout_s", self.lockout_s, 1, 7 * 86_400),
            ("auth.api_key_cache_s", self.api_key_cache_s, 0, 300),
        ] {
            if !(low..=high).contains(&value) {
                return Err(Error::Config(format!("{key} = {value} is out of range ({low} to {high})")));
            }
        }
        if let Some(secret) = &self.jwt_secret
            && secret.0.len() < crate::auth::tokens::MIN_SECRET_BYTES
        {
            return Err(Error::Config(format!(
                "auth.jwt_secret must be at least {} bytes",
                crate::auth::tokens::MIN_SECRET_BYTES
            )));
        }
        Ok(())
    }
}

/// Which CPUs run the data plane and on what runtime (docs/runtime.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    /// `auto` (every CPU this process may use but the first, which is left to the control
    /// plane; all of them when there is only one) or a CPU list such as "2-5,8", which
    /// must lie within the CPUs this process may use.
    #[serde(deserialize_with = "cpu_list_text")]
    pub cores: String,
    /// `auto` (glommio where io_uring works, else pinned threads, saying why), `glommio`
    /// (or start-up fails) or `threads`.
    pub runtime: DataplaneRuntimeSetting,
}

/// `dataplane.runtime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneRuntimeSetting {
    Auto,
    Glommio,
    Threads,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        Self { cores: "auto".to_owned(), runtime: DataplaneRuntimeSetting::Auto }
    }
}

impl DataplaneSection {
    /// The parsed `dataplane.cores`, checked against the CPUs this process may use.
    pub fn cores(&self) -> Result<killkrill_dataplane::cores::CoreSelection, Error> {
        use killkrill_dataplane::cores::{CoreSelection, Topology, choose_cores};
        let invalid =
            |message: String| Error::Config(format!("dataplane.cores = {:?}: {message}", self.cores));
        let selection: CoreSelection = self.cores.parse().map_err(invalid)?;
        choose_cores(&selection, &Topology::read().allowed).map_err(invalid)?;
        Ok(selection)
    }

    pub fn runtime(&self) -> killkrill_dataplane::cores::RuntimeChoice {
        use killkrill_dataplane::cores::RuntimeChoice;
        match self.runtime {
            DataplaneRuntimeSetting::Auto => RuntimeChoice::Auto,
            DataplaneRuntimeSetting::Glommio => RuntimeChoice::Glommio,
            DataplaneRuntimeSetting::Threads => RuntimeChoice::Threads,
        }
    }
}

/// A CPU list as text, or a bare number (`KILLKRILL_DATAPLANE__CORES=3` arrives as one).
fn cpu_list_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Cpu(u64),
        Written(String),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::Cpu(cpu) => cpu.to_string(),
        Text::Written(text) => text,
    })
}

/// statsd and Influx listeners and their aggregation (docs/metrics.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// statsd / DogStatsD over UDP.
    pub statsd_udp: ListenAddress,
    /// Influx line protocol over UDP.
    pub influx_udp: ListenAddress,
    /// Length of an aggregation interval, in milliseconds: each listener flushes one
    /// point per series per interval, stamped with the interval's start.
    pub flush_interval_ms: u64,
    /// Series each listener tracks per interval; samples of further new series are
    /// counted and dropped.
    pub max_series: usize,
    /// Of those, timer, histogram and distribution series (each keeps a histogram of about
    /// 10 KiB for the interval).
    pub max_histogram_series: usize,
    /// Unit of Influx timestamps: ns, us, ms or s.
    pub influx_precision: String,
    /// Points each metrics listener may hold flushed and not yet stored (a few hundred
    /// bytes each); a flush past it is dropped and counted. Bounds memory while the store
    /// is slow or away.
    pub max_queued_points: usize,
    /// Receive threads per metrics listener (SO_REUSEPORT sockets, one aggregator each;
    /// the kernel spreads senders over them, points are merged at query time).
    pub receive_threads: usize,
    /// How long metric points are kept: `90d`, `12h`, ...; `0` keeps them forever.
    pub retention_max_age: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            statsd_udp: ListenAddress::On(SocketAddr::from(([0, 0, 0, 0], 8125))),
            influx_udp: ListenAddress::On(SocketAddr::from(([0, 0, 0, 0], 8089))),
            flush_interval_ms: 10_000,
            max_series: 100_000,
            max_histogram_series: 10_000,
            influx_precision: "ns".to_owned(),
            max_queued_points: 200_000,
            receive_threads: 1,
            retention_max_age: "30d".to_owned(),
        }
    }
}

impl MetricsConfig {
    /// The aggregators' settings; errors name the key.
    pub fn aggregator_settings(&self) -> Result<killkrill_dataplane::metrics::AggregatorSettings, Error> {
        use killkrill_parsers::influx::InfluxPrecision;
        if !(10..=3_600_000).contains(&self.flush_interval_ms) {
            return Err(Error::Config(format!(
                "metrics.flush_interval_ms = {} is out of range (10 to 3600000)",
                self.flush_interval_ms
            )));
        }
        if self.max_series == 0 {
            return Err(Error::Config("metrics.max_series must be above 0".to_owned()));
        }
        if !(1..=64).contains(&self.receive_threads) {
            return Err(Error::Config(format!(
                "metrics.receive_threads = {} is out of range (1 to 64)",
                self.receive_threads
            )));
        }
        if self.max_histogram_series == 0 {
            return Err(Error::Config("metrics.max_histogram_series must be above 0".to_owned()));
        }
        if self.max_queued_points == 0 {
            return Err(Error::Config("metrics.max_queued_points must be above 0".to_owned()));
        }
        let influx_precision = match self.influx_precision.as_str() {
            "ns" => InfluxPrecision::Nanoseconds,
            "us" => InfluxPrecision::Microseconds,
            "ms" => InfluxPrecision::Milliseconds,
            "s" => InfluxPrecision::Seconds,
            other => {
                return Err(Error::Config(format!(
                    "metrics.influx_precision = {other:?} is not one of ns, us, ms, s"
                )));
            }
        };
        Ok(killkrill_dataplane::metrics::AggregatorSettings {
            interval: std::time::Duration::from_millis(self.flush_interval_ms),
            max_series: self.max_series,
            max_histogram_series: self.max_histogram_series,
            influx_precision,
            max_queued_points: self.max_queued_points,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// REST API, health and metrics (HTTP).
    pub listen: ListenAddress,
    /// A second listener serving only /metrics, /health and /ready, for scrapers.
    pub metrics_listen: ListenAddress,
    /// PEM file with the API's TLS certificate, then its intermediates. With `tls_key`,
    /// the API (`listen`) speaks HTTPS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Serve the API over plain HTTP on a non-loopback address (behind a TLS-terminating
    /// proxy or ingress). Without TLS and without this, the API must listen on loopback.
    pub allow_http: bool,
}

/// How the API is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTransport {
    Https { cert: PathBuf, key: PathBuf },
    Http,
}

impl ApiConfig {
    /// HTTPS when a certificate is configured; plain HTTP only on loopback or with
    /// `api.allow_http` (docs/adr/0022).
    pub fn transport(&self) -> Result<ApiTransport, Error> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(ApiTransport::Https { cert: cert.clone(), key: key.clone() }),
            (Some(_), None) => Err(Error::Config("api.tls_key must be set with api.tls_cert".to_owned())),
            (None, Some(_)) => Err(Error::Config("api.tls_cert must be set with api.tls_key".to_owned())),
            (None, None) => match self.listen {
                ListenAddress::On(address) if !address.ip().is_loopback() && !self.allow_http => {
                    Err(Error::Config(format!(
                        "api.listen = {address} is not a loopback address and the API has no TLS: set \
                         api.tls_cert and api.tls_key (KILLKRILL_API__TLS_CERT, KILLKRILL_API__TLS_KEY), \
                         or allow plain HTTP with api.allow_http = true (KILLKRILL_API__ALLOW_HTTP=true) \
                         when a proxy terminates TLS"
                    )))
                }
                _ => Ok(ApiTransport::Http),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// Syslog over UDP.
    pub udp: ListenAddress,
    /// Syslog over TCP (RFC 6587 framing).
    pub tcp: ListenAddress,
    /// Syslog over TLS (RFC 5425). Unset: 0.0.0.0:6514 when `tls_cert` is set, off
    /// otherwise (said in the log at start-up). Setting an address without `tls_cert` is
    /// an error; "off" turns it off even with a certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenAddress>,
    /// PEM file with the server certificate, then its intermediates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM file with the CA certificate(s) client certificates must be signed by; when
    /// set, clients without such a certificate are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// A TLS client must finish its handshake within this many milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Longest TCP or TLS frame kept whole, in bytes; longer ones are truncated and counted.
    pub max_frame_bytes: usize,
    /// IANA zone for timestamps that carry no offset (RFC 3164), e.g. "Europe/Paris".
    pub time_zone: String,
    /// TCP and TLS listeners write what they read to `data_dir/journal` before framing
    /// it, so a crash loses nothing they took off a connection (ADR 0031).
    pub stream_journal: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (default) or `postgres`. Environment: DB_TYPE.
    pub db_type: DbType,
    /// Connection URL for `postgres`; for `sqlite`, overrides the file in data_dir.
    /// Environment: DATABASE_URL.
    pub database_url: Option<String>,
    /// Redis for the scale-out hand-off. Environment: REDIS_URL.
    pub redis_url: Option<String>,
    /// A log block takes the batches waiting for the writer, up to this many messages
    /// (at most 65,536).
    pub block_max_messages: usize,
    /// zstd level for log blocks as they arrive: 1 (the default) is fastest; higher levels
    /// trade ingest CPU for disk until compaction re-encodes the block at its own level
    /// (ADR 0041).
    pub compression_level: i32,
    /// Log blocks encoded (compressed) at the same time, each encoder starting its next
    /// block while the last one commits; 0 means one per available core.
    pub encoders: usize,
    /// Log blocks whose newest message is older than this are removed: a number and a
    /// unit (s, m, h, d, w), e.g. "30d"; "0" keeps everything (a bare number is seconds).
    #[serde(deserialize_with = "duration_text")]
    pub retention_max_age: String,
    /// The oldest log blocks are removed while the stored bytes pass this; 0 is no limit.
    pub retention_max_bytes: u64,
    /// How often retention runs, in seconds.
    pub retention_interval_s: u64,
    /// With PostgreSQL: how often, in seconds, live settings kept by other control planes
    /// (source lists, rate limit, retention) are looked for and applied; 0 turns it off.
    pub runtime_config_poll_s: u64,
    /// Room for blocks the store could not take (kept in `data_dir/spool`); 0 disables the
    /// spool, and the writer then waits for the store.
    pub spool_max_bytes: u64,
    /// Background compaction of older log blocks by host (`[store.compaction]`).
    pub compaction: CompactionConfig,
}

/// `[store.compaction]`: blocks older than `after` are written again grouped by host, so a
/// search for one host decodes a few small blocks (docs/storage.md, ADR 0037), and those
/// older than `merge_after` are merged into large blocks (ADR 0055).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// false turns compaction off (blocks stay as the writer cut them).
    pub enabled: bool,
    /// Blocks whose newest message is younger than this are left alone (a duration,
    /// e.g. "30s"; a bare number is seconds).
    #[serde(deserialize_with = "duration_text")]
    pub after: String,
    /// Blocks that began within one window of receive time are compacted together.
    #[serde(deserialize_with = "duration_text")]
    pub window: String,
    /// Messages per compacted block, about (1 to 65,536).
    pub block_messages: usize,
    /// zstd level of compacted blocks (1 to 22).
    pub zstd_level: i32,
    /// How often, in seconds, compaction looks for blocks old enough.
    pub interval_s: u64,
    /// Blocks grouped by host are merged once this old ("0": never); at least `after`
    /// plus `window`.
    #[serde(deserialize_with = "duration_text")]
    pub merge_after: String,
    /// Blocks grouped by host that began within one merge window are merged together.
    #[serde(deserialize_with = "duration_text")]
    pub merge_window: String,
    /// Messages per merged block, about (1 to 65,536).
    pub merge_block_messages: usize,
    /// zstd level of merged blocks (1 to 22).
    pub merge_zstd_level: i32,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after: "30s".to_owned(),
            window: "60s".to_owned(),
            block_messages: 1_024,
            zstd_level: 9,
            interval_s: 10,
            merge_after: "1h".to_owned(),
            merge_window: "1h".to_owned(),
            merge_block_messages: 16_384,
            merge_zstd_level: 19,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch is handed to the store after this many messages...
    pub max_messages: usize,
    /// ...or once its oldest message is this old, in milliseconds.
    pub max_age_ms: u64,
    /// Closed batches each listener may have waiting for the store.
    pub handoff_capacity: usize,
}

/// Where the batch writer sends the blocks it encodes (docs/scale-out.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandoffMode {
    /// Straight into this process's store.
    Direct,
    /// To a Redis Stream, from which stream writers (in any control plane) store them.
    Redis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// `direct` (default) or `redis` (needs store.redis_url).
    pub handoff: HandoffMode,
    /// Run a stream writer that stores blocks from the Redis Stream; default: on when
    /// `handoff = "redis"`.
    pub redis_writer: Option<bool>,
    /// The Redis Stream blocks are published to.
    pub redis_stream: String,
    /// The consumer group every stream writer joins.
    pub redis_group: String,
    /// Most entries (blocks) the stream may hold; at the cap, publishers wait (and count)
    /// rather than trim blocks not yet stored.
    pub redis_stream_max_len: u64,
    /// This writer's consumer name; default: hostname-pid.
    pub redis_consumer: Option<String>,
    /// A block read by a writer and not acknowledged for this long, in milliseconds, is
    /// claimed by another writer (its writer is taken for dead).
    pub redis_claim_min_idle_ms: u64,
    /// HTTP ingest requests (`POST /api/v1/logs`, `/metrics`, `/prom/write`) in progress at
    /// once; further ones are answered 429 with Retry-After.
    pub http_max_concurrent: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            handoff: HandoffMode::Direct,
            redis_writer: None,
            redis_stream: "killkrill:blocks".to_owned(),
            redis_group: "killkrill-writers".to_owned(),
            redis_stream_max_len: 1000,
            redis_consumer: None,
            redis_claim_min_idle_ms: 30_000,
            http_max_concurrent: 16,
        }
    }
}

impl IngestConfig {
    /// Whether this process runs a stream writer.
    pub fn runs_redis_writer(&self) -> bool {
        self.redis_writer.unwrap_or(self.handoff == HandoffMode::Redis)
    }

    fn validate(&self, redis_url: Option<&str>) -> Result<(), Error> {
        if redis_url.is_none_or(str::is_empty) {
            if self.handoff == HandoffMode::Redis {
                return Err(Error::Config(
                    "ingest.handoff = \"redis\" needs store.redis_url (REDIS_URL)".to_owned(),
                ));
            }
            if self.runs_redis_writer() {
                return Err(Error::Config(
                    "ingest.redis_writer = true needs store.redis_url (REDIS_URL)".to_owned(),
                ));
            }
        }
        for (key, value) in
            [("ingest.redis_stream", &self.redis_stream), ("ingest.redis_group", &self.redis_group)]
        {
            if value.is_empty() {
                return Err(Error::Config(format!("{key} must not be empty")));
            }
        }
        if self.redis_consumer.as_deref() == Some("") {
            return Err(Error::Config("ingest.redis_consumer must not be empty".to_owned()));
        }
        for (key, value) in [
            ("ingest.redis_stream_max_len", self.redis_stream_max_len),
            ("ingest.redis_claim_min_idle_ms", self.redis_claim_min_idle_ms),
            ("ingest.http_max_concurrent", self.http_max_concurrent as u64),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{key} must be above 0")));
            }
        }
        Ok(())
    }
}

/// How syslog, statsd and Influx over UDP are taken off the wire (docs/capture.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureModeSetting {
    /// XDP (native, then generic) when `interface` is set and it attaches; sockets otherwise.
    Auto,
    /// XDP (native, then generic) on `interface`, or start-up fails.
    Xdp,
    /// Ordinary sockets only.
    Socket,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// `auto` (default), `xdp` or `socket`.
    pub mode: CaptureModeSetting,
    /// The interface the XDP program attaches to (e.g. "eth0"); required for `xdp`.
    pub interface: Option<String>,
    /// AF_XDP sockets for rx queues 0 to queues-1; default: every rx queue of the interface.
    pub queues: Option<u32>,
    /// Bytes per UMEM frame, 2048 or 4096.
    pub frame_size: u32,
    /// Frames in each queue's UMEM (memory per queue = umem_frames * frame_size bytes).
    pub umem_frames: u32,
    /// Fill ring entries per queue (power of two).
    pub fill_ring_size: u32,
    /// RX ring entries per queue (power of two).
    pub rx_ring_size: u32,
    /// Source prefixes (CIDR) whose messages are dropped, by XDP on steered ports and by
    /// every socket listener.
    pub deny: Vec<String>,
    /// When non-empty, only these source prefixes (CIDR) are accepted (XDP and sockets).
    pub allow: Vec<String>,
    /// Per-source limit in messages per second (XDP and datagram sockets); 0 turns it off.
    pub rate_limit_per_second: u64,
    /// Per-source burst in messages; 0 means the same as rate_limit_per_second.
    pub rate_limit_burst: u64,
    /// Whether to use the node agent's pinned XDP program: `auto` (default: the agent's when
    /// its link for `interface` is pinned under `pin_dir`, else our own), `require` (the
    /// agent's or no XDP) or `ignore` (always our own).
    pub agent: AgentPinsSetting,
    /// The bpffs folder where the node agent pins its program (its `bpf_pin_dir`).
    pub pin_dir: PathBuf,
    /// How UDP socket listeners (syslog, statsd, Influx) read their sockets: `auto`
    /// (default: the method measured faster, recvmmsg here), `recvmmsg` or `io_uring`
    /// (multishot receive; recvmmsg, with a warning, where io_uring is unavailable).
    pub socket_receive: SocketReceiveSetting,
}

/// `capture.socket_receive` (docs/adr/0033-io-uring-socket-receive.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketReceiveSetting {
    Auto,
    Recvmmsg,
    IoUring,
}

/// `capture.agent` (docs/adr/0028-serve-on-agent-pins.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentPinsSetting {
    Auto,
    Require,
    Ignore,
}

impl Default for CaptureSection {
    fn default() -> Self {
        let af_xdp = killkrill_dataplane::capture::AfXdpSettings::default();
        Self {
            mode: CaptureModeSetting::Auto,
            interface: None,
            queues: None,
            frame_size: af_xdp.frame_size,
            umem_frames: af_xdp.umem_frames,
            fill_ring_size: af_xdp.fill_ring_size,
            rx_ring_size: af_xdp.rx_ring_size,
            deny: Vec::new(),
            allow: Vec::new(),
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            agent: AgentPinsSetting::Auto,
            pin_dir: PathBuf::from(killkrill_dataplane::capture::DEFAULT_AGENT_PIN_DIR),
            socket_receive: SocketReceiveSetting::Auto,
        }
    }
}

impl CaptureSection {
    /// The data plane's view of this section; errors name the key.
    pub fn to_dataplane(&self) -> Result<killkrill_dataplane::capture::CaptureConfig, Error> {
        use killkrill_dataplane::capture::{AfXdpSettings, AgentPins, CaptureConfig, CaptureMode};
        use killkrill_dataplane::listener::udp_receive::SocketReceive;
        use killkrill_dataplane::xdp::{RateLimit, parse_prefixes};
        let mode = match self.mode {
            CaptureModeSetting::Auto => CaptureMode::Auto,
            CaptureModeSetting::Xdp => CaptureMode::Xdp,
            CaptureModeSetting::Socket => CaptureMode::Socket,
        };
        if mode == CaptureMode::Xdp && self.interface.as_deref().is_none_or(str::is_empty) {
            return Err(Error::Config(
                "capture.interface must be set when capture.mode = \"xdp\"".to_owned(),
            ));
        }
        if self.queues == Some(0) {
            return Err(Error::Config("capture.queues must be above 0".to_owned()));
        }
        if !self.pin_dir.is_absolute() {
            return Err(Error::Config(format!(
                "capture.pin_dir = {:?} must be an absolute path",
                self.pin_dir.display()
            )));
        }
        let af_xdp = AfXdpSettings {
            frame_size: self.frame_size,
            umem_frames: self.umem_frames,
            fill_ring_size: self.fill_ring_size,
            rx_ring_size: self.rx_ring_size,
        };
        af_xdp
            .validate()
            .map_err(|error| Error::Config(error.to_string().replace("capture: ", "capture.")))?;
        for (key, list) in [("capture.deny", &self.deny), ("capture.allow", &self.allow)] {
            parse_prefixes(list).map_err(|error| Error::Config(format!("{key}: {error}")))?;
        }
        let rate_limit = (self.rate_limit_per_second > 0).then_some(RateLimit {
            per_second: self.rate_limit_per_second,
            burst: if self.rate_limit_burst == 0 {
                self.rate_limit_per_second
            } else {
                self.rate_limit_burst
            },
        });
        if let Some(limit) = &rate_limit
            && let Err(error) = killkrill_dataplane::xdp::XdpSteering::check_rate_limit(limit)
        {
            return Err(Error::Config(format!("capture.rate_limit_per_second / rate_limit_burst: {error}")));
        }
        Ok(CaptureConfig {
            mode,
            interface: self.interface.clone().filter(|name| !name.is_empty()),
            queues: self.queues,
            af_xdp,
            deny: self.deny.clone(),
            allow: self.allow.clone(),
            rate_limit,
            agent: match self.agent {
                AgentPinsSetting::Auto => AgentPins::Auto,
                AgentPinsSetting::Require => AgentPins::Require,
                AgentPinsSetting::Ignore => AgentPins::Ignore,
            },
            pin_dir: self.pin_dir.clone(),
            socket_receive: match self.socket_receive {
                SocketReceiveSetting::Auto => SocketReceive::Auto,
                SocketReceiveSetting::Recvmmsg => SocketReceive::Recvmmsg,
                SocketReceiveSetting::IoUring => SocketReceive::IoUring,
            },
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// debug, info, warn or error (or a tracing filter). Environment: LOG_LEVEL.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/killkrill"),
            api: ApiConfig::default(),
            syslog: SyslogConfig::default(),
            store: StoreConfig::default(),
            batch: BatchConfig::default(),
            log: LogConfig::default(),
            capture: CaptureSection::default(),
            ingest: IngestConfig::default(),
            metrics: MetricsConfig::default(),
            auth: AuthConfig::default(),
            dataplane: DataplaneSection::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddress::On(SocketAddr::from(([0, 0, 0, 0], 8080))),
            metrics_listen: ListenAddress::On(SocketAddr::from(([0, 0, 0, 0], 9090))),
            tls_cert: None,
            tls_key: None,
            allow_http: false,
        }
    }
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            udp: ListenAddress::On(SocketAddr::from(([0, 0, 0, 0], 514))),
            tcp: ListenAddress::On(SocketAddr::from(([0, 0, 0, 0], 514))),
            tls: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_handshake_timeout_ms: 10_000,
            max_frame_bytes: 64 * 1024,
            time_zone: "UTC".to_owned(),
            stream_journal: true,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            db_type: DbType::Sqlite,
            database_url: None,
            redis_url: None,
            block_max_messages: 16_384,
            compression_level: 1,
            encoders: 0,
            retention_max_age: "30d".to_owned(),
            retention_max_bytes: 0,
            retention_interval_s: 60,
            runtime_config_poll_s: 10,
            spool_max_bytes: 1 << 30,
            compaction: CompactionConfig::default(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_messages: 4096, max_age_ms: 100, handoff_capacity: 64 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".to_owned() }
    }
}

/// A duration written as text ("30d") or as a bare number of seconds (environment
/// variables such as `KILLKRILL_STORE__RETENTION_MAX_AGE=0` arrive as numbers).
fn duration_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Seconds(u64),
        Written(String),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::Seconds(0) => "0".to_owned(),
        Text::Seconds(seconds) => format!("{seconds}s"),
        Text::Written(text) => text,
    })
}

/// "30d", "12h", "90m", "45s", "2w" or "0", in nanoseconds.
pub fn parse_duration_ns(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err("expected a number and a unit (s, m, h, d, w), e.g. \"30d\"".to_owned()),
    };
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .and_then(|seconds| seconds.checked_mul(1_000_000_000))
        .ok_or_else(|| "not a number, or too large".to_owned())
}

/// Settings given as command-line flags; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_listen: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_udp: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_tcp: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_tls: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd_udp: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influx_udp: Option<ListenAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_flush_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_tls_key: Option<PathBuf>,
    /// `--api-allow-http`: only ever turns it on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_allow_http: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane_cores: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane_runtime: Option<DataplaneRuntimeSetting>,
}

impl FlagOverrides {
    fn into_figment(self) -> Figment {
        let mut figment = Figment::new();
        if let Some(value) = self.data_dir {
            figment = figment.merge(Serialized::default("data_dir", value));
        }
        for (key, value) in [
            ("api.listen", self.api_listen),
            ("api.metrics_listen", self.metrics_listen),
            ("syslog.udp", self.syslog_udp),
            ("syslog.tcp", self.syslog_tcp),
            ("syslog.tls", self.syslog_tls),
            ("metrics.statsd_udp", self.statsd_udp),
            ("metrics.influx_udp", self.influx_udp),
        ] {
            if let Some(value) = value {
                figment = figment.merge(Serialized::default(key, String::from(value)));
            }
        }
        if let Some(value) = self.metrics_flush_interval_ms {
            figment = figment.merge(Serialized::default("metrics.flush_interval_ms", value));
        }
        for (key, value) in [("api.tls_cert", self.api_tls_cert), ("api.tls_key", self.api_tls_key)] {
            if let Some(value) = value {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        if let Some(value) = self.api_allow_http {
            figment = figment.merge(Serialized::default("api.allow_http", value));
        }
        if let Some(value) = self.dataplane_cores {
            figment = figment.merge(Serialized::default("dataplane.cores", value));
        }
        if let Some(value) = self.dataplane_runtime {
            figment = figment.merge(Serialized::default("dataplane.runtime", value));
        }
        figment
    }
}

/// The variables CONVENTIONS.md names, outside the KILLKRILL_ prefix.
const NAMED_VARIABLES: [(&str, &str); 4] = [
    ("DB_TYPE", "store.db_type"),
    ("DATABASE_URL", "store.database_url"),
    ("REDIS_URL", "store.redis_url"),
    ("LOG_LEVEL", "log.level"),
];

impl Config {
    /// Builds the configuration from its layers, reading the process environment.
    pub fn load(file: Option<&Path>, flags: FlagOverrides) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(Error::Config(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // KILLKRILL_SECTION__KEY sets section.key: a double underscore separates levels,
        // since keys themselves contain single ones.
        // The ignored ones are read elsewhere: the first admin (auth::bootstrap) and the
        // command-line clients' server, token and agent key.
        figment = figment.merge(
            Env::prefixed("KILLKRILL_")
                .ignore(&["config", "admin_password", "admin_user", "server", "token", "ca_cert", "api_key"])
                .split("__"),
        );
        figment = figment.merge(Env::raw().filter_map(|name| {
            NAMED_VARIABLES.iter().find(|(variable, _)| name == *variable).map(|(_, key)| (*key).into())
        }));
        figment = figment.merge(flags.into_figment());
        let config: Config = figment.extract().map_err(describe_figment_error)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.syslog.max_frame_bytes < 64 || self.syslog.max_frame_bytes > 16 << 20 {
            return Err(Error::Config(format!(
                "syslog.max_frame_bytes = {} is out of range (64 to 16777216)",
                self.syslog.max_frame_bytes
            )));
        }
        for (key, value) in [
            ("batch.max_messages", self.batch.max_messages as u64),
            ("batch.max_age_ms", self.batch.max_age_ms),
            ("batch.handoff_capacity", self.batch.handoff_capacity as u64),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{key} must be above 0")));
            }
        }
        if !(1..=65_536).contains(&self.store.block_max_messages) {
            return Err(Error::Config(format!(
                "store.block_max_messages = {} is out of range (1 to 65536)",
                self.store.block_max_messages
            )));
        }
        if !(1..=19).contains(&self.store.compression_level) {
            return Err(Error::Config(format!(
                "store.compression_level = {} is out of range (1 to 19)",
                self.store.compression_level
            )));
        }
        self.retention()?;
        if self.store.retention_interval_s == 0 {
            return Err(Error::Config("store.retention_interval_s must be above 0".to_owned()));
        }
        self.time_zone()?;
        self.capture.to_dataplane()?;
        self.syslog.tls_address()?;
        self.ingest.validate(self.store.redis_url.as_deref())?;
        self.metrics.aggregator_settings()?;
        self.auth.validate()?;
        self.dataplane.cores()?;
        self.compaction()?;
        Ok(())
    }

    /// The store's retention limits.
    pub fn retention(&self) -> Result<crate::store::Retention, Error> {
        let max_age_ns = parse_duration_ns(&self.store.retention_max_age).map_err(|message| {
            Error::Config(format!("store.retention_max_age = {:?}: {message}", self.store.retention_max_age))
        })?;
        let metric_max_age_ns = parse_duration_ns(&self.metrics.retention_max_age).map_err(|message| {
            Error::Config(format!(
                "metrics.retention_max_age = {:?}: {message}",
                self.metrics.retention_max_age
            ))
        })?;
        Ok(crate::store::Retention {
            max_age_ns: (max_age_ns > 0).then_some(max_age_ns),
            metric_max_age_ns: (metric_max_age_ns > 0).then_some(metric_max_age_ns),
            max_bytes: (self.store.retention_max_bytes > 0)
                .then(|| i64::try_from(self.store.retention_max_bytes).unwrap_or(i64::MAX)),
        })
    }

    /// The compaction settings, checked (None when compaction is off).
    pub fn compaction(&self) -> Result<Option<crate::store::compaction::CompactionSettings>, Error> {
        let config = &self.store.compaction;
        if !config.enabled {
            return Ok(None);
        }
        let duration = |name: &str, text: &str| {
            parse_duration_ns(text)
                .map_err(|message| Error::Config(format!("store.compaction.{name} = {text:?}: {message}")))
        };
        let block_messages = |name: &str, value: usize| {
            if (1..=crate::store::block::MAX_ROWS).contains(&value) {
                Ok(value)
            } else {
                Err(Error::Config(format!(
                    "store.compaction.{name} = {value} must be 1 to {}",
                    crate::store::block::MAX_ROWS
                )))
            }
        };
        let zstd_level = |name: &str, value: i32| {
            if (1..=22).contains(&value) {
                Ok(value)
            } else {
                Err(Error::Config(format!("store.compaction.{name} = {value} must be 1 to 22")))
            }
        };
        let by_host = crate::store::compaction::PassSettings {
            after_ns: duration("after", &config.after)?,
            window_ns: duration("window", &config.window)?,
            block_messages: block_messages("block_messages", config.block_messages)?,
            zstd_level: zstd_level("zstd_level", config.zstd_level)?,
        };
        if by_host.window_ns <= 0 {
            return Err(Error::Config("store.compaction.window must be longer than 0".to_owned()));
        }
        if config.interval_s == 0 {
            return Err(Error::Config("store.compaction.interval_s must be at least 1".to_owned()));
        }
        let merge_after_ns = duration("merge_after", &config.merge_after)?;
        let merge = if merge_after_ns == 0 {
            None
        } else {
            let merge = crate::store::compaction::PassSettings {
                after_ns: merge_after_ns,
                window_ns: duration("merge_window", &config.merge_window)?,
                block_messages: block_messages("merge_block_messages", config.merge_block_messages)?,
                zstd_level: zstd_level("merge_zstd_level", config.merge_zstd_level)?,
            };
            if merge.window_ns <= 0 {
                return Err(Error::Config("store.compaction.merge_window must be longer than 0".to_owned()));
            }
            // Merging a window before the first pass is done with it would leave that
            // pass's later blocks to be merged alone.
            if merge.after_ns < by_host.after_ns.saturating_add(by_host.window_ns) {
                return Err(Error::Config(format!(
                    "store.compaction.merge_after = {:?} must be at least after + window ({} + {}), or \"0\" to not merge",
                    config.merge_after, config.after, config.window
                )));
            }
            Some(merge)
        };
        Ok(Some(crate::store::compaction::CompactionSettings { by_host, merge }))
    }

    /// The parsed `syslog.time_zone`.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, Error> {
        jiff::tz::TimeZone::get(&self.syslog.time_zone).map_err(|error| {
            Error::Config(format!(
                "syslog.time_zone = {:?} is not a known time zone: {error}",
                self.syslog.time_zone
            ))
        })
    }
}

/// Where syslog over TLS listens, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsListen {
    On(SocketAddr),
    /// Off because no certificate is configured (and `syslog.tls` was not set).
    OffNoCertificate,
    /// Off because `syslog.tls = "off"`.
    Off,
}

/// The default syslog-over-TLS address (CONVENTIONS.md: 6514).
pub const DEFAULT_SYSLOG_TLS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 6514);

impl SyslogConfig {
    /// Where TLS listens, after checking that the TLS keys go together; the files
    /// themselves are read by [`SyslogConfig::tls_listener`].
    pub fn tls_address(&self) -> Result<TlsListen, Error> {
        let config_error = |message: &str| Err(Error::Config(message.to_owned()));
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return config_error("syslog.tls_key must be set with syslog.tls_cert"),
            (None, Some(_)) => return config_error("syslog.tls_cert must be set with syslog.tls_key"),
            _ => {}
        }
        if self.tls_cert.is_none() && self.tls_client_ca.is_some() {
            return config_error("syslog.tls_client_ca needs syslog.tls_cert and syslog.tls_key");
        }
        if self.tls_handshake_timeout_ms == 0 {
            return config_error("syslog.tls_handshake_timeout_ms must be above 0");
        }
        match (self.tls, &self.tls_cert) {
            (Some(ListenAddress::Off), _) => Ok(TlsListen::Off),
            (Some(ListenAddress::On(_)), None) => config_error(
                "syslog.tls is set but syslog.tls_cert and syslog.tls_key are not (a TLS listener needs a certificate)",
            ),
            (Some(ListenAddress::On(address)), Some(_)) => Ok(TlsListen::On(address)),
            (None, Some(_)) => Ok(TlsListen::On(DEFAULT_SYSLOG_TLS)),
            (None, None) => Ok(TlsListen::OffNoCertificate),
        }
    }

    /// The TLS listener with its certificate files read and checked; errors name the key
    /// and the file.
    pub fn tls_listener(&self) -> Result<Option<killkrill_dataplane::TlsListenerConfig>, Error> {
        use killkrill_dataplane::tls::{TlsFile, TlsFiles, TlsServerConfig};
        let TlsListen::On(address) = self.tls_address()? else { return Ok(None) };
        let (Some(certificate_chain), Some(private_key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let files = TlsFiles {
            certificate_chain: certificate_chain.clone(),
            private_key: private_key.clone(),
            client_ca: self.tls_client_ca.clone(),
        };
        let server = TlsServerConfig::load(&files).map_err(|error| match error {
            killkrill_dataplane::Error::Tls { file, path, message } => {
                let key = match file {
                    TlsFile::CertificateChain => "syslog.tls_cert",
                    TlsFile::PrivateKey => "syslog.tls_key",
                    TlsFile::ClientCa => "syslog.tls_client_ca",
                };
                Error::Config(format!("{key} = {}: {message}", path.display()))
            }
            other => Error::Config(format!("syslog.tls: {other}")),
        })?;
        Ok(Some(killkrill_dataplane::TlsListenerConfig {
            address,
            server,
            handshake_timeout: std::time::Duration::from_millis(self.tls_handshake_timeout_ms),
        }))
    }
}

fn describe_figment_error(error: figment::Error) -> Error {
    Error::Config(error.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail fixes the closure's error type")]
mod tests {
    use figment::Jail;

    use super::*;

    fn load(jail: &Jail, file: Option<&str>, flags: FlagOverrides) -> Result<Config, Error> {
        let path = file.map(|contents| {
            jail.create_file("killkrill.toml", contents).unwrap();
            jail.directory().join("killkrill.toml")
        });
        Config::load(path.as_deref(), flags)
    }

    #[test]
    fn defaults_follow_the_conventions() {
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.api.listen, "0.0.0.0:8080".parse().unwrap());
            assert_eq!(config.api.metrics_listen, "0.0.0.0:9090".parse().unwrap());
            assert_eq!(config.syslog.udp, "0.0.0.0:514".parse().unwrap());
            assert_eq!(config.syslog.tcp, "0.0.0.0:514".parse().unwrap());
            assert_eq!(config.store.db_type, DbType::Sqlite);
            Ok(())
        });
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_SYSLOG__TCP", "127.0.0.1:2002");
            jail.set_env("KILLKRILL_API__LISTEN", "127.0.0.1:2003");
            jail.set_env("KILLKRILL_BATCH__MAX_MESSAGES", "17");
            let file = "[syslog]\nudp = \"127.0.0.1:1001\"\ntcp = \"127.0.0.1:1002\"\n[api]\nlisten = \"127.0.0.1:1003\"\n";
            let flags =
                FlagOverrides { api_listen: Some("127.0.0.1:3003".parse().unwrap()), ..Default::default() };
            let config = load(jail, Some(file), flags).unwrap();
            assert_eq!(config.syslog.udp, "127.0.0.1:1001".parse().unwrap(), "file value kept");
            assert_eq!(config.syslog.tcp, "127.0.0.1:2002".parse().unwrap(), "environment beats file");
            assert_eq!(config.api.listen, "127.0.0.1:3003".parse().unwrap(), "flag beats environment");
            assert_eq!(config.batch.max_messages, 17, "numbers come from the environment too");
            Ok(())
        });
    }

    #[test]
    fn named_variables_set_store_and_log() {
        Jail::expect_with(|jail| {
            jail.set_env("DB_TYPE", "postgres");
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("REDIS_URL", "redis://127.0.0.1:6379");
            jail.set_env("LOG_LEVEL", "debug");
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.store.db_type, DbType::Postgres);
            assert_eq!(config.store.database_url.as_deref(), Some("postgres://x/y"));
            assert_eq!(config.store.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
            assert_eq!(config.log.level, "debug");
            Ok(())
        });
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        Jail::expect_with(|jail| {
            let error =
                load(jail, Some("[syslog]\nudpp = \"127.0.0.1:1\"\n"), FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("udpp"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_environment_key_is_an_error_naming_it() {
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_SYSLOG__PORT", "514");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("port"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn bad_db_type_and_bad_port_are_errors_naming_the_value() {
        Jail::expect_with(|jail| {
            jail.set_env("DB_TYPE", "oracle");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("oracle"), "{error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_SYSLOG__UDP", "0.0.0.0:99999");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("99999"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_listener_can_be_switched_off() {
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_SYSLOG__TCP", "off");
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.syslog.tcp, ListenAddress::Off);
            Ok(())
        });
    }

    #[test]
    fn capture_defaults_to_auto_and_takes_its_settings_from_file_and_environment() {
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.capture.mode, CaptureModeSetting::Auto);
            assert_eq!(config.capture.interface, None);
            jail.set_env("KILLKRILL_CAPTURE__INTERFACE", "eth7");
            jail.set_env("KILLKRILL_CAPTURE__DENY", "[\"10.0.0.0/8\"]");
            let file = "[capture]\nmode = \"xdp\"\nrx_ring_size = 4096\nrate_limit_per_second = 100\nsocket_receive = \"recvmmsg\"\n";
            let config = load(jail, Some(file), FlagOverrides::default()).unwrap();
            let capture = config.capture.to_dataplane().unwrap();
            assert_eq!(capture.mode, killkrill_dataplane::capture::CaptureMode::Xdp);
            assert_eq!(capture.interface.as_deref(), Some("eth7"));
            assert_eq!(capture.af_xdp.rx_ring_size, 4096);
            assert_eq!(
                capture.socket_receive,
                killkrill_dataplane::listener::udp_receive::SocketReceive::Recvmmsg
            );
            assert_eq!(capture.deny, ["10.0.0.0/8"]);
            let limit = capture.rate_limit.unwrap();
            assert_eq!((limit.per_second, limit.burst), (100, 100), "burst defaults to the rate");
            Ok(())
        });
    }

    /// Each (file, text): loading the file fails with an error that contains the text.
    fn assert_each_file_is_refused_naming(cases: &[(&str, &str)]) {
        for (file, expected) in cases {
            Jail::expect_with(|jail| {
                let error = load(jail, Some(file), FlagOverrides::default()).unwrap_err().to_string();
                assert!(error.contains(expected), "{file}: {error}");
                Ok(())
            });
        }
    }

    #[test]
    fn bad_capture_settings_are_errors_naming_the_key() {
        let cases = [
            ("[capture]\nmode = \"xdp\"\n", "capture.interface"),
            ("[capture]\nmode = \"fast\"\n", "fast"),
            ("[capture]\nrx_ring_size = 1000\n", "capture.rx_ring_size"),
            ("[capture]\ndeny = [\"10.0.0.0/33\"]\n", "capture.deny"),
            ("[capture]\nallow = [\"nonsense\"]\n", "capture.allow"),
            ("[capture]\nqueues = 0\n", "capture.queues"),
            ("[capture]\nrate_limit_per_second = 2000000000\n", "capture.rate_limit"),
        ];
        assert_each_file_is_refused_naming(&cases);
    }

    #[test]
    fn tls_is_off_without_a_certificate_and_on_6514_with_one() {
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.syslog.tls_address().unwrap(), TlsListen::OffNoCertificate);
            let file = "[syslog]\ntls_cert = \"/etc/k/cert.pem\"\ntls_key = \"/etc/k/key.pem\"\n";
            let config = load(jail, Some(file), FlagOverrides::default()).unwrap();
            assert_eq!(config.syslog.tls_address().unwrap(), TlsListen::On("0.0.0.0:6514".parse().unwrap()));
            jail.set_env("KILLKRILL_SYSLOG__TLS", "off");
            let config = load(jail, Some(file), FlagOverrides::default()).unwrap();
            assert_eq!(config.syslog.tls_address().unwrap(), TlsListen::Off, "off wins over a certificate");
            let flags =
                FlagOverrides { syslog_tls: Some("127.0.0.1:7514".parse().unwrap()), ..Default::default() };
            let config = load(jail, Some(file), flags).unwrap();
            assert_eq!(
                config.syslog.tls_address().unwrap(),
                TlsListen::On("127.0.0.1:7514".parse().unwrap())
            );
            Ok(())
        });
    }

    #[test]
    fn tls_keys_that_do_not_go_together_are_errors_naming_them() {
        let cases = [
            ("[syslog]\ntls = \"0.0.0.0:6514\"\n", "syslog.tls_cert"),
            ("[syslog]\ntls_cert = \"/c.pem\"\n", "syslog.tls_key"),
            ("[syslog]\ntls_key = \"/k.pem\"\n", "syslog.tls_cert"),
            ("[syslog]\ntls_client_ca = \"/ca.pem\"\n", "syslog.tls_client_ca"),
            (
                "[syslog]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntls_handshake_timeout_ms = 0\n",
                "syslog.tls_handshake_timeout_ms",
            ),
        ];
        assert_each_file_is_refused_naming(&cases);
    }

    #[test]
    fn a_missing_certificate_file_is_an_error_naming_the_key_and_the_file() {
        Jail::expect_with(|jail| {
            let file = "[syslog]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n";
            let config = load(jail, Some(file), FlagOverrides::default()).unwrap();
            let error = config.syslog.tls_listener().unwrap_err().to_string();
            assert!(error.contains("syslog.tls_cert = /nonexistent/cert.pem: cannot read it"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_time_zone_is_an_error() {
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_SYSLOG__TIME_ZONE", "Mars/Olympus");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("syslog.time_zone"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn retention_ages_parse_and_bad_ones_name_the_key() {
        assert_eq!(parse_duration_ns("30d"), Ok(30 * 86_400 * 1_000_000_000));
        assert_eq!(parse_duration_ns("90m"), Ok(5_400 * 1_000_000_000));
        assert_eq!(parse_duration_ns("0"), Ok(0));
        assert!(parse_duration_ns("30").is_err());
        assert!(parse_duration_ns("d").is_err());
        assert!(parse_duration_ns("99999999999999w").is_err());
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_STORE__RETENTION_MAX_AGE", "a month");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("store.retention_max_age"), "{error}");
            jail.set_env("KILLKRILL_STORE__RETENTION_MAX_AGE", "0");
            jail.set_env("KILLKRILL_STORE__RETENTION_MAX_BYTES", "1000");
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            let retention = config.retention().unwrap();
            assert_eq!((retention.max_age_ns, retention.max_bytes), (None, Some(1000)));
            assert_eq!(
                retention.metric_max_age_ns,
                Some(30 * 86_400 * 1_000_000_000),
                "metrics: 30d by default"
            );
            jail.set_env("KILLKRILL_METRICS__RETENTION_MAX_AGE", "soon");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("metrics.retention_max_age"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn compaction_merges_after_an_hour_by_default_and_bad_merge_settings_name_the_key() {
        Jail::expect_with(|jail| {
            let settings = load(jail, None, FlagOverrides::default()).unwrap().compaction().unwrap().unwrap();
            assert_eq!(settings, crate::store::compaction::CompactionSettings::default());
            let merge = settings.merge.unwrap();
            assert_eq!(
                (merge.after_ns, merge.block_messages, merge.zstd_level),
                (3_600_000_000_000, 16_384, 19)
            );
            jail.set_env("KILLKRILL_STORE__COMPACTION__MERGE_AFTER", "0");
            let settings = load(jail, None, FlagOverrides::default()).unwrap().compaction().unwrap().unwrap();
            assert_eq!(settings.merge, None, "\"0\" does not merge");
            jail.set_env("KILLKRILL_STORE__COMPACTION__MERGE_AFTER", "80s");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("store.compaction.merge_after"), "{error}");
            jail.set_env("KILLKRILL_STORE__COMPACTION__MERGE_AFTER", "2h");
            jail.set_env("KILLKRILL_STORE__COMPACTION__MERGE_BLOCK_MESSAGES", "100000");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("store.compaction.merge_block_messages"), "{error}");
            jail.set_env("KILLKRILL_STORE__COMPACTION__MERGE_BLOCK_MESSAGES", "4096");
            jail.set_env("KILLKRILL_STORE__COMPACTION__MERGE_ZSTD_LEVEL", "23");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err();
            assert!(error.to_string().contains("store.compaction.merge_zstd_level"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn redis_handoff_runs_a_writer_by_default_and_needs_a_redis_url() {
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.ingest.handoff, HandoffMode::Direct);
            assert!(!config.ingest.runs_redis_writer());
            jail.set_env("KILLKRILL_INGEST__HANDOFF", "redis");
            let error = load(jail, None, FlagOverrides::default()).unwrap_err().to_string();
            assert!(error.contains("ingest.handoff") && error.contains("REDIS_URL"), "{error}");
            jail.set_env("REDIS_URL", "redis://127.0.0.1:6379");
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert!(config.ingest.runs_redis_writer(), "a redis hand-off writes by default");
            assert_eq!(config.ingest.redis_stream, "killkrill:blocks");
            jail.set_env("KILLKRILL_INGEST__REDIS_WRITER", "false");
            assert!(!load(jail, None, FlagOverrides::default()).unwrap().ingest.runs_redis_writer());
            Ok(())
        });
    }

    #[test]
    fn bad_redis_settings_are_errors_naming_the_key() {
        let cases = [
            ("[ingest]\nredis_writer = true\n", "ingest.redis_writer"),
            ("[store]\nredis_url = \"redis://x\"\n[ingest]\nredis_stream = \"\"\n", "ingest.redis_stream"),
            (
                "[store]\nredis_url = \"redis://x\"\n[ingest]\nredis_stream_max_len = 0\n",
                "ingest.redis_stream_max_len",
            ),
            (
                "[store]\nredis_url = \"redis://x\"\n[ingest]\nredis_claim_min_idle_ms = 0\n",
                "ingest.redis_claim_min_idle_ms",
            ),
            ("[ingest]\nhandoff = \"kafka\"\n", "kafka"),
        ];
        assert_each_file_is_refused_naming(&cases);
    }

    #[test]
    fn metrics_listeners_default_to_the_conventional_ports_and_take_settings() {
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.metrics.statsd_udp, "0.0.0.0:8125".parse().unwrap());
            assert_eq!(config.metrics.influx_udp, "0.0.0.0:8089".parse().unwrap());
            assert_eq!(config.metrics.aggregator_settings().unwrap().interval.as_secs(), 10);
            jail.set_env("KILLKRILL_METRICS__INFLUX_UDP", "off");
            jail.set_env("KILLKRILL_METRICS__FLUSH_INTERVAL_MS", "250");
            let flags =
                FlagOverrides { statsd_udp: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
            let config = load(jail, None, flags).unwrap();
            assert_eq!(config.metrics.influx_udp, ListenAddress::Off);
            assert_eq!(config.metrics.statsd_udp, "127.0.0.1:0".parse().unwrap());
            assert_eq!(config.metrics.aggregator_settings().unwrap().interval.as_millis(), 250);
            Ok(())
        });
    }

    #[test]
    fn bad_metrics_settings_are_errors_naming_the_key() {
        let cases = [
            ("[metrics]\nflush_interval_ms = 0\n", "metrics.flush_interval_ms"),
            ("[metrics]\nmax_series = 0\n", "metrics.max_series"),
            ("[metrics]\nreceive_threads = 0\n", "metrics.receive_threads"),
            ("[metrics]\ninflux_precision = \"h\"\n", "metrics.influx_precision"),
            ("[metrics]\nstatsd_udp = \"nowhere\"\n", "nowhere"),
        ];
        assert_each_file_is_refused_naming(&cases);
    }

    #[test]
    fn dataplane_cores_and_runtime_come_from_file_environment_and_flags() {
        use killkrill_dataplane::cores::{CoreSelection, RuntimeChoice};
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.dataplane.cores().unwrap(), CoreSelection::Auto);
            assert_eq!(config.dataplane.runtime(), RuntimeChoice::Auto);
            // A bare number arrives from the environment as an integer.
            jail.set_env("KILLKRILL_DATAPLANE__CORES", "0");
            jail.set_env("KILLKRILL_DATAPLANE__RUNTIME", "threads");
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.dataplane.cores().unwrap(), CoreSelection::List(vec![0]));
            assert_eq!(config.dataplane.runtime(), RuntimeChoice::Threads);
            let flags = FlagOverrides {
                dataplane_cores: Some("0-0".to_owned()),
                dataplane_runtime: Some(DataplaneRuntimeSetting::Glommio),
                ..Default::default()
            };
            let config = load(jail, None, flags).unwrap();
            assert_eq!(config.dataplane.runtime(), RuntimeChoice::Glommio);
            Ok(())
        });
        let cases = [
            ("[dataplane]\ncores = \"0-8000\"\n", "dataplane.cores"),
            ("[dataplane]\ncores = \"two\"\n", "dataplane.cores"),
            ("[dataplane]\ncores = \"\"\n", "dataplane.cores"),
            ("[dataplane]\nruntime = \"tokio\"\n", "tokio"),
        ];
        assert_each_file_is_refused_naming(&cases);
    }

    #[test]
    fn auth_settings_have_safe_defaults_and_bad_ones_name_the_key() {
        Jail::expect_with(|jail| {
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.auth, AuthConfig::default());
            assert!(config.auth.metrics_public && config.auth.jwt_secret.is_none());
            jail.set_env("KILLKRILL_AUTH__JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret!");
            jail.set_env("KILLKRILL_AUTH__ACCESS_TOKEN_TTL_S", "60");
            // Read elsewhere (the first admin, the clients): not settings, not errors.
            jail.set_env("KILLKRILL_ADMIN_PASSWORD", "whatever-it-is");
            jail.set_env("KILLKRILL_TOKEN", "kk_x");
            let config = load(jail, None, FlagOverrides::default()).unwrap();
            assert_eq!(config.auth.access_token_ttl_s, 60);
            assert!(!format!("{config:?}").contains("s3cret"), "the secret is redacted in Debug");
            Ok(())
        });
        let cases = [
            ("[auth]\naccess_token_ttl_s = 0\n", "auth.access_token_ttl_s"),
            ("[auth]\nlockout_threshold = 0\n", "auth.lockout_threshold"),
            ("[auth]\nlogin_failures_per_minute = 0\n", "auth.login_failures_per_minute"),
            ("[auth]\njwt_secret = \"short\"\n", "auth.jwt_secret"),
            ("[auth]\nmetrics_publik = false\n", "metrics_publik"),
        ];
        assert_each_file_is_refused_naming(&cases);
    }

    #[test]
    fn plain_http_needs_loopback_or_allow_http_and_tls_needs_both_files() {
        let api = |listen: &str, allow_http: bool, cert: Option<&str>, key: Option<&str>| ApiConfig {
            listen: listen.parse().unwrap(),
            allow_http,
            tls_cert: cert.map(PathBuf::from),
            tls_key: key.map(PathBuf::from),
            ..ApiConfig::default()
        };
        assert_eq!(api("127.0.0.1:8080", false, None, None).transport().unwrap(), ApiTransport::Http);
        assert_eq!(api("[::1]:8080", false, None, None).transport().unwrap(), ApiTransport::Http);
        assert_eq!(api("off", false, None, None).transport().unwrap(), ApiTransport::Http);
        assert_eq!(api("0.0.0.0:8080", true, None, None).transport().unwrap(), ApiTransport::Http);
        let refused = api("0.0.0.0:8080", false, None, None).transport().unwrap_err().to_string();
        for key in ["api.tls_cert", "api.tls_key", "api.allow_http"] {
            assert!(refused.contains(key), "{refused}");
        }
        assert_eq!(
            api("0.0.0.0:8443", false, Some("c.pem"), Some("k.pem")).transport().unwrap(),
            ApiTransport::Https { cert: "c.pem".into(), key: "k.pem".into() }
        );
        let half = api("0.0.0.0:8443", false, Some("c.pem"), None).transport().unwrap_err().to_string();
        assert!(half.contains("api.tls_key"), "{half}");
    }
}
