//! Metrics over HTTP through the real binary: `POST /api/v1/metrics` in each format and
//! Prometheus remote write, read back through `GET /api/v1/metrics`; bad bodies store
//! nothing; the ingest bound answers 429.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use prost::Message as _;
use serde_json::{Value, json};

use crate::harness::Appliance;

/// One bucket holding everything: points are stamped up to one interval (10 s) back.
const WINDOW: &str = "start=-10m&step=20m";

fn series(appliance: &Appliance, query: &str) -> Vec<Value> {
    let (status, body) = appliance.get_json(&format!("/api/v1/metrics?{query}&{WINDOW}"));
    assert_eq!(status, 200, "{body}");
    body["series"].as_array().cloned().unwrap_or_default()
}

fn only_value(appliance: &Appliance, query: &str) -> f64 {
    let found = series(appliance, query);
    assert_eq!(found.len(), 1, "{query}: {found:?}");
    found[0]["points"][0]["value"].as_f64().unwrap_or_else(|| panic!("{query}: {found:?}"))
}

fn names(appliance: &Appliance) -> Vec<Value> {
    let (status, body) = appliance.get_json("/api/v1/metrics/names");
    assert_eq!(status, 200, "{body}");
    body["names"].as_array().cloned().unwrap_or_default()
}

#[test]
fn statsd_influx_and_prometheus_bodies_are_stored_before_the_answer() {
    let appliance = Appliance::start();
    let (status, answer) = appliance.post(
        "/api/v1/metrics?format=statsd",
        "text/plain",
        "web.hits:1|c|#env:test\nweb.hits:2|c|#env:test\nweb.lat:10|ms\nweb.lat:30|ms\n_e{1,1}:a|b\n",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"lines": 5, "samples": 4, "ignored": 1, "points": 2}), "the event is ignored");
    // Answered means committed: no waiting for a flush.
    assert_eq!(only_value(&appliance, "name=web.hits&tag.env=test&agg=sum"), 3.0);
    assert_eq!(only_value(&appliance, "name=web.lat&agg=avg"), 20.0);

    let (status, answer) = appliance.post(
        "/api/v1/metrics?format=influx",
        "text/plain",
        "cpu,host=a usage=0.5,idle=99i\ncpu,host=a usage=1.5\n",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(only_value(&appliance, "name=cpu.usage&tag.host=a&agg=max"), 1.5);
    assert_eq!(only_value(&appliance, "name=cpu.idle&agg=last"), 99.0);

    // Prometheus text, chosen by its Content-Type, with and without timestamps.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let text = format!(
        "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{{queue=\"mail\"}} 40 {}\njobs_total{{queue=\"mail\"}} 42 {now_ms}\ntemperature_celsius{{room=\"a \\\"b\\\"\"}} 21.5\n",
        now_ms - 1
    );
    let (status, answer) = appliance.post("/api/v1/metrics", "text/plain; version=0.0.4", text);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["samples"], 3);
    assert_eq!(only_value(&appliance, "name=jobs_total&tag.queue=mail&agg=last"), 42.0);
    let temperature = series(&appliance, "name=temperature_celsius&agg=last");
    assert_eq!(temperature[0]["tags"], json!({"room": "a \"b\""}), "escapes read back");
    assert_eq!(temperature[0]["kind"], "gauge");
}

#[test]
fn a_bad_line_or_format_stores_nothing_and_says_where() {
    let appliance = Appliance::start();
    let (status, answer) = appliance.post(
        "/api/v1/metrics?format=statsd",
        "text/plain",
        "fine.one:1|c\nfine.two:2|g\nbroken line\n",
    );
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("body: line 3"), "{message}");
    let (status, answer) = appliance.post("/api/v1/metrics", "text/plain", "a:1|c");
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")));
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("format"), "{answer}");
    let (status, _) = appliance.post("/api/v1/metrics?format=prometheus", "text/plain", "x{a=1} 2\n");
    assert_eq!(status, 400);
    assert!(names(&appliance).is_empty(), "nothing of a rejected request is stored");
}

