//! The shared-memory data path against the real agent: records sent to the `otlp` receiver cross
//! into a sandboxed plugin and back, reach the `file` exporter, and survive plugin crashes,
//! hostile ring contents and a stalled plugin.
//!
//! Privileged (the sandbox needs root); without root the tests print why they skip, unless
//! `CI=true`. They share host-global state with the other plugin tests and run one at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use srediag_tests::plugins::*;
use srediag_tests::*;

fn vectorhash_bin() -> PathBuf {
    plugin_bin("vectorhashprocessor")
}

#[test]
fn vectorhash_end_to_end_drops_duplicates_and_keeps_everything_else() {
    if !privileged("vectorhash_end_to_end_drops_duplicates_and_keeps_everything_else") {
        return;
    }
    let _g = serial();
    let s = DataPath::start(
        &format!(
            "  vectorhashprocessor:\n    path: {}\n    type: processor\n    config: {{window_seconds: 60}}",
            vectorhash_bin().display()
        ),
        "batch, plugin/vectorhashprocessor",
    );
    let run = run_id();
    let client = http();
    // 0..500 unique, then 0..100 again (duplicates: same body and attributes; only the
    // timestamps differ, which the default identity ignores), then 500..600 unique.
    for (range, pad) in [(0..500, 40), (0..100, 40), (500..600, 40)] {
        let status = post_protobuf(&client, &s.url(), &logs_request(&run, "vh", range, pad));
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(150));
    }
    let got = poll_until(Duration::from_secs(20), "600 records in the file", || {
        let m = s.seqs(&run);
        (m.len() == 600).then_some(m)
    });
    std::thread::sleep(Duration::from_millis(500));
    let got_after = s.seqs(&run);
    assert_eq!(got, got_after, "records kept arriving");
    assert!(
        got.iter().all(|(k, n)| (0..600).contains(k) && *n == 1),
        "every sequence number exactly once"
    );
    // Everything else intact: body, severity, resource, scope.
    let records = log_records(&read_jsonl(&s.out));
    let r = records
        .iter()
        .find(|r| r.attr_int("test.seq") == Some(42))
        .expect("seq 42");
    assert!(r.body.as_deref().unwrap().starts_with("vh-42 xxxx"));
    assert_eq!(r.severity_number, Some(9));
    assert_eq!(r.severity_text.as_deref(), Some("INFO"));
    assert_eq!(
        r.resource.get("service.name").and_then(any_str),
        Some("srediag-test")
    );
    assert_eq!(r.scope_name.as_deref(), Some("srediag-tests"));
    let labels = [
        ("pipeline", "logs"),
        ("processor", "plugin/vectorhashprocessor"),
        ("signal", "logs"),
    ];
    let incoming = s
        .agent
        .counter("srediag_processor_incoming_items_total", &labels);
    let outgoing = s
        .agent
        .counter("srediag_processor_outgoing_items_total", &labels);
    assert_eq!((incoming, outgoing), (700.0, 600.0));
    assert!(
        s.agent.counter(
            "srediag_plugin_ipc_batches_total",
            &[
                ("plugin", "vectorhashprocessor"),
                ("direction", "to_plugin")
            ]
        ) >= 3.0
    );
    // The plugin's verb (diag/dedup-stats) is advertised.
    let st = plugin_status(&s.admin, "vectorhashprocessor");
    let caps = st["capabilities"].to_string();
    assert!(
        caps.contains("processor/vectorhash") && caps.contains("diag/dedup-stats"),
        "{st}"
    );
}

