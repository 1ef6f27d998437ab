//! Live configuration: the settings an operator changes through `PUT /api/v1/config/*`
//! while the appliance runs (listeners, capture, source lists, rate limits, retention).
//!
//! Each section is checked whole before anything is applied; an error names the field
//! (`listeners[1].listen: ...`). Applied sections are kept in the store's
//! `runtime_config` table and laid over the file, environment and flag configuration at
//! the next start (docs/adr/0024-live-configuration.md): the operator's last live change
//! wins over the file until it is reset.

use std::collections::HashMap;
use std::net::SocketAddr;

use killkrill_dataplane::ListenerSpec;
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::sources::SourcePolicy;
use killkrill_dataplane::xdp::{RateLimit, SourcePrefix, XdpSteering};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{CaptureModeSetting, Config, ListenAddress, parse_duration_ns};
use crate::store::{Retention, Store};
use crate::{Error, Result};

/// The store keys, one per section.
pub const LISTENERS_KEY: &str = "listeners";
pub const CAPTURE_KEY: &str = "capture";
pub const SOURCES_KEY: &str = "sources";
pub const RATE_LIMITS_KEY: &str = "rate_limits";
pub const RETENTION_KEY: &str = "retention";
pub const KEYS: [&str; 5] = [LISTENERS_KEY, CAPTURE_KEY, SOURCES_KEY, RATE_LIMITS_KEY, RETENTION_KEY];

/// A listener protocol as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerProtocol {
    SyslogUdp,
    SyslogTcp,
    SyslogTls,
    StatsdUdp,
    InfluxUdp,
}

impl ListenerProtocol {
    pub fn kind(self) -> ListenerKind {
        match self {
            ListenerProtocol::SyslogUdp => ListenerKind::SyslogUdp,
            ListenerProtocol::SyslogTcp => ListenerKind::SyslogTcp,
            ListenerProtocol::SyslogTls => ListenerKind::SyslogTls,
            ListenerProtocol::StatsdUdp => ListenerKind::StatsdUdp,
            ListenerProtocol::InfluxUdp => ListenerKind::InfluxUdp,
        }
    }

    pub fn from_kind(kind: ListenerKind) -> Option<Self> {
        Some(match kind {
            ListenerKind::SyslogUdp => ListenerProtocol::SyslogUdp,
            ListenerKind::SyslogTcp => ListenerProtocol::SyslogTcp,
            ListenerKind::SyslogTls => ListenerProtocol::SyslogTls,
            ListenerKind::StatsdUdp => ListenerProtocol::StatsdUdp,
            ListenerKind::InfluxUdp => ListenerProtocol::InfluxUdp,
            ListenerKind::Http => return None,
        })
    }

    /// Two listeners on one address collide only on the same transport.
    fn is_udp(self) -> bool {
        !matches!(self, ListenerProtocol::SyslogTcp | ListenerProtocol::SyslogTls)
    }
}

/// One listener: what it speaks and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerSetting {
    pub protocol: ListenerProtocol,
    /// ADDRESS:PORT, e.g. `0.0.0.0:514` or `[::]:514`.
    pub listen: String,
}

/// `GET|PUT /api/v1/config/listeners`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenersSetting {
    pub listeners: Vec<ListenerSetting>,
}

/// `auto`, `xdp` or `socket`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptureModeName {
    Auto,
    Xdp,
    Socket,
}

/// `PUT /api/v1/config/capture` (`active` and `restart_required`, read-only, may be sent
/// back as they were received and are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureSetting {
    pub mode: CaptureModeName,
    pub interface: Option<String>,
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<String>)]
    pub active: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<bool>)]
    pub restart_required: Option<serde_json::Value>,
}

/// `GET /api/v1/config/capture`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CaptureView {
    pub mode: CaptureModeName,
    pub interface: Option<String>,
    /// What runs now: `xdp-native`, `xdp-generic` or `socket`.
    pub active: String,
    /// True when `mode`/`interface` differ from what the running capture was started
    /// with: the change takes effect at the next start (docs/adr/0025).
    pub restart_required: bool,
}

/// `GET|PUT /api/v1/config/sources`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcesSetting {
    /// Non-empty: only these sources are admitted (CIDR). Empty: everyone not denied.
    pub allow: Vec<String>,
    /// Never admitted (CIDR); wins over `allow`.
    pub deny: Vec<String>,
}

/// A per-source token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerSourceLimit {
    pub messages_per_second: u64,
    pub burst: u64,
}

/// `GET|PUT /api/v1/config/rate-limits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSetting {
    /// null: no limit.
    pub per_source: Option<PerSourceLimit>,
}

