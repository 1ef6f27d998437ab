//! Source prefixes (CIDR) for the allow and deny lists, and the rate limit, checked in
//! user space so the program only ever sees values it can use.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use killkrill_ebpf_common::{MAX_BURST, MAX_RATE_PER_SECOND, NANO_TOKENS_PER_TOKEN, XdpSettings};

use super::XdpError;

/// An IPv4 or IPv6 source prefix, host bits cleared: `10.0.0.0/8`, `2001:db8::/32`, or a
/// single address (`192.0.2.7` means `/32`, an IPv6 address `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourcePrefix {
    address: IpAddr,
    prefix_len: u8,
}

impl SourcePrefix {
    /// The network address (host bits cleared).
    pub fn address(&self) -> IpAddr {
        self.address
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// True when `address` lies inside the prefix (same family).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let bits = u32::from(address) & mask_v4(self.prefix_len);
                bits == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let bits = u128::from(address) & mask_v6(self.prefix_len);
                bits == u128::from(network)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0)
}

fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0)
}

impl FromStr for SourcePrefix {
    type Err = XdpError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            |reason: &str| XdpError::InvalidPrefix { text: text.to_owned(), reason: reason.to_owned() };
        let trimmed = text.trim();
        let (address, prefix_len) = match trimmed.split_once('/') {
            Some((address, prefix_len)) => (address, Some(prefix_len)),
            None => (trimmed, None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            invalid("not an IPv4 or IPv6 address (expected e.g. 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)")
        })?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_len {
            None => max,
            Some(length) => {
                let length: u8 = length.parse().map_err(|_| invalid("the prefix length is not a number"))?;
                if length > max {
                    return Err(invalid(&format!("the prefix length {length} exceeds {max}")));
                }
                length
            }
        };
        // 10.1.2.3/8 means 10.0.0.0/8, as in ip(8); the trie only looks at the prefix bits.
        let address = match address {
            IpAddr::V4(address) => IpAddr::V4((u32::from(address) & mask_v4(prefix_len)).into()),
            IpAddr::V6(address) => IpAddr::V6((u128::from(address) & mask_v6(prefix_len)).into()),
        };
        Ok(Self { address, prefix_len })
    }
}

impl fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Parses a list of CIDR strings; the first bad one is the error.
pub fn parse_prefixes<S: AsRef<str>>(texts: &[S]) -> Result<Vec<SourcePrefix>, XdpError> {
    texts.iter().map(|text| text.as_ref().parse()).collect()
}

/// A per-source token bucket: `per_second` messages a second on average, bursts of up to
/// `burst` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u64,
    pub burst: u64,
}

impl RateLimit {
    pub(super) fn validate(&self) -> Result<(), XdpError> {
        if self.per_second == 0 || self.per_second > MAX_RATE_PER_SECOND {
            return Err(XdpError::InvalidRateLimit(format!(
                "the rate must be between 1 and {MAX_RATE_PER_SECOND} messages per second, not {}",
                self.per_second
            )));
        }
        if self.burst == 0 || self.burst > MAX_BURST {
            return Err(XdpError::InvalidRateLimit(format!(
                "the burst must be between 1 and {MAX_BURST} messages, not {}",
                self.burst
            )));
        }
        Ok(())
    }

    /// Writes the limit into the program's settings.
    pub(super) fn apply(limit: Option<RateLimit>, settings: &mut XdpSettings) {
        match limit {
            Some(limit) => {
                settings.rate_per_second = limit.per_second;
                settings.burst = limit.burst;
                settings.fill_ns = (limit.burst * NANO_TOKENS_PER_TOKEN).div_ceil(limit.per_second);
            }
            None => {
                settings.rate_per_second = 0;
                settings.burst = 0;
                settings.fill_ns = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_with_host_bits_cleared() {
        let prefix: SourcePrefix = "10.1.2.3/8".parse().unwrap();
        assert_eq!(prefix.to_string(), "10.0.0.0/8");
        assert!(prefix.contains("10.200.0.1".parse().unwrap()));
        assert!(!prefix.contains("11.0.0.1".parse().unwrap()));
        assert_eq!("192.0.2.7".parse::<SourcePrefix>().unwrap().to_string(), "192.0.2.7/32");
        assert_eq!("2001:db8::1/32".parse::<SourcePrefix>().unwrap().to_string(), "2001:db8::/32");
        assert_eq!("::1".parse::<SourcePrefix>().unwrap().prefix_len(), 128);
        assert_eq!("0.0.0.0/0".parse::<SourcePrefix>().unwrap().prefix_len(), 0);
        assert!("0.0.0.0/0".parse::<SourcePrefix>().unwrap().contains("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn bad_prefixes_say_what_is_wrong() {
        let cases = [
            ("10.0.0.0/33", "the prefix length 33 exceeds 32"),
            ("2001:db8::/129", "the prefix length 129 exceeds 128"),
            ("10.0.0.0/x", "not a number"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("", "not an IPv4 or IPv6 address"),
            ("example.com/8", "not an IPv4 or IPv6 address"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<SourcePrefix>().unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains(&format!("'{text}'")), "{text}: the error names the input: {error}");
        }
        let error = parse_prefixes(&["10.0.0.0/8", "bad"]).unwrap_err().to_string();
        assert!(error.contains("'bad'"), "{error}");
    }

    #[test]
    fn rate_limits_out_of_range_are_refused() {
        assert!(RateLimit { per_second: 0, burst: 1 }.validate().is_err());
        assert!(RateLimit { per_second: 1, burst: 0 }.validate().is_err());
        assert!(RateLimit { per_second: MAX_RATE_PER_SECOND + 1, burst: 1 }.validate().is_err());
        assert!(RateLimit { per_second: 1, burst: MAX_BURST + 1 }.validate().is_err());
        RateLimit { per_second: MAX_RATE_PER_SECOND, burst: MAX_BURST }.validate().unwrap();
        let mut settings = XdpSettings::default();
        RateLimit::apply(Some(RateLimit { per_second: 3, burst: 10 }), &mut settings);
        assert_eq!(settings.fill_ns, 3_333_333_334, "10 tokens at 3/s take 3.33 s, rounded up");
        // The program multiplies at most fill_ns by the rate: that must fit in u64.
        RateLimit::apply(Some(RateLimit { per_second: 1, burst: MAX_BURST }), &mut settings);
        assert!(settings.fill_ns.checked_mul(settings.rate_per_second).is_some());
        RateLimit::apply(
            Some(RateLimit { per_second: MAX_RATE_PER_SECOND, burst: MAX_BURST }),
            &mut settings,
        );
        assert!(settings.fill_ns.checked_mul(settings.rate_per_second).is_some());
        RateLimit::apply(None, &mut settings);
        assert_eq!(settings.rate_per_second, 0);
    }
}
