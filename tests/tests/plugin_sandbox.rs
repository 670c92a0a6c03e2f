//! The plugin sandbox against a hostile plugin (`tests/plugins/src/bin/srediag-hostile-plugin.rs`).
//!
//! Privileged: the agent needs root to build the sandbox (namespaces, cgroups, uid switch). Without
//! root the tests print why they skip, unless `CI=true`, where they never skip.
//!
//! What the hostile plugin reports comes back through the agent's own log: every `HOSTILE {...}`
//! line it prints on stdout is logged by the agent tagged `plugin=<name> stream="stdout"`.
//!
//! The tests in this file share host-global state (the `srediag` cgroup root, the scratch root
//! `/run/srediag/plugins`, and a starting agent removes what it takes for a previous agent's
//! leftovers), so they run one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use srediag_tests::*;

const EPERM: i64 = libc::EPERM as i64;
const EACCES: i64 = libc::EACCES as i64;
const ENOENT: i64 = libc::ENOENT as i64;
const ESRCH: i64 = libc::ESRCH as i64;
const ENOSYS: i64 = libc::ENOSYS as i64;

use srediag_tests::plugins::*;

/// `/proc/<pid>/status` as key → value.
fn proc_status(pid: u64) -> BTreeMap<String, String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Pids of live processes running `exe`.
fn processes_of(exe: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe) {
            out.push(pid);
        }
    }
    out
}

/// SIGTERM, exit 0 within `timeout`.
fn stop_agent(agent: &mut Agent, timeout: Duration) {
    agent.sigterm();
    let status = agent.wait_exit(timeout);
    assert_eq!(
        status.code(),
        Some(0),
        "agent exit status after SIGTERM: {status}"
    );
}

fn errno_name(e: i64) -> String {
    // SAFETY: strerror returns a pointer to a static or thread-local string.
    let s = unsafe { std::ffi::CStr::from_ptr(libc::strerror(e as libc::c_int)) };
    format!("{e} ({})", s.to_string_lossy())
}

/// p-quantile (0..1) of `v` (sorted in place), nearest-rank.
fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `n` sequential GETs of `/metrics` on one keep-alive connection (after 20 warm-up requests),
/// going on until `min_time` passed too; returns each latency.
fn metrics_latencies(agent: &Agent, n: usize, min_time: Duration) -> Vec<Duration> {
    let client = http();
    let url = format!("http://{}/metrics", agent.telemetry);
    let get = || {
        let t = Instant::now();
        let r = client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status().as_u16(), 200);
        let body = r.text().expect("metrics body");
        assert!(body.contains("srediag_plugin_state"));
        t.elapsed()
    };
    for _ in 0..20 {
        get();
    }
    let start = Instant::now();
    let mut out = Vec::with_capacity(n);
    while out.len() < n || start.elapsed() < min_time {
        out.push(get());
    }
    out
}

fn errno_of(l: &Value) -> i64 {
    l["errno"].as_i64().unwrap_or(-1)
}

