//! `killkrill-perf`: load generators for Killkrill benchmarks.
//!
//! `send` offers a message mix at a target and prints its report as one JSON line; `scan`
//! reads what a receiver stored and prints loss and latency from the markers in it; `write`
//! prints a mix as lines, for offline tools such as general-purpose compressors. See
//! docs/load-generators.md.

use std::fs::File;
use std::io::{self, BufReader, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use killkrill_perf::cli_value::{parse_cpu_list, parse_duration};
use killkrill_perf::mix::{MessageMix, MixKind};
use killkrill_perf::scan::{ScanOptions, WriteTime, scan};
use killkrill_perf::send::frame::MacAddr;
use killkrill_perf::send::{self, AfXdpOptions, Progress, Protocol, SendConfig};
use killkrill_perf::target::resolve_target;

#[derive(Parser)]
#[command(name = "killkrill-perf", version, about = "Killkrill load generators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a message mix to a loopback or 10.203.0.0/16 target.
    Send(SendArgs),
    /// Count loss and latency from the markers in a receiver's stored lines.
    Scan(ScanArgs),
    /// Write a message mix to stdout, one message per line.
    Write(WriteArgs),
}

#[derive(Args)]
struct WriteArgs {
    /// rfc5424, rfc3164, mixed, statsd or influx
    #[arg(long, default_value = "mixed")]
    mix: MixKind,
    #[arg(long)]
    count: u64,
    /// The store benchmark's messages are seed 7, run 1 (`control-plane/benches/store.rs`).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    run_id: u32,
    #[arg(long, default_value_t = 0)]
    first_seq: u64,
}

#[derive(Args)]
struct SendArgs {
    /// rfc5424, rfc3164, mixed, statsd or influx [default: the protocol's own]
    #[arg(long)]
    mix: Option<MixKind>,
    /// udp, tcp-octet, tcp-lf, statsd, influx or udp-afxdp
    #[arg(long, default_value = "udp")]
    protocol: Protocol,
    /// ADDR:PORT; only loopback and 10.203.0.0/16 are accepted
    #[arg(long)]
    target: String,
    /// Offered messages per second over all threads [default: flat out]
    #[arg(long)]
    rate: Option<u64>,
    /// Stop after this long (500ms, 20s, 2m) [default: 20s unless --count is given]
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many messages
    #[arg(long)]
    count: Option<u64>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// TCP connections over all threads
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// CPUs to pin sender threads to, e.g. 0,2-3
    // The full path keeps clap's derive from reading `Vec` as "many values": the parser
    // turns one `0,2-3` argument into the whole list.
    #[arg(long, value_parser = parse_cpu_list)]
    cpu: Option<::std::vec::Vec<usize>>,
    #[arg(long, default_value_t = 1)]
    run_id: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    first_seq: u64,
    /// udp-afxdp: the interface whose queue 0 the AF_XDP socket binds
    #[arg(long)]
    interface: Option<String>,
    /// udp-afxdp: source IPv4 [default: the interface's address]
    #[arg(long)]
    source: Option<std::net::Ipv4Addr>,
    /// udp-afxdp: the target's MAC [default: from the neighbour table, after an ARP probe]
    #[arg(long)]
    dest_mac: Option<MacAddr>,
}

#[derive(Args)]
struct ScanArgs {
    #[arg(long)]
    run_id: u32,
    /// A receiver's output file [default: stdin]
    #[arg(long)]
    file: Option<PathBuf>,
    /// Messages sent (the send report's sent_messages + failed_messages)
    #[arg(long)]
    sent: Option<u64>,
    #[arg(long, default_value_t = 0)]
    first_seq: u64,
    /// The last seq sent; an alternative to --sent
    #[arg(long, conflicts_with = "sent")]
    last_seq: Option<u64>,
    /// How lines say when they were written: none, rfc3339 or unix (a prefix)
    #[arg(long, default_value = "none")]
    write_time: WriteTime,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Send(args) => run_send(args),
        Command::Scan(args) => run_scan(args),
        Command::Write(args) => run_write(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("killkrill-perf: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_send(args: SendArgs) -> anyhow::Result<()> {
    let target = resolve_target(&args.target)?;
    let mut config = SendConfig::new(target, args.protocol);
    config.mix = args.mix.unwrap_or(args.protocol.default_mix());
    config.rate = args.rate;
    config.count = args.count;
    config.duration = match (args.duration, args.count) {
        (None, Some(_)) => None,
        (duration, _) => Some(duration.unwrap_or(Duration::from_secs(20))),
    };
    config.threads = args.threads;
    config.connections = args.connections;
    config.cpus = args.cpu.unwrap_or_default();
    config.run_id = args.run_id;
    config.seed = args.seed;
    config.first_seq = args.first_seq;
    config.afxdp = AfXdpOptions { interface: args.interface, source: args.source, dest_mac: args.dest_mac };

    let progress = Progress::default();
    let report = std::thread::scope(|scope| {
        let sender = scope.spawn(|| send::run(&config, &progress));
        report_progress_until_done(&progress, || sender.is_finished());
        sender.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the sender panicked")))
    })?;
    let mut stdout = io::stdout().lock();
    serde_json::to_writer(&mut stdout, &report).context("writing the report")?;
    writeln!(stdout).context("writing the report")?;
    Ok(())
}

/// One progress line a second on stderr, so stdout stays one JSON line.
fn report_progress_until_done(progress: &Progress, done: impl Fn() -> bool) {
    let start = Instant::now();
    let mut last = (start, 0u64);
    let mut next_line = start + Duration::from_secs(1);
    while !done() {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if now >= next_line {
            let (messages, _) = progress.snapshot();
            let rate = (messages - last.1) as f64 / (now - last.0).as_secs_f64();
            eprintln!("sent {messages} msgs, {rate:.0} msgs/s");
            last = (now, messages);
            next_line += Duration::from_secs(1);
        }
    }
}

fn run_write(args: WriteArgs) -> anyhow::Result<()> {
    let mut mix = MessageMix::new(args.mix, args.seed, args.run_id);
    let seqs = args.first_seq..args.first_seq.saturating_add(args.count);
    let mut stdout = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
    mix.write_lines(seqs, &mut stdout).context("writing messages")?;
    stdout.flush().context("writing messages")?;
    Ok(())
}

fn run_scan(args: ScanArgs) -> anyhow::Result<()> {
    let expected = args.sent.or_else(|| args.last_seq.map(|last| last.saturating_sub(args.first_seq) + 1));
    let options =
        ScanOptions { run_id: args.run_id, first_seq: args.first_seq, expected, write_time: args.write_time };
    let summary = match &args.file {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            scan(BufReader::with_capacity(1 << 20, file), &options)
        }
        None => scan(io::stdin().lock(), &options),
    }
    .context("reading lines to scan")?;
    println!("{}", serde_json::to_string(&summary).context("writing the scan summary")?);
    Ok(())
}
