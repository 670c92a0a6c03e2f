//! Privileged tests on the real cgroupfs: limits enforced by the kernel, tree kill, stale cleanup,
//! timings. They need root; without it they print why and pass, except under `CI=true`, where
//! they fail. Each test uses its own root (`srediag-test-<pid>-<test>`) and a [`Guard`] that kills
//! and removes everything under it even when an assertion fails. They run one at a time (CPU and
//! timing assertions on 2 vCPUs).

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::test_join::{join_raw, open_procs_fds};
use super::*;

static SERIAL: Mutex<()> = Mutex::new(());

/// The real layout, or `None` (with the reason printed) when the test cannot run here.
fn privileged(test: &str) -> Option<CgroupLayout> {
    let euid = rustix::process::geteuid().as_raw();
    let layout = srediag_sys::cgroup::detect(&*srediag_sys::real_host()).ok();
    let reason = if euid != 0 {
        format!("not root (euid {euid})")
    } else if layout.as_ref().is_none_or(|l| {
        l.home_of("memory").is_none() || l.home_of("cpu").is_none() || l.home_of("pids").is_none()
    }) {
        "the memory, cpu and pids controllers are not all mounted".to_owned()
    } else {
        return layout;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {reason} (CI=true requires a privileged run)");
    }
    println!("skipped {test}: {reason}");
    None
}

/// Kills and removes every cgroup under the test's root, and the root, when dropped.
struct Guard {
    driver: Box<dyn CgroupDriver>,
}

