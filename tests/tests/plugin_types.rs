//! Receiver and exporter plugins in real pipelines (issue 13): a receiver plugin's records enter
//! the pipelines that list it with their backpressure (drops counted exactly); an exporter
//! plugin acknowledges only after delivery, and one killed mid-export gets its unacknowledged
//! batches again (at least once: no gap at the sink, duplicates bounded and counted).

use srediag_tests::plugins::*;
use srediag_tests::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn a_receiver_plugin_feeds_its_pipelines_and_drops_are_exact() {
    if !privileged("a_receiver_plugin_feeds_its_pipelines_and_drops_are_exact") {
        return;
    }
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.sock");
    let tel = free_port();
    let run = run_id();
    // Pipeline `all` keeps everything (block); pipeline `lossy` has a tiny drop queue in front of
    // its exporter. The same receiver plugin feeds both.
    let cfg = format!(
        r#"exporters:
  file/all:
    path: {d}/all.jsonl
  file/lossy:
    path: {d}/lossy.jsonl
    queue: {{capacity: 1, policy: drop}}
plugins:
  seq:
    path: {bin}
    type: receiver
    args: [receiver]
    config: {{emit: 20000, batch: 50, run: {run}}}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs/all:
      receivers: [plugin/seq]
      exporters: [file/all]
    logs/lossy:
      receivers: [plugin/seq]
      exporters: [file/lossy]
"#,
        d = dir.path().display(),
        bin = plugin_bin("srediag-test-plugin").display(),
        admin = admin.display()
    );
    let agent = start_agent(dir.path(), &cfg, tel, &admin);
    let all = dir.path().join("all.jsonl");
    let count = |p: &std::path::Path| -> usize {
        if !p.exists() {
            return 0;
        }
        log_records(&read_jsonl(p))
            .iter()
            .filter(|r| r.attr_str("test.run") == Some(run.as_str()))
            .count()
    };
    poll_until(
        Duration::from_secs(60),
        "20000 records in pipeline all",
        || (count(&all) == 20_000).then_some(()),
    );
    // Every record exactly once in `all`.
    let mut seen = BTreeMap::new();
    for r in log_records(&read_jsonl(&all)) {
        if r.attr_str("test.run") == Some(run.as_str()) {
            *seen
                .entry(r.attr_int("test.seq").expect("seq"))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 20_000);
    assert!(seen.values().all(|&n| n == 1), "duplicates in pipeline all");
    assert_eq!(
        agent.counter(
            "srediag_receiver_accepted_items_total",
            &[("receiver", "plugin/seq"), ("signal", "logs")]
        ),
        20_000.0
    );
    // `lossy`: what its queue dropped is counted exactly.
    let dropped = poll_until(Duration::from_secs(20), "lossy accounted", || {
        let got = count(&dir.path().join("lossy.jsonl")) as f64;
        let dropped = agent.counter(
            "srediag_queue_dropped_items_total",
            &[("kind", "exporter"), ("component", "file/lossy")],
        );
        (got + dropped == 20_000.0).then_some(dropped)
    });
    eprintln!("lossy pipeline dropped {dropped} of 20000 (counted exactly)");
}

/// `(run, seq)` lines an exporter plugin delivered.
type Delivered = Arc<Mutex<Vec<(String, i64)>>>;

/// Collects `<run> <seq>` lines from exporter plugins.
fn sink() -> (u16, Delivered) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let port = l.local_addr().expect("addr").port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(c).lines().map_while(Result::ok) {
                    if let Some((run, seq)) = line.split_once(' ')
                        && let Ok(seq) = seq.parse()
                    {
                        out.lock().expect("sink").push((run.to_string(), seq));
                    }
                }
            });
        }
    });
    (port, lines)
}

