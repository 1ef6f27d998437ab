//! The XDP program object, built from `ebpf/program` by build.rs.

/// The compiled XDP object file (ELF), aligned as aya requires.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/killkrill-ebpf"));