fn remote_write_body(now_ms: i64) -> Vec<u8> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Label {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(int64, tag = "2")]
        timestamp: i64,
    }
    let label = |name: &str, value: &str| Label { name: name.into(), value: value.into() };
    let request = WriteRequest {
        timeseries: ["a:9100", "b:9100"]
            .iter()
            .enumerate()
            .map(|(index, instance)| TimeSeries {
                labels: vec![
                    label("__name__", "node_load1"),
                    label("instance", instance),
                    label("job", "node"),
                ],
                samples: (0..3)
                    .map(|step| Sample {
                        value: (index * 10 + step) as f64,
                        timestamp: now_ms - 2 + step as i64,
                    })
                    .collect(),
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap()
}

#[test]
fn prometheus_remote_write_is_stored_and_answered_204() {
    let appliance = Appliance::start();
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let response = appliance
        .client()
        .post(appliance.url("/api/v1/prom/write"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(remote_write_body(now_ms))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(only_value(&appliance, "name=node_load1&tag.instance=a:9100&agg=last"), 2.0);
    assert_eq!(only_value(&appliance, "name=node_load1&tag.instance=b:9100&agg=max"), 12.0);
    assert_eq!(only_value(&appliance, "name=node_load1&tag.instance=b:9100&agg=count"), 3.0);
    assert_eq!(series(&appliance, "name=node_load1&tag.job=node&agg=last").len(), 2);

    let (status, answer) =
        appliance.post("/api/v1/prom/write", "application/x-protobuf", "not snappy at all");
    assert_eq!(status, 400, "{answer}");
}

const HELD_BODY: &str = "held.metric:1|c\n";

/// Starts a POST whose body is only partly sent, so that it holds its ingest slot.
fn hold_a_slot(appliance: &Appliance) -> TcpStream {
    let address = appliance.url("").trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(address).unwrap();
    let body = HELD_BODY;
    write!(
        stream,
        "POST /api/v1/metrics?format=statsd HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{}",
        appliance.token.as_deref().unwrap_or_default(),
        body.len(),
        &body[..4]
    )
    .unwrap();
    stream.flush().unwrap();
    stream
}

#[test]
fn past_the_ingest_bound_requests_get_429_with_retry_after() {
    let temp = tempfile::tempdir().unwrap();
    let mut appliance = Appliance::start_with_env(
        &temp.path().join("data"),
        &[],
        &[("KILLKRILL_INGEST__HTTP_MAX_CONCURRENT", "1")],
    );
    appliance.keep_temp(temp);
    // The held request and a probe race for the slot; retry until the held one has it
    // (it has lost when the server has already answered it).
    let mut outcome = None;
    for _ in 0..50 {
        let held = hold_a_slot(&appliance);
        std::thread::sleep(Duration::from_millis(50));
        held.set_nonblocking(true).unwrap();
        if held.peek(&mut [0u8; 1]).is_ok() {
            continue;
        }
        held.set_nonblocking(false).unwrap();
        let response = appliance
            .client()
            .post(appliance.url("/api/v1/logs"))
            .header("content-type", "application/json")
            .body(r#"{"message":"one"}"#)
            .send()
            .unwrap();
        if response.status().as_u16() == 429 {
            outcome = Some((held, response));
            break;
        }
    }
    let (mut held, answer) =
        outcome.expect("a second ingest request while the only slot is held is answered 429");
    assert_eq!(answer.headers()["retry-after"], "1");
    let body: Value = answer.json().unwrap();
    assert_eq!(body["error"]["code"], "busy");

    // The held request completes normally, and its slot is free again.
    held.write_all(&HELD_BODY.as_bytes()[4..]).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = [0u8; 512];
    let read = held.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..read]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (status, body) = appliance.post("/api/v1/logs", "application/json", r#"{"message":"two"}"#);
    assert_eq!(status, 200, "{body}");
}

fn killkrill_query(token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::harness::BINARY)
        .arg("query")
        .args(args)
        .env("KILLKRILL_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn query_metrics_command_prints_names_a_table_or_json() {
    let appliance = Appliance::start();
    let (status, answer) = appliance.post(
        "/api/v1/metrics?format=statsd",
        "text/plain",
        "cli.hits:2|c|#env:test,dc:x\ncli.hits:3|c|#env:test,dc:x\ncli.hits:100|c|#env:prod\ncli.temp:7|g\n",
    );
    assert_eq!(status, 200, "{answer}");
    let server = appliance.url("");
    let token = appliance.token.clone().expect("the harness's API key");
    let killkrill_query = |args: &[&str]| killkrill_query(&token, args);
    let stdout = |output: &std::process::Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let output = killkrill_query(&["--server", &server, "metrics"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), ["cli.hits", "cli.temp"]);

    let window = ["--start", "-10m", "--step", "20m"];
    let mut args =
        vec!["--server", &server, "metrics", "--name", "cli.hits", "--tag", "env=test", "--agg", "sum"];
    args.extend(window);
    let output = killkrill_query(&args);
    assert!(output.status.success(), "{output:?}");
    let table = stdout(&output);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert!(lines[1].contains(" 5  cli.hits{dc=x,env=test}"), "{table}");

    let mut args = vec!["--server", &server, "--json", "metrics", "--name", "cli.hits", "--agg", "max"];
    args.extend(window);
    let output = killkrill_query(&args);
    assert!(output.status.success(), "{output:?}");
    let rows: Vec<Value> = stdout(&output).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(rows.len(), 2, "one JSON object per series");
    let prod = rows.iter().find(|row| row["tags"]["env"] == "prod").unwrap();
    assert_eq!(prod["points"][0]["value"], 100.0);

    let output = killkrill_query(&["--server", &server, "metrics", "--name", "cli.hits", "--agg", "median"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("agg"), "the parameter is named");
    let output = killkrill_query(&["--server", &server, "metrics", "--name", "cli.hits", "--tag", "novalue"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KEY=VALUE"));
}
