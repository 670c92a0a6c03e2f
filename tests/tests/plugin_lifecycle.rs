//! Plugin lifecycle against the real agent: fd hygiene over many spawns, `kill -9` of the agent,
//! crash loop → quarantine with backoff, hang detection, handshake refusals (type and protocol
//! version skew), graceful stop on SIGTERM.
//!
//! Privileged: the agent needs root to build the sandbox. Without root the tests print why they
//! skip, unless `CI=true`, where they never skip. The tests share host-global state (the `srediag`
//! cgroup root, `/run/srediag/plugins`; a starting agent removes what it takes for a previous
//! agent's leftovers), so they run one at a time.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use srediag_tests::*;

use srediag_tests::plugins::*;

/// `srediag plugin restart NAME --socket S`.
fn plugin_restart(admin: &Path, name: &str) {
    let out = srediag(
        &[
            "plugin",
            "restart",
            name,
            "--socket",
            &admin.display().to_string(),
        ],
        Duration::from_secs(15),
    );
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        0,
        "srediag plugin restart {name} failed:\n{}",
        out.stderr
    );
}

/// One request on the admin socket (one JSON line each way), for tight polling loops where
/// spawning the CLI each time would dominate the measurement.
fn admin_request(admin: &Path, req: &Value) -> Value {
    let mut s = std::os::unix::net::UnixStream::connect(admin)
        .unwrap_or_else(|e| panic!("connect {}: {e}", admin.display()));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut line = serde_json::to_vec(req).expect("json");
    line.push(b'\n');
    s.write_all(&line).expect("admin write");
    let mut resp = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut resp)
        .expect("admin read");
    let v: Value =
        serde_json::from_str(&resp).unwrap_or_else(|e| panic!("admin answer {resp:?}: {e}"));
    assert_eq!(v["ok"], true, "admin request {req} refused: {v}");
    v
}

fn fast_status(admin: &Path, name: &str) -> Value {
    let v = admin_request(admin, &json!({"cmd": "plugin_list"}));
    v["data"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("plugin {name} missing: {v}"))
}

/// `/proc/<pid>/status` as key → value.
fn proc_status(pid: u64) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

fn fd_count(pid: u64) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Checks that plugin process `pid` holds exactly stdin (/dev/null), stdout/stderr (pipes) and
/// the control socket (fd 3).
fn assert_plugin_fds(pid: u64, context: &str) {
    let fds = proc_fds(pid);
    let numbers: Vec<i32> = fds.keys().copied().collect();
    assert_eq!(
        numbers,
        [0, 1, 2, 3],
        "{context}: plugin pid {pid} fds {fds:?}"
    );
    assert_eq!(fds[&0], "/dev/null", "{context}: {fds:?}");
    // stdin is readable (EOF), like `Stdio::null()`: O_RDONLY in the access-mode bits.
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/0")).unwrap_or_default();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(u32::MAX);
    assert_eq!(
        flags & libc::O_ACCMODE as u32,
        libc::O_RDONLY as u32,
        "{context}: stdin flags {info}"
    );
    assert!(
        fds[&1].starts_with("pipe:") && fds[&2].starts_with("pipe:"),
        "{context}: {fds:?}"
    );
    assert!(
        fds[&3].starts_with("socket:"),
        "{context}: fd 3 must be the control socket: {fds:?}"
    );
}

