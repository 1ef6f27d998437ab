//! The control plane's CPUs: the ones the process may use that the data plane does not
//! (issue 5: "the rest run the control plane"), and pinning the process's start-up thread
//! to them so that every thread it starts afterwards (tokio workers and blocking threads,
//! the batch writer, encoders, SQLite's workers) inherits that set. Data-plane threads
//! then pin themselves to their own core ([`super::pin::enter_core`]).

use std::sync::OnceLock;

use super::cpulist::format_cpu_list;
use super::topology::thread_cpus;
use super::{CoreSelection, choose_cores};

/// The CPUs the process was allowed before the control plane was pinned: after that the
/// start-up thread's own affinity no longer says what the data plane may use.
static PROCESS_CPUS: OnceLock<Vec<usize>> = OnceLock::new();

/// The CPUs this process may use: those it had when [`pin_control_plane`] ran (its
/// cpuset, `taskset`'s limit), or the calling thread's affinity before that.
pub fn process_cpus() -> std::io::Result<Vec<usize>> {
    match PROCESS_CPUS.get() {
        Some(cpus) => Ok(cpus.clone()),
        None => thread_cpus(0),
    }
}

/// The control plane's CPUs: the `allowed` ones minus the data-plane ones, or all the
/// allowed ones when that leaves none (one CPU, or a data plane on every CPU).
pub fn control_plane_cpus(allowed: &[usize], data_plane: &[usize]) -> Vec<usize> {
    let rest: Vec<usize> = allowed.iter().copied().filter(|cpu| !data_plane.contains(cpu)).collect();
    if rest.is_empty() { allowed.to_vec() } else { rest }
}

/// Binds the calling thread to `cpus` (threads it starts later inherit the set).
pub fn pin_current_thread_to(cpus: &[usize]) -> std::io::Result<()> {
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpus.is_empty() || cpus.iter().any(|&cpu| cpu >= capacity) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("CPU list `{}` is empty or out of range", format_cpu_list(cpus)),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set, and CPU_SET
    // writes bits below its capacity (checked above).
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread (call it from `main` before any runtime starts) to the control
/// plane's CPUs for `selection`, remembering the process's CPUs first. Returns the
/// control plane's CPUs; an error (a selection outside the allowed CPUs, a refused
/// affinity) leaves the thread as it was, and the data plane's start-up reports a bad
/// selection in its own words.
pub fn pin_control_plane(selection: &CoreSelection) -> Result<Vec<usize>, String> {
    let allowed = process_cpus().map_err(|error| format!("cannot read the allowed CPUs: {error}"))?;
    let _ = PROCESS_CPUS.set(allowed.clone());
    let allowed = super::Topology::read().allowed;
    let data_plane = choose_cores(selection, &allowed)?;
    let control = control_plane_cpus(&allowed, &data_plane);
    pin_current_thread_to(&control)
        .map_err(|error| format!("cannot pin to CPUs {}: {error}", format_cpu_list(&control)))?;
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_plane_gets_what_the_data_plane_leaves() {
        assert_eq!(control_plane_cpus(&[0, 1, 2, 3], &[1, 2, 3]), [0]);
        assert_eq!(control_plane_cpus(&[0, 1, 2, 3], &[0]), [1, 2, 3]);
        assert_eq!(control_plane_cpus(&[4, 6], &[4, 6]), [4, 6]);
        assert_eq!(control_plane_cpus(&[2], &[2]), [2]);
    }

    #[test]
    fn a_thread_pinned_to_a_set_runs_only_there() {
        let allowed = thread_cpus(0).unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread_to(&allowed[..1]).unwrap();
            let child = std::thread::spawn(|| thread_cpus(0).unwrap()).join().unwrap();
            (thread_cpus(0).unwrap(), child)
        })
        .join()
        .unwrap();
        assert_eq!(seen.0, seen.1, "a thread started by a pinned thread inherits its set");
        assert_eq!(seen.0.len(), 1);
    }

    #[test]
    fn empty_or_huge_sets_are_refused() {
        assert!(pin_current_thread_to(&[]).is_err());
        assert!(pin_current_thread_to(&[1 << 20]).is_err());
    }
}
