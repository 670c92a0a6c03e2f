//! `srediag diagnose <PLUGIN> <VERB> [--ARG VALUE …] [-o text|json] [--output FILE|-]
//! [--socket PATH]`: a plugin's verb, through the running agent.
//!
//! 1. The verbs come from the agent (`plugin_verbs`: the running incarnations' verified
//!    manifests). An unknown plugin or verb, or an argument the manifest does not declare or of
//!    the wrong type, is a usage error (exit 2, one line naming it) and nothing is sent to the
//!    plugin; the agent checks the arguments again itself. A plugin that is not running: exit 69.
//! 2. The output kind: `-o json` (or the global `-o json`), `--output FILE` for a verb's file
//!    output (`-` for stdout), else text. The file is created here, before the verb runs, as a
//!    new file (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600): never an existing file, never through a
//!    symlink, and the plugin never sees the path. A failed or interrupted verb's partial file is
//!    removed (when the path still names the file this command created).
//! 3. `plugin_invoke` streams frames: text is written with control characters other than
//!    newline and tab escaped (plugin text never reaches the terminal raw), JSON values one per
//!    line, file bytes as they come. Ctrl-C (SIGINT) or SIGTERM closes the connection, which
//!    cancels the verb in the plugin (exit 130).
//!
//! Exit codes: 0 ok, 1 the verb failed (or wrote too much, or wrote what it was not asked), 2
//! usage, 69 agent unreachable or plugin not running (or stopped during the verb), 73 the
//! output file exists or cannot be created, 75 the verb timed out (`verbs.timeout`), 130
//! interrupted.

use super::Output;
use super::exit::{
    CANT_CREATE, CmdResult, FAILURE, Failure, INTERRUPTED, TEMP_FAIL, UNAVAILABLE, USAGE, ok,
};
use super::verb_help::{self, BUILTIN};
use crate::plugins::admin::{AdminRequest, AdminResponse};
use crate::plugins::trust::manifest::{ArgType, CliVerb};
use crate::plugins::verbs::{EndStatus, Frame, PluginVerbs, Refusal};
use base64::Engine as _;
use srediag_plugin_sdk::control::OutputKind;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest line accepted from the agent (a frame holds at most one 64 KiB control message,
/// escaped and base64'd).
const MAX_LINE: u64 = 1 << 20;

/// How long the verb list may take.
const LIST_PATIENCE: Duration = Duration::from_secs(10);

fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(USAGE, msg)
}

/// The CLI's own options among a verb's words.
#[derive(Debug, Default, PartialEq)]
struct Own {
    format: Option<String>,
    output: Option<String>,
    help: bool,
}

/// Splits the words after `<PLUGIN> <VERB>` into the CLI's own options and the verb's
/// arguments (`--socket` was taken already; a declared argument's value is never taken for an
/// option).
fn split(verb: &CliVerb, words: &[String]) -> Result<(Own, Vec<String>), Failure> {
    let mut own = Own::default();
    let mut rest = Vec::new();
    let mut i = 0;
    let value = |i: &mut usize, flag: &str| -> Result<String, Failure> {
        let v = words
            .get(*i)
            .cloned()
            .ok_or_else(|| usage(format!("{flag} needs a value")))?;
        *i += 1;
        Ok(v)
    };
    while i < words.len() {
        let w = words[i].clone();
        i += 1;
        match w.as_str() {
            "-h" | "--help" => own.help = true,
            "-o" => own.format = Some(value(&mut i, "-o")?),
            "--output" => own.output = Some(value(&mut i, "--output")?),
            "--socket" => {
                value(&mut i, "--socket")?;
            }
            _ if w.starts_with("--output=") => own.output = Some(w["--output=".len()..].into()),
            _ if w.starts_with("--socket=") => {}
            _ if w.starts_with("-o") && w.len() > 2 => {
                own.format = Some(w[2..].trim_start_matches('=').into())
            }
            _ => {
                let takes_value = w
                    .strip_prefix("--")
                    .filter(|n| !n.contains('='))
                    .and_then(|n| verb.arg(n))
                    .is_some_and(|a| a.kind != ArgType::Bool);
                rest.push(w);
                if takes_value && let Some(v) = words.get(i) {
                    rest.push(v.clone());
                    i += 1;
                }
            }
        }
    }
    Ok((own, rest))
}

