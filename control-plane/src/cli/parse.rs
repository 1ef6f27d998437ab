//! `killkrill parse`: reads standard input and prints one JSON object per message, using
//! exactly the parsers the ingest path uses. Shapes: docs/parse-command.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Args, ValueEnum};
use killkrill_parsers::framing::SyslogFramer;
use killkrill_parsers::influx::InfluxPrecision;
use killkrill_parsers::json::{frame_to_json, influx_to_json, statsd_to_json, syslog_to_json};
use killkrill_parsers::syslog::{ParseOptions, parse_syslog};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InputFormat {
    /// One syslog datagram per line.
    Syslog,
    /// One statsd / DogStatsD datagram per line.
    Statsd,
    /// One Influx line-protocol datagram per line.
    Influx,
    /// All of standard input as one TCP stream, cut into RFC 6587 frames.
    Frames,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// What standard input holds.
    #[arg(long, value_enum)]
    format: InputFormat,
    /// Each input line is base64 (so a datagram may hold newlines and any byte).
    #[arg(long)]
    b64: bool,
    /// Receive time used to infer the year of year-less timestamps (default: now).
    #[arg(long, value_name = "RFC3339")]
    received_at: Option<jiff::Timestamp>,
    /// Zone for timestamps that carry none (default UTC), e.g. Europe/Paris.
    #[arg(long, value_name = "TZ", default_value = "UTC")]
    timezone: String,
    /// Longest frame kept whole by `--format frames`.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    max_frame_bytes: usize,
    /// Unit of Influx timestamps.
    #[arg(long, value_enum, default_value = "ns")]
    precision: Precision,
}

const EXIT_USAGE: u8 = 2;

pub fn run(args: &ParseArgs) -> ExitCode {
    match parse_stdin(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(ParseCommandError::Usage(message)) => {
            eprintln!("killkrill parse: error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        // The reader of our output went away (e.g. `| head`): nothing left to say.
        Err(ParseCommandError::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(ParseCommandError::Io(error)) => {
            eprintln!("killkrill parse: error: {error}");
            ExitCode::FAILURE
        }
    }
}

enum ParseCommandError {
    Usage(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ParseCommandError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

/// Returns false when some input line could not be decoded (it still got its object).
fn parse_stdin(args: &ParseArgs) -> Result<bool, ParseCommandError> {
    let time_zone = jiff::tz::TimeZone::get(&args.timezone)
        .map_err(|error| ParseCommandError::Usage(format!("--timezone {:?}: {error}", args.timezone)))?;
    if args.max_frame_bytes == 0 {
        return Err(ParseCommandError::Usage("--max-frame-bytes must be above 0".to_owned()));
    }
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if let InputFormat::Frames = args.format {
        parse_frames(stdin, &mut stdout, args.max_frame_bytes)?;
        stdout.flush()?;
        return Ok(true);
    }
    let options =
        ParseOptions { received_at: args.received_at.unwrap_or_else(jiff::Timestamp::now), time_zone };
    let precision = match args.precision {
        Precision::Ns => InfluxPrecision::Nanoseconds,
        Precision::Us => InfluxPrecision::Microseconds,
        Precision::Ms => InfluxPrecision::Milliseconds,
        Precision::S => InfluxPrecision::Seconds,
    };
    let mut all_decoded = true;
    let mut reader = BufReader::new(stdin);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let decoded;
        let datagram: &[u8] = if args.b64 {
            match base64::engine::general_purpose::STANDARD.decode(line.trim_ascii()) {
                Ok(bytes) => {
                    decoded = bytes;
                    &decoded
                }
                Err(error) => {
                    all_decoded = false;
                    let object = json!({ "error": format!("input line is not base64: {error}") });
                    writeln!(stdout, "{object}")?;
                    continue;
                }
            }
        } else {
            &line
        };
        let object: Value = match args.format {
            InputFormat::Syslog => syslog_to_json(datagram, &parse_syslog(datagram, &options)),
            InputFormat::Statsd => statsd_to_json(datagram),
            InputFormat::Influx => influx_to_json(datagram, precision),
            InputFormat::Frames => unreachable!("handled above"),
        };
        writeln!(stdout, "{object}")?;
    }
    stdout.flush()?;
    Ok(all_decoded)
}

/// Feeds standard input to the framer in whatever pieces each read returns, as a TCP
/// listener would, and prints every frame.
fn parse_frames(
    mut input: impl Read,
    output: &mut impl Write,
    max_frame_bytes: usize,
) -> std::io::Result<()> {
    let mut framer = SyslogFramer::new(max_frame_bytes);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        framer.feed(&chunk[..read]);
        while let Some(frame) = framer.next_frame() {
            writeln!(output, "{}", frame_to_json(&frame))?;
        }
    }
    while let Some(frame) = framer.finish() {
        writeln!(output, "{}", frame_to_json(&frame))?;
    }
    Ok(())
}
