//! `cargo xtask ui`: builds the web UI (`web/`) into `web/dist`, which the control plane's
//! build script embeds in the binary. `npm ci` runs only when `node_modules` is older than
//! the lock file, and the build only when a source is newer than the last build, so that
//! an unchanged UI does not make cargo rebuild the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use crate::util::{exec, output, workspace_root};

/// The oldest Node.js that the UI's tool chain (Vite 6, playwright-core) supports; Debian
/// 12's own `nodejs` is 18.19 or later.
pub const MIN_NODE: (u32, u32) = (18, 19);

pub fn web_dir() -> PathBuf {
    workspace_root().join("web")
}

/// `node --version` as (major, minor), or None when there is no usable node.
pub fn node_version() -> Option<(u32, u32)> {
    let text = output(Command::new("node").arg("--version")).ok()?;
    parse_node_version(&text)
}

fn parse_node_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn node_is_recent_enough() -> bool {
    node_version().is_some_and(|version| version >= MIN_NODE)
}

/// Builds `web/dist` if anything changed since the last build.
pub fn build() -> anyhow::Result<()> {
    let web = web_dir();
    match node_version() {
        Some(version) if version >= MIN_NODE => {}
        Some((major, minor)) => bail!(
            "the web UI needs Node.js {}.{} or later, found {major}.{minor}; run `cargo xtask setup`",
            MIN_NODE.0,
            MIN_NODE.1
        ),
        None => bail!("the web UI needs Node.js and npm; run `cargo xtask setup`"),
    }
    if dependencies_are_stale(&web) {
        exec(Command::new("npm").current_dir(&web).args(["ci", "--no-audit", "--no-fund"]))?;
    } else {
        eprintln!("xtask ui: node_modules is up to date with package-lock.json");
    }
    if build_is_fresh(&web)? {
        eprintln!("xtask ui: web/dist is newer than every source; not rebuilt");
        return Ok(());
    }
    exec(Command::new("npm").current_dir(&web).args(["run", "build"]))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

/// npm writes `node_modules/.package-lock.json` on every install; older than the lock
/// file (or missing) means the installed packages may not be the locked ones.
fn dependencies_are_stale(web: &Path) -> bool {
    let Some(installed) = modified(&web.join("node_modules/.package-lock.json")) else { return true };
    ["package-lock.json", "package.json"]
        .iter()
        .any(|file| modified(&web.join(file)).is_none_or(|changed| changed > installed))
}

/// Whether `dist/index.html` is newer than every input of the build.
fn build_is_fresh(web: &Path) -> anyhow::Result<bool> {
    let Some(built) = modified(&web.join("dist/index.html")) else { return Ok(false) };
    let mut newest = SystemTime::UNIX_EPOCH;
    for input in ["index.html", "package-lock.json", "package.json", "vite.config.ts", "tsconfig.json"] {
        if let Some(changed) = modified(&web.join(input)) {
            newest = newest.max(changed);
        }
    }
    for folder in ["src", "public"] {
        newest = newest.max(newest_in(&web.join(folder))?);
    }
    Ok(newest < built)
}

fn newest_in(dir: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    if !dir.is_dir() {
        return Ok(newest);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let time = if path.is_dir() { newest_in(&path)? } else { modified(&path).unwrap_or(newest) };
        newest = newest.max(time);
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions_parse_from_node_dash_dash_version() {
        assert_eq!(parse_node_version("v20.20.2\n"), Some((20, 20)));
        assert_eq!(parse_node_version("v18.19.0"), Some((18, 19)));
        assert_eq!(parse_node_version("not a version"), None);
        assert!(Some((18, 20)) >= Some(MIN_NODE) && Some((18, 4)) < Some(MIN_NODE));
    }

    fn write_at(path: &Path, seconds: u64) {
        std::fs::write(path, "x").expect("write");
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        std::fs::File::options().write(true).open(path).expect("open").set_modified(time).expect("set mtime");
    }

    #[test]
    fn a_build_older_than_a_source_is_stale() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let web = dir.path();
        std::fs::create_dir_all(web.join("src/pages")).expect("src");
        std::fs::create_dir_all(web.join("dist")).expect("dist");
        write_at(&web.join("src/pages/Search.tsx"), 1_000);
        write_at(&web.join("dist/index.html"), 2_000);
        assert!(build_is_fresh(web).expect("fresh check"));
        write_at(&web.join("src/pages/Search.tsx"), 3_000);
        assert!(!build_is_fresh(web).expect("fresh check"), "a changed page in a subfolder needs a build");
        assert!(dependencies_are_stale(web), "no node_modules at all is stale");
        std::fs::create_dir_all(web.join("node_modules")).expect("node_modules");
        write_at(&web.join("package-lock.json"), 1_000);
        write_at(&web.join("package.json"), 1_000);
        write_at(&web.join("node_modules/.package-lock.json"), 2_000);
        assert!(!dependencies_are_stale(web));
        write_at(&web.join("package-lock.json"), 3_000);
        assert!(dependencies_are_stale(web), "a newer lock file needs npm ci");
    }
}
