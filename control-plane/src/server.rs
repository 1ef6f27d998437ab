//! `killkrill serve`: the all-in-one appliance (data plane and control plane in one
//! process) from start-up to graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::capture::{CaptureStatus, XdpProgram};
use killkrill_dataplane::sources::SharedSourcePolicy;
use killkrill_dataplane::{DataPlane, DataPlaneConfig};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::handoff::Handoff;
use crate::live::{LiveConfig, SharedDataPlane, StartingSettings};
use crate::metric_writer::{MetricWriterCounters, run_metric_writer};
use crate::runtime_config::{self, StoredOverrides};
use crate::spool::Spool;
use crate::telemetry::metric_pipeline::MetricPipelineCollector;
use crate::telemetry::metrics::{Metrics, StoreCounters};
use crate::{Error, Result, VERSION, ingest, store};

/// How long graceful shutdown may take before the process gives up waiting.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the appliance until SIGTERM or SIGINT, then flushes what was accepted.
pub async fn serve(config: Config) -> Result<()> {
    let mut config = config;
    prepare_data_dir(&config.data_dir)?;
    let (store, auth_store) = store::open_with_auth(&config.store, &config.data_dir).await?;
    // Settings changed live and kept in the store win over the file (docs/adr/0024).
    let overrides = StoredOverrides::load(&*store).await?;
    let stored_listeners = overrides.apply(&mut config)?;
    for key in runtime_config::KEYS {
        let stored = match key {
            runtime_config::LISTENERS_KEY => overrides.listeners.is_some(),
            runtime_config::CAPTURE_KEY => overrides.capture.is_some(),
            runtime_config::SOURCES_KEY => overrides.sources.is_some(),
            runtime_config::RATE_LIMITS_KEY => overrides.rate_limits.is_some(),
            _ => overrides.retention.is_some(),
        };
        if stored {
            tracing::info!(
                section = key,
                "A live setting kept in the store overrides the configuration file."
            );
        }
    }
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
    let authenticator = Arc::new(crate::auth::Authenticator {
        keys: crate::auth::JwtKeys::load(
            config.auth.jwt_secret.as_ref().map(|secret| secret.0.as_str()),
            auth_store.as_ref(),
        )
        .await?,
        settings: crate::auth::AuthSettings::from_config(&config.auth),
        limiter: crate::auth::LoginLimiter::new(config.auth.login_failures_per_minute),
        api_key_cache: crate::auth::key_cache::ApiKeyCache::new(std::time::Duration::from_secs(
            config.auth.api_key_cache_s,
        )),
        store: auth_store.clone(),
    });
    crate::auth::bootstrap(auth_store.as_ref(), &config.data_dir).await?;
    let tls_certificate = match &syslog_tls {
        Some(_) => None,
        None if runtime_config::tls_available(&config) => {
            let mut syslog = config.syslog.clone();
            syslog.tls = Some(crate::config::ListenAddress::On(crate::config::DEFAULT_SYSLOG_TLS));
            syslog.tls_listener()?
        }
        None => None,
    };
    let (starting_sources, starting_rate_limits, starting_retention, starting_capture) =
        runtime_config::from_config(&config)?;
    let capture_config = config.capture.to_dataplane()?;
    let (allow, deny) = starting_sources.validate()?;
    let sources =
        SharedSourcePolicy::new(runtime_config::source_policy(allow, deny, capture_config.rate_limit));
    let store_counters = Arc::new(StoreCounters::default());
    let handoff = Handoff::start(&config, store.clone(), store_counters.clone())?;
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
    let journal_root = config.data_dir.join("journal");
    let replayed = crate::journal_replay::replay_journals(
        &journal_root,
        &handoff.sink,
        &store_counters,
        spool.as_deref(),
        &killkrill_parsers::syslog::ParseOptions { time_zone: config.time_zone()?, ..Default::default() },
        config.syslog.max_frame_bytes,
        config.store.compression_level,
    )
    .await?;
    if replayed.segments > 0 {
        tracing::info!(
            segments = replayed.segments,
            messages = replayed.messages,
            "Stream journal replayed: what TCP and TLS listeners read before the last stop is stored."
        );
    }
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
        capture: capture_config,
        statsd_udp: config.metrics.statsd_udp.address(),
        influx_udp: config.metrics.influx_udp.address(),
        metrics: config.metrics.aggregator_settings()?,
        metrics_threads: config.metrics.receive_threads,
        journal_root: config.syslog.stream_journal.then(|| journal_root.clone()),
        sources: sources.clone(),
        tls_certificate,
        cores: config.dataplane.cores()?,
        runtime: config.dataplane.runtime(),
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
    if let Some(specs) = &stored_listeners {
        // The file layout holds one listener per kind: the others start here.
        dataplane.apply_listeners(specs)?;
    }
    log_capture(dataplane.capture());
    let mut metrics = Metrics::new(dataplane.shared_counters(), store_counters.clone());
    metrics.add_capture(dataplane.shared_capture());
    metrics.add_runtime(dataplane.runtime().clone());
    metrics.add_handoff(handoff.counters.clone());
    let metric_writer_counters = Arc::new(MetricWriterCounters::default());
    metrics.add_metric_pipeline(MetricPipelineCollector {
        listeners: dataplane.shared_metric_counters(),
        writer: metric_writer_counters.clone(),
    });
    let metrics = Arc::new(metrics);
    let listeners = Arc::new(RwLock::new(dataplane.listeners().to_vec()));
    let (retention_sender, retention_receiver) = watch::channel(config.retention()?);
    let compaction_settings = config.compaction()?;
    let consumers = dataplane.take_consumers();
    let consumer_feed = dataplane.take_consumer_feed();
    let metric_consumers = dataplane.take_metric_consumers();
    let metric_feed = dataplane.take_metric_feed();
    let capture = dataplane.shared_capture();
    let listener_counters = dataplane.shared_counters();
    let running_listeners = dataplane.listeners().to_vec();
    let runtime = Arc::new(dataplane.runtime().clone());
    let dataplane: SharedDataPlane = Arc::new(Mutex::new(Some(dataplane)));
    let live = LiveConfig::new(
        store.clone(),
        dataplane.clone(),
        listeners.clone(),
        sources,
        capture.clone(),
        retention_sender,
        StartingSettings {
            sources: starting_sources,
            rate_limits: starting_rate_limits,
            retention: starting_retention,
            capture: starting_capture,
            tls_available: runtime_config::tls_available(&config),
        },
    )?;
    let state = AppState::new(api::AppStateFields {
        store: store.clone(),
        metrics,
        listeners_up: Arc::new(AtomicBool::new(false)),
        listeners,
        data_dir: config.data_dir.clone(),
        listener_counters,
        store_counters: store_counters.clone(),
        store_backend: match config.store.db_type {
            crate::config::DbType::Sqlite => "sqlite",
            crate::config::DbType::Postgres => "postgres",
        },
        compaction_enabled: compaction_settings.is_some(),
        capture,
        nodes: Arc::default(),
        ingest_slots: api::IngestSlots::new(config.ingest.http_max_concurrent),
        metric_ingest: api::metrics_ingest::MetricIngest::new(config.metrics.aggregator_settings()?),
        auth: authenticator,
        live: Arc::new(live),
        runtime,
    });

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
    for listener in &running_listeners {
        tracing::info!(
            listener = listener.kind.label(),
            address = %listener.local_addr,
            capture = listener.capture.label(),
            socket_receive = listener.socket_receive.as_ref().map_or("", |choice| choice.method.label()),
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
        retention_receiver,
        Duration::from_secs(config.store.retention_interval_s),
        store_counters.clone(),
        stop.clone(),
    ));
    let compaction = compaction_settings.map(|settings| {
        tokio::spawn(compact_in_background(
            store.clone(),
            settings,
            Duration::from_secs(config.store.compaction.interval_s),
            store_counters.clone(),
            stop.clone(),
        ))
    });
    let follower = match (config.store.db_type, config.store.runtime_config_poll_s) {
        (crate::config::DbType::Postgres, seconds) if seconds > 0 => Some(tokio::spawn(
            follow_live_settings(state.live.clone(), Duration::from_secs(seconds), stop.clone()),
        )),
        _ => None,
    };
    let drainer = spool.clone().map(|spool| tokio::spawn(spool.drain(store.clone(), stop.clone())));
    let writer = tokio::spawn(ingest::run_batch_writer(
        consumers,
        consumer_feed,
        handoff.sink.clone(),
        store_counters,
        block_settings,
        spool,
    ));
    let metric_writer =
        tokio::spawn(run_metric_writer(metric_consumers, metric_feed, store.clone(), metric_writer_counters));
    state.listeners_up.store(true, Ordering::Release);
    let signals = ShutdownSignals::install();
    tracing::info!(version = VERSION, data_dir = %config.data_dir.display(), "Killkrill is ready.");

    signals.wait().await;
    tracing::info!("Shutting down: flushing what was accepted.");
    state.listeners_up.store(false, Ordering::Release);
    let flush = async {
        // Listeners hand off their last batches while the writer keeps draining; the
        // writer ends once every listener is gone and its ring is empty.
        let stopped = tokio::task::spawn_blocking(move || {
            let taken = dataplane.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(dataplane) = taken {
                dataplane.shutdown();
            }
        });
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
    if let Some(compaction) = compaction {
        let _ = compaction.await;
    }
    if let Some(follower) = follower {
        let _ = follower.await;
    }
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

/// Compacts log blocks old enough now and then until shutdown (ADR 0037). A pass stops
/// between windows when shutdown begins; a failed pass is counted, logged and tried again
/// at the next tick (the transaction leaves the old blocks or the new ones, never both).
async fn compact_in_background(
    store: Arc<dyn store::Store>,
    settings: store::compaction::CompactionSettings,
    every: Duration,
    counters: Arc<StoreCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let now = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
        let stopping = stop.clone();
        let started = std::time::Instant::now();
        let mut counted = store::compaction::Compacted::default();
        // Counted window by window, so /metrics moves during a long first pass.
        let pass = store::compaction::compact_pending(store.as_ref(), &settings, now, |total| {
            count_compaction(&counters, total, &counted);
            counted = *total;
            !*stopping.borrow()
        })
        .await;
        counters.compaction_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match pass {
            Ok((done, elapsed)) => {
                count_compaction(&counters, &done, &counted);
                if done.windows > 0 {
                    tracing::info!(
                        windows = done.windows,
                        merged_windows = done.merged_windows,
                        blocks_read = done.blocks_read,
                        blocks_written = done.blocks_written,
                        messages = done.messages,
                        bytes_read = done.bytes_read,
                        bytes_written = done.bytes_written,
                        undecodable_blocks = done.undecodable_blocks,
                        seconds = elapsed.as_secs_f64(),
                        "Compacted log blocks by host."
                    );
                }
            }
            Err(error) => {
                counters.compaction_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error, "Compaction failed; it is tried again later.");
            }
        }
    }
}