/// Records in `failures` unless attempt `l` failed with one of the `allowed` errnos.
fn expect_fail(l: &Value, allowed: &[i64], failures: &mut Vec<String>) {
    if l["ok"] != false || !allowed.contains(&errno_of(l)) {
        failures.push(format!(
            "{} {}: ok={} errno={} (expected a failure with one of {:?})",
            l["attempt"],
            l["target"],
            l["ok"],
            errno_name(errno_of(l)),
            allowed.iter().map(|e| errno_name(*e)).collect::<Vec<_>>()
        ));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------

/// Syscalls the seccomp `log` (monitor-only) mode must still deny with EPERM: the hard deny list
/// (agent/src/plugins/sandbox/seccomp/policy.rs), by the name the hostile plugin reports before
/// any `(`.
const HARD_DENY: &[&str] = &[
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "sethostname",
    "setdomainname",
    "vhangup",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "set_mempolicy_home_node",
    "migrate_pages",
    "move_pages",
    "iopl",
    "ioperm",
    "modify_ldt",
    "fanotify_init",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "lookup_dcookie",
];

/// Every escape attempt of the hostile plugin fails, the one allowed write (its scratch directory)
/// succeeds, and the running plugin's credentials, seccomp mode and fds are what the sandbox
/// promises. A second instance runs the syscall attempts under the monitor-only `log` action,
/// which must still deny the hard list.
#[test]
fn hostile_plugin_attempts_all_fail() {
    if !privileged("hostile_plugin_attempts_all_fail") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener for the net attempt");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let sleeper = ChildGuard::new(
        "sleep 300 (a host process the plugin must not signal)",
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let outside = [
        "/tmp/hostile",
        "/etc/hostile",
        "/run/srediag/hostile",
        "/run/srediag/plugins/hostile-escape",
        "/dev/shm/hostile",
    ];
    for f in outside {
        let _ = fs::remove_file(f);
    }
    let h = plugin_bin("srediag-hostile-plugin");
    let plugins = format!(
        r#"  hostile:
    path: {h}
    type: processor
    config:
      attempts: [env, syscalls, files, signals, net, ioctl]
      pace_ms: 20
      trigger: go
      host_pid: {host}
      port: {port}
      admin_socket: {admin}
  hostile-log:
    path: {h}
    type: processor
    sandbox: {{seccomp_action: log}}
    config: {{attempts: [syscalls, ioctl], trigger: go, pace_ms: 20}}"#,
        h = h.display(),
        host = sleeper.pid(),
        admin = admin.display(),
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    for name in ["hostile", "hostile-log"] {
        wait_state(&admin, name, &["ready"], Duration::from_secs(20));
    }
    // The agent's pid is only known now: it reaches the plugin through the trigger file.
    assert!(trigger(
        "hostile",
        &format!("{{\"agent_pid\": {}}}", agent.pid())
    ));
    assert!(trigger("hostile-log", "{}"));
    let lines = wait_line(
        &agent,
        "hostile",
        "done",
        "attempts",
        Duration::from_secs(60),
    );
    let log_lines = wait_line(
        &agent,
        "hostile-log",
        "done",
        "attempts",
        Duration::from_secs(60),
    );

    let mut failures: Vec<String> = Vec::new();
    let mut by_attempt: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for l in &lines {
        by_attempt
            .entry(l["attempt"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(l);
    }
    let get = |attempt: &str| by_attempt.get(attempt).cloned().unwrap_or_default();
    // Identity: empty environment, unprivileged dedicated uid, pid 1 of its own pid namespace,
    // its own hostname, the scratch directory as working directory.
    let env = get("env");
    assert_eq!(env.len(), 1, "one env line: {lines:?}");
    let id = env[0];
    assert_eq!(
        id["env"],
        serde_json::json!([]),
        "environment not empty: {id}"
    );
    for k in ["uid", "euid", "gid"] {
        let v = id[k].as_u64().unwrap_or(0);
        assert!(
            (60578..=61183).contains(&v),
            "{k} = {v}: expected a dedicated id in 60578–61183 ({id})"
        );
    }
    assert_eq!(id["pid"], 1, "the plugin is pid 1 of its namespace: {id}");
    assert_eq!(id["hostname"], "srediag-hostile", "{id}");
    assert_eq!(id["cwd"], "/run/srediag/plugins/hostile", "{id}");

    // Syscalls: every one denied (EPERM), clone3 answered ENOSYS so libc falls back to clone.
    let syscalls = get("syscalls");
    for l in &syscalls {
        if l["target"] == "clone3" {
            expect_fail(l, &[ENOSYS], &mut failures);
        } else {
            expect_fail(l, &[EPERM], &mut failures);
        }
    }
    let denied = syscalls.iter().filter(|l| l["ok"] == false).count();
    assert!(
        denied >= 50,
        "only {denied} denied syscalls reported (need ≥ 50): {syscalls:?}"
    );

    // Files: nothing outside the allowlist, writes only in the scratch directory.
    let files = get("files");
    let agent_environ = format!("read /proc/{}/environ", agent.pid());
    let mut saw = BTreeSet::new();
    for l in &files {
        let target = l["target"].as_str().unwrap_or("");
        saw.insert(target.to_string());
        if target == "read /proc/1/environ" {
            // pid 1 of its namespace is the plugin itself: readable, and empty.
            if l["ok"] == true {
                assert_eq!(l["bytes"], 0, "its own environment is not empty: {l}");
            }
        } else if target == agent_environ {
            // The agent is not in the plugin's pid namespace: not even visible.
            expect_fail(l, &[ENOENT, ESRCH, EACCES, EPERM], &mut failures);
        } else if target == "write hostile-scratch" {
            assert!(
                l["ok"] == true && l["written"] == 8,
                "scratch write failed: {l}"
            );
        } else if target == "read hostile-scratch" {
            assert!(
                l["ok"] == true && l["bytes"] == 8,
                "scratch read failed: {l}"
            );
        } else if target.starts_with("read ")
            || target == "readdir /"
            || target.starts_with("write /tmp/")
            || target.starts_with("write /etc/")
            || target.starts_with("write /run/")
            || target.starts_with("write /dev/")
        {
            // Outside the Landlock allowlist (or created there): denied.
            expect_fail(l, &[EACCES, EPERM], &mut failures);
        } else {
            // Existing kernel files (/proc, /sys/fs/cgroup): denied, or absent in its view.
            expect_fail(l, &[EACCES, EPERM, ENOENT], &mut failures);
        }
    }
    for t in [
        "read /etc/shadow",
        agent_environ.as_str(),
        "write /tmp/hostile",
        "write /etc/hostile",
        "write /run/srediag/hostile",
        "write hostile-scratch",
    ] {
        assert!(
            saw.contains(t),
            "no files attempt {t:?} reported: {files:?}"
        );
    }
    assert!(
        saw.iter()
            .any(|t| t.contains("memory.limit_in_bytes") || t.contains("memory.max")),
        "the plugin did not try to raise its own memory limit: {saw:?}"
    );
    for f in outside {
        assert!(!Path::new(f).exists(), "the hostile plugin created {f}");
    }

    // Signals and ptrace: host processes are invisible or protected.
    let signals = get("signals");
    assert!(signals.len() >= 6, "{signals:?}");
    for l in &signals {
        expect_fail(l, &[ESRCH, EPERM], &mut failures);
    }

    // Network: no socket, or no route; the test's listener saw nothing.
    let net = get("net");
    assert!(net.len() >= 3, "{net:?}");
    for l in &net {
        expect_fail(
            l,
            &[
                EPERM,
                EACCES,
                libc::ENETUNREACH as i64,
                libc::ECONNREFUSED as i64,
                libc::EAFNOSUPPORT as i64,
                ENOENT,
            ],
            &mut failures,
        );
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the hostile plugin reached the host's 127.0.0.1:{port}: {other:?}"),
    }

    // ioctl: TIOCSTI in every spelling denied; FIONREAD allowed by the profile.
    let ioctl = get("ioctl");
    for l in &ioctl {
        let t = l["target"].as_str().unwrap_or("");
        if t.contains("FIONREAD") {
            assert_eq!(
                l["ok"], true,
                "FIONREAD is allowed by the base profile: {l}"
            );
        } else if t == "open /dev/tty" {
            expect_fail(
                l,
                &[EACCES, EPERM, libc::ENXIO as i64, ENOENT],
                &mut failures,
            );
        } else {
            expect_fail(l, &[EPERM], &mut failures);
        }
    }
    assert!(
        ioctl
            .iter()
            .any(|l| l["target"] == "ioctl(1, TIOCSTI|1<<32)"),
        "{ioctl:?}"
    );

    assert!(
        failures.is_empty(),
        "{} escape attempts did not fail as expected:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );

    // The host process is alive.
    let mut sleeper = sleeper;
    assert!(
        sleeper.try_exit().is_none(),
        "the hostile plugin killed host process {}",
        sleeper.pid()
    );

    // The plugin survived its attempts (errno mode) and runs confined.
    let st = wait_state(&admin, "hostile", &["ready"], Duration::from_secs(5));
    assert_eq!(st["restarts"], 0, "{st}");
    let pid = st["pid"].as_u64().expect("pid of a ready plugin");
    // What the operator sees: memory and CPU from its cgroup, the state gauge.
    assert!(
        st["memory_bytes"].as_u64().is_some_and(|m| m > 0),
        "memory_bytes: {st}"
    );
    assert!(
        st["cpu_seconds"].as_f64().is_some_and(|c| c > 0.0),
        "cpu_seconds: {st}"
    );
    assert_eq!(
        agent.metric(
            "srediag_plugin_state",
            &[("name", "hostile"), ("state", "ready")]
        ),
        Some(1.0)
    );
    assert!(
        agent
            .metric("srediag_plugin_memory_bytes", &[("name", "hostile")])
            .is_some_and(|m| m > 0.0)
    );
    let status = proc_status(pid);
    for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status.get(k).map(String::as_str),
            Some("0000000000000000"),
            "{k} of plugin pid {pid}: {status:?}"
        );
    }
    assert_eq!(
        status.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "{status:?}"
    );
    assert_eq!(
        status.get("Seccomp").map(String::as_str),
        Some("2"),
        "{status:?}"
    );
    for k in ["Uid", "Gid"] {
        let ids: Vec<&str> = status[k].split_whitespace().collect();
        assert_eq!(ids.len(), 4, "{k}: {status:?}");
        assert!(
            ids.iter().all(|v| *v != "0"),
            "{k} has a root id: {}",
            status[k]
        );
    }
    assert_eq!(
        status.get("Groups").map(String::as_str),
        Some(""),
        "supplementary groups: {status:?}"
    );
    // Every thread (the hostile plugin has two) is filtered.
    for t in fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let tid: u64 = t
            .file_name()
            .to_str()
            .and_then(|s| s.parse().ok())
            .expect("tid");
        let ts = proc_status(tid);
        assert_eq!(
            ts.get("Seccomp").map(String::as_str),
            Some("2"),
            "thread {tid}: {ts:?}"
        );
        assert_eq!(
            ts.get("CapEff").map(String::as_str),
            Some("0000000000000000"),
            "thread {tid}"
        );
    }
    let fds = proc_fds(pid);
    let numbers: Vec<i32> = fds.keys().copied().collect();
    assert_eq!(numbers, [0, 1, 2, 3], "plugin fds: {fds:?}");
    assert_eq!(fds[&0], "/dev/null", "{fds:?}");
    assert!(
        fds[&1].starts_with("pipe:") && fds[&2].starts_with("pipe:"),
        "{fds:?}"
    );
    assert!(
        fds[&3].starts_with("socket:"),
        "fd 3 is the control socket: {fds:?}"
    );
    eprintln!(
        "hostile plugin pid {pid}: {} syscall attempts ({denied} denied), {} file, {} signal, {} net, {} ioctl attempts; fds {fds:?}",
        syscalls.len(),
        files.len(),
        signals.len(),
        net.len(),
        ioctl.len()
    );

    // Monitor-only mode: the hard deny list, CLONE_NEW*, raw/packet/netlink sockets and TIOCSTI
    // stay denied; clone3 stays ENOSYS.
    let mut log_failures = Vec::new();
    let mut checked = 0;
    for l in &log_lines {
        let t = l["target"].as_str().unwrap_or("");
        let base = t.split('(').next().unwrap_or(t);
        let must_deny = (l["attempt"] == "syscalls" && HARD_DENY.contains(&base))
            || t.starts_with("clone(CLONE_NEW")
            || t.starts_with("socket(AF_PACKET")
            || t.starts_with("socket(AF_NETLINK")
            || t.starts_with("socket(AF_INET,SOCK_RAW")
            || t.contains("TIOCSTI");
        if t == "clone3" {
            checked += 1;
            expect_fail(l, &[ENOSYS], &mut log_failures);
        } else if must_deny {
            checked += 1;
            expect_fail(l, &[EPERM], &mut log_failures);
        }
    }
    assert!(
        checked >= 60,
        "only {checked} guarded attempts under the log action: {log_lines:?}"
    );
    assert!(
        log_failures.is_empty(),
        "seccomp_action log let {} hard-denied calls through:\n  {}",
        log_failures.len(),
        log_failures.join("\n  ")
    );

    stop_agent(&mut agent, Duration::from_secs(30));
    assert!(
        processes_of(&h).is_empty(),
        "hostile plugin processes left: {:?}",
        processes_of(&h)
    );
}

/// Fork bomb, thread bomb, memory bomb, CPU spin, fd exhaustion, i386/x32 syscalls and a denied
/// syscall under the `kill` and `trap` actions, each in its own plugin of one agent: each is
/// contained by its limit or killed with the right reason, no other plugin is affected, and the
/// agent's `/metrics` stays fast: p99 under the bombs < 2 × the idle p99 + 5 ms.
///
/// The 5 ms slack: on a 2-vCPU VM an idle p99 is ~1–3 ms, and a single scheduler hiccup (the
/// bombs legitimately use up to their caps: 0.5 core of CPU, an OOM kill and a restart every few
/// hundred ms) costs a few ms; the slack keeps the check about the agent blocking or starving,
/// not about the VM's noise.
#[test]
fn bombs_are_contained_and_metrics_stay_fast() {
    if !privileged("bombs_are_contained_and_metrics_stay_fast") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let h = plugin_bin("srediag-hostile-plugin");
    const PIDS_MAX: u64 = 32;
    const CPU_MAX: f64 = 0.5;
    let quick_quarantine = "restart: {initial_backoff: 100ms, quarantine_after: 2}";
    let plugins = format!(
        r#"  h-i386:
    path: {h}
    type: processor
    config: {{final: i386, delay_ms: 300}}
    {quick_quarantine}
  h-x32:
    path: {h}
    type: processor
    config: {{final: x32, delay_ms: 300}}
    {quick_quarantine}
  h-kill:
    path: {h}
    type: processor
    config: {{final: denied, delay_ms: 300}}
    sandbox: {{seccomp_action: kill}}
    {quick_quarantine}
  h-trap:
    path: {h}
    type: processor
    config: {{final: denied, delay_ms: 300, default_sigsys: true}}
    sandbox: {{seccomp_action: trap}}
    {quick_quarantine}
  h-fork:
    path: {h}
    type: processor
    config: {{final: forkbomb, trigger: go, fork_rounds: 1000}}
    limits: {{pids_max: {PIDS_MAX}}}
  h-mem:
    path: {h}
    type: processor
    config: {{final: membomb, trigger: go}}
    limits: {{memory_max: 64MiB}}
    restart: {{initial_backoff: 100ms, max_backoff: 400ms, quarantine_after: 1000, window: 1s}}
  h-cpu:
    path: {h}
    type: processor
    config: {{final: cpuspin, trigger: go, spin_threads: 4}}
    limits: {{cpu_max: {CPU_MAX}}}
    heartbeat: {{interval: 250ms}}
  h-fd:
    path: {h}
    type: processor
    config: {{final: fdbomb, trigger: go}}"#,
        h = h.display(),
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );

    // The seccomp deaths need no trigger: each plugin dies twice (restart, then quarantine).
    for name in ["h-i386", "h-x32", "h-kill", "h-trap"] {
        let st = wait_state(&admin, name, &["quarantined"], Duration::from_secs(30));
        let last = st["last_exit"].as_str().unwrap_or("");
        assert!(
            last.starts_with("seccomp:") && last.contains("SRD-P003"),
            "{name}: last_exit should name the seccomp kill (SRD-P003): {st}"
        );
        assert!(
            st["error"].as_str().unwrap_or("").contains("SRD-P007"),
            "{name}: {st}"
        );
        assert_eq!(
            agent.counter(
                "srediag_plugin_restarts_total",
                &[("name", name), ("reason", "seccomp")]
            ),
            1.0,
            "{name}: restarts_total{{reason=seccomp}}"
        );
        let lines = hostile_lines(&agent.stderr(), name);
        assert!(
            !lines.iter().any(|l| l["survived"] == true),
            "{name} survived its final syscall: {lines:?}"
        );
    }
    for name in ["h-fork", "h-mem", "h-cpu", "h-fd"] {
        wait_state(&admin, name, &["ready"], Duration::from_secs(20));
    }

    // Idle baseline: the same length of time as the measurement under the bombs.
    let mut idle = metrics_latencies(&agent, 200, Duration::from_secs(4));
    let (idle_p50, idle_p99) = (quantile(&mut idle, 0.5), quantile(&mut idle, 0.99));

    // Bombs away. The memory bomb restarts after each OOM kill with a fresh scratch directory:
    // keep its trigger there while the bombs are supposed to run.
    for name in ["h-fork", "h-cpu", "h-fd"] {
        assert!(trigger(name, "{}"), "cannot write the trigger of {name}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if !plugin_cwd("h-mem").is_some_and(|d| d.join("go").exists()) {
                    let _ = trigger("h-mem", "{}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let fork_lines = wait_line(
        &agent,
        "h-fork",
        "final",
        "threadbomb",
        Duration::from_secs(60),
    );
    let fd_lines = wait_line(&agent, "h-fd", "final", "fdbomb", Duration::from_secs(60));
    wait_line(&agent, "h-cpu", "final", "cpuspin", Duration::from_secs(30));
    poll_until(Duration::from_secs(30), "an OOM kill of h-mem", || {
        (agent.counter("srediag_plugin_oom_kills_total", &[("name", "h-mem")]) >= 1.0).then_some(())
    });

    // Under the bombs: latency, and the CPU rate of the spinner over the same window (≥ 4 s).
    let cpu = |a: &Agent| a.counter("srediag_plugin_cpu_seconds_total", &[("name", "h-cpu")]);
    // Periods in which the cgroup's quota ran out (`nr_throttled` of cpu.stat, v1 and v2).
    let throttled = || -> u64 {
        plugin_cgroups("h-cpu")
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cpu.stat")).ok())
            .filter_map(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("nr_throttled "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .max()
            .unwrap_or(0)
    };
    let (cpu0, thr0, t0) = (cpu(&agent), throttled(), Instant::now());
    let mut busy = metrics_latencies(&agent, 200, Duration::from_secs(4));
    let (cpu1, thr1, window) = (cpu(&agent), throttled(), t0.elapsed());
    let (busy_p50, busy_p99) = (quantile(&mut busy, 0.5), quantile(&mut busy, 0.99));
    let cpu_rate = (cpu1 - cpu0) / window.as_secs_f64();
    let oom_kills = agent.counter("srediag_plugin_oom_kills_total", &[("name", "h-mem")]);
    stop.store(true, Ordering::SeqCst);
    keeper.join().expect("trigger keeper");
    eprintln!(
        "/metrics latency: idle p50 {:.2} ms p99 {:.2} ms ({} requests); under bombs p50 {:.2} ms p99 {:.2} ms ({} requests in {:.1} s); \
         h-cpu {cpu_rate:.3} cores (cap {CPU_MAX}); h-mem {oom_kills} OOM kills",
        ms(idle_p50),
        ms(idle_p99),
        idle.len(),
        ms(busy_p50),
        ms(busy_p99),
        busy.len(),
        window.as_secs_f64()
    );

    // Fork bomb: no process creation at all (seccomp), threads stopped by pids.max.
    let fork = fork_lines
        .iter()
        .find(|l| l["target"] == "forkbomb")
        .expect("forkbomb line");
    assert_eq!(fork["forks_ok"], 0, "forks got through: {fork}");
    assert_eq!(fork["forks_failed"], 1000, "{fork}");
    assert_eq!(fork["errno"], EPERM, "{fork}");
    let threads = fork_lines
        .iter()
        .find(|l| l["target"] == "threadbomb")
        .expect("threadbomb line");
    assert_eq!(
        threads["errno"],
        libc::EAGAIN as i64,
        "thread creation should stop at pids.max: {threads}"
    );
    let made = threads["threads_ok"].as_u64().unwrap_or(u64::MAX);
    assert!(
        made > 0 && made < PIDS_MAX,
        "{made} threads with pids.max {PIDS_MAX}: {threads}"
    );
    // pids.events of h-fork's cgroup wherever the pids controller is (v1 pids hierarchy or v2).
    let events: Vec<_> = plugin_cgroups("h-fork")
        .into_iter()
        .map(|d| d.join("pids.events"))
        .filter(|p| p.is_file())
        .collect();
    assert!(
        !events.is_empty(),
        "no pids.events for h-fork in {:?} (cgroup mounts {:?})",
        plugin_cgroups("h-fork"),
        cgroup_mounts()
    );
    for events in events {
        let text = fs::read_to_string(&events).unwrap_or_default();
        let max: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            max > 0,
            "{}: no fork refused by pids.max: {text}",
            events.display()
        );
    }

    // Memory bomb: OOM-killed inside its cgroup (counted from the cgroup), restarted as such.
    assert!(oom_kills >= 1.0);
    let mem = plugin_status(&admin, "h-mem");
    assert!(
        agent.counter(
            "srediag_plugin_restarts_total",
            &[("name", "h-mem"), ("reason", "oom")]
        ) >= 1.0,
        "no restart with reason oom: {mem}"
    );
    let last = mem["last_exit"].as_str().unwrap_or("");
    assert!(
        last.starts_with("oom:") && last.contains("SRD-P004"),
        "h-mem last_exit: {mem}"
    );

    // CPU spin: held at its cap, and really spinning.
    assert!(
        cpu_rate <= CPU_MAX * 1.2 + 0.05,
        "h-cpu used {cpu_rate:.3} cores over {window:?}, cap {CPU_MAX}"
    );
    // Really spinning: it got at least half its cap, or (on a machine too busy to give it that)
    // it hit its quota in some periods.
    assert!(
        cpu_rate >= CPU_MAX * 0.5 || thr1 > thr0,
        "h-cpu used only {cpu_rate:.3} cores and was never throttled ({thr0} -> {thr1}): is it spinning?"
    );

    // fd exhaustion: stopped by RLIMIT_NOFILE with EMFILE; the plugin still holds them and runs.
    let fd = fd_lines
        .iter()
        .find(|l| l["target"] == "fdbomb")
        .expect("fdbomb line");
    assert_eq!(fd["errno"], libc::EMFILE as i64, "{fd}");
    let opened = fd["opened"].as_u64().unwrap_or(0);
    let soft = fd["rlimit_nofile"][0].as_u64().unwrap_or(0);
    assert!(
        opened > 0 && opened <= soft,
        "opened {opened} fds with RLIMIT_NOFILE {soft}: {fd}"
    );
    let fd_st = plugin_status(&admin, "h-fd");
    let fd_pid = fd_st["pid"].as_u64().expect("h-fd pid");
    let held = fs::read_dir(format!("/proc/{fd_pid}/fd"))
        .expect("fd dir")
        .count() as u64;
    assert!(held >= opened, "h-fd holds {held} fds, opened {opened}");
    eprintln!(
        "h-fd opened {opened} fds (RLIMIT_NOFILE {soft}); h-fork made {made} threads (pids.max {PIDS_MAX})"
    );

    // Contained: the bombs that do not die never restarted, and the agent is fine.
    for name in ["h-fork", "h-cpu", "h-fd"] {
        let st = plugin_status(&admin, name);
        assert_eq!(st["state"], "ready", "{name}: {st}");
        assert_eq!(st["restarts"], 0, "{name} was restarted: {st}");
    }
    assert!(agent.healthy(), "agent not healthy under the bombs");

    let slack = Duration::from_millis(5);
    assert!(
        busy_p99 < idle_p99 * 2 + slack,
        "/metrics p99 under bombs {:.2} ms ≥ 2 × idle p99 {:.2} ms + 5 ms",
        ms(busy_p99),
        ms(idle_p99)
    );

    stop_agent(&mut agent, Duration::from_secs(30));
    assert!(
        processes_of(&h).is_empty(),
        "hostile plugin processes left: {:?}",
        processes_of(&h)
    );
    for name in [
        "h-i386", "h-x32", "h-kill", "h-trap", "h-fork", "h-mem", "h-cpu", "h-fd",
    ] {
        assert!(
            plugin_cgroups(name).is_empty(),
            "cgroups of {name} left: {:?}",
            plugin_cgroups(name)
        );
    }
}

/// A plugin killed by seccomp before it is `ready` (during the handshake) is reported as a
/// seccomp kill too (SRD-P003, restart reason `seccomp`), not as a generic crash.
#[test]
fn seccomp_kill_during_the_handshake_is_reported_as_seccomp() {
    if !privileged("seccomp_kill_during_the_handshake_is_reported_as_seccomp") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let h = plugin_bin("srediag-hostile-plugin");
    let plugins = format!(
        r#"  h-i386-init:
    path: {h}
    type: processor
    config: {{final: i386, final_in_init: true}}
    restart: {{initial_backoff: 100ms, quarantine_after: 2}}
  h-kill-init:
    path: {h}
    type: processor
    config: {{final: denied, final_in_init: true}}
    sandbox: {{seccomp_action: kill}}
    restart: {{initial_backoff: 100ms, quarantine_after: 2}}"#,
        h = h.display(),
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    let mut wrong = Vec::new();
    for name in ["h-i386-init", "h-kill-init"] {
        let st = wait_state(&admin, name, &["quarantined"], Duration::from_secs(30));
        let seccomp = agent.counter(
            "srediag_plugin_restarts_total",
            &[("name", name), ("reason", "seccomp")],
        );
        let all = agent.counter("srediag_plugin_restarts_total", &[("name", name)]);
        let last = st["last_exit"].as_str().unwrap_or("").to_string();
        if !(last.starts_with("seccomp:") && last.contains("SRD-P003")) || seccomp != all {
            wrong.push(format!(
                "{name}: last_exit {last:?}, restarts_total {all} of which reason=seccomp {seccomp}"
            ));
        }
    }
    let log = agent.stderr();
    let ended: Vec<&str> = log.lines().filter(|l| l.contains("plugin ended")).collect();
    stop_agent(&mut agent, Duration::from_secs(30));
    assert!(
        wrong.is_empty(),
        "seccomp kills before `ready` misreported:\n  {}\nagent log:\n  {}",
        wrong.join("\n  "),
        ended.join("\n  ")
    );
}
