//! `cargo xtask test`: every check and test of the project, as CI runs it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::util::{cargo, describe, exec};

#[derive(Args)]
pub struct TestArgs {
    /// Skip formatting and lint checks (tests only).
    #[arg(long)]
    pub no_lint: bool,
    /// Skip the short end-to-end run of the benchmark rig.
    #[arg(long)]
    pub no_bench_smoke: bool,
    /// Seconds of fuzzing per parser; 0 skips.
    #[arg(long, default_value_t = 10)]
    pub fuzz_seconds: u64,
    /// Skip the web UI's end-to-end tests in headless Chromium.
    #[arg(long)]
    pub no_browser_tests: bool,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    if !crate::setup::is_complete() {
        crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    }
    if !args.no_lint {
        exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
        exec(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))?;
        crate::ebpf::lint()?;
    }
    // The binary the tests start embeds web/dist.
    crate::ui::build()?;
    let mut totals = run_cargo_test()?;
    if !args.no_browser_tests {
        totals.add(&run_browser_tests()?);
    }
    let summary =
        format!("summary: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    if totals.failed > 0 {
        // The closing line still comes, so that CI reads the counts.
        println!("{summary}");
        bail!("{} browser test(s) failed", totals.failed);
    }
    crate::fuzz::run(args.fuzz_seconds)?;
    if !args.no_bench_smoke {
        bench_smoke()?;
        // The scale benchmark's three phases on 200,000 messages (no root needed).
        crate::bench::scale::smoke()?;
    }
    eprintln!("xtask test: all checks and tests passed.");
    // One closing line for the whole run, in the plain form CI reads, since cargo's own
    // last line is the (empty) doc-test summary of the last crate.
    println!("{summary}");
    Ok(())
}

/// The web UI's end-to-end tests (web/e2e, docs/web-ui.md): Node's test runner drives
/// headless Chromium against the debug `killkrill` binary the cargo tests just built, and
/// writes the screenshots in docs/screenshots.
fn run_browser_tests() -> anyhow::Result<TestTotals> {
    let binary = crate::util::target_dir().join("debug/killkrill");
    if !binary.is_file() {
        exec(cargo().args(["build", "--package", "killkrill"]))?;
    }
    let root = crate::util::workspace_root();
    let mut command = std::process::Command::new("node");
    command
        .current_dir(root.join("web"))
        .args(["--test", "--test-reporter=tap", "e2e/"])
        .env("E2E_KILLKRILL_BIN", &binary)
        .env("E2E_SCREENSHOTS", root.join("docs/screenshots"));
    eprintln!("xtask: $ {}", describe(&command));
    let mut child = command.stdout(Stdio::piped()).spawn().context("cannot start node --test")?;
    let stdout = child.stdout.take().context("node --test has no stdout")?;
    let mut totals = TestTotals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading node --test output")?;
        println!("{line}");
        totals.add_tap_line(&line);
    }
    let status = child.wait().context("waiting for node --test")?;
    if !status.success() && totals.failed == 0 {
        bail!("node --test failed ({status}) without a failed test: see its output above");
    }
    if totals.passed + totals.failed == 0 {
        bail!("the browser tests ran no test");
    }
    Ok(totals)
}

/// A few seconds of the benchmark rig (debug build, modest rate, no peers): the harness
/// itself keeps working, and nothing is lost at a rate any build must sustain.
fn bench_smoke() -> anyhow::Result<()> {
    if !crate::util::is_root() {
        eprintln!(
            "xtask test: benchmark smoke run skipped: the rig creates a network namespace and needs root"
        );
        return Ok(());
    }
    let results_dir = crate::util::workspace_root().join("target/bench-smoke");
    let scenarios = ["udp-5424", "tcp-octet"].map(String::from).to_vec();
    let args = crate::bench::ScenarioArgs {
        scenarios,
        duration: std::time::Duration::from_secs(2),
        rate: Some(5_000),
        debug_build: true,
        require_stored_percent: Some(99.0),
        results_dir: Some(results_dir),
        ..crate::bench::ScenarioArgs::smoke_defaults()
    };
    crate::bench::run_scenarios(&args)?;
    // The same rig once more with XDP steering to AF_XDP on the veth.
    let xdp =
        crate::bench::ScenarioArgs { scenarios: vec!["udp-5424".into()], capture: "xdp".into(), ..args };
    crate::bench::run_scenarios(&xdp)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    fn add(&mut self, other: &Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    /// Adds the closing counts of Node's TAP reporter: `# pass 7`, `# fail 0`, `# skipped 1`.
    fn add_tap_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("# ") else { return };
        let Some((kind, number)) = rest.split_once(' ') else { return };
        let Ok(number) = number.trim().parse::<u64>() else { return };
        match kind {
            "pass" => self.passed += number,
            "fail" | "cancelled" => self.failed += number,
            "skipped" | "todo" => self.ignored += number,
            _ => {}
        }
    }

    /// Adds a libtest summary line: `test result: ok. 6 passed; 0 failed; 1 ignored; ...`.
    fn add_summary_line(&mut self, line: &str) {
        let Some(counts) = line.strip_prefix("test result: ") else { return };
        for part in counts.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(number)) = (words.next(), words.next()) else { continue };
            let Ok(number) = number.parse::<u64>() else { continue };
            match kind {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                "ignored" => self.ignored += number,
                _ => {}
            }
        }
    }
}

/// Runs the workspace's tests, echoing their output, and totals the summaries.
fn run_cargo_test() -> anyhow::Result<TestTotals> {
    let mut command = cargo();
    command.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
    eprintln!("xtask: $ {}", describe(&command));
    let mut child = command.stdout(Stdio::piped()).spawn().context("cannot start cargo test")?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        totals.add_summary_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() || totals.failed > 0 {
        bail!("cargo test failed ({} passed, {} failed)", totals.passed, totals.failed);
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_totalled() {
        let mut totals = TestTotals::default();
        totals.add_summary_line(
            "test result: ok. 6 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        );
        totals.add_summary_line(
            "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        totals.add_summary_line("running 6 tests");
        assert_eq!(totals, TestTotals { passed: 8, failed: 3, ignored: 1 });
    }

    #[test]
    fn node_tap_closing_counts_are_totalled() {
        let mut totals = TestTotals::default();
        for line in [
            "# Subtest: search finds a message sent over UDP",
            "ok 1 - search finds a message sent over UDP",
            "# tests 9",
            "# suites 1",
            "# pass 7",
            "# fail 1",
            "# cancelled 1",
            "# skipped 2",
            "# todo 0",
            "# duration_ms 5123.4",
        ] {
            totals.add_tap_line(line);
        }
        assert_eq!(totals, TestTotals { passed: 7, failed: 2, ignored: 2 });
    }
}
