//! The kernel's CPU list format ("0-3,8,10-11"), as sysfs, procfs and `taskset -c` write it.

/// Highest CPU number accepted: far above any machine Linux runs on today, low enough that
/// a typo such as "0-99999999" is an error rather than a huge allocation.
pub const MAX_CPU: usize = 8191;

/// Parses a CPU list into sorted, distinct CPU numbers. Whitespace around the text (sysfs
/// files end in a newline) is ignored; an empty list is valid and empty.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Ok(cpus);
    }
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (parse_cpu(first, text)?, parse_cpu(last, text)?),
            None => {
                let cpu = parse_cpu(part, text)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("`{part}` in `{text}` is a range that runs backwards"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn parse_cpu(number: &str, whole: &str) -> Result<usize, String> {
    let number = number.trim();
    match number.parse::<usize>() {
        Ok(cpu) if cpu <= MAX_CPU => Ok(cpu),
        Ok(_) => Err(format!("CPU {number} in `{whole}` is above {MAX_CPU}")),
        Err(_) => {
            Err(format!("`{number}` in `{whole}` is not a CPU number (expected a list such as \"2-5,8\")"))
        }
    }
}

/// Writes sorted CPU numbers back in the short form ("0-3,8").
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let first = cpus[index];
        let mut last = first;
        while index + 1 < cpus.len() && cpus[index + 1] == last + 1 {
            index += 1;
            last = cpus[index];
        }
        parts.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_singles_and_newline_are_read() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n").unwrap(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("5").unwrap(), [5]);
        assert_eq!(parse_cpu_list(" 2 - 3 , 1 ").unwrap(), [1, 2, 3]);
    }

    #[test]
    fn empty_list_is_empty_and_duplicates_collapse() {
        assert!(parse_cpu_list("\n").unwrap().is_empty());
        assert_eq!(parse_cpu_list("1,1,0-1").unwrap(), [0, 1]);
    }

    #[test]
    fn bad_lists_are_errors_that_quote_the_text() {
        for bad in ["a", "3-1", "1-", ",", "0-99999999", "2;3"] {
            let error = parse_cpu_list(bad).unwrap_err();
            assert!(error.contains(bad.trim_matches(',')) || error.contains("CPU"), "{bad}: {error}");
        }
    }

    #[test]
    fn format_is_the_short_form_and_round_trips() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
        assert_eq!(parse_cpu_list(&format_cpu_list(&[1, 4, 5])).unwrap(), [1, 4, 5]);
    }
}
