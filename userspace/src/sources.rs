//! The source policy on the socket path: the allow and deny lists and the per-source rate
//! limit that the XDP program applies to steered ports (see [`crate::xdp`]), applied in
//! user space to what reaches the socket listeners, so a setting means the same whatever
//! the capture path.
//!
//! The policy changes at run time ([`SharedSourcePolicy::set`]). A listener thread holds a
//! [`SourceGate`]: it looks at one generation number per receive call (a relaxed load of
//! a cache line that is only written when an operator changes the policy) and takes the
//! new policy only when that number moved, so the hot path takes no lock. Token buckets
//! are the thread's own (no sharing), as the XDP program's are per CPU.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::xdp::{RateLimit, SourcePrefix};

/// Token buckets one thread keeps before it forgets idle sources: a flood of spoofed
/// addresses must not grow memory without bound.
const MAX_BUCKETS: usize = 65_536;

/// What is admitted, as the operator set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Non-empty: only these sources are admitted. Empty: every source not denied.
    pub allow: Vec<SourcePrefix>,
    /// Never admitted (wins over `allow`).
    pub deny: Vec<SourcePrefix>,
    /// Per-source token bucket; datagram listeners only.
    pub rate_limit: Option<RateLimit>,
}

impl SourcePolicy {
    /// True when the lists admit `source` (the rate limit aside).
    pub fn admits(&self, source: IpAddr) -> bool {
        CompiledPolicy::new(self.clone()).admits(source)
    }
}

/// Prefixes grouped by length, each group a hash set of network addresses: a lookup costs
/// one hash probe per distinct length (at most 33 for IPv4, 129 for IPv6), not one
/// comparison per prefix, so a list of thousands costs about what a list of ten does.
#[derive(Debug, Default)]
struct PrefixSet {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

impl PrefixSet {
    fn new(prefixes: &[SourcePrefix]) -> Self {
        let mut set = Self::default();
        for prefix in prefixes {
            let length = prefix.prefix_len();
            match prefix.address() {
                IpAddr::V4(address) => group(&mut set.v4, length).insert(u32::from(address)),
                IpAddr::V6(address) => group(&mut set.v6, length).insert(u128::from(address)),
            };
        }
        set
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(address) => {
                let bits = u32::from(address);
                self.v4.iter().any(|(length, set)| {
                    set.contains(&(bits & u32::MAX.checked_shl(32 - u32::from(*length)).unwrap_or(0)))
                })
            }
            IpAddr::V6(address) => {
                let bits = u128::from(address);
                self.v6.iter().any(|(length, set)| {
                    set.contains(&(bits & u128::MAX.checked_shl(128 - u32::from(*length)).unwrap_or(0)))
                })
            }
        }
    }
}

fn group<T>(groups: &mut Vec<(u8, HashSet<T>)>, length: u8) -> &mut HashSet<T> {
    let index = match groups.iter().position(|(existing, _)| *existing == length) {
        Some(index) => index,
        None => {
            groups.push((length, HashSet::new()));
            groups.len() - 1
        }
    };
    &mut groups[index].1
}

/// A policy with its lists made ready for lookups.
#[derive(Debug, Default)]
struct CompiledPolicy {
    allow: PrefixSet,
    deny: PrefixSet,
    rate_limit: Option<RateLimit>,
}

impl CompiledPolicy {
    fn new(policy: SourcePolicy) -> Self {
        Self {
            allow: PrefixSet::new(&policy.allow),
            deny: PrefixSet::new(&policy.deny),
            rate_limit: policy.rate_limit,
        }
    }

    fn admits(&self, source: IpAddr) -> bool {
        let source = canonical(source);
        if self.deny.contains(source) {
            return false;
        }
        self.allow.is_empty() || self.allow.contains(source)
    }

    fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.rate_limit.is_none()
    }
}

/// IPv4 senders reaching a dual-stack socket show as `::ffff:a.b.c.d`; the lists name them
/// as IPv4, like the XDP program sees them.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The policy every listener reads; cloned into each listener, changed by the control plane.
#[derive(Clone, Debug, Default)]
pub struct SharedSourcePolicy {
    inner: Arc<SharedInner>,
}

#[derive(Debug, Default)]
struct SharedInner {
    generation: AtomicU64,
    current: Mutex<Arc<CompiledPolicy>>,
}

impl SharedSourcePolicy {
    pub fn new(policy: SourcePolicy) -> Self {
        let shared = Self::default();
        shared.set(policy);
        shared
    }

    /// Replaces the policy; every listener takes it at its next receive call.
    pub fn set(&self, policy: SourcePolicy) {
        let compiled = Arc::new(CompiledPolicy::new(policy));
        *self.inner.current.lock().unwrap_or_else(PoisonError::into_inner) = compiled;
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    fn get(&self) -> Arc<CompiledPolicy> {
        self.inner.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A gate for one listener thread.
    pub fn gate(&self) -> SourceGate {
        SourceGate {
            shared: self.clone(),
            generation: self.inner.generation.load(Ordering::Acquire),
            policy: self.get(),
            buckets: HashMap::new(),
            now: Instant::now(),
        }
    }
}

/// Why a message was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// On the deny list, or not on a non-empty allow list.
    Denied,
    /// The source's token bucket was empty.
    RateLimited,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens, in nanoseconds of refill (one token takes `1e9 / rate` ns).
    tokens_ns: u128,
    updated: Instant,
}

/// One listener thread's view of the policy, with its own token buckets.
#[derive(Debug)]
pub struct SourceGate {
    shared: SharedSourcePolicy,
    generation: u64,
    policy: Arc<CompiledPolicy>,
    buckets: HashMap<IpAddr, Bucket>,
    now: Instant,
}

impl SourceGate {
    /// Call once per receive call: picks up a changed policy and the time the rate limit
    /// counts from.
    pub fn refresh(&mut self) {
        let generation = self.shared.inner.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.policy = self.shared.get();
            if self.policy.rate_limit.is_none() {
                self.buckets.clear();
            }
        }
        if self.policy.rate_limit.is_some() {
            self.now = Instant::now();
        }
    }

