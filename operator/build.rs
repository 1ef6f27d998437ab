//! Exposes the repository's `.version` (the one source of the release version) to the
//! code as `RELEASE_VERSION_FROM_FILE`.
fn main() {
    // Read when the script runs, not baked in when it is compiled: a target directory
    // built in another checkout (a CI cache, a copied `target/`) then still finds this one.
    let manifest_dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let version_file = manifest_dir.join("../.version");
    println!("cargo:rerun-if-changed={}", version_file.display());
    let version = std::fs::read_to_string(&version_file).expect("the repository root has a .version file");
    println!("cargo:rustc-env=RELEASE_VERSION_FROM_FILE={}", version.trim());
}
