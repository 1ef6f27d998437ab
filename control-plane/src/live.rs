//! Applying live settings to the running appliance: each `PUT /api/v1/config/*` is
//! checked whole (`runtime_config`), applied (listeners bound or stopped, XDP maps and the
//! socket path's source policy changed, the retention task told), then kept in the
//! store. A section whose store write fails is put back as it was, so what runs and what
//! is kept never disagree.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use killkrill_dataplane::capture::CaptureMode;
use killkrill_dataplane::listener::{CapturePath, ListenerInfo};
use killkrill_dataplane::sources::SharedSourcePolicy;
use killkrill_dataplane::xdp::{RateLimit, SourcePrefix};
use killkrill_dataplane::{DataPlane, ListenerSpec, SharedCapture};
use serde::Serialize;
use tokio::sync::watch;

use crate::runtime_config::{
    CAPTURE_KEY, CaptureSetting, CaptureView, LISTENERS_KEY, ListenersSetting, RATE_LIMITS_KEY,
    RETENTION_KEY, RateLimitsSetting, RetentionSetting, SOURCES_KEY, SourcesSetting, source_policy,
};
use crate::runtime_config::{CaptureModeName, StoredOverrides};
use crate::store::{Retention, RuntimeConfigEntry, Store};
use crate::{Error, Result};

/// The data plane, shared by the server (which shuts it down) and the live settings.
pub type SharedDataPlane = Arc<Mutex<Option<DataPlane>>>;

/// The sections as they run now.
struct Current {
    sources: SourcesSetting,
    allow: Vec<SourcePrefix>,
    deny: Vec<SourcePrefix>,
    rate_limits: RateLimitsSetting,
    rate_limit: Option<RateLimit>,
    retention: RetentionSetting,
    capture: CaptureSetting,
}

/// What the live settings reach.
pub struct LiveConfig {
    store: Arc<dyn Store>,
    dataplane: SharedDataPlane,
    /// The running listeners as `/api/v1/stats` and `/ready` report them.
    listeners: Arc<RwLock<Vec<ListenerInfo>>>,
    sources: SharedSourcePolicy,
    /// The capture path and XDP program now.
    capture: SharedCapture,
    retention: watch::Sender<Retention>,
    tls_available: bool,
    /// One change at a time, in full: the lock spans apply and store.
    current: tokio::sync::Mutex<Current>,
}

/// What [`LiveConfig::new`] needs besides the running pieces.
pub struct StartingSettings {
    pub sources: SourcesSetting,
    pub rate_limits: RateLimitsSetting,
    pub retention: RetentionSetting,
    pub capture: CaptureSetting,
    pub tls_available: bool,
}

/// Everything `GET /api/v1/config` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FullConfig {
    pub listeners: ListenersSetting,
    pub capture: CaptureView,
    pub sources: SourcesSetting,
    pub rate_limits: RateLimitsSetting,
    pub retention: RetentionSetting,
}

impl LiveConfig {
    pub fn new(
        store: Arc<dyn Store>,
        dataplane: SharedDataPlane,
        listeners: Arc<RwLock<Vec<ListenerInfo>>>,
        sources: SharedSourcePolicy,
        capture: SharedCapture,
        retention: watch::Sender<Retention>,
        starting: StartingSettings,
    ) -> Result<Self> {
        let (allow, deny) = starting.sources.validate()?;
        let rate_limit = starting.rate_limits.validate()?;
        Ok(Self {
            store,
            dataplane,
            listeners,
            sources,
            capture,
            retention,
            tls_available: starting.tls_available,
            current: tokio::sync::Mutex::new(Current {
                sources: SourcesSetting::normalized(&allow, &deny),
                allow,
                deny,
                rate_limits: starting.rate_limits,
                rate_limit,
                retention: starting.retention.normalized(),
                capture: starting.capture.normalized(),
            }),
        })
    }

