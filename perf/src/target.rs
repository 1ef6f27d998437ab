//! The workplace's address rule: a load generator may only aim at loopback or at the
//! benchmark rig's own network namespaces (10.203.0.0/16). A mistyped target must never
//! flood a real network, so every sender checks before its first packet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use crate::{Error, Result};

/// The network the benchmark rig gives its network namespaces and veth pairs.
pub const RIG_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 0);
pub const RIG_PREFIX_LEN: u32 = 16;

/// True when `ip` is loopback (127.0.0.0/8, ::1) or inside 10.203.0.0/16, including the
/// IPv4-mapped IPv6 forms of those.
pub fn is_allowed_target(ip: IpAddr) -> bool {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6.is_loopback() => return true,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return false,
        },
    };
    let mask = u32::MAX << (32 - RIG_PREFIX_LEN);
    v4.is_loopback() || (u32::from(v4) & mask) == u32::from(RIG_NETWORK)
}

/// Refuses any address outside the rule, naming the rule in the error.
pub fn check_target(addr: SocketAddr) -> Result<SocketAddr> {
    if is_allowed_target(addr.ip()) { Ok(addr) } else { Err(Error::TargetNotAllowed { addr }) }
}

/// Resolves `ADDR:PORT` (a literal or `localhost:514`) and checks every address it resolves
/// to, so a name cannot smuggle in an outside address behind an allowed one.
pub fn resolve_target(spec: &str) -> anyhow::Result<SocketAddr> {
    use anyhow::Context as _;
    let addrs: Vec<SocketAddr> =
        spec.to_socket_addrs().with_context(|| format!("resolving target {spec:?}"))?.collect();
    let first = *addrs.first().with_context(|| format!("target {spec:?} resolved to no address"))?;
    for addr in &addrs {
        check_target(*addr)?;
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(addr: &str) -> bool {
        check_target(addr.parse().unwrap()).is_ok()
    }

    #[test]
    fn loopback_and_rig_network_are_accepted() {
        assert!(allowed("127.0.0.1:514"));
        assert!(allowed("127.45.0.9:514"));
        assert!(allowed("[::1]:514"));
        assert!(allowed("10.203.1.1:514"));
        assert!(allowed("10.203.255.254:8125"));
        assert!(allowed("[::ffff:10.203.0.7]:514"));
    }

    #[test]
    fn other_addresses_are_refused_naming_the_rule() {
        for addr in ["8.8.8.8:53", "192.168.1.1:514", "10.204.0.1:514", "10.2.3.4:514", "[2001:db8::1]:514"] {
            let err = check_target(addr.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("10.203.0.0/16"), "{err}");
        }
    }

    #[test]
    fn names_resolve_then_get_checked() {
        assert!(resolve_target("localhost:514").is_ok());
        assert!(resolve_target("8.8.8.8:53").is_err());
    }
}
