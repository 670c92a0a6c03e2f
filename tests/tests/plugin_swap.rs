//! Hot swap, make before break (docs/plugins.md, "Hot swap"), against the real agent: records
//! flow `otlp → plugin/swp → file` while the plugin is swapped (`srediag plugin upgrade`,
//! `srediag reload`, SIGHUP); the file exporter's output is checked for every sequence number,
//! and the agent's own log for the order of events (the old incarnation is never drained,
//! asked to shut down, signalled or killed before its successor is ready).
//!
//! Privileged (the sandbox needs root); without root the tests print why they skip, unless
//! `CI=true`. They share host-global state with the other plugin tests and run one at a time.

use serde_json::Value;
use srediag_tests::bundles::*;
use srediag_tests::plugins::*;
use srediag_tests::*;
use std::collections::HashMap;
use std::io::BufRead as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const NAME: &str = "swp";
const STAGE: &str = "plugin/swp";
/// Records per OTLP request of the load.
const PER_REQUEST: u64 = 500;
/// The plugin's batches (`data_path.max_batch_records`): the duplicate bound per swap.
const PER_BATCH: u64 = 250;
/// Where the probes' sequence numbers start (far from the load's).
const PROBES: u64 = 1 << 40;

fn test_plugin() -> PathBuf {
    plugin_bin("srediag-test-plugin")
}

/// Plugin `swp` for [`DataPath`]: `source` is `path: …` or `bundle: …`; `extra` holds more
/// settings, one per line, indented by four spaces.
fn entry(source: &str, config: &str, extra: &str) -> String {
    format!(
        "  {NAME}:\n    {source}\n    type: processor\n    config: {config}\n    shutdown_grace: 2s\n    data_path: {{max_batch_records: {PER_BATCH}}}\n{extra}"
    )
}

fn path_source(bin: &Path) -> String {
    format!("path: {}", bin.display())
}

// ---------------------------------------------------------------------------------------------
// Load and the file exporter's output.

/// OTLP/HTTP load at a target rate from `threads` senders, each sending its own blocks of
/// [`PER_REQUEST`] sequence numbers. A request the receiver refuses (backpressure) is sent again:
/// every block a sender records was accepted by the agent.
struct Load {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    senders: Vec<JoinHandle<Vec<Range<u64>>>>,
    started: Instant,
}