#[test]
fn an_exporter_plugin_killed_100_times_leaves_no_gap() {
    if !privileged("an_exporter_plugin_killed_100_times_leaves_no_gap") {
        return;
    }
    let _g = serial();
    let (port, lines) = sink();
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.sock");
    let (tel, otlp) = (free_port(), free_port());
    let cfg = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
plugins:
  sink:
    path: {bin}
    type: exporter
    args: [exporter]
    config: {{sink_port: {port}}}
    network: {{connect: [{port}]}}
    restart: {{initial_backoff: 10ms, max_backoff: 50ms, quarantine_after: 1000}}
    data_path: {{max_in_flight: 8, max_batch_records: 100}}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [plugin/sink]
"#,
        bin = plugin_bin("srediag-test-plugin").display(),
        admin = admin.display()
    );
    let agent = start_agent(dir.path(), &cfg, tel, &admin);
    wait_state(&admin, "sink", &["ready"], Duration::from_secs(20));
    let run = run_id();
    let url = format!("http://127.0.0.1:{otlp}/v1/logs");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (run, url, stop) = (run.clone(), url.clone(), stop.clone());
        std::thread::spawn(move || {
            let client = http();
            let mut next = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let code =
                    post_protobuf(&client, &url, &logs_request(&run, "e", next..next + 100, 0));
                assert_eq!(code, 200);
                next += 100;
            }
            next
        })
    };
    for _ in 0..100 {
        let st = wait_state(&admin, "sink", &["ready"], Duration::from_secs(20));
        let pid = st["pid"].as_i64().expect("pid") as i32;
        std::thread::sleep(Duration::from_millis(30));
        // SAFETY: kill(2) of the plugin's pid, read from the agent a moment ago.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        poll_until(Duration::from_secs(10), "the plugin restarted", || {
            (plugin_status(&admin, "sink")["pid"].as_i64() != Some(pid as i64)).then_some(())
        });
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sender.join().expect("sender");
    wait_state(&admin, "sink", &["ready"], Duration::from_secs(20));
    poll_until(Duration::from_secs(60), "every record at the sink", || {
        let got: std::collections::BTreeSet<i64> = lines
            .lock()
            .expect("sink")
            .iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, s)| *s)
            .collect();
        (got.len() as u64 == sent).then_some(())
    });
    let all: Vec<i64> = lines
        .lock()
        .expect("sink")
        .iter()
        .filter(|(r, _)| *r == run)
        .map(|(_, s)| *s)
        .collect();
    let distinct: std::collections::BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len() as u64, sent, "gaps at the sink");
    assert_eq!(*distinct.iter().next_back().expect("max") as u64, sent - 1);
    let dups = all.len() as u64 - sent;
    let redelivered = agent.counter(
        "srediag_plugin_ipc_redelivered_batches_total",
        &[("plugin", "sink")],
    );
    // A duplicate arises only from a batch delivered but not acknowledged before the kill: at
    // most the window (8 batches of 100) per kill, and only re-sent batches can duplicate.
    assert!(
        dups as f64 <= redelivered * 100.0 && dups <= 100 * 8 * 100,
        "{dups} duplicate records, {redelivered} batches re-delivered"
    );
    let acked = agent.counter(
        "srediag_exporter_sent_items_total",
        &[("exporter", "plugin/sink"), ("signal", "logs")],
    );
    assert_eq!(acked as u64, sent, "acknowledged items = items sent");
    eprintln!(
        "exporter kills: {sent} records, {dups} duplicates, {redelivered} batches re-delivered"
    );
}

#[test]
fn exporter_plugin_failures_are_counted_as_failed() {
    if !privileged("exporter_plugin_failures_are_counted_as_failed") {
        return;
    }
    let _g = serial();
    let (port, lines) = sink();
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.sock");
    let (tel, otlp) = (free_port(), free_port());
    let cfg = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
plugins:
  sink:
    path: {bin}
    type: exporter
    args: [exporter]
    config: {{sink_port: {port}, fail_every: 3}}
    network: {{connect: [{port}]}}
    data_path: {{max_batch_records: 10}}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [plugin/sink]
"#,
        bin = plugin_bin("srediag-test-plugin").display(),
        admin = admin.display()
    );
    let agent = start_agent(dir.path(), &cfg, tel, &admin);
    wait_state(&admin, "sink", &["ready"], Duration::from_secs(20));
    let run = run_id();
    let url = format!("http://127.0.0.1:{otlp}/v1/logs");
    for i in 0..30u64 {
        assert_eq!(
            post_protobuf(
                &http(),
                &url,
                &logs_request(&run, "f", i * 10..i * 10 + 10, 0)
            ),
            200
        );
    }
    let (sent, failed) = poll_until(Duration::from_secs(20), "300 records accounted", || {
        let c = |n| agent.counter(n, &[("exporter", "plugin/sink"), ("signal", "logs")]);
        let (s, f) = (
            c("srediag_exporter_sent_items_total"),
            c("srediag_exporter_failed_items_total"),
        );
        (s + f == 300.0).then_some((s, f))
    });
    assert_eq!(failed, 100.0, "every third batch of 10 refused");
    let at_sink = lines
        .lock()
        .expect("sink")
        .iter()
        .filter(|(r, _)| *r == run)
        .count();
    assert_eq!(at_sink as f64, sent);
}

#[test]
fn validate_checks_plugin_placement_against_its_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = plugin_bin("srediag-test-plugin");
    let yaml = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
exporters:
  debug: {{}}
plugins:
  rcv:
    path: {bin}
    type: receiver
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug, plugin/rcv]
"#,
        bin = bin.display()
    );
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, &yaml).expect("write");
    let out = srediag(
        &["validate", "--config", &f.display().to_string()],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), 78, "{}", out.stderr);
    let line = out
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("error:") && l.contains("exporters[1]"))
        .unwrap_or_else(|| panic!("no error names exporters[1]:\n{}", out.stderr));
    let (_, l, c) = marked(&yaml.replace("plugin/rcv]", "⟨plugin/rcv]"));
    assert!(
        line.contains(&format!("bad.yaml:{l}:{c}: error:"))
            && line.contains("receiver plugin")
            && line.contains("only be listed under receivers"),
        "{line}"
    );
}
