//! An independent review of the issue-11 fix, written as attacks on it (issue 11, "a second,
//! independent review of the diff"). Each test is an attack: a hostile or honest plugin, a hostile
//! OTLP client, a stalled exporter. A test marked `// HOLE:` demonstrated a weakness the reviewed
//! code left (it failed there, by design); each was fixed since and the test is its regression
//! check. The others check a bound that held.
//!
//! Measured with the agent's RSS (VmHWM reset through `/proc/PID/clear_refs`), its CPU, the bytes
//! it logged, `/metrics` latency, the plugin's restarts and whether it ends quarantined.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    metric,
};
use srediag_tests::plugins::*;
use srediag_tests::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Measuring the agent.

fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Resets the agent's peak RSS so VmHWM measures what follows.
fn reset_hwm(agent: &Agent) -> u64 {
    std::fs::write(format!("/proc/{}/clear_refs", agent.pid()), "5").expect("reset VmHWM");
    status_kib(agent.pid(), "VmRSS:")
}

/// Polls `/metrics` every 200 ms on its own thread; reports failures and the slowest answer.
struct Scraper {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    slowest_ms: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scraper {
    fn start(agent: &Agent) -> Scraper {
        let url = format!("http://{}/metrics", agent.telemetry);
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let slowest_ms = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, failures, slowest_ms) = (stop.clone(), failures.clone(), slowest_ms.clone());
            std::thread::spawn(move || {
                let client = http();
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let ok = client
                        .get(&url)
                        .timeout(Duration::from_secs(3))
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    slowest_ms.fetch_max(t.elapsed().as_millis() as u64, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Scraper {
            stop,
            failures,
            slowest_ms,
            thread: Some(thread),
        }
    }

    /// (failures, slowest ms).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.failures.load(Ordering::SeqCst),
            self.slowest_ms.load(Ordering::SeqCst),
        )
    }
}

/// Posts OTLP/HTTP requests from a thread of its own until stopped (each with a short timeout,
/// errors counted, never a panic: the pipeline may be blocked on purpose).
struct Sender {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    fn start(url: String, make: impl Fn(u64) -> Vec<u8> + Send + 'static) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let client = http();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let r = client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .timeout(Duration::from_secs(1))
                        .body(make(i))
                        .send();
                    if r.is_ok_and(|r| r.status().is_success()) {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    i += 1;
                }
            })
        };
        Sender {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// (accepted, failed or timed out).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Agents for the attacks.

/// A running agent (own run directory) with an OTLP/HTTP receiver and plugins.
struct Setup {
    dir: tempfile::TempDir,
    admin: PathBuf,
    otlp: u16,
    agent: Agent,
}

impl Setup {
    /// `body` is the configuration after `receivers:` (processors, exporters, plugins, and the
    /// `pipelines:` entries, indented for `service.pipelines`), with `{dir}` replaced by the
    /// test's directory; `before` runs in that directory before the agent starts.
    fn start(exporters: &str, plugins: &str, pipelines: &str, before: impl FnOnce(&Path)) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = dir.path().join("admin.sock");
        let (tel, otlp) = (free_port(), free_port());
        let d = dir.path().display().to_string();
        let config = format!(
            r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
{exporters}
plugins:
{plugins}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
{pipelines}
"#,
            admin = admin.display(),
            exporters = exporters.replace("{dir}", &d),
            plugins = plugins.replace("{dir}", &d),
        );
        before(dir.path());
        let agent = Agent::start(dir.path(), &config, tel);
        poll_until(Duration::from_secs(10), "the admin socket", || {
            std::os::unix::net::UnixStream::connect(&admin).ok()
        });
        Setup {
            dir,
            admin,
            otlp,
            agent,
        }
    }

    fn url(&self, signal: &str) -> String {
        format!("http://127.0.0.1:{}/v1/{signal}", self.otlp)
    }

    fn restarts(&self, name: &str, reason: &str) -> f64 {
        self.agent.counter(
            "srediag_plugin_restarts_total",
            &[("name", name), ("reason", reason)],
        )
    }

    fn violations(&self, name: &str, kind: &str) -> f64 {
        self.agent.counter(
            "srediag_plugin_violations_total",
            &[("name", name), ("kind", kind)],
        )
    }

    fn state(&self, name: &str) -> String {
        plugin_status(&self.admin, name)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Log records in a JSON-lines file the `file` exporter wrote.
    fn records_in(&self, file: &str) -> usize {
        let p = self.dir.path().join(file);
        if !p.exists() {
            return 0;
        }
        log_records(&read_jsonl(&p)).len()
    }
}

fn raw_plugin(name: &str, attack: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    path: {}\n    type: processor\n    args: [{attack}]\n{extra}",
        plugin_bin("srediag-raw-plugin").display()
    )
}

