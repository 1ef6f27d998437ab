//! `killkrill serve`: the all-in-one appliance (data plane and control plane in one
//! process) from start-up to graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::capture::CaptureStatus;
use killkrill_dataplane::{DataPlane, DataPlaneConfig};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::handoff::Handoff;
use crate::metric_writer::{MetricWriterCounters, run_metric_writer};
use crate::spool::Spool;
use crate::telemetry::metric_pipeline::MetricPipelineCollector;
use crate::telemetry::metrics::{Metrics, StoreCounters};
use crate::{Error, Result, VERSION, ingest, store};

/// How long graceful shutdown may take before the process gives up waiting.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the appliance until SIGTERM or SIGINT, then flushes what was accepted.
pub async fn serve(config: Config) -> Result<()> {
    let syslog_tls = config.syslog.tls_listener()?;
    if config.syslog.tls_address()? == crate::config::TlsListen::OffNoCertificate {
        tracing::info!(
            "Syslog over TLS is off: no certificate configured (set syslog.tls_cert and syslog.tls_key)."
        );
    }
    let api_transport = config.api.transport()?;
    let api_tls = match &api_transport {
        crate::config::ApiTransport::Https { cert, key } => Some(crate::tls::load_api_tls(cert, key)?),
        crate::config::ApiTransport::Http => None,
    };
    prepare_data_dir(&config.data_dir)?;
    let (store, auth_store) = store::open_with_auth(&config.store, &config.data_dir).await?;
    let authenticator = Arc::new(crate::auth::Authenticator {
        keys: crate::auth::JwtKeys::load(
            config.auth.jwt_secret.as_ref().map(|secret| secret.0.as_str()),
            auth_store.as_ref(),
        )
        .await?,
        settings: crate::auth::AuthSettings::from_config(&config.auth),
        limiter: crate::auth::LoginLimiter::new(config.auth.login_attempts_per_minute),
        store: auth_store.clone(),
    });
    crate::auth::bootstrap(auth_store.as_ref(), &config.data_dir).await?;
    let store_counters = Arc::new(StoreCounters::default());
    let handoff = Handoff::start(&config, store.clone(), store_counters.clone())?;
    let dataplane_config = DataPlaneConfig {
        syslog_udp: config.syslog.udp.address(),
        syslog_tcp: config.syslog.tcp.address(),
        syslog_tls,
        max_frame_bytes: config.syslog.max_frame_bytes,
        batch: BatchLimits {
            max_messages: config.batch.max_messages,
            max_age: Duration::from_millis(config.batch.max_age_ms),
            ..BatchLimits::default()
        },
        handoff_capacity: config.batch.handoff_capacity,
        time_zone: config.time_zone()?,
        capture: config.capture.to_dataplane()?,
        statsd_udp: config.metrics.statsd_udp.address(),
        influx_udp: config.metrics.influx_udp.address(),
        metrics: config.metrics.aggregator_settings()?,
        metrics_threads: config.metrics.receive_threads,
    };
    if let Some(tls) = &dataplane_config.syslog_tls {
        tracing::info!(
            client_certificates =
                if tls.server.requires_client_certificate() { "required" } else { "not requested" },
            handshake_timeout_ms = tls.handshake_timeout.as_millis() as u64,
            "Syslog over TLS: certificates loaded."
        );
    }
    let mut dataplane = DataPlane::start(&dataplane_config)?;
    log_capture(dataplane.capture());
    let mut metrics = Metrics::new(dataplane.counters().to_vec(), store_counters.clone());
    metrics.add_capture(dataplane.capture().clone(), dataplane.xdp());
    metrics.add_handoff(handoff.counters.clone());
    let metric_writer_counters = Arc::new(MetricWriterCounters::default());
    metrics.add_metric_pipeline(MetricPipelineCollector {
        listeners: dataplane.metric_counters().to_vec(),
        writer: metric_writer_counters.clone(),
    });
    let metrics = Arc::new(metrics);
    let state = AppState {
        store: store.clone(),
        metrics,
        listeners_up: Arc::new(AtomicBool::new(false)),
        listeners: Arc::new(RwLock::new(dataplane.listeners().to_vec())),
        data_dir: config.data_dir.clone(),
        listener_counters: dataplane.counters().to_vec(),
        store_counters: store_counters.clone(),
        store_backend: match config.store.db_type {
            crate::config::DbType::Sqlite => "sqlite",
            crate::config::DbType::Postgres => "postgres",
        },
        capture: dataplane.capture().clone(),
        xdp: dataplane.xdp(),
        nodes: Arc::default(),
        auth: authenticator,
    };

    let (stop_sender, stop) = watch::channel(false);
    let mut http_servers = Vec::new();
    if let Some(address) = config.api.listen.address() {
        let listener = bind_http("api.listen", address).await?;
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %listener.local_addr()?, scheme, "API listening.");
        if !api::web_ui::is_built() {
            tracing::info!("This binary has no web UI: / says how to build it (cargo xtask ui).");
        }
        match api_tls {
            Some(tls) => {
                http_servers.push(spawn_https(listener, tls, api::router(state.clone()), stop.clone()))
            }
            None => http_servers.push(spawn_http(listener, api::router(state.clone()), stop.clone())),
        }
    }
    if let Some(address) = config.api.metrics_listen.address() {
        let listener = bind_http("api.metrics_listen", address).await?;
        tracing::info!(address = %listener.local_addr()?, "Metrics listening.");
        http_servers.push(spawn_http(listener, api::metrics_router(state.clone()), stop.clone()));
    }
    for listener in dataplane.listeners() {
        tracing::info!(
            listener = listener.kind.label(),
            address = %listener.local_addr,
            capture = listener.capture.label(),
            "Listener started."
        );
    }
    let block_settings = ingest::BlockSettings {
        max_messages: config.store.block_max_messages,
        compression_level: config.store.compression_level,
        encoders: match config.store.encoders {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            encoders => encoders,
        },
    };
    let retention = tokio::spawn(enforce_retention(
        store.clone(),
        config.retention()?,
        Duration::from_secs(config.store.retention_interval_s),
        store_counters.clone(),
        stop.clone(),
    ));
    let spool = match config.store.spool_max_bytes {
        0 => None,
        max_bytes => {
            let dir = config.data_dir.join("spool");
            let spool = Spool::open(&dir, max_bytes, store_counters.clone()).map_err(|error| {
                Error::DataDir { path: dir.clone(), message: format!("cannot open the spool: {error}") }
            })?;
            if spool.pending() > 0 {
                tracing::info!(
                    blocks = spool.pending(),
                    "Spooled blocks from an earlier run will be stored."
                );
            }
            Some(Arc::new(spool))
        }
    };
    let drainer = spool.clone().map(|spool| tokio::spawn(spool.drain(store.clone(), stop.clone())));
    let writer = tokio::spawn(ingest::run_batch_writer(
        dataplane.take_consumers(),
        handoff.sink.clone(),
        store_counters,
        block_settings,
        spool,
    ));
    let metric_writer = tokio::spawn(run_metric_writer(
        dataplane.take_metric_consumers(),
        store.clone(),
        metric_writer_counters,
    ));
    state.listeners_up.store(true, Ordering::Release);
    tracing::info!(version = VERSION, data_dir = %config.data_dir.display(), "Killkrill is ready.");

    wait_for_signal().await;
    tracing::info!("Shutting down: flushing what was accepted.");
    state.listeners_up.store(false, Ordering::Release);
    let flush = async {
        // Listeners hand off their last batches while the writer keeps draining; the
        // writer ends once every listener is gone and its ring is empty.
        let stopped = tokio::task::spawn_blocking(move || dataplane.shutdown());
        let _ = stopped.await;
        if let Ok(Err(error)) = writer.await {
            tracing::error!(error = %error, "The batch writer stopped.");
        }
        handoff.stop().await;
        let _ = metric_writer.await;
    };
    if tokio::time::timeout(SHUTDOWN_DEADLINE, flush).await.is_err() {
        tracing::error!(
            deadline_s = SHUTDOWN_DEADLINE.as_secs(),
            "Shutdown deadline passed with batches unwritten."
        );
    }
    let _ = stop_sender.send(true);
    let _ = retention.await;
    if let Some(drainer) = drainer {
        let _ = drainer.await;
    }
    for server in http_servers {
        let _ = server.await;
    }
    store.close().await;
    tracing::info!("Stopped.");
    Ok(())
}

