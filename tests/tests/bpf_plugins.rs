//! The eBPF observers against the real agent and real sandboxed plugins: seccomp `errno`
//! violations counted exactly while the plugin lives on, kernel-observed RSS and OOM kills per
//! plugin, and the CLI surfaces (`srediag probe`, `plugin list`, `top`, `diagnose seccomp`).
//!
//! Privileged (root, kernel BTF): without them the tests print why they skip, unless `CI=true`.
//! They share host-global state (srediag cgroups, /run/srediag, BPF), so they run one at a time.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use srediag_tests::plugins::*;
use srediag_tests::*;
use tempfile::TempDir;

/// 3..=40, different on every call.
fn random_n() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = t | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    3 + x % 38
}

fn bpf_privileged(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no kernel BTF"
        );
        eprintln!("skipping {test}: no kernel BTF (/sys/kernel/btf/vmlinux)");
        return false;
    }
    true
}

/// The agent's log lines about plugin `name` that contain `needle`.
fn log_lines(log: &str, name: &str, needle: &str) -> Vec<String> {
    let tag = format!("plugin={name}");
    log.lines()
        .filter(|l| l.contains(needle) && l.contains(&tag))
        .map(str::to_owned)
        .collect()
}

struct Running {
    _dir: TempDir,
    agent: Agent,
    admin: std::path::PathBuf,
}

/// Starts an agent with `plugins` (YAML entries indented by two spaces) and waits for `ready`
/// of every name in `names`.
fn start(plugins: &str, names: &[&str]) -> Running {
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let agent = start_agent(dir.path(), &agent_config(&admin, tel, plugins), tel, &admin);
    for n in names {
        wait_state(&admin, n, &["ready"], Duration::from_secs(20));
    }
    Running {
        _dir: dir,
        agent,
        admin,
    }
}

fn test_plugin(name: &str, config: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    path: {tp}\n    type: processor\n    config: {config}\n{extra}",
        tp = plugin_bin("srediag-test-plugin").display()
    )
}

/// Waits until the agent logged a line about `name` containing `needle`; returns it.
fn wait_log(agent: &Agent, name: &str, needle: &str, timeout: Duration) -> String {
    poll_until(timeout, needle, || {
        log_lines(&agent.stderr(), name, needle).into_iter().next()
    })
}

#[test]
fn errno_violations_are_counted_exactly_and_the_plugin_lives() {
    if !bpf_privileged("errno_violations_are_counted_exactly_and_the_plugin_lives") {
        return;
    }
    let _s = serial();
    let n = random_n();
    let r = start(
        &test_plugin(
            "tp-errno",
            &format!("{{mode: violate, count: {n}, after_ms: 200}}"),
            "    sandbox: {seccomp_action: errno}\n",
        ),
        &["tp-errno"],
    );
    let pid = plugin_status(&r.admin, "tp-errno")["pid"].clone();
    let line = wait_log(
        &r.agent,
        "tp-errno",
        "violations done",
        Duration::from_secs(10),
    );
    assert!(
        line.contains(&format!("eperm={n} of {n}")),
        "every refused call returned EPERM: {line}"
    );
    let labels = [
        ("plugin", "tp-errno"),
        ("syscall", "mkdir"),
        ("action", "errno"),
    ];
    let got = r
        .agent
        .counter("srediag_plugin_seccomp_violations_total", &labels);
    println!("errno violations: made {n}, counted {got}");
    assert_eq!(got, n as f64, "{}", r.agent.metrics_text());
    // Every violation of this plugin has that label set (no trap/kill double counting).
    assert_eq!(
        r.agent.counter(
            "srediag_plugin_seccomp_violations_total",
            &[("plugin", "tp-errno")]
        ),
        n as f64
    );
    // Still the same, living process.
    std::thread::sleep(Duration::from_millis(300));
    let st = plugin_status(&r.admin, "tp-errno");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"], pid, "the plugin was not restarted: {st}");
    assert_eq!(st["restarts"], Value::from(0), "{st}");
}

/// `VmRSS` of `pid` in bytes.
fn vm_rss(pid: u64) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn ppid(pid: u64) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn rss_per_plugin_matches_procfs() {
    if !bpf_privileged("rss_per_plugin_matches_procfs") {
        return;
    }
    let _s = serial();
    let mib = 64 + random_n();
    let r = start(
        &test_plugin("tp-grow", &format!("{{mode: grow, mib: {mib}}}"), ""),
        &["tp-grow"],
    );
    wait_log(&r.agent, "tp-grow", "grown", Duration::from_secs(10));
    let pid = plugin_status(&r.admin, "tp-grow")["pid"]
        .as_u64()
        .expect("pid");
    // The plugin and its sandbox helper (its parent) are the plugin's processes.
    let helper = ppid(pid);
    std::thread::sleep(Duration::from_millis(200));
    let bpf = r
        .agent
        .metric("srediag_bpf_plugin_rss_bytes", &[("plugin", "tp-grow")])
        .expect("srediag_bpf_plugin_rss_bytes{plugin=tp-grow}");
    let procfs = (vm_rss(pid) + vm_rss(helper)) as f64;
    let err = (bpf - procfs).abs() / procfs;
    println!(
        "RSS of tp-grow ({mib} MiB touched): bpf {:.2} MiB, procfs VmRSS (plugin + helper) {:.2} MiB, error {:.2}%",
        bpf / 1048576.0,
        procfs / 1048576.0,
        err * 100.0
    );
    assert!(procfs > (mib << 20) as f64, "the plugin did grow: {procfs}");
    assert!(err <= 0.05, "bpf {bpf} vs procfs {procfs}");
}

#[test]
fn oom_kill_of_a_plugin_is_counted_once() {
    if !bpf_privileged("oom_kill_of_a_plugin_is_counted_once") {
        return;
    }
    let _s = serial();
    let r = start(
        &test_plugin(
            "tp-oom",
            "{mode: oom, after_ms: 300}",
            "    limits: {memory_max: 64MiB}\n    restart: {quarantine_after: 1}\n",
        ),
        &["tp-oom"],
    );
    let before = r.agent.counter(
        "srediag_bpf_plugin_oom_kills_total",
        &[("plugin", "tp-oom")],
    );
    assert_eq!(before, 0.0);
    wait_state(
        &r.admin,
        "tp-oom",
        &["quarantined"],
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(200));
    let bpf = r.agent.counter(
        "srediag_bpf_plugin_oom_kills_total",
        &[("plugin", "tp-oom")],
    );
    let cgroup = r
        .agent
        .counter("srediag_plugin_oom_kills_total", &[("name", "tp-oom")]);
    println!("OOM kills of tp-oom: bpf {bpf}, cgroup oom_kill counter {cgroup}");
    assert_eq!(bpf, 1.0, "{}", r.agent.metrics_text());
    assert_eq!(cgroup, 1.0);
    let log = r.agent.stderr();
    assert_eq!(
        log_lines(&log, "tp-oom", "OOM killer chose a plugin process").len(),
        1,
        "{log}"
    );
}
