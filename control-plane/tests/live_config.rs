//! Live configuration through the real binary: `PUT /api/v1/config/*` changes listeners,
//! source lists, rate limits and retention while it runs, refuses bad bodies naming the
//! field, and what it changed survives a restart.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Appliance;

fn put(appliance: &Appliance, path: &str, body: &str) -> (u16, Value) {
    let response = appliance
        .client()
        .put(appliance.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().expect("JSON body"))
}

fn put_json(appliance: &Appliance, path: &str, body: &Value) -> Value {
    let (status, answer) = put(appliance, path, &body.to_string());
    assert_eq!(status, 200, "PUT {path} {body}: {answer}");
    answer
}

/// A port free on loopback for both UDP and TCP right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn send_udp_from(from: &str, to: SocketAddr, message: &str) {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    socket.send_to(message.as_bytes(), to).unwrap();
}

fn send_tcp(to: SocketAddr, message: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    stream.write_all(format!("{message}\n").as_bytes())?;
    stream.flush()
}

fn listeners_of(appliance: &Appliance) -> Vec<(String, String)> {
    let (status, body) = appliance.get_json("/api/v1/config/listeners");
    assert_eq!(status, 200, "{body}");
    let mut listeners: Vec<(String, String)> = body["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["protocol"].as_str().unwrap().to_owned(), l["listen"].as_str().unwrap().to_owned()))
        .collect();
    listeners.sort();
    listeners
}

fn listener_body(listeners: &[(String, String)]) -> Value {
    json!({ "listeners": listeners.iter().map(|(protocol, listen)| json!({"protocol": protocol, "listen": listen})).collect::<Vec<_>>() })
}

fn count_logs(appliance: &Appliance, word: &str) -> usize {
    let (status, body) = appliance.get_json(&format!("/api/v1/logs?q={word}&limit=1000"));
    assert_eq!(status, 200, "{body}");
    body["logs"].as_array().unwrap().len()
}

/// The socket listener's stats entry for `label`.
fn listener_stats(appliance: &Appliance, label: &str) -> Value {
    let (status, body) = appliance.get_json("/api/v1/stats");
    assert_eq!(status, 200);
    body["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["listener"] == label && l["capture"] == "socket")
        .cloned()
        .unwrap_or_else(|| panic!("no {label} in {body}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn listeners_are_added_and_removed_while_running() {
    let appliance = Appliance::start();
    let before = listeners_of(&appliance);
    assert_eq!(
        before.iter().map(|(protocol, _)| protocol.as_str()).collect::<Vec<_>>(),
        ["influx-udp", "statsd-udp", "syslog-tcp", "syslog-udp"]
    );
    let old_udp = appliance.listener("syslog-udp");
    let old_tcp = appliance.listener("syslog-tcp");
    let (udp_port, tcp_port) = (free_port(), free_port());
    let new_udp: SocketAddr = format!("127.0.0.1:{udp_port}").parse().unwrap();
    let new_tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let mut wanted = before.clone();
    wanted.push(("syslog-udp".into(), new_udp.to_string()));
    wanted.push(("syslog-tcp".into(), new_tcp.to_string()));
    let answer = put_json(&appliance, "/api/v1/config/listeners", &listener_body(&wanted));
    assert_eq!(answer["listeners"].as_array().unwrap().len(), 6, "{answer}");
    wanted.sort();
    assert_eq!(listeners_of(&appliance), wanted);

    send_udp_from("127.0.0.1", new_udp, "<13>Nov 23 10:00:00 host app: liveaddudp one");
    send_tcp(new_tcp, "<13>Nov 23 10:00:00 host app: liveaddtcp one").unwrap();
    assert_eq!(appliance.wait_for_logs("q=liveaddudp", 1).len(), 1);
    assert_eq!(appliance.wait_for_logs("q=liveaddtcp", 1).len(), 1);

    // A connection open on the TCP listener about to go: what it sent is kept, then it is
    // closed cleanly.
    let mut open = TcpStream::connect(new_tcp).unwrap();
    for seq in 0..5 {
        writeln!(open, "<13>Nov 23 10:00:00 host app: liveinflight {seq}").unwrap();
    }
    open.flush().unwrap();
    // Drop the first syslog-udp and the new syslog-tcp; keep the rest untouched.
    let kept: Vec<(String, String)> = wanted
        .iter()
        .filter(|(_, listen)| *listen != old_udp.to_string() && *listen != new_tcp.to_string())
        .cloned()
        .collect();
    put_json(&appliance, "/api/v1/config/listeners", &listener_body(&kept));
    assert_eq!(listeners_of(&appliance), kept);
    assert_eq!(appliance.wait_for_logs("q=liveinflight", 5).len(), 5, "nothing accepted is lost");
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(std::io::Read::read_to_end(&mut open, &mut rest).unwrap(), 0, "closed cleanly (EOF)");
    let refused = send_tcp(new_tcp, "<13>Nov 23 10:00:00 host app: liveremovedtcp");
    assert!(refused.is_err(), "the removed TCP port still accepts");
    // The removed UDP port is closed: the kernel answers ICMP unreachable, nobody stores it.
    send_udp_from("127.0.0.1", old_udp, "<13>Nov 23 10:00:00 host app: liveremovedudp");
    send_udp_from("127.0.0.1", new_udp, "<13>Nov 23 10:00:00 host app: livekeptudp");
    send_tcp(old_tcp, "<13>Nov 23 10:00:00 host app: livekepttcp").unwrap();
    assert_eq!(appliance.wait_for_logs("q=livekeptudp", 1).len(), 1);
    assert_eq!(appliance.wait_for_logs("q=livekepttcp", 1).len(), 1);
    assert_eq!(count_logs(&appliance, "liveremovedudp"), 0);
    // The full document carries the same set.
    let (_, all) = appliance.get_json("/api/v1/config");
    assert_eq!(all["listeners"]["listeners"].as_array().unwrap().len(), kept.len(), "{all}");
}

#[test]
fn a_port_in_use_is_refused_and_the_old_set_keeps_running() {
    let appliance = Appliance::start();
    let before = listeners_of(&appliance);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap();
    let mut wanted = before.clone();
    wanted.push(("syslog-udp".into(), format!("127.0.0.1:{}", free_port())));
    wanted.push(("syslog-tcp".into(), taken_address.to_string()));
    let (status, body) = put(&appliance, "/api/v1/config/listeners", &listener_body(&wanted).to_string());
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&taken_address.to_string()) && message.contains("in use"), "{message}");
    assert_eq!(listeners_of(&appliance), before, "nothing changed");
    send_udp_from(
        "127.0.0.1",
        appliance.listener("syslog-udp"),
        "<13>Nov 23 10:00:00 host app: stillrunning",
    );
    assert_eq!(appliance.wait_for_logs("q=stillrunning", 1).len(), 1);
}

#[test]
fn bad_bodies_are_refused_naming_the_field_and_change_nothing() {
    let appliance = Appliance::start();
    let (_, before) = appliance.get_json("/api/v1/config");
    let udp = appliance.listener("syslog-udp").to_string();
    let cases = [
        (
            "/api/v1/config/listeners",
            json!({"listeners": [{"protocol": "syslog-udp", "listen": udp}, {"protocol": "syslog-tcp", "listen": "0.0.0.0:70000"}]}).to_string(),
            "listeners[1].listen: port 70000 is out of range",
        ),
        (
            "/api/v1/config/listeners",
            json!({"listeners": [{"protocol": "syslog-udp", "listen": udp}, {"protocol": "statsd-udp", "listen": udp}]}).to_string(),
            "listeners[1].listen: ",
        ),
        (
            "/api/v1/config/listeners",
            json!({"listeners": [{"protocol": "carrier-pigeon", "listen": "127.0.0.1:5140"}]}).to_string(),
            "listeners[0].protocol: unknown variant",
        ),
        (
            "/api/v1/config/listeners",
            json!({"listeners": [{"protocol": "syslog-udp", "listen": "127.0.0.1:5140", "colour": "red"}]}).to_string(),
            "listeners[0].colour: unknown field",
        ),
        (
            "/api/v1/config/listeners",
            json!({"listeners": [{"protocol": "syslog-tls", "listen": "127.0.0.1:6514"}]}).to_string(),
            "listeners[0].protocol: syslog-tls needs a certificate",
        ),
        ("/api/v1/config/sources", json!({"allow": [], "deny": ["10.0.0.0/8", "10.1.2.3/40"]}).to_string(), "deny[1]: "),
        ("/api/v1/config/sources", json!({"allow": ["nonsense"], "deny": []}).to_string(), "allow[0]: "),
        (
            "/api/v1/config/rate-limits",
            json!({"per_source": {"messages_per_second": 0, "burst": 10}}).to_string(),
            "per_source.messages_per_second: ",
        ),
        ("/api/v1/config/retention", json!({"max_age": "forever", "max_bytes": null}).to_string(), "max_age: "),
        ("/api/v1/config/capture", json!({"mode": "xdp", "interface": null}).to_string(), "interface: "),
        ("/api/v1/config/capture", json!({"mode": "turbo", "interface": null}).to_string(), "mode: unknown variant"),
        ("/api/v1/config/sources", "{\"allow\": [".to_owned(), "body: "),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = put(&appliance, path, &body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{path} {body}: {message}");
    }
    let (_, after) = appliance.get_json("/api/v1/config");
    assert_eq!(before, after, "nothing changed");
}

#[test]
fn a_denied_source_is_dropped_and_counted_on_the_socket_path() {
    let appliance = Appliance::start();
    let udp = appliance.listener("syslog-udp");
    let answer = put_json(&appliance, "/api/v1/config/sources", &json!({"allow": [], "deny": ["127.0.0.2"]}));
    assert_eq!(answer, json!({"allow": [], "deny": ["127.0.0.2/32"]}));
    let (_, got) = appliance.get_json("/api/v1/config/sources");
    assert_eq!(got, answer);
    for _ in 0..3 {
        send_udp_from("127.0.0.2", udp, "<13>Nov 23 10:00:00 host app: fromdenied");
    }
    send_udp_from("127.0.0.1", udp, "<13>Nov 23 10:00:00 host app: fromallowed");
    assert_eq!(appliance.wait_for_logs("q=fromallowed", 1).len(), 1);
    wait_until("three denied datagrams counted", || {
        listener_stats(&appliance, "syslog-udp")["dropped"]["denied"] == 3
    });
    assert_eq!(count_logs(&appliance, "fromdenied"), 0);
    assert_eq!(
        appliance.metric(
            r#"killkrill_dropped_messages_total{listener="syslog-udp",stage="source",reason="denied"}"#
        ),
        3.0
    );

    // An allow list that leaves 127.0.0.1 out refuses it too; TCP connections included.
    put_json(&appliance, "/api/v1/config/sources", &json!({"allow": ["127.0.0.2/32"], "deny": []}));
    let tcp = appliance.listener("syslog-tcp");
    let _ = send_tcp(tcp, "<13>Nov 23 10:00:00 host app: tcpnotallowed");
    send_udp_from("127.0.0.2", udp, "<13>Nov 23 10:00:00 host app: nowallowed");
    assert_eq!(appliance.wait_for_logs("q=nowallowed", 1).len(), 1);
    wait_until("the TCP connection refused", || {
        listener_stats(&appliance, "syslog-tcp")["dropped"]["denied"] == 1
    });
    assert_eq!(count_logs(&appliance, "tcpnotallowed"), 0);

    // Lifting the lists lets everyone in again.
    put_json(&appliance, "/api/v1/config/sources", &json!({"allow": [], "deny": []}));
    send_tcp(tcp, "<13>Nov 23 10:00:00 host app: tcpagain").unwrap();
    assert_eq!(appliance.wait_for_logs("q=tcpagain", 1).len(), 1);
}

#[test]
fn a_rate_limit_takes_effect_on_the_socket_path() {
    let appliance = Appliance::start();
    let udp = appliance.listener("syslog-udp");
    let limit = json!({"per_source": {"messages_per_second": 1, "burst": 5}});
    assert_eq!(put_json(&appliance, "/api/v1/config/rate-limits", &limit), limit);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for index in 0..40 {
        socket.send_to(format!("<13>Nov 23 10:00:00 host app: ratelimited {index}").as_bytes(), udp).unwrap();
    }
    wait_until("40 datagrams received", || {
        listener_stats(&appliance, "syslog-udp")["received_messages"] == 40
    });
    let stats = listener_stats(&appliance, "syslog-udp");
    let limited = stats["dropped"]["rate_limited"].as_u64().unwrap();
    // The burst passes, then about one a second: the sender took far less than 30 s.
    assert!((30..=35).contains(&limited), "{stats}");
    assert_eq!(
        appliance.wait_for_logs("q=ratelimited&limit=100", 40 - limited as usize).len(),
        40 - limited as usize
    );

    let none = json!({"per_source": null});
    assert_eq!(put_json(&appliance, "/api/v1/config/rate-limits", &none), none);
    for index in 0..20 {
        socket.send_to(format!("<13>Nov 23 10:00:00 host app: unlimited {index}").as_bytes(), udp).unwrap();
    }
    assert_eq!(appliance.wait_for_logs("q=unlimited&limit=100", 20).len(), 20);
}

#[test]
fn retention_changes_apply_at_once() {
    let appliance = Appliance::start();
    let (_, retention) = appliance.get_json("/api/v1/config/retention");
    assert_eq!(retention, json!({"max_age": "30d", "max_bytes": null}), "the default");
    send_udp_from("127.0.0.1", appliance.listener("syslog-udp"), "<13>Nov 23 10:00:00 host app: shortlived");
    assert_eq!(appliance.wait_for_logs("q=shortlived", 1).len(), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let limits = json!({"max_age": "2s", "max_bytes": null});
    assert_eq!(put_json(&appliance, "/api/v1/config/retention", &limits), limits);
    assert_eq!(appliance.get_json("/api/v1/config/retention").1, limits);
    // The retention task runs a pass as soon as it is told, not at its next hourly round.
    wait_until("the old block removed", || count_logs(&appliance, "shortlived") == 0);
}

#[test]
fn live_settings_survive_a_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let appliance = Appliance::start_in(&data_dir, &[]);
    let port = free_port();
    let listeners = json!({"listeners": [
        {"protocol": "syslog-udp", "listen": format!("127.0.0.1:{port}")},
        {"protocol": "syslog-tcp", "listen": format!("127.0.0.1:{port}")},
        {"protocol": "statsd-udp", "listen": appliance.listener("statsd-udp").to_string()},
    ]});
    put_json(&appliance, "/api/v1/config/listeners", &listeners);
    put_json(
        &appliance,
        "/api/v1/config/sources",
        &json!({"allow": ["127.0.0.0/8", "2001:db8::/32"], "deny": ["127.0.0.9/32"]}),
    );
    put_json(
        &appliance,
        "/api/v1/config/rate-limits",
        &json!({"per_source": {"messages_per_second": 1000, "burst": 2000}}),
    );
    put_json(
        &appliance,
        "/api/v1/config/retention",
        &json!({"max_age": "30d", "max_bytes": 1_000_000_000u64}),
    );
    let capture =
        put_json(&appliance, "/api/v1/config/capture", &json!({"mode": "socket", "interface": null}));
    assert_eq!(
        capture,
        json!({"mode": "socket", "interface": null, "active": "socket", "restart_required": false})
    );
    let (_, before) = appliance.get_json("/api/v1/config");
    assert!(appliance.terminate().success());

    let appliance = Appliance::start_in(&data_dir, &[]).keeping(temp);
    let (_, after) = appliance.get_json("/api/v1/config");
    assert_eq!(after, before);
    assert_eq!(appliance.listener("syslog-udp").port(), port, "the stored listener wins over the flags");
    send_udp_from(
        "127.0.0.1",
        format!("127.0.0.1:{port}").parse().unwrap(),
        "<13>Nov 23 10:00:00 host app: afterrestart",
    );
    send_udp_from(
        "127.0.0.9",
        format!("127.0.0.1:{port}").parse().unwrap(),
        "<13>Nov 23 10:00:00 host app: stilldenied",
    );
    assert_eq!(appliance.wait_for_logs("q=afterrestart", 1).len(), 1);
    wait_until("the denied source counted", || {
        listener_stats(&appliance, "syslog-udp")["dropped"]["denied"] == 1
    });
    assert_eq!(count_logs(&appliance, "stilldenied"), 0);
}

/// Root only: with XDP capture on a veth rig, list, limit and listener changes reach the
/// program's maps while it runs (the counters say the program itself dropped or steered).
#[test]
fn live_changes_reach_the_xdp_maps() {
    use killkrill_dataplane::testing::{APPLIANCE_V4, PEER_V4, rig_or_skip};
    let Some(rig) = rig_or_skip() else { return };
    let temp = tempfile::tempdir().unwrap();
    let config = crate::harness::xdp_config(temp.path(), &rig.appliance_if);
    let _inside = rig.enter(&rig.appliance);
    let appliance = Appliance::start_in(&temp.path().join("data"), &["--config", config.to_str().unwrap()]);
    assert_eq!(appliance.get_json("/api/v1/config/capture").1["active"], "xdp-native");
    let port = appliance.listener("syslog-udp").port();
    let send_from_peer = |port: u16, word: &str, count: usize| {
        let _peer = rig.enter(&rig.peer);
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        for seq in 0..count {
            let message = format!("<13>1 2026-11-23T10:00:00Z peer app - - - {word} {seq}");
            sender.send_to(message.as_bytes(), (APPLIANCE_V4, port)).unwrap();
        }
    };
    let xdp = |reason: &str| {
        appliance.metric(&format!("killkrill_xdp_packets_total{{listener=\"syslog\",reason=\"{reason}\"}}"))
    };

    put_json(&appliance, "/api/v1/config/sources", &json!({"allow": [], "deny": [PEER_V4]}));
    send_from_peer(port, "xdpdenied", 10);
    wait_until("ten datagrams denied by the program", || xdp("denied") == 10.0);
    put_json(&appliance, "/api/v1/config/sources", &json!({"allow": [], "deny": []}));
    send_from_peer(port, "xdpallowed", 5);
    assert_eq!(appliance.wait_for_logs("q=xdpallowed", 5).len(), 5);
    assert_eq!(count_logs(&appliance, "xdpdenied"), 0);

    put_json(
        &appliance,
        "/api/v1/config/rate-limits",
        &json!({"per_source": {"messages_per_second": 1, "burst": 3}}),
    );
    send_from_peer(port, "xdplimited", 20);
    wait_until("the program rate limits", || xdp("rate_limited") >= 15.0);
    put_json(&appliance, "/api/v1/config/rate-limits", &json!({"per_source": null}));

    // A second syslog-udp port added live is steered to AF_XDP from the next packet.
    let extra = free_port();
    let mut listeners = listeners_of(&appliance);
    listeners.push(("syslog-udp".into(), format!("0.0.0.0:{extra}")));
    put_json(&appliance, "/api/v1/config/listeners", &listener_body(&listeners));
    let redirected = xdp("redirected");
    send_from_peer(extra, "xdpnewport", 7);
    assert_eq!(appliance.wait_for_logs("q=xdpnewport", 7).len(), 7);
    wait_until("the new port redirected", || xdp("redirected") == redirected + 7.0);

    // The capture switched live: to sockets (the program goes, the socket listener
    // receives), and back to XDP on the same interface.
    let capture =
        put_json(&appliance, "/api/v1/config/capture", &json!({"mode": "socket", "interface": null}));
    assert_eq!((&capture["active"], &capture["restart_required"]), (&json!("socket"), &json!(false)));
    let (_, stats) = appliance.get_json("/api/v1/stats");
    assert_eq!(stats["capture"]["path"], "socket", "{stats}");
    assert!(stats["xdp"].is_null(), "no program counters without XDP: {stats}");
    // (The harness binds the first syslog-udp listener to loopback; the one added above
    // listens on every address, so the peer reaches it through the kernel.)
    send_from_peer(extra, "livesocket", 6);
    assert_eq!(appliance.wait_for_logs("q=livesocket", 6).len(), 6);
    let capture = put_json(
        &appliance,
        "/api/v1/config/capture",
        &json!({"mode": "xdp", "interface": rig.appliance_if}),
    );
    assert_eq!(capture["active"], "xdp-native");
    send_from_peer(extra, "livexdp", 4);
    assert_eq!(appliance.wait_for_logs("q=livexdp", 4).len(), 4);
    wait_until("the new program redirects", || xdp("redirected") >= 4.0);
    // An interface that does not exist: 409 in xdp mode, and the capture before is back.
    let (status, answer) = put(
        &appliance,
        "/api/v1/config/capture",
        &json!({"mode": "xdp", "interface": "nosuchif0"}).to_string(),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(appliance.get_json("/api/v1/config/capture").1["active"], "xdp-native");
    assert!(appliance.terminate().success());
}

/// Two control planes on one PostgreSQL: a change kept by one is applied by the other at
/// its next poll, and a third started later takes it at start.
#[test]
fn control_planes_sharing_postgres_pick_up_live_settings() {
    let postgres = crate::servers::PostgresServer::start();
    let url = postgres.create_database("liveconfig");
    let env = [
        ("DB_TYPE", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("KILLKRILL_STORE__RUNTIME_CONFIG_POLL_S", "1"),
    ];
    let temp = tempfile::tempdir().unwrap();
    let first = Appliance::start_with_env(&temp.path().join("first"), &[], &env);
    let second = Appliance::start_with_env(&temp.path().join("second"), &[], &env);
    let sources = json!({"allow": [], "deny": ["127.0.0.2/32"]});
    let limits = json!({"per_source": {"messages_per_second": 100, "burst": 200}});
    let retention = json!({"max_age": "7d", "max_bytes": null});
    put_json(&first, "/api/v1/config/sources", &sources);
    put_json(&first, "/api/v1/config/rate-limits", &limits);
    put_json(&first, "/api/v1/config/retention", &retention);
    wait_until("the second control plane follows", || {
        let (_, all) = second.get_json("/api/v1/config");
        all["sources"] == sources && all["rate_limits"] == limits && all["retention"] == retention
    });
    // It enforces what it picked up.
    send_udp_from("127.0.0.2", second.listener("syslog-udp"), "<13>Nov 23 10:00:00 host app: pgdenied");
    wait_until("the second denies the source", || {
        listener_stats(&second, "syslog-udp")["dropped"]["denied"] == 1
    });

    let third = Appliance::start_with_env(&temp.path().join("third"), &[], &env);
    let (_, all) = third.get_json("/api/v1/config");
    assert_eq!((&all["sources"], &all["rate_limits"], &all["retention"]), (&sources, &limits, &retention));
}

/// The `runtime_config` table on both backends: insert, replace, list, delete.
#[test]
fn runtime_config_rows_are_kept_replaced_and_deleted_on_both_backends() {
    use killkrill::config::{DbType, StoreConfig};
    use killkrill::store::{self, RuntimeConfigEntry};
    let postgres = crate::servers::PostgresServer::start();
    let url = postgres.create_database("runtimerows");
    let temp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for config in [
        StoreConfig::default(),
        StoreConfig { db_type: DbType::Postgres, database_url: Some(url.clone()), ..StoreConfig::default() },
    ] {
        runtime.block_on(async {
            let store = store::open(&config, temp.path()).await.unwrap();
            let entry = |value: &str, by: Option<&str>| RuntimeConfigEntry {
                key: "sources".to_owned(),
                value: value.to_owned(),
                updated_at: "2026-11-23T10:00:00Z".to_owned(),
                updated_by: by.map(str::to_owned),
            };
            assert!(store.runtime_config().await.unwrap().is_empty());
            store.put_runtime_config(&entry(r#"{"allow":[],"deny":[]}"#, None)).await.unwrap();
            let replaced = entry(r#"{"allow":[],"deny":["10.0.0.0/8"]}"#, Some("alice"));
            store.put_runtime_config(&replaced).await.unwrap();
            assert_eq!(store.runtime_config().await.unwrap(), [replaced], "{:?}", config.db_type);
            assert!(store.delete_runtime_config("sources").await.unwrap());
            assert!(!store.delete_runtime_config("sources").await.unwrap());
            assert!(store.runtime_config().await.unwrap().is_empty());
            store.close().await;
        });
    }
}

/// `killkrill runtime-config reset` forgets a kept section: the configuration applies again
/// at the next start; `show` lists what is kept.
#[test]
fn a_reset_section_follows_the_configuration_again() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let appliance = Appliance::start_in(&data_dir, &[]);
    put_json(&appliance, "/api/v1/config/sources", &json!({"allow": [], "deny": ["192.0.2.0/24"]}));
    put_json(&appliance, "/api/v1/config/retention", &json!({"max_age": "1d", "max_bytes": null}));
    assert!(appliance.terminate().success());

    let cli = |args: &[&str]| {
        std::process::Command::new(crate::harness::BINARY)
            .arg("runtime-config")
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap()
    };
    let shown = cli(&["show"]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let keys: Vec<String> = String::from_utf8(shown.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["retention", "sources"]);
    let reset = cli(&["reset", "sources"]);
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    assert!(String::from_utf8_lossy(&reset.stderr).contains("sources: reset"));
    assert_eq!(cli(&["reset", "bogus"]).status.code(), Some(2), "an unknown section is a usage error");

    let appliance = Appliance::start_in(&data_dir, &[]).keeping(temp);
    assert_eq!(appliance.get_json("/api/v1/config/sources").1, json!({"allow": [], "deny": []}));
    assert_eq!(appliance.get_json("/api/v1/config/retention").1["max_age"], "1d", "not reset, still kept");
}

/// A statsd listener added live hands its points to the metric writer like one started
/// with the process; the one it replaced stops.
#[test]
fn a_metrics_listener_added_live_stores_its_points() {
    let temp = tempfile::tempdir().unwrap();
    let appliance =
        Appliance::start_in(&temp.path().join("data"), &["--metrics-flush-interval-ms", "200"]).keeping(temp);
    let old_statsd = appliance.listener("statsd-udp").to_string();
    let new_statsd: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut listeners: Vec<(String, String)> =
        listeners_of(&appliance).into_iter().filter(|(_, listen)| *listen != old_statsd).collect();
    listeners.push(("statsd-udp".into(), new_statsd.to_string()));
    put_json(&appliance, "/api/v1/config/listeners", &listener_body(&listeners));
    send_udp_from("127.0.0.1", new_statsd, "live.added.counter:5|c");
    wait_until("the new listener's point stored", || {
        let (status, names) = appliance.get_json("/api/v1/metrics/names");
        status == 200 && names.to_string().contains("live.added.counter")
    });
    assert!(!listeners_of(&appliance).iter().any(|(_, listen)| *listen == old_statsd));
}
