//! Failed logins per client address and per username, counted in memory in fixed
//! one-minute windows (each control plane counts its own; the stored lockout is what holds
//! across control planes). Only failures count, so that many people behind one proxy
//! address can still log in, while guessing from anywhere is slowed down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked before old windows are swept, so that a flood of names cannot grow the map
/// past what one window of failures holds.
const SWEEP_AT: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Address(IpAddr),
    Username(String),
}

pub struct LoginLimiter {
    per_window: u32,
    windows: Mutex<HashMap<Key, (Instant, u32)>>,
}

impl LoginLimiter {
    /// `per_minute` failed logins per address and per username.
    pub fn new(per_minute: u32) -> Self {
        Self { per_window: per_minute.max(1), windows: Mutex::new(HashMap::new()) }
    }

    fn keys(address: IpAddr, username: &str) -> [Key; 2] {
        [Key::Address(address), Key::Username(username.to_owned())]
    }

    /// `Err(retry_after)` when the address or the username used up its failures for the
    /// current window: the attempt should not even be checked.
    pub fn check(&self, address: IpAddr, username: &str, now: Instant) -> Result<(), Duration> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = Self::keys(address, username)
            .iter()
            .filter_map(|key| windows.get(key))
            .filter(|(start, count)| now.duration_since(*start) < WINDOW && *count >= self.per_window)
            .map(|(start, _)| WINDOW - now.duration_since(*start))
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed login against the address and the username.
    pub fn record_failure(&self, address: IpAddr, username: &str, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        for key in Self::keys(address, username) {
            let entry = windows.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_limit_wait_for_the_window() {
        let limiter = LoginLimiter::new(3);
        let start = Instant::now();
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(here, "ada", start).is_ok());
            limiter.record_failure(here, "ada", start);
        }
        let wait = limiter.check(here, "bob", start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50), "the address is limited");
        let wait = limiter.check(there, "ada", start).unwrap_err();
        assert_eq!(wait, WINDOW, "the username is limited from anywhere");
        assert!(limiter.check(there, "bob", start).is_ok());
        assert!(limiter.check(here, "ada", start + WINDOW).is_ok(), "a new window starts");
        limiter.record_failure(here, "ada", start + WINDOW);
        assert!(limiter.check(here, "ada", start + WINDOW).is_ok(), "the count restarted");
    }
}
