//! Graceful shutdown flushes everything accepted: records acknowledged with 200 and still held in
//! a batch processor (long timeout, huge batch size) reach the file exporter after SIGTERM.

use std::collections::BTreeSet;
use std::time::Duration;

use srediag_tests::*;

/// Requests × records per request.
const REQUESTS: u64 = 40;
const PER_REQUEST: u64 = 25;

#[test]
fn sigterm_flushes_batched_records() {
    let dir = TempDir::new().expect("tempdir");
    let (otlp, tel) = (free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    send_batch_size: 1000000
    timeout: 600s
exporters:
  file:
    path: {out}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
"#,
        out = out.display()
    );
    let mut agent = Agent::start(dir.path(), &config, tel);
    let client = http();
    let url = format!("http://127.0.0.1:{otlp}/v1/logs");
    let run = run_id();
    for r in 0..REQUESTS {
        let req = logs_request(&run, "shut", r * PER_REQUEST..(r + 1) * PER_REQUEST, 40);
        assert_eq!(
            post_protobuf(&client, &url, &req),
            200,
            "request {r} not acknowledged"
        );
    }
    let k = REQUESTS * PER_REQUEST;
    assert_eq!(
        agent.counter(
            "srediag_receiver_accepted_items_total",
            &[("receiver", "otlp"), ("signal", "logs")]
        ),
        k as f64
    );
    // Precondition: the batch processor still holds them (a 600 s timeout and a batch size far
    // above K), so what follows proves the flush on shutdown, not an earlier export.
    let early = log_records(&read_jsonl(&out)).len();
    assert_eq!(
        early, 0,
        "the batch processor exported {early} records before its timeout or size was reached"
    );

    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );

    let recs = log_records(&read_jsonl(&out));
    let seqs: BTreeSet<i64> = recs
        .iter()
        .filter(|r| r.attr_str("test.run") == Some(&run))
        .map(|r| r.attr_int("test.seq").expect("test.seq"))
        .collect();
    assert_eq!(
        recs.len() as u64,
        k,
        "records in the output after shutdown (duplicates or losses)"
    );
    assert_eq!(
        seqs,
        (0..k as i64).collect::<BTreeSet<_>>(),
        "missing records after shutdown"
    );
    let stderr = agent.stderr();
    assert!(
        !stderr.contains("panicked"),
        "agent panicked during shutdown:\n{stderr}"
    );
}
