use std::process::ExitCode;

fn main() -> ExitCode {
    killkrill::cli::main()
}
