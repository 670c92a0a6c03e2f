//! A small harness for the integration tests under `tests/tests/`: they drive the real `srediag`
//! binary (and real peers: Prometheus, the OpenTelemetry Python SDK) over its public surfaces only
//! (CLI, HTTP endpoints, files it writes).
//!
//! Rules every test follows:
//! - the binary comes from `SREDIAG_BIN` (set by `cargo xtask test`), else
//!   `<workspace>/target/debug/srediag`; when it is missing the test fails and says how to build it;
//! - every wait is a bounded poll of an observable condition, never a sleep standing in for one;
//! - every process started is killed by a guard on drop, every file lives in a temp dir.

pub mod bundles;
pub mod plugins;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

pub use tempfile::TempDir;

/// How long an agent may take to answer `/-/ready` after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root: `SREDIAG_REPO`, else the parent of this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("SREDIAG_REPO") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `srediag` binary under test. Panics (fails the test) when it does not exist.
pub fn agent_bin() -> PathBuf {
    let bin = match std::env::var_os("SREDIAG_BIN") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/debug/srediag"),
    };
    assert!(
        bin.is_file(),
        "srediag binary not found at {}: run `cargo build --workspace --bins` first \
         (or `cargo xtask test`, which builds it and sets SREDIAG_BIN)",
        bin.display()
    );
    bin
}

/// The Python interpreter of the project's venv (`SREDIAG_PYTHON`, else `<repo>/.venv/bin/python`).
pub fn python() -> PathBuf {
    let py = match std::env::var_os("SREDIAG_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "python venv not found at {}: run `cargo xtask deps` (creates .venv with tests/python/requirements.txt)",
        py.display()
    );
    py
}

/// A TCP port on 127.0.0.1 that was free a moment ago; never the same port twice in one process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        drop(l);
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}

