//! OTLP/HTTP receiver → batch → file exporter, fed by real clients: the OpenTelemetry Python SDK
//! (protobuf; metrics gzip-compressed), a hand-written OTLP/JSON body, and malformed bodies.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use srediag_tests::*;

const WAIT: Duration = Duration::from_secs(30);

/// Fields drop in order: the agent is killed before its temp dir goes.
struct Setup {
    agent: Agent,
    otlp: String,
    logs_out: std::path::PathBuf,
    metrics_out: std::path::PathBuf,
    _dir: TempDir,
}

fn start() -> Setup {
    let dir = TempDir::new().expect("tempdir");
    let (otlp, tel) = (free_port(), free_port());
    let logs_out = dir.path().join("logs.jsonl");
    let metrics_out = dir.path().join("metrics.jsonl");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    send_batch_size: 1000
    timeout: 100ms
exporters:
  file/logs:
    path: {logs}
  file/metrics:
    path: {metrics}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/logs]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/metrics]
"#,
        logs = logs_out.display(),
        metrics = metrics_out.display(),
    );
    let agent = Agent::start(dir.path(), &config, tel);
    Setup {
        agent,
        otlp: format!("http://127.0.0.1:{otlp}"),
        logs_out,
        metrics_out,
        _dir: dir,
    }
}

/// Runs tests/python/send_otlp.py (bounded to 120 s); returns its JSON summary.
fn run_python_sender(endpoint: &str, logs: usize, points: usize, run: &str, dir: &Path) -> Value {
    let py = python();
    let script = repo_root().join("tests/python/send_otlp.py");
    assert!(script.is_file(), "{} missing", script.display());
    let (out_p, err_p) = (dir.join("py.stdout"), dir.join("py.stderr"));
    let child = Command::new(&py)
        .arg(&script)
        .args(["--endpoint", endpoint, "--run-id", run])
        .args([
            "--logs",
            &logs.to_string(),
            "--metric-points",
            &points.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).expect("stdout file"))
        .stderr(std::fs::File::create(&err_p).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e} (run `cargo xtask deps`)", py.display()));
    let mut g = ChildGuard::new("send_otlp.py", child);
    let st = g.wait_exit(Duration::from_secs(120));
    let stdout = std::fs::read_to_string(&out_p).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_p).unwrap_or_default();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the venv lacks the OpenTelemetry SDK: run `cargo xtask deps`\n{stderr}"
    );
    assert!(
        st.success(),
        "send_otlp.py failed ({st})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("send_otlp.py stdout not JSON ({e}): {stdout}"))
}

