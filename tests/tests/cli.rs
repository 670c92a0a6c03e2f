//! The CLI contract: `validate` diagnostics with exact FILE:LINE:COL and key paths, exit codes,
//! machine-readable output of `components` and `version`, and clean one-line failures.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use srediag_tests::*;

const T: Duration = Duration::from_secs(30);

/// A valid config every invalid case is derived from (one edit each).
const BASE: &str = "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
  hostmetrics:
    collection_interval: 10s
processors:
  batch:
    send_batch_size: 8192
    timeout: 200ms
exporters:
  debug:
    verbosity: basic
  file:
    path: /tmp/srediag-validate-test/out.jsonl
service:
  pipelines:
    metrics:
      receivers: [hostmetrics]
      processors: [batch]
      exporters: [debug, file]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
";

/// (case, text in BASE, its replacement with a ⟨ before the offending token, expected key path)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "unknown top-level key",
        "service:\n",
        "⟨bogus_top: 1\nservice:\n",
        "bogus_top",
    ),
    (
        "unknown key in a component config",
        "    timeout: 200ms\n",
        "    timeout: 200ms\n    ⟨bogus_field: 3\n",
        "processors.batch.bogus_field",
    ),
    (
        "unknown component type",
        "processors:\n",
        "  ⟨nosuch:\n    x: 1\nprocessors:\n",
        "receivers.nosuch",
    ),
    (
        "pipeline references an undefined exporter",
        "exporters: [debug, file]",
        "exporters: [debug, ⟨nope]",
        "service.pipelines.metrics.exporters[1]",
    ),
    (
        "duplicate key",
        "    send_batch_size: 8192\n",
        "    send_batch_size: 8192\n    ⟨send_batch_size: 100\n",
        "processors.batch.send_batch_size",
    ),
    (
        "metrics-only receiver in a logs pipeline",
        "      receivers: [otlp]\n",
        "      receivers: [⟨hostmetrics]\n",
        "service.pipelines.logs.receivers[0]",
    ),
    (
        "wrong type",
        "collection_interval: 10s",
        "collection_interval: ⟨[1]",
        "receivers.hostmetrics.collection_interval",
    ),
    (
        "unsupported pipeline signal",
        "    logs:\n",
        "    ⟨traces:\n      receivers: [otlp]\n      exporters: [file]\n    logs:\n",
        "service.pipelines.traces",
    ),
];

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p.to_str().expect("utf-8 temp path").to_string()
}

#[test]
fn base_config_is_valid() {
    let dir = TempDir::new().expect("tempdir");
    let f = write(dir.path(), "base.yaml", BASE);
    let out = srediag(&["validate", "--config", &f], T);
    assert_eq!(
        out.code(),
        0,
        "the base of the invalid cases must be valid:\n{}",
        out.stderr
    );
}