fn text(s: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    })
}

/// One logs request holding `records`.
fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", p.display());
}

// ---------------------------------------------------------------------------------------------
// 1. The answer timeout and the agent's own downstream.

/// The reader thread hands answers to the stage through a bounded queue; while the stage cannot
/// take them (its downstream is full) the answer clock is supposed to stop. But the paused time
/// is only added once the hand-over returns (`Link::output`), so a downstream stall longer than
/// `answer_timeout` is charged to the plugin while it lasts: an honest plugin is killed as
/// `hang`. Here the file exporter writes into a FIFO whose reader stopped reading (a stalled
/// disk or a slow OTLP backend do the same); the plugin answers each batch 300 ms after it
/// arrived.
#[test]
fn an_honest_plugin_is_killed_as_hang_while_the_agents_own_exporter_is_stalled() {
    if !privileged("an_honest_plugin_is_killed_as_hang_while_the_agents_own_exporter_is_stalled") {
        return;
    }
    let _g = serial();
    let mut reader = None;
    let s = Setup::start(
        "  file:\n    path: {dir}/out.fifo\n    queue:\n      capacity: 1\n",
        // An honest plugin that takes 300 ms per batch (answering batches side by side), far
        // inside its 2 s answer timeout.
        &raw_plugin(
            "honest",
            "drip",
            "    config: {delay_ms: 300}\n    data_path: {answer_timeout: 2s, max_batch_records: 10}\n    restart: {initial_backoff: 100ms, quarantine_after: 3}\n",
        ),
        "    logs:\n      receivers: [otlp]\n      processors: [plugin/honest]\n      exporters: [file]",
        |d| {
            let fifo = d.join("out.fifo");
            mkfifo(&fifo);
            // A reader that never reads: the agent's open succeeds, its writes block once the
            // pipe (64 KiB) is full.
            use std::os::unix::fs::OpenOptionsExt as _;
            reader = Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo)
                    .expect("open fifo reader"),
            );
        },
    );
    wait_state(&s.admin, "honest", &["ready"], Duration::from_secs(20));
    let pid = plugin_status(&s.admin, "honest")["pid"]
        .as_u64()
        .expect("pid");
    let scraper = Scraper::start(&s.agent);
    let run = run_id();
    let sender = Sender::start(s.url("logs"), move |i| {
        prost::Message::encode_to_vec(&logs_request(&run, "s", i * 20..i * 20 + 20, 1000))
    });
    // Only the exporter is stalled. Wait for the pipeline to block (requests time out), then up
    // to 4× the answer timeout for the plugin to die.
    poll_until(Duration::from_secs(20), "the pipeline to block", || {
        (sender.failed.load(Ordering::SeqCst) > 0).then_some(())
    });
    let blocked_at = Instant::now();
    while blocked_at.elapsed() < Duration::from_secs(8) && pid_alive(pid) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_after = blocked_at.elapsed();
    let killed = !pid_alive(pid);
    // What the operator sees meanwhile (1 s later): the plugin list, readiness, the counters.
    std::thread::sleep(Duration::from_secs(1));
    let st = plugin_status(&s.admin, "honest");
    let (ready, _) = s.agent.get("/-/ready");
    let hang_while = s.restarts("honest", "hang");
    let (ok, failed) = sender.finish();
    // Unstall the exporter: what was held in the supervisor comes out.
    let fifo = reader.take().expect("fifo reader");
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut f = fifo;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => return,
            }
        }
    });
    let ended = if killed {
        poll_until(Duration::from_secs(20), "the supervisor to go on", || {
            s.agent
                .stderr()
                .lines()
                .find(|l| l.contains("plugin=honest") && l.contains("plugin ended"))
                .map(str::to_string)
        })
    } else {
        "nothing (the plugin was not killed)".to_string()
    };
    let (fails, slowest) = scraper.finish();
    eprintln!(
        "stalled exporter: requests ok {ok}, failed {failed}; honest plugin (pid {pid}) killed: {killed} \
         ({:.1}s after the pipeline blocked); 1 s later `plugin list` said state {} pid {}, /-/ready {ready}, \
         restarts{{hang}} {hang_while}; once the exporter moved again the agent logged: {ended}; \
         /metrics failures {fails}, slowest {slowest} ms",
        killed_after.as_secs_f64(),
        st["state"],
        st["pid"],
    );
    // HOLE: the agent's own stalled exporter is charged to an honest plugin: it is killed as `hang` (SRD-P006), and while the exporter stays stalled its supervisor is stuck in `detach` (plugin list says `ready` with a dead pid, no restart, no log line)
    assert!(
        !killed,
        "an honest plugin was killed while only the agent's own exporter was stalled; plugin list said {st}"
    );
}

