//! `POST /api/v1/logs` through the real binary: accepted means committed, so a kill -9
//! right after an answer loses nothing that was answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::harness::Appliance;

fn post(appliance: &Appliance, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
    let response = appliance
        .client()
        .post(appliance.url("/api/v1/logs"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn posted_arrays_and_json_lines_are_stored_with_their_fields() {
    let appliance = Appliance::start();
    let array = json!([
        {"message": "postword first", "hostname": "api-1", "app_name": "billing", "severity": "warning",
         "facility": "local3", "timestamp": "2024-05-01T12:00:00.250Z", "structured_data": "[req id=\"7\"]"},
        {"raw": "<11>1 2024-05-01T12:00:01Z api-2 auth - - - postword raw frame"},
    ]);
    let (status, body) = post(&appliance, array.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    let (status, body) =
        post(&appliance, "{\"message\":\"postword line one\"}\n{\"message\":\"postword line two\"}\n");
    assert_eq!((status, body["accepted"].clone()), (200, json!(2)));

    // Answered means stored: visible at once, no waiting.
    let (_, found) = appliance.get_json("/api/v1/logs?q=postword&order=asc");
    let logs = found["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 4, "{found}");
    assert_eq!(logs[0]["hostname"], "api-1");
    assert_eq!(logs[0]["app_name"], "billing");
    assert_eq!((logs[0]["severity"].as_u64(), logs[0]["facility"].as_u64()), (Some(4), Some(19)));
    assert_eq!(logs[0]["timestamp"], "2024-05-01T12:00:00.250Z");
    assert_eq!(logs[0]["structured_data"], "[req id=\"7\"]");
    assert_eq!(logs[0]["listener"], "http");
    assert!(logs[0]["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(logs[1]["hostname"], "api-2");
    assert_eq!(logs[1]["message"], "postword raw frame");
}

#[test]
fn bad_and_oversized_bodies_are_refused_whole() {
    let appliance = Appliance::start();
    let (status, body) = post(&appliance, "{\"message\":\"okword\"}\n{\"message\":\"x\",\"severity\":12}\n");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("message 2: severity"), "{body}");
    let (status, _) = post(&appliance, "not json");
    assert_eq!(status, 400);
    let (status, _) = post(&appliance, "[]");
    assert_eq!(status, 400);
    let huge = format!("{{\"message\":\"{}\"}}", "x".repeat(17 << 20));
    let (status, body) = post(&appliance, huge);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    // Nothing of a refused request was stored, not even its valid first line.
    let (_, found) = appliance.get_json("/api/v1/logs?q=okword");
    assert_eq!(found["count"], 0);
}

#[test]
fn kill_9_loses_nothing_that_was_acknowledged() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let appliance = Appliance::start_in(&data_dir, &[]);
    let url = appliance.url("/api/v1/logs");
    let client = appliance.client();
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            // At most 190 requests (9,500 messages: one search page holds them all).
            for request in 0..190 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                let body: String =
                    (0..50).map(|n| format!("{{\"message\":\"ackword r{request}m{n}\"}}\n")).collect();
                match client.post(&url).body(body).send() {
                    Ok(response) if response.status().is_success() => acknowledged.push(request),
                    // Killed mid-request: not acknowledged, may or may not be stored.
                    _ => break,
                }
            }
            acknowledged
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(appliance); // SIGKILL, while requests are in flight
    stop.store(true, Ordering::Relaxed);
    let acknowledged = poster.join().unwrap();
    assert!(acknowledged.len() >= 5, "only {} requests answered before the kill", acknowledged.len());

    let restarted = Appliance::start_in(&data_dir, &[]);
    let stored = restarted.wait_for_logs("q=ackword&limit=10000", acknowledged.len() * 50);
    let messages: std::collections::HashSet<String> =
        stored.iter().map(|log| log["message"].as_str().unwrap().to_owned()).collect();
    for request in acknowledged {
        for n in 0..50 {
            assert!(
                messages.contains(&format!("ackword r{request}m{n}")),
                "request {request} message {n} lost"
            );
        }
    }
}