/// `GET|PUT /api/v1/config/retention`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSetting {
    /// e.g. "30d" (units s, m, h, d, w); null: no age limit.
    pub max_age: Option<String>,
    /// null: no size limit.
    pub max_bytes: Option<u64>,
}

/// Parses a JSON body into a section; the error names the field at fault.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = strip_position(&inner);
        if inner.is_syntax() || inner.is_eof() || path == "." {
            Error::InvalidField { field: "body".to_owned(), message }
        } else {
            Error::InvalidField { field: path, message }
        }
    })?;
    deserializer
        .end()
        .map_err(|error| Error::InvalidField { field: "body".to_owned(), message: strip_position(&error) })?;
    Ok(value)
}

/// serde_json's message without " at line 1 column 40" (the path says where).
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidField { field: field.into(), message: message.into() }
}

/// A listen address from the API: ADDRESS:PORT with a port from 1 to 65535.
fn parse_listen(field: &str, text: &str) -> Result<SocketAddr> {
    if let Some((_, port)) = text.rsplit_once(':')
        && let Ok(port) = port.parse::<u64>()
        && port > u64::from(u16::MAX)
    {
        return Err(invalid(field, format!("port {port} is out of range (1 to 65535)")));
    }
    let address: SocketAddr = text.parse().map_err(|_| {
        invalid(field, format!("`{text}` is not ADDRESS:PORT (e.g. 0.0.0.0:514 or [::]:514)"))
    })?;
    if address.port() == 0 {
        return Err(invalid(field, "port 0 is not allowed: name the port to listen on"));
    }
    Ok(address)
}

impl ListenersSetting {
    /// Checks every entry; `tls_available` says whether a certificate is configured.
    pub fn validate(&self, tls_available: bool) -> Result<Vec<ListenerSpec>> {
        let mut specs = Vec::with_capacity(self.listeners.len());
        let mut seen: HashMap<(bool, SocketAddr), usize> = HashMap::new();
        for (index, listener) in self.listeners.iter().enumerate() {
            let field = format!("listeners[{index}].listen");
            let address = parse_listen(&field, &listener.listen)?;
            if let Some(other) = seen.insert((listener.protocol.is_udp(), address), index) {
                return Err(invalid(
                    field,
                    format!(
                        "{address} is already used by listeners[{other}] ({})",
                        if listener.protocol.is_udp() { "UDP" } else { "TCP" }
                    ),
                ));
            }
            if listener.protocol == ListenerProtocol::SyslogTls && !tls_available {
                return Err(invalid(
                    format!("listeners[{index}].protocol"),
                    "syslog-tls needs a certificate: set syslog.tls_cert and syslog.tls_key in the configuration and restart",
                ));
            }
            specs.push(ListenerSpec { kind: listener.protocol.kind(), address });
        }
        Ok(specs)
    }

    /// The same set in a canonical spelling (addresses as Rust prints them).
    pub fn normalized(specs: &[ListenerSpec]) -> Self {
        Self {
            listeners: specs
                .iter()
                .filter_map(|spec| {
                    Some(ListenerSetting {
                        protocol: ListenerProtocol::from_kind(spec.kind)?,
                        listen: spec.address.to_string(),
                    })
                })
                .collect(),
        }
    }
}

impl CaptureSetting {
    pub fn validate(&self) -> Result<()> {
        if let Some(interface) = &self.interface
            && (interface.is_empty()
                || interface.len() > 15
                || interface.contains(['/', ' ', '\0'])
                || interface == "."
                || interface == "..")
        {
            return Err(invalid("interface", format!("`{interface}` is not a network interface name")));
        }
        if self.mode == CaptureModeName::Xdp && self.interface.is_none() {
            return Err(invalid("interface", "mode xdp needs an interface"));
        }
        Ok(())
    }

    pub fn normalized(&self) -> Self {
        Self { mode: self.mode, interface: self.interface.clone(), active: None, restart_required: None }
    }
}

impl SourcesSetting {
    /// The parsed lists; the error names the entry.
    pub fn validate(&self) -> Result<(Vec<SourcePrefix>, Vec<SourcePrefix>)> {
        let parse = |name: &str, list: &[String]| -> Result<Vec<SourcePrefix>> {
            list.iter()
                .enumerate()
                .map(|(index, text)| {
                    text.parse::<SourcePrefix>()
                        .map_err(|error| invalid(format!("{name}[{index}]"), error.to_string()))
                })
                .collect()
        };
        let allow = parse("allow", &self.allow)?;
        let deny = parse("deny", &self.deny)?;
        // The XDP maps hold this many per family; refusing here keeps both paths equal.
        for (name, list) in [("allow", &allow), ("deny", &deny)] {
            let max = killkrill_dataplane::xdp::MAX_PREFIXES as usize;
            for v4 in [true, false] {
                if list.iter().filter(|prefix| prefix.address().is_ipv4() == v4).count() > max {
                    return Err(invalid(name, format!("at most {max} prefixes per address family")));
                }
            }
        }
        Ok((allow, deny))
    }

