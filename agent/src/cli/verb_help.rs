//! Help and completions for plugin verbs: what `srediag diagnose --help` adds from the running
//! agent, a verb's `--help` (the manifest's argument help), and the plugin subcommands shell
//! completions include. Everything shown comes from a manifest: escaped, like every table cell.

use crate::plugins::admin::{AdminRequest, request_within};
use crate::plugins::trust::manifest::{ArgType, CliVerb, OutputSpec};
use crate::plugins::verbs::PluginVerbs;
use crate::text::escape_control;
use clap::{Arg, ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in `diagnose` commands (a plugin of the same name is reached only through them).
pub const BUILTIN: [&str; 2] = ["seccomp", "bpf-stats"];

/// Static text after `srediag diagnose --help`.
pub const DIAGNOSE_AFTER_HELP: &str = "Plugin verbs: srediag diagnose <PLUGIN> <VERB> [--ARG VALUE …] [-o text|json] [--output FILE|-] [--socket PATH]\n(run with the agent up to list them; `srediag diagnose <PLUGIN> <VERB> --help` shows a verb's arguments)";

/// How long help waits for the agent.
const HELP_PATIENCE: Duration = Duration::from_secs(3);

/// Global flags taking a value (before the command).
const VALUE_FLAGS: [&str; 4] = ["-o", "--output", "--log-level", "--log-format"];

/// True for `srediag [globals] diagnose [flags]` without a subcommand, or with `-h`/`--help`
/// before one: the help then lists plugin verbs.
pub fn wants_diagnose_help(argv: &[OsString]) -> bool {
    let words: Vec<&str> = argv.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let mut i = 0;
    while i < words.len() && words[i].starts_with('-') {
        i += if VALUE_FLAGS.contains(&words[i]) {
            2
        } else {
            1
        };
    }
    if words.get(i) != Some(&"diagnose") {
        return false;
    }
    let mut help = false;
    let mut j = i + 1;
    while j < words.len() {
        let w = words[j];
        if w == "-h" || w == "--help" {
            help = true;
        } else if !w.starts_with('-') {
            return false; // a subcommand or a plugin: its own help
        }
        j += if VALUE_FLAGS.contains(&w) || w == "--socket" {
            2
        } else {
            1
        };
    }
    help || j == i + 1
}

/// `--socket PATH` from the command line, else `SREDIAG_ADMIN_SOCKET`, else the default.
pub fn socket_from(argv: &[OsString]) -> PathBuf {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--socket" {
            if let Some(p) = it.next() {
                return PathBuf::from(p);
            }
        } else if let Some(p) = a.to_str().and_then(|s| s.strip_prefix("--socket=")) {
            return PathBuf::from(p);
        }
    }
    std::env::var_os("SREDIAG_ADMIN_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::plugins::config::DEFAULT_ADMIN_SOCKET))
}

/// Every plugin's verbs from the running agent.
pub fn fetch(socket: &Path, patience: Duration) -> Result<Vec<PluginVerbs>, String> {
    let resp = request_within(socket, &AdminRequest::PluginVerbs, patience)?;
    if !resp.ok {
        return Err(resp
            .error
            .unwrap_or_else(|| "the agent refused the request".into()));
    }
    serde_json::from_value(resp.data).map_err(|e| format!("bad answer from the agent: {e}"))
}

fn running(state: &str) -> bool {
    matches!(state, "ready" | "degraded")
}

