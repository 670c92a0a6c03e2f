//! Invalid configurations, each rejected at the right place with the right key path.

use super::*;
use std::collections::HashMap;

struct MapEnv(HashMap<&'static str, &'static str>);
impl Env for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
}

const GOOD: &str = "\
receivers:
  hostmetrics: {}
  otlp: {}
processors:
  batch: {}
exporters:
  debug: {}
  file/logs:
    path: /tmp/x.jsonl
service:
  pipelines:
    metrics:
      receivers: [hostmetrics]
      processors: [batch]
      exporters: [debug]
    logs/app:
      receivers: [otlp]
      exporters: [file/logs, debug]
";

fn errors(text: &str) -> Vec<Diagnostic> {
    let env = MapEnv(HashMap::from([("PORT", "4318")]));
    match load_str(text, "c.yaml", &env) {
        Ok((_, w)) => panic!("accepted; warnings: {w:?}"),
        Err(LoadError::Invalid { diagnostics, .. }) => diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Replaces the first occurrence of `from` in GOOD.
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?} not in GOOD");
    GOOD.replacen(from, to, 1)
}

fn expect(text: &str, line: usize, col: usize, path: &str, words: &str) {
    let errs = errors(text);
    assert!(
        errs.iter().any(|d| d.line == line
            && d.column == col
            && d.path == path
            && d.message.contains(words)),
        "expected {line}:{col} {path} «{words}», got:\n{}",
        errs.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_good_config_and_the_embedded_default_are_valid() {
    let env = MapEnv(HashMap::new());
    let (c, warnings) = load_str(GOOD, "c.yaml", &env).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.service.pipelines.len(), 2);
    let (_, warnings) = load_str(DEFAULT_CONFIG, EMBEDDED_NAME, &ProcessEnv).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn examples_in_the_repository_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let r = load(&Source::File(path.clone()), &MapEnv(HashMap::new()));
            assert!(r.is_ok(), "{}: {:?}", path.display(), r.err());
            n += 1;
        }
    }
    assert!(n >= 2, "expected example configs in {}", dir.display());
}

#[test]
fn unknown_top_level_key() {
    expect(
        &format!("{GOOD}extra: 1\n"),
        19,
        1,
        "extra",
        "unknown top-level key",
    );
}

#[test]
fn unknown_key_inside_a_component() {
    expect(
        &edit("  otlp: {}", "  otlp:\n    protocol: {}"),
        4,
        5,
        "receivers.otlp.protocol",
        "unknown field `protocol`",
    );
    expect(
        &edit(
            "    path: /tmp/x.jsonl",
            "    path: /tmp/x.jsonl\n    rotate: 1",
        ),
        10,
        5,
        "exporters.file/logs.rotate",
        "unknown field",
    );
}

#[test]
fn unknown_component_type() {
    expect(
        &edit("  debug: {}", "  kafka: {}"),
        7,
        3,
        "exporters.kafka",
        "unknown exporter type `kafka`",
    );
}

#[test]
fn undefined_reference_names_the_list_item() {
    expect(
        &edit(
            "exporters: [file/logs, debug]",
            "exporters: [file/logs, nope]",
        ),
        18,
        30,
        "service.pipelines.logs/app.exporters[1]",
        "exporter `nope` is not defined",
    );
}

#[test]
fn duplicate_ids() {
    let errs = errors(&edit("  debug: {}", "  debug: {}\n  debug: {}"));
    assert!(
        errs.iter().any(|d| (d.line, d.column) == (8, 3)
            && d.path == "exporters.debug"
            && d.message
                .contains("duplicate key `debug` (first defined at line 7)")),
        "{errs:?}"
    );
}

#[test]
fn signal_mismatch() {
    expect(
        &edit("receivers: [otlp]", "receivers: [hostmetrics]"),
        17,
        19,
        "service.pipelines.logs/app.receivers[0]",
        "does not support logs",
    );
}

#[test]
fn type_mismatch() {
    expect(
        &edit(
            "  hostmetrics: {}",
            "  hostmetrics:\n    collection_interval: [1]",
        ),
        3,
        26,
        "receivers.hostmetrics.collection_interval",
        "",
    );
    expect(
        &edit("  batch: {}", "  batch:\n    send_batch_size: lots"),
        6,
        22,
        "processors.batch.send_batch_size",
        "invalid",
    );
}

#[test]
fn unknown_signal_and_listed_twice() {
    expect(
        &edit("    logs/app:", "    traces:"),
        16,
        5,
        "service.pipelines.traces",
        "unknown signal `traces`",
    );
    expect(
        &edit("exporters: [file/logs, debug]", "exporters: [debug, debug]"),
        18,
        26,
        "service.pipelines.logs/app.exporters[1]",
        "listed twice",
    );
}

#[test]
fn semantic_component_checks_and_queue() {
    expect(
        &edit(
            "  otlp: {}",
            "  otlp:\n    protocols:\n      http:\n        endpoint: nowhere",
        ),
        6,
        19,
        "receivers.otlp.protocols.http.endpoint",
        "invalid listen address",
    );
    expect(
        &edit("  batch: {}", "  batch:\n    queue: {capacity: 0}"),
        6,
        23,
        "processors.batch.queue.capacity",
        "at least 1",
    );
    expect(
        &edit("  batch: {}", "  batch:\n    queue: {policy: maybe}"),
        6,
        21,
        "processors.batch.queue.policy",
        "unknown variant",
    );
}

