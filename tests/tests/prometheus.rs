//! A real Prometheus server (Debian's 2.42) scrapes both of the agent's endpoints: the
//! self-telemetry `/metrics` and the pipeline's `prometheus` exporter fed by `hostmetrics`;
//! `promtool check metrics` lints both bodies.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use srediag_tests::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const WAIT: Duration = Duration::from_secs(30);

fn require(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} not found: run `cargo xtask deps` (Debian package `prometheus`)"
    );
}

fn start_agent(dir: &Path) -> (Agent, u16) {
    let (tel, prom) = (free_port(), free_port());
    let config = format!(
        r#"receivers:
  hostmetrics:
    collection_interval: 1s
processors:
  batch:
    timeout: 200ms
exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    metrics:
      receivers: [hostmetrics]
      processors: [batch]
      exporters: [prometheus]
"#
    );
    (Agent::start(dir, &config, tel), prom)
}

/// Starts Prometheus scraping `self_addr` (job srediag-self) and `pipeline_addr`
/// (job srediag-pipeline) every second; returns the guard and its base URL once it is ready.
fn start_prometheus(dir: &Path, self_addr: &str, pipeline_addr: &str) -> (ChildGuard, String) {
    require(PROMETHEUS);
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: srediag-self
    static_configs:
      - targets: ["{self_addr}"]
  - job_name: srediag-pipeline
    static_configs:
      - targets: ["{pipeline_addr}"]
"#
        ),
    )
    .expect("write prometheus.yml");
    let data = dir.join("tsdb");
    let log = dir.join("prometheus.log");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("prometheus.stdout")).expect("file"))
        .stderr(std::fs::File::create(&log).expect("file"))
        .spawn()
        .expect("spawn prometheus");
    let mut guard = ChildGuard::new("prometheus", child);
    let base = format!("http://127.0.0.1:{port}");
    let client = http();
    poll_until(WAIT, "prometheus /-/ready", || {
        if let Some(st) = guard.try_exit() {
            panic!(
                "prometheus exited ({st}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        client
            .get(format!("{base}/-/ready"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    });
    (guard, base)
}

/// Instant query; the result vector.
fn query(client: &reqwest::blocking::Client, base: &str, q: &str) -> Vec<Value> {
    let r = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .unwrap_or_else(|e| panic!("query {q}: {e}"));
    let v: Value = r
        .json()
        .unwrap_or_else(|e| panic!("query {q}: not JSON: {e}"));
    assert_eq!(v["status"], "success", "query {q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn promtool_check(body: &str, what: &str) {
    require(PROMTOOL);
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = body.to_string();
    // Write from a thread: promtool may answer before reading everything.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(body.as_bytes());
    });
    let out = child.wait_with_output().expect("promtool output");
    let _ = writer.join();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics on {what} failed ({}):\n{text}",
        out.status
    );
    assert!(
        text.trim().is_empty(),
        "promtool check metrics on {what} reported problems:\n{text}"
    );
}

#[test]
fn prometheus_scrapes_both_endpoints_and_promtool_is_happy() {
    let dir = TempDir::new().expect("tempdir");
    let (agent, prom_port) = start_agent(dir.path());
    let pipeline = format!("127.0.0.1:{prom_port}");
    let (_prom, base) = start_prometheus(dir.path(), &agent.telemetry.to_string(), &pipeline);
    let client = http();

    let build = poll_until(
        WAIT,
        "srediag_build_info in Prometheus (job srediag-self)",
        || {
            let r = query(&client, &base, r#"srediag_build_info{job="srediag-self"}"#);
            (!r.is_empty()).then_some(r)
        },
    );
    assert_eq!(
        build[0]["value"][1], "1",
        "srediag_build_info value: {build:?}"
    );
    assert_eq!(
        build[0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build:?}"
    );
    let mem = poll_until(
        WAIT,
        "system_memory_usage_bytes in Prometheus (job srediag-pipeline)",
        || {
            let r = query(
                &client,
                &base,
                r#"system_memory_usage_bytes{job="srediag-pipeline"}"#,
            );
            (!r.is_empty()).then_some(r)
        },
    );
    let used: f64 = mem
        .iter()
        .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(
        used > 1024.0 * 1024.0,
        "system_memory_usage_bytes implausible: {mem:?}"
    );
    let up = query(&client, &base, "up");
    assert_eq!(up.len(), 2, "two targets: {up:?}");
    for t in &up {
        assert_eq!(t["value"][1], "1", "target down: {t}");
    }

    // Lint both exposition bodies.
    let self_body = agent.metrics_text();
    promtool_check(&self_body, "the self-telemetry /metrics");
    let r = client
        .get(format!("http://{pipeline}/metrics"))
        .send()
        .expect("GET pipeline /metrics");
    assert_eq!(r.status().as_u16(), 200);
    let pipeline_body = r.text().expect("pipeline body");
    assert!(
        pipeline_body.contains("system_memory_usage_bytes"),
        "pipeline exporter body:\n{pipeline_body}"
    );
    promtool_check(&pipeline_body, "the pipeline prometheus exporter /metrics");
}