/// Which output to ask for.
fn choose(label: &str, verb: &CliVerb, own: &Own, global: Output) -> Result<OutputKind, Failure> {
    let kinds = verb.kinds();
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let format = match (own.format.as_deref(), global) {
        (Some("text" | "table"), _) => Some(OutputKind::Text),
        (None, Output::Table) => None, // the default: text, or what the verb writes
        (Some("json"), _) | (None, Output::Json) => Some(OutputKind::Json),
        (Some(other), _) => {
            return Err(usage(format!(
                "{label}: -o {other:?}: a plugin verb prints text or json"
            )));
        }
        (None, Output::Yaml) => {
            return Err(usage(format!(
                "{label}: -o yaml: a plugin verb prints text or json"
            )));
        }
    };
    if let Some(file) = &own.output {
        if ["text", "json", "table", "yaml"].contains(&file.as_str()) {
            return Err(usage(format!(
                "{label}: --output {file} names the file for the verb's file output; for the format use -o {file} (a file of that name: --output ./{file})"
            )));
        }
        if !kinds.contains(&OutputKind::File) {
            return Err(usage(format!(
                "{label} writes no file (it writes: {}); --output is for file outputs, redirect stdout instead",
                names.join(", ")
            )));
        }
        if format.is_some() {
            return Err(usage(format!(
                "{label}: -o and --output FILE: the verb writes one of them; choose"
            )));
        }
        return Ok(OutputKind::File);
    }
    match format {
        Some(k) if kinds.contains(&k) => Ok(k),
        Some(k) => Err(usage(format!(
            "{label} writes no {} output (it writes: {})",
            k.as_str(),
            names.join(", ")
        ))),
        None if kinds.contains(&OutputKind::Text) => Ok(OutputKind::Text),
        None if kinds.contains(&OutputKind::Json) => Ok(OutputKind::Json),
        None => Err(usage(format!(
            "{label} writes a file ({}): give --output FILE, or --output - for stdout",
            verb.output
                .iter()
                .filter_map(|o| match o {
                    crate::plugins::trust::manifest::OutputSpec::File { media_type } =>
                        Some(media_type.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Where file output goes.
enum Sink {
    Stdout,
    File { path: PathBuf, file: std::fs::File },
}

impl Sink {
    /// Creates `path` as a new file (never an existing one, never through a symlink).
    fn create(path: &str) -> Result<Sink, Failure> {
        use std::os::unix::fs::OpenOptionsExt;
        if path == "-" {
            return Ok(Sink::Stdout);
        }
        let p = PathBuf::from(path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        "exists (an output file is never overwritten; remove it or name another)"
                            .to_string()
                    }
                    _ => e.to_string(),
                };
                Failure::new(CANT_CREATE, format!("--output {}: {why}", p.display()))
            })?;
        Ok(Sink::File { path: p, file })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(bytes)?;
                o.flush()
            }
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }

    /// The verb did not finish: remove the partial file, if the path still names it.
    fn discard(self) {
        use std::os::unix::fs::MetadataExt;
        if let Sink::File { path, file } = self {
            let ours = match (file.metadata(), std::fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            drop(file);
            if ours {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn finish(self) -> Result<(), Failure> {
        if let Sink::File { path, file } = self {
            file.sync_all()
                .map_err(|e| Failure::new(FAILURE, format!("--output {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

fn find<'a>(plugins: &'a [PluginVerbs], name: &str) -> Option<&'a PluginVerbs> {
    plugins.iter().find(|p| p.plugin == name)
}

fn running(p: &PluginVerbs) -> bool {
    matches!(p.state.as_str(), "ready" | "degraded")
}

/// Runs `srediag diagnose <PLUGIN> <VERB> …`.
pub fn execute(words: &[OsString], global: Output) -> CmdResult {
    let words: Vec<String> = words
        .iter()
        .map(|w| {
            w.to_str()
                .map(str::to_string)
                .ok_or_else(|| usage(format!("argument {w:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let plugin = words.first().cloned().unwrap_or_default();
    let argv: Vec<OsString> = words.iter().map(OsString::from).collect();
    let socket = verb_help::socket_from(&argv);
    let plugins = verb_help::fetch(&socket, LIST_PATIENCE).map_err(|e| {
        Failure::new(
            UNAVAILABLE,
            format!(
                "plugin verbs come from the running agent, and it cannot be reached: {e} (built-in diagnose commands: {})",
                BUILTIN.join(", ")
            ),
        )
    })?;
    let Some(p) = find(&plugins, &plugin) else {
        let with: Vec<&str> = plugins
            .iter()
            .filter(|p| !p.verbs.is_empty())
            .map(|p| p.plugin.as_str())
            .collect();
        return Err(usage(format!(
            "unknown diagnose command or plugin {plugin:?} (built-in: {}; plugins with verbs: {})",
            BUILTIN.join(", "),
            if with.is_empty() {
                "none".into()
            } else {
                with.join(", ")
            }
        )));
    };
    let verb_name = words.get(1).filter(|w| !w.starts_with('-'));
    let Some(verb_name) = verb_name else {
        if words.iter().any(|w| w == "-h" || w == "--help") {
            print!("{}", verb_help::plugin_help(p));
            return ok();
        }
        eprint!("{}", verb_help::plugin_help(p));
        return Err(usage(format!(
            "missing verb: srediag diagnose {plugin} <VERB>"
        )));
    };
    let Some(verb) = p.verbs.iter().find(|v| &v.name == verb_name) else {
        if !running(p) && p.verbs.is_empty() {
            return Err(not_running(p));
        }
        let known: Vec<&str> = p.verbs.iter().map(|v| v.name.as_str()).collect();
        return Err(usage(format!(
            "plugin {plugin} has no verb {verb_name:?} (verbs: {})",
            if known.is_empty() {
                p.note.clone().unwrap_or_else(|| "none".into())
            } else {
                known.join(", ")
            }
        )));
    };
    let label = format!("{plugin} {verb_name}");
    let (own, rest) = split(verb, &words[2..])?;
    if own.help {
        let mut c = verb_help::verb_command(&plugin, verb, true);
        print!("{}", c.render_long_help());
        if !running(p) {
            println!(
                "(plugin {plugin} is {}: its verbs run when it does)",
                p.state
            );
        }
        return ok();
    }
    if !running(p) {
        return Err(not_running(p));
    }
    let args = verb
        .parse_words(&rest)
        .and_then(|a| verb.check_args(&a).map(|_| a))
        .map_err(|e| usage(format!("{label}: {e}")))?;
    let output = choose(&label, verb, &own, global)?;
    let sink = match (&output, &own.output) {
        (OutputKind::File, Some(path)) => Some(Sink::create(path)?),
        (OutputKind::File, None) => Some(Sink::Stdout),
        _ => None,
    };
    let req = AdminRequest::PluginInvoke {
        plugin: plugin.clone(),
        verb: verb.name.clone(),
        args,
        output,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(FAILURE, format!("cannot start the runtime: {e}")))?;
    rt.block_on(invoke(&socket, &req, &label, sink))
}

fn not_running(p: &PluginVerbs) -> Failure {
    Failure::new(
        UNAVAILABLE,
        format!(
            "plugin {} is not running ({}); its verbs run when it does (`srediag plugin list`, `srediag plugin restart {}`)",
            p.plugin, p.state, p.plugin
        ),
    )
}

/// Reads one line (at most [`MAX_LINE`] bytes); `None` at EOF.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    rd: &mut R,
) -> Result<Option<Vec<u8>>, Failure> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut buf = Vec::new();
    let n = (&mut *rd)
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| Failure::new(UNAVAILABLE, format!("admin socket read: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
        return Err(Failure::new(
            FAILURE,
            "the agent sent a line over 1 MiB".to_string(),
        ));
    }
    Ok(Some(buf))
}

/// Streams the invocation; Ctrl-C or SIGTERM closes the connection (the agent cancels the verb).
async fn invoke(
    socket: &Path,
    req: &AdminRequest,
    label: &str,
    mut sink: Option<Sink>,
) -> CmdResult {
    use tokio::io::AsyncWriteExt;
    let unavailable = |e: String| Failure::new(UNAVAILABLE, e);
    let fail = |sink: Option<Sink>, f: Failure| -> CmdResult {
        if let Some(s) = sink {
            s.discard();
        }
        Err(f)
    };
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) => {
            return fail(
                sink,
                unavailable(format!(
                    "cannot connect to the agent's admin socket {}: {e}",
                    socket.display()
                )),
            );
        }
    };
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = wr.write_all(&line).await {
        return fail(sink, unavailable(format!("admin socket write: {e}")));
    }
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            return fail(sink, Failure::new(FAILURE, format!("signal handler: {e}")));
        }
    };
    let mut started = false;
    loop {
        let next = tokio::select! {
            l = read_line(&mut rd) => l,
            _ = int.recv() => Err(interrupted()),
            _ = term.recv() => Err(interrupted()),
        };
        let line = match next {
            Ok(Some(l)) => l,
            Ok(None) => {
                return fail(
                    sink,
                    unavailable(format!("{label}: the agent closed the connection")),
                );
            }
            Err(f) => {
                // Dropping the connection is the cancel: the agent tells the plugin.
                drop(wr);
                return fail(sink, f);
            }
        };
        if !started {
            started = true;
            let resp: AdminResponse = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    return fail(sink, unavailable(format!("bad answer from the agent: {e}")));
                }
            };
            if !resp.ok {
                let msg = resp
                    .error
                    .unwrap_or_else(|| "the agent refused the verb".into());
                let code = match serde_json::from_value::<Refusal>(resp.data["refusal"].clone()) {
                    Ok(r) if r.is_usage() => USAGE,
                    Ok(_) => UNAVAILABLE,
                    Err(_) => FAILURE,
                };
                return fail(sink, Failure::new(code, msg));
            }
            continue;
        }
        let frame: Frame = match serde_json::from_slice(&line) {
            Ok(f) => f,
            Err(e) => {
                return fail(
                    sink,
                    Failure::new(FAILURE, format!("bad frame from the agent: {e}")),
                );
            }
        };
        match frame {
            Frame::Text { text } => {
                let shown = crate::text::escape_control_keep_layout(&text);
                let mut o = std::io::stdout().lock();
                if o.write_all(shown.as_bytes())
                    .and_then(|_| o.flush())
                    .is_err()
                {
                    return ok(); // stdout closed (`| head`): closing the connection cancels
                }
            }
            Frame::Json { value } => {
                let mut o = std::io::stdout().lock();
                if writeln!(o, "{value}").and_then(|_| o.flush()).is_err() {
                    return ok();
                }
            }
            Frame::File { data, .. } => {
                let bytes = match base64::engine::general_purpose::STANDARD.decode(&data) {
                    Ok(b) => b,
                    Err(e) => {
                        return fail(
                            sink,
                            Failure::new(FAILURE, format!("bad file data from the agent: {e}")),
                        );
                    }
                };
                let written = match sink.as_mut() {
                    Some(s) => s.write(&bytes),
                    None => Ok(()),
                };
                if let Err(e) = written {
                    return fail(
                        sink,
                        Failure::new(FAILURE, format!("{label}: writing the output: {e}")),
                    );
                }
            }
            Frame::End { status, message } => {
                let message = crate::text::escape_truncated(&message, 1024);
                return match status {
                    EndStatus::Ok => {
                        if let Some(s) = sink {
                            s.finish()?;
                        }
                        if !message.is_empty() {
                            eprintln!("srediag: {label}: {message}");
                        }
                        ok()
                    }
                    EndStatus::Timeout => {
                        fail(sink, Failure::new(TEMP_FAIL, format!("{label}: {message}")))
                    }
                    EndStatus::PluginStopped => fail(
                        sink,
                        Failure::new(UNAVAILABLE, format!("{label}: {message}")),
                    ),
                    EndStatus::Failed if message.is_empty() => {
                        fail(sink, Failure::new(FAILURE, format!("{label} failed")))
                    }
                    other => fail(
                        sink,
                        Failure::new(FAILURE, format!("{label}: {}: {message}", other.as_str())),
                    ),
                };
            }
        }
    }
}

fn interrupted() -> Failure {
    Failure::new(
        INTERRUPTED,
        "interrupted: the verb is cancelled in the plugin".to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb() -> CliVerb {
        serde_yaml::from_str(
            r#"
name: cpu-profile
summary: profile
args:
  - {name: pid, type: int}
  - {name: label, type: string}
  - {name: kernel, type: bool}
output:
  - {kind: text}
  - {kind: file, media_type: image/svg+xml}
"#,
        )
        .unwrap()
    }

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn own_options_are_split_from_arguments_but_never_take_their_values() {
        let (own, rest) = split(
            &verb(),
            &w("--pid 7 -o json --label -o --kernel --output f.svg --socket /s"),
        )
        .unwrap();
        assert_eq!(own.format.as_deref(), Some("json"));
        assert_eq!(own.output.as_deref(), Some("f.svg"));
        assert_eq!(rest, w("--pid 7 --label -o --kernel"));
        let (own, _) = split(&verb(), &w("-ojson --output=- --help")).unwrap();
        assert_eq!(
            own,
            Own {
                format: Some("json".into()),
                output: Some("-".into()),
                help: true
            }
        );
    }

    #[test]
    fn the_output_kind_follows_the_flags_and_the_declaration() {
        let v = verb();
        let own = |format: Option<&str>, output: Option<&str>| Own {
            format: format.map(str::to_string),
            output: output.map(str::to_string),
            help: false,
        };
        assert_eq!(
            choose("p v", &v, &own(None, None), Output::Table).unwrap(),
            OutputKind::Text
        );
        assert_eq!(
            choose("p v", &v, &own(None, Some("x.svg")), Output::Table).unwrap(),
            OutputKind::File
        );
        for (f, o, g) in [
            (Some("json"), None, Output::Table),
            (None, None, Output::Json),
            (None, None, Output::Yaml),
            (None, Some("json"), Output::Table),
            (Some("json"), Some("x"), Output::Table),
        ] {
            let e = choose("p v", &v, &own(f, o), g).unwrap_err();
            assert_eq!(e.code, USAGE, "{}", e.message);
            assert!(!e.message.contains('\n'));
        }
    }

    #[test]
    fn an_existing_file_or_symlink_is_never_written() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for p in [&target, &link] {
            let e = Sink::create(p.to_str().unwrap()).err().unwrap();
            assert_eq!(e.code, CANT_CREATE, "{}", e.message);
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        let new = d.path().join("new.svg");
        let mut s = Sink::create(new.to_str().unwrap()).unwrap();
        s.write(b"partial").unwrap();
        s.discard();
        assert!(!new.exists(), "a partial file is removed");
    }
}