/// A `seccomp_action` that is none of the five is refused where the file is read, at its value,
/// like every other enum of the configuration (a `SeccompAction` from there on: nothing later
/// matches the word).
#[test]
fn unknown_seccomp_action_names_its_place() {
    let text = format!(
        "{GOOD}plugins:\n  p:\n    path: /opt/p\n    type: processor\n    sandbox:\n      seccomp_action: kernel-errno\n"
    );
    expect(
        &text,
        24,
        23,
        "plugins.p.sandbox.seccomp_action",
        "unknown action \"kernel-errno\": use errno, kernel_errno, trap, kill or log",
    );
}

#[test]
fn env_interpolation_errors_and_values() {
    expect(
        &edit("path: /tmp/x.jsonl", "path: ${env:UNSET_VAR}"),
        9,
        11,
        "exporters.file/logs.path",
        "UNSET_VAR is not set",
    );
    let text = edit(
        "  otlp: {}",
        "  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:${env:PORT}",
    );
    let env = MapEnv(HashMap::from([("PORT", "4318")]));
    let (c, _) = load_str(&text, "c.yaml", &env).unwrap();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        "127.0.0.1:4318"
    );
}

#[test]
fn unused_components_warn_without_failing() {
    let env = MapEnv(HashMap::new());
    let (_, warnings) = load_str(
        &edit("  debug: {}", "  debug: {}\n  debug/spare: {}"),
        "c.yaml",
        &env,
    )
    .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!((warnings[0].line, warnings[0].column), (8, 3));
    assert!(
        warnings[0]
            .to_string()
            .starts_with("c.yaml:8:3: warning: exporters.debug/spare:")
    );
}

#[test]
fn syntax_errors_and_non_mappings() {
    let errs = errors("receivers: [\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 1);
    let errs = errors("- a\n- b\n");
    assert!(errs[0].message.contains("must be a mapping"));
    let errs = errors("receivers: {}\n");
    assert!(errs[0].message.contains("missing `service`"));
}

/// A configuration that takes a secret from the environment into a header and into another
/// setting.
const SECRET: &str = "s3cr3t-bearer-7f2a";
const WITH_SECRET: &str = "\
receivers:
  otlp: {}
exporters:
  otlp:
    endpoint: http://127.0.0.1:4318/${env:TOKEN}
    headers:
      authorization: Bearer ${env:TOKEN}
      x-literal: literal-header-value
  file:
    path: /tmp/srediag-${env:TOKEN}.jsonl
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp, file]
";

fn secret_env() -> MapEnv {
    MapEnv(HashMap::from([("TOKEN", SECRET), ("NUM", "98765432101")]))
}

#[test]
fn print_config_shows_no_secret_and_loads_back() {
    let (c, _) = load_str(WITH_SECRET, "c.yaml", &secret_env()).unwrap();
    // The running exporter still gets the value.
    let ComponentConfig::OtlpExporter(o) =
        &c.exporters[&ComponentId::parse("otlp").unwrap()].config
    else {
        panic!("not the otlp exporter")
    };
    assert_eq!(
        o.headers["authorization"].expose(),
        format!("Bearer {SECRET}")
    );
    assert!(
        !format!("{:?}", o.headers).contains(SECRET),
        "Debug shows the header"
    );
    let shown = c.redacted().unwrap();
    let yaml = serde_yaml::to_string(&shown).unwrap();
    let json = serde_json::to_string_pretty(&shown).unwrap();
    for out in [&yaml, &json] {
        assert!(!out.contains(SECRET) && !out.contains("s3cr3t"), "{out}");
        assert!(!out.contains("literal-header-value"), "{out}");
        assert!(out.contains("Bearer ${env:TOKEN}"), "{out}");
        assert!(out.contains("<redacted>"), "{out}");
    }
    assert!(
        yaml.contains("path: /tmp/srediag-${env:TOKEN}.jsonl"),
        "{yaml}"
    );
    // What is printed loads back, and prints the same.
    let (again, _) = load_str(&yaml, "printed.yaml", &secret_env()).unwrap();
    assert_eq!(
        serde_yaml::to_string(&again.redacted().unwrap()).unwrap(),
        yaml
    );
}

#[test]
fn diagnostics_never_quote_environment_values() {
    // An error in the header itself (a number where a string is needed) and one in another
    // setting that quotes its value.
    let text = WITH_SECRET
        .replace("Bearer ${env:TOKEN}", "${env:NUM}")
        .replace(
            "  file:\n",
            "  otlp/b:\n    endpoint: ${env:TOKEN}\n  file:\n",
        )
        .replace("[otlp, file]", "[otlp, otlp/b, file]");
    let errs = errors_with(&text, &secret_env());
    let all = errs
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(errs.len() >= 2, "{all}");
    assert!(
        !all.contains(SECRET) && !all.contains("98765432101"),
        "{all}"
    );
    assert!(all.contains("${env:TOKEN}"), "{all}");
}

fn errors_with(text: &str, env: &MapEnv) -> Vec<Diagnostic> {
    match load_str(text, "c.yaml", env) {
        Ok((_, w)) => panic!("accepted; warnings: {w:?}"),
        Err(LoadError::Invalid { diagnostics, .. }) => diagnostics,
        Err(e) => panic!("unexpected error {e}"),
    }
}
