//! Plugin verbs through the real CLI (issue 13 §2): `srediag diagnose <plugin> <verb>` against a
//! running agent with a diagnostics plugin (`srediag-diag-plugin`, SDK `serve_diagnostics`) and
//! a hostile one (`srediag-raw-plugin verb-flood`), each from a bundle whose manifest declares
//! the verbs. Text, JSON and file output; argument errors (exit 2, one line, nothing reaches the
//! plugin, and the agent refuses the same arguments from a client that skips the CLI);
//! timeouts; Ctrl-C reaching the plugin; a stopped plugin (exit 69); an output flood bounded in
//! the agent's memory and counted as a violation; a client that stops reading holding neither
//! memory nor the plugin's heartbeats hostage.
//!
//! Privileged (the agent needs root for plugins): without root the tests print why they skip,
//! unless `CI=true`. Each agent has its own run directory.

use serde_json::Value;
use srediag_tests::bundles::make_bundle;
use srediag_tests::plugins::*;
use srediag_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIAG_CLI: &str = r#"cli:
  - name: hello
    summary: Say hello
    description: "Greets someone.\nAs often as asked."
    args:
      - {name: name, type: string, required: true, help: who to greet}
      - {name: count, type: int, default: 1, min: 1, max: 100, help: how many times}
      - {name: loud, type: bool, help: shout}
    output: [{kind: text}, {kind: json}]
  - name: args
    summary: Echo the typed arguments
    args:
      - {name: pid, type: int, min: 1}
      - {name: duration, type: duration, default: 10s}
      - {name: format, type: enum, values: [folded, svg, pprof], default: svg}
      - {name: kernel, type: bool, default: false}
      - {name: label, type: string}
    output: [{kind: json}]
  - name: blob
    summary: Write a file
    args: [{name: size, type: int, default: 100000, min: 0, max: 67108864}]
    output: [{kind: file, media_type: application/octet-stream}]
  - name: sleep
    summary: Sleep without looking at cancellation
    args: [{name: for, type: duration, default: 60s}]
    output: [{kind: text}]
  - name: wait-cancel
    summary: Wait until cancelled
    output: [{kind: text}]
  - name: fail
    summary: Fail
    output: [{kind: text}]
  - name: flood
    summary: Write text until cancelled
    output: [{kind: text}]
  - name: escape
    summary: Write terminal escapes
    output: [{kind: text}]
"#;

const FLOOD_CLI: &str = r#"cli:
  - name: spew
    summary: Floods text, ignoring cancel
    output: [{kind: text}]
  - name: wrong-kind
    summary: Writes a file nobody asked for
    output: [{kind: text}]
"#;

struct Setup {
    dir: tempfile::TempDir,
    admin: PathBuf,
    agent: Agent,
}

