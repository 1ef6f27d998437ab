//! Builds the XDP program from source (`ebpf/program`) for bpfel-unknown-none with the
//! nightly toolchain and bpf-linker, and leaves the object in OUT_DIR for
//! `include_bytes_aligned!`. `cargo xtask setup` installs what this needs.
//! See docs/adr/0002-ebpf-build.md for why the build lives here.

use std::path::Path;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let workspace = Path::new(&manifest_dir).parent().context("userspace/ has no parent")?;
    let program_dir = workspace.join("ebpf/program");
    let common_dir = workspace.join("ebpf/common");
    // aya-build watches the program's folder; the shared types live beside it.
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let program_dir = program_dir.to_str().context("ebpf/program path is not UTF-8")?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "killkrill-ebpf", root_dir: program_dir, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )
    .context(
        "building the XDP program failed; run `cargo xtask setup` to install the nightly \
         rust-src component and bpf-linker",
    )
}
