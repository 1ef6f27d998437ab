//! Checks of deploy/: every file parses, every kustomization renders, and each rendered
//! object, image, unit and dashboard follows the project's conventions.

mod containers;
mod files;
mod grafana;
mod kubernetes;
mod systemd;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_path_buf()
}

pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// The release version (`.version`), which labels, image tags and binaries all carry.
pub fn version() -> String {
    let text = std::fs::read_to_string(repo_root().join(".version")).expect(".version is readable");
    text.trim().to_owned()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document in `text` (empty documents left out).
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Files under `dir` (recursively) whose name ends with one of `suffixes`, sorted.
pub fn files_under(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if suffixes.iter().any(|suffix| path.to_string_lossy().ends_with(suffix)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `value[a][b]...`, following mapping keys.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

pub fn seq_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or(&[])
}

/// Panics with every problem found, one per line, so that one run shows them all.
pub fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}: {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
}
