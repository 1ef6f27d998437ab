//! `killkrill admin create`: makes a user directly in the configured store (no server
//! needed), e.g. the first admin, or a new admin when every admin password is lost.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::FlagOverrides;
use crate::store::{self, Role};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    what: AdminWhat,
}

#[derive(Debug, Subcommand)]
enum AdminWhat {
    /// Create a user in the store the configuration names. The password is read from
    /// standard input (first line); on a terminal it is asked for without echo.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// TOML configuration file: the store it names is written.
    #[arg(long, env = "KILLKRILL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    username: String,
    /// admin, maintainer or viewer.
    #[arg(long, default_value = "admin")]
    role: Role,
    /// Read the password from standard input without prompting, even on a terminal.
    #[arg(long)]
    password_stdin: bool,
}

pub fn run(args: AdminArgs) -> ExitCode {
    let AdminWhat::Create(args) = args.what;
    let fail = |code: u8, message: String| {
        eprintln!("killkrill: error: {message}");
        ExitCode::from(code)
    };
    let flags = FlagOverrides { data_dir: args.data_dir.clone(), ..FlagOverrides::default() };
    let config = match super::load_config(args.config.as_deref(), flags) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let password = match read_password(args.password_stdin) {
        Ok(password) => password,
        Err(error) => return fail(1, format!("cannot read the password from standard input: {error}")),
    };
    if let Err(error) =
        crate::auth::check_username(&args.username).and(crate::auth::check_password(&password))
    {
        return fail(super::EXIT_CONFIG, error.to_string().replace("bad request: ", ""));
    }
    let created = match super::block_on(async {
        if let Err(error) = std::fs::create_dir_all(&config.data_dir) {
            return Err(crate::Error::DataDir { path: config.data_dir.clone(), message: error.to_string() });
        }
        let (store, auth) = store::open_with_auth(&config.store, &config.data_dir).await?;
        let created = crate::auth::create_user(auth.as_ref(), &args.username, &password, args.role).await;
        store.close().await;
        created
    }) {
        Ok(created) => created,
        Err(exit) => return exit,
    };
    match created {
        Ok(true) => {
            eprintln!("killkrill: user {} created with role {}", args.username, args.role);
            ExitCode::SUCCESS
        }
        Ok(false) => fail(1, format!("user {} exists already", args.username)),
        Err(error) => fail(1, error.to_string()),
    }
}

/// The first line of standard input, without its line end; prompted without echo when
/// standard input is a terminal and `--password-stdin` was not given.
fn read_password(no_prompt: bool) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let interactive = !no_prompt && stdin.is_terminal();
    let _echo = if interactive {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        EchoOff::new()
    } else {
        None
    };
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if interactive {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Terminal echo turned off until dropped.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0, checked below.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a valid termios for fd 0, copied from tcgetattr's.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(Self(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings tcgetattr returned.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
        }
    }
}
