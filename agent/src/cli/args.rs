//! Command-line types (clap derive). Parsing only; each command lives in its own module.

use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// srediag: a privileged host diagnostics agent (telemetry pipeline, sandboxed plugins, eBPF
/// observers).
#[derive(Debug, Parser)]
#[command(
    name = "srediag",
    version,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Output format of commands that print data.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Log filter (`info`, `debug`, `srediag=debug,warn`); overrides the config's
    /// `service.telemetry.logs.level`.
    #[arg(long, global = true, env = "SREDIAG_LOG")]
    pub log_level: Option<String>,
    /// Log line format; overrides `service.telemetry.logs.format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// Stable JSON for programs (documented in docs/cli.md).
    Json,
    /// YAML.
    Yaml,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent in the foreground (SIGINT/SIGTERM stop it gracefully).
    Run(RunArgs),
    /// Check a configuration file; exit 0 when valid, 78 when not.
    Validate(RequiredConfigArg),
    /// Print the effective configuration (defaults filled in, `${env:…}` expanded).
    PrintConfig(ConfigArg),
    /// List built-in components (kind, signals, stability) and the configuration's plugins.
    Components(ConfigArg),
    /// Report what this host supports for srediag (eBPF, cgroups, Landlock, seccomp), and each
    /// eBPF observer: attached how, or why not (asked from the running agent, else a trial load).
    Probe(SocketArg),
    /// Print version and build information.
    Version,
    /// Inspect and control plugins of the running agent.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Live per-plugin view from the running agent: CPU%, RSS, seccomp violations (kernel-observed).
    Top(TopArgs),
    /// Make the running agent read its configuration again and hot-swap the plugins whose
    /// settings or bundle changed (as SIGHUP does); an invalid configuration changes nothing.
    Reload(SocketArg),
    /// Diagnostics from the running agent: built-in ones, and the verbs of its plugins
    /// (`srediag diagnose <PLUGIN> <VERB> --help`).
    #[command(
        subcommand,
        arg_required_else_help = true,
        subcommand_value_name = "COMMAND | PLUGIN VERB",
        after_help = super::verb_help::DIAGNOSE_AFTER_HELP
    )]
    Diagnose(DiagnoseCommand),
    /// Generate shell completions (with the running agent's plugin verbs, when it answers).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
        /// Admin socket (plugin verbs).
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Generate the man page (roff) on stdout.
    #[command(hide = true)]
    Man,
}

/// `--config FILE`, optional (the embedded default otherwise).
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file (YAML). Without it, the embedded default configuration is used.
    #[arg(short, long, value_name = "FILE", env = "SREDIAG_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `srediag run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where bundles, the trust policy and the rollback marks live.
    #[command(flatten)]
    pub bundles: BundleDirs,
    /// Run directory: the instance lock (`agent.lock`, one root agent per run directory) and the
    /// plugins' scratch directories. Agents with different run directories are independent
    /// instances with their own plugin cgroups.
    #[arg(long, value_name = "DIR", env = "SREDIAG_RUN_DIR", default_value = crate::plugins::instance::DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
}

/// Overrides of `service.bundles` (flags win over the environment, which wins over the file).
#[derive(Debug, Args, Default, Clone)]
pub struct BundleDirs {
    /// Directory of installed plugin bundles; relative `bundle:` values resolve against it
    /// [default: service.bundles.directory, /var/lib/srediag/plugins].
    #[arg(long, value_name = "DIR", env = "SREDIAG_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// The trust policy [default: service.bundles.trust_policy, /etc/srediag/trust.yaml].
    #[arg(long, value_name = "FILE", env = "SREDIAG_TRUST_POLICY")]
    pub trust_policy: Option<PathBuf>,
    /// The rollback high-water marks (root-owned)
    /// [default: service.bundles.state_file, /var/lib/srediag/plugin-versions.json].
    #[arg(long, value_name = "FILE", env = "SREDIAG_PLUGIN_STATE")]
    pub plugin_state: Option<PathBuf>,
}