/// A blocking HTTP client with a per-request timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// Polls `f` every 25 ms until it returns `Some`, for at most `timeout`; panics with `what` then.
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Output of a finished `srediag` invocation.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// The exit code; panics if the process died from a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| {
            panic!(
                "srediag died from a signal: {:?}\nstderr:\n{}",
                self.status, self.stderr
            )
        })
    }

    /// stderr's non-empty lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Panics if the output looks like a Rust panic or a backtrace.
    pub fn assert_no_panic(&self) {
        for s in [&self.stdout, &self.stderr] {
            assert!(
                !s.contains("panicked")
                    && !s.contains("stack backtrace")
                    && !s.contains("RUST_BACKTRACE"),
                "srediag panicked:\nstdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
    }
}

/// Runs `srediag ARGS` to completion (bounded by `timeout`; killed and failed past it).
pub fn srediag(args: &[&str], timeout: Duration) -> CmdOutput {
    let dir = TempDir::new().expect("tempdir");
    let (out_p, err_p) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(agent_bin())
        .args(args)
        // `srediag run` as root takes its run directory's instance lock: its own, never the
        // default one an agent of another test may hold.
        .env("SREDIAG_RUN_DIR", dir.path().join("run"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_p).expect("create stdout file"))
        .stderr(fs::File::create(&err_p).expect("create stderr file"))
        .spawn()
        .expect("spawn srediag");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`srediag {}` did not finish within {timeout:?}\nstderr:\n{}",
                args.join(" "),
                fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CmdOutput {
        status,
        stdout: fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: fs::read_to_string(&err_p).unwrap_or_default(),
    }
}

/// Kills (SIGKILL) and reaps a child process on drop.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    pub fn new(name: &str, child: Child) -> Self {
        ChildGuard {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet (the Child is still owned
        // here, so the pid cannot have been recycled).
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit, at most `timeout`; panics past it (drop then kills it).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A running `srediag run --config <temp file>`; SIGKILLed on drop. On a panicking test its
/// stderr is printed so the failure explains itself.
pub struct Agent {
    proc: ChildGuard,
    /// The self-telemetry address (`service.telemetry.metrics.address`).
    pub telemetry: SocketAddr,
    pub config_path: PathBuf,
    stderr_path: PathBuf,
    client: reqwest::blocking::Client,
}

impl Agent {
    /// Writes `config` to `dir/agent.yaml`, starts the agent and waits for `/-/ready` on
    /// `127.0.0.1:telemetry_port` (which the config must name).
    ///
    /// Plugin settings point into `dir`: the trust policy is `dir/trust.yaml` (written as
    /// `allow_unsigned: true` — the unsigned `path:` development mode the plugin tests use —
    /// unless the test wrote its own first), bundles resolve beneath `dir/plugins`, and the
    /// rollback marks live in `dir/plugin-versions.json`.
    pub fn start(dir: &Path, config: &str, telemetry_port: u16) -> Agent {
        Agent::start_with_run_dir(dir, config, telemetry_port, Some(&dir.join("run")))
    }

    /// Like [`Agent::start`] in the default run directory (`/run/srediag`, cgroup root
    /// `srediag`): one such agent at a time (its instance lock), for the plugin tests that look
    /// at the default paths.
    pub fn start_in_default_run_dir(dir: &Path, config: &str, telemetry_port: u16) -> Agent {
        Agent::start_with_run_dir(dir, config, telemetry_port, None)
    }

    /// Starts the agent with its own run directory (`--run-dir`, so agents run side by side with
    /// their own instance locks and plugin cgroups), or the default one with `None`.
    pub fn start_with_run_dir(
        dir: &Path,
        config: &str,
        telemetry_port: u16,
        run_dir: Option<&Path>,
    ) -> Agent {
        let config_path = dir.join("agent.yaml");
        fs::write(&config_path, config).expect("write agent config");
        let policy = dir.join("trust.yaml");
        if !policy.exists() {
            fs::write(
                &policy,
                "# written by the test harness: unsigned `path:` plugins are development mode\nallow_unsigned: true\n",
            )
            .expect("write dev trust policy");
        }
        let stderr_path = dir.join("agent.stderr");
        let mut cmd = Command::new(agent_bin());
        match run_dir {
            Some(r) => cmd.env("SREDIAG_RUN_DIR", r),
            None => cmd.env_remove("SREDIAG_RUN_DIR"),
        };
        let child = cmd
            .env("SREDIAG_TRUST_POLICY", &policy)
            .env("SREDIAG_PLUGIN_DIR", dir.join("plugins"))
            .env("SREDIAG_PLUGIN_STATE", dir.join("plugin-versions.json"))
            .args([
                "--log-format",
                "text",
                "--log-level",
                "info",
                "run",
                "--config",
            ])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("agent.stdout")).expect("create stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .expect("spawn srediag run");
        let mut agent = Agent {
            proc: ChildGuard::new("srediag run", child),
            telemetry: SocketAddr::from(([127, 0, 0, 1], telemetry_port)),
            config_path,
            stderr_path,
            client: http(),
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let url = format!("http://{}/-/ready", self.telemetry);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(st) = self.proc.try_exit() {
                panic!(
                    "srediag exited before it was ready ({st})\nstderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(r) = self.client.get(&url).timeout(Duration::from_secs(2)).send()
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "srediag not ready at {url} within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        self.proc.signal(libc::SIGTERM);
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.proc.wait_exit(timeout)
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.proc.try_exit()
    }

    /// GET `http://<telemetry><path>`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("http://{}{path}", self.telemetry))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} on the telemetry address: {e}"));
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    /// True if `/-/healthy` answers 200 (a connection error is `false`, not a panic).
    pub fn healthy(&self) -> bool {
        self.client
            .get(format!("http://{}/-/healthy", self.telemetry))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    }

    /// The self-telemetry `/metrics` body.
    pub fn metrics_text(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    /// Sum of the samples named `name` whose labels include `labels`; `None` when no series matched.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_sum(&parse_prometheus(&self.metrics_text()), name, labels)
    }

    /// Like [`Agent::metric`], a missing series counting as 0 (counters not yet incremented).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric(name, labels).unwrap_or(0.0)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let err = self.stderr();
            let tail: Vec<&str> = err.lines().rev().take(80).collect();
            eprintln!("---- srediag stderr (last {} lines) ----", tail.len());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            eprintln!("---- config {} ----", self.config_path.display());
            eprintln!(
                "{}",
                fs::read_to_string(&self.config_path).unwrap_or_default()
            );
        }
    }
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (0.0.4): comments skipped, label values unescaped.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find(['{', ' ']) {
            Some(i) if line.as_bytes()[i] == b'{' => {
                let (labels, end) = parse_labels(&line[i + 1..])
                    .unwrap_or_else(|| panic!("bad label set in metrics line: {line}"));
                (&line[..i], labels, &line[i + 1 + end..])
            }
            Some(i) => (&line[..i], BTreeMap::new(), &line[i..]),
            None => panic!("metrics line without a value: {line}"),
        };
        let value_s = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value = match value_s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?} in: {line}")),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// Parses `k="v",k2="v2"}`; returns the labels and the index just past `}`.
fn parse_labels(s: &str) -> Option<(BTreeMap<String, String>, usize)> {
    let b = s.as_bytes();
    let mut labels = BTreeMap::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i < b.len() && b[i] == b'}' {
            return Some((labels, i + 1));
        }
        let eq = i + s[i..].find('=')?;
        let key = s[i..eq].trim().to_string();
        i = eq + 1;
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let mut val = String::new();
        let mut chars = s[i..].char_indices();
        loop {
            let (off, c) = chars.next()?;
            match c {
                '"' => {
                    i += off + 1;
                    break;
                }
                '\\' => match chars.next()?.1 {
                    'n' => val.push('\n'),
                    other => val.push(other),
                },
                c => val.push(c),
            }
        }
        labels.insert(key, val);
    }
}

/// Sum of the samples named `name` whose labels include all of `labels`; `None` if none matched.
pub fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for s in samples.iter().filter(|s| s.name == name) {
        if labels
            .iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        {
            *found.get_or_insert(0.0) += s.value;
        }
    }
    found
}

/// Reads a JSON-lines file; a trailing line without `\n` (a write in progress) is ignored,
/// a complete line that is not JSON fails the test. A missing file reads as empty.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let mut s = String::new();
    match fs::File::open(path) {
        Ok(mut f) => {
            f.read_to_string(&mut s)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("open {}: {e}", path.display()),
    }
    parse_jsonl(&s, path)
}

/// Parses complete JSON lines of `s` (see [`read_jsonl`]).
pub fn parse_jsonl(s: &str, origin: &Path) -> Vec<Value> {
    let complete = match s.rfind('\n') {
        Some(i) => &s[..=i],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    origin.display(),
                    n + 1,
                    truncate(l, 300)
                )
            })
        })
        .collect()
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A log record from the file exporter's OTLP/JSON output, flattened with its resource.
#[derive(Debug, Clone)]
pub struct LogView {
    /// `body.stringValue`, if the body is a string.
    pub body: Option<String>,
    pub severity_number: Option<i64>,
    pub severity_text: Option<String>,
    /// Raw OTLP/JSON `AnyValue`s by key.
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
    pub scope_name: Option<String>,
}

