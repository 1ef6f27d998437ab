//! The agent's configuration: defaults, then the TOML file named by `KILLKRILL_AGENT_CONFIG`
//! (the operator's `node.toml`, docs/agent.md), then `KILLKRILL_AGENT__<KEY>` variables.
//! Unknown keys are refused; every error names the key at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use killkrill_dataplane::xdp::{AttachPolicy, RateLimit, SourcePrefix, XdpListener, parse_prefixes};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The variable naming the TOML file.
pub const CONFIG_FILE_VARIABLE: &str = "KILLKRILL_AGENT_CONFIG";
/// The prefix of the per-key variables (`KILLKRILL_AGENT__HEALTH_LISTEN` sets `health_listen`).
pub const ENV_PREFIX: &str = "KILLKRILL_AGENT__";

/// How the agent attaches the XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// Native, else generic; when neither attaches the agent runs on (the appliance uses
    /// its sockets) and says so in `/health`.
    Auto,
    /// Native, else generic; start-up fails when neither attaches.
    Xdp,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
    /// No XDP: the agent only reports.
    Socket,
}

impl CaptureMode {
    pub const fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Xdp => "xdp",
            Self::Native => "native",
            Self::Generic => "generic",
            Self::Socket => "socket",
        }
    }

    /// The attach policy, or None for `socket`.
    pub const fn policy(self) -> Option<AttachPolicy> {
        match self {
            Self::Auto | Self::Xdp => Some(AttachPolicy::NativeThenGeneric),
            Self::Native => Some(AttachPolicy::NativeOnly),
            Self::Generic => Some(AttachPolicy::GenericOnly),
            Self::Socket => None,
        }
    }
}

/// One input of the appliance, as the operator renders it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `syslog-udp`, `statsd`, `influx` (UDP: steered by XDP) or `syslog-tcp`,
    /// `syslog-tls` (TCP: never steered).
    pub protocol: String,
    /// `udp` or `tcp`; informative, the protocol decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    pub port: u16,
}

/// Retention, rendered by the operator for the appliance; accepted and not used here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// The heartbeat's API key: kept out of `Debug` output so that it cannot reach a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(pub String);

impl ApiKey {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

/// The variable the appliance's clients share for an API key.
pub const API_KEY_VARIABLE: &str = "KILLKRILL_API_KEY";

/// Every key the agent reads (docs/configuration.md, "Node agent").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The interface the XDP program attaches to; empty: no XDP.
    pub interface: String,
    pub capture_mode: CaptureMode,
    /// UDP listeners' ports are steered; TCP ones are listed for the appliance only.
    pub listeners: Vec<ListenerConfig>,
    /// Source prefixes (CIDR) admitted to steered ports; empty admits all.
    pub allow: Vec<String>,
    /// Source prefixes dropped at steered ports; wins over `allow`.
    pub deny: Vec<String>,
    /// Datagrams per second per source address at steered ports; 0: no limit.
    pub rate_limit_per_second: u64,
    /// Datagrams a source may send at once; 0: as many as `rate_limit_per_second`.
    pub rate_limit_burst: u64,
    /// bpffs folder for the maps and the link.
    pub bpf_pin_dir: PathBuf,
    /// Leave the program attached (pinned) when the agent stops.
    pub detach_on_exit: bool,
    /// Where `/health`, `/ready` and `/metrics` are served.
    pub health_listen: SocketAddr,
    /// The control plane's base URL (`http://host:port`); empty: no heartbeat.
    pub control_plane_url: String,
    /// Time between heartbeats: a number with `ms`, `s` or `m`.
    pub heartbeat_interval: String,
    /// This node's name in `/api/v1/nodes`; empty: the host name.
    pub node_name: String,
    /// A maintainer API key (`kk_...`) for the heartbeat, sent as `Authorization: Bearer`;
    /// empty: none (the control plane then refuses the heartbeat). Environment:
    /// KILLKRILL_API_KEY or KILLKRILL_AGENT__API_KEY; better from a Secret than a file.
    #[serde(skip_serializing_if = "ApiKey::is_empty")]
    pub api_key: ApiKey,
    /// The data plane's cores, rendered by the operator; not used by the agent.
    pub data_plane_cores: Vec<u32>,
    /// Rendered by the operator for the appliance; not used by the agent.
    pub retention: RetentionConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            interface: String::new(),
            capture_mode: CaptureMode::Auto,
            listeners: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            bpf_pin_dir: PathBuf::from("/sys/fs/bpf/killkrill"),
            detach_on_exit: true,
            health_listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            control_plane_url: "http://127.0.0.1:8080".to_owned(),
            heartbeat_interval: "10s".to_owned(),
            node_name: String::new(),
            api_key: ApiKey::default(),
            data_plane_cores: Vec::new(),
            retention: RetentionConfig::default(),
        }
    }
}