impl Load {
    fn start(url: String, rate: u64, threads: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let senders = (0..threads)
            .map(|t| {
                let (stop, refused, url) = (stop.clone(), refused.clone(), url.clone());
                std::thread::spawn(move || {
                    let client = http();
                    let mut blocks = Vec::new();
                    let mut k = t;
                    while !stop.load(Ordering::SeqCst) {
                        // Paced: block k is due k × PER_REQUEST / rate seconds after the start.
                        let due = started
                            + Duration::from_secs_f64((k * PER_REQUEST) as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let seqs = k * PER_REQUEST..(k + 1) * PER_REQUEST;
                        let req = logs_request("swap", "s", seqs.clone(), 0);
                        match post_protobuf(&client, &url, &req) {
                            200 => {
                                blocks.push(seqs);
                                k += threads;
                            }
                            429 | 503 => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            other => panic!("the receiver answered {other}"),
                        }
                    }
                    blocks
                })
            })
            .collect();
        Load {
            stop,
            refused,
            senders,
            started,
        }
    }

    /// Stops the senders: the blocks the agent accepted, the time it ran, the refusals.
    fn finish(self) -> (Vec<Range<u64>>, Duration, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let blocks = self
            .senders
            .into_iter()
            .flat_map(|s| s.join().expect("sender"))
            .collect();
        (
            blocks,
            self.started.elapsed(),
            self.refused.load(Ordering::SeqCst),
        )
    }
}

/// How often each `test.seq` is in the file exporter's output, read line by line with a plain
/// scan (a swap under load writes millions of records: no JSON tree per record).
fn seq_counts(path: &Path) -> HashMap<u64, u32> {
    const KEY: &[u8] = br#""key":"test.seq","value":{"intValue":""#;
    let mut counts = HashMap::new();
    let Ok(f) = std::fs::File::open(path) else {
        return counts;
    };
    for line in std::io::BufReader::with_capacity(1 << 20, f).split(b'\n') {
        let line = line.expect("read the exporter's output");
        let mut rest = &line[..];
        while let Some(i) = rest.windows(KEY.len()).position(|w| w == KEY) {
            rest = &rest[i + KEY.len()..];
            let end = rest.iter().position(|b| *b == b'"').unwrap_or(0);
            let seq = std::str::from_utf8(&rest[..end])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad test.seq in {}", path.display()));
            *counts.entry(seq).or_insert(0) += 1;
        }
    }
    counts
}

/// Records the file exporter wrote (its own count, flushed per batch).
fn exported(s: &DataPath) -> u64 {
    s.agent
        .counter("srediag_exporter_sent_items_total", &[("exporter", "file")]) as u64
}

/// Checks the output against what was accepted: every sequence number at least once (a gap is
/// a lost record), and the duplicates, which the agent must have counted. Returns the
/// duplicates.
fn check_nothing_lost(s: &DataPath, blocks: &[Range<u64>], probes: u64) -> u64 {
    let total: u64 = blocks.iter().map(|b| b.end - b.start).sum::<u64>() + probes;
    poll_until(
        Duration::from_secs(120),
        &format!("{total} records exported"),
        || (exported(s) >= total).then_some(()),
    );
    let counts = seq_counts(&s.out);
    let missing: Vec<u64> = blocks
        .iter()
        .flat_map(|b| b.clone())
        .chain(PROBES..PROBES + probes)
        .filter(|q| !counts.contains_key(q))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {total} accepted records lost, the first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let in_file: u64 = counts.values().map(|n| u64::from(*n)).sum();
    assert_eq!(
        in_file,
        exported(s),
        "the file holds what the exporter counted"
    );
    let duplicates = in_file - counts.len() as u64;
    let counted = s.agent.counter(
        "srediag_plugin_ipc_duplicate_records_total",
        &[("plugin", NAME)],
    ) as u64;
    assert_eq!(
        duplicates, counted,
        "duplicates in the file vs srediag_plugin_ipc_duplicate_records_total"
    );
    duplicates
}

/// Sends probe record `PROBES + i` and waits up to `within` for it in the file (reading only
/// what was appended since the post); the time it took, or `None`.
fn probe(
    s: &DataPath,
    client: &reqwest::blocking::Client,
    i: u64,
    within: Duration,
) -> Option<Duration> {
    use std::io::{Read as _, Seek as _};
    let needle = format!(
        r#""key":"test.seq","value":{{"intValue":"{}"}}"#,
        PROBES + i
    );
    let mut from = std::fs::metadata(&s.out).map_or(0, |m| m.len());
    let t = Instant::now();
    let req = logs_request("probe", "p", PROBES + i..PROBES + i + 1, 0);
    assert_eq!(post_protobuf(client, &s.url(), &req), 200);
    let mut buf = Vec::new();
    loop {
        if let Ok(mut f) = std::fs::File::open(&s.out) {
            // Overlap by a needle's length: a line may have been half written last time.
            let start = from.saturating_sub(needle.len() as u64);
            buf.clear();
            if f.seek(std::io::SeekFrom::Start(start)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                if buf.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    return Some(t.elapsed());
                }
                from = start + buf.len() as u64;
            }
        }
        if t.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The agent's log: the order of events.

/// What the agent logged about one incarnation of `swp` (by its pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    /// `plugin ready`.
    Ready(u64),
    /// Drained, asked to shut down, signalled or killed.
    Touched(u64, &'static str),
}

/// The agent's lines that stop or drain an incarnation, by a word of their message.
const TOUCHES: [&str; 5] = [
    "draining the old incarnation",
    "asking the plugin to shut down",
    "sending SIGTERM",
    "killing its cgroup",
    "did not drain in time",
];

/// The events of plugin `swp` in the agent's log, in order (the plugin's own output excluded:
/// it could print anything).
fn events(log: &str) -> Vec<Ev> {
    let pid = |l: &str| -> Option<u64> {
        let at = l.find(" pid=")? + 5;
        l[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    log.lines()
        .filter(|l| l.contains(&format!("plugin={NAME}")) && !l.contains("stream="))
        .filter_map(|l| {
            if l.contains("plugin ready") {
                return Some(Ev::Ready(pid(l)?));
            }
            let word = TOUCHES.iter().find(|w| l.contains(**w))?;
            Some(Ev::Touched(pid(l)?, word))
        })
        .collect()
}

/// The pids of the incarnations in the order they became ready, after checking that each one
/// was first drained, stopped, signalled or killed only after the next one was ready, and that
/// the last one was never touched.
fn check_make_before_break(log: &str) -> Vec<u64> {
    let ev = events(log);
    let ready: Vec<(usize, u64)> = ev
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Ev::Ready(p) => Some((i, *p)),
            Ev::Touched(..) => None,
        })
        .collect();
    for (n, w) in ready.windows(2).enumerate() {
        let ((_, old), (next_ready, new)) = (w[0], w[1]);
        let first = ev
            .iter()
            .position(|e| matches!(e, Ev::Touched(p, _) if *p == old));
        match first {
            Some(at) => assert!(
                at > next_ready,
                "swap {}: the old incarnation (pid {old}) was touched ({:?}) before its successor (pid {new}) was ready",
                n + 1,
                ev[at]
            ),
            None => panic!(
                "swap {}: the old incarnation (pid {old}) was never drained or stopped",
                n + 1
            ),
        }
    }
    if let Some((_, last)) = ready.last() {
        assert!(
            !ev.iter()
                .any(|e| matches!(e, Ev::Touched(p, _) if p == last)),
            "the serving incarnation (pid {last}) was touched"
        );
    }
    ready.iter().map(|(_, p)| *p).collect()
}

// ---------------------------------------------------------------------------------------------
// The operator's commands.

/// `srediag plugin upgrade swp [--bundle DIR] -o json`: exit code, the swap record, stderr.
fn upgrade(s: &DataPath, bundle: Option<&Path>) -> (i32, Value, String) {
    let socket = s.admin.display().to_string();
    let dir = bundle.map(|b| b.display().to_string());
    let mut args = vec!["plugin", "upgrade", NAME, "--socket", &socket, "-o", "json"];
    if let Some(d) = &dir {
        args.extend(["--bundle", d]);
    }
    let out = srediag(&args, Duration::from_secs(120));
    out.assert_no_panic();
    let v = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code(), v, out.stderr)
}

/// `srediag reload -o json`: exit code, the report, stderr.
fn reload(s: &DataPath) -> (i32, Value, String) {
    let socket = s.admin.display().to_string();
    let out = srediag(
        &["reload", "--socket", &socket, "-o", "json"],
        Duration::from_secs(120),
    );
    out.assert_no_panic();
    let v = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code(), v, out.stderr)
}

