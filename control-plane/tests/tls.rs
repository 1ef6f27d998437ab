//! Syslog over TLS (RFC 5425) through the real binary: certificates made by openssl(1) in
//! the test, clients openssl s_client and rustls, messages out through `GET /api/v1/logs`,
//! refusals and failures in `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tempfile::TempDir;

use crate::cli::{assert_clear_failure, serve};
use crate::harness::Appliance;

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate signed by
/// the CA, one signed by another CA, and a key that matches nothing.
pub(crate) struct Certificates {
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl(1) is installed by setup");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

impl Certificates {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        for (name, subject) in [("ca", "/CN=Krill Test CA"), ("rogue-ca", "/CN=Rogue CA")] {
            let (key, certificate) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
            args.extend(EC_KEY);
            args.extend(["-keyout", &key, "-out", &certificate]);
            openssl(path, &args);
        }
        std::fs::write(
            path.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(
            path.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, subject, ca, extensions) in [
            ("server", "/CN=localhost", "ca", "server.ext"),
            ("client", "/C=FR/O=Krill Test/CN=router-7", "ca", "client.ext"),
            ("rogue-client", "/CN=intruder", "rogue-ca", "client.ext"),
        ] {
            let (key, request, certificate) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            let mut args = vec!["req", "-new", "-nodes", "-subj", subject];
            args.extend(EC_KEY);
            args.extend(["-keyout", &key, "-out", &request]);
            openssl(path, &args);
            let (ca_certificate, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            openssl(
                path,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &request,
                    "-CA",
                    &ca_certificate,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    extensions,
                    "-out",
                    &certificate,
                ],
            );
        }
        openssl(
            path,
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key"],
        );
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the appliance with TLS on a free port, the server certificate, and `extra`
    /// TOML lines in the [syslog] table followed by other tables.
    fn start(&self, syslog_extra: &str, other_tables: &str) -> Appliance {
        let config = format!(
            "[syslog]\ntls_cert = {:?}\ntls_key = {:?}\n{syslog_extra}\n{other_tables}\n",
            self.path("server.pem"),
            self.path("server.key"),
        );
        let config_path = self.path("killkrill.toml");
        std::fs::write(&config_path, config).unwrap();
        let data_dir = self.dir.path().join("data");
        let appliance = Appliance::start_in(
            &data_dir,
            &["--config", config_path.to_str().unwrap(), "--syslog-tls", "127.0.0.1:0"],
        );
        assert!(
            appliance.listeners.contains_key("syslog-tls"),
            "no TLS listener: {:#?}",
            appliance.log_lines
        );
        appliance
    }

    pub(crate) fn client_config(&self, certificate: Option<&str>, tls12_only: bool) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] =
            if tls12_only { &[&rustls::version::TLS12] } else { rustls::DEFAULT_VERSIONS };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = match certificate {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let chain = vec![CertificateDer::from_pem_file(self.path(&format!("{name}.pem"))).unwrap()];
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Arc::new(config)
    }
}

fn octet_counted(message: &str) -> String {
    format!("{} {message}", message.len())
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn connect(address: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let socket = TcpStream::connect(address).unwrap();
    // Long enough for a sender slowed down by back pressure to see the server's close.
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let server_name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(config, server_name).unwrap(), socket)
}

/// Sends `payload` over TLS, closes with close_notify and waits for the server to close
/// too (RFC 5425 section 4.4 lets a sender wait; closing with unread data would make the
/// kernel reset the connection and drop what the server had not read yet).
fn send_tls(address: SocketAddr, config: Arc<ClientConfig>, payload: &[u8]) -> std::io::Result<()> {
    let mut stream = connect(address, config);
    stream.write_all(payload)?;
    stream.conn.send_close_notify();
    stream.flush()?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    assert!(rest.is_empty(), "the server sends no application data");
    Ok(())
}

fn metrics_text(appliance: &Appliance) -> String {
    reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics)).unwrap().text().unwrap()
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn handshake_series(outcome: &str) -> String {
    format!("killkrill_tls_handshakes_total{{listener=\"syslog-tls\",outcome=\"{outcome}\"}}")
}

