//! The machine's CPUs and NUMA nodes, read from sysfs, narrowed to the CPUs this process
//! may run on (its cpuset: a container's or `taskset`'s limit).

use std::path::Path;

use super::cpulist::parse_cpu_list;

const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";
const NODE_DIR: &str = "/sys/devices/system/node";

/// CPUs, nodes and the process's allowed set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// CPUs the kernel has online.
    pub online: Vec<usize>,
    /// CPUs this process may run on, among the online ones (sorted).
    pub allowed: Vec<usize>,
    /// NUMA node number and its CPUs; empty when the kernel has no NUMA support compiled
    /// in (then every CPU is on node 0).
    pub nodes: Vec<(usize, Vec<usize>)>,
}

impl Topology {
    /// Reads the running machine. Files that cannot be read are left out rather than
    /// failing: a missing node directory means one node, a missing online list means the
    /// allowed set is taken as online.
    pub fn read() -> Self {
        let allowed = allowed_cpus().unwrap_or_default();
        let online = std::fs::read_to_string(ONLINE_CPUS)
            .ok()
            .and_then(|text| parse_cpu_list(&text).ok())
            .unwrap_or_else(|| allowed.clone());
        let node_lists = read_node_lists(Path::new(NODE_DIR));
        let node_texts: Vec<(usize, &str)> = node_lists.iter().map(|(n, text)| (*n, text.as_str())).collect();
        Self::from_parts(online, allowed, &node_texts)
    }

    /// Builds a topology from what the files said: the online CPU numbers, the allowed
    /// CPU numbers, and each node's `cpulist` text (unparseable ones are left out).
    pub fn from_parts(online: Vec<usize>, allowed: Vec<usize>, node_lists: &[(usize, &str)]) -> Self {
        let mut allowed: Vec<usize> = if online.is_empty() {
            allowed
        } else {
            allowed.into_iter().filter(|cpu| online.contains(cpu)).collect()
        };
        allowed.sort_unstable();
        allowed.dedup();
        let mut nodes: Vec<(usize, Vec<usize>)> = node_lists
            .iter()
            .filter_map(|(node, text)| parse_cpu_list(text).ok().map(|cpus| (*node, cpus)))
            .collect();
        nodes.sort_by_key(|(node, _)| *node);
        Self { online, allowed, nodes }
    }

    /// The NUMA node `cpu` belongs to (0 when unknown).
    pub fn node_of(&self, cpu: usize) -> usize {
        self.nodes.iter().find(|(_, cpus)| cpus.contains(&cpu)).map_or(0, |(node, _)| *node)
    }
}

/// `node3` -> 3; other entries of the node directory (`online`, `possible`, ...) -> None.
pub fn node_number(entry_name: &str) -> Option<usize> {
    entry_name.strip_prefix("node")?.parse().ok()
}

fn read_node_lists(dir: &Path) -> Vec<(usize, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let node = node_number(entry.file_name().to_str()?)?;
            let text = std::fs::read_to_string(entry.path().join("cpulist")).ok()?;
            Some((node, text))
        })
        .collect()
}

/// The CPUs this process may run on (`sched_getaffinity`, as it was before the control
/// plane was pinned: see [`super::control::process_cpus`]).
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    super::control::process_cpus()
}

/// The CPUs thread `tid` may run on (0: the calling thread).
pub fn thread_cpus(tid: libc::pid_t) -> std::io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a pointer to a cpu_set_t and its true size.
    let result = unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads a bit of the set; cpu is below its capacity.
    Ok((0..capacity).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_is_narrowed_to_online_and_nodes_are_read() {
        let topology = Topology::from_parts(vec![0, 1, 2, 3], vec![1, 3, 5], &[(1, "2-3\n"), (0, "0-1\n")]);
        assert_eq!(topology.allowed, [1, 3]);
        assert_eq!(topology.nodes, [(0, vec![0, 1]), (1, vec![2, 3])]);
        assert_eq!(topology.node_of(3), 1);
        assert_eq!(topology.node_of(0), 0);
    }

    #[test]
    fn without_numa_every_cpu_is_on_node_zero() {
        let topology = Topology::from_parts(vec![0, 1], vec![0, 1], &[]);
        assert_eq!(topology.node_of(1), 0);
    }

    #[test]
    fn node_directory_entries_are_told_apart() {
        assert_eq!(node_number("node12"), Some(12));
        assert_eq!(node_number("online"), None);
        assert_eq!(node_number("nodex"), None);
    }

    #[test]
    fn this_machine_has_an_allowed_cpu() {
        let topology = Topology::read();
        assert!(!topology.allowed.is_empty(), "{topology:?}");
    }
}
