//! Values the command line takes that std has no parser for: durations and CPU lists.

use std::time::Duration;

use crate::{Error, Result};

/// Parses `500ms`, `20s`, `2m`, `1h` (also `us` and `ns`); a bare number is seconds.
pub fn parse_duration(value: &str) -> Result<Duration> {
    let invalid = || Error::InvalidDuration { value: value.to_owned() };
    let trimmed = value.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit_secs = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(number * unit_secs).map_err(|_| invalid())
}

/// Parses a CPU list in the kernel's `cpuset` notation: `0,2-3,8`.
pub fn parse_cpu_list(value: &str) -> Result<Vec<usize>> {
    let invalid = || Error::InvalidCpuList { value: value.to_owned() };
    let mut cpus = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let first: usize = first.trim().parse().map_err(|_| invalid())?;
                let last: usize = last.trim().parse().map_err(|_| invalid())?;
                if last < first {
                    return Err(invalid());
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().map_err(|_| invalid())?),
        }
    }
    if cpus.is_empty() {
        return Err(invalid());
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("20 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn cpu_lists_expand_ranges() {
        assert_eq!(parse_cpu_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
    }
}
