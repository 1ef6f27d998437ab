//! Every YAML file parses, and every kustomization names files and folders that exist.

use std::path::Path;

use super::{assert_no_problems, deploy_dir, files_under, read, seq_at, str_at, yaml_documents};

/// Kustomization fields that list files or folders (the kustomize v2.0.3 dialect, plus
/// `components` and `patches` in case a newer one slips in: they are checked too).
const FILE_LISTS: &[&str] = &["resources", "bases", "components", "patchesStrategicMerge", "crds"];

#[test]
fn every_yaml_file_under_deploy_parses_and_objects_have_kind_and_name() {
    let files = files_under(&deploy_dir(), &[".yaml", ".yml"]);
    assert!(files.len() > 20, "expected the kustomize tree under deploy/, found {files:?}");
    let mut problems = Vec::new();
    for file in &files {
        let documents = match yaml_documents(&read(file)) {
            Ok(documents) => documents,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        if documents.is_empty() {
            problems.push(format!("{}: no YAML document", file.display()));
        }
        for document in documents.iter().filter(|d| d.get("apiVersion").is_some()) {
            if str_at(document, &["kind"]).is_none() {
                problems.push(format!("{}: an object without kind", file.display()));
            }
            let is_kustomization = str_at(document, &["kind"]) == Some("Kustomization");
            if !is_kustomization && str_at(document, &["metadata", "name"]).is_none() {
                problems.push(format!("{}: an object without metadata.name", file.display()));
            }
        }
    }
    assert_no_problems("YAML under deploy/", &problems);
}

/// What a kustomization lists that is missing, or in a field where kustomize v2.0.3 does
/// not accept it (folders only under `bases`, files elsewhere).
fn kustomization_reference_problems(dir: &Path, kustomization: &serde_yaml::Value) -> Vec<String> {
    let mut problems = Vec::new();
    for field in FILE_LISTS {
        for entry in seq_at(kustomization, &[field]) {
            let Some(entry) = entry.as_str() else {
                problems.push(format!("{}: {field} has a non-string entry", dir.display()));
                continue;
            };
            let target = dir.join(entry);
            let is_folder_field = *field == "bases" || *field == "components";
            if is_folder_field {
                if !target.join("kustomization.yaml").is_file() {
                    problems
                        .push(format!("{}: {field} entry {entry} has no kustomization.yaml", dir.display()));
                }
            } else if !target.is_file() {
                problems.push(format!("{}: {field} entry {entry} is not a file", dir.display()));
            }
        }
    }
    for patch in seq_at(kustomization, &["patches"]) {
        if let Some(path) = str_at(patch, &["path"])
            && !dir.join(path).is_file()
        {
            problems.push(format!("{}: patch {path} is not a file", dir.display()));
        }
    }
    problems
}

#[test]
fn every_kustomization_lists_files_and_folders_that_exist() {
    let kustomizations = files_under(&deploy_dir(), &["kustomization.yaml"]);
    assert!(
        kustomizations.len() >= 7,
        "expected base, its parts, monitoring, crd and two overlays: {kustomizations:?}"
    );
    let mut problems = Vec::new();
    for file in &kustomizations {
        let documents = yaml_documents(&read(file)).expect("parses (checked above)");
        let dir = file.parent().expect("a file has a folder");
        for document in &documents {
            problems.extend(kustomization_reference_problems(dir, document));
        }
    }
    assert_no_problems("kustomizations", &problems);
}

#[test]
fn a_missing_resource_or_a_folder_listed_as_a_file_is_reported() {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::create_dir(dir.path().join("part")).expect("folder");
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str("resources: [absent.yaml, part]\nbases: [elsewhere]\n").expect("YAML");
    let problems = kustomization_reference_problems(dir.path(), &kustomization);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("absent.yaml"));
    assert!(problems[1].contains("part is not a file"));
    assert!(problems[2].contains("elsewhere has no kustomization.yaml"));
}