/// One plugin gets another killed: `b` (after `a` in the same pipeline) stops answering. `a`
/// answers every batch at once, but its stage cannot pass them on (b's queue is full), so
/// `a`'s reader waits in the hand-over and `a` is charged the time: `a` is killed as `hang`
/// together with the plugin at fault.
#[test]
fn a_stalled_plugin_gets_the_honest_plugin_before_it_killed_as_hang() {
    if !privileged("a_stalled_plugin_gets_the_honest_plugin_before_it_killed_as_hang") {
        return;
    }
    let _g = serial();
    let dp = "    data_path: {answer_timeout: 2s, max_batch_records: 10, queue: {capacity: 2}}\n    restart: {initial_backoff: 100ms, quarantine_after: 3}\n";
    // a: honest, 300 ms per batch (batches side by side), far inside its 2 s answer timeout.
    let s = Setup::start(
        "  file:\n    path: {dir}/out.jsonl\n",
        &format!(
            "{}{}",
            raw_plugin("a", "drip", &format!("    config: {{delay_ms: 300}}\n{dp}")),
            raw_plugin("b", "no-consume", dp)
        ),
        "    logs:\n      receivers: [otlp]\n      processors: [plugin/a, plugin/b]\n      exporters: [file]",
        |_| {},
    );
    wait_state(&s.admin, "a", &["ready"], Duration::from_secs(20));
    wait_state(&s.admin, "b", &["ready"], Duration::from_secs(20));
    let a_pid = plugin_status(&s.admin, "a")["pid"].as_u64().expect("pid");
    let run = run_id();
    let sender = Sender::start(s.url("logs"), move |i| {
        prost::Message::encode_to_vec(&logs_request(&run, "s", i * 20..i * 20 + 20, 100))
    });
    // b is quarantined after 3 hangs; a did nothing wrong.
    wait_state(&s.admin, "b", &["quarantined"], Duration::from_secs(40));
    let (ok, failed) = sender.finish();
    // a's supervisor reports its end only once a's stage moves again (b parked): give it 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let a_ended = loop {
        let ended: Vec<String> = s
            .agent
            .stderr()
            .lines()
            .filter(|l| l.contains("plugin=a") && l.contains("plugin ended"))
            .map(str::to_string)
            .collect();
        if !ended.is_empty() || Instant::now() > deadline {
            break ended;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (a_hang, b_hang) = (s.restarts("a", "hang"), s.restarts("b", "hang"));
    let a_killed = !pid_alive(a_pid);
    eprintln!(
        "b never answers: requests ok {ok}, failed {failed}; hang restarts: a {a_hang}, b {b_hang}; \
         a's first incarnation (pid {a_pid}) killed: {a_killed}; a now {}; a's end: {a_ended:?}",
        s.state("a")
    );
    // HOLE: a plugin that stops answering gets the honest plugin before it in the pipeline killed as `hang` too
    assert!(
        !a_killed && a_ended.is_empty(),
        "honest plugin a was killed because plugin b stalled: {a_ended:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The output budget against honest plugins, with input any OTLP client chooses.

/// An honest enricher (one 200-byte attribute per record, like a k8s-metadata processor) is
/// quarantined at once (`output_budget` is fatal) by one request of minimal records from any
/// OTLP client: the byte budget is 4× the *input's* encoded size, and tiny records make any fixed
/// per-record addition exceed it.
#[test]
fn an_honest_enricher_is_quarantined_by_one_request_of_minimal_records() {
    if !privileged("an_honest_enricher_is_quarantined_by_one_request_of_minimal_records") {
        return;
    }
    let _g = serial();
    let s = Setup::start(
        "  file:\n    path: {dir}/out.jsonl\n",
        &raw_plugin("enricher", "enrich", "    config: {attr_bytes: 200}\n"),
        "    logs:\n      receivers: [otlp]\n      processors: [plugin/enricher]\n      exporters: [file]",
        |_| {},
    );
    wait_state(&s.admin, "enricher", &["ready"], Duration::from_secs(20));
    // Control: ordinary records (a body of ~100 bytes) pass.
    let run = run_id();
    assert_eq!(
        post_protobuf(
            &http(),
            &s.url("logs"),
            &logs_request(&run, "c", 0..100, 100)
        ),
        200
    );
    poll_until(Duration::from_secs(10), "the control records", || {
        (s.records_in("out.jsonl") >= 100).then_some(())
    });
    // The attack: 1,000 records with a one-byte body, nothing else.
    let minimal = (0..1000)
        .map(|_| LogRecord {
            body: text("x".into()),
            ..Default::default()
        })
        .collect();
    assert_eq!(post_protobuf(&http(), &s.url("logs"), &logs(minimal)), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && s.records_in("out.jsonl") < 1100
        && s.state("enricher") != "quarantined"
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (v, state) = (
        s.violations("enricher", "output_budget"),
        s.state("enricher"),
    );
    eprintln!(
        "minimal records: output_budget violations {v}, state {state}, records out {}",
        s.records_in("out.jsonl")
    );
    // HOLE: an honest enricher is quarantined at once by one OTLP request of minimal records (byte budget relative to the input's size, fatal)
    assert_eq!(
        state, "ready",
        "an honest enricher was quarantined by minimal input records"
    );
}

/// An honest multi-line splitter (one record per line of a stack trace) is quarantined at once
/// by one record of 100 lines: the item budget is 4 × 1 + 64.
#[test]
fn an_honest_line_splitter_is_quarantined_by_one_multiline_record() {
    if !privileged("an_honest_line_splitter_is_quarantined_by_one_multiline_record") {
        return;
    }
    let _g = serial();
    let s = Setup::start(
        "  file:\n    path: {dir}/out.jsonl\n",
        &raw_plugin("splitter", "split-lines", ""),
        "    logs:\n      receivers: [otlp]\n      processors: [plugin/splitter]\n      exporters: [file]",
        |_| {},
    );
    wait_state(&s.admin, "splitter", &["ready"], Duration::from_secs(20));
    let trace: String = (0..100).map(|i| format!("    at frame{i}\n")).collect();
    let one = vec![LogRecord {
        body: text(format!("panic: boom\n{trace}")),
        ..Default::default()
    }];
    assert_eq!(post_protobuf(&http(), &s.url("logs"), &logs(one)), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && s.records_in("out.jsonl") < 101
        && s.state("splitter") != "quarantined"
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = s.state("splitter");
    eprintln!(
        "one 101-line record: output_budget violations {}, state {state}, records out {}",
        s.violations("splitter", "output_budget"),
        s.records_in("out.jsonl")
    );
    // HOLE: an honest line splitter is quarantined at once by a single 101-line record (item budget 4×1+64, fatal, no per-plugin override of the slack)
    assert_eq!(
        state, "ready",
        "an honest splitter was quarantined by one multi-line record"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The frame verifier's apparent-size bound (point 18), again.

/// Exponential-histogram points whose only set fields are `min = max = 0` (valid OTLP: a
/// histogram of zeros) look more than 6× their size to the verifier (a shared 36-byte vtable
/// counted on every visit of a 12-byte point): 5,537 of them (66 KB) still pass thanks to the
/// 64 KiB slack, 6,000 (72 KB) fail `APPARENT_FACTOR` 6, so an honest frame is rejected.
fn zero_exp_points(n: usize) -> Vec<ExponentialHistogramDataPoint> {
    vec![
        ExponentialHistogramDataPoint {
            min: Some(0.0),
            max: Some(0.0),
            ..Default::default()
        };
        n
    ]
}

fn exp_metrics(n: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "zeros".into(),
                    data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: zero_exp_points(n),
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn honest_sparse_histogram_points_fail_the_frame_verifier() {
    use srediag_plugin_sdk::data::Records;
    use srediag_plugin_sdk::wire::{Encoder, decode};
    let mut enc = Encoder::new();
    let mut first_refused = None;
    for n in [1_000usize, 4_000, 5_536, 5_537, 6_000, 10_000] {
        let frame = enc
            .encode(1, &Records::Metrics(exp_metrics(n)))
            .expect("encodes")
            .to_vec();
        let ok = decode(&frame).is_ok();
        eprintln!(
            "{n} zero exponential-histogram points: frame {} bytes, decodes: {ok}",
            frame.len()
        );
        if !ok && first_refused.is_none() {
            first_refused = Some((n, frame.len()));
        }
    }
    // HOLE: honest frames of 6,000 sparse exponential-histogram points (72 KB) are refused by the verifier (APPARENT_FACTOR 6 is below what they look like)
    assert_eq!(
        first_refused, None,
        "the SDK refuses a frame the SDK itself encoded from valid OTLP"
    );
}

/// The same frame as a poison batch: with `max_batch_records` raised (to 6,000 or more), one
/// OTLP request from any client makes the agent send a frame the plugin's SDK cannot verify; the
/// SDK reports it and never answers, so the batch times out, is re-delivered to every restart
/// and the honest plugin ends quarantined.
#[test]
fn one_metrics_request_poisons_an_honest_sdk_plugin_into_quarantine() {
    if !privileged("one_metrics_request_poisons_an_honest_sdk_plugin_into_quarantine") {
        return;
    }
    let _g = serial();
    let s = Setup::start(
        "  file:\n    path: {dir}/out.jsonl\n",
        &format!(
            "  sdk:\n    path: {}\n    type: processor\n    config: {{attempts: []}}\n    data_path: {{answer_timeout: 2s, max_batch_records: 8192}}\n    restart: {{initial_backoff: 100ms, quarantine_after: 3}}\n",
            plugin_bin("srediag-hostile-plugin").display()
        ),
        "    metrics:\n      receivers: [otlp]\n      processors: [plugin/sdk]\n      exporters: [file]",
        |_| {},
    );
    wait_state(&s.admin, "sdk", &["ready"], Duration::from_secs(20));
    // Control: 5,000 such points pass.
    assert_eq!(
        post_protobuf(&http(), &s.url("metrics"), &exp_metrics(5_000)),
        200
    );
    poll_until(Duration::from_secs(10), "the control batch", || {
        (s.agent.counter(
            "srediag_plugin_ipc_batches_total",
            &[("plugin", "sdk"), ("direction", "from_plugin")],
        ) >= 1.0)
            .then_some(())
    });
    let client = http();
    let url = s.url("metrics");
    std::thread::spawn(move || {
        let _ = client
            .post(&url)
            .header("Content-Type", "application/x-protobuf")
            .body(prost::Message::encode_to_vec(&exp_metrics(6_000)))
            .timeout(Duration::from_secs(30))
            .send();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && s.state("sdk") != "quarantined" {
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = s.state("sdk");
    eprintln!(
        "6,000 zero points: sdk plugin {state}, hang restarts {}",
        s.restarts("sdk", "hang")
    );
    // HOLE: one valid OTLP metrics request (6,000 zero-valued exponential-histogram points) poisons an honest SDK plugin: hang, re-delivery, quarantine
    assert_ne!(
        state, "quarantined",
        "an honest SDK plugin was quarantined by one valid metrics request"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A plugin that stays under every threshold and still stalls the agent.

/// A plugin that answers every batch just inside `answer_timeout` is never killed nor
/// quarantined, and throttles the shared OTLP receiver to `max_in_flight` batches per
/// `answer_timeout`: a pipeline that does not use the plugin starves with it.
/// `otlp → plugin/<mode> → file/a` and `otlp → file/b` for `secs` seconds of one-record requests:
/// records per second that reached `file/b`, with what else was seen.
fn shared_receiver_rate(mode: &str, extra: &str, secs: u64) -> (f64, String) {
    let s = Setup::start(
        "  file/a:\n    path: {dir}/a.jsonl\n  file/b:\n    path: {dir}/b.jsonl\n",
        &raw_plugin("p", mode, extra),
        "    logs/a:\n      receivers: [otlp]\n      processors: [plugin/p]\n      exporters: [file/a]\n    logs/b:\n      receivers: [otlp]\n      exporters: [file/b]",
        |_| {},
    );
    wait_state(&s.admin, "p", &["ready"], Duration::from_secs(20));
    let rss_before = reset_hwm(&s.agent);
    let scraper = Scraper::start(&s.agent);
    let run = run_id();
    let t = Instant::now();
    let sender = Sender::start(s.url("logs"), move |i| {
        prost::Message::encode_to_vec(&logs_request(&run, "d", i..i + 1, 0))
    });
    std::thread::sleep(Duration::from_secs(secs));
    let (ok, failed) = sender.finish();
    let secs = t.elapsed().as_secs_f64();
    let b = s.records_in("b.jsonl");
    let (ready, _) = s.agent.get("/-/ready");
    let (fails, slowest) = scraper.finish();
    let seen = format!(
        "{mode}: {secs:.1}s: requests ok {ok}, failed/timed out {failed}; pipeline b (no plugin) got {b} records ({:.1}/s); \
         plugin state {}, hang restarts {}, violations {}; /-/ready {ready}; /metrics failures {fails}, slowest {slowest} ms; \
         peak RSS +{} KiB",
        b as f64 / secs,
        s.state("p"),
        s.restarts("p", "hang"),
        s.agent
            .counter("srediag_plugin_violations_total", &[("name", "p")]),
        status_kib(s.agent.pid(), "VmHWM:").saturating_sub(rss_before)
    );
    (b as f64 / secs, seen)
}

#[test]
fn a_drip_plugin_starves_a_pipeline_that_does_not_use_it() {
    if !privileged("a_drip_plugin_starves_a_pipeline_that_does_not_use_it") {
        return;
    }
    let _g = serial();
    // With `queue.policy: block` (the default) a slow plugin slows every pipeline fed by its
    // receivers: that coupling is the documented meaning of `block` (docs/configuration.md).
    // The isolation the fix documents: `policy: drop` in front of the plugin.
    let dp = "    data_path: {answer_timeout: 5s, queue: {capacity: 4, policy: drop}}\n";
    let (honest, seen) = shared_receiver_rate("honest", dp, 4);
    eprintln!("control: {seen}");
    let (drip, seen) =
        shared_receiver_rate("drip", &format!("    config: {{delay_ms: 4500}}\n{dp}"), 12);
    eprintln!("attack (4.5 s per batch, answer_timeout 5s): {seen}");
    // HOLE: a plugin answering just inside answer_timeout is never punished and throttles every pipeline on its receiver to max_in_flight/answer_timeout
    // (fixed by documentation and configuration: `queue.policy: drop` isolates the other pipelines)
    assert!(
        drip >= honest / 4.0,
        "pipeline b, which does not use the plugin, got {drip:.1} records/s beside the drip plugin, {honest:.1}/s beside an honest one"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. The log budget's byte bound.

/// Lines of control bytes: the log budget counts a line's bytes *before* escaping (64 KiB a
/// second), but each control byte is written as `\xHH` (4 bytes): the agent's log grows ~4× the
/// documented bound, forever — suppressed lines are counted, never a violation.
#[test]
fn control_byte_lines_overrun_the_log_byte_budget() {
    if !privileged("control_byte_lines_overrun_the_log_byte_budget") {
        return;
    }
    let _g = serial();
    let s = Setup::start(
        "  file:\n    path: {dir}/out.jsonl\n",
        &raw_plugin("esc", "escape-flood", ""),
        "    logs:\n      receivers: [otlp]\n      processors: [plugin/esc]\n      exporters: [file]",
        |_| {},
    );
    wait_state(&s.admin, "esc", &["ready"], Duration::from_secs(20));
    // Let the first window pass, then measure 5 s.
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = reset_hwm(&s.agent);
    let (log0, cpu0, t) = (
        s.agent.stderr().len() as u64,
        cpu_ticks(s.agent.pid()),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(5));
    let secs = t.elapsed().as_secs_f64();
    let logged = s.agent.stderr().len() as u64 - log0;
    let cpu = (cpu_ticks(s.agent.pid()) - cpu0) as f64 / 100.0 / secs;
    let per_sec = logged as f64 / secs;
    eprintln!(
        "escape flood: agent log {per_sec:.0} bytes/s (budget 65536 bytes/s of plugin text), agent CPU {:.1}% of a core, \
         state {}, suppressed {}, peak RSS +{} KiB",
        cpu * 100.0,
        s.state("esc"),
        s.agent.counter(
            "srediag_plugin_log_lines_suppressed_total",
            &[("name", "esc")]
        ),
        status_kib(s.agent.pid(), "VmHWM:").saturating_sub(rss_before)
    );
    // HOLE: the 64 KiB/s log budget is counted before escaping: control bytes make the agent log ~4× that, with no violation
    assert!(
        per_sec <= 1.5 * 65536.0,
        "the agent logged {per_sec:.0} bytes a second for one plugin (budget 64 KiB/s)"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The instance lock's run directory.

/// Runs `script` with `sh -c` as `nobody` (uid/gid 65534): an unprivileged local user.
fn as_nobody(script: &str) {
    use std::os::unix::process::CommandExt as _;
    let st = std::process::Command::new("/bin/sh")
        .args(["-c", script])
        .uid(65534)
        .gid(65534)
        .status()
        .expect("run sh as nobody");
    assert!(st.success(), "as nobody: {script}");
}

/// The run directory is not checked like every other path the fix protects (`safe_path`): when
/// the operator gives the agent a run directory another user could create first (here under
/// `/tmp`, as the tests and per-instance setups do), that user makes `<run dir>/plugins` a
/// symlink, and the root agent's start-up "stale scratch" cleanup follows it and
/// `remove_dir_all`s every directory in its target — even an agent without plugins.
#[test]
fn a_run_dir_another_user_prepared_makes_the_agent_delete_root_directories() {
    if !privileged("a_run_dir_another_user_prepared_makes_the_agent_delete_root_directories") {
        return;
    }
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    // What root owns: a directory of directories (think /etc, /var/lib).
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(victim.join("precious")).expect("victim");
    std::fs::write(victim.join("precious/data"), "root's").expect("victim file");
    // The unprivileged user prepares the run directory the operator will use.
    let run = PathBuf::from(format!("/tmp/srediag-review-run-{}", run_id()));
    as_nobody(&format!(
        "mkdir -m 0755 {run} && ln -s {victim} {run}/plugins",
        run = run.display(),
        victim = victim.display()
    ));
    let tel = free_port();
    let config = format!(
        r#"receivers:
  hostmetrics:
    collection_interval: 60s
exporters:
  debug: {{}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    metrics:
      receivers: [hostmetrics]
      exporters: [debug]
"#
    );
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(&config_path, &config).expect("write config");
    let out = srediag(
        &[
            "run",
            "--config",
            config_path.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let survived = victim.join("precious/data").exists();
    let _ = std::fs::remove_file(run.join("plugins"));
    let _ = std::fs::remove_file(run.join("agent.lock"));
    let _ = std::fs::remove_dir(&run);
    eprintln!(
        "run dir prepared by nobody: root's {}/precious survived: {survived}; the agent exited {:?}: {}",
        victim.display(),
        out.status.code(),
        out.stderr.trim()
    );
    // The fix: the run directory follows the safe-path rule; the agent refuses it, naming it.
    assert_eq!(out.status.code(), Some(77), "{}", out.stderr);
    assert!(
        out.stderr.contains(&run.display().to_string()) && out.stderr.contains("owned by uid"),
        "{}",
        out.stderr
    );
    // HOLE: the run directory is not checked by the safe-path rule: a run dir another user created lets them make the root agent remove_dir_all any directory's subdirectories
    assert!(
        survived,
        "the root agent deleted {}/precious through a symlink planted in its run directory",
        victim.display()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. The OTLP/HTTP receiver: what a client (any local user) can make the agent hold.

/// Each connection may buffer a body up to `max_request_body_size` (20 MiB) for `read_timeout`
/// (30 s), and the number of connections is not bounded: clients that send all but the last
/// byte of a 20 MiB body make the agent hold 20 MiB each. 40 connections: ~800 MiB.
#[test]
fn otlp_clients_holding_almost_complete_bodies_grow_the_agent_without_bound() {
    use std::io::Write as _;
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (tel, otlp) = (free_port(), free_port());
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  debug: {{}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
"#
    );
    let agent = Agent::start(dir.path(), &config, tel);
    let rss_before = reset_hwm(&agent);
    let scraper = Scraper::start(&agent);
    const BODY: usize = 20 * 1024 * 1024;
    let chunk = vec![0u8; 1 << 20];
    let mut conns = Vec::new();
    let mut refused = 0;
    let t = Instant::now();
    for _ in 0..40 {
        // A connection the agent closes (503 once its body budget is spent, or over
        // max_connections) fails the client's writes: that is the bound at work.
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", otlp)) else {
            refused += 1;
            continue;
        };
        let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
        let mut ok = write!(
            c,
            "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {BODY}\r\n\r\n"
        )
        .is_ok();
        let mut sent = 0;
        while ok && sent + chunk.len() < BODY {
            ok = c.write_all(&chunk).is_ok();
            sent += chunk.len();
        }
        ok = ok && c.write_all(&chunk[..BODY - sent - 1]).is_ok();
        if !ok {
            refused += 1;
        }
        conns.push(c);
    }
    let (fails, slowest) = scraper.finish();
    let peak = status_kib(agent.pid(), "VmHWM:");
    let grew_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "40 connections holding 20 MiB − 1 byte each ({:.1}s, {refused} cut off by the agent): agent peak RSS +{grew_mib} MiB ({} → {} KiB); \
         /metrics failures {fails}, slowest {slowest} ms",
        t.elapsed().as_secs_f64(),
        rss_before,
        peak
    );
    drop(conns);
    // HOLE: no bound on concurrent OTLP/HTTP connections or on the bytes of bodies being read: N clients make the agent hold N × max_request_body_size for read_timeout
    assert!(refused > 0, "every connection was allowed to send its body");
    assert!(
        grew_mib < 256,
        "the agent grew by {grew_mib} MiB for 40 unfinished OTLP requests"
    );
}

/// One request within `max_request_body_size` (20 MiB) of empty log records — two protobuf
/// bytes each, ~10 million of them — is decoded whole: the agent's memory grows by a large
/// multiple of the body, from one request of any client.
#[test]
fn one_otlp_request_of_empty_records_costs_the_agent_gigabytes() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (tel, otlp) = (free_port(), free_port());
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  debug: {{}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
"#
    );
    let agent = Agent::start(dir.path(), &config, tel);
    let rss_before = reset_hwm(&agent);
    // ResourceLogs { ScopeLogs { log_records: [{}; n] } } by hand: each empty record is the
    // bytes 0x12 0x00.
    let n = 9_000_000usize;
    let scope_len = 2 * n;
    let varint = |mut v: usize, out: &mut Vec<u8>| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    let mut scope = Vec::with_capacity(scope_len + 8);
    scope.push(0x12); // ResourceLogs.scope_logs (2)
    varint(scope_len, &mut scope);
    for _ in 0..n {
        scope.extend_from_slice(&[0x12, 0x00]); // ScopeLogs.log_records (2), empty
    }
    let mut body = Vec::with_capacity(scope.len() + 8);
    body.push(0x0a); // ExportLogsServiceRequest.resource_logs (1)
    varint(scope.len(), &mut body);
    body.extend_from_slice(&scope);
    let len = body.len();
    let t = Instant::now();
    let code = http()
        .post(format!("http://127.0.0.1:{otlp}/v1/logs"))
        .header("Content-Type", "application/x-protobuf")
        .timeout(Duration::from_secs(120))
        .body(body)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let peak = status_kib(agent.pid(), "VmHWM:");
    let grew_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "one {:.1} MiB request of {n} empty log records: HTTP {code} after {:.1}s; agent peak RSS +{grew_mib} MiB",
        len as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    // HOLE: a request's decoded size is not bounded (only its encoded size): ~18 MB of empty records cost the agent a large multiple of that
    assert!(
        grew_mib < 256,
        "one OTLP request of {:.1} MiB grew the agent by {grew_mib} MiB",
        len as f64 / 1048576.0
    );
}

/// What held: a second root agent whose run directory names the first one's by another spelling
/// (a symlink, a trailing `/.`) takes the same lock file, is refused with exit 69, and the first
/// agent's plugin keeps running.
#[test]
fn a_second_agent_on_an_aliased_run_dir_is_refused_and_kills_nothing() {
    if !privileged("a_second_agent_on_an_aliased_run_dir_is_refused_and_kills_nothing") {
        return;
    }
    let _g = serial();
    let s = Setup::start(
        "  file:\n    path: {dir}/out.jsonl\n",
        &raw_plugin("p", "honest", ""),
        "    logs:\n      receivers: [otlp]\n      processors: [plugin/p]\n      exporters: [file]",
        |_| {},
    );
    wait_state(&s.admin, "p", &["ready"], Duration::from_secs(20));
    let pid = plugin_status(&s.admin, "p")["pid"].as_u64().expect("pid");
    let run = s.dir.path().join("run");
    let alias = s.dir.path().join("run-alias");
    std::os::unix::fs::symlink(&run, &alias).expect("symlink");
    for spelling in [alias.clone(), run.join(".")] {
        let d2 = tempfile::tempdir().expect("tempdir");
        let tel = free_port();
        let cfg = d2.path().join("agent.yaml");
        std::fs::write(
            &cfg,
            format!(
                "receivers:\n  hostmetrics:\n    collection_interval: 60s\nexporters:\n  debug: {{}}\nservice:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{tel}\n  pipelines:\n    metrics:\n      receivers: [hostmetrics]\n      exporters: [debug]\n"
            ),
        )
        .expect("config");
        let child = std::process::Command::new(agent_bin())
            .env("SREDIAG_RUN_DIR", &spelling)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn second agent");
        let mut g = ChildGuard::new("second agent", child);
        let st = g.wait_exit(Duration::from_secs(15));
        eprintln!(
            "second agent with run dir {}: {st}; first agent's plugin alive: {}",
            spelling.display(),
            pid_alive(pid)
        );
        assert_eq!(
            st.code(),
            Some(69),
            "second agent on {}",
            spelling.display()
        );
        assert!(pid_alive(pid), "the first agent's plugin was killed");
    }
    assert_eq!(s.state("p"), "ready");
}