/// What the XDP maps hold, checked: the part of the configuration a reload applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filters {
    pub ports: Vec<(u16, XdpListener)>,
    pub allow: Vec<SourcePrefix>,
    pub deny: Vec<SourcePrefix>,
    pub rate_limit: Option<RateLimit>,
}

impl AgentConfig {
    /// Builds the configuration from the file named by `KILLKRILL_AGENT_CONFIG` (if set)
    /// and the process environment, and checks it.
    pub fn load() -> Result<Self, Error> {
        let file =
            std::env::var_os(CONFIG_FILE_VARIABLE).filter(|value| !value.is_empty()).map(PathBuf::from);
        Self::load_from(file.as_deref())
    }

    /// Same, with the file given.
    pub fn load_from(file: Option<&Path>) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(AgentConfig::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(Error::Config(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::raw().only(&[API_KEY_VARIABLE]).map(|_| "api_key".into()));
        figment = figment.merge(Env::prefixed(ENV_PREFIX));
        let config: AgentConfig = figment.extract().map_err(|error| {
            Error::Config(error.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        self.filters()?;
        self.heartbeat_period()?;
        if self.capture_mode != CaptureMode::Socket && self.interface.contains(['/', ' ', ':']) {
            return Err(Error::Config(format!("interface = {:?} is not an interface name", self.interface)));
        }
        if !self.control_plane_url.is_empty() && !self.control_plane_url.starts_with("http://") {
            return Err(Error::Config(format!(
                "control_plane_url = {:?}: only http:// URLs are supported (the agent talks to the appliance on its own node)",
                self.control_plane_url
            )));
        }
        if self.bpf_pin_dir.as_os_str().is_empty() || !self.bpf_pin_dir.is_absolute() {
            return Err(Error::Config(format!(
                "bpf_pin_dir = {:?} must be an absolute path",
                self.bpf_pin_dir
            )));
        }
        Ok(())
    }

    /// Whether XDP is wanted at all.
    pub fn wants_xdp(&self) -> bool {
        self.capture_mode != CaptureMode::Socket && !self.interface.is_empty()
    }

    /// The steered ports, lists and rate limit, checked.
    pub fn filters(&self) -> Result<Filters, Error> {
        let mut ports = Vec::new();
        for (index, listener) in self.listeners.iter().enumerate() {
            let steered = match listener.protocol.as_str() {
                "syslog-udp" => Some(XdpListener::Syslog),
                "statsd" => Some(XdpListener::Statsd),
                "influx" => Some(XdpListener::Influx),
                "syslog-tcp" | "syslog-tls" => None,
                other => {
                    return Err(Error::Config(format!(
                        "listeners[{index}].protocol = {other:?}: expected syslog-udp, syslog-tcp, syslog-tls, statsd or influx"
                    )));
                }
            };
            if listener.port == 0 {
                return Err(Error::Config(format!("listeners[{index}].port must be above 0")));
            }
            if let Some(steered) = steered {
                ports.push((listener.port, steered));
            }
        }
        let allow = parse_prefixes(&self.allow).map_err(|error| Error::Config(format!("allow: {error}")))?;
        let deny = parse_prefixes(&self.deny).map_err(|error| Error::Config(format!("deny: {error}")))?;
        let rate_limit = match (self.rate_limit_per_second, self.rate_limit_burst) {
            (0, 0) => None,
            (0, _) => {
                return Err(Error::Config(
                    "rate_limit_burst is set but rate_limit_per_second is 0 (no limit)".to_owned(),
                ));
            }
            (per_second, burst) => {
                let limit = RateLimit { per_second, burst: if burst == 0 { per_second } else { burst } };
                killkrill_dataplane::xdp::XdpSteering::check_rate_limit(&limit).map_err(|error| {
                    Error::Config(format!("rate_limit_per_second/rate_limit_burst: {error}"))
                })?;
                Some(limit)
            }
        };
        Ok(Filters { ports, allow, deny, rate_limit })
    }

    /// `heartbeat_interval`, parsed.
    pub fn heartbeat_period(&self) -> Result<Duration, Error> {
        let bad =
            |why: &str| Error::Config(format!("heartbeat_interval = {:?}: {why}", self.heartbeat_interval));
        let text = self.heartbeat_interval.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad("expected a number with ms, s or m, e.g. 10s"))?;
        let period = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            _ => return Err(bad("the unit must be ms, s or m")),
        };
        if period < Duration::from_millis(100) || period > Duration::from_secs(3600) {
            return Err(bad("must be between 100ms and 60m"));
        }
        Ok(period)
    }

    /// `node_name`, or the host name when empty.
    pub fn resolved_node_name(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail fixes the closure's error type")]
mod tests {
    use figment::Jail;

    use super::*;

    /// What the operator renders into node.toml (operator/src/config.rs).
    const OPERATOR_NODE_TOML: &str = r#"
        interface = "eth0"
        capture_mode = "xdp"
        data_plane_cores = [2, 3]
        bpf_pin_dir = "/sys/fs/bpf/killkrill"
        control_plane_url = "http://127.0.0.1:8080"
        health_listen = "0.0.0.0:8081"
        [[listeners]]
        protocol = "syslog-udp"
        transport = "udp"
        port = 514
        [[listeners]]
        protocol = "syslog-tcp"
        transport = "tcp"
        port = 514
        [[listeners]]
        protocol = "statsd"
        transport = "udp"
        port = 8125
        [retention]
        max_age_seconds = 604800
    "#;

    #[test]
    fn the_api_key_comes_from_the_environment_and_never_shows_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_API_KEY", "kk_from_the_shared_variable");
            let config = AgentConfig::load_from(None).unwrap();
            assert_eq!(config.api_key.0, "kk_from_the_shared_variable");
            assert!(!format!("{config:?}").contains("kk_from"), "redacted in Debug");
            jail.set_env("KILLKRILL_AGENT__API_KEY", "kk_agent_specific");
            assert_eq!(AgentConfig::load_from(None).unwrap().api_key.0, "kk_agent_specific");
            Ok(())
        });
    }

    #[test]
    fn the_operators_node_toml_is_accepted_and_environment_wins() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", OPERATOR_NODE_TOML)?;
            jail.set_env("KILLKRILL_AGENT__NODE_NAME", "node-a");
            jail.set_env("KILLKRILL_AGENT__HEALTH_LISTEN", "127.0.0.1:9191");
            jail.set_env("KILLKRILL_AGENT__DENY", "[\"192.0.2.0/24\"]");
            jail.set_env("KILLKRILL_AGENT__DETACH_ON_EXIT", "false");
            let config = AgentConfig::load_from(Some(Path::new("node.toml"))).unwrap();
            assert_eq!(config.interface, "eth0");
            assert_eq!(config.capture_mode, CaptureMode::Xdp);
            assert_eq!(config.node_name, "node-a");
            assert_eq!(config.health_listen, "127.0.0.1:9191".parse().unwrap());
            assert!(!config.detach_on_exit);
            let filters = config.filters().unwrap();
            assert_eq!(filters.ports, vec![(514, XdpListener::Syslog), (8125, XdpListener::Statsd)]);
            assert_eq!(filters.deny, parse_prefixes(&["192.0.2.0/24"]).unwrap());
            assert_eq!(filters.rate_limit, None);
            Ok(())
        });
    }

    #[test]
    fn defaults_follow_the_deployment_contract() {
        Jail::expect_with(|_| {
            let config = AgentConfig::load_from(None).unwrap();
            assert_eq!(config.health_listen, "0.0.0.0:8081".parse().unwrap());
            assert_eq!(config.bpf_pin_dir, Path::new("/sys/fs/bpf/killkrill"));
            assert!(config.detach_on_exit);
            assert_eq!(config.heartbeat_period().unwrap(), Duration::from_secs(10));
            assert!(!config.wants_xdp(), "no interface, no XDP");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let cases: [(&str, &str); 9] = [
            ("bogus = 1", "bogus"),
            ("capture_mode = \"turbo\"", "turbo"),
            ("allow = [\"10.0.0.0/33\"]", "allow"),
            ("deny = [\"nonsense\"]", "deny"),
            ("rate_limit_burst = 5", "rate_limit_per_second"),
            ("rate_limit_per_second = 2000000000", "rate_limit_per_second"),
            ("heartbeat_interval = \"10 parsecs\"", "heartbeat_interval"),
            ("[[listeners]]\nprotocol = \"smtp\"\nport = 25", "listeners[0].protocol"),
            ("control_plane_url = \"https://cp\"", "control_plane_url"),
        ];
        for (toml, key) in cases {
            Jail::expect_with(|jail| {
                jail.create_file("agent.toml", toml)?;
                let error = AgentConfig::load_from(Some(Path::new("agent.toml"))).unwrap_err().to_string();
                assert!(error.contains(key), "{toml}: {error}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("KILLKRILL_AGENT__HEALTH_LISTEN", "not an address");
            let error = AgentConfig::load_from(None).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("health_listen"), "{error}");
            let error = AgentConfig::load_from(Some(Path::new("missing.toml"))).unwrap_err().to_string();
            assert!(error.contains("missing.toml") && error.contains("does not exist"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn heartbeat_intervals_parse_with_units() {
        let period = |text: &str| {
            AgentConfig { heartbeat_interval: text.to_owned(), ..AgentConfig::default() }.heartbeat_period()
        };
        assert_eq!(period("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(period("2m").unwrap(), Duration::from_secs(120));
        assert!(period("50ms").is_err());
        assert!(period("s").is_err());
        assert!(period("61m").is_err());
    }
}