/// Adds what a compaction pass did since `counted` to the counters.
fn count_compaction(
    counters: &StoreCounters,
    total: &store::compaction::Compacted,
    counted: &store::compaction::Compacted,
) {
    counters.compaction_windows.fetch_add(total.windows - counted.windows, Ordering::Relaxed);
    counters
        .compaction_merged_windows
        .fetch_add(total.merged_windows - counted.merged_windows, Ordering::Relaxed);
    counters.compaction_blocks_read.fetch_add(total.blocks_read - counted.blocks_read, Ordering::Relaxed);
    counters
        .compaction_blocks_written
        .fetch_add(total.blocks_written - counted.blocks_written, Ordering::Relaxed);
    counters.compaction_messages.fetch_add(total.messages - counted.messages, Ordering::Relaxed);
    counters
        .compaction_undecodable_blocks
        .fetch_add(total.undecodable_blocks - counted.undecodable_blocks, Ordering::Relaxed);
}

/// Applies the retention limits now and then until shutdown, and at once when they change
/// (`PUT /api/v1/config/retention`). A failed pass is logged and tried again at the next
/// tick.
async fn enforce_retention(
    store: Arc<dyn store::Store>,
    mut limits: watch::Receiver<store::Retention>,
    every: Duration,
    counters: Arc<StoreCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = limits.changed() => {
                if changed.is_err() {
                    // The live settings are gone (shutdown): keep the last limits.
                    let retention = *limits.borrow();
                    limits = watch::channel(retention).1;
                }
            }
            _ = stop.changed() => return,
        }
        let retention = *limits.borrow_and_update();
        if retention == store::Retention::default() {
            continue;
        }
        let now = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
        match store.enforce_retention(&retention, now).await {
            Ok(removed) if removed != store::Removed::default() => {
                counters.retention_removed_messages.fetch_add(removed.messages, Ordering::Relaxed);
                counters.retention_removed_blocks.fetch_add(removed.blocks, Ordering::Relaxed);
                counters.retention_removed_metric_points.fetch_add(removed.metric_points, Ordering::Relaxed);
                tracing::info!(
                    blocks = removed.blocks,
                    messages = removed.messages,
                    stored_bytes = removed.stored_bytes,
                    metric_points = removed.metric_points,
                    "Retention removed old data."
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "Retention pass failed; trying again later."),
        }
    }
}