    /// Prefixes spelled with their length and host bits cleared (`192.0.2.7/32`).
    pub fn normalized(allow: &[SourcePrefix], deny: &[SourcePrefix]) -> Self {
        Self {
            allow: allow.iter().map(ToString::to_string).collect(),
            deny: deny.iter().map(ToString::to_string).collect(),
        }
    }
}

impl RateLimitsSetting {
    pub fn validate(&self) -> Result<Option<RateLimit>> {
        let Some(limit) = self.per_source else { return Ok(None) };
        if limit.messages_per_second == 0 {
            return Err(invalid(
                "per_source.messages_per_second",
                "must be at least 1 (send \"per_source\": null for no limit)",
            ));
        }
        if limit.burst == 0 {
            return Err(invalid("per_source.burst", "must be at least 1"));
        }
        let rate = RateLimit { per_second: limit.messages_per_second, burst: limit.burst };
        XdpSteering::check_rate_limit(&rate).map_err(|error| {
            let field = if limit.messages_per_second > killkrill_dataplane::xdp::MAX_RATE_PER_SECOND {
                "per_source.messages_per_second"
            } else {
                "per_source.burst"
            };
            invalid(field, error.to_string())
        })?;
        Ok(Some(rate))
    }
}

impl RetentionSetting {
    pub fn validate(&self) -> Result<Retention> {
        let max_age_ns = match &self.max_age {
            None => None,
            Some(text) => {
                let nanos = parse_duration_ns(text).map_err(|message| invalid("max_age", message))?;
                (nanos > 0).then_some(nanos)
            }
        };
        let max_bytes = match self.max_bytes {
            None | Some(0) => None,
            Some(bytes) => Some(i64::try_from(bytes).map_err(|_| invalid("max_bytes", "too large"))?),
        };
        Ok(Retention { max_age_ns, max_bytes })
    }

    /// `"0"` and `0` mean no limit, and read back as null.
    pub fn normalized(&self) -> Self {
        Self {
            max_age: self.max_age.clone().filter(|text| parse_duration_ns(text).is_ok_and(|nanos| nanos > 0)),
            max_bytes: self.max_bytes.filter(|bytes| *bytes > 0),
        }
    }
}

/// The sections kept in the store, as loaded at start (each `None` when never set live).
#[derive(Clone, Debug, Default)]
pub struct StoredOverrides {
    pub listeners: Option<ListenersSetting>,
    pub capture: Option<CaptureSetting>,
    pub sources: Option<SourcesSetting>,
    pub rate_limits: Option<RateLimitsSetting>,
    pub retention: Option<RetentionSetting>,
}

impl StoredOverrides {
    /// Reads the `runtime_config` table. A value that no longer parses (written by another
    /// version) is skipped with a warning: the file's value applies, and the appliance runs.
    pub async fn load(store: &dyn Store) -> Result<Self> {
        let mut overrides = Self::default();
        for entry in store.runtime_config().await? {
            fn decode<T: DeserializeOwned>(key: &str, value: &str) -> Option<T> {
                match parse_body(value.as_bytes()) {
                    Ok(value) => Some(value),
                    Err(error) => {
                        tracing::warn!(key, error = %error, "Ignoring a stored live setting that does not parse.");
                        None
                    }
                }
            }
            match entry.key.as_str() {
                LISTENERS_KEY => overrides.listeners = decode(&entry.key, &entry.value),
                CAPTURE_KEY => overrides.capture = decode(&entry.key, &entry.value),
                SOURCES_KEY => overrides.sources = decode(&entry.key, &entry.value),
                RATE_LIMITS_KEY => overrides.rate_limits = decode(&entry.key, &entry.value),
                RETENTION_KEY => overrides.retention = decode(&entry.key, &entry.value),
                other => tracing::warn!(key = other, "Ignoring an unknown stored live setting."),
            }
        }
        Ok(overrides)
    }

