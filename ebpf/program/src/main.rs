//! The Killkrill XDP program.
//!
//! It steers UDP datagrams for configured ports to the AF_XDP socket of their rx queue,
//! after the per-source allow/deny lists and rate limit, and passes everything else to the
//! kernel stack untouched. Every header read is bounds-checked against `data_end`; anything
//! short or odd is passed and counted, never dropped: the kernel stack remains the safety
//! net. Only the policy (deny lists, rate limit) drops, and counts what it drops. See
//! docs/capture.md.
//!
//! On the host (`cargo clippy --workspace`, `cargo test --workspace`) this crate compiles
//! to an empty binary; see docs/adr/0002-ebpf-build.md.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves no panic path is reachable; this only satisfies the compiler.
    loop {}
}