/// Every live process: (pid, exe, cgroup file).
fn all_processes() -> Vec<(u32, Option<PathBuf>, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let exe = fs::read_link(e.path().join("exe")).ok();
        let cgroup = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        out.push((pid, exe, cgroup));
    }
    out
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Live (not zombie) processes running one of `exes` (or a plugin's sealed memfd) or living in a
/// cgroup of the agent's
/// (`/srediag/...`). Zombies are left out: a plugin whose sandbox helper died with it is
/// reparented to the host's init, which reaps it when it gets to it (the VM's init here is slow
/// at that); a zombie runs nothing and holds no resource but its pid.
fn leftovers(exes: &[&Path]) -> Vec<String> {
    all_processes()
        .into_iter()
        .filter(|(pid, exe, cg)| {
            // Plugins run from a sealed memfd: their exe is `/memfd:srediag-plugin:… (deleted)`.
            (exe.as_deref().is_some_and(|e| {
                exes.contains(&e) || e.to_string_lossy().starts_with("/memfd:srediag-plugin:")
            }) || cg.lines().any(|l| {
                l.split(':')
                    .nth(2)
                    .is_some_and(|p| p.starts_with("/srediag/"))
            })) && !matches!(proc_state(*pid), Some('Z' | 'X') | None)
        })
        .map(|(pid, exe, cg)| {
            format!(
                "pid {pid} state {:?} exe {exe:?} cgroups {}",
                proc_state(pid),
                cg.replace('\n', " ")
            )
        })
        .collect()
}

/// Zombies in a cgroup of the agent's (`/srediag/...`), with their parent.
fn zombies_in_srediag_cgroups() -> Vec<String> {
    all_processes()
        .into_iter()
        .filter(|(pid, _, cg)| {
            cg.lines().any(|l| {
                l.split(':')
                    .nth(2)
                    .is_some_and(|p| p.starts_with("/srediag/"))
            }) && matches!(proc_state(*pid), Some('Z' | 'X'))
        })
        .map(|(pid, _, cg)| {
            let ppid = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s[s.rfind(')')? + 2..]
                        .split_whitespace()
                        .nth(1)
                        .map(str::to_string)
                });
            format!(
                "pid {pid} ppid {ppid:?} {}",
                cg.lines().last().unwrap_or("")
            )
        })
        .collect()
}

/// Child processes of `pid` that are zombies.
fn zombie_children(pid: u64) -> Vec<u32> {
    all_processes()
        .into_iter()
        .filter_map(|(p, _, _)| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut f = rest.split_whitespace();
            let state = f.next()?;
            let ppid: u64 = f.next()?.parse().ok()?;
            (ppid == pid && state == "Z").then_some(p)
        })
        .collect()
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

/// Seconds since the epoch of a log line's leading RFC 3339 timestamp
/// (`2026-11-25T19:50:44.946095Z`).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// The agent's log lines about plugin `name` that contain `needle`.
fn log_lines<'a>(log: &'a str, name: &str, needle: &str) -> Vec<&'a str> {
    let tag = format!("plugin={name} ");
    let tag_end = format!("plugin={name}");
    log.lines()
        .filter(|l| l.contains(needle) && (l.contains(&tag) || l.ends_with(&tag_end)))
        .collect()
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// ---------------------------------------------------------------------------------------------