impl LogView {
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(any_str)
    }
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(any_int)
    }
}

/// `{"stringValue": s}` → `s`.
pub fn any_str(v: &Value) -> Option<&str> {
    v.get("stringValue")?.as_str()
}

/// `{"intValue": "123"}` → 123. OTLP/JSON encodes int64 as a decimal string: a bare JSON
/// number is not accepted here on purpose.
pub fn any_int(v: &Value) -> Option<i64> {
    v.get("intValue")?.as_str()?.parse().ok()
}

/// `[{key, value}]` → map key → raw AnyValue.
pub fn kv_map(v: Option<&Value>) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for kv in v.and_then(Value::as_array).into_iter().flatten() {
        if let (Some(k), Some(val)) = (kv.get("key").and_then(Value::as_str), kv.get("value")) {
            m.insert(k.to_string(), val.clone());
        }
    }
    m
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// All log records of the `ExportLogsServiceRequest` lines in `lines` (other lines are skipped).
pub fn log_records(lines: &[Value]) -> Vec<LogView> {
    let mut out = Vec::new();
    for line in lines {
        for rl in arr(line, "resourceLogs") {
            let resource = kv_map(rl.get("resource").and_then(|r| r.get("attributes")));
            for sl in arr(rl, "scopeLogs") {
                let scope_name = sl
                    .get("scope")
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                for lr in arr(sl, "logRecords") {
                    out.push(LogView {
                        body: lr.get("body").and_then(any_str).map(str::to_string),
                        severity_number: lr.get("severityNumber").and_then(Value::as_i64),
                        severity_text: lr
                            .get("severityText")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        attributes: kv_map(lr.get("attributes")),
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Number of log records in one OTLP/JSON `ExportLogsServiceRequest`.
pub fn count_log_records(line: &Value) -> usize {
    arr(line, "resourceLogs")
        .flat_map(|rl| arr(rl, "scopeLogs"))
        .map(|sl| arr(sl, "logRecords").count())
        .sum()
}

/// A metric data point from the file exporter's OTLP/JSON output.
#[derive(Debug, Clone)]
pub struct PointView {
    pub metric: String,
    /// `sum`, `gauge`, `histogram`, `exponentialHistogram` or `summary`.
    pub kind: String,
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
    /// The raw data point object.
    pub point: Value,
}

/// All data points of the `ExportMetricsServiceRequest` lines in `lines`.
pub fn metric_points(lines: &[Value]) -> Vec<PointView> {
    let mut out = Vec::new();
    for line in lines {
        for rm in arr(line, "resourceMetrics") {
            let resource = kv_map(rm.get("resource").and_then(|r| r.get("attributes")));
            for sm in arr(rm, "scopeMetrics") {
                for m in arr(sm, "metrics") {
                    let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                    for kind in [
                        "sum",
                        "gauge",
                        "histogram",
                        "exponentialHistogram",
                        "summary",
                    ] {
                        if let Some(data) = m.get(kind) {
                            for p in arr(data, "dataPoints") {
                                out.push(PointView {
                                    metric: name.to_string(),
                                    kind: kind.to_string(),
                                    attributes: kv_map(p.get("attributes")),
                                    resource: resource.clone(),
                                    point: p.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
    }
}

fn kv_int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
    }
}

/// An `ExportLogsServiceRequest` with records `seqs`: body `<prefix>-<seq>` followed by `pad`
/// bytes of filler, attributes `test.seq=<seq>` and `test.run=<run>`, severity INFO (9),
/// resource `service.name=srediag-test`.
pub fn logs_request(
    run: &str,
    prefix: &str,
    seqs: std::ops::Range<u64>,
    pad: usize,
) -> ExportLogsServiceRequest {
    let filler = if pad > 0 {
        format!(" {}", "x".repeat(pad))
    } else {
        String::new()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let records = seqs
        .map(|i| LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: 9,
            severity_text: "INFO".to_string(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "{prefix}-{i}{filler}"
                ))),
            }),
            attributes: vec![
                kv_int("test.seq", i64::try_from(i).unwrap_or(i64::MAX)),
                kv_str("test.run", run),
            ],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "srediag-test")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "srediag-tests".to_string(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// POSTs a protobuf-encoded OTLP request to `url`; returns the HTTP status.
pub fn post_protobuf(
    client: &reqwest::blocking::Client,
    url: &str,
    msg: &impl prost::Message,
) -> u16 {
    client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .body(msg.encode_to_vec())
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .status()
        .as_u16()
}

/// A fresh random-ish id for tagging one test run's records.
pub fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The 1-based line and column of byte offset `off` in `text`.
pub fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

/// Removes the single `⟨` marker from `text` and returns the text and the marker's 1-based
/// line:col, i.e. the position of what follows it.
pub fn marked(text: &str) -> (String, usize, usize) {
    let off = text
        .find('⟨')
        .unwrap_or_else(|| panic!("no ⟨ marker in:\n{text}"));
    assert_eq!(
        text.matches('⟨').count(),
        1,
        "more than one ⟨ marker in:\n{text}"
    );
    let clean = text.replacen('⟨', "", 1);
    let (l, c) = line_col(&clean, off);
    (clean, l, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let t = "# HELP x y\n# TYPE a counter\na_total{b=\"c\",d=\"e \\\"q\\\" \\\\ \\n\"} 3\nplain 4.5\nwith_ts{x=\"1\"} 7 1700000000\nz{} +Inf\n";
        let s = parse_prometheus(t);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].labels["d"], "e \"q\" \\ \n");
        assert_eq!(metric_sum(&s, "a_total", &[("b", "c")]), Some(3.0));
        assert_eq!(metric_sum(&s, "a_total", &[("b", "x")]), None);
        assert_eq!(metric_sum(&s, "plain", &[]), Some(4.5));
        assert_eq!(metric_sum(&s, "with_ts", &[]), Some(7.0));
        assert!(metric_sum(&s, "z", &[]).is_some_and(f64::is_infinite));
    }

    #[test]
    fn marker_positions() {
        let (t, l, c) = marked("a: 1\nb:\n  ⟨c: 2\n");
        assert_eq!(t, "a: 1\nb:\n  c: 2\n");
        assert_eq!((l, c), (3, 3));
        let (_, l, c) = marked("⟨x: 1\n");
        assert_eq!((l, c), (1, 1));
    }

    #[test]
    fn jsonl_ignores_partial_tail() {
        let v = parse_jsonl("{\"a\":1}\n{\"b\":", Path::new("x"));
        assert_eq!(v.len(), 1);
    }
}
