//! Hidden generators: shell completions and the man page.

use super::Cli;
use super::exit::{CmdResult, FAILURE, Failure, ok};
use clap::CommandFactory;
use std::path::Path;
use std::time::Duration;

/// Writes completions for `shell` to stdout: the built-in commands, plus the verbs (and their
/// arguments) of the running agent's plugins under `diagnose` when it answers on `socket` (else
/// a note on stderr: regenerate once it runs).
pub fn completions(shell: clap_complete::Shell, socket: &Path) -> CmdResult {
    let mut cmd = Cli::command();
    match super::verb_help::fetch(socket, Duration::from_secs(3)) {
        Ok(plugins) => cmd = super::verb_help::with_plugin_subcommands(cmd, &plugins),
        Err(e) => eprintln!(
            "srediag: plugin verbs not included: the agent is not reachable at {} ({})",
            socket.display(),
            crate::text::escape_control(&e)
        ),
    }
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