/// With control planes sharing one PostgreSQL: picks up the live settings the others keep.
async fn follow_live_settings(live: Arc<LiveConfig>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = live.follow_store().await {
            tracing::warn!(error = %error, "Cannot read the live settings from the store; trying again later.");
        }
    }
}

/// Says at start-up which capture path syslog over UDP got, and why not XDP if it fell back.
fn log_capture(status: &CaptureStatus) {
    match status {
        CaptureStatus::Xdp { interface, attach, queues, program: XdpProgram::Own } => {
            let bind = queues.first().map_or("none", |(_, bind)| bind.label());
            tracing::info!(
                capture = status.label(),
                summary = %status.summary(),
                program = "own",
                interface = %interface,
                attach = attach.label(),
                queues = queues.len(),
                af_xdp_bind = bind,
                "Capture: XDP steers syslog, statsd and Influx over UDP to AF_XDP; the socket listeners take what it passes."
            );
        }
        CaptureStatus::Xdp { interface, attach, queues, program: XdpProgram::Agent { pin_dir } } => {
            let bind = queues.first().map_or("none", |(_, bind)| bind.label());
            tracing::info!(
                capture = status.label(),
                summary = %status.summary(),
                program = "agent",
                pin_dir = %pin_dir.display(),
                interface = %interface,
                attach = attach.label(),
                queues = queues.len(),
                af_xdp_bind = bind,
                "Capture: the node agent's XDP program steers syslog, statsd and Influx over UDP to our AF_XDP sockets; the socket listeners take what it passes."
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

/// SIGTERM and SIGINT, watched from before the appliance says it is ready: a signal sent
/// as soon as "ready" is logged must stop it gracefully, not kill it.
struct ShutdownSignals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let watch = |kind: SignalKind, name: &str| {
            signal(kind)
                .inspect_err(
                    |error| tracing::error!(error = %error, signal = name, "Cannot watch this signal."),
                )
                .ok()
        };
        Self {
            terminate: watch(SignalKind::terminate(), "SIGTERM"),
            interrupt: watch(SignalKind::interrupt(), "SIGINT"),
        }
    }

    async fn wait(mut self) {
        async fn next(stream: Option<&mut tokio::signal::unix::Signal>) {
            match stream {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(self.terminate.as_mut()) => tracing::info!(signal = "SIGTERM", "Signal received."),
            () = next(self.interrupt.as_mut()) => tracing::info!(signal = "SIGINT", "Signal received."),
        }
    }
}