#[test]
fn sigkill_of_the_plugin_100_times_loses_no_record() {
    if !privileged("sigkill_of_the_plugin_100_times_loses_no_record") {
        return;
    }
    let _g = serial();
    let (window, per_batch) = (8u64, 64u64);
    let s = DataPath::start(
        &format!(
            "  vectorhashprocessor:\n    path: {}\n    type: processor\n    restart: {{initial_backoff: 5ms, max_backoff: 20ms, quarantine_after: 100000, window: 1s}}\n    data_path: {{max_in_flight: {window}, max_batch_records: {per_batch}}}",
            vectorhash_bin().display()
        ),
        "plugin/vectorhashprocessor",
    );
    let run = run_id();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent, url, run) = (stop.clone(), sent.clone(), s.url(), run.clone());
        std::thread::spawn(move || {
            let client = http();
            let mut next = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let req = logs_request(&run, "k", next..next + 50, 0);
                let status = post_protobuf(&client, &url, &req);
                assert_eq!(status, 200, "the receiver refused a batch");
                next += 50;
                sent.store(next, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut kills = 0;
    let mut last_pid = 0;
    let started = Instant::now();
    while kills < 100 {
        let st = wait_state(
            &s.admin,
            "vectorhashprocessor",
            &["ready"],
            Duration::from_secs(20),
        );
        let pid = st["pid"].as_u64().expect("pid");
        if pid == last_pid {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // Let it take some batches first.
        std::thread::sleep(Duration::from_millis(10));
        // SAFETY: signalling the plugin process the agent reported.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        last_pid = pid;
        kills += 1;
    }
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    let total = sent.load(Ordering::SeqCst);
    let got = poll_until(
        Duration::from_secs(30),
        "every record sent in the file",
        || {
            let m = s.seqs(&run);
            (m.len() as u64 == total).then_some(m)
        },
    );
    let missing: Vec<u64> = (0..total)
        .filter(|i| !got.contains_key(&(*i as i64)))
        .collect();
    assert!(
        missing.is_empty(),
        "sequence gaps: {:?}",
        &missing[..missing.len().min(20)]
    );
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    let redelivered = s.agent.counter(
        "srediag_plugin_ipc_redelivered_batches_total",
        &[("plugin", "vectorhashprocessor")],
    );
    eprintln!(
        "kill test: {kills} SIGKILLs in {:?}, {total} records sent, 0 gaps, {duplicates} duplicates, {redelivered} batches re-delivered",
        started.elapsed()
    );
    assert!(
        duplicates as u64 <= window * per_batch,
        "{duplicates} duplicates exceed the in-flight window ({window} × {per_batch})"
    );
    assert!(
        redelivered > 0.0,
        "no batch was ever re-delivered: the kills missed the data path"
    );
    assert!(
        total >= 5000,
        "only {total} records were sent during the kills"
    );
}

#[test]
fn hostile_ring_writer_is_counted_and_quarantined_and_the_agent_stays_up() {
    if !privileged("hostile_ring_writer_is_counted_and_quarantined_and_the_agent_stays_up") {
        return;
    }
    let _g = serial();
    let s = DataPath::start(
        &format!(
            "  hostile:\n    path: {}\n    type: processor\n    config: {{final: ringwriter, delay_ms: 200, ring_ms: 5000}}\n    data_path: {{quarantine_after_malformed: 16}}",
            plugin_bin("srediag-hostile-plugin").display()
        ),
        "plugin/hostile",
    );
    let run = run_id();
    let client = http();
    assert_eq!(
        post_protobuf(&client, &s.url(), &logs_request(&run, "h", 0..10, 0)),
        200
    );
    let st = wait_state(
        &s.admin,
        "hostile",
        &["quarantined"],
        Duration::from_secs(30),
    );
    assert!(
        st["error"].as_str().unwrap_or("").contains("SRD-P009"),
        "quarantine names the data path error code: {st}"
    );
    let malformed = s.agent.counter(
        "srediag_plugin_ipc_malformed_frames_total",
        &[("plugin", "hostile")],
    );
    assert!(malformed >= 16.0, "malformed frames counted: {malformed}");
    assert_eq!(
        s.agent.counter(
            "srediag_plugin_restarts_total",
            &[("name", "hostile"), ("reason", "malformed")]
        ),
        1.0
    );
    // The agent is alive and serving; its other parts still work.
    assert!(
        s.agent.healthy(),
        "agent unhealthy after the hostile plugin"
    );
    let (code, _) = s.agent.get("/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        post_protobuf(&client, &s.url(), &logs_request(&run, "h", 10..20, 0)),
        200
    );
}

/// A plugin that stalls for `stall_ms` on its first batch, with the given queue policy.
fn stalled(policy: &str) -> DataPath {
    DataPath::start(
        &format!(
            "  slow:\n    path: {}\n    type: processor\n    config: {{stall_ms: 3000}}\n    data_path: {{max_in_flight: 4, max_batch_records: 100, queue: {{capacity: 8, policy: {policy}}}}}",
            plugin_bin("srediag-hostile-plugin").display()
        ),
        "plugin/slow",
    )
}

#[test]
fn stalled_plugin_drop_policy_counts_drops_exactly() {
    if !privileged("stalled_plugin_drop_policy_counts_drops_exactly") {
        return;
    }
    let _g = serial();
    let s = stalled("drop");
    wait_state(&s.admin, "slow", &["ready"], Duration::from_secs(20));
    let run = run_id();
    let client = http();
    let total = 40 * 100u64;
    for i in 0..40 {
        let status = post_protobuf(
            &client,
            &s.url(),
            &logs_request(&run, "d", i * 100..(i + 1) * 100, 0),
        );
        assert_eq!(status, 200);
    }
    let labels = [
        ("component", "plugin/slow"),
        ("kind", "processor"),
        ("pipeline", "logs"),
        ("reason", "queue_full"),
    ];
    let (got, dropped) = poll_until(
        Duration::from_secs(30),
        "delivered + dropped = sent",
        || {
            let got = s.seqs(&run).len() as u64;
            let dropped =
                s.agent
                    .counter("srediag_queue_dropped_items_total", &labels) as u64;
            (got + dropped == total).then_some((got, dropped))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.seqs(&run).len() as u64, got, "nothing arrives late");
    assert!(dropped > 0, "the stall never filled the queue");
    eprintln!("drop policy: {total} sent, {got} delivered, {dropped} dropped and counted");
}

#[test]
fn stalled_plugin_block_policy_loses_nothing_and_memory_stays_bounded() {
    if !privileged("stalled_plugin_block_policy_loses_nothing_and_memory_stays_bounded") {
        return;
    }
    let _g = serial();
    let s = stalled("block");
    wait_state(&s.admin, "slow", &["ready"], Duration::from_secs(20));
    let rss = |pid: i32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let before = rss(s.agent.pid());
    let run = run_id();
    let (requests, pad) = (300u64, 2000usize);
    let total = requests * 100;
    let total_kib = total * pad as u64 / 1024;
    let (url, run2) = (s.url(), run.clone());
    let sender = std::thread::spawn(move || {
        let client = http();
        for i in 0..requests {
            let status = post_protobuf(
                &client,
                &url,
                &logs_request(&run2, "b", i * 100..(i + 1) * 100, pad),
            );
            assert_eq!(status, 200);
        }
    });
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sender.is_finished() && Instant::now() < deadline {
        peak = peak.max(rss(s.agent.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    sender.join().expect("sender");
    let got = poll_until(Duration::from_secs(60), "every record delivered", || {
        let m = s.seqs(&run);
        (m.len() as u64 == total).then_some(m)
    });
    assert!(got.values().all(|n| *n == 1));
    let dropped = s.agent.metrics_text();
    assert!(
        !dropped
            .lines()
            .any(|l| l.starts_with("srediag_queue_dropped_items_total")
                && l.contains("plugin/slow")
                && !l.ends_with(" 0")),
        "block policy dropped something"
    );
    // The backlog is bounded by the queues (8 batches in front of the plugin, 4 in flight, 8 in
    // the exporter's queue), not by what the client sends: ~60 MB of records must not pile up.
    let growth_kib = peak.saturating_sub(before);
    eprintln!(
        "block policy: {total} records ({total_kib} KiB of bodies) delivered, RSS {before} KiB → peak {peak} KiB"
    );
    assert!(
        growth_kib < total_kib / 2,
        "agent RSS grew by {growth_kib} KiB while {total_kib} KiB were sent to a stalled plugin"
    );
}
