//! Pinning a thread to its core, its memory to that core's NUMA node, and the locked
//! memory limit io_uring and AF_XDP need.

use std::sync::Once;

use super::Core;

/// `MPOL_PREFERRED` from <linux/mempolicy.h>: allocate on the given node while it has
/// free memory, elsewhere after (never fail an allocation for locality).
const MPOL_PREFERRED: libc::c_int = 1;

/// Binds the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("CPU {cpu} out of range")));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set, and CPU_SET
    // writes a bit below its capacity (checked above).
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling thread's new memory come from `node` first.
pub fn prefer_node_memory(node: usize) -> std::io::Result<()> {
    let bits = 8 * std::mem::size_of::<libc::c_ulong>();
    let mut mask = vec![0 as libc::c_ulong; node / bits + 1];
    mask[node / bits] |= 1 << (node % bits);
    // maxnode counts bits; the kernel reads one less than it is given (man set_mempolicy).
    let maxnode = (mask.len() * bits + 1) as libc::c_ulong;
    // SAFETY: set_mempolicy reads `maxnode - 1` bits from the mask, which holds that many.
    let result = unsafe { libc::syscall(libc::SYS_set_mempolicy, MPOL_PREFERRED, mask.as_ptr(), maxnode) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

static MEMPOLICY_REFUSED: Once = Once::new();

/// Pins the calling thread to its core and prefers its node's memory. A refused memory
/// policy is logged once per process (it is a locality hint: containers often forbid
/// it); a refused pin is the error, since the thread would then share a core silently.
pub fn enter_core(core: Core) -> std::io::Result<()> {
    pin_current_thread(core.cpu)?;
    if let Err(error) = prefer_node_memory(core.node) {
        MEMPOLICY_REFUSED.call_once(|| {
            tracing::warn!(
                error = %error,
                node = core.node,
                "Cannot prefer the data-plane cores' NUMA memory; allocations take any node."
            );
        });
    }
    Ok(())
}

/// What raising `RLIMIT_MEMLOCK` came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemlockLimit {
    /// No limit now.
    Unlimited,
    /// Raised (or already) to this many bytes: the hard limit, which an unprivileged
    /// process cannot pass.
    Bytes(u64),
}

/// Raises the locked-memory limit as far as allowed: to unlimited with CAP_SYS_RESOURCE,
/// else the soft limit up to the hard one. io_uring rings (before kernel 5.12) and AF_XDP
/// UMEM count against it. Logs what it got, with advice when it stays limited.
pub fn raise_memlock() -> MemlockLimit {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return MemlockLimit::Bytes(0);
    }
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads one rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return MemlockLimit::Unlimited;
    }
    let refused = std::io::Error::last_os_error();
    let to_hard = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: as above. Raising the soft limit up to the hard one needs no privilege.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &to_hard) } == 0;
    let bytes = if raised { limit.rlim_max } else { limit.rlim_cur };
    if bytes == libc::RLIM_INFINITY {
        return MemlockLimit::Unlimited;
    }
    tracing::warn!(
        error = %refused,
        memlock_bytes = bytes,
        "Cannot lift the locked-memory limit. If io_uring or AF_XDP fail to start, raise it: \
         LimitMEMLOCK=infinity in the systemd unit, `ulimit -l unlimited`, docker --ulimit memlock=-1, \
         or grant CAP_SYS_RESOURCE (docs/runtime.md)."
    );
    MemlockLimit::Bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cores::topology::{allowed_cpus, thread_cpus};

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpu() {
        let cpu = *allowed_cpus().unwrap().last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            thread_cpus(0).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, [cpu]);
    }

    #[test]
    fn node_zero_memory_can_be_preferred() {
        // Node 0 always exists; a sandbox that forbids the call is not an error of ours.
        let result = std::thread::spawn(|| prefer_node_memory(0)).join().unwrap();
        if let Err(error) = result {
            eprintln!("skipped: set_mempolicy refused here: {error}");
        }
    }

    #[test]
    fn pinning_outside_the_cpu_set_is_an_error() {
        assert!(pin_current_thread(1 << 20).is_err());
    }
}