/// Waits until the handshake counter for `outcome` reaches `expected`.
fn wait_for_handshakes(appliance: &Appliance, outcome: &str, expected: u64) -> String {
    let series = handshake_series(outcome);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics_text(appliance);
        let value = metric(&text, &series).unwrap_or(0);
        if value >= expected || Instant::now() > deadline {
            assert_eq!(value, expected, "{series}\n{text}");
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when the server ended the connection without sending any application data.
fn refused(stream: &mut TlsStream) -> bool {
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}

#[test]
fn openssl_s_client_octet_counted_frames_are_searchable() {
    let certificates = Certificates::new();
    let appliance = certificates.start("", "");
    let address = appliance.listener("syslog-tls");
    let mut client = Command::new("openssl")
        .args(["s_client", "-connect", &address.to_string(), "-quiet", "-no_ign_eof", "-verify_return_error"])
        .arg("-CAfile")
        .arg(certificates.path("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let frames = [
        "<14>1 2026-11-23T10:00:00Z router-1 sshd 42 - - first sclientword",
        "<14>Nov 23 10:00:01 router-1 sshd[42]: second sclientword",
    ]
    .map(octet_counted)
    .concat();
    client.stdin.take().unwrap().write_all(frames.as_bytes()).unwrap();
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success(), "s_client: {}", String::from_utf8_lossy(&output.stderr));
    let logs = appliance.wait_for_logs("q=sclientword", 2);
    let mut messages: Vec<&str> = logs.iter().map(|log| log["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    assert_eq!(messages, ["first sclientword", "second sclientword"]);
    assert!(logs.iter().all(|log| log["listener"] == "syslog-tls"), "{logs:#?}");
    assert!(logs.iter().all(|log| log["parse_error"].is_null()), "{logs:#?}");
    let text = wait_for_handshakes(&appliance, "completed", 1);
    assert_eq!(
        metric(&text, "killkrill_tcp_connections_accepted_total{listener=\"syslog-tls\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        metric(&text, "killkrill_frames_flagged_total{listener=\"syslog-tls\",flag=\"framing_error\"}"),
        Some(0),
        "{text}"
    );
}

#[test]
fn many_concurrent_rustls_clients_on_tls_1_2_and_1_3_lose_nothing() {
    let certificates = Certificates::new();
    let appliance = certificates.start("", "");
    let address = appliance.listener("syslog-tls");
    const CLIENTS: usize = 24;
    const MESSAGES: usize = 50;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let config = certificates.client_config(None, client % 2 == 0);
            std::thread::spawn(move || {
                let payload: String = (0..MESSAGES)
                    .map(|index| {
                        octet_counted(&format!("<13>Nov 23 10:00:00 host app: manyword c{client}m{index}"))
                    })
                    .collect();
                send_tls(address, config, payload.as_bytes()).unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let logs = appliance.wait_for_logs("q=manyword&limit=10000", CLIENTS * MESSAGES);
    assert_eq!(logs.len(), CLIENTS * MESSAGES);
    assert_eq!(appliance.wait_for_logs("q=c23m49", 1).len(), 1);
    wait_for_handshakes(&appliance, "completed", CLIENTS as u64);
}

#[test]
fn with_a_client_ca_only_clients_it_signed_are_accepted() {
    let certificates = Certificates::new();
    let client_ca = format!("tls_client_ca = {:?}", certificates.path("ca.pem"));
    let mut appliance = certificates.start(&client_ca, "");
    let address = appliance.listener("syslog-tls");
    let loaded = appliance.wait_for_log("Syslog over TLS: certificates loaded.", Duration::from_secs(5));
    assert_eq!(loaded.expect("logged at start-up")["client_certificates"], "required");

    let mut anonymous = connect(address, certificates.client_config(None, false));
    let _ = anonymous.write_all(octet_counted("<14>host app: anonymousword").as_bytes());
    let _ = anonymous.flush();
    assert!(refused(&mut anonymous), "a client without a certificate must be refused");
    wait_for_handshakes(&appliance, "client_certificate_rejected", 1);

    let mut rogue = connect(address, certificates.client_config(Some("rogue-client"), false));
    let _ = rogue.write_all(octet_counted("<14>host app: rogueword").as_bytes());
    let _ = rogue.flush();
    assert!(refused(&mut rogue), "a certificate from another CA must be refused");
    wait_for_handshakes(&appliance, "client_certificate_rejected", 2);

    let payload = octet_counted("<14>host app: trustedword from router-7");
    send_tls(address, certificates.client_config(Some("client"), false), payload.as_bytes()).unwrap();
    assert_eq!(appliance.wait_for_logs("q=trustedword", 1).len(), 1);
    wait_for_handshakes(&appliance, "completed", 1);
    let accepted =
        appliance.wait_for_log("TLS client accepted.", Duration::from_secs(10)).expect("accept logged");
    assert_eq!(accepted["client_subject"], "C=FR,O=Krill Test,CN=router-7", "{accepted}");
    let refusal = appliance.wait_for_log("TLS client certificate refused.", Duration::from_secs(10));
    assert!(refusal.is_some_and(|line| line["level"] == "warn"), "refusals are logged");
    assert!(appliance.wait_for_logs("q=anonymousword", 0).is_empty());
    assert!(appliance.wait_for_logs("q=rogueword", 0).is_empty());
}

#[test]
fn garbage_before_the_handshake_is_counted_and_closed_without_hurting_others() {
    let certificates = Certificates::new();
    let appliance = certificates.start("", "");
    let address = appliance.listener("syslog-tls");
    let mut plain = TcpStream::connect(address).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"<14>Nov 23 10:00:00 host app: plaintext garbageword\n").unwrap();
    let mut reply = Vec::new();
    // The server answers with an alert at most, then closes.
    let _ = plain.read_to_end(&mut reply);
    assert!(reply.len() < 64, "only an alert may come back: {reply:?}");
    let text = wait_for_handshakes(&appliance, "failed", 1);
    assert_eq!(metric(&text, "killkrill_tcp_connections_active{listener=\"syslog-tls\"}"), Some(0), "{text}");
    send_tls(
        address,
        certificates.client_config(None, false),
        octet_counted("<14>h a: afterword").as_bytes(),
    )
    .unwrap();
    assert_eq!(appliance.wait_for_logs("q=afterword", 1).len(), 1);
    assert!(appliance.wait_for_logs("q=garbageword", 0).is_empty(), "plaintext is never stored");
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_closed_after_the_timeout() {
    let certificates = Certificates::new();
    let appliance = certificates.start("tls_handshake_timeout_ms = 300", "");
    let started = Instant::now();
    let mut silent = TcpStream::connect(appliance.listener("syslog-tls")).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buffer = [0u8; 16];
    let read = silent.read(&mut buffer);
    assert!(matches!(read, Ok(0)), "closed by the server: {read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the timeout: {:?}",
        started.elapsed()
    );
    wait_for_handshakes(&appliance, "timed_out", 1);
}

#[test]
fn a_full_handoff_ring_slows_tls_senders_down_and_loses_nothing() {
    let certificates = Certificates::new();
    let appliance = certificates.start("", "[batch]\nhandoff_capacity = 1\nmax_messages = 16\n");
    let address = appliance.listener("syslog-tls");
    const CLIENTS: usize = 8;
    const MESSAGES: usize = 1000;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let config = certificates.client_config(None, false);
            std::thread::spawn(move || {
                let payload: String = (0..MESSAGES)
                    .map(|index| {
                        octet_counted(&format!(
                            "<13>Nov 23 10:00:00 host app: pressureword c{client}m{index}"
                        ))
                    })
                    .collect();
                send_tls(address, config, payload.as_bytes()).unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let total = (CLIENTS * MESSAGES) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let (_, stats) = appliance.get_json("/api/v1/stats");
        if stats["writer"]["stored_messages"].as_u64() >= Some(total) || Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["writer"]["stored_messages"].as_u64(), Some(total), "{stats:#}");
    let tls = stats["listeners"].as_array().unwrap().iter().find(|l| l["listener"] == "syslog-tls").unwrap();
    assert_eq!(tls["received_messages"].as_u64(), Some(total), "{tls:#}");
    assert_eq!(tls["dropped"]["handoff_ring_full"], 0, "{tls:#}");
    assert_eq!(tls["tls_handshakes"]["completed"].as_u64(), Some(CLIENTS as u64), "{tls:#}");
    assert!(
        tls["handed_off_batches"].as_u64().unwrap() >= total / 16,
        "small batches through a one-slot ring: {tls:#}"
    );
    assert_eq!(appliance.wait_for_logs("q=c7m999", 1).len(), 1);
}

#[test]
fn bad_tls_files_are_start_up_errors_naming_the_key() {
    let certificates = Certificates::new();
    let path = |name: &str| certificates.path(name).to_str().unwrap().to_owned();
    std::fs::write(certificates.path("garbage.key"), "not a key\n").unwrap();
    let cases: [(&[(&str, String)], &str); 5] = [
        (
            &[
                ("KILLKRILL_SYSLOG__TLS_CERT", path("missing.pem")),
                ("KILLKRILL_SYSLOG__TLS_KEY", path("server.key")),
            ],
            "syslog.tls_cert",
        ),
        (
            &[
                ("KILLKRILL_SYSLOG__TLS_CERT", path("server.pem")),
                ("KILLKRILL_SYSLOG__TLS_KEY", path("garbage.key")),
            ],
            "syslog.tls_key",
        ),
        (
            &[
                ("KILLKRILL_SYSLOG__TLS_CERT", path("server.pem")),
                ("KILLKRILL_SYSLOG__TLS_KEY", path("other.key")),
            ],
            "does not match the certificate",
        ),
        (
            &[
                ("KILLKRILL_SYSLOG__TLS_CERT", path("server.key")),
                ("KILLKRILL_SYSLOG__TLS_KEY", path("server.key")),
            ],
            "syslog.tls_cert",
        ),
        (
            &[
                ("KILLKRILL_SYSLOG__TLS_CERT", path("server.pem")),
                ("KILLKRILL_SYSLOG__TLS_KEY", path("server.key")),
                ("KILLKRILL_SYSLOG__TLS_CLIENT_CA", path("garbage.key")),
            ],
            "syslog.tls_client_ca",
        ),
    ];
    for (env, needle) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let output = serve(&["--syslog-tls", "127.0.0.1:0"], &env);
        assert_clear_failure(&output, 2, needle);
    }
    let output = serve(&["--syslog-tls", "127.0.0.1:0"], &[]);
    assert_clear_failure(&output, 2, "syslog.tls_cert");
}

#[test]
fn without_a_certificate_tls_is_off_and_says_so() {
    let mut appliance = Appliance::start();
    assert!(!appliance.listeners.contains_key("syslog-tls"));
    let line = appliance
        .wait_for_log(
            "Syslog over TLS is off: no certificate configured (set syslog.tls_cert and syslog.tls_key).",
            Duration::from_secs(5),
        )
        .expect("the reason is logged");
    assert_eq!(line["level"], "info");
}

/// With a certificate configured but TLS off at start, `PUT /api/v1/config/listeners`
/// starts a syslog-tls listener live, with the configured certificate.
#[test]
fn a_tls_listener_added_live_uses_the_configured_certificate() {
    let certificates = Certificates::new();
    let config = format!(
        "[syslog]\ntls_cert = {:?}\ntls_key = {:?}\ntls = \"off\"\n",
        certificates.path("server.pem"),
        certificates.path("server.key"),
    );
    let config_path = certificates.path("killkrill.toml");
    std::fs::write(&config_path, config).unwrap();
    let appliance =
        Appliance::start_in(&certificates.path("data"), &["--config", config_path.to_str().unwrap()]);
    assert!(!appliance.listeners.contains_key("syslog-tls"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_, current) = appliance.get_json("/api/v1/config/listeners");
    let mut listeners = current["listeners"].as_array().unwrap().clone();
    listeners.push(serde_json::json!({"protocol": "syslog-tls", "listen": format!("127.0.0.1:{port}")}));
    let response = reqwest::blocking::Client::new()
        .put(appliance.url("/api/v1/config/listeners"))
        .json(&serde_json::json!({ "listeners": listeners }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().unwrap());
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let frame = octet_counted("<14>1 2026-11-23T10:00:00Z router-1 sshd 42 - - livetlsword");
    send_tls(address, certificates.client_config(None, false), frame.as_bytes()).unwrap();
    let logs = appliance.wait_for_logs("q=livetlsword", 1);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["listener"], "syslog-tls");
}
