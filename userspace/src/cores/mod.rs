//! Thread per core: which CPUs the data plane runs on, what NUMA node each is on, which
//! core reads which rx queue, and the runtime each core runs (docs/runtime.md).

pub mod control;
pub mod cpulist;
pub mod irq;
pub mod pin;
pub mod shard;
pub mod topology;

use std::str::FromStr;

pub use control::{control_plane_cpus, pin_control_plane};
pub use cpulist::{format_cpu_list, parse_cpu_list};
pub use topology::Topology;

/// A data-plane core: the CPU and its NUMA node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Core {
    pub cpu: usize,
    pub node: usize,
}

/// `dataplane.cores`: which CPUs run the data plane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CoreSelection {
    /// Every allowed CPU but the first, which is left to the control plane (all of them
    /// when there is only one).
    #[default]
    Auto,
    /// These CPUs (sorted, distinct, not empty).
    List(Vec<usize>),
}

impl FromStr for CoreSelection {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(CoreSelection::Auto);
        }
        let cpus = parse_cpu_list(text)?;
        if cpus.is_empty() {
            return Err("an empty CPU list (write \"auto\" or CPUs such as \"2-5,8\")".to_owned());
        }
        Ok(CoreSelection::List(cpus))
    }
}

impl std::fmt::Display for CoreSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreSelection::Auto => f.write_str("auto"),
            CoreSelection::List(cpus) => f.write_str(&format_cpu_list(cpus)),
        }
    }
}

/// The data-plane CPUs for `selection` among the `allowed` ones (sorted). A list that
/// names a CPU outside the allowed set is an error naming those CPUs.
pub fn choose_cores(selection: &CoreSelection, allowed: &[usize]) -> Result<Vec<usize>, String> {
    match selection {
        CoreSelection::Auto if allowed.len() >= 2 => Ok(allowed[1..].to_vec()),
        CoreSelection::Auto => Ok(allowed.to_vec()),
        CoreSelection::List(cpus) => {
            let outside: Vec<usize> = cpus.iter().copied().filter(|cpu| !allowed.contains(cpu)).collect();
            if outside.is_empty() {
                Ok(cpus.clone())
            } else {
                Err(format!(
                    "CPUs {} are not among those this process may use ({}; see `taskset -cp $$` or the container's cpuset)",
                    format_cpu_list(&outside),
                    format_cpu_list(allowed)
                ))
            }
        }
    }
}

/// `dataplane.runtime`: what runs on each data-plane core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// glommio when io_uring works here, else pinned threads (the reason is logged).
    #[default]
    Auto,
    /// glommio, or start-up fails.
    Glommio,
    /// Pinned plain threads with recvmmsg and poll.
    Threads,
}

impl FromStr for RuntimeChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(RuntimeChoice::Auto),
            "glommio" => Ok(RuntimeChoice::Glommio),
            "threads" => Ok(RuntimeChoice::Threads),
            _ => Err(format!("`{text}` is not a runtime (auto, glommio or threads)")),
        }
    }
}

/// The runtime the data plane got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Glommio,
    Threads,
}

impl RuntimeKind {
    pub const fn label(self) -> &'static str {
        match self {
            RuntimeKind::Glommio => "glommio",
            RuntimeKind::Threads => "threads",
        }
    }
}

/// What the data plane runs on, for the log, `/api/v1/stats` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub kind: RuntimeKind,
    /// Why `auto` did not get glommio; None when it did, or threads were asked for.
    pub fallback_reason: Option<String>,
    pub cores: Vec<Core>,
    /// The CPUs the control plane runs on: the allowed ones the data plane does not use
    /// (all of them when it uses every one). `killkrill serve` pins its threads there.
    pub control_plane_cpus: Vec<usize>,
}

/// The data-plane cores and their runtime, settled once at start-up.
#[derive(Clone, Debug)]
pub struct CorePlan {
    status: RuntimeStatus,
}

