//! The agent's client of the control plane's live configuration, against a stand-in
//! control plane served by the test: the documents are read with the API key as a bearer
//! token, applied when they change and not when they do not, a bad document or a wrong key
//! changes nothing, and the heartbeat carries the key too. No root needed (no XDP here;
//! netns.rs checks the effect on the maps).

use std::time::Duration;

use serde_json::json;

use super::harness::{AgentProcess, ConfigFile, FakeControlPlane, http, sample, wait_for};

const KEY: &str = "kk_agent-test-key_0123456789";

fn config_text(url: &str) -> String {
    format!(
        "capture_mode = \"socket\"\nhealth_listen = \"127.0.0.1:0\"\ncontrol_plane_url = \"{url}\"\n\
         heartbeat_interval = \"200ms\"\nconfig_poll_interval = \"200ms\"\nnode_name = \"poll-node\"\n\
         deny = [\"192.0.2.0/24\"]\n"
    )
}

fn polls(agent: &AgentProcess, result: &str) -> u64 {
    let (status, body) = http(agent.health, "GET", "/metrics", None);
    assert_eq!(status, 200);
    sample(&body, &format!("killkrill_agent_config_polls_total{{result=\"{result}\"}}"))
        .unwrap_or_else(|| panic!("no {result} sample in {body}"))
}

#[test]
fn the_agent_polls_the_control_plane_with_its_key_and_applies_changes() {
    let control_plane = FakeControlPlane::start(
        KEY,
        json!({"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.1.2.3/32"]}),
        json!({"per_source": {"messages_per_second": 500, "burst": 1000}}),
    );
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());
    config.write(&config_text(&control_plane.url()));
    // The key through KILLKRILL_API_KEY, as a Secret would give it.
    let mut agent = AgentProcess::start_with_env(&config.path, &[("KILLKRILL_API_KEY", KEY)]);

    let applied =
        agent.wait_for_log("Live configuration applied.", Duration::from_secs(10)).expect("applied");
    assert_eq!(applied["source"], "control-plane");
    assert_eq!(applied["allow"], 2, "{applied}");
    assert_eq!(applied["deny"], 1, "the control plane's deny list replaces the file's: {applied}");
    assert_eq!(applied["rate_limit_per_second"], 500);
    assert_eq!(applied["rate_limit_burst"], 1000);
    let authorizations = control_plane.authorizations();
    assert!(!authorizations.is_empty());
    assert!(authorizations.iter().all(|header| header == &format!("Bearer {KEY}")), "{authorizations:?}");
    // The same document again is not applied again.
    wait_for("unchanged polls", || polls(&agent, "unchanged") >= 2);
    assert_eq!(polls(&agent, "applied"), 1);
    assert_eq!(agent.count_logs("Live configuration applied."), 1);
    wait_for("a heartbeat with the key", || !control_plane.heartbeats().is_empty());
    assert_eq!(control_plane.heartbeats()[0]["node_name"], "poll-node");

    // A change is applied on the next poll.
    control_plane
        .serve(json!({"allow": [], "deny": ["10.1.2.3/32", "fd00::/8"]}), json!({"per_source": null}));
    wait_for("the second document applied", || agent.count_logs("Live configuration applied.") == 2);
    let applied = agent.logs("Live configuration applied.")[1].clone();
    assert_eq!(applied["allow"], 0);
    assert_eq!(applied["deny"], 2);
    assert_eq!(applied["rate_limit_per_second"], 0, "null: no limit");

    // A bad document changes nothing and is said once.
    control_plane.serve(json!({"allow": ["10.0.0.0/33"], "deny": []}), json!({"per_source": null}));
    let failure = agent
        .wait_for_log(
            "Reading the control plane's configuration failed; the lists in force stay.",
            Duration::from_secs(10),
        )
        .expect("the bad document is reported");
    assert!(failure["error"].as_str().unwrap().contains("sources.allow"), "{failure}");
    wait_for("failed polls counted", || polls(&agent, "error") >= 3);
    assert_eq!(agent.count_logs("Live configuration applied."), 2);
    assert_eq!(
        agent.count_logs("Reading the control plane's configuration failed; the lists in force stay."),
        1,
        "a lasting failure is logged once"
    );
    let (status, lines) = agent.terminate();
    assert!(status.success(), "{status}");
    // The key never appears in the log.
    assert!(lines.iter().all(|line| !line.to_string().contains(KEY)));
}

#[test]
fn a_wrong_key_is_refused_and_changes_nothing() {
    let control_plane = FakeControlPlane::start(
        KEY,
        json!({"allow": [], "deny": ["10.1.2.3/32"]}),
        json!({"per_source": null}),
    );
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());
    config.write(&format!("{}api_key = \"kk_wrong\"\n", config_text(&control_plane.url())));
    // The key from the file.
    let mut agent = AgentProcess::start(&config.path);
    let failure = agent
        .wait_for_log(
            "Reading the control plane's configuration failed; the lists in force stay.",
            Duration::from_secs(10),
        )
        .expect("the refusal is reported");
    let error = failure["error"].as_str().unwrap();
    assert!(error.contains("401") && error.contains("api_key"), "{failure}");
    wait_for("failed polls counted", || polls(&agent, "error") >= 2);
    assert_eq!(polls(&agent, "applied"), 0);
    assert!(control_plane.authorizations().iter().all(|header| header == "Bearer kk_wrong"));
    assert!(control_plane.heartbeats().is_empty(), "heartbeats with a wrong key are refused too");
    drop(agent);

    // The per-key variable wins over the file.
    let mut agent = AgentProcess::start_with_env(&config.path, &[("KILLKRILL_AGENT__API_KEY", KEY)]);
    assert!(agent.wait_for_log("Live configuration applied.", Duration::from_secs(10)).is_some());
}

#[test]
fn polling_can_be_turned_off() {
    let control_plane =
        FakeControlPlane::start(KEY, json!({"allow": [], "deny": []}), json!({"per_source": null}));
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());
    config.write(&config_text(&control_plane.url()).replace("\"200ms\"\nnode_name", "\"off\"\nnode_name"));
    let mut agent = AgentProcess::start_with_env(&config.path, &[("KILLKRILL_API_KEY", KEY)]);
    assert!(
        agent
            .wait_for_log(
                "config_poll_interval = off: the allow/deny lists and rate limit come from the file.",
                Duration::from_secs(5)
            )
            .is_some()
    );
    wait_for("a heartbeat", || !control_plane.heartbeats().is_empty());
    assert_eq!(polls(&agent, "applied") + polls(&agent, "unchanged") + polls(&agent, "error"), 0);
    assert_eq!(control_plane.config_reads(), 0, "only heartbeats reached the control plane");
}
