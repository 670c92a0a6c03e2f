//! The `srediag` binary: parse, dispatch, turn failures into one line and an exit code.

use srediag::cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    if !matches!(cli.command, cli::Command::Run(_)) {
        let level = cli.log_level.clone().unwrap_or_else(|| "warn".into());
        let _ = srediag::telemetry::init_logging(&level, cli.log_format.unwrap_or_default());
    }
    match cli::execute(cli) {
        Ok(code) => code,
        Err(f) => {
            // The message may quote the agent's answer or a bundle (plugin-controlled text).
            eprintln!(
                "srediag: error: {}",
                srediag::text::escape_control(&f.message)
            );
            ExitCode::from(f.code)
        }
    }
}