/// Polls the JSON-lines file until `pred` holds for the parsed lines.
fn wait_file<T>(path: &Path, what: &str, mut pred: impl FnMut(&[Value]) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = read_jsonl(path);
        if let Some(v) = pred(&lines) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what} in {}; it has {} lines:\n{}",
            path.display(),
            lines.len(),
            lines
                .iter()
                .take(5)
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn python_sdk_logs_and_metrics_arrive_intact() {
    const N: usize = 300;
    const M: usize = 7;
    let s = start();
    let run = run_id();
    let summary = run_python_sender(&s.otlp, N, M, &run, s._dir.path());
    assert_eq!(summary["logs_sent"], json!(N), "{summary}");

    // Every record, exactly once, with body, severity, attributes and resource intact.
    let recs = wait_file(&s.logs_out, &format!("{N} records of run {run}"), |lines| {
        let recs: Vec<LogView> = log_records(lines)
            .into_iter()
            .filter(|r| r.attr_str("test.run") == Some(&run))
            .collect();
        (recs.len() >= N).then_some(recs)
    });
    assert_eq!(recs.len(), N, "duplicated records in the output");
    let mut seen = BTreeSet::new();
    for r in &recs {
        let seq = r
            .attr_int("test.seq")
            .unwrap_or_else(|| panic!("test.seq missing or not an intValue string: {r:?}"));
        assert_eq!(
            r.body.as_deref(),
            Some(format!("rec-{seq}").as_str()),
            "body/test.seq mismatch: {r:?}"
        );
        assert_eq!(
            r.severity_number,
            Some(13),
            "severityNumber (WARN = 13): {r:?}"
        );
        assert_eq!(
            r.severity_text.as_deref(),
            Some("WARN"),
            "severityText: {r:?}"
        );
        assert_eq!(
            r.resource.get("service.name").and_then(any_str),
            Some("srediag-test"),
            "resource: {r:?}"
        );
        assert_eq!(
            r.scope_name.as_deref(),
            Some("srediag-tests.python"),
            "scope: {r:?}"
        );
        assert!(seen.insert(seq), "record {seq} twice");
    }
    assert_eq!(seen, (0..N as i64).collect::<BTreeSet<_>>());

    // The counter's M points and the histogram's one point.
    let points = wait_file(&s.metrics_out, "the Python SDK's metric points", |lines| {
        let pts: Vec<PointView> = metric_points(lines)
            .into_iter()
            .filter(|p| p.attributes.get("test.run").and_then(any_str) == Some(&run))
            .collect();
        (pts.len() > M).then_some(pts)
    });
    assert_eq!(points.len(), M + 1, "points: {points:#?}");
    // Values first (either JSON form), the 64-bit integer encoding is checked at the end.
    let int64 = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(v) => v.as_i64(),
        None => None,
    };
    let mut encoding = Vec::new();
    let mut counter_points = BTreeSet::new();
    for p in &points {
        assert_eq!(
            p.resource.get("service.name").and_then(any_str),
            Some("srediag-test"),
            "{p:?}"
        );
        match p.metric.as_str() {
            "srediag_test_requests" => {
                assert_eq!(p.kind, "sum", "{p:?}");
                let j = p
                    .attributes
                    .get("test.point")
                    .and_then(any_int)
                    .expect("test.point");
                assert_eq!(
                    int64(p.point.get("asInt")),
                    Some(j + 1),
                    "counter value of point {j}: {p:?}"
                );
                if !p.point["asInt"].is_string() {
                    encoding.push(format!("sum asInt: {}", p.point["asInt"]));
                }
                counter_points.insert(j);
            }
            "srediag_test_latency" => {
                assert_eq!(p.kind, "histogram", "{p:?}");
                assert_eq!(
                    int64(p.point.get("count")),
                    Some(5),
                    "histogram count: {p:?}"
                );
                assert_eq!(
                    p.point.get("sum").and_then(Value::as_f64),
                    Some(15.0),
                    "histogram sum: {p:?}"
                );
                if !p.point["count"].is_string() {
                    encoding.push(format!("histogram count: {}", p.point["count"]));
                }
                if let Some(b) = p.point["bucketCounts"]
                    .as_array()
                    .and_then(|b| b.iter().find(|x| !x.is_string()))
                {
                    encoding.push(format!("histogram bucketCounts element: {b}"));
                }
            }
            other => panic!("unexpected metric {other}: {p:?}"),
        }
    }
    assert_eq!(counter_points, (0..M as i64).collect::<BTreeSet<_>>());

    // Self-telemetry agrees: items = log records / data points.
    let a = &s.agent;
    assert_eq!(
        a.counter(
            "srediag_receiver_accepted_items_total",
            &[("receiver", "otlp"), ("signal", "logs")]
        ),
        N as f64
    );
    assert_eq!(
        a.counter(
            "srediag_receiver_accepted_items_total",
            &[("receiver", "otlp"), ("signal", "metrics")]
        ),
        (M + 1) as f64
    );
    assert_eq!(
        a.counter(
            "srediag_receiver_refused_items_total",
            &[("receiver", "otlp")]
        ),
        0.0
    );
    poll_until(
        WAIT,
        "srediag_exporter_sent_items_total{exporter=file/logs} == N",
        || {
            (a.counter(
                "srediag_exporter_sent_items_total",
                &[("exporter", "file/logs"), ("signal", "logs")],
            ) == N as f64)
                .then_some(())
        },
    );

    // OTLP/JSON (proto3 JSON mapping, as the OTLP spec requires): 64-bit integers
    // (int64/fixed64/sfixed64: asInt, count, bucketCounts, intValue, *UnixNano) are decimal strings.
    assert!(
        encoding.is_empty(),
        "the file exporter writes 64-bit integers as JSON numbers, OTLP/JSON wants strings: {encoding:?}"
    );
}

