//! The XDP program object, built from `ebpf/program` by build.rs, and loading it.

use aya::Ebpf;
use aya::maps::PerCpuArray;
use aya::programs::Xdp;
use killkrill_ebpf_common::{COUNTERS_MAP_NAME, PacketCounter, XDP_PROGRAM_NAME};

/// The compiled XDP object file (ELF), aligned as aya requires.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/killkrill-ebpf"));

/// Why the XDP program could not be loaded or read.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP program was rejected: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("reading the XDP counters failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
}

/// Loads the object and the program into the kernel (the verifier runs here). Needs
/// CAP_BPF (or root); attaching is the caller's business.
pub fn load() -> Result<Ebpf, XdpError> {
    raise_memlock_limit();
    let mut ebpf = Ebpf::load(XDP_OBJECT)?;
    let program: &mut Xdp =
        ebpf.program_mut(XDP_PROGRAM_NAME).ok_or(XdpError::Missing("XDP program"))?.try_into()?;
    program.load()?;
    Ok(ebpf)
}

/// The program's counters, summed over CPUs, indexed by [`PacketCounter`].
pub fn read_counters(ebpf: &Ebpf) -> Result<[u64; PacketCounter::COUNT as usize], XdpError> {
    let map = ebpf.map(COUNTERS_MAP_NAME).ok_or(XdpError::Missing("counter map"))?;
    let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
    let mut totals = [0; PacketCounter::COUNT as usize];
    for counter in PacketCounter::ALL {
        totals[counter as usize] = counters.get(&(counter as u32), 0)?.iter().sum();
    }
    Ok(totals)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones ignore it. Raising it
/// may be refused (no CAP_SYS_RESOURCE), in which case loading says what failed.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we pass and has no other preconditions.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
