//! The agent's state shared by the HTTP server, the heartbeat and the signal loop, and
//! [`run`], which ties them together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use killkrill_dataplane::xdp::{XdpCounters, XdpListener, XdpReason};

use serde_json::{Map, Value, json};
use tokio::signal::unix::{SignalKind, signal};

use crate::capture::{Capture, CaptureStatus};
use crate::config::{AgentConfig, CONFIG_FILE_VARIABLE, Filters};
use crate::live_config::RemoteFilters;
use crate::{Error, Result, VERSION};

/// What every task reads.
pub struct Agent {
    pub node_name: String,
    config: Mutex<AgentConfig>,
    capture: Mutex<Option<Capture>>,
    config_file: Option<PathBuf>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub heartbeats_ok: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    last_heartbeat_error: Mutex<Option<String>>,
    /// What the control plane said last (allow/deny, rate limit); None until it answers.
    remote: Mutex<Option<RemoteFilters>>,
    pub config_polls_applied: AtomicU64,
    pub config_polls_unchanged: AtomicU64,
    pub config_polls_failed: AtomicU64,
    /// The admitted-datagram total and when it was read, for the heartbeat's rate.
    last_admitted: Mutex<Option<(Instant, u64)>>,
}

impl Agent {
    pub fn new(config: AgentConfig, capture: Capture, config_file: Option<PathBuf>) -> Self {
        Self {
            node_name: config.resolved_node_name(),
            config: Mutex::new(config),
            capture: Mutex::new(Some(capture)),
            config_file,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            heartbeats_ok: AtomicU64::new(0),
            heartbeats_failed: AtomicU64::new(0),
            last_heartbeat_error: Mutex::new(None),
            remote: Mutex::new(None),
            config_polls_applied: AtomicU64::new(0),
            config_polls_unchanged: AtomicU64::new(0),
            config_polls_failed: AtomicU64::new(0),
            last_admitted: Mutex::new(None),
        }
    }