fn swaps(s: &DataPath, result: &str) -> f64 {
    s.agent.counter(
        "srediag_plugin_swaps_total",
        &[("name", NAME), ("result", result)],
    )
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

// ---------------------------------------------------------------------------------------------

#[test]
fn swap_under_load_loses_nothing_and_never_stops_the_old_before_the_new_is_ready() {
    if !privileged("swap_under_load_loses_nothing_and_never_stops_the_old_before_the_new_is_ready")
    {
        return;
    }
    let _g = serial();
    // The seed's 50k records/s; with a debug agent, plugin and senders sharing this 2-vCPU VM
    // ~30k/s is reached (what was reached is printed). SREDIAG_SWAP_RATE, SREDIAG_SWAP_SENDERS.
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rate, threads) = (
        env("SREDIAG_SWAP_RATE", 50_000),
        env("SREDIAG_SWAP_SENDERS", 4),
    );
    let s = DataPath::start(
        &entry(
            &path_source(&test_plugin()),
            "{pass: keep}",
            "    drain_timeout: 10s\n",
        ),
        STAGE,
    );
    let first = wait_state(&s.admin, NAME, &["ready"], Duration::from_secs(20));
    let load = Load::start(s.url(), rate, threads);
    // Steady state first, then 100 swaps back to back.
    poll_until(Duration::from_secs(30), "the load flowing", || {
        (exported(&s) > 10 * PER_REQUEST).then_some(())
    });
    let before = (exported(&s), Instant::now());
    let mut durations = Vec::new();
    let mut pids = vec![first["pid"].as_u64().expect("pid")];
    for n in 1..=100 {
        let (code, r, err) = upgrade(&s, None);
        assert_eq!(code, 0, "swap {n} failed: {r} {err}");
        assert_eq!(r["result"], "ok", "swap {n}: {r}");
        durations.push(r["duration_ms"].as_f64().expect("duration_ms"));
        let reason = r["reason"].as_str().unwrap_or_default();
        let pid: u64 = reason
            .strip_prefix("swapped to pid ")
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("swap {n}: no pid in {reason:?}"));
        pids.push(pid);
    }
    let during = (exported(&s) - before.0) as f64 / before.1.elapsed().as_secs_f64();
    let (blocks, ran, refused) = load.finish();
    let accepted: u64 = blocks.iter().map(|b| b.end - b.start).sum();
    let duplicates = check_nothing_lost(&s, &blocks, 0);
    let ready = check_make_before_break(&s.agent.stderr());
    assert_eq!(ready, pids, "the incarnations the agent logged ready");
    let log = s.agent.stderr();
    for word in [
        "sending SIGTERM",
        "killing its cgroup",
        "did not drain in time",
    ] {
        assert!(
            !log.lines()
                .any(|l| l.contains(word) && l.contains(&format!("plugin={NAME}"))),
            "an old incarnation had to be forced ({word}) although it drains"
        );
    }
    assert_eq!(swaps(&s, "ok"), 100.0);
    assert_eq!(
        s.agent
            .counter("srediag_plugin_restarts_total", &[("name", NAME)]),
        0.0,
        "no incarnation crashed"
    );
    let st = plugin_status(&s.admin, NAME);
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"].as_u64(), pids.last().copied(), "{st}");
    assert_eq!(st["last_swap"]["result"], "ok", "{st}");
    assert_eq!(
        s.agent.metric(
            "srediag_plugin_state",
            &[("name", NAME), ("state", "ready")]
        ),
        Some(1.0),
        "srediag_plugin_state follows the serving incarnation"
    );
    assert!(
        duplicates <= 100 * PER_BATCH,
        "{duplicates} duplicates: more than one batch ({PER_BATCH}) per swap"
    );
    let (p50, p99) = (
        percentile(&mut durations, 0.5),
        percentile(&mut durations, 0.99),
    );
    eprintln!(
        "swap under load: target {rate}/s, accepted {accepted} records in {:.1}s ({:.0}/s; {refused} requests refused and resent), exported {during:.0}/s during the swaps; 100 swaps p50 {p50:.0} ms p99 {p99:.0} ms; 0 lost; {duplicates} duplicates (counted)",
        ran.as_secs_f64(),
        accepted as f64 / ran.as_secs_f64()
    );
}