impl CorePlan {
    /// Reads the topology, picks the cores, raises the locked-memory limit and settles the
    /// runtime.
    pub fn settle(selection: &CoreSelection, runtime: RuntimeChoice) -> crate::Result<Self> {
        let topology = Topology::read();
        let cpus = choose_cores(selection, &topology.allowed)
            .map_err(|message| crate::Error::Cores { setting: "dataplane.cores", message })?;
        let cores: Vec<Core> = cpus.iter().map(|&cpu| Core { cpu, node: topology.node_of(cpu) }).collect();
        let first = *cores.first().ok_or_else(|| crate::Error::Cores {
            setting: "dataplane.cores",
            message: "no CPU is allowed to this process".to_owned(),
        })?;
        pin::raise_memlock();
        let (kind, fallback_reason) = shard::resolve_runtime(runtime, first)
            .map_err(|message| crate::Error::Cores { setting: "dataplane.runtime", message })?;
        let control_plane_cpus = control_plane_cpus(&topology.allowed, &cpus);
        Ok(Self { status: RuntimeStatus { kind, fallback_reason, cores, control_plane_cpus } })
    }

    /// A plan for tests and callers that decided already.
    pub fn from_status(status: RuntimeStatus) -> Self {
        Self { status }
    }

    pub fn status(&self) -> &RuntimeStatus {
        &self.status
    }

    pub fn kind(&self) -> RuntimeKind {
        self.status.kind
    }

    pub fn cores(&self) -> &[Core] {
        &self.status.cores
    }

    /// The `index`th core, round robin (listeners that run one thread each spread over
    /// the data-plane cores).
    pub fn core_for(&self, index: usize) -> Core {
        self.status.cores[index % self.status.cores.len()]
    }

    /// The core that reads each of `queues` rx queues of `interface` (see [`irq`]).
    pub fn queue_cores(&self, interface: &str, queues: u32) -> Vec<Core> {
        let cpus: Vec<usize> = self.status.cores.iter().map(|core| core.cpu).collect();
        irq::assign_queue_cores(&irq::queue_irq_cpus(interface, queues), &cpus)
            .into_iter()
            .map(|cpu| {
                self.status.cores.iter().copied().find(|core| core.cpu == cpu).unwrap_or(self.core_for(0))
            })
            .collect()
    }
}

/// The thread name for `listener` on `core`, e.g. `syslog-udp@3` (Linux keeps 15 bytes).
pub fn thread_name(listener: &str, core: Core) -> String {
    format!("{listener}@{}", core.cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_leaves_the_first_cpu_to_the_control_plane() {
        assert_eq!(choose_cores(&CoreSelection::Auto, &[0, 1, 2, 3]).unwrap(), [1, 2, 3]);
        assert_eq!(choose_cores(&CoreSelection::Auto, &[4, 6]).unwrap(), [6]);
        assert_eq!(choose_cores(&CoreSelection::Auto, &[2]).unwrap(), [2]);
    }

    #[test]
    fn a_list_must_stay_inside_the_allowed_cpus() {
        let list: CoreSelection = "0-1".parse().unwrap();
        assert_eq!(choose_cores(&list, &[0, 1]).unwrap(), [0, 1]);
        let error = choose_cores(&"1-3,8".parse().unwrap(), &[0, 1, 2]).unwrap_err();
        assert!(error.contains("CPUs 3,8 are not among") && error.contains("(0-2;"), "{error}");
    }

    #[test]
    fn selections_and_runtimes_parse_or_explain() {
        assert_eq!("AUTO".parse::<CoreSelection>().unwrap(), CoreSelection::Auto);
        assert_eq!("2-3,5".parse::<CoreSelection>().unwrap().to_string(), "2-3,5");
        assert!("".parse::<CoreSelection>().unwrap_err().contains("empty"));
        assert!("two".parse::<CoreSelection>().is_err());
        assert_eq!("threads".parse::<RuntimeChoice>().unwrap(), RuntimeChoice::Threads);
        assert!("tokio".parse::<RuntimeChoice>().unwrap_err().contains("auto, glommio or threads"));
    }

    #[test]
    fn listeners_spread_round_robin_and_names_say_the_core() {
        let plan = CorePlan::from_status(RuntimeStatus {
            kind: RuntimeKind::Threads,
            fallback_reason: None,
            cores: vec![Core { cpu: 2, node: 0 }, Core { cpu: 5, node: 1 }],
            control_plane_cpus: vec![0, 1, 3, 4],
        });
        assert_eq!(plan.core_for(3), Core { cpu: 5, node: 1 });
        assert_eq!(thread_name("syslog-udp", plan.core_for(0)), "syslog-udp@2");
        assert_eq!(
            plan.queue_cores("no-such-interface0", 3).iter().map(|c| c.cpu).collect::<Vec<_>>(),
            [2, 5, 2]
        );
    }
}