#[test]
fn otlp_json_bodies_are_accepted() {
    let s = start();
    let run = run_id();
    let client = http();
    let logs = json!({
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "srediag-test"}}]},
            "scopeLogs": [{
                "scope": {"name": "json-scope"},
                "logRecords": (0..3).map(|i| json!({
                    "timeUnixNano": "1700000000000000000",
                    "severityNumber": 17,
                    "severityText": "ERROR",
                    "body": {"stringValue": format!("json-rec-{i}")},
                    "attributes": [
                        {"key": "test.seq", "value": {"intValue": i.to_string()}},
                        {"key": "test.run", "value": {"stringValue": run}},
                        {"key": "test.flag", "value": {"boolValue": true}}
                    ]
                })).collect::<Vec<_>>()
            }]
        }]
    });
    let r = client
        .post(format!("{}/v1/logs", s.otlp))
        .header("Content-Type", "application/json")
        .body(logs.to_string())
        .send()
        .expect("POST /v1/logs (json)");
    let status = r.status().as_u16();
    assert_eq!(
        status,
        200,
        "OTLP/JSON logs: {}",
        r.text().unwrap_or_default()
    );

    let metrics = json!({
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "srediag-test"}}]},
            "scopeMetrics": [{
                "scope": {"name": "json-scope"},
                "metrics": [{
                    "name": "srediag_test_json_gauge",
                    "gauge": {"dataPoints": [{
                        "timeUnixNano": "1700000000000000000",
                        "asDouble": 2.5,
                        "attributes": [{"key": "test.run", "value": {"stringValue": run}}]
                    }]}
                }]
            }]
        }]
    });
    let r = client
        .post(format!("{}/v1/metrics", s.otlp))
        .header("Content-Type", "application/json")
        .body(metrics.to_string())
        .send()
        .expect("POST /v1/metrics (json)");
    let status = r.status().as_u16();
    assert_eq!(
        status,
        200,
        "OTLP/JSON metrics: {}",
        r.text().unwrap_or_default()
    );

    let recs = wait_file(&s.logs_out, "3 JSON-sent records", |lines| {
        let recs: Vec<LogView> = log_records(lines)
            .into_iter()
            .filter(|r| r.attr_str("test.run") == Some(&run))
            .collect();
        (recs.len() >= 3).then_some(recs)
    });
    assert_eq!(recs.len(), 3);
    for r in &recs {
        let i = r.attr_int("test.seq").expect("test.seq");
        assert_eq!(r.body.as_deref(), Some(format!("json-rec-{i}").as_str()));
        assert_eq!(r.severity_number, Some(17));
        assert_eq!(r.severity_text.as_deref(), Some("ERROR"));
        assert_eq!(
            r.attributes.get("test.flag"),
            Some(&json!({"boolValue": true}))
        );
        assert_eq!(r.scope_name.as_deref(), Some("json-scope"));
    }
    let pts = wait_file(&s.metrics_out, "the JSON-sent gauge point", |lines| {
        let pts: Vec<PointView> = metric_points(lines)
            .into_iter()
            .filter(|p| p.attributes.get("test.run").and_then(any_str) == Some(&run))
            .collect();
        (!pts.is_empty()).then_some(pts)
    });
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].metric, "srediag_test_json_gauge");
    assert_eq!(pts[0].kind, "gauge");
    assert_eq!(
        pts[0].point.get("asDouble").and_then(Value::as_f64),
        Some(2.5)
    );
}

#[test]
fn malformed_bodies_get_400_and_change_nothing() {
    let s = start();
    let a = &s.agent;
    let client = http();
    let refused_before = a.counter(
        "srediag_receiver_refused_items_total",
        &[("receiver", "otlp")],
    );
    let accepted_before = a.counter(
        "srediag_receiver_accepted_items_total",
        &[("receiver", "otlp")],
    );
    let cases: [(&str, &str, &[u8]); 6] = [
        (
            "/v1/logs",
            "application/x-protobuf",
            b"\xff\xff\xff\xff\x0fnot a protobuf message",
        ),
        (
            "/v1/logs",
            "application/json",
            b"{\"resourceLogs\": [{\"scopeLogs\": ",
        ),
        ("/v1/logs", "application/json", b"{\"resourceLogs\": 5}"),
        (
            "/v1/metrics",
            "application/x-protobuf",
            b"\x0a\xff\xff\xff\xff\x0f\x01",
        ),
        ("/v1/metrics", "application/json", b"not json at all"),
        (
            "/v1/logs",
            "application/x-protobuf",
            b"\x0a\x05\x0a\x03\x0a\x01",
        ), // truncated nested message
    ];
    for (path, ctype, body) in cases {
        let r = client
            .post(format!("{}{path}", s.otlp))
            .header("Content-Type", ctype)
            .body(body.to_vec())
            .send()
            .unwrap_or_else(|e| panic!("POST {path} ({ctype}): {e}"));
        assert_eq!(
            r.status().as_u16(),
            400,
            "POST {path} ({ctype}) with body {body:?}: {}",
            r.text().unwrap_or_default()
        );
        assert!(
            a.healthy(),
            "agent not healthy after a malformed {path} body"
        );
    }
    assert_eq!(
        a.counter(
            "srediag_receiver_refused_items_total",
            &[("receiver", "otlp")]
        ),
        refused_before
    );
    assert_eq!(
        a.counter(
            "srediag_receiver_accepted_items_total",
            &[("receiver", "otlp")]
        ),
        accepted_before
    );
    let (code, _) = a.get("/-/healthy");
    assert_eq!(code, 200, "/-/healthy after malformed bodies");

    // Still serving: a valid request goes through end to end.
    let run = run_id();
    let req = logs_request(&run, "after-garbage", 0..1, 0);
    assert_eq!(
        post_protobuf(&client, &format!("{}/v1/logs", s.otlp), &req),
        200
    );
    wait_file(
        &s.logs_out,
        "the record sent after the malformed ones",
        |lines| {
            log_records(lines)
                .iter()
                .any(|r| r.attr_str("test.run") == Some(&run))
                .then_some(())
        },
    );
    assert_eq!(
        a.counter(
            "srediag_receiver_accepted_items_total",
            &[("receiver", "otlp"), ("signal", "logs")]
        ),
        1.0
    );
}