/// Rewrites the agent's configuration file, replacing `from` (which must be there) with `to`.
fn edit_config(s: &DataPath, from: &str, to: &str) {
    let p = &s.agent.config_path;
    let text = std::fs::read_to_string(p).expect("read the agent's config");
    assert!(text.contains(from), "{from:?} not in {}", p.display());
    std::fs::write(p, text.replacen(from, to, 1)).expect("write the agent's config");
}

/// What `srediag plugin list` says about `swp`'s serving incarnation.
fn serving(s: &DataPath) -> (u64, Value) {
    let st = wait_state(&s.admin, NAME, &["ready"], Duration::from_secs(20));
    (st["pid"].as_u64().expect("pid"), st)
}

/// Lines of the agent's log with `word` about plugin `swp`.
fn log_lines(s: &DataPath, word: &str) -> usize {
    s.agent
        .stderr()
        .lines()
        .filter(|l| {
            l.contains(word) && l.contains(&format!("plugin={NAME}")) && !l.contains("stream=")
        })
        .count()
}

#[test]
fn fifty_aborted_swaps_leave_the_old_incarnation_serving_untouched() {
    if !privileged("fifty_aborted_swaps_leave_the_old_incarnation_serving_untouched") {
        return;
    }
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(&dir.path().join("keys"));
    let (rogue, _) = keygen(&dir.path().join("rogue"));
    write_policy(&dir.path().join("trust.yaml"), &public, false);
    make_bundle(
        &dir.path().join("plugins").join(NAME),
        NAME,
        "processor",
        "1.0.0",
        &test_plugin(),
        "",
    );
    sign(&dir.path().join("plugins").join(NAME), &key);
    // Bundles that fail verification: signed by a key the policy does not trust, and signed by
    // the trusted key but with its binary changed afterwards.
    let untrusted = dir.path().join("new/untrusted");
    make_bundle(&untrusted, NAME, "processor", "9.0.0", &test_plugin(), "");
    sign(&untrusted, &rogue);
    let tampered = dir.path().join("new/tampered");
    make_bundle(&tampered, NAME, "processor", "9.0.0", &test_plugin(), "");
    sign(&tampered, &key);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(tampered.join("bin").join(NAME))
        .expect("open the bundle's binary");
    std::io::Write::write_all(&mut f, b"\0tampered").expect("tamper");
    drop(f);
    let s = DataPath::start_in(dir, &entry("bundle: swp", "{pass: keep}", ""), STAGE);
    let (pid, st) = serving(&s);
    assert_eq!(st["version"], "1.0.0", "{st}");
    let load = Load::start(s.url(), 5_000, 1);
    let client = http();
    let mut within = Vec::new();
    let mut kinds: HashMap<&str, u32> = HashMap::new();
    for i in 0..50u64 {
        let (expected, code, record, err) = match i % 3 {
            0 => {
                let bundle = if i % 2 == 0 { &untrusted } else { &tampered };
                let (code, r, err) = upgrade(&s, Some(bundle));
                ("aborted_verify", code, r, err)
            }
            1 => {
                // Verifies (signed, trusted, a new version each time), then dies at once: a
                // program that is not a plugin at all.
                let b = s.dir().join(format!("new/false-{i}"));
                make_bundle(
                    &b,
                    NAME,
                    "processor",
                    &format!("3.0.{i}"),
                    Path::new("/bin/false"),
                    "",
                );
                let key = s.dir().join("keys/cosign.key");
                sign(&b, &key);
                let (code, r, err) = upgrade(&s, Some(&b));
                ("aborted_start", code, r, err)
            }
            _ => {
                // A new configuration with which the plugin never becomes ready.
                if i == 2 {
                    edit_config(
                        &s,
                        "config: {pass: keep}",
                        "config: {pass: keep, mode: never_ready}\n    heartbeat: {startup_timeout: 1s}",
                    );
                }
                let (code, r, err) = reload(&s);
                ("aborted_ready", code, r["swapped"][NAME].clone(), err)
            }
        };
        *kinds.entry(expected).or_default() += 1;
        assert_eq!(code, 1, "abort {i}: exit code; {record} {err}");
        assert!(
            err.contains("serves on") || err.contains("aborted"),
            "abort {i}: the CLI says the old one serves on: {err}"
        );
        assert_eq!(record["result"], expected, "abort {i}: {record}");
        let reason = record["reason"].as_str().unwrap_or_default();
        let cause = match expected {
            "aborted_verify" => "rejected_",
            "aborted_start" => "SRD-P005",
            _ => "SRD-P006",
        };
        assert!(
            reason.contains(cause),
            "abort {i}: reason {reason:?} lacks {cause}"
        );
        // As documented: plugin list's last swap, the counter, the log line.
        let (now, st) = serving(&s);
        assert_eq!(now, pid, "abort {i}: the serving incarnation changed: {st}");
        assert_eq!(st["version"], "1.0.0", "abort {i}: {st}");
        assert_eq!(st["restarts"], 0, "abort {i}: {st}");
        assert_eq!(st["last_swap"]["result"], expected, "abort {i}: {st}");
        assert_eq!(st["last_swap"]["reason"], reason, "abort {i}: {st}");
        assert_eq!(
            swaps(&s, expected),
            f64::from(kinds[expected]),
            "abort {i}: srediag_plugin_swaps_total{{result={expected}}}"
        );
        assert_eq!(
            log_lines(&s, "swap aborted"),
            i as usize + 1,
            "abort {i}: log"
        );
        // The new incarnation's slot is gone again.
        assert!(
            plugin_cgroups(&format!("{NAME}.b")).is_empty(),
            "abort {i}: the new incarnation's cgroup is left"
        );
        // And the plugin serves: a record sent now comes through.
        within.push(probe(&s, &client, i, Duration::from_secs(5)));
    }
    let served = within.iter().filter(|d| d.is_some()).count();
    let (blocks, _, _) = load.finish();
    check_nothing_lost(&s, &blocks, 50);
    assert_eq!(
        served, 50,
        "aborts after which the plugin served within 5 s"
    );
    // The old incarnation was never drained, stopped, signalled or killed.
    assert!(
        !events(&s.agent.stderr())
            .iter()
            .any(|e| matches!(e, Ev::Touched(p, _) if *p == pid)),
        "the old incarnation was touched by an aborted swap"
    );
    assert_eq!(
        s.agent.metric(
            "srediag_plugin_state",
            &[("name", NAME), ("state", "ready")]
        ),
        Some(1.0),
        "srediag_plugin_state says the plugin is not ready although it serves"
    );
    // Nor did the aborted upgrades raise the rollback mark: the running 1.0.0 must still load
    // when the agent restarts (a bundle that verified but never served is not "accepted").
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(s.dir().join("plugin-versions.json")).expect("rollback state"),
    )
    .expect("rollback state JSON");
    assert_eq!(
        state["plugins"][NAME]["version"], "1.0.0",
        "an aborted upgrade moved the rollback mark: {state}"
    );
    let mut ms: Vec<f64> = within
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    eprintln!(
        "aborts: {kinds:?}; 50/50 served within 5 s (probe p50 {:.0} ms, max {:.0} ms)",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 1.0)
    );
}

