//! Which CPU an interface's rx queue interrupts land on, so that the thread reading queue
//! q runs where its packets are already warm in cache.
//!
//! A PCI device lists its MSI vectors in `/sys/class/net/<if>/device/msi_irqs/`; each
//! vector's name in `/proc/interrupts` says which queue it serves (`eth0-TxRx-3`,
//! `virtio0-input.3`, `mlx5_comp3@pci:...`), and `/proc/irq/<n>/smp_affinity_list` where
//! it is delivered. Virtual devices (veth, bridges, loopback) have no vectors: their
//! queue q is served by data-plane core q mod n.

use super::cpulist::parse_cpu_list;

/// IRQ numbers from the names of the entries of a device's `msi_irqs` directory, sorted.
pub fn msi_irq_numbers<'a>(entry_names: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
    let mut irqs: Vec<u32> = entry_names.into_iter().filter_map(|name| name.parse().ok()).collect();
    irqs.sort_unstable();
    irqs
}

/// Each numbered line of `/proc/interrupts` as (IRQ, the action's name: its last column).
pub fn interrupt_names(proc_interrupts: &str) -> Vec<(u32, &str)> {
    proc_interrupts
        .lines()
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let irq = number.trim().parse().ok()?;
            let name = rest.split_whitespace().last()?;
            Some((irq, name))
        })
        .collect()
}

/// The rx queue an interrupt vector serves, from its name; None for vectors that serve
/// no rx queue (configuration, control, transmit only) or carry no number.
pub fn rx_queue_of_vector(name: &str) -> Option<u32> {
    // mlx5 appends the PCI address after '@'.
    let name = name.split('@').next().unwrap_or(name);
    let lower = name.to_ascii_lowercase();
    let not_rx = ["config", "ctrl", "async", "mgmt", "output", "admin"];
    if not_rx.iter().any(|word| lower.contains(word)) {
        return None;
    }
    if lower.contains("tx") && !lower.contains("rx") {
        return None;
    }
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    name[name.len() - digits..].parse().ok()
}

/// The CPUs each of the first `queues` rx queues of `interface` interrupts on, where the
/// files say; None for a queue whose vector is not found (or a virtual device).
pub fn queue_irq_cpus(interface: &str, queues: u32) -> Vec<Option<Vec<usize>>> {
    let mut found = vec![None; queues as usize];
    let dir = format!("/sys/class/net/{interface}/device/msi_irqs");
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    let names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    let irqs = msi_irq_numbers(names.iter().map(String::as_str));
    let interrupts = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    for (irq, name) in interrupt_names(&interrupts) {
        if !irqs.contains(&irq) {
            continue;
        }
        let Some(queue) = rx_queue_of_vector(name) else { continue };
        let Some(slot) = found.get_mut(queue as usize) else { continue };
        let affinity = std::fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list"));
        if let Ok(cpus) = affinity.as_deref().map(parse_cpu_list)
            && let Ok(cpus) = cpus
        {
            *slot = Some(cpus);
        }
    }
    found
}

/// The data-plane core that reads each rx queue: the first data-plane core its interrupt
/// may land on, else (no vector found, or it lands outside the data plane) queue q goes
/// to data-plane core q mod n. `data_cores` must not be empty.
pub fn assign_queue_cores(irq_cpus: &[Option<Vec<usize>>], data_cores: &[usize]) -> Vec<usize> {
    irq_cpus
        .iter()
        .enumerate()
        .map(|(queue, cpus)| {
            cpus.as_deref()
                .and_then(|cpus| cpus.iter().copied().find(|cpu| data_cores.contains(cpu)))
                .unwrap_or(data_cores[queue % data_cores.len()])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "           CPU0       CPU1
  0:         22          0   IO-APIC   2-edge      timer
 24:          0          0   PCI-MSI 49152-edge      virtio0-config
 25:       1200          0   PCI-MSI 49153-edge      virtio0-input.0
 26:          1          0   PCI-MSI 49154-edge      virtio0-output.0
 27:          0       4400   PCI-MSI 49155-edge      virtio0-input.1
 40:          3          3   PCI-MSI 524288-edge      eth1-TxRx-0
 41:          3          3   PCI-MSI 524289-edge      mlx5_comp7@pci:0000:3b:00.0
NMI:          0          0   Non-maskable interrupts
";

    #[test]
    fn vector_names_become_rx_queues() {
        let names = interrupt_names(INTERRUPTS);
        let queues: Vec<(u32, Option<u32>)> =
            names.iter().map(|(irq, name)| (*irq, rx_queue_of_vector(name))).collect();
        assert_eq!(
            queues,
            [(0, None), (24, None), (25, Some(0)), (26, None), (27, Some(1)), (40, Some(0)), (41, Some(7))]
        );
    }

    #[test]
    fn msi_entries_are_numbers_sorted() {
        assert_eq!(msi_irq_numbers(["27", "25", "README", "26"]), [25, 26, 27]);
    }

    #[test]
    fn queues_follow_their_interrupts_onto_data_plane_cores() {
        let irq_cpus = vec![Some(vec![3]), Some(vec![0, 5]), None, Some(vec![0])];
        // Queue 0 lands on 3; queue 1 may land on 0 (not ours) or 5: 5; queue 2 has no
        // vector: 2 mod 3 -> 5; queue 3 lands outside the data plane: 3 mod 3 -> 3.
        assert_eq!(assign_queue_cores(&irq_cpus, &[3, 4, 5]), [3, 5, 5, 3]);
    }

    #[test]
    fn virtual_devices_spread_queues_round_robin() {
        assert_eq!(assign_queue_cores(&[None, None, None], &[0, 1]), [0, 1, 0]);
        assert_eq!(queue_irq_cpus("no-such-interface0", 2), [None, None]);
    }
}