    /// Lays the stored sections over `config`. Returns the full listener set when one is
    /// stored: the data plane starts with the first of each kind (what the file layout
    /// can say) and the server adds the others right after.
    pub fn apply(&self, config: &mut Config) -> Result<Option<Vec<ListenerSpec>>> {
        let stored = |key: &str, error: Error| {
            Error::Config(format!("stored live setting `{key}` (reset it, docs/configuration.md): {error}"))
        };
        if let Some(sources) = &self.sources {
            let (allow, deny) = sources.validate().map_err(|error| stored(SOURCES_KEY, error))?;
            config.capture.allow = allow.iter().map(ToString::to_string).collect();
            config.capture.deny = deny.iter().map(ToString::to_string).collect();
        }
        if let Some(rate_limits) = &self.rate_limits {
            let limit = rate_limits.validate().map_err(|error| stored(RATE_LIMITS_KEY, error))?;
            config.capture.rate_limit_per_second = limit.map_or(0, |limit| limit.per_second);
            config.capture.rate_limit_burst = limit.map_or(0, |limit| limit.burst);
        }
        if let Some(retention) = &self.retention {
            retention.validate().map_err(|error| stored(RETENTION_KEY, error))?;
            config.store.retention_max_age = retention.max_age.clone().unwrap_or_else(|| "0".to_owned());
            config.store.retention_max_bytes = retention.max_bytes.unwrap_or(0);
        }
        if let Some(capture) = &self.capture {
            capture.validate().map_err(|error| stored(CAPTURE_KEY, error))?;
            config.capture.mode = match capture.mode {
                CaptureModeName::Auto => CaptureModeSetting::Auto,
                CaptureModeName::Xdp => CaptureModeSetting::Xdp,
                CaptureModeName::Socket => CaptureModeSetting::Socket,
            };
            config.capture.interface = capture.interface.clone();
        }
        let Some(listeners) = &self.listeners else { return Ok(None) };
        let tls_available = config.syslog.tls_cert.is_some();
        let specs = listeners.validate(tls_available).map_err(|error| stored(LISTENERS_KEY, error))?;
        let first = |kind: ListenerKind| {
            specs
                .iter()
                .find(|spec| spec.kind == kind)
                .map_or(ListenAddress::Off, |spec| ListenAddress::On(spec.address))
        };
        config.syslog.udp = first(ListenerKind::SyslogUdp);
        config.syslog.tcp = first(ListenerKind::SyslogTcp);
        config.syslog.tls = Some(first(ListenerKind::SyslogTls));
        config.metrics.statsd_udp = first(ListenerKind::StatsdUdp);
        config.metrics.influx_udp = first(ListenerKind::InfluxUdp);
        Ok(Some(specs))
    }
}

/// The sections as the configuration (file, environment, flags, stored overrides) says
/// at start, before any live change.
pub fn from_config(
    config: &Config,
) -> Result<(SourcesSetting, RateLimitsSetting, RetentionSetting, CaptureSetting)> {
    let capture = config.capture.to_dataplane()?;
    let sources = SourcesSetting { allow: capture.allow.clone(), deny: capture.deny.clone() };
    let rate_limits = RateLimitsSetting {
        per_source: capture
            .rate_limit
            .map(|limit| PerSourceLimit { messages_per_second: limit.per_second, burst: limit.burst }),
    };
    let retention = config.retention()?;
    let retention = RetentionSetting {
        max_age: retention.max_age_ns.map(|_| config.store.retention_max_age.clone()),
        max_bytes: retention.max_bytes.map(|bytes| bytes as u64),
    };
    let capture = CaptureSetting {
        mode: match config.capture.mode {
            CaptureModeSetting::Auto => CaptureModeName::Auto,
            CaptureModeSetting::Xdp => CaptureModeName::Xdp,
            CaptureModeSetting::Socket => CaptureModeName::Socket,
        },
        interface: config.capture.interface.clone(),
        active: None,
        restart_required: None,
    };
    Ok((sources, rate_limits, retention, capture))
}

/// The socket path's policy for these lists and limit.
pub fn source_policy(
    allow: Vec<SourcePrefix>,
    deny: Vec<SourcePrefix>,
    rate_limit: Option<RateLimit>,
) -> SourcePolicy {
    SourcePolicy { allow, deny, rate_limit }
}