    /// The running socket listeners (the AF_XDP receivers share the UDP listeners' entries),
    /// by protocol and address so that the order does not depend on the history.
    pub fn listeners(&self) -> ListenersSetting {
        let running = self.listeners.read().unwrap_or_else(PoisonError::into_inner);
        let specs: Vec<ListenerSpec> = running
            .iter()
            .filter(|info| info.capture == CapturePath::Socket)
            .map(|info| ListenerSpec { kind: info.kind, address: info.local_addr })
            .collect();
        let mut setting = ListenersSetting::normalized(&specs);
        setting.listeners.sort_by_key(|listener| (listener.protocol, listener.listen.clone()));
        setting
    }

    pub async fn sources(&self) -> SourcesSetting {
        self.current.lock().await.sources.clone()
    }

    pub async fn rate_limits(&self) -> RateLimitsSetting {
        self.current.lock().await.rate_limits
    }

    pub async fn retention(&self) -> RetentionSetting {
        self.current.lock().await.retention.clone()
    }

    pub async fn capture(&self) -> CaptureView {
        let capture = self.current.lock().await.capture.clone();
        self.capture_view(&capture)
    }

    fn capture_view(&self, capture: &CaptureSetting) -> CaptureView {
        CaptureView {
            mode: capture.mode,
            interface: capture.interface.clone(),
            active: self.capture.read().unwrap_or_else(PoisonError::into_inner).status.label().to_owned(),
            // Capture changes apply at once since they can be switched live (ADR 0025).
            restart_required: false,
        }
    }

    pub async fn full(&self) -> FullConfig {
        let current = self.current.lock().await;
        FullConfig {
            listeners: self.listeners(),
            capture: self.capture_view(&current.capture),
            sources: current.sources.clone(),
            rate_limits: current.rate_limits,
            retention: current.retention.clone(),
        }
    }

