//! Network grants against a hostile receiver plugin (`srediag-hostile-plugin receiver`, attempt
//! `ports`): a grant names TCP ports (`network: {connect: [...], bind: [...]}`), enforced by
//! Landlock; everything else — the agent's own OTLP receiver and `/metrics` included — is refused.
//!
//! Privileged (namespaces, cgroups, uid switch, Landlock ABI 4+ for the port rules); the tests
//! share host-global state, so they run one at a time.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;
use srediag_tests::bundles::*;
use srediag_tests::plugins::*;
use srediag_tests::*;

/// Whether this kernel has Landlock TCP port rules (ABI ≥ 4); CI's kernel must.
fn landlock_net() -> bool {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns a number.
    let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, 0usize, 0usize, 1u32) };
    if abi >= 4 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "Landlock ABI {abi} has no TCP port rules; CI's kernel must have them"
    );
    eprintln!("skipping: Landlock ABI {abi} has no TCP port rules (needs 4)");
    false
}

/// The agent: an OTLP/HTTP receiver on `otlp`, `/metrics` on `tel`, and `plugins`.
fn config(admin: &std::path::Path, otlp: u16, tel: u16, plugins: &str) -> String {
    format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  debug: {{}}
plugins:
{plugins}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
"#,
        admin = admin.display()
    )
}

/// A receiver granted `connect: [P]` and `bind: [B]` connects to P and binds B, and nothing else:
/// connecting to the agent's OTLP receiver or its `/metrics` port, or binding another port, fails
/// with EACCES. The test's listener on P sees exactly the granted connection.
#[test]
fn a_network_grant_opens_only_its_ports() {
    if !privileged("a_network_grant_opens_only_its_ports") || !landlock_net() {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let admin = dir.path().join("admin.sock");
    let (otlp, tel) = (free_port(), free_port());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the granted listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let granted = listener.local_addr().expect("addr").port();
    let (bind_ok, bind_denied) = (free_port(), free_port());
    let h = plugin_bin("srediag-hostile-plugin");
    let plugins = format!(
        r#"  n-recv:
    path: {h}
    type: receiver
    args: [receiver]
    network: {{connect: [{granted}], bind: [{bind_ok}]}}
    config:
      attempts: [ports]
      trigger: go
      connect_ports: [{granted}, {otlp}, {tel}]
      bind_ports: [{bind_ok}, {bind_denied}]"#,
        h = h.display(),
    );
    let mut agent = start_agent(
        dir.path(),
        &config(&admin, otlp, tel, &plugins),
        tel,
        &admin,
    );
    wait_state(&admin, "n-recv", &["ready"], Duration::from_secs(20));
    // The agent listens on both of its ports now.
    assert!(agent.healthy());
    assert!(trigger("n-recv", "{}"), "cannot write the trigger");
    let lines = wait_line(
        &agent,
        "n-recv",
        "done",
        "attempts",
        Duration::from_secs(30),
    );
    let by_target: BTreeMap<String, &Value> = lines
        .iter()
        .filter(|l| l["attempt"] == "ports")
        .map(|l| (l["target"].as_str().unwrap_or("").to_string(), l))
        .collect();
    eprintln!("{by_target:#?}");
    let outcome = |t: String| -> (bool, i64) {
        let l = by_target
            .get(&t)
            .unwrap_or_else(|| panic!("no attempt {t:?}: {lines:?}"));
        (l["ok"] == true, l["errno"].as_i64().unwrap_or(-1))
    };
    let eacces = libc::EACCES as i64;
    assert_eq!(
        outcome(format!("connect {granted}")),
        (true, 0),
        "granted connect"
    );
    assert_eq!(
        outcome(format!("connect {otlp}")),
        (false, eacces),
        "connect to the agent's OTLP receiver"
    );
    assert_eq!(
        outcome(format!("connect {tel}")),
        (false, eacces),
        "connect to the agent's /metrics"
    );
    assert_eq!(
        outcome(format!("bind {bind_ok}")),
        (true, 0),
        "granted bind"
    );
    assert_eq!(
        outcome(format!("bind {bind_denied}")),
        (false, eacces),
        "bind of a port not granted"
    );
    // The granted connection arrived.
    assert!(
        listener.accept().is_ok(),
        "no connection on the granted port"
    );
    let st = plugin_status(&admin, "n-recv");
    assert_eq!(st["state"], "ready", "{st}");
    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "agent exit status: {status}");
}