    /// True when nothing is filtered (lets the caller skip the per-message check).
    pub fn is_open(&self) -> bool {
        self.policy.is_open()
    }

    /// Whether a connection from `source` may open (lists only: a stream is not rate
    /// limited, its sender is slowed by TCP flow control instead).
    pub fn admits_connection(&mut self, source: IpAddr) -> bool {
        self.refresh();
        self.policy.admits(source)
    }

    /// The verdict for one datagram from `source`.
    pub fn check(&mut self, source: IpAddr) -> Verdict {
        if !self.policy.admits(source) {
            return Verdict::Denied;
        }
        let Some(limit) = self.policy.rate_limit else { return Verdict::Admit };
        let per_token_ns = 1_000_000_000u128 / u128::from(limit.per_second.max(1));
        let capacity = per_token_ns * u128::from(limit.burst.max(1));
        let now = self.now;
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&canonical(source)) {
            // Full buckets are sources at rest: forgetting them changes nothing.
            self.buckets.retain(|_, bucket| {
                bucket.tokens_ns + now.saturating_duration_since(bucket.updated).as_nanos() < capacity
            });
            if self.buckets.len() >= MAX_BUCKETS {
                self.buckets.clear();
            }
        }
        let bucket =
            self.buckets.entry(canonical(source)).or_insert(Bucket { tokens_ns: capacity, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_nanos();
        bucket.tokens_ns = (bucket.tokens_ns + elapsed).min(capacity);
        bucket.updated = now;
        if bucket.tokens_ns >= per_token_ns {
            bucket.tokens_ns -= per_token_ns;
            Verdict::Admit
        } else {
            Verdict::RateLimited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(texts: &[&str]) -> Vec<SourcePrefix> {
        crate::xdp::parse_prefixes(texts).unwrap()
    }

    #[test]
    fn deny_wins_and_a_non_empty_allow_list_admits_only_its_members() {
        let shared = SharedSourcePolicy::default();
        let mut gate = shared.gate();
        gate.refresh();
        assert!(gate.is_open());
        assert_eq!(gate.check("127.0.0.2".parse().unwrap()), Verdict::Admit);
        shared.set(SourcePolicy {
            allow: prefixes(&["127.0.0.0/8"]),
            deny: prefixes(&["127.0.0.2"]),
            rate_limit: None,
        });
        gate.refresh();
        assert_eq!(gate.check("127.0.0.2".parse().unwrap()), Verdict::Denied);
        assert_eq!(gate.check("127.0.0.1".parse().unwrap()), Verdict::Admit);
        assert_eq!(gate.check("10.0.0.1".parse().unwrap()), Verdict::Denied, "not on the allow list");
        assert_eq!(gate.check("::ffff:127.0.0.2".parse().unwrap()), Verdict::Denied, "mapped IPv4");
        assert_eq!(gate.check("2001:db8::1".parse().unwrap()), Verdict::Denied, "IPv4-only allow list");
        assert!(!gate.admits_connection("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn prefix_sets_match_by_every_length_present() {
        let policy = SourcePolicy {
            allow: prefixes(&["10.0.0.0/8", "192.0.2.128/25", "2001:db8::/32", "0.0.0.0/0"]),
            deny: prefixes(&["10.9.0.0/16", "2001:db8:ff::/48", "203.0.113.5"]),
            rate_limit: None,
        };
        for (address, admitted) in [
            ("10.1.2.3", true),
            ("10.9.1.1", false),
            ("203.0.113.5", false),
            ("203.0.113.6", true),
            ("2001:db8:1::1", true),
            ("2001:db8:ff::1", false),
            ("2001:db9::1", false),
        ] {
            assert_eq!(policy.admits(address.parse().unwrap()), admitted, "{address}");
        }
        // Many prefixes: each still found, a neighbour still not.
        let many: Vec<String> =
            (0..5000u32).map(|n| format!("{}/32", std::net::Ipv4Addr::from(0x0a00_0000 + n * 2))).collect();
        let policy = SourcePolicy {
            deny: prefixes(&many.iter().map(String::as_str).collect::<Vec<_>>()),
            ..SourcePolicy::default()
        };
        assert!(!policy.admits("10.0.0.8".parse().unwrap()));
        assert!(policy.admits("10.0.0.9".parse().unwrap()));
    }

    #[test]
    fn the_bucket_admits_the_burst_then_refills_at_the_rate() {
        let shared = SharedSourcePolicy::new(SourcePolicy {
            rate_limit: Some(RateLimit { per_second: 10, burst: 5 }),
            ..SourcePolicy::default()
        });
        let mut gate = shared.gate();
        gate.refresh();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let admitted = (0..20).filter(|_| gate.check(source) == Verdict::Admit).count();
        assert_eq!(admitted, 5, "the burst, then nothing within the same instant");
        assert_eq!(gate.check("192.0.2.2".parse().unwrap()), Verdict::Admit, "per source");
        gate.now += std::time::Duration::from_millis(300);
        let admitted = (0..20).filter(|_| gate.check(source) == Verdict::Admit).count();
        assert_eq!(admitted, 3, "300 ms at 10/s refill three tokens");
        shared.set(SourcePolicy::default());
        gate.refresh();
        assert_eq!(gate.check(source), Verdict::Admit, "the limit lifted");
        assert!(gate.buckets.is_empty());
    }
}