#[test]
fn an_old_incarnation_that_ignores_the_drain_is_killed_and_its_batches_go_to_the_new_one() {
    if !privileged(
        "an_old_incarnation_that_ignores_the_drain_is_killed_and_its_batches_go_to_the_new_one",
    ) {
        return;
    }
    let _g = serial();
    // The old one answers each batch 300 ms after it came, and nothing at all once asked to
    // drain: it holds ~300 ms of batches, which only re-delivery can save.
    let raw = plugin_bin("srediag-raw-plugin");
    let s = DataPath::start(
        &entry(
            &path_source(&raw),
            "{delay_ms: 300}",
            "    args: [deaf-drain]\n    drain_timeout: 1s\n",
        ),
        STAGE,
    );
    let (old, _) = serving(&s);
    let load = Load::start(s.url(), 5_000, 1);
    poll_until(Duration::from_secs(30), "the load flowing", || {
        (exported(&s) > 5 * PER_REQUEST).then_some(())
    });
    // The operator deploys a fixed plugin: another program, same name.
    edit_config(
        &s,
        &format!("path: {}", raw.display()),
        &format!("path: {}", test_plugin().display()),
    );
    edit_config(&s, "{delay_ms: 300}", "{pass: keep}");
    edit_config(&s, "    args: [deaf-drain]\n", "");
    let (code, r, err) = reload(&s);
    assert_eq!(code, 0, "{r} {err}");
    let rec = &r["swapped"][NAME];
    assert_eq!(rec["result"], "drain_timeout", "{r}");
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|m| m.contains("did not drain") && m.contains("went to the new one")),
        "{rec}"
    );
    let (new, st) = serving(&s);
    assert_ne!(new, old);
    assert_eq!(st["last_swap"]["result"], "drain_timeout", "{st}");
    assert_eq!(swaps(&s, "drain_timeout"), 1.0);
    assert_eq!(log_lines(&s, "did not drain in time"), 1);
    let holding: u64 = hostile_lines_raw(&s.agent.stderr())
        .expect("the old incarnation said what it held when the drain came");
    let (blocks, _, _) = load.finish();
    let duplicates = check_nothing_lost(&s, &blocks, 0);
    let redelivered = s.agent.counter(
        "srediag_plugin_ipc_redelivered_batches_total",
        &[("plugin", NAME)],
    );
    assert!(
        redelivered >= holding as f64 && holding > 0,
        "{redelivered} batches re-delivered; the old incarnation held {holding}"
    );
    // The old one is gone (killed), not left running.
    poll_until(Duration::from_secs(5), "the old incarnation gone", || {
        std::fs::read_to_string(format!("/proc/{old}/status"))
            .map_or(true, |st| st.contains("State:\tZ"))
            .then_some(())
    });
    check_make_before_break(&s.agent.stderr());
    eprintln!(
        "drain timeout: the old incarnation held {holding} batches, {redelivered} re-delivered, 0 lost, {duplicates} duplicates"
    );
}