/// `network: true` — every TCP port, the agent's own included — is refused with a message that
/// says how to list ports, in the configuration (`srediag validate`) and in a signed manifest;
/// a configuration asking for a port its manifest does not grant is SRD-P016 naming the port.
#[test]
fn all_port_grants_and_widening_port_lists_are_refused() {
    if !privileged("all_port_grants_and_widening_port_lists_are_refused") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let h = plugin_bin("srediag-hostile-plugin");

    // The configuration.
    let cfg = dir.path().join("all-ports.yaml");
    std::fs::write(
        &cfg,
        agent_config(
            &dir.path().join("a.sock"),
            free_port(),
            &format!(
                "  n-all:\n    path: {}\n    type: receiver\n    args: [receiver]\n    network: true",
                h.display()
            ),
        ),
    )
    .expect("write config");
    let out = srediag(
        &["validate", "--config", &cfg.display().to_string()],
        Duration::from_secs(15),
    );
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        78,
        "validate accepted network: true:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("plugins.n-all.network") && out.stderr.contains("connect: ["),
        "the message should name the field and show how to list ports:\n{}",
        out.stderr
    );

    // Manifests: one with `network: true` (refused by `plugin sign`, and by the agent even where
    // the policy would run it unsigned), one granting connect [P] configured wider.
    let (key, public) = keygen(&dir.path().join("keys"));
    write_policy(&dir.path().join("trust.yaml"), &public, true);
    let b = |n: &str| dir.path().join("plugins").join(n);
    make_bundle(
        &b("n-true"),
        "n-true",
        "receiver",
        "1.0.0",
        &h,
        "sandbox: {network: true}\n",
    );
    let out = srediag(
        &[
            "plugin",
            "sign",
            &b("n-true").display().to_string(),
            "--key",
            &key.display().to_string(),
        ],
        Duration::from_secs(30),
    );
    out.assert_no_panic();
    assert!(
        out.code() != 0
            && out
                .stderr
                .contains("sandbox.network: `true` (every TCP port"),
        "plugin sign accepted network: true: {}",
        out.stderr
    );
    let (p, otlp) = (free_port(), free_port());
    make_bundle(
        &b("n-wide"),
        "n-wide",
        "receiver",
        "1.0.0",
        &h,
        &format!("sandbox: {{network: {{connect: [{p}]}}}}\n"),
    );
    sign(&b("n-wide"), &key);
    let entry = |n: &str, extra: &str| {
        format!(
            "  {n}:\n    bundle: {}\n    type: receiver\n    args: [receiver]\n{extra}",
            b(n).display()
        )
    };
    let plugins = [
        entry("n-true", ""),
        entry(
            "n-wide",
            &format!("    network: {{connect: [{p}, {otlp}]}}\n"),
        ),
    ]
    .concat();
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, plugins.trim_end()),
        tel,
        &admin,
    );
    let st = wait_state(&admin, "n-true", &["rejected"], Duration::from_secs(20));
    let err = st["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("SRD-P015: plugin n-true: ")
            && err.contains("sandbox.network")
            && err.contains("connect: ["),
        "{err}"
    );
    let st = wait_state(&admin, "n-wide", &["rejected"], Duration::from_secs(20));
    let err = st["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("SRD-P016: plugin n-wide: ")
            && err.contains("plugins.n-wide.network.connect[1]")
            && err.contains(&format!("port {otlp}")),
        "{err}"
    );
    for name in ["n-true", "n-wide"] {
        assert!(plugin_cgroups(name).is_empty(), "{name}: cgroup created");
    }
    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "agent exit status: {status}");
}
