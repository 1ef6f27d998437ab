//! The query API through the real binary: filters, paging with cursors, errors naming
//! the parameter, and `/api/v1/stats` agreeing with what was sent.

use std::net::UdpSocket;

use serde_json::Value;

use crate::harness::Appliance;

/// Sends RFC 5424 datagrams: (host, app, PRI, text).
pub(crate) fn send(appliance: &Appliance, messages: &[(&str, &str, u8, String)]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = appliance.listener("syslog-udp");
    for (host, app, pri, text) in messages {
        let frame = format!("<{pri}>1 2024-05-01T12:00:00Z {host} {app} - - - {text}");
        socket.send_to(frame.as_bytes(), target).unwrap();
        // Loopback does not drop, but a burst can outrun the receive buffer of a debug build.
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

fn messages(logs: &[Value]) -> Vec<String> {
    logs.iter().map(|log| log["message"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn filters_and_cursor_paging_through_the_api() {
    let appliance = Appliance::start();
    let mut sent = Vec::new();
    for n in 0..60u8 {
        let host = ["edge-1", "edge-2", "core-1"][usize::from(n % 3)];
        let app = if n % 2 == 0 { "bgpd" } else { "sshd" };
        // local7 (23) with severities 0..=7.
        let pri = 23 * 8 + n % 8;
        sent.push((host, app, pri, format!("apiword event {n}")));
    }
    send(&appliance, &sent);
    assert_eq!(appliance.wait_for_logs("q=apiword&limit=1000", 60).len(), 60);

    let (status, body) = appliance.get_json("/api/v1/logs?q=apiword&host=edge-1&app=bgpd&limit=1000");
    assert_eq!(status, 200);
    let want: Vec<String> = sent
        .iter()
        .rev()
        .filter(|(host, app, ..)| *host == "edge-1" && *app == "bgpd")
        .map(|(.., text)| text.clone())
        .collect();
    assert_eq!(messages(body["logs"].as_array().unwrap()), want, "newest first");

    let (_, body) =
        appliance.get_json("/api/v1/logs?q=apiword&severity=%3C%3Dwarning&facility=local7&limit=1000");
    assert_eq!(body["count"], 60 / 8 * 5 + 4, "severities 0-4 of 60 messages cycling through 0-7");
    let (_, body) =
        appliance.get_json("/api/v1/logs?q=apiword%20-sshd%20%22event%201%22&source=127.0.0.0/8&start=-1h");
    let found = messages(body["logs"].as_array().unwrap());
    assert!(!found.is_empty() && found.iter().all(|m| m.starts_with("apiword event 1")), "{found:?}");

    // Oldest first, seven at a time, following next_cursor: every message once, in order.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = appliance.get_json(&format!("/api/v1/logs?q=apiword&order=asc&limit=7{cursor}"));
        assert_eq!(status, 200, "{body}");
        paged.extend(messages(body["logs"].as_array().unwrap()));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, sent.iter().map(|(.., text)| text.clone()).collect::<Vec<_>>());
}

/// Block format 6 keeps a dotted IPv4 address in a message as four bytes (ADR 0057): the
/// messages come back byte for byte, and a word that is one of its octets, a dotted
/// phrase and an excluded octet find what the text has.
#[test]
fn messages_with_addresses_come_back_exactly_and_are_found_by_their_octets() {
    let appliance = Appliance::start();
    let texts = [
        "conn from 10.1.2.3 port 22 ok addrword",
        "deny 203.0.113.9:443 addrword",
        "version 1.2.3.4.5 addrword",
        "not an address 01.2.3.4 addrword",
    ];
    let sent: Vec<_> = texts.iter().map(|text| ("fw-1", "filterlog", 134u8, (*text).to_owned())).collect();
    send(&appliance, &sent);
    assert_eq!(appliance.wait_for_logs("q=addrword&limit=100", 60).len(), texts.len());
    let found = |q: &str| {
        let (status, body) = appliance.get_json(&format!("/api/v1/logs?q={q}&limit=100"));
        assert_eq!(status, 200, "{body}");
        let mut found = messages(body["logs"].as_array().unwrap());
        found.sort();
        found
    };
    let expect = |indexes: &[usize]| {
        let mut wanted: Vec<String> = indexes.iter().map(|&index| texts[index].to_owned()).collect();
        wanted.sort();
        wanted
    };
    assert_eq!(found("addrword"), expect(&[0, 1, 2, 3]), "every message as sent");
    assert_eq!(found("addrword%20203"), expect(&[1]));
    assert_eq!(found("addrword%200"), expect(&[1]));
    assert_eq!(found("addrword%204"), expect(&[2, 3]), "inside an address and in pieces");
    assert_eq!(found("addrword%2001"), expect(&[3]), "01 is no octet of an address");
    assert_eq!(found("%2210.1.2.3%22"), expect(&[0]));
    assert_eq!(found("addrword%20-3"), expect(&[1]));
}

#[test]
fn bad_filters_are_400s_naming_the_parameter() {
    let appliance = Appliance::start();
    for (query, parameter) in [
        ("severity=loud", "severity"),
        ("facility=99", "facility"),
        ("source=300.1.1.1", "source"),
        ("start=yesterday", "start"),
        ("start=-1m&end=-2m", "end"),
        ("order=sideways", "order"),
        ("cursor=nonsense", "cursor"),
        ("q=%22unclosed", "q"),
    ] {
        let (status, body) = appliance.get_json(&format!("/api/v1/logs?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(parameter), "{query}: {message}");
    }
}

#[test]
fn stats_count_what_was_received_and_stored() {
    let appliance = Appliance::start();
    let sent: Vec<_> = (0..25).map(|n| ("stats-host", "statsapp", 13u8, format!("statsword {n}"))).collect();
    send(&appliance, &sent);
    appliance.wait_for_logs("q=statsword&limit=100", 25);
    let (status, stats) = appliance.get_json("/api/v1/stats");
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["capture"]["path"], "socket");
    assert_eq!(stats["store"]["backend"], "sqlite");
    assert_eq!(stats["store"]["messages"], 25);
    assert_eq!(stats["writer"]["stored_messages"], 25);
    assert!(stats["store"]["blocks"].as_u64().unwrap() >= 1);
    assert!(stats["store"]["raw_bytes"].as_u64().unwrap() > 25 * 40);
    assert!(stats["store"]["newest_received_at"].as_str().unwrap().ends_with('Z'));
    let udp = stats["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|listener| listener["listener"] == "syslog-udp" && listener["capture"] == "socket")
        .expect("the UDP socket listener is listed");
    assert_eq!(udp["received_messages"], 25);
    assert_eq!(udp["dropped"]["handoff_ring_full"], 0);
}

/// Opens the live tail and forwards each `data:` line (one JSON message) to a channel.
pub(crate) fn open_tail(appliance: &Appliance, filters: &str) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead as _;
    let response = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(appliance.url(&format!("/api/v1/logs/tail?{filters}")))
        .bearer_auth(appliance.token.as_deref().unwrap())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data:")
                && sender.send(serde_json::from_str(data.trim()).unwrap()).is_err()
            {
                return;
            }
        }
    });
    receiver
}

#[test]
fn live_tail_streams_new_matching_messages_only() {
    let appliance = Appliance::start();
    // Stored before the tail opens: not part of the tail.
    send(&appliance, &[("tail-host", "tailapp", 13, "tailword before".to_owned())]);
    appliance.wait_for_logs("q=tailword", 1);
    let tail = open_tail(&appliance, "q=tailword&host=tail-host");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut sent = Vec::new();
    for n in 0..20 {
        sent.push(("tail-host", "tailapp", 13u8, format!("tailword live {n}")));
        sent.push(("other-host", "tailapp", 13u8, format!("tailword elsewhere {n}")));
    }
    send(&appliance, &sent);
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let log = tail.recv_timeout(std::time::Duration::from_secs(20)).expect("tail events within 20 s");
        seen.push(log["message"].as_str().unwrap().to_owned());
    }
    let want: Vec<String> = (0..20).map(|n| format!("tailword live {n}")).collect();
    assert_eq!(seen, want, "every new match once, in order, and nothing else");
    assert!(tail.recv_timeout(std::time::Duration::from_millis(1500)).is_err(), "no other events");
}

/// Runs `killkrill query` with KILLKRILL_TOKEN set to `token` (unset when None).
fn killkrill_query(token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_killkrill"));
    command.arg("query").args(args).env_remove("KILLKRILL_TOKEN");
    if let Some(token) = token {
        command.env("KILLKRILL_TOKEN", token);
    }
    command.output().unwrap()
}

#[test]
fn query_command_prints_a_table_or_json_and_reports_bad_filters() {
    let appliance = Appliance::start();
    let sent: Vec<_> = (0..12).map(|n| ("cli-host", "cliapp", 11u8, format!("cliword row {n}"))).collect();
    send(&appliance, &sent);
    appliance.wait_for_logs("q=cliword", 12);
    let server = appliance.url("");
    let token = appliance.token.as_deref();

    let output = killkrill_query(
        token,
        &["--server", &server, "logs", "-q", "cliword", "--limit", "5", "--all", "--json"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 12, "--all follows the cursor over three pages");
    assert_eq!(rows[0]["message"], "cliword row 11", "newest first");

    let output = killkrill_query(token, &["--server", &server, "logs", "-q", "cliword", "--limit", "3"]);
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RECEIVED"), "{table}");
    assert!(
        lines[1].contains("cli-host") && lines[1].contains("cliapp") && lines[1].contains("err"),
        "{table}"
    );
    assert!(lines[1].ends_with("cliword row 11"), "{table}");
    assert!(lines[4].starts_with("(more: --cursor "), "{table}");

    let output = killkrill_query(token, &["--server", &server, "logs", "--severity", "loud"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("severity"), "the parameter is named");

    let output = killkrill_query(token, &["--server", "http://127.0.0.1:1", "logs"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));

    // Credentials: none is a 401 that says how to give them; --token works like the variable.
    let output = killkrill_query(None, &["--server", &server, "logs", "-q", "cliword"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("401") && stderr.contains("KILLKRILL_TOKEN"), "{stderr}");
    let output = killkrill_query(
        None,
        &["--server", &server, "--token", token.unwrap(), "logs", "-q", "cliword", "--json"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 12);
}

#[test]
fn openapi_document_lists_every_endpoint_and_each_answers() {
    let appliance = Appliance::start();
    let (status, document) = appliance.get_json("/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."), "{document}");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = document["paths"].as_object().unwrap();
    let mut documented: Vec<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |method| format!("{method} {path}"))
        })
        .collect();
    documented.sort();
    assert_eq!(
        documented,
        [
            "delete /api/v1/api-keys/{id}",
            "delete /api/v1/users/{username}",
            "get /api/v1/api-keys",
            "get /api/v1/audit",
            "get /api/v1/auth/me",
            "get /api/v1/config",
            "get /api/v1/config/capture",
            "get /api/v1/config/listeners",
            "get /api/v1/config/rate-limits",
            "get /api/v1/config/retention",
            "get /api/v1/config/sources",
            "get /api/v1/logs",
            "get /api/v1/logs/tail",
            "get /api/v1/metrics",
            "get /api/v1/metrics/names",
            "get /api/v1/nodes",
            "get /api/v1/openapi.json",
            "get /api/v1/sources",
            "get /api/v1/stats",
            "get /api/v1/users",
            "get /health",
            "get /metrics",
            "get /ready",
            "post /api/v1/api-keys",
            "post /api/v1/auth/login",
            "post /api/v1/auth/logout",
            "post /api/v1/auth/refresh",
            "post /api/v1/auth/setup",
            "post /api/v1/logs",
            "post /api/v1/metrics",
            "post /api/v1/nodes/heartbeat",
            "post /api/v1/prom/write",
            "post /api/v1/users",
            "put /api/v1/config/capture",
            "put /api/v1/config/listeners",
            "put /api/v1/config/rate-limits",
            "put /api/v1/config/retention",
            "put /api/v1/config/sources",
            "put /api/v1/users/{username}",
        ]
    );
    // Every documented GET route exists (the live tail streams, so only its status is read).
    for (path, item) in paths {
        if item.get("get").is_none() {
            continue;
        }
        let status = appliance.client().get(appliance.url(path)).send().unwrap().status().as_u16();
        assert_ne!(status, 404, "{path} is documented but not served");
    }
    // The bearer scheme is declared, required by default, and waived for public routes.
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer")),
        "{scheme}"
    );
    assert_eq!(document["security"], serde_json::json!([{ "bearer": [] }]));
    assert_eq!(paths["/api/v1/auth/login"]["post"]["security"], serde_json::json!([]));
    assert_eq!(paths["/health"]["get"]["security"], serde_json::json!([]));
    assert!(paths["/api/v1/users"]["get"].get("security").is_none_or(|s| s != &serde_json::json!([])));
    let log = &document["components"]["schemas"]["StoredLog"]["properties"];
    for field in ["id", "received_at", "hostname", "message", "parse_error", "frame_flag"] {
        assert!(log.get(field).is_some(), "StoredLog.{field} missing from the schema");
    }
    let parameters: Vec<&str> = document["paths"]["/api/v1/logs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    for name in
        ["start", "end", "host", "app", "severity", "facility", "source", "q", "limit", "cursor", "order"]
    {
        assert!(parameters.contains(&name), "parameter {name} undocumented: {parameters:?}");
    }
}

#[test]
fn sources_count_senders_of_the_matching_messages() {
    let appliance = Appliance::start();
    let mut sent = Vec::new();
    for n in 0..30u8 {
        // router-a: 20 messages (10 of them errors); router-b: 10 messages, no errors.
        let (host, pri) =
            if n < 20 { ("router-a", if n % 2 == 0 { 11 } else { 14 }) } else { ("router-b", 14) };
        sent.push((host, "ospfd", pri, format!("srcword {n}")));
    }
    send(&appliance, &sent);
    appliance.wait_for_logs("q=srcword", 30);
    let (status, body) = appliance.get_json("/api/v1/sources?q=srcword");
    assert_eq!(status, 200, "{body}");
    let sources = body["sources"].as_array().unwrap();
    let summary: Vec<(&str, &str, u64)> = sources
        .iter()
        .map(|s| {
            (s["hostname"].as_str().unwrap(), s["address"].as_str().unwrap(), s["messages"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(summary, [("router-a", "127.0.0.1", 20), ("router-b", "127.0.0.1", 10)]);
    assert!(sources[0]["first_seen"].as_str().unwrap() <= sources[0]["last_seen"].as_str().unwrap());
    assert_eq!(body["truncated"], false);
    let (_, errors) = appliance.get_json("/api/v1/sources?q=srcword&severity=%3C%3Derr");
    let errors = errors["sources"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0]["hostname"].as_str(), errors[0]["messages"].as_u64()),
        (Some("router-a"), Some(10))
    );
}
