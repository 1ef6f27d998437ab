//! The appliance under test: `killkrill serve` on the filled data directory, on
//! loopback ports it picks, with an admin whose API key the clients send.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "scale-bench-admin-password";

pub struct Appliance {
    child: Child,
    pub api: SocketAddr,
}

impl Drop for Appliance {
    fn drop(&mut self) {
        // SIGTERM by PID, then wait, so the store is closed cleanly.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Appliance {
    /// `database_url`: serve from this PostgreSQL database rather than the data
    /// directory's SQLite file.
    pub fn start(binary: &Path, data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        if let Some(url) = database_url {
            command.env("DB_TYPE", "postgres").env("DATABASE_URL", url);
        }
        let mut child = command
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"])
            .args(["--statsd-udp", "127.0.0.1:0", "--influx-udp", "127.0.0.1:0"])
            .env("KILLKRILL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("LOG_LEVEL", "warn,killkrill::server=info")
            // The store is measured as the fill (and the compact phase) left it: background
            // compaction would rewrite it during the measurement.
            .env("KILLKRILL_STORE__COMPACTION__ENABLED", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| anyhow::anyhow!("cannot start {}: {error}", binary.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut api = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<Value>(&line) else { continue };
                match value["message"].as_str() {
                    Some("API listening.") => api = value["address"].as_str().and_then(|a| a.parse().ok()),
                    Some("Killkrill is ready.") => {
                        let _ = sender.send(api);
                    }
                    _ => {}
                }
            }
        });
        let mut appliance = Self { child, api: SocketAddr::from(([127, 0, 0, 1], 0)) };
        // Opening a large store runs its migrations and checks first.
        match receiver.recv_timeout(Duration::from_secs(300)) {
            Ok(Some(api)) => appliance.api = api,
            _ => anyhow::bail!("killkrill did not become ready"),
        }
        Ok(appliance)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// Logs in as the first admin and makes a viewer API key.
    pub async fn api_key(&self) -> anyhow::Result<String> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let login: Value = loop {
            let answer = client
                .post(self.url("/api/v1/auth/login"))
                .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
                .send()
                .await?;
            if answer.status().is_success() {
                break answer.json().await?;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "login failed: {}", answer.status());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let access = login["access_token"].as_str().ok_or_else(|| anyhow::anyhow!("no access_token"))?;
        let key: Value = client
            .post(self.url("/api/v1/api-keys"))
            .bearer_auth(access)
            .json(&json!({ "name": "scale-bench", "role": "viewer" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(key["key"].as_str().ok_or_else(|| anyhow::anyhow!("no key in the answer"))?.to_owned())
    }
}