#[test]
fn invalid_configs_exit_78_with_file_line_col_and_key_path() {
    let dir = TempDir::new().expect("tempdir");
    let mut failures = Vec::new();
    for (i, (case, from, to, path)) in CASES.iter().enumerate() {
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "case {case}: {from:?} must occur once in BASE"
        );
        let (text, line, col) = marked(&BASE.replacen(from, to, 1));
        let f = write(dir.path(), &format!("case{i}.yaml"), &text);
        let out = srediag(&["validate", "--config", &f], T);
        out.assert_no_panic();
        let want = format!("{f}:{line}:{col}: error: {path}: ");
        let code = out.code();
        let found = out
            .stderr
            .lines()
            .any(|l| l.starts_with(&want) && l.len() > want.len());
        if code != 78 || !found {
            failures.push(format!(
                "case `{case}`: exit {code} (want 78); want a stderr line starting `{want}`; stderr was:\n{}\n--- config:\n{text}",
                out.stderr.trim_end()
            ));
        }
        // Diagnostics have the documented shape; besides them only a summary `error: FILE: …`.
        let mut errors = 0;
        for l in out.stderr_lines() {
            if l.starts_with(&format!("error: {f}: ")) {
                continue;
            }
            let rest = l.strip_prefix(&format!("{f}:")).unwrap_or("");
            let mut parts = rest.splitn(3, ':');
            let positioned = parts.next().is_some_and(|x| x.parse::<u32>().is_ok())
                && parts.next().is_some_and(|x| x.parse::<u32>().is_ok());
            let tail = parts.next().unwrap_or("");
            if positioned && tail.starts_with(" error: ") {
                errors += 1;
            } else if !(positioned && tail.starts_with(" warning: ")) {
                failures.push(format!(
                    "case `{case}`: stderr line not `FILE:LINE:COL: error|warning: …`: {l}"
                ));
            }
        }
        // One fault in the file, one error: no cascade (e.g. a component that failed to decode
        // then reported as "not defined" by every pipeline that lists it).
        if errors != 1 {
            failures.push(format!(
                "case `{case}`: {errors} error diagnostics for a single fault:\n{}",
                out.stderr.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn embedded_default_round_trips_through_validate() {
    let printed = srediag(&["print-config"], T);
    printed.assert_no_panic();
    assert_eq!(printed.code(), 0, "print-config:\n{}", printed.stderr);
    assert!(
        printed.stdout.contains("pipelines"),
        "print-config output:\n{}",
        printed.stdout
    );
    let dir = TempDir::new().expect("tempdir");
    let f = write(dir.path(), "default.yaml", &printed.stdout);
    let out = srediag(&["validate", "--config", &f], T);
    assert_eq!(
        out.code(),
        0,
        "validate of print-config's output:\n{}\n--- config:\n{}",
        out.stderr,
        printed.stdout
    );
}

#[test]
fn every_example_validates() {
    let dir = repo_root().join("examples");
    let mut examples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty(), "no examples/*.yaml");
    for ex in &examples {
        let f = ex.to_str().expect("utf-8 path");
        let out = srediag(&["validate", "--config", f], T);
        out.assert_no_panic();
        assert_eq!(out.code(), 0, "{f} does not validate:\n{}", out.stderr);
    }
}

#[test]
fn validate_missing_file_is_one_clean_line() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("no/such/config.yaml");
    let m = missing.to_str().expect("utf-8 path");
    let out = srediag(&["validate", "--config", m], T);
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        66,
        "exit code for an unreadable input file (EX_NOINPUT):\n{}",
        out.stderr
    );
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "want one stderr line, got:\n{}", out.stderr);
    assert!(
        lines[0].contains(m),
        "the line must name the file: {}",
        lines[0]
    );
}

#[test]
fn usage_error_exits_2() {
    let out = srediag(&["--no-such-flag"], T);
    out.assert_no_panic();
    assert_eq!(out.code(), 2, "{}", out.stderr);
}

/// Every string anywhere in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

#[test]
fn components_json_lists_the_builtins() {
    let out = srediag(&["-o", "json", "components"], T);
    out.assert_no_panic();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout));
    let mut all = Vec::new();
    strings(&v, &mut all);
    for name in [
        "hostmetrics",
        "otlp",
        "batch",
        "prometheus",
        "file",
        "debug",
    ] {
        assert!(
            all.iter().any(|s| s == name),
            "component `{name}` not listed:\n{}",
            out.stdout
        );
    }
}

#[test]
fn version_json() {
    let out = srediag(&["-o", "json", "version"], T);
    out.assert_no_panic();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
}

#[test]
fn run_with_telemetry_port_taken_fails_cleanly() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = TempDir::new().expect("tempdir");
    let config = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  file:
    path: {out}
service:
  telemetry:
    metrics:
      address: {addr}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
",
        otlp = free_port(),
        out = dir.path().join("out.jsonl").display()
    );
    let f = write(dir.path(), "taken.yaml", &config);
    let out = srediag(&["--log-level", "error", "run", "--config", &f], T);
    drop(taken);
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        69,
        "exit code for an address in use (EX_UNAVAILABLE):\n{}",
        out.stderr
    );
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "want one stderr line, got:\n{}", out.stderr);
    assert!(
        lines[0].contains(&addr),
        "the error must name {addr}: {}",
        lines[0]
    );
}
