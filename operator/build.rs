//! Exposes the repository's `.version` (the one source of the release version) to the
//! code as `RELEASE_VERSION_FROM_FILE`.
fn main() {
    let version_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../.version");
    println!("cargo:rerun-if-changed={version_file}");
    let version = std::fs::read_to_string(version_file).expect("the repository root has a .version file");
    println!("cargo:rustc-env=RELEASE_VERSION_FROM_FILE={}", version.trim());
}