/// `RAW drain ignored holding=N` from the raw plugin's stdout (in the agent's log).
fn hostile_lines_raw(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.split("RAW drain ignored holding=").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
}

#[test]
fn swapping_a_crash_looping_plugin_never_strands_the_data_path() {
    if !privileged("swapping_a_crash_looping_plugin_never_strands_the_data_path") {
        return;
    }
    let _g = serial();
    // The old incarnation dies 60 ms after each start and restarts at once: at a swap it is
    // as likely dead or starting again as serving. The swap's new one must end up serving,
    // whatever the old supervisor does meanwhile.
    let crashing = "{pass: keep, mode: crash, after_ms: 60}";
    let fixed = "{pass: keep}";
    let s = DataPath::start(
        &entry(
            &path_source(&test_plugin()),
            crashing,
            "    restart: {initial_backoff: 1ms, max_backoff: 5ms, quarantine_after: 1000000, window: 1s}\n",
        ),
        STAGE,
    );
    wait_state(&s.admin, NAME, &["ready"], Duration::from_secs(20));
    let load = Load::start(s.url(), 2_000, 1);
    let client = http();
    let mut probes = 0;
    for round in 0..10 {
        // Fixed version in: it must serve, and keep serving.
        edit_config(&s, crashing, fixed);
        let (code, r, err) = reload(&s);
        assert_eq!(code, 0, "round {round}: {r} {err}");
        assert!(
            matches!(r["swapped"][NAME]["result"].as_str(), Some("ok")),
            "round {round}: {r}"
        );
        for _ in 0..3 {
            assert!(
                probe(&s, &client, probes, Duration::from_secs(10)).is_some(),
                "round {round}: after the swap to the fixed version no record comes through; plugin list: {}",
                plugin_status(&s.admin, NAME)
            );
            probes += 1;
        }
        // And back to the crashing one, for the next round (its new incarnation may die
        // before it is ready: that swap is aborted and tried again).
        edit_config(&s, fixed, crashing);
        poll_until(
            Duration::from_secs(60),
            "the swap back to the crashing version",
            || {
                let (code, r, err) = reload(&s);
                match r["swapped"][NAME]["result"].as_str() {
                    Some("ok" | "drain_timeout") => Some(()),
                    Some("aborted_start" | "aborted_ready") => None,
                    _ => panic!("round {round}: reload exit {code}: {r} {err}"),
                }
            },
        );
    }
    let (blocks, _, _) = load.finish();
    check_nothing_lost(&s, &blocks, probes);
}

