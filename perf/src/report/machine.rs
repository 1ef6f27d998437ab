//! The machine line of a report: results are meaningless without the hardware they ran on.

/// Cores, CPU model and kernel of the machine a scenario ran on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MachineInfo {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl MachineInfo {
    /// Reads `/proc/cpuinfo` and `/proc/sys/kernel/osrelease`; unknown fields say so rather
    /// than failing a finished benchmark's report.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: cpu_model(&cpuinfo).unwrap_or("unknown").to_owned(),
            kernel,
        }
    }

    /// `16 cores, AMD EPYC 9454 48-Core Processor, Linux 6.8.0`
    pub fn describe(&self) -> String {
        format!("{} cores, {}, Linux {}", self.cores, self.cpu_model, self.kernel)
    }
}

/// x86 names the model `model name`; arm64 kernels often give only `CPU part`, so fall
/// back to the first `Hardware` or `Processor` line.
fn cpu_model(cpuinfo: &str) -> Option<&str> {
    ["model name", "Hardware", "Processor"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == *key && !value.trim().is_empty()).then(|| value.trim())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_comes_from_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n";
        assert_eq!(cpu_model(cpuinfo), Some("Intel(R) Xeon(R) Gold 6338"));
        assert_eq!(cpu_model(""), None);
        assert!(MachineInfo::detect().cores > 0);
    }
}