    /// Keeps `value` under `key`.
    async fn keep<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_string(value).map_err(|error| Error::Internal(error.to_string()))?;
        let entry = RuntimeConfigEntry {
            key: key.to_owned(),
            value,
            updated_at: jiff::Timestamp::now().to_string(),
            // Filled in once requests carry an authenticated principal.
            updated_by: None,
        };
        self.store.put_runtime_config(&entry).await
    }

    /// Applies lists and limit to the XDP maps (when XDP runs) and the socket path.
    fn apply_sources(
        &self,
        allow: &[SourcePrefix],
        deny: &[SourcePrefix],
        rate_limit: Option<RateLimit>,
    ) -> Result<()> {
        let xdp = self.capture.read().unwrap_or_else(PoisonError::into_inner).xdp.clone();
        if let Some(xdp) = &xdp {
            let mut steering = xdp.lock().unwrap_or_else(PoisonError::into_inner);
            let map_error = |error: killkrill_dataplane::xdp::XdpError| {
                Error::Internal(format!("updating the XDP maps: {error}"))
            };
            steering.set_deny_list(deny).map_err(map_error)?;
            steering.set_allow_list(allow).map_err(map_error)?;
            steering.set_rate_limit(rate_limit).map_err(map_error)?;
        }
        self.sources.set(source_policy(allow.to_vec(), deny.to_vec(), rate_limit));
        Ok(())
    }

    /// Applies the source lists, rate limit and retention that another control plane kept
    /// in the shared store since this one last looked (and notes the capture kept, for
    /// `GET`). Nothing is written back. A section that does not apply is logged and left.
    pub async fn follow_store(&self) -> Result<()> {
        let stored = StoredOverrides::load(&*self.store).await?;
        let mut current = self.current.lock().await;
        if let Some(sources) = stored.sources {
            match sources.validate() {
                Ok((allow, deny)) if SourcesSetting::normalized(&allow, &deny) != current.sources => {
                    match self.apply_sources(&allow, &deny, current.rate_limit) {
                        Ok(()) => {
                            tracing::info!("Live change from the shared store: source lists applied.");
                            current.sources = SourcesSetting::normalized(&allow, &deny);
                            current.allow = allow;
                            current.deny = deny;
                        }
                        Err(error) => tracing::warn!(error = %error, "Cannot apply the stored source lists."),
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error, "Ignoring stored source lists."),
            }
        }
        if let Some(rate_limits) = stored.rate_limits
            && rate_limits != current.rate_limits
        {
            match rate_limits.validate() {
                Ok(limit) => match self.apply_sources(&current.allow, &current.deny, limit) {
                    Ok(()) => {
                        tracing::info!("Live change from the shared store: rate limit applied.");
                        current.rate_limits = rate_limits;
                        current.rate_limit = limit;
                    }
                    Err(error) => tracing::warn!(error = %error, "Cannot apply the stored rate limit."),
                },
                Err(error) => tracing::warn!(error = %error, "Ignoring a stored rate limit."),
            }
        }
        if let Some(retention) = stored.retention {
            let normalized = retention.normalized();
            if normalized != current.retention {
                match retention.validate() {
                    Ok(limits) => {
                        tracing::info!("Live change from the shared store: retention applied.");
                        self.retention.send_replace(limits);
                        current.retention = normalized;
                    }
                    Err(error) => tracing::warn!(error = %error, "Ignoring stored retention limits."),
                }
            }
        }
        if let Some(capture) = stored.capture
            && capture.validate().is_ok()
        {
            current.capture = capture.normalized();
        }
        Ok(())
    }

    pub async fn put_sources(&self, setting: SourcesSetting) -> Result<SourcesSetting> {
        let (allow, deny) = setting.validate()?;
        let mut current = self.current.lock().await;
        self.apply_sources(&allow, &deny, current.rate_limit)?;
        let normalized = SourcesSetting::normalized(&allow, &deny);
        if let Err(error) = self.keep(SOURCES_KEY, &normalized).await {
            let _ = self.apply_sources(&current.allow, &current.deny, current.rate_limit);
            return Err(error);
        }
        tracing::info!(allow = allow.len(), deny = deny.len(), "Live change: source lists applied.");
        current.sources = normalized.clone();
        current.allow = allow;
        current.deny = deny;
        Ok(normalized)
    }

    pub async fn put_rate_limits(&self, setting: RateLimitsSetting) -> Result<RateLimitsSetting> {
        let rate_limit = setting.validate()?;
        let mut current = self.current.lock().await;
        self.apply_sources(&current.allow, &current.deny, rate_limit)?;
        if let Err(error) = self.keep(RATE_LIMITS_KEY, &setting).await {
            let _ = self.apply_sources(&current.allow, &current.deny, current.rate_limit);
            return Err(error);
        }
        tracing::info!(
            per_second = rate_limit.map(|limit| limit.per_second),
            burst = rate_limit.map(|limit| limit.burst),
            "Live change: rate limit applied."
        );
        current.rate_limits = setting;
        current.rate_limit = rate_limit;
        Ok(setting)
    }

    pub async fn put_retention(&self, setting: RetentionSetting) -> Result<RetentionSetting> {
        let mut retention = setting.validate()?;
        // Only the logs' limits are live; metric retention stays as configured.
        retention.metric_max_age_ns = self.retention.borrow().metric_max_age_ns;
        let normalized = setting.normalized();
        let mut current = self.current.lock().await;
        self.keep(RETENTION_KEY, &normalized).await?;
        // The task runs a pass at once with the new limits.
        self.retention.send_replace(retention);
        tracing::info!(max_age = ?normalized.max_age, max_bytes = ?normalized.max_bytes, "Live change: retention applied.");
        current.retention = normalized.clone();
        Ok(normalized)
    }

    /// Switches the capture live (docs/adr/0025): the XDP capture in place stops, the new
    /// one starts with the current source lists and rate limit; then the setting is kept.
    /// In `xdp` mode a failure to attach is a 409 and the capture before is restored.
    pub async fn put_capture(&self, setting: CaptureSetting) -> Result<CaptureView> {
        setting.validate()?;
        let normalized = setting.normalized();
        let mut current = self.current.lock().await;
        let previous = current.capture.clone();
        if let Err(error) = self.apply_capture(&normalized, &current).await {
            if let Err(undo) = self.apply_capture(&previous, &current).await {
                tracing::error!(error = %undo, "Cannot restore the capture after a failed change.");
            }
            return Err(error);
        }
        if let Err(error) = self.keep(CAPTURE_KEY, &normalized).await {
            if let Err(undo) = self.apply_capture(&previous, &current).await {
                tracing::error!(error = %undo, "Cannot restore the capture after a failed store write.");
            }
            return Err(error);
        }
        current.capture = normalized;
        let view = self.capture_view(&current.capture);
        tracing::info!(
            mode = ?view.mode,
            interface = ?view.interface,
            active = view.active,
            "Live change: capture applied."
        );
        Ok(view)
    }

    async fn apply_capture(&self, setting: &CaptureSetting, current: &Current) -> Result<()> {
        let dataplane = self.dataplane.clone();
        let (setting, allow, deny, rate_limit) = (
            setting.clone(),
            current.sources.allow.clone(),
            current.sources.deny.clone(),
            current.rate_limit,
        );
        // Stopping AF_XDP receivers joins their threads: off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut dataplane = dataplane.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(dataplane) = dataplane.as_mut() else {
                return Err(Error::Conflict("the appliance is shutting down".to_owned()));
            };
            let mut config = dataplane.capture_config().clone();
            config.mode = match setting.mode {
                CaptureModeName::Auto => CaptureMode::Auto,
                CaptureModeName::Xdp => CaptureMode::Xdp,
                CaptureModeName::Socket => CaptureMode::Socket,
            };
            config.interface = setting.interface.clone();
            (config.allow, config.deny, config.rate_limit) = (allow, deny, rate_limit);
            dataplane.apply_capture(config).map_err(|error| {
                Error::Conflict(format!(
                    "capture: {error}; syslog over UDP uses the socket path until a capture attaches"
                ))
            })
        })
        .await
        .map_err(|error| Error::Internal(format!("capture change failed: {error}")))?
    }

    pub async fn put_listeners(&self, setting: ListenersSetting) -> Result<ListenersSetting> {
        let specs = setting.validate(self.tls_available)?;
        // Held to the end: one change at a time.
        let _current = self.current.lock().await;
        let before: Vec<ListenerSpec> = self.listeners().validate(true).unwrap_or_default();
        self.apply_listeners(specs.clone()).await?;
        let normalized = ListenersSetting::normalized(&specs);
        if let Err(error) = self.keep(LISTENERS_KEY, &normalized).await {
            if let Err(undo) = self.apply_listeners(before).await {
                tracing::error!(error = %undo, "Cannot restore the listeners after a failed store write.");
            }
            return Err(error);
        }
        Ok(self.listeners())
    }

    async fn apply_listeners(&self, specs: Vec<ListenerSpec>) -> Result<()> {
        let dataplane = self.dataplane.clone();
        let listeners = self.listeners.clone();
        // Stopping a listener joins its threads: off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut dataplane = dataplane.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(dataplane) = dataplane.as_mut() else {
                return Err(Error::Conflict("the appliance is shutting down".to_owned()));
            };
            let result = dataplane.apply_listeners(&specs);
            *listeners.write().unwrap_or_else(PoisonError::into_inner) = dataplane.listeners().to_vec();
            result.map_err(|error| match error {
                bind @ killkrill_dataplane::Error::Bind { .. } => {
                    Error::Conflict(format!("{bind}; the listeners running before are left as they were"))
                }
                other => Error::DataPlane(other),
            })
        })
        .await
        .map_err(|error| Error::Internal(format!("listener change failed: {error}")))??;
        for info in self.listeners.read().unwrap_or_else(PoisonError::into_inner).iter() {
            tracing::info!(
                listener = info.kind.label(),
                address = %info.local_addr,
                capture = info.capture.label(),
                "Live change: listener running."
            );
        }
        Ok(())
    }
}