    /// The filters in force: the file's ports, and the control plane's lists and rate
    /// limit once it has answered (the file's before).
    fn effective_filters(&self, config: &AgentConfig) -> crate::Result<Filters> {
        let filters = config.filters()?;
        Ok(match self.remote.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(remote) => remote.over(filters),
            None => filters,
        })
    }

    /// Writes the control plane's lists and rate limit into the maps when they differ
    /// from what it said last. A write the maps refuse is reported; the next poll tries
    /// again.
    pub fn apply_remote(&self, remote: RemoteFilters) -> crate::Result<()> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        if self.remote.lock().unwrap_or_else(PoisonError::into_inner).as_ref() == Some(&remote) {
            self.config_polls_unchanged.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let filters = remote.over(config.filters()?);
        if let Some(capture) = self.capture.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            capture.apply(&filters)?;
        }
        tracing::info!(
            source = "control-plane",
            allow = filters.allow.len(),
            deny = filters.deny.len(),
            rate_limit_per_second = filters.rate_limit.map_or(0, |limit| limit.per_second),
            rate_limit_burst = filters.rate_limit.map_or(0, |limit| limit.burst),
            "Live configuration applied."
        );
        *self.remote.lock().unwrap_or_else(PoisonError::into_inner) = Some(remote);
        self.config_polls_applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn record_config_poll_failure(&self) {
        self.config_polls_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Datagrams a second the program admitted to steered ports (sent to AF_XDP or passed
    /// to the kernel's sockets) since the previous call; None on the first call or
    /// without XDP.
    fn ingest_rate(&self, counters: Option<&XdpCounters>) -> Option<f64> {
        let counters = counters?;
        let admitted: u64 = [XdpListener::Syslog, XdpListener::Statsd, XdpListener::Influx]
            .into_iter()
            .flat_map(|listener| {
                [XdpReason::Redirected, XdpReason::PassedNoSocket, XdpReason::RedirectFailed]
                    .into_iter()
                    .map(move |reason| counters.get(listener, reason))
            })
            .sum();
        let now = Instant::now();
        let mut last = self.last_admitted.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = last.and_then(|(then, before)| {
            let seconds = now.duration_since(then).as_secs_f64();
            // A counter that went down means the maps were made anew: no rate this time.
            (seconds > 0.0 && admitted >= before).then(|| (admitted - before) as f64 / seconds)
        });
        *last = Some((now, admitted));
        rate
    }

    pub fn config(&self) -> AgentConfig {
        self.config.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The capture status and counters, read under one lock.
    pub fn capture_snapshot(&self) -> (CaptureStatus, Option<killkrill_dataplane::xdp::XdpCounters>) {
        let capture = self.capture.lock().unwrap_or_else(PoisonError::into_inner);
        match capture.as_ref() {
            Some(capture) => (capture.status().clone(), capture.counters()),
            None => (CaptureStatus::Off, None),
        }
    }

    pub fn record_heartbeat(&self, error: Option<String>) {
        let counter = if error.is_some() { &self.heartbeats_failed } else { &self.heartbeats_ok };
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last_heartbeat_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    pub fn last_heartbeat_error(&self) -> Option<String> {
        self.last_heartbeat_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Re-reads the configuration (file and environment) and applies what can change live:
    /// ports, allow and deny lists, rate limit, `detach_on_exit`. A bad file changes nothing.
    pub fn reload(&self) -> Result<()> {
        let result = AgentConfig::load_from(self.config_file.as_deref()).and_then(|new| {
            let filters = self.effective_filters(&new)?;
            let mut current = self.config.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, changed) in [
                ("interface", new.interface != current.interface),
                ("capture_mode", new.capture_mode != current.capture_mode),
                ("bpf_pin_dir", new.bpf_pin_dir != current.bpf_pin_dir),
                ("health_listen", new.health_listen != current.health_listen),
                ("control_plane_url", new.control_plane_url != current.control_plane_url),
                ("heartbeat_interval", new.heartbeat_interval != current.heartbeat_interval),
                ("config_poll_interval", new.config_poll_interval != current.config_poll_interval),
                ("node_name", new.node_name != current.node_name),
            ] {
                if changed {
                    tracing::warn!(key, "A changed key takes effect only when the agent restarts.");
                }
            }
            if let Some(capture) = self.capture.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                capture.apply(&filters)?;
            }
            tracing::info!(
                ports = filters.ports.len(),
                allow = filters.allow.len(),
                deny = filters.deny.len(),
                rate_limit_per_second = filters.rate_limit.map_or(0, |limit| limit.per_second),
                detach_on_exit = new.detach_on_exit,
                "Configuration reloaded."
            );
            *current = new;
            Ok(())
        });
        match &result {
            Ok(()) => self.reloads_ok.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                tracing::error!(error = %error, "The reloaded configuration was refused; the previous one stays.");
                self.reloads_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }

    /// The heartbeat body (docs/agent.md): the control plane's `Heartbeat`.
    pub fn heartbeat_body(&self) -> Value {
        let config = self.config();
        let (status, counters) = self.capture_snapshot();
        let mut by_listener = Map::new();
        if let Some(counters) = counters {
            for (listener, reason, value) in counters.iter() {
                let entry = by_listener.entry(listener.label()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(reasons) = entry {
                    reasons.insert(reason.label().to_owned(), value.into());
                }
            }
        }
        let ingest_rate = self.ingest_rate(counters.as_ref());
        let (attach_mode, pinned) = match &status {
            CaptureStatus::Attached { mode, pinned, .. } => (Some(mode.label()), *pinned),
            _ => (None, false),
        };
        json!({
            "node_name": self.node_name,
            "version": VERSION,
            "interface": config.interface,
            "capture_mode": config.capture_mode.label(),
            "attach_mode": attach_mode,
            "pinned": pinned,
            "counters": by_listener,
            "heartbeat_interval_seconds": config.heartbeat_period().unwrap_or(Duration::from_secs(10)).as_secs_f64(),
            "ingest_rate": ingest_rate,
        })
    }

    fn take_capture(&self) -> Option<Capture> {
        self.capture.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: AgentConfig) -> Result<()> {
    let config_file =
        std::env::var_os(CONFIG_FILE_VARIABLE).filter(|value| !value.is_empty()).map(PathBuf::from);
    // Signals first: a SIGTERM during start-up must not kill us with XDP half set up.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;

    let capture = Capture::start(&config, &config.filters()?)?;
    let address = config.health_listen;
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(source) => {
            // Leave the kernel as we found it, unless told to keep XDP.
            let _ = capture.stop(config.detach_on_exit);
            return Err(Error::Listen { address, source });
        }
    };
    let period = config.heartbeat_period()?;
    let poll_period = config.config_poll_period()?;
    let agent = Arc::new(Agent::new(config, capture, config_file));
    tracing::info!(
        address = %listener.local_addr()?,
        node_name = %agent.node_name,
        version = VERSION,
        "Agent started."
    );
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::http::serve(listener, agent.clone(), stop.clone()));
    let heartbeat = tokio::spawn(crate::heartbeat::run(agent.clone(), period, stop.clone()));
    let live_config = match poll_period {
        Some(poll_period) => tokio::spawn(crate::live_config::run(agent.clone(), poll_period, stop)),
        None => {
            tracing::info!(
                "config_poll_interval = off: the allow/deny lists and rate limit come from the file."
            );
            tokio::spawn(async {})
        }
    };

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration.");
                let _ = agent.reload();
            }
        }
    }
    tracing::info!("Stopping.");
    let _ = stop_sender.send(true);
    let _ = heartbeat.await;
    let _ = live_config.await;
    let _ = server.await;
    let detach = agent.config().detach_on_exit;
    match agent.take_capture() {
        Some(capture) => capture.stop(detach),
        None => Ok(()),
    }
}