/// Whether a TLS certificate is configured (a syslog-tls listener can be started).
pub fn tls_available(config: &Config) -> bool {
    config.syslog.tls_cert.is_some() && config.syslog.tls_key.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of<T: DeserializeOwned>(body: &str) -> String {
        match parse_body::<T>(body.as_bytes()) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{body} parsed"),
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let message = error_of::<ListenersSetting>(
            r#"{"listeners":[{"protocol":"syslog-udp","listen":"0.0.0.0:514"},{"protocol":"gopher","listen":"0.0.0.0:70"}]}"#,
        );
        assert!(message.starts_with("listeners[1].protocol: unknown variant `gopher`"), "{message}");
        let message = error_of::<ListenersSetting>(
            r#"{"listeners":[{"protocol":"syslog-udp","listen":"0.0.0.0:514","color":"red"}]}"#,
        );
        assert!(message.starts_with("listeners[0].color: unknown field `color`"), "{message}");
        let message = error_of::<SourcesSetting>(r#"{"allow":[],"deny":[],"extra":1}"#);
        assert!(message.starts_with("extra: unknown field"), "{message}");
        let message = error_of::<RateLimitsSetting>(r#"{"per_source":{"messages_per_second":5}}"#);
        assert!(message.starts_with("per_source: missing field `burst`"), "{message}");
        let message = error_of::<SourcesSetting>(r#"{"allow":["#);
        assert!(message.starts_with("body: "), "{message}");
    }

    #[test]
    fn listeners_are_checked_whole() {
        let setting = |entries: &[(&str, &str)]| ListenersSetting {
            listeners: entries
                .iter()
                .map(|(protocol, listen)| ListenerSetting {
                    protocol: serde_json::from_value(serde_json::json!(protocol)).unwrap(),
                    listen: (*listen).to_owned(),
                })
                .collect(),
        };
        let ok = setting(&[
            ("syslog-udp", "0.0.0.0:514"),
            ("syslog-tcp", "0.0.0.0:514"),
            ("statsd-udp", "[::]:8125"),
        ]);
        assert_eq!(ok.validate(false).unwrap().len(), 3, "UDP and TCP may share a port");
        let cases = [
            (
                setting(&[("syslog-udp", "0.0.0.0:514"), ("syslog-udp", "0.0.0.0:70000")]),
                "listeners[1].listen: port 70000 is out of range",
            ),
            (setting(&[("syslog-udp", "0.0.0.0:0")]), "listeners[0].listen: port 0"),
            (
                setting(&[("syslog-udp", "localhost:514")]),
                "listeners[0].listen: `localhost:514` is not ADDRESS:PORT",
            ),
            (
                setting(&[("syslog-udp", "0.0.0.0:514"), ("statsd-udp", "0.0.0.0:514")]),
                "listeners[1].listen: 0.0.0.0:514 is already used by listeners[0]",
            ),
            (
                setting(&[("syslog-tls", "0.0.0.0:6514")]),
                "listeners[0].protocol: syslog-tls needs a certificate",
            ),
        ];
        for (setting, expected) in cases {
            let message = setting.validate(false).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
        }
        setting(&[("syslog-tls", "0.0.0.0:6514")]).validate(true).unwrap();
    }

    #[test]
    fn sources_limits_and_retention_are_checked() {
        let sources = SourcesSetting {
            allow: vec!["10.0.0.0/8".into()],
            deny: vec!["10.1.2.3".into(), "10.0.0.0/33".into()],
        };
        let message = sources.validate().unwrap_err().to_string();
        assert!(message.starts_with("deny[1]: invalid source prefix '10.0.0.0/33'"), "{message}");
        let (allow, deny) =
            SourcesSetting { allow: vec!["10.1.2.3/8".into()], deny: vec!["192.0.2.7".into()] }
                .validate()
                .unwrap();
        let normalized = SourcesSetting::normalized(&allow, &deny);
        assert_eq!(normalized.allow, ["10.0.0.0/8"]);
        assert_eq!(normalized.deny, ["192.0.2.7/32"]);

        let limit = |rate, burst| RateLimitsSetting {
            per_source: Some(PerSourceLimit { messages_per_second: rate, burst }),
        };
        assert!(
            limit(0, 10).validate().unwrap_err().to_string().starts_with("per_source.messages_per_second: ")
        );
        assert!(limit(10, 0).validate().unwrap_err().to_string().starts_with("per_source.burst: "));
        assert!(
            limit(2_000_000_000, 1)
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("per_source.messages_per_second: ")
        );
        assert_eq!(limit(10, 20).validate().unwrap(), Some(RateLimit { per_second: 10, burst: 20 }));
        assert_eq!(RateLimitsSetting::default().validate().unwrap(), None);

        let retention = RetentionSetting { max_age: Some("30x".into()), max_bytes: None };
        assert!(retention.validate().unwrap_err().to_string().starts_with("max_age: "));
        let retention = RetentionSetting { max_age: Some("2d".into()), max_bytes: Some(0) };
        assert_eq!(
            retention.validate().unwrap(),
            Retention { max_age_ns: Some(2 * 86_400 * 1_000_000_000), max_bytes: None }
        );
        assert_eq!(retention.normalized().max_bytes, None);
    }
}