/// Applies the retention limits now and then until shutdown. A failed pass is logged and
/// tried again at the next tick.
async fn enforce_retention(
    store: Arc<dyn store::Store>,
    retention: store::Retention,
    every: Duration,
    counters: Arc<StoreCounters>,
    mut stop: watch::Receiver<bool>,
) {
    if retention == store::Retention::default() {
        return;
    }
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let now = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
        match store.enforce_retention(&retention, now).await {
            Ok(removed) if removed.blocks > 0 => {
                counters.retention_removed_messages.fetch_add(removed.messages, Ordering::Relaxed);
                counters.retention_removed_blocks.fetch_add(removed.blocks, Ordering::Relaxed);
                tracing::info!(
                    blocks = removed.blocks,
                    messages = removed.messages,
                    stored_bytes = removed.stored_bytes,
                    "Retention removed old log blocks."
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "Retention pass failed; trying again later."),
        }
    }
}

/// Says at start-up which capture path syslog over UDP got, and why not XDP if it fell back.
fn log_capture(status: &CaptureStatus) {
    match status {
        CaptureStatus::Xdp { interface, attach, queues } => {
            let bind = queues.first().map_or("none", |(_, bind)| bind.label());
            tracing::info!(
                capture = status.label(),
                interface = %interface,
                attach = attach.label(),
                queues = queues.len(),
                af_xdp_bind = bind,
                "Capture: XDP steers syslog over UDP to AF_XDP; the socket listener takes what it passes."
            );
        }
        CaptureStatus::Socket { fallback: Some(reason) } => {
            tracing::info!(capture = status.label(), reason = %reason, "Capture: sockets only.");
        }
        CaptureStatus::Socket { fallback: None } => {
            tracing::info!(capture = status.label(), "Capture: sockets only.");
        }
    }
}

/// Creates the data directory and proves it is writable, so that a bad path fails at
/// start-up with a clear message rather than at the first write.
fn prepare_data_dir(path: &Path) -> Result<()> {
    let failure = |message: String| Error::DataDir { path: path.to_path_buf(), message };
    std::fs::create_dir_all(path).map_err(|error| failure(format!("cannot create it: {error}")))?;
    let probe = path.join(".killkrill-write-probe");
    std::fs::write(&probe, b"ok").map_err(|error| failure(format!("is not writable: {error}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

async fn bind_http(what: &'static str, address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|source| Error::Bind { what, address, source })
}

fn spawn_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        // The peer address reaches handlers (the source of messages posted over HTTP).
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(error) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %error, "HTTP server failed.");
        }
    })
}

fn spawn_https(
    listener: tokio::net::TcpListener,
    tls: crate::tls::ApiTlsConfig,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let listener = crate::tls::TlsListener::new(listener, tls, stop.clone());
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        // tap_io gives the TLS listener axum's ConnectInfo<SocketAddr> implementation.
        let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(error) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %error, "HTTPS server failed.");
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(error = %error, "Cannot watch SIGTERM; only SIGINT stops the process.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "Signal received."),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "Signal received."),
    }
}