/// The plugin-verb part of `srediag diagnose --help`.
pub fn listing(socket: &Path, plugins: Result<&[PluginVerbs], &str>) -> String {
    let plugins = match plugins {
        Err(e) => {
            return format!(
                "Plugin verbs: the agent is not reachable at {} ({}); they are listed when `srediag run` is up (or pass --socket PATH).\n{DIAGNOSE_AFTER_HELP}",
                socket.display(),
                escape_control(e)
            );
        }
        Ok(p) => p,
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    for p in plugins {
        let name = escape_control(&p.plugin);
        let state = if running(&p.state) {
            String::new()
        } else {
            format!(" [{}: not running]", escape_control(&p.state))
        };
        for v in &p.verbs {
            rows.push((
                format!("{name} {}", escape_control(&v.name)),
                format!("{}{state}", escape_control(&v.summary)),
            ));
        }
    }
    if rows.is_empty() {
        return format!(
            "Plugin verbs: none (no plugin of the agent at {} declares verbs).\n{DIAGNOSE_AFTER_HELP}",
            socket.display()
        );
    }
    let width = rows
        .iter()
        .map(|(a, _)| a.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("Plugin verbs (from the agent at {}):\n", socket.display());
    for (a, b) in rows {
        out.push_str(&format!("  {a:width$}  {b}\n"));
    }
    out.push_str(
        "Usage: srediag diagnose <PLUGIN> <VERB> [--ARG VALUE …] [-o text|json] [--output FILE|-]; \
         `srediag diagnose <PLUGIN> <VERB> --help` shows a verb's arguments",
    );
    out
}

/// `cmd` with the plugin verbs of the agent at `socket` after `diagnose`'s help.
pub fn with_plugin_verbs(cmd: Command, socket: &Path) -> Command {
    let fetched = fetch(socket, HELP_PATIENCE);
    let text = listing(socket, fetched.as_deref().map_err(String::as_str));
    cmd.mut_subcommand("diagnose", |d| d.after_help(text))
}

fn value_name(a: &crate::plugins::trust::manifest::CliArg) -> &'static str {
    match a.kind {
        ArgType::String => "STRING",
        ArgType::Int => "INT",
        ArgType::Duration => "DURATION",
        ArgType::Bool => "BOOL",
        ArgType::Enum => "VALUE",
    }
}

fn outputs(v: &CliVerb) -> String {
    v.output
        .iter()
        .map(|o| match o {
            OutputSpec::File { media_type } => format!("file ({})", escape_control(media_type)),
            other => other.kind().as_str().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A clap command for verb `v` of `plugin`: rendered for `--help`, and (without the CLI's own
/// `-o`/`--output`, which exist globally) added to the tree for shell completions.
pub fn verb_command(plugin: &str, v: &CliVerb, own_flags: bool) -> Command {
    let summary = escape_control(&v.summary).into_owned();
    let mut long = summary.clone();
    if !v.description.is_empty() {
        long = format!(
            "{summary}\n\n{}",
            crate::text::escape_control_keep_newlines(&v.description)
        );
    }
    long.push_str(&format!("\n\nOutput: {}", outputs(v)));
    let mut c = Command::new(v.name.clone())
        .about(summary)
        .long_about(long)
        .disable_version_flag(true);
    if own_flags {
        c = c.bin_name(format!("srediag diagnose {plugin} {}", v.name));
    }
    for a in &v.args {
        let mut help = escape_control(&a.help).into_owned();
        if a.kind == ArgType::Int && (a.min.is_some() || a.max.is_some()) {
            help.push_str(&format!(" ({})", a.expected()));
        }
        if a.kind == ArgType::Duration {
            help.push_str(" (e.g. 10s, 500ms, 2m)");
        }
        let mut arg = Arg::new(a.name.clone())
            .long(a.name.clone())
            .help(help)
            .value_name(value_name(a))
            .required(a.required);
        arg = match a.kind {
            ArgType::Bool => arg
                .num_args(0..=1)
                .default_missing_value("true")
                .value_parser(["true", "false"]),
            ArgType::Enum => arg.value_parser(a.values.clone()),
            _ => arg.action(ArgAction::Set),
        };
        if let Some(d) = &a.default {
            arg = arg.default_value(d.clone());
        }
        c = c.arg(arg);
    }
    if own_flags {
        let kinds: Vec<&str> = v
            .kinds()
            .iter()
            .filter(|k| **k != srediag_plugin_sdk::control::OutputKind::File)
            .map(|k| k.as_str())
            .collect();
        if !kinds.is_empty() {
            c = c.arg(
                Arg::new("srediag-format")
                    .short('o')
                    .value_name("FORMAT")
                    .value_parser(kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>())
                    .help("Output format"),
            );
        }
        if v.output
            .iter()
            .any(|o| matches!(o, OutputSpec::File { .. }))
        {
            c = c.arg(
                Arg::new("srediag-output")
                    .long("output")
                    .value_name("FILE")
                    .help("Write the verb's file output to FILE (a new file: never overwritten, no symlink followed), or - for stdout"),
            );
        }
        c = c.arg(
            Arg::new("srediag-socket")
                .long("socket")
                .value_name("PATH")
                .help("The agent's admin socket"),
        );
    }
    c
}

/// `srediag diagnose <plugin> --help`: its verbs.
pub fn plugin_help(p: &PluginVerbs) -> String {
    let name = escape_control(&p.plugin);
    let mut out = format!("Verbs of plugin {name} ({}):\n", escape_control(&p.state));
    let width = p.verbs.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in &p.verbs {
        out.push_str(&format!(
            "  {:width$}  {}\n",
            escape_control(&v.name),
            escape_control(&v.summary)
        ));
    }
    if p.verbs.is_empty() {
        out.push_str(&format!(
            "  (none: {})\n",
            escape_control(p.note.as_deref().unwrap_or("no verbs"))
        ));
    }
    out.push_str(&format!(
        "Run `srediag diagnose {name} <VERB> --help` for a verb's arguments.\n"
    ));
    out
}

/// `cmd` with every plugin's verbs as `diagnose` subcommands (for shell completions).
pub fn with_plugin_subcommands(cmd: Command, plugins: &[PluginVerbs]) -> Command {
    cmd.mut_subcommand("diagnose", |mut d| {
        for p in plugins {
            if p.verbs.is_empty() || BUILTIN.contains(&p.plugin.as_str()) {
                continue;
            }
            let mut sub = Command::new(p.plugin.clone())
                .about(format!("Verbs of plugin {}", escape_control(&p.plugin)));
            for v in &p.verbs {
                sub = sub.subcommand(verb_command(&p.plugin, v, false));
            }
            d = d.subcommand(sub);
        }
        d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn diagnose_help_is_recognised_without_taking_subcommands() {
        for yes in [
            "srediag diagnose",
            "srediag diagnose --help",
            "srediag -o json diagnose -h",
            "srediag diagnose --socket /s --help",
        ] {
            assert!(wants_diagnose_help(&argv(yes)), "{yes}");
        }
        for no in [
            "srediag diagnose seccomp --help",
            "srediag diagnose perf cpu-profile --help",
            "srediag plugin list --help",
            "srediag --help",
        ] {
            assert!(!wants_diagnose_help(&argv(no)), "{no}");
        }
        assert_eq!(
            socket_from(&argv("srediag diagnose --socket /x/s.sock -h")),
            PathBuf::from("/x/s.sock")
        );
    }

    #[test]
    fn listing_says_when_the_agent_is_unreachable_and_escapes_manifest_text() {
        let s = listing(Path::new("/nope.sock"), Err("connection refused"));
        assert!(s.contains("not reachable at /nope.sock"), "{s}");
        let verb: CliVerb =
            serde_yaml::from_str("{name: hello, summary: \"says hi\", output: [{kind: text}]}")
                .unwrap();
        let p = PluginVerbs {
            plugin: "evil\u{1b}[31m".into(),
            plugin_type: "diagnostics".into(),
            state: "quarantined".into(),
            verbs: vec![verb.clone()],
            note: None,
        };
        let s = listing(Path::new("/s"), Ok(std::slice::from_ref(&p)));
        assert!(s.contains("evil\\x1b[31m hello"), "{s}");
        assert!(s.contains("[quarantined: not running]"), "{s}");
        assert!(!s.contains('\u{1b}'));
        // The completion tree builds (clap's debug assertions check it).
        let cmd = with_plugin_subcommands(
            <crate::cli::Cli as clap::CommandFactory>::command(),
            &[PluginVerbs {
                plugin: "diag".into(),
                verbs: vec![verb.clone()],
                ..p.clone()
            }],
        );
        let mut cmd = cmd;
        cmd.build();
        let mut help = verb_command("diag", &verb, true);
        assert!(help.render_long_help().to_string().contains("says hi"));
    }
}
