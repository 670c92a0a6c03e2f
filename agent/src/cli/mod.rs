//! The `srediag` command line: one module per command, each with an `execute` (bpfman's
//! layout). `main` parses, then calls [`execute`].

pub mod args;
pub mod exit;
mod output;

mod components;
mod diagnose;
mod generate;
mod plugin;
pub mod plugin_inspect;
pub mod plugin_install;
pub mod plugin_keygen;
pub mod plugin_sign;
mod plugin_verbs;
pub mod plugin_verify;
mod print_config;
mod probe;
mod run;
mod swap;
mod top;
mod validate;
mod verb_help;
mod version;

pub use args::{Cli, Command, DiagnoseCommand, Output, PluginCommand};
pub use exit::{CmdResult, Failure};

use crate::config::{self, Diagnostic, LoadError, ProcessEnv, Source};
use std::path::PathBuf;

/// Parses the command line; `srediag diagnose --help` also lists the running agent's plugin
/// verbs (asked over its admin socket only then).
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    if verb_help::wants_diagnose_help(&argv) {
        cmd = verb_help::with_plugin_verbs(cmd, &verb_help::socket_from(&argv));
    }
    let m = cmd.get_matches_from(argv);
    Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command.
pub fn execute(cli: Cli) -> CmdResult {
    let out = cli.output;
    match cli.command {
        Command::Run(c) => run::execute(
            c.config.config,
            c.bundles,
            c.run_dir,
            cli.log_level,
            cli.log_format,
        ),
        Command::Validate(c) => validate::execute(c.config, out),
        Command::PrintConfig(c) => print_config::execute(c.config, out),
        Command::Components(c) => components::execute(c.config, out),
        Command::Probe(s) => probe::execute(&s.socket, out),
        Command::Version => version::execute(out),
        Command::Plugin(PluginCommand::List(s)) => plugin::list(&s.socket, out),
        Command::Plugin(PluginCommand::Restart { name, socket }) => {
            plugin::restart(&socket.socket, &name)
        }
        Command::Plugin(PluginCommand::IpcSampling {
            name,
            every,
            socket,
        }) => plugin::ipc_sampling(&socket.socket, &name, every, out),
        Command::Top(t) => top::execute(&t, out),
        Command::Reload(s) => swap::reload(&s.socket, out),
        Command::Plugin(PluginCommand::Upgrade {
            name,
            bundle,
            socket,
        }) => swap::upgrade(&socket.socket, &name, bundle, out),
        Command::Diagnose(DiagnoseCommand::Seccomp { follow, socket }) => {
            diagnose::seccomp(&socket.socket, follow, out)
        }
        Command::Diagnose(DiagnoseCommand::BpfStats {
            seconds,
            wait,
            socket,
        }) => diagnose::bpf_stats(&socket.socket, seconds, wait, out),
        Command::Plugin(PluginCommand::Keygen(a)) => plugin_keygen::execute(a),
        Command::Plugin(PluginCommand::Sign(a)) => plugin_sign::execute(a),
        Command::Plugin(PluginCommand::Verify(a)) => plugin_verify::execute(a, out),
        Command::Plugin(PluginCommand::Inspect(a)) => plugin_inspect::execute(a, out),
        Command::Plugin(PluginCommand::Install(a)) => plugin_install::install(a, out),
        Command::Plugin(PluginCommand::Remove(a)) => plugin_install::remove(a),
        Command::Diagnose(DiagnoseCommand::Plugin(words)) => plugin_verbs::execute(&words, out),
        Command::Completions { shell, socket } => generate::completions(shell, &socket.socket),
        Command::Man => generate::man(),
    }
}

/// Loads a configuration for a command; errors become failures with the right exit code.
/// Returns the configuration, its warnings, and its display name.
fn load_config(path: Option<PathBuf>) -> Result<(config::Config, Vec<Diagnostic>), LoadErrorOut> {
    let source = path.map(Source::File).unwrap_or(Source::Embedded);
    config::load(&source, &ProcessEnv).map_err(LoadErrorOut)
}

/// A load error, printed the way every command prints it.
struct LoadErrorOut(LoadError);

impl LoadErrorOut {
    /// Prints diagnostics (or the one-line error) to stderr and gives the exit failure.
    fn report(self) -> Failure {
        match self.0 {
            LoadError::Invalid { file, diagnostics } => {
                for d in &diagnostics {
                    eprintln!("{}", crate::text::escape_control(&d.to_string()));
                }
                let n = diagnostics
                    .iter()
                    .filter(|d| d.severity == config::Severity::Error)
                    .count();
                Failure::new(
                    exit::CONFIG,
                    format!("{file}: configuration is invalid ({n} error(s))"),
                )
            }
            e @ LoadError::Read { .. } => Failure::new(
                exit::NO_INPUT,
                format!("{e} (check the path and permissions)"),
            ),
            e @ LoadError::TooLarge { .. } => Failure::new(exit::CONFIG, e.to_string()),
        }
    }
}
