//! `cargo xtask bench`: end-to-end scenarios on a network-namespace rig, side by side with
//! rsyslog and syslog-ng (`docs/performance.md`), and `cargo xtask bench micro` for the
//! criterion benchmarks of the parsers.

mod micro;
mod netns;
mod process;
pub mod scale;
mod scenario;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::util::{cargo, exec, workspace_root};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    micro: Option<MicroCommand>,
    #[command(flatten)]
    scenarios: ScenarioArgs,
}

#[derive(Subcommand)]
enum MicroCommand {
    /// The criterion benchmarks of the parsers.
    Micro(micro::MicroArgs),
    /// A store of N messages (default 100 million): fill it, then search latency or API
    /// request rate through `killkrill serve` on it.
    Scale(Box<scale::ScaleArgs>),
}

#[derive(Args, Clone)]
pub struct ScenarioArgs {
    /// Scenarios to run: udp-5424, udp-3164, tcp-octet, tcp-lf, mixed, query (search
    /// latency under ingest), statsd, influx (loss from the appliance's own counters).
    #[arg(default_values_t = [String::from("udp-5424")])]
    pub scenarios: Vec<String>,
    /// Peers to run on the same rig with the same load: rsyslog, syslog-ng.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// How long each sender runs, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Offered rate in messages/s; flat out when absent.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Search for the highest offered rate with less than 0.1% loss.
    #[arg(long)]
    pub find_max: bool,
    /// Send UDP scenarios through AF_XDP (frames built by the generator) instead of
    /// sendmmsg, for rates a socket sender cannot offer.
    #[arg(long)]
    pub afxdp_sender: bool,
    /// Sender threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// TCP connections (tcp-* scenarios).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// CPU the receiver (appliance or peer) is pinned to.
    #[arg(long, default_value_t = 0)]
    pub receiver_cpu: usize,
    /// CPU the sender is pinned to.
    #[arg(long, default_value_t = 1)]
    pub sender_cpu: usize,
    /// Where Killkrill's threads run, one run each: shared (the whole process on the
    /// receiver CPU, as the peers) or split (data plane on the receiver CPU, control plane
    /// on the sender CPU). E.g. `shared,split`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "shared")]
    pub killkrill_layout: Vec<targets::Layout>,
    /// Killkrill's capture mode: socket (recvmmsg), xdp (XDP steering to AF_XDP on the
    /// rig's veth, failing if it cannot attach) or auto.
    #[arg(long, default_value = "socket", value_parser = ["socket", "xdp", "auto"])]
    pub capture: String,
    /// Use the debug build (fast to build; for smoke runs, never for figures).
    #[arg(long)]
    pub debug_build: bool,
    /// Fail unless Killkrill stored at least this share of what was sent (smoke runs).
    #[arg(long)]
    pub require_stored_percent: Option<f64>,
    /// Where the JSON, markdown and SVG reports go.
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
}

impl ScenarioArgs {
    /// The defaults of the command line, for callers that build the arguments in code.
    pub fn smoke_defaults() -> Self {
        Self {
            scenarios: vec!["udp-5424".into()],
            peers: Vec::new(),
            duration: Duration::from_secs(2),
            rate: None,
            find_max: false,
            afxdp_sender: false,
            threads: 1,
            connections: 64,
            receiver_cpu: 0,
            sender_cpu: 1,
            killkrill_layout: vec![targets::Layout::Shared],
            capture: "socket".into(),
            debug_build: true,
            require_stored_percent: None,
            results_dir: None,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    killkrill_perf::cli_value::parse_duration(text).map_err(|error| error.to_string())
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.micro {
        Some(MicroCommand::Micro(micro)) => return micro::run(micro),
        Some(MicroCommand::Scale(scale)) => return scale::run(scale),
        None => {}
    }
    run_scenarios(&args.scenarios)
}

/// Binaries the rig runs.
pub struct Binaries {
    pub killkrill: PathBuf,
    pub perf: PathBuf,
}

fn build(debug: bool) -> anyhow::Result<Binaries> {
    let mut command = cargo();
    command.args(["build", "--package", "killkrill", "--package", "killkrill-perf"]);
    if !debug {
        command.arg("--release");
    }
    exec(&mut command)?;
    // Where cargo put them: CARGO_TARGET_DIR when set (as cargo itself reads it).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| workspace_root().join("target"), |dir| workspace_root().join(dir));
    let dir = target.join(if debug { "debug" } else { "release" });
    Ok(Binaries { killkrill: dir.join("killkrill"), perf: dir.join("killkrill-perf") })
}

/// Ctrl-C stops the children and removes the rig's namespace. Installed once per process:
/// `cargo xtask test` runs the rig more than once.
fn install_interrupt_cleanup() -> anyhow::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                eprintln!("xtask bench: interrupted; cleaning up");
                process::stop_all();
                netns::remove_current();
                std::process::exit(130);
            })
            .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(|error| anyhow::anyhow!("installing the Ctrl-C handler: {error}"))
}

pub fn run_scenarios(args: &ScenarioArgs) -> anyhow::Result<()> {
    let scenarios: Vec<scenario::Scenario> =
        args.scenarios.iter().map(|name| scenario::Scenario::named(name)).collect::<anyhow::Result<_>>()?;
    let peers: Vec<targets::Peer> =
        args.peers.iter().map(|name| targets::Peer::named(name)).collect::<anyhow::Result<_>>()?;
    if !crate::setup::is_complete() {
        crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    }
    let binaries = build(args.debug_build)?;
    let rig = netns::NetnsRig::create()?;
    install_interrupt_cleanup()?;
    let results_dir = args.results_dir.clone().unwrap_or_else(|| workspace_root().join("perf/results"));
    let mut failures = Vec::new();
    for scenario in &scenarios {
        if let Some(reason) = scenario.unavailable() {
            eprintln!("xtask bench: {}: skipped: {reason}", scenario.name);
            continue;
        }
        let result = scenario::run(scenario, &peers, args, &rig, &binaries)?;
        let written = killkrill_perf::report::write_reports(&results_dir, &result)?;
        println!("{}", std::fs::read_to_string(&written.markdown).unwrap_or_default());
        eprintln!(
            "xtask bench: wrote {}, {} and {}",
            written.json.display(),
            written.markdown.display(),
            written.svg.display()
        );
        if let Some(required) = args.require_stored_percent {
            for killkrill in result.targets.iter().filter(|target| target.name == "killkrill") {
                let stored = 100.0 - killkrill.loss_percent;
                if stored < required {
                    failures
                        .push(format!("{}: Killkrill stored {stored:.2}% (< {required}%)", scenario.name));
                }
            }
        }
    }
    drop(rig);
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