#[test]
fn upgrading_a_quarantined_plugin_makes_it_serve_again() {
    if !privileged("upgrading_a_quarantined_plugin_makes_it_serve_again") {
        return;
    }
    let _g = serial();
    let crashing = "{pass: keep, mode: crash, after_ms: 0}";
    let s = DataPath::start(
        &entry(
            &path_source(&test_plugin()),
            crashing,
            "    restart: {initial_backoff: 1ms, max_backoff: 5ms, quarantine_after: 2, window: 60s}\n",
        ),
        STAGE,
    );
    wait_state(&s.admin, NAME, &["quarantined"], Duration::from_secs(30));
    // The operator ships the fix and reloads.
    edit_config(&s, crashing, "{pass: keep}");
    let (code, r, err) = reload(&s);
    assert_eq!(code, 0, "{r} {err}");
    let rec = &r["swapped"][NAME];
    assert_eq!(rec["result"], "ok", "{r}");
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|m| m.contains("was not running")),
        "{rec}"
    );
    serving(&s);
    let client = http();
    assert!(
        probe(&s, &client, 0, Duration::from_secs(10)).is_some(),
        "the upgraded plugin serves but no record comes through: {}",
        s.agent
            .metrics_text()
            .lines()
            .filter(|l| l.contains("unavailable"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        s.agent.counter(
            "srediag_plugin_ipc_dropped_records_total",
            &[("plugin", NAME), ("reason", "unavailable")]
        ),
        0.0,
        "records dropped as unavailable while the new incarnation served"
    );
    let (code, body) = s.agent.get("/-/ready");
    assert_eq!(code, 200, "/-/ready after the upgrade: {body}");
}

#[test]
fn reload_with_an_invalid_config_names_the_error_and_changes_nothing() {
    if !privileged("reload_with_an_invalid_config_names_the_error_and_changes_nothing") {
        return;
    }
    let _g = serial();
    let s = DataPath::start(
        &entry(&path_source(&test_plugin()), "{pass: keep}", ""),
        STAGE,
    );
    let (pid, _) = serving(&s);
    let good = std::fs::read_to_string(&s.agent.config_path).expect("config");
    // A typo in the plugin's settings (and a change that would swap it if it were valid).
    let bad = good.replacen(
        "    shutdown_grace: 2s\n",
        "    shutdown_grace: 3s\n    shutdown_grase: 2s\n",
        1,
    );
    let off = bad.find("shutdown_grase").expect("marker");
    let (line, col) = line_col(&bad, off);
    std::fs::write(&s.agent.config_path, &bad).expect("write config");
    let at = format!("{}:{line}:{col}", s.agent.config_path.display());

    // `srediag reload`: exit 78 with FILE:LINE:COL.
    let (code, r, err) = reload(&s);
    assert_eq!(code, 78, "{r} {err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&at) && l.contains("shutdown_grase")),
        "stderr does not name {at}: {err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");

    // SIGHUP: the same error in the log, the agent keeps running.
    let before = log_lines_any(&s, "reload refused");
    // SAFETY: signalling the agent this test started (its pid is not reaped yet).
    unsafe { libc::kill(s.agent.pid(), libc::SIGHUP) };
    let line = poll_until(
        Duration::from_secs(10),
        "the refused SIGHUP reload logged",
        || {
            let log = s.agent.stderr();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("reload refused"))
                .collect();
            (lines.len() > before).then(|| lines[lines.len() - 1].to_string())
        },
    );
    assert!(
        line.contains(&at) && line.contains("shutdown_grase"),
        "the SIGHUP reload's log line does not name {at}: {line}"
    );
    assert!(s.agent.healthy(), "the agent is not healthy after SIGHUP");

    // Nothing changed: the same incarnation, no swap at all.
    let (now, st) = serving(&s);
    assert_eq!(now, pid, "{st}");
    assert!(st["last_swap"].is_null(), "{st}");
    for result in [
        "ok",
        "drain_timeout",
        "aborted_verify",
        "aborted_start",
        "aborted_ready",
    ] {
        assert_eq!(swaps(&s, result), 0.0, "{result}");
    }
    let client = http();
    assert!(probe(&s, &client, 0, Duration::from_secs(5)).is_some());

    // The running configuration is still the old one: the fixed file's change applies now.
    std::fs::write(
        &s.agent.config_path,
        good.replacen("shutdown_grace: 2s", "shutdown_grace: 3s", 1),
    )
    .expect("write config");
    let (code, r, err) = reload(&s);
    assert_eq!(code, 0, "{r} {err}");
    assert_eq!(r["swapped"][NAME]["result"], "ok", "{r}");
}

/// Lines of the agent's log with `word`.
fn log_lines_any(s: &DataPath, word: &str) -> usize {
    s.agent
        .stderr()
        .lines()
        .filter(|l| l.contains(word))
        .count()
}