impl Guard {
    fn new(layout: &CgroupLayout, test: &str) -> Guard {
        let root = format!("srediag-test-{}-{test}", std::process::id());
        Guard {
            driver: driver(layout, &root).unwrap(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.driver.cleanup_stale() {
            eprintln!("guard: {e}");
        }
        if let Err(e) = self.driver.remove_root() {
            eprintln!("guard: {e}");
        }
    }
}

/// Spawns `cmd` inside `cg`: fds opened here, joined with raw writes in the child before exec.
fn spawn_in(cg: &dyn PluginCgroup, cmd: &mut Command) -> Child {
    let fds = open_procs_fds(cg).unwrap();
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure only calls join_raw (write(2) on inherited fds) and builds an
    // io::Error from an errno, neither of which allocates: async-signal-safe after fork.
    unsafe {
        cmd.pre_exec(move || join_raw(&raw).map_err(std::io::Error::from_raw_os_error));
    }
    let child = cmd.spawn().unwrap();
    drop(fds);
    child
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("child {} still running after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the cgroup has at least `n` members, returns them.
fn wait_members(cg: &dyn PluginCgroup, n: usize) -> Vec<u32> {
    let t = Instant::now();
    loop {
        let pids = cg.pids();
        if pids.len() >= n {
            return pids;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "only {pids:?} joined, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// True when `/proc/<pid>` is gone or a zombie (waits up to 2 s for init to reap orphans).
fn dead(pid: u32) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.trim().chars().next());
                if matches!(state, Some('Z' | 'X')) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

fn limits() -> Limits {
    Limits {
        memory_max: Some(64 << 20),
        pids_max: Some(8),
        cpu_max: Some((20_000, 100_000)),
        ..Limits::default()
    }
}

#[test]
fn memory_hog_is_oom_killed_inside_its_cgroup() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = privileged("memory_hog_is_oom_killed_inside_its_cgroup") else {
        return;
    };
    let guard = Guard::new(&layout, "oom");
    let cg = guard.driver.create("hog", &limits()).unwrap();
    assert_eq!(cg.oom_kills(), Some(0));
    let t = Instant::now();
    // bytes * n fills every page: 256 MiB of touched anonymous memory.
    let mut child = spawn_in(
        &*cg,
        &mut sh("exec python3 -c 'b = b\"x\" * (256 << 20); print(len(b))'"),
    );
    let status = wait(&mut child, Duration::from_secs(60));
    let oom = cg.oom_kills().unwrap();
    println!(
        "oom: status {status:?} after {:?}, oom_kill {oom}, memory.current {:?}",
        t.elapsed(),
        cg.memory_current()
    );
    assert!(oom >= 1, "oom_kill counter is {oom}, status {status:?}");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    cg.kill_all().unwrap();
    cg.remove().unwrap();
}

#[test]
fn pids_max_refuses_forks_beyond_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = privileged("pids_max_refuses_forks_beyond_the_limit") else {
        return;
    };
    let guard = Guard::new(&layout, "pids");
    let cg = guard.driver.create("forker", &limits()).unwrap();
    let mut cmd = sh("i=0; while [ $i -lt 20 ]; do sleep 5 & i=$((i+1)); done; wait");
    cmd.stderr(Stdio::piped());
    let mut child = spawn_in(&*cg, &mut cmd);
    let mut max_seen = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        max_seen = max_seen.max(cg.pids().len());
        std::thread::sleep(Duration::from_millis(2));
    }
    let pids_dir = cg
        .procs_files()
        .into_iter()
        .find(|p| p.starts_with(&layout.home_of("pids").unwrap().mount_point))
        .unwrap();
    let events = std::fs::read_to_string(pids_dir.with_file_name("pids.events")).unwrap();
    let refused = fs::keyed(&events, "max").unwrap();
    cg.kill_all().unwrap();
    wait(&mut child, Duration::from_secs(5));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    println!("pids: max members seen {max_seen}, refused forks {refused}, sh said {stderr:?}");
    assert!(max_seen <= 8, "{max_seen} members with pids.max 8");
    assert!(max_seen >= 2, "the shell never forked ({max_seen})");
    assert!(
        refused >= 1,
        "pids.events max = {refused}: no fork was refused"
    );
    cg.remove().unwrap();
}

#[test]
fn cpu_max_caps_a_busy_loop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = privileged("cpu_max_caps_a_busy_loop") else {
        return;
    };
    let guard = Guard::new(&layout, "cpu");
    let cg = guard.driver.create("spin", &limits()).unwrap();
    let t = Instant::now();
    let mut child = spawn_in(
        &*cg,
        &mut sh(
            "exec python3 -c 'import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5: pass'",
        ),
    );
    let status = wait(&mut child, Duration::from_secs(30));
    let wall = t.elapsed();
    assert!(status.success(), "{status:?}");
    let used = cg.cpu_usage_ns().unwrap();
    let ratio = used as f64 / wall.as_nanos() as f64;
    println!(
        "cpu: {:.3} s of CPU in {:.3} s wall = {ratio:.3} (cap 0.2)",
        used as f64 / 1e9,
        wall.as_secs_f64()
    );
    assert!(ratio < 0.4 && ratio > 0.05, "ratio {ratio}");
    cg.remove().unwrap();
}

/// Kills a daemonising tree and a fork loop in a cgroup of `layout`'s driver; returns the
/// tree's kill time.
fn kill_tree_and_fork_loop(layout: &CgroupLayout, test: &str) -> Duration {
    let guard = Guard::new(layout, test);
    let cg = guard.driver.create("tree", &Limits::default()).unwrap();
    // 9 processes: sh, sleep, sh (sleep, setsid sleep, double-forked sleep, sleep),
    // setsid sh (sleep, exec'ed sleep).
    let mut child = spawn_in(
        &*cg,
        &mut sh("sleep 60 & \
             sh -c 'sleep 60 & setsid sleep 60 & (sleep 60 &); sleep 60' & \
             setsid sh -c 'sleep 60 & exec sleep 60' & \
             wait"),
    );
    let members = wait_members(&*cg, 9);
    assert!(cg.is_populated());
    let t = Instant::now();
    cg.kill_all().unwrap();
    let took = t.elapsed();
    assert_eq!(cg.pids(), Vec::<u32>::new());
    assert!(!cg.is_populated());
    let status = wait(&mut child, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for pid in &members {
        assert!(dead(*pid), "pid {pid} survived");
    }
    cg.remove().unwrap();
    for f in cg.procs_files() {
        assert!(!f.parent().unwrap().exists(), "{}", f.display());
    }

    // A loop that forks as fast as it can (bounded by pids.max) while being killed.
    let cg = guard
        .driver
        .create(
            "forker",
            &Limits {
                pids_max: Some(64),
                ..Limits::default()
            },
        )
        .unwrap();
    let mut cmd = sh("while :; do sleep 60 & done");
    cmd.stderr(Stdio::null());
    let mut child = spawn_in(&*cg, &mut cmd);
    wait_members(&*cg, 20);
    cg.kill_all().unwrap();
    assert_eq!(cg.pids(), Vec::<u32>::new());
    wait(&mut child, Duration::from_secs(5));
    cg.remove().unwrap();
    println!("{test}: killed {} processes in {took:?}", members.len());
    took
}

#[test]
fn kill_all_kills_a_daemonising_tree() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = privileged("kill_all_kills_a_daemonising_tree") else {
        return;
    };
    kill_tree_and_fork_loop(&layout, "tree");
}

/// The same without a cgroup2 hierarchy (as on a pure v1 host): no `cgroup.kill`, so the v1
/// freezer and pidfd `SIGKILL` rounds do the work.
#[test]
fn kill_all_without_cgroup2_freezes_and_signals() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut layout) = privileged("kill_all_without_cgroup2_freezes_and_signals") else {
        return;
    };
    if layout.v2.is_some() && layout.v1.iter().all(|h| h.controllers.is_empty()) {
        println!("skipped: pure v2 host, there is no v1 hierarchy to fall back to");
        return;
    }
    layout.v2 = None;
    kill_tree_and_fork_loop(&layout, "treev1");
}

