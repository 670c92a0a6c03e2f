//! The eBPF observers against the real agent and real sandboxed plugins: seccomp `errno`
//! violations counted exactly while the plugin lives on, and for a plugin killed by its very first
//! syscall after exec, in every incarnation; kernel-observed RSS and OOM kills per
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
    std::thread::sleep(Duration::from_millis(200));
    let bpf = r
        .agent
        .metric("srediag_bpf_plugin_rss_bytes", &[("plugin", "tp-grow")])
        .expect("srediag_bpf_plugin_rss_bytes{plugin=tp-grow}");
    let procfs = vm_rss(pid) as f64;
    let err = (bpf - procfs).abs() / procfs;
    println!(
        "RSS of tp-grow ({mib} MiB touched): bpf {:.2} MiB, procfs VmRSS {:.2} MiB, error {:.2}%",
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

fn srediag_json(args: &[&str]) -> Value {
    let out = srediag(args, Duration::from_secs(30));
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        0,
        "srediag {args:?}: {}\n{}",
        out.stderr,
        out.stdout
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("srediag {args:?} -o json: {e}\n{}", out.stdout))
}

/// The CLI surfaces against a running agent: `diagnose seccomp --follow` streams exactly the
/// violations a plugin makes, `plugin list` and `top` show the kernel's per-plugin numbers,
/// `probe` lists the agent's observers, `diagnose bpf-stats` turns run-time accounting on.
#[test]
fn cli_surfaces_show_what_the_kernel_saw() {
    use std::io::BufRead;
    if !bpf_privileged("cli_surfaces_show_what_the_kernel_saw") {
        return;
    }
    let _s = serial();
    let n = random_n();
    let r = start(
        &format!(
            "{}{}",
            test_plugin(
                "tp-cli",
                &format!("{{mode: violate, count: {n}, after_ms: 2000}}"),
                "",
            ),
            test_plugin("tp-spin", "{mode: spin}", "    limits: {cpu_max: 0.5}\n"),
        ),
        &["tp-cli", "tp-spin"],
    );
    let sock = r.admin.display().to_string();

    // Follow before the violations happen (the plugin waits 2 s).
    let mut follow = std::process::Command::new(agent_bin())
        .args([
            "diagnose", "seccomp", "--follow", "-o", "json", "--socket", &sock,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events.len() < n as usize && std::time::Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(100)) {
            events.push(v);
        }
    }
    // Nothing more arrives.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(v) = rx.try_recv() {
        events.push(v);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    println!(
        "diagnose seccomp --follow: {} events for {n} violations",
        events.len()
    );
    assert_eq!(events.len(), n as usize, "{events:?}");
    let pid = plugin_status(&r.admin, "tp-cli")["pid"].clone();
    for e in &events {
        assert_eq!(e["plugin"], "tp-cli", "{e}");
        assert_eq!(e["syscall"], "mkdir", "{e}");
        assert_eq!(e["action"], "errno", "{e}");
        assert_eq!(e["pid"], pid, "{e}");
        assert!(e["time"].as_f64().unwrap_or(0.0) > 1.7e9, "{e}");
    }
    // Without --follow: the recent ones.
    let recent = srediag_json(&["diagnose", "seccomp", "-o", "json", "--socket", &sock]);
    assert_eq!(
        recent.as_array().map(Vec::len),
        Some(n as usize),
        "{recent}"
    );

    // plugin list: kernel numbers per plugin.
    let list = plugin_list(&r.admin);
    let cli = list.iter().find(|p| p["name"] == "tp-cli").unwrap();
    assert_eq!(cli["kernel"]["violations"], Value::from(n), "{cli}");
    assert!(
        cli["kernel"]["rss_bytes"].as_u64().unwrap_or(0) > 1 << 20,
        "{cli}"
    );
    let spin = list.iter().find(|p| p["name"] == "tp-spin").unwrap();
    assert!(
        spin["kernel"]["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.1,
        "{spin}"
    );
    let table = srediag(
        &["plugin", "list", "--socket", &sock],
        Duration::from_secs(10),
    );
    assert!(
        table.stdout.contains("KCPU") && table.stdout.contains("VIOL"),
        "{}",
        table.stdout
    );

    // top: two refreshes, CPU% of the spinner near its 50% cap.
    let out = srediag(
        &[
            "top",
            "-n",
            "2",
            "--interval",
            "1",
            "-o",
            "json",
            "--socket",
            &sock,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    let rows = last["plugins"].as_array().unwrap();
    let spin = rows.iter().find(|p| p["plugin"] == "tp-spin").unwrap();
    let pct = spin["cpu_percent"]
        .as_f64()
        .expect("cpu_percent on the 2nd refresh");
    println!("top: tp-spin at {pct:.1}% (cpu.max 0.5)");
    assert!((30.0..=60.0).contains(&pct), "{spin}");
    assert!(spin["ipc_p50_seconds"].is_null());
    let cli_row = rows.iter().find(|p| p["plugin"] == "tp-cli").unwrap();
    assert_eq!(cli_row["violations"], Value::from(n));
    let table = srediag(
        &["top", "-n", "1", "--socket", &sock],
        Duration::from_secs(10),
    );
    assert!(
        table.stdout.contains("IPC_P99") && table.stdout.contains("tp-spin"),
        "{}",
        table.stdout
    );

    // probe: the agent's observers.
    let probe = srediag_json(&["probe", "-o", "json", "--socket", &sock]);
    assert_eq!(probe["observers"]["source"], "agent", "{probe}");
    let obs = probe["observers"]["list"].as_array().unwrap();
    let names: Vec<&str> = obs.iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "process_tracking",
            "cpu",
            "memory",
            "seccomp",
            "ipc_latency",
            "events"
        ]
    );
    assert!(obs.iter().all(|o| o["up"] == true), "{obs:?}");
    assert!(
        obs.iter().any(|o| o["attach"]
            .as_array()
            .unwrap()
            .contains(&Value::from("tp_btf sched_switch"))),
        "{obs:?}"
    );

    // bpf-stats: off by default, on for the window asked, then off again.
    assert_eq!(r.agent.metric("srediag_bpf_stats_enabled", &[]), Some(0.0));
    let st = srediag_json(&[
        "diagnose",
        "bpf-stats",
        "--seconds",
        "1",
        "--wait",
        "-o",
        "json",
        "--socket",
        &sock,
    ]);
    let progs = st["programs"].as_array().unwrap();
    let switch = progs
        .iter()
        .find(|p| p["program"] == "srediag_switch")
        .unwrap_or_else(|| panic!("{st}"));
    println!("bpf-stats: {switch}");
    assert!(switch["runs"].as_u64().unwrap_or(0) > 0, "{st}");
    assert!(switch["run_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{st}");
    assert_eq!(st["stats_enabled"], false, "{st}");
    assert_eq!(r.agent.metric("srediag_bpf_stats_enabled", &[]), Some(0.0));
    let run = r
        .agent
        .metric(
            "srediag_bpf_program_run_seconds_total",
            &[("program", "srediag_switch")],
        )
        .expect("srediag_bpf_program_run_seconds_total{program=srediag_switch}");
    assert!(run > 0.0);
    // Off: the kernel's counters stop.
    let runs_then = switch["runs"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let again = srediag_json(&[
        "diagnose",
        "bpf-stats",
        "--seconds",
        "0",
        "-o",
        "json",
        "--socket",
        &sock,
    ]);
    let runs_now = again["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == "srediag_switch")
        .unwrap()["runs"]
        .as_u64()
        .unwrap();
    assert_eq!(runs_now, runs_then, "run counts grew with stats off");
}

/// Issue 11, point 12: a plugin whose first own syscall after exec is refused by its profile
/// (no SIGSYS handler, no handshake: the misconfigured-profile case) dies by SIGSYS in every
/// incarnation, typically before the spawner's answer has reached the supervisor. The kernel
/// must follow it from its first instruction: every seccomp death is a counted violation,
/// `violations == restarts{reason="seccomp"} + 1` (the last death quarantines, no restart).
#[test]
fn a_plugin_killed_by_its_first_syscall_is_counted_every_time() {
    if !bpf_privileged("a_plugin_killed_by_its_first_syscall_is_counted_every_time") {
        return;
    }
    let _s = serial();
    let deaths = 12u64;
    let r = start(
        &format!(
            "  tp-sigsys:\n    path: {}\n    type: processor\n    restart: {{initial_backoff: 10ms, max_backoff: 20ms, quarantine_after: {deaths}}}\n",
            plugin_bin("srediag-sigsys-plugin").display()
        ),
        &[],
    );
    let st = wait_state(
        &r.admin,
        "tp-sigsys",
        &["quarantined"],
        Duration::from_secs(60),
    );
    let seccomp_restarts = r.agent.counter(
        "srediag_plugin_restarts_total",
        &[("name", "tp-sigsys"), ("reason", "seccomp")],
    );
    let restarts = r
        .agent
        .counter("srediag_plugin_restarts_total", &[("name", "tp-sigsys")]);
    let violations = r.agent.counter(
        "srediag_plugin_seccomp_violations_total",
        &[("plugin", "tp-sigsys")],
    );
    println!(
        "tp-sigsys: {seccomp_restarts} seccomp restarts + the final death, {violations} violations counted"
    );
    assert_eq!(restarts, seccomp_restarts, "every death was seccomp: {st}");
    assert_eq!(seccomp_restarts, (deaths - 1) as f64, "{st}");
    assert_eq!(
        violations,
        seccomp_restarts + 1.0,
        "{}",
        r.agent.metrics_text()
    );
    assert_eq!(
        r.agent.counter(
            "srediag_plugin_seccomp_violations_total",
            &[
                ("plugin", "tp-sigsys"),
                ("syscall", "mkdirat"),
                ("action", "errno")
            ]
        ),
        violations
    );
    assert_eq!(
        log_lines(&r.agent.stderr(), "tp-sigsys", "mkdirat was not refused"),
        Vec::<String>::new()
    );
}