impl Setup {
    /// An agent with the `diag` plugin (settings `diag_extra`, YAML lines indented by four) and,
    /// with `flood`, the hostile `flood` plugin (`flood_extra`).
    fn start(diag_extra: &str, flood: Option<&str>) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        make_bundle(
            &dir.path().join("plugins/diag"),
            "diag",
            "diagnostics",
            "1.0.0",
            &plugin_bin("srediag-diag-plugin"),
            DIAG_CLI,
        );
        let mut plugins = format!(
            "  diag:\n    bundle: diag\n    type: diagnostics\n    shutdown_grace: 2s\n{diag_extra}"
        );
        if let Some(extra) = flood {
            make_bundle(
                &dir.path().join("plugins/flood"),
                "flood",
                "processor",
                "1.0.0",
                &plugin_bin("srediag-raw-plugin"),
                FLOOD_CLI,
            );
            plugins.push_str(&format!(
                "  flood:\n    bundle: flood\n    type: processor\n    args: [verb-flood]\n    shutdown_grace: 1s\n    heartbeat: {{interval: 1s, timeout: 60s}}\n{extra}"
            ));
        }
        let admin = dir.path().join("admin.sock");
        let tel = free_port();
        let agent = Agent::start(dir.path(), &agent_config(&admin, tel, &plugins), tel);
        poll_until(Duration::from_secs(10), "the admin socket", || {
            std::os::unix::net::UnixStream::connect(&admin).ok()
        });
        wait_state(&admin, "diag", &["ready"], Duration::from_secs(30));
        if flood.is_some() {
            wait_state(&admin, "flood", &["ready"], Duration::from_secs(30));
        }
        Setup { dir, admin, agent }
    }

    fn socket(&self) -> String {
        self.admin.display().to_string()
    }

    /// `srediag diagnose ARGS --socket S`.
    fn diagnose(&self, args: &[&str]) -> CmdOutput {
        let mut all = vec!["diagnose"];
        all.extend_from_slice(args);
        let s = self.socket();
        all.extend(["--socket", &s]);
        let out = srediag(&all, Duration::from_secs(60));
        out.assert_no_panic();
        out
    }

    /// Like `diagnose`, stdout as bytes.
    fn diagnose_raw(&self, args: &[&str]) -> (i32, Vec<u8>, String) {
        let out = Command::new(agent_bin())
            .arg("diagnose")
            .args(args)
            .args(["--socket", &self.socket()])
            .stdin(Stdio::null())
            .output()
            .expect("run srediag");
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `srediag diagnose ARGS` as a child process with piped stdout.
    fn spawn(&self, args: &[&str]) -> ChildGuard {
        let child = Command::new(agent_bin())
            .arg("diagnose")
            .args(args)
            .args(["--socket", &self.socket()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn srediag diagnose");
        ChildGuard::new("srediag diagnose", child)
    }

    fn invocations_logged(&self) -> usize {
        self.agent.stderr().matches("verb invoked").count()
    }
}

/// Exactly one line on stderr, the CLI's error line.
fn one_error_line(out: &CmdOutput) -> &str {
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr:\n{}",
        out.stderr
    );
    assert!(lines[0].starts_with("srediag: error: "), "{}", lines[0]);
    lines[0]
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends one admin request line; returns the connection (for reading what follows).
fn admin_request(admin: &Path, line: &str) -> std::os::unix::net::UnixStream {
    let mut s = std::os::unix::net::UnixStream::connect(admin).expect("connect admin socket");
    s.write_all(line.as_bytes()).expect("write request");
    s.write_all(b"\n").expect("write request");
    s
}

#[test]
fn text_json_and_file_output_through_the_cli() {
    if !privileged("text_json_and_file_output_through_the_cli") {
        return;
    }
    let _g = serial();
    let s = Setup::start("", None);

    let out = s.diagnose(&["diag", "hello", "--name", "world", "--count", "2"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "hello world\nhello world\n");

    let out = s.diagnose(&["diag", "hello", "--name=world", "--loud", "-o", "json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON value");
    assert_eq!(
        v,
        serde_json::json!({"greeting": "HELLO WORLD", "count": 1})
    );
    // The global `-o json` before the command works too.
    let out = srediag(
        &[
            "-o",
            "json",
            "diagnose",
            "diag",
            "hello",
            "--name",
            "x",
            "--socket",
            &s.socket(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.starts_with('{'), "{}", out.stdout);

    // Typed arguments cross as the manifest types them, defaults filled in by the agent.
    let out = s.diagnose(&[
        "diag",
        "args",
        "--pid",
        "42",
        "--duration",
        "1m30s",
        "--format",
        "pprof",
        "--kernel",
        "--label",
        "a b",
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"pid": 42, "duration": 90000, "format": "pprof", "kernel": true, "label": "a b"})
    );
    let out = s.diagnose(&["diag", "args"]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"duration": 10000, "format": "svg", "kernel": false})
    );

    // A file output: written by the CLI, a new 0600 file, the bytes the plugin produced.
    let file = s.dir.path().join("out.bin");
    let out = s.diagnose(&[
        "diag",
        "blob",
        "--size",
        "200000",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stderr.contains("wrote 200000 bytes"), "{}", out.stderr);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 200_000);
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // `-` is stdout.
    let (code, stdout, stderr) =
        s.diagnose_raw(&["diag", "blob", "--size", "70000", "--output", "-"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.len(), 70_000);
    assert!(
        stdout
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8)
    );
    // Never an existing file, never through a symlink; nothing is invoked then.
    let before = s.invocations_logged();
    let victim = s.dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let link = s.dir.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for target in [&victim, &link, &file] {
        let out = s.diagnose(&["diag", "blob", "--output", target.to_str().unwrap()]);
        assert_eq!(out.code(), 73, "{}", out.stderr);
        assert!(one_error_line(&out).contains("exists"), "{}", out.stderr);
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert_eq!(s.invocations_logged(), before);

    // Plugin text never reaches the terminal raw; newlines and tabs are kept.
    let out = s.diagnose(&["diag", "escape"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stdout.contains('\r'),
        "{:?}",
        out.stdout
    );
    assert_eq!(out.stdout, "\\x1b[31mred\\x1b]0;owned\\x07\\rforged\tcol\n");

    // A failing verb: exit 1, one line with the plugin's reason.
    let out = s.diagnose(&["diag", "fail"]);
    assert_eq!(out.code(), 1);
    assert!(
        one_error_line(&out).contains("deliberate failure"),
        "{}",
        out.stderr
    );

    // Help: the manifest's argument help, and the verbs in `diagnose --help`.
    let out = s.diagnose(&["diag", "hello", "--help"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for want in [
        "Greets someone.",
        "who to greet",
        "how many times",
        "--count <INT>",
        "[default: 1]",
        "Output: text, json",
    ] {
        assert!(
            out.stdout.contains(want),
            "{want:?} missing from:\n{}",
            out.stdout
        );
    }
    let out = srediag(
        &["diagnose", "--help", "--socket", &s.socket()],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("diag hello") && out.stdout.contains("Say hello"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("seccomp"),
        "built-ins still listed:\n{}",
        out.stdout
    );
    let out = srediag(
        &["diagnose", "--help", "--socket", "/nonexistent/admin.sock"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0);
    assert!(
        out.stdout
            .contains("the agent is not reachable at /nonexistent/admin.sock"),
        "{}",
        out.stdout
    );
    let out = s.diagnose(&["diag", "--help"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.contains("wait-cancel"), "{}", out.stdout);

    // Shell completions carry the plugin's verbs and their arguments.
    let out = srediag(
        &["completions", "bash", "--socket", &s.socket()],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("wait-cancel") && out.stdout.contains("--count"),
        "completions lack the verbs"
    );
}

#[test]
fn argument_errors_exit_2_naming_the_argument_and_reach_nothing() {
    if !privileged("argument_errors_exit_2_naming_the_argument_and_reach_nothing") {
        return;
    }
    let _g = serial();
    let s = Setup::start("", None);
    for (args, names) in [
        (vec!["diag", "hello"], "missing --name"),
        (
            vec!["diag", "hello", "--name", "x", "--nope", "1"],
            "unknown argument --nope",
        ),
        (
            vec!["diag", "hello", "--name", "x", "--count", "abc"],
            "--count: \"abc\"",
        ),
        (
            vec!["diag", "hello", "--name", "x", "--count", "0"],
            "--count: \"0\"",
        ),
        (
            vec!["diag", "hello", "--name", "x", "--name", "y"],
            "--name given more than once",
        ),
        (vec!["diag", "hello", "--name", "x", "stray"], "\"stray\""),
        (
            vec!["diag", "args", "--format", "png"],
            "--format: \"png\" is not one of folded, svg, pprof",
        ),
        (
            vec!["diag", "args", "--duration", "10"],
            "--duration: \"10\"",
        ),
        (
            vec!["diag", "hello", "--name", "x", "-o", "yaml"],
            "-o \"yaml\"",
        ),
        (vec!["diag", "args", "-o", "text"], "writes no text output"),
        (vec!["diag", "blob"], "give --output FILE"),
        (
            vec!["diag", "hello", "--name", "x", "--output", "f"],
            "writes no file",
        ),
        (
            vec!["diag", "blob", "--output", "json"],
            "for the format use -o json",
        ),
        (vec!["diag", "nope"], "has no verb \"nope\""),
        (
            vec!["nosuchplugin", "verb"],
            "unknown diagnose command or plugin \"nosuchplugin\"",
        ),
    ] {
        let out = s.diagnose(&args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        let line = one_error_line(&out);
        assert!(line.contains(names), "{args:?}: {line}");
    }
    assert_eq!(
        s.invocations_logged(),
        0,
        "an invalid invocation reached the plugin"
    );
    // A client that skips the CLI gets the same checks from the agent itself.
    for bad in [
        r#"{"cmd":"plugin_invoke","plugin":"diag","verb":"hello","args":{},"output":"text"}"#,
        r#"{"cmd":"plugin_invoke","plugin":"diag","verb":"hello","args":{"name":7},"output":"text"}"#,
        r#"{"cmd":"plugin_invoke","plugin":"diag","verb":"hello","args":{"name":"x","count":1000},"output":"text"}"#,
        r#"{"cmd":"plugin_invoke","plugin":"diag","verb":"hello","args":{"name":"x","evil":1},"output":"text"}"#,
        r#"{"cmd":"plugin_invoke","plugin":"diag","verb":"blob","args":{},"output":"json"}"#,
    ] {
        let mut line = String::new();
        BufReader::new(admin_request(&s.admin, bad))
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{bad} → {line}");
        assert!(
            matches!(
                v["data"]["refusal"].as_str(),
                Some("bad_args" | "bad_output")
            ),
            "{bad} → {line}"
        );
    }
    assert_eq!(
        s.invocations_logged(),
        0,
        "an invalid invocation reached the plugin"
    );
    let out = s.diagnose(&["diag", "hello", "--name", "ok"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(s.invocations_logged(), 1);
}

#[test]
fn a_verb_past_its_timeout_is_cancelled_in_the_plugin_and_reported() {
    if !privileged("a_verb_past_its_timeout_is_cancelled_in_the_plugin_and_reported") {
        return;
    }
    let _g = serial();
    let s = Setup::start("    verbs: {timeout: 2s}\n", None);
    let t = Instant::now();
    let out = s.diagnose(&["diag", "sleep", "--for", "30s"]);
    let took = t.elapsed();
    assert_eq!(out.code(), 75, "{}", out.stderr);
    assert!(
        one_error_line(&out).contains("timed out after 2s"),
        "{}",
        out.stderr
    );
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} for a 2 s timeout"
    );
    // The timeout reaches a verb that looks at cancellation.
    let out = s.diagnose(&["diag", "wait-cancel"]);
    assert_eq!(out.code(), 75, "{}", out.stderr);
    poll_until(
        Duration::from_secs(10),
        "the plugin to see the cancel",
        || {
            s.agent
                .stderr()
                .contains("DIAG wait-cancel saw cancellation")
                .then_some(())
        },
    );
    // The plugin serves on (the sleeping verb's thread does not block it).
    let out = s.diagnose(&["diag", "hello", "--name", "again"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    eprintln!("timeout reported after {took:?}");
}

#[test]
fn ctrl_c_and_a_killed_cli_cancel_the_verb_in_the_plugin() {
    if !privileged("ctrl_c_and_a_killed_cli_cancel_the_verb_in_the_plugin") {
        return;
    }
    let _g = serial();
    let s = Setup::start("", None);
    for (signal, code) in [(libc::SIGINT, Some(130)), (libc::SIGKILL, None)] {
        let saw_before = s
            .agent
            .stderr()
            .matches("DIAG wait-cancel saw cancellation")
            .count();
        let mut cli = s.spawn(&["diag", "wait-cancel"]);
        let mut stdout = BufReader::new(cli.child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "waiting for cancellation\n");
        let t = Instant::now();
        cli.signal(signal);
        let st = cli.wait_exit(Duration::from_secs(10));
        assert_eq!(st.code(), code, "{st:?}");
        if code.is_some() {
            let mut err = String::new();
            cli.child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(err.contains("interrupted"), "{err}");
        }
        poll_until(
            Duration::from_secs(10),
            "the plugin to see the cancel",
            || {
                (s.agent
                    .stderr()
                    .matches("DIAG wait-cancel saw cancellation")
                    .count()
                    > saw_before)
                    .then_some(())
            },
        );
        eprintln!(
            "signal {signal}: the plugin saw the cancel {:?} after it",
            t.elapsed()
        );
    }
}

#[test]
fn a_verb_of_a_stopped_plugin_exits_69() {
    if !privileged("a_verb_of_a_stopped_plugin_exits_69") {
        return;
    }
    let _g = serial();
    let s = Setup::start("    restart: {quarantine_after: 1}\n", None);
    // The plugin dies during a verb: the CLI says so (69), it does not hang.
    let mut cli = s.spawn(&["diag", "wait-cancel"]);
    let mut stdout = BufReader::new(cli.child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let pid = plugin_status(&s.admin, "diag")["pid"]
        .as_u64()
        .expect("pid") as i32;
    // SAFETY: kill(2) of the plugin's pid, read from the agent a moment ago.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let st = cli.wait_exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(69), "{st:?}");
    let mut err = String::new();
    cli.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("stopped before the verb ended"), "{err}");
    // Quarantined now (one crash): a verb says so at once.
    wait_state(&s.admin, "diag", &["quarantined"], Duration::from_secs(15));
    let t = Instant::now();
    let out = s.diagnose(&["diag", "hello", "--name", "x"]);
    assert_eq!(out.code(), 69, "{}", out.stderr);
    assert!(
        one_error_line(&out).contains("plugin diag is not running (quarantined"),
        "{}",
        out.stderr
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Its verbs are still listed (from its last verified manifest), marked.
    let out = srediag(
        &["diagnose", "--help", "--socket", &s.socket()],
        Duration::from_secs(30),
    );
    assert!(
        out.stdout.contains("[quarantined: not running]"),
        "{}",
        out.stdout
    );
    // No agent at all: 69 with the reason.
    let out = srediag(
        &[
            "diagnose",
            "diag",
            "hello",
            "--name",
            "x",
            "--socket",
            "/nonexistent/admin.sock",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 69);
    assert!(
        one_error_line(&out).contains("cannot be reached"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_output_flood_is_bounded_and_counted() {
    if !privileged("an_output_flood_is_bounded_and_counted") {
        return;
    }
    let _g = serial();
    let s = Setup::start(
        "",
        Some("    verbs: {max_output: 2MiB}\n    data_path: {quarantine_after_malformed: 1000}\n"),
    );
    let agent_pid = s.agent.pid();
    let rss_before = rss_kib(agent_pid);
    let (code, stdout, stderr) = s.diagnose_raw(&["flood", "spew"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("output_limit") && stderr.contains("2097152-byte limit"),
        "{stderr}"
    );
    assert!(
        stdout.len() <= 2 << 20 && stdout.len() >= (2 << 20) - 64 * 1024,
        "{} bytes reached the CLI for a 2 MiB limit",
        stdout.len()
    );
    assert_eq!(
        s.agent.counter(
            "srediag_plugin_violations_total",
            &[("name", "flood"), ("kind", "verb_output")]
        ),
        1.0
    );
    // The plugin ignores the cancel and floods on: the agent reads at most its cap of control
    // messages per heartbeat interval and counts the flood.
    poll_until(Duration::from_secs(10), "a control_flood violation", || {
        (s.agent.counter(
            "srediag_plugin_violations_total",
            &[("name", "flood"), ("kind", "control_flood")],
        ) >= 1.0)
            .then_some(())
    });
    // Output it was not asked for: cancelled, counted.
    let out = s.diagnose(&["flood", "wrong-kind"]);
    assert_eq!(out.code(), 1);
    assert!(
        one_error_line(&out).contains("bad_output"),
        "{}",
        out.stderr
    );
    assert_eq!(
        s.agent.counter(
            "srediag_plugin_violations_total",
            &[("name", "flood"), ("kind", "verb_output")]
        ),
        2.0
    );
    let rss_after = rss_kib(agent_pid);
    eprintln!("agent RSS {rss_before} KiB before, {rss_after} KiB after two floods");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "agent RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(s.agent.healthy());
}

#[test]
fn a_client_that_stops_reading_holds_no_memory_and_no_heartbeat_hostage() {
    if !privileged("a_client_that_stops_reading_holds_no_memory_and_no_heartbeat_hostage") {
        return;
    }
    let _g = serial();
    // Heartbeats every 250 ms, hung after 1 s: a stalled control socket would kill the plugin
    // many times over in the window below.
    let s = Setup::start("    heartbeat: {interval: 250ms, timeout: 1s}\n", None);
    let before = plugin_status(&s.admin, "diag");
    let agent_pid = s.agent.pid();
    let rss_before = rss_kib(agent_pid);
    let conn = admin_request(
        &s.admin,
        r#"{"cmd":"plugin_invoke","plugin":"diag","verb":"flood","output":"text"}"#,
    );
    let mut rd = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    rd.read_line(&mut first).unwrap();
    assert!(first.contains("\"ok\":true"), "{first}");
    // Not reading: watch the agent for 5 s (50 samples).
    let mut peak = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        peak = peak.max(rss_kib(agent_pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = plugin_status(&s.admin, "diag");
    assert_eq!(during["state"], "ready", "{during}");
    assert_eq!(
        during["pid"], before["pid"],
        "the plugin was restarted: {during}"
    );
    eprintln!("agent RSS {rss_before} KiB before, peak {peak} KiB while the client did not read");
    assert!(
        peak < rss_before + 16 * 1024,
        "agent RSS grew from {rss_before} to {peak} KiB"
    );
    // Closing the connection cancels the verb in the plugin.
    drop(rd);
    drop(conn);
    poll_until(Duration::from_secs(10), "the flood verb to stop", || {
        s.agent
            .stderr()
            .contains("DIAG flood stopped")
            .then_some(())
    });
    let out = s.diagnose(&["diag", "hello", "--name", "after"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}
