//! Hidden generators: shell completions and the man page.

use super::Cli;
use super::exit::{CmdResult, FAILURE, Failure, ok};
use clap::CommandFactory;

/// Writes completions for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "srediag", &mut std::io::stdout());
    ok()
}

/// Writes the man page to stdout.
pub fn man() -> CmdResult {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| Failure::new(FAILURE, format!("cannot write man page: {e}")))?;
    ok()
}