impl BundleDirs {
    /// `base` with these overrides applied.
    pub fn apply(
        &self,
        base: &crate::plugins::config::BundlesConfig,
    ) -> crate::plugins::config::BundlesConfig {
        let mut b = base.clone();
        if let Some(d) = &self.plugin_dir {
            b.directory = d.clone();
        }
        if let Some(p) = &self.trust_policy {
            b.trust_policy = p.clone();
        }
        if let Some(p) = &self.plugin_state {
            b.state_file = p.clone();
        }
        b
    }
}

/// `--config FILE`, required.
#[derive(Debug, Args)]
pub struct RequiredConfigArg {
    /// Configuration file (YAML) to check.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `srediag plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Generate an ECDSA P-256 signing key pair (PEM: `cosign.key` PKCS#8, `cosign.pub` SPKI).
    Keygen(super::plugin_keygen::KeygenArgs),
    /// Sign a bundle with a key: writes BUNDLE/manifest.sig (base64 ASN.1, as
    /// `cosign sign-blob --key`).
    Sign(super::plugin_sign::SignArgs),
    /// Verify a bundle against a trust policy; exit 0 when trusted, 65 + a reason code otherwise.
    Verify(super::plugin_verify::VerifyArgs),
    /// Show a bundle's manifest, digests and signatures (no trust decision).
    Inspect(super::plugin_inspect::InspectArgs),
    /// Verify a bundle, then copy it into the plugin directory atomically.
    Install(super::plugin_install::InstallArgs),
    /// Remove an installed bundle from the plugin directory.
    Remove(super::plugin_install::RemoveArgs),
    /// List plugins: name, version, type, state, pid, uptime, restarts, memory, CPU.
    List(SocketArg),
    /// Restart a plugin (also takes it out of quarantine).
    Restart {
        /// Plugin name.
        name: String,
        /// Admin socket.
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Hot-swap a plugin, make before break: verify the (new) bundle, start and ready the new
    /// incarnation, drain the old one; a failed swap changes nothing.
    Upgrade {
        /// Plugin name.
        name: String,
        /// Another bundle directory (default: the configured bundle, read again).
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
        /// Admin socket.
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Set a plugin's IPC latency sampling period at run time (no restart): batches whose
    /// sequence number is a multiple of N are measured by the ipc_latency eBPF observer; 0 = off.
    IpcSampling {
        /// Plugin name.
        name: String,
        /// Sampling period (0 = off).
        every: u32,
        /// Admin socket.
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// `srediag top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long, short = 'n')]
    pub iterations: Option<u64>,
    /// Admin socket.
    #[command(flatten)]
    pub socket: SocketArg,
}

/// `srediag diagnose …`.
#[derive(Debug, Subcommand)]
pub enum DiagnoseCommand {
    /// Seccomp violations of plugins seen by the kernel: the recent ones, then (with --follow)
    /// every new one as it happens (pid, plugin, syscall, action, time).
    Seccomp {
        /// Keep streaming new violations until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Admin socket.
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Run time of srediag's BPF programs: turns the kernel's accounting (BPF_ENABLE_STATS,
    /// ~35-55 ns per program run) on for --seconds, then reports (0: report only).
    BpfStats {
        /// How long the agent keeps the accounting on.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Wait until the window ends and report then.
        #[arg(long)]
        wait: bool,
        /// Admin socket.
        #[command(flatten)]
        socket: SocketArg,
    },
    /// A plugin's verb: `<PLUGIN> <VERB> [--ARG VALUE …] [-o text|json] [--output FILE]
    /// [--socket PATH]` (the verbs and their arguments come from the running agent).
    #[command(external_subcommand)]
    Plugin(Vec<OsString>),
}

/// `--socket PATH`.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The agent's admin socket.
    #[arg(long, value_name = "PATH", default_value = crate::plugins::config::DEFAULT_ADMIN_SOCKET, env = "SREDIAG_ADMIN_SOCKET")]
    pub socket: PathBuf,
}