#[test]
fn cleanup_stale_kills_and_removes_a_leftover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = privileged("cleanup_stale_kills_and_removes_a_leftover") else {
        return;
    };
    let guard = Guard::new(&layout, "stale");
    let root = format!("srediag-test-{}-stale", std::process::id());
    let mut child = {
        // An earlier agent: creates a cgroup, starts a plugin, and dies without cleaning up.
        let earlier = driver(&layout, &root).unwrap();
        let cg = earlier.create("leftover", &limits()).unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let child = spawn_in(&*cg, &mut cmd);
        wait_members(&*cg, 1);
        child
    };
    let pid = child.id();
    let cleaned = guard.driver.cleanup_stale().unwrap();
    assert_eq!(cleaned, ["leftover"]);
    let status = wait(&mut child, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(dead(pid));
    let probe = FsDriver::new(&layout, &root, std::sync::Arc::new(RealFs::new())).unwrap();
    for dir in probe.root_dirs() {
        assert!(!dir.join("leftover").exists(), "{}", dir.display());
    }
    assert!(guard.driver.cleanup_stale().unwrap().is_empty());
}

fn stats(label: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "{label}: min {:.0} µs, p50 {:.0} µs, p90 {:.0} µs, max {:.0} µs",
        us(v[0]),
        us(v[v.len() / 2]),
        us(v[v.len() * 9 / 10]),
        us(v[v.len() - 1])
    )
}

/// Not a timed assertion: prints create+limits, kill_all of a 10-process tree and remove times.
#[test]
fn measure_create_kill_remove() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = privileged("measure_create_kill_remove") else {
        return;
    };
    let guard = Guard::new(&layout, "bench");
    let full = Limits {
        memory_high: Some(48 << 20),
        cpu_weight: Some(100),
        pids_max: Some(64),
        ..limits()
    };
    let (mut create, mut kill, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    let mut hierarchies = 0;
    for i in 0..20 {
        let name = format!("b{i}");
        let t = Instant::now();
        let cg = guard.driver.create(&name, &full).unwrap();
        create.push(t.elapsed());
        hierarchies = cg.procs_files().len();
        let mut child = spawn_in(
            &*cg,
            &mut sh("for i in 1 2 3 4 5 6 7 8 9; do sleep 60 & done; wait"),
        );
        wait_members(&*cg, 10);
        let t = Instant::now();
        cg.kill_all().unwrap();
        kill.push(t.elapsed());
        wait(&mut child, Duration::from_secs(5));
        let t = Instant::now();
        cg.remove().unwrap();
        remove.push(t.elapsed());
    }
    println!(
        "cgroup timings over 20 runs, {} hierarchies ({:?}):\n  {}\n  {}\n  {}",
        hierarchies,
        layout.mode,
        stats("create + limits", create),
        stats("kill_all, 10-process tree", kill),
        stats("remove", remove)
    );
}
