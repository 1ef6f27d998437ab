//! Pinning a sender thread to a CPU, so a benchmark's generator stays off the cores the
//! system under test owns.

use std::io;

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let bits_per_set = 8 * size_of::<libc::cpu_set_t>();
    if cpu >= bits_per_set {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} is past {bits_per_set}")));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all-zeroes is the empty set, and
    // CPU_SET was bounds-checked above.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
