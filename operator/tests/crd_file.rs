//! The checked-in CRD must be what the binary prints.

use std::process::Command;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crd/ingestors.killkrill.io.yaml");

#[test]
fn checked_in_crd_matches_killkrill_operator_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_killkrill-operator"))
        .arg("crd")
        .output()
        .expect("run killkrill-operator crd");
    assert!(
        output.status.success(),
        "killkrill-operator crd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("the CRD is UTF-8");
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        printed == checked_in,
        "deploy/crd/ingestors.killkrill.io.yaml is not what `killkrill-operator crd` prints.\n\
         Regenerate it from the repository root with:\n    \
         cargo run -p killkrill-operator -- crd > deploy/crd/ingestors.killkrill.io.yaml\n\
         and commit the result.{}",
        first_difference(&checked_in, &printed)
    );
}

fn first_difference(expected: &str, actual: &str) -> String {
    let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
    match line {
        Some(index) => format!(
            "\nFirst difference at line {}:\n  file:    {}\n  printed: {}",
            index + 1,
            expected.lines().nth(index).unwrap_or_default(),
            actual.lines().nth(index).unwrap_or_default()
        ),
        None => format!(
            "\nThe file has {} lines, the output {}.",
            expected.lines().count(),
            actual.lines().count()
        ),
    }
}

#[test]
fn crd_has_the_status_subresource_and_the_group_and_version() {
    let crd: serde_json::Value =
        serde_yaml::from_str(&killkrill_operator::crd::crd_yaml().expect("render the CRD")).expect("YAML");
    assert_eq!(crd["metadata"]["name"], "ingestors.killkrill.io");
    assert_eq!(crd["spec"]["group"], "killkrill.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object(), "status subresource missing: {version}");
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let protocols = &spec["properties"]["listeners"]["items"]["properties"]["protocol"]["enum"];
    assert_eq!(protocols, &serde_json::json!(["syslog-udp", "syslog-tcp", "syslog-tls", "statsd", "influx"]));
    assert_eq!(spec["properties"]["captureMode"]["enum"], serde_json::json!(["auto", "xdp", "socket"]));
}

#[test]
fn the_example_in_docs_operator_md_is_a_valid_ingestor() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operator.md"))
        .expect("docs/operator.md");
    let example = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml))
        .find(|yaml| yaml.contains("kind: Ingestor"))
        .expect("an Ingestor example in docs/operator.md");
    let ingestor: killkrill_operator::crd::Ingestor =
        serde_yaml::from_str(example).expect("the example parses as an Ingestor");
    killkrill_operator::validate::validate(&ingestor.spec).expect("the example is valid");
    assert_eq!(ingestor.spec.listeners.len(), 3);
    assert_eq!(ingestor.spec.tolerations.len(), 1);
}