/// Restarts one plugin over and over (`srediag plugin restart`): every incarnation holds exactly
/// its 4 fds, the agent's fd count does not grow, no zombie, helper or cgroup accumulates.
///
/// Target 1,000 spawns (`SREDIAG_PLUGIN_SPAWNS` overrides), within a 3-minute budget: when the
/// budget runs out first the test stops there and says how many it did (at least 200 required).
#[test]
fn fds_stay_clean_over_many_spawns() {
    if !privileged("fds_stay_clean_over_many_spawns") {
        return;
    }
    let _serial = serial();
    let target: usize = std::env::var("SREDIAG_PLUGIN_SPAWNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let budget = Duration::from_secs(180);
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let plugins = format!(
        r#"  tp:
    path: {tp}
    type: processor
    config: {{mode: serve}}
    shutdown_grace: 2s"#,
        tp = tp.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    let agent_pid = agent.pid() as u64;
    let first = wait_state(&admin, "tp", &["ready"], Duration::from_secs(20));
    assert_plugin_fds(first["pid"].as_u64().expect("pid"), "first start");
    // Its own network namespace (it did not ask for the network), kept across restarts.
    let netns = |pid: u64| fs::read_link(format!("/proc/{pid}/ns/net")).expect("ns/net");
    let first_netns = netns(first["pid"].as_u64().expect("pid"));
    assert_ne!(
        first_netns,
        netns(agent_pid),
        "the plugin runs in the host's netns"
    );

    // The plugin is the agent's direct child (no helper process in between).
    let children = |pid: u64| -> Vec<u64> {
        all_processes()
            .into_iter()
            .filter(|(p, _, _)| {
                fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| {
                        s[s.rfind(')')? + 2..]
                            .split_whitespace()
                            .nth(1)?
                            .parse::<u64>()
                            .ok()
                    })
                    == Some(pid)
            })
            .map(|(p, _, _)| p as u64)
            .collect()
    };

    let started = Instant::now();
    let mut prev_pid = first["pid"].as_u64();
    let mut times: Vec<f64> = Vec::new();
    let mut agent_fds: Vec<(usize, usize)> = Vec::new();
    let mut done = 0;
    while done < target && started.elapsed() < budget {
        let i = done + 1;
        let t = Instant::now();
        plugin_restart(&admin, "tp");
        let st = loop {
            let st = fast_status(&admin, "tp");
            if st["restarts"] == i
                && st["state"] == "ready"
                && st["pid"].is_u64()
                && st["pid"].as_u64() != prev_pid
            {
                break st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "restart {i} did not reach ready: {st}"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        times.push(t.elapsed().as_secs_f64() * 1e3);
        prev_pid = st["pid"].as_u64();
        done = i;
        if i % 50 == 0 || i == 10 {
            let pid = st["pid"].as_u64().expect("pid");
            assert_plugin_fds(pid, &format!("spawn {i}"));
            assert_eq!(
                netns(pid),
                first_netns,
                "spawn {i}: the plugin's netns is reused"
            );
            agent_fds.push((i, fd_count(agent_pid)));
            let z = zombie_children(agent_pid);
            assert!(
                z.is_empty(),
                "spawn {i}: zombie children of the agent: {z:?}"
            );
            assert_eq!(
                children(agent_pid),
                [pid],
                "spawn {i}: children of the agent = the plugin"
            );
            let scratch: Vec<_> = fs::read_dir(SCRATCH_ROOT)
                .expect("scratch root")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(scratch, ["tp"], "spawn {i}: scratch directories");
            assert!(
                !plugin_cgroups("tp").is_empty(),
                "spawn {i}: no cgroup for the running plugin"
            );
        }
    }
    let total = started.elapsed();
    let log = agent.stderr();
    let mut startups: Vec<f64> = log_lines(&log, "tp", "plugin ready")
        .iter()
        .filter_map(|l| {
            let v = l.split("startup=").nth(1)?.split_whitespace().next()?;
            if let Some(ms) = v.strip_suffix("ms") {
                ms.parse().ok()
            } else if let Some(us) = v.strip_suffix("µs") {
                us.parse::<f64>().ok().map(|u| u / 1e3)
            } else {
                v.strip_suffix('s')?.parse::<f64>().ok().map(|s| s * 1e3)
            }
        })
        .collect();
    let n = times.len();
    eprintln!(
        "{done} restarts in {:.1} s: restart→ready p50 {:.1} ms p90 {:.1} ms max {:.1} ms; agent's spawn→ready p50 {:.1} ms p90 {:.1} ms ({} samples); agent fds {agent_fds:?}",
        total.as_secs_f64(),
        percentile(&mut times, 0.5),
        percentile(&mut times, 0.9),
        times[n - 1],
        percentile(&mut startups, 0.5),
        percentile(&mut startups, 0.9),
        startups.len()
    );
    if done < target {
        eprintln!("NOTE: only {done} of {target} spawns fit the {budget:?} budget");
    }
    assert!(done >= 200.min(target), "only {done} spawns in {budget:?}");
    let (_, base) = agent_fds[0];
    let (_, last) = *agent_fds.last().expect("samples");
    assert!(
        last <= base + 2,
        "the agent's fd count grew from {base} (after 10 spawns) to {last} after {done}: {agent_fds:?}"
    );
    let max = agent_fds.iter().map(|(_, c)| *c).max().unwrap_or(0);
    assert!(
        max <= base + 4,
        "agent fd count peaked at {max} (base {base}): {agent_fds:?}"
    );
    assert_eq!(
        agent.counter(
            "srediag_plugin_restarts_total",
            &[("name", "tp"), ("reason", "requested")]
        ),
        done as f64
    );
    stop_agent(&mut agent, Duration::from_secs(30));
    assert!(
        plugin_cgroups("tp").is_empty(),
        "cgroups left: {:?}",
        plugin_cgroups("tp")
    );
}

/// `kill -9` of the agent: within 1 s no plugin process is left (not even a child a plugin forked
/// in the monitor-only seccomp mode); the cgroups stay until the next agent start, which removes
/// them and says so.
#[test]
fn agent_sigkill_leaves_no_plugin_process() {
    if !privileged("agent_sigkill_leaves_no_plugin_process") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let hostile = plugin_bin("srediag-hostile-plugin");
    // h-tree: seccomp `log` lets fork through, so it has a process tree: itself, 3 forked
    // children (which do not inherit the parent-death signal) and 5 extra threads.
    let plugins = format!(
        r#"  tp-a:
    path: {tp}
    type: processor
    config: {{mode: serve}}
  tp-b:
    path: {tp}
    type: processor
    config: {{mode: spin}}
    limits: {{cpu_max: 0.2}}
  h-tree:
    path: {hostile}
    type: processor
    sandbox: {{seccomp_action: log}}
    config: {{final: forkbomb, fork_rounds: 3, thread_max: 5}}"#,
        tp = tp.display(),
        hostile = hostile.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    for name in ["tp-a", "tp-b", "h-tree"] {
        wait_state(&admin, name, &["ready"], Duration::from_secs(20));
    }
    let tree = poll_until(
        Duration::from_secs(20),
        "h-tree's forks and threads",
        || {
            agent
                .stderr()
                .lines()
                .find(|l| l.contains("plugin=h-tree ") && l.contains("\"threadbomb\""))
                .map(str::to_string)
        },
    );
    let forks = poll_until(Duration::from_secs(5), "h-tree's forkbomb line", || {
        agent
            .stderr()
            .lines()
            .find(|l| l.contains("plugin=h-tree ") && l.contains("\"forkbomb\""))
            .map(str::to_string)
    });
    assert!(
        forks.contains("\"forks_ok\":3"),
        "h-tree did not fork under seccomp log: {forks}"
    );
    let exes = [tp.as_path(), hostile.as_path()];
    let before = leftovers(&exes);
    // tp-a, tp-b, h-tree and h-tree's 3 children (in the cgroups).
    assert!(
        before.len() >= 6,
        "expected ≥ 6 plugin-side processes before the kill: {before:#?}"
    );

    // SAFETY: kill(2) on the agent's pid, which the guard still owns (not reaped).
    assert_eq!(unsafe { libc::kill(agent.pid(), libc::SIGKILL) }, 0);
    let killed = Instant::now();
    agent.wait_exit(Duration::from_secs(5));
    let mut left = leftovers(&exes);
    while !left.is_empty() && killed.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
        left = leftovers(&exes);
    }
    let gone_after = killed.elapsed();
    let zombies = zombies_in_srediag_cgroups();
    if !zombies.is_empty() {
        eprintln!("zombies awaiting the host init after kill -9 (not counted): {zombies:?}");
    }
    assert!(
        left.is_empty(),
        "1 s after kill -9 of the agent, plugin processes remain:\n{}",
        left.join("\n")
    );
    eprintln!(
        "all {} plugin-side processes gone {:.0} ms after kill -9 ({tree})",
        before.len(),
        gone_after.as_secs_f64() * 1e3
    );

    // The killed agent could not clean up: its cgroups are still there (empty).
    let stale: Vec<&str> = ["tp-a", "tp-b", "h-tree"]
        .into_iter()
        .filter(|n| !plugin_cgroups(n).is_empty())
        .collect();
    eprintln!("stale plugin cgroups after kill -9: {stale:?}");

    // The next agent (other plugins, same admin socket path) removes them and says so.
    let dir2 = TempDir::new().expect("tempdir");
    let tel2 = free_port();
    let plugins2 = format!(
        r#"  tp-next:
    path: {tp}
    type: processor
    config: {{mode: serve}}"#,
        tp = tp.display()
    );
    let mut agent2 = start_agent(
        dir2.path(),
        &agent_config(&admin, tel2, &plugins2),
        tel2,
        &admin,
    );
    wait_state(&admin, "tp-next", &["ready"], Duration::from_secs(20));
    let log = agent2.stderr();
    for name in &stale {
        assert!(
            plugin_cgroups(name).is_empty(),
            "stale cgroup of {name} not removed: {:?}",
            plugin_cgroups(name)
        );
        assert!(
            log.lines().any(|l| l.contains("left by a previous agent")
                && l.contains("cgroups")
                && l.contains(&format!("\"{name}\""))),
            "the next agent did not say it removed the cgroup of {name}:\n{log}"
        );
    }
    for name in ["tp-a", "tp-b", "h-tree"] {
        assert!(
            !Path::new(SCRATCH_ROOT).join(name).exists(),
            "scratch directory of {name} left"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("removing scratch directory left by a previous agent")),
        "the next agent did not say it removed stale scratch directories:\n{log}"
    );
    stop_agent(&mut agent2, Duration::from_secs(30));
}

/// After `kill -9` of an agent with plugins, the next agent start cleans the stale cgroups and
/// scratch directories even when its configuration has no plugin any more.
#[test]
fn next_agent_without_plugins_still_cleans_stale_cgroups() {
    if !privileged("next_agent_without_plugins_still_cleans_stale_cgroups") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let plugins = format!(
        r#"  tp-orphan:
    path: {tp}
    type: processor
    config: {{mode: serve}}"#,
        tp = tp.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    wait_state(&admin, "tp-orphan", &["ready"], Duration::from_secs(20));
    // SAFETY: kill(2) on the agent's pid, which the guard still owns (not reaped).
    assert_eq!(unsafe { libc::kill(agent.pid(), libc::SIGKILL) }, 0);
    agent.wait_exit(Duration::from_secs(5));
    poll_until(
        Duration::from_secs(1),
        "the plugin to die with the agent",
        || leftovers(&[tp.as_path()]).is_empty().then_some(()),
    );
    let stale = plugin_cgroups("tp-orphan");
    assert!(
        !stale.is_empty(),
        "expected the killed agent's cgroups to remain until the next start"
    );

    // The next agent runs without plugins.
    let dir2 = TempDir::new().expect("tempdir");
    let tel2 = free_port();
    let config = format!(
        r#"receivers:
  hostmetrics:
    collection_interval: 60s
exporters:
  debug: {{}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel2}
  pipelines:
    metrics:
      receivers: [hostmetrics]
      exporters: [debug]
"#
    );
    let mut agent2 = Agent::start_in_default_run_dir(dir2.path(), &config, tel2);
    let left = plugin_cgroups("tp-orphan");
    let scratch = Path::new(SCRATCH_ROOT).join("tp-orphan");
    let scratch_left = scratch.exists();
    stop_agent(&mut agent2, Duration::from_secs(30));
    // Clean up for the next tests whatever the outcome (an agent with a plugin does it).
    if !left.is_empty() || scratch_left {
        let dir3 = TempDir::new().expect("tempdir");
        let tel3 = free_port();
        let admin3 = dir3.path().join("admin.sock");
        let plugins3 = format!(
            r#"  tp-cleaner:
    path: {tp}
    type: processor
    config: {{mode: serve}}"#,
            tp = tp.display()
        );
        let mut agent3 = start_agent(
            dir3.path(),
            &agent_config(&admin3, tel3, &plugins3),
            tel3,
            &admin3,
        );
        stop_agent(&mut agent3, Duration::from_secs(30));
    }
    assert!(
        left.is_empty() && !scratch_left,
        "an agent started without plugins left the previous agent's stale plugin cgroups {left:?} \
         (scratch directory left: {scratch_left}) and said nothing"
    );
}

/// A plugin that crashes 200 ms after each start: restarted after 100 ms, then 200 ms (±20%
/// jitter), quarantined at the 3rd crash within the 30 s window, not restarted any more; `srediag
/// plugin restart` takes it out of quarantine.
#[test]
fn crash_loop_reaches_quarantine_with_backoff() {
    if !privileged("crash_loop_reaches_quarantine_with_backoff") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let plugins = format!(
        r#"  tp-crash:
    path: {tp}
    type: processor
    config: {{mode: crash, after_ms: 200}}
    restart: {{initial_backoff: 100ms, max_backoff: 10s, quarantine_after: 3, window: 30s}}"#,
        tp = tp.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    let st = wait_state(
        &admin,
        "tp-crash",
        &["quarantined"],
        Duration::from_secs(20),
    );
    assert_eq!(
        st["restarts"], 2,
        "3 crashes = 2 restarts before quarantine: {st}"
    );
    assert!(
        st["error"].as_str().unwrap_or("").contains("SRD-P007"),
        "{st}"
    );
    assert!(st["pid"].is_null(), "{st}");
    // Quarantined means no more starts.
    std::thread::sleep(Duration::from_secs(1));
    let log = agent.stderr();
    let starts: Vec<f64> = log_lines(&log, "tp-crash", "test plugin starting")
        .iter()
        .filter_map(|l| log_time(l))
        .collect();
    let ends: Vec<f64> = log_lines(&log, "tp-crash", "plugin ended")
        .iter()
        .filter_map(|l| log_time(l))
        .collect();
    let waits: Vec<f64> = log_lines(&log, "tp-crash", "restarting after backoff")
        .iter()
        .filter_map(|l| {
            let v = l.split("wait=").nth(1)?.split_whitespace().next()?;
            v.strip_suffix("ms")
                .and_then(|m| m.parse().ok())
                .or_else(|| v.strip_suffix('s')?.parse::<f64>().ok().map(|s| s * 1e3))
        })
        .collect();
    assert_eq!(starts.len(), 3, "3 starts before quarantine:\n{log}");
    assert_eq!(ends.len(), 3, "3 crashes:\n{log}");
    assert_eq!(waits.len(), 2, "2 backoffs:\n{log}");
    let mut report = Vec::new();
    for n in 0..2 {
        let nominal = 100.0 * f64::from(1u32 << n);
        let actual = (starts[n + 1] - ends[n]) * 1e3;
        report.push(format!(
            "backoff {}: nominal {nominal} ms, logged {:.1} ms, crash→next start {actual:.1} ms",
            n + 1,
            waits[n]
        ));
        assert!(
            (0.8 * nominal..=1.2 * nominal).contains(&waits[n]),
            "logged backoff {} = {} ms outside {nominal} ms ± 20%",
            n + 1,
            waits[n]
        );
        assert!(
            actual >= 0.8 * nominal,
            "restart {} came {actual:.1} ms after the crash, before the backoff floor {} ms",
            n + 1,
            0.8 * nominal
        );
        assert!(
            actual <= 1.2 * nominal + 500.0,
            "restart {} came {actual:.1} ms after the crash (nominal {nominal} ms)",
            n + 1
        );
    }
    assert!(waits[1] > waits[0], "backoff did not grow: {waits:?}");
    eprintln!("{}", report.join("; "));
    let crash_reason: f64 = ["signal", "crash"]
        .iter()
        .map(|r| {
            agent.counter(
                "srediag_plugin_restarts_total",
                &[("name", "tp-crash"), ("reason", r)],
            )
        })
        .sum();
    assert_eq!(crash_reason, 2.0, "restarts_total for the 2 crash restarts");

    // Out of quarantine on request: starts again (and crashes again).
    plugin_restart(&admin, "tp-crash");
    poll_until(
        Duration::from_secs(10),
        "a start after `plugin restart`",
        || {
            (log_lines(&agent.stderr(), "tp-crash", "test plugin starting").len() == 4)
                .then_some(())
        },
    );
    assert_eq!(
        agent.counter(
            "srediag_plugin_restarts_total",
            &[("name", "tp-crash"), ("reason", "requested")]
        ),
        1.0
    );
    let st = wait_state(
        &admin,
        "tp-crash",
        &["quarantined"],
        Duration::from_secs(20),
    );
    assert_eq!(
        st["restarts"], 5,
        "3 more crashes (2 more restarts) after leaving quarantine: {st}"
    );
    stop_agent(&mut agent, Duration::from_secs(30));
}

/// A plugin that stops answering heartbeats (interval 200 ms, timeout 1 s) is killed and
/// restarted with reason `hang` (SRD-P006): one that stays alive but silent (hostile `hang`), and
/// one frozen by SIGSTOP from the host.
#[test]
fn hung_plugins_are_detected() {
    if !privileged("hung_plugins_are_detected") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let hostile = plugin_bin("srediag-hostile-plugin");
    let plugins = format!(
        r#"  h-silent:
    path: {hostile}
    type: processor
    config: {{final: hang, delay_ms: 300}}
    heartbeat: {{interval: 200ms, timeout: 1s}}
    restart: {{initial_backoff: 5s}}
  tp-stopped:
    path: {tp}
    type: processor
    config: {{mode: serve}}
    heartbeat: {{interval: 200ms, timeout: 1s}}
    restart: {{initial_backoff: 5s}}"#,
        tp = tp.display(),
        hostile = hostile.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    let st = wait_state(&admin, "tp-stopped", &["ready"], Duration::from_secs(20));
    let pid = st["pid"].as_u64().expect("pid");
    wait_state(&admin, "h-silent", &["ready"], Duration::from_secs(20));
    // SAFETY: kill(2) with SIGSTOP on the plugin's host pid (signals from the host namespace
    // reach a namespace's init).
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
    let stopped_at = Instant::now();
    for name in ["h-silent", "tp-stopped"] {
        poll_until(
            Duration::from_secs(10),
            &format!("a hang restart of {name}"),
            || {
                (agent.counter(
                    "srediag_plugin_restarts_total",
                    &[("name", name), ("reason", "hang")],
                ) >= 1.0
                    || plugin_status(&admin, name)["last_exit"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("hang:")))
                .then_some(())
            },
        );
        let st = plugin_status(&admin, name);
        let last = st["last_exit"].as_str().unwrap_or("");
        assert!(
            last.starts_with("hang:") && last.contains("SRD-P006"),
            "{name}: {st}"
        );
    }
    let detected = stopped_at.elapsed();
    assert!(
        detected < Duration::from_secs(4),
        "SIGSTOPped plugin detected after {detected:?} (timeout 1 s)"
    );
    let log = agent.stderr();
    let silent_hang = log_lines(&log, "h-silent", "plugin ended")
        .first()
        .and_then(|l| log_time(l));
    let silent_start = log_lines(&log, "h-silent", "plugin ready")
        .first()
        .and_then(|l| log_time(l));
    if let (Some(s), Some(e)) = (silent_start, silent_hang) {
        eprintln!(
            "h-silent: ready → hang detected {:.2} s (goes silent 0.3 s after ready, timeout 1 s); SIGSTOP → detected ≤ {detected:?}",
            e - s
        );
        assert!(
            e - s < 3.0,
            "silent plugin detected {:.2} s after ready",
            e - s
        );
    }
    assert!(
        proc_status(pid).is_none_or(|s| !s.get("State").is_some_and(|v| v.starts_with('T'))),
        "the SIGSTOPped plugin {pid} still exists, stopped"
    );
    stop_agent(&mut agent, Duration::from_secs(30));
}

/// The handshake refuses a plugin whose type differs from its configuration and one that speaks
/// another protocol version, with SRD-P002 naming both sides, does not run it and does not retry
/// (`rejected` at once: a restart cannot make it compatible).
#[test]
fn handshake_refuses_type_and_version_skew() {
    if !privileged("handshake_refuses_type_and_version_skew") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let hostile = plugin_bin("srediag-hostile-plugin");
    let plugins = format!(
        r#"  tp-type:
    path: {tp}
    type: receiver
    config: {{mode: serve}}
    restart: {{initial_backoff: 100ms, quarantine_after: 2}}
  h-skew:
    path: {hostile}
    type: processor
    args: ["--protocol-version", "999"]
    restart: {{initial_backoff: 100ms, quarantine_after: 2}}
  h-schema:
    path: {hostile}
    type: processor
    args: ["--schema-version", "7"]
    restart: {{initial_backoff: 100ms, quarantine_after: 2}}"#,
        tp = tp.display(),
        hostile = hostile.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    for (name, needles) in [
        (
            "tp-type",
            vec!["SRD-P002", "type mismatch", "receiver", "processor"],
        ),
        (
            "h-skew",
            vec!["SRD-P002", "protocol version", "999", "speaks 1 to 2"],
        ),
        (
            "h-schema",
            vec![
                "SRD-P002",
                "wire schema mismatch",
                "data schema 7",
                "this agent uses 1",
            ],
        ),
    ] {
        // An incompatible plugin stays incompatible: refused at once, never restarted.
        let st = wait_state(&admin, name, &["rejected"], Duration::from_secs(20));
        let last = st["last_exit"].as_str().unwrap_or("");
        for n in &needles {
            assert!(last.contains(n), "{name}: last_exit lacks {n:?}: {st}");
        }
        assert_eq!(st["restarts"], 0, "{name} was restarted: {st}");
        assert!(
            st["pid"].is_null() && st["version"] == "",
            "{name} must never have run: {st}"
        );
        assert!(
            agent.counter(
                "srediag_plugin_load_total",
                &[("name", name), ("status", "rejected_compat")]
            ) >= 1.0,
            "{name}: load_total{{status=rejected_compat}}"
        );
        assert_eq!(
            agent.counter(
                "srediag_plugin_load_total",
                &[("name", name), ("status", "loaded")]
            ),
            0.0,
            "{name}"
        );
    }
    // The plugin side may hear why before the agent kills it (not guaranteed: the agent kills
    // the cgroup right after the refusal), so this is reported, not asserted.
    let log = agent.stderr();
    let told = log_lines(&log, "tp-type", "rejected by the agent: SRD-P002").len();
    let reply = log_lines(&log, "h-skew", "HOSTILE ")
        .into_iter()
        .find(|l| l.contains("\"handshake\""));
    eprintln!("plugin side: tp-type printed the refusal {told} times; h-skew's reply: {reply:?}");
    if let Some(r) = reply {
        assert!(
            r.contains("\"reject\"") && r.contains("SRD-P002") && r.contains("999"),
            "{r}"
        );
    }
    stop_agent(&mut agent, Duration::from_secs(30));
}

/// SIGTERM of the agent: plugins get `shutdown` and exit (one that ignores it is killed after its
/// grace period), the agent exits 0, and no process, cgroup, scratch directory or socket is left.
#[test]
fn sigterm_stops_plugins_and_leaves_nothing() {
    if !privileged("sigterm_stops_plugins_and_leaves_nothing") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let tp = plugin_bin("srediag-test-plugin");
    let plugins = format!(
        r#"  tp-nice:
    path: {tp}
    type: processor
    config: {{mode: serve}}
    shutdown_grace: 5s
  tp-stubborn:
    path: {tp}
    type: processor
    config: {{mode: ignore_shutdown}}
    shutdown_grace: 1s"#,
        tp = tp.display()
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    for name in ["tp-nice", "tp-stubborn"] {
        wait_state(&admin, name, &["ready"], Duration::from_secs(20));
    }
    let t = Instant::now();
    stop_agent(&mut agent, Duration::from_secs(20));
    let took = t.elapsed();
    let log = agent.stderr();
    assert!(
        log_lines(&log, "tp-stubborn", "plugin ignored shutdown").len() == 1,
        "tp-stubborn should be killed after its grace:\n{log}"
    );
    assert!(
        log_lines(&log, "tp-nice", "plugin ignored shutdown").is_empty(),
        "tp-nice ignored shutdown?\n{log}"
    );
    for name in ["tp-nice", "tp-stubborn"] {
        assert_eq!(
            log_lines(&log, name, "plugin stopped").len(),
            1,
            "{name} not reported stopped:\n{log}"
        );
        assert!(
            log_lines(&log, name, "plugin ended").is_empty(),
            "{name} crashed while stopping:\n{log}"
        );
    }
    assert!(
        took < Duration::from_secs(5),
        "stopping took {took:?} (grace 1 s for the stubborn plugin)"
    );
    let left = leftovers(&[tp.as_path()]);
    assert!(
        left.is_empty(),
        "plugin processes after the agent exited:\n{}",
        left.join("\n")
    );
    let mut leftover_paths: Vec<PathBuf> = Vec::new();
    for name in ["tp-nice", "tp-stubborn"] {
        leftover_paths.extend(plugin_cgroups(name));
        let scratch = Path::new(SCRATCH_ROOT).join(name);
        if scratch.exists() {
            leftover_paths.push(scratch);
        }
    }
    if admin.exists() {
        leftover_paths.push(admin.clone());
    }
    assert!(
        leftover_paths.is_empty(),
        "left after a clean stop: {leftover_paths:?}"
    );
    let roots: Vec<PathBuf> = cgroup_roots("srediag");
    assert!(
        roots.is_empty() && !log.contains("cannot remove the srediag cgroup directories"),
        "the agent's cgroup roots survived a clean stop: {roots:?}\n{}",
        log.lines()
            .filter(|l| l.contains("cgroup"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
