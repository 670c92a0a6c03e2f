//! Privileged tests of the eBPF observers (`agent/src/bpf`, `ebpf/observers.bpf.c`): they load and
//! attach on this kernel, CPU time agrees with the kernel's own accounting (rusage, cgroup), every
//! seccomp violation is counted exactly with the right syscall and action, and nothing is left
//! in the kernel once `Observers` is dropped.
//!
//! They need root; without it they print why and pass, except under `CI=true`, where they fail.
//! They run one at a time (`SERIAL`): the cleanup check looks at every srediag program on the
//! host, and CPU measurements want a quiet machine.
//!
//! Workloads run in helper processes: this test binary re-executed with `SREDIAG_BPF_HELPER=<mode>`
//! running only [`helper_process`]. A helper prints `SREDIAG:ready` and waits for a line on stdin
//! before acting, so the test registers its pid first (modes prefixed `now:` do not wait).
//!
//! `agrees_with_bpftrace` cross-checks violations and CPU time with an independent tool (Debian's
//! `bpftrace`, classic tracepoints; it mounts tracefs for the test when it is not mounted).
//!
//! `sched_switch_overhead` is a measurement, not a check: `cargo test -p srediag-tests --test
//! bpf_observers -- --ignored --nocapture sched_switch_overhead`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use srediag::bpf::{Action, Observers, Options, PluginObservers, Violation};
use srediag_tests::poll_until;

/// Keeps the SDK's probe sites in this binary (nothing here calls them), so the `ipc_latency`
/// observer attaches to `/proc/self/exe` like in the agent.
#[used]
static PROBE_SITES: [extern "C" fn(u64, u64, u64); 2] = srediag::bpf::PROBE_SITES;

static SERIAL: Mutex<()> = Mutex::new(());

const HELPER_ENV: &str = "SREDIAG_BPF_HELPER";
const SYS_MKDIR: i64 = 83;

/// Whether the test can run here; prints why not (and fails under CI=true).
fn privileged(test: &str) -> bool {
    let euid = rustix::process::geteuid().as_raw();
    let reason = if euid != 0 {
        format!("not root (euid {euid})")
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        "no kernel BTF (/sys/kernel/btf/vmlinux)".to_owned()
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {reason} (CI=true requires a privileged run)");
    }
    println!("skipped {test}: {reason}");
    false
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runtime whose worker reads the ring buffer in the background.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// 3..=20, different on every call.
fn random_n() -> u32 {
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = t ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    3 + (x % 18) as u32
}

fn load(opts: Options) -> Observers {
    let obs = Observers::load(opts);
    for s in obs.status() {
        assert!(s.up, "observer {} is down: {:?}", s.name, s.reason);
    }
    obs
}

// ---- helper processes -------------------------------------------------------------------------

/// A helper process and the pipes to it. Killed and reaped on drop unless waited.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    reaped: bool,
}

impl Helper {
    fn spawn(mode: &str) -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        let mut h = Helper {
            child,
            stdin,
            stdout,
            reaped: false,
        };
        h.expect("ready");
        h
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value of the next `SREDIAG:<key>=<value>` (or `SREDIAG:<key>`) line.
    fn expect(&mut self, key: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "helper {} exited before printing {key}", self.pid());
            // libtest may print "test helper_process ... " on the same line first.
            if let Some(at) = line.find("SREDIAG:")
                && let Some(v) = line.trim_end()[at + "SREDIAG:".len()..].strip_prefix(key)
            {
                return v.trim_start_matches('=').to_owned();
            }
        }
    }

    fn go(&mut self) {
        // Let the helper block in its read first: a process registered while it is on a CPU is
        // charged only from its next switch-in (see agent/src/bpf/tracking.rs).
        std::thread::sleep(Duration::from_millis(50));
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }

    /// Reaps the helper: its status and the CPU time (user + system) of it and its waited-for
    /// descendants, from `wait4`.
    fn wait(mut self) -> (ExitStatus, Duration) {
        let mut status = 0;
        // SAFETY: rusage is plain old data; all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: our own child; `status` and `ru` are valid for writes.
        let rc = unsafe { libc::wait4(self.pid() as i32, &mut status, 0, &mut ru) };
        assert_eq!(
            rc,
            self.pid() as i32,
            "wait4: {}",
            std::io::Error::last_os_error()
        );
        self.reaped = true;
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        (
            ExitStatus::from_raw(status),
            tv(ru.ru_utime) + tv(ru.ru_stime),
        )
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ld arch; jeq x86_64 ? next : allow; ld nr; jeq nr ? action : allow`.
fn filter(nr: u32, action: u32) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const ALLOW: u32 = 0x7fff_0000;
    let i = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        i(LD_W_ABS, 0, 0, 4),
        i(JEQ_K, 0, 3, 0xC000_003E),
        i(LD_W_ABS, 0, 0, 0),
        i(JEQ_K, 0, 1, nr),
        i(RET_K, 0, 0, action),
        i(RET_K, 0, 0, ALLOW),
    ]
}

/// Installs a seccomp filter on the calling thread only.
fn install(prog: &[libc::sock_filter]) {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl/seccomp calls; `fprog` points to a live filter the kernel copies.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &raw const fprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

fn forbidden_call() -> i64 {
    // SAFETY: mkdir of a static NUL-terminated path; the filter refuses it anyway.
    unsafe { libc::syscall(SYS_MKDIR, c"/nonexistent-srediag-bpf-test".as_ptr(), 0o700) }
}

fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}

fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn burn(d: Duration) {
    let start = process_cpu();
    let mut x = 1u64;
    while process_cpu() - start < d {
        for _ in 0..20_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

extern "C" fn sigsys_returns_eperm(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // What an SDK SIGSYS handler does to turn TRAP into ERRNO: set the syscall's return value.
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    unsafe { (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = -i64::from(libc::EPERM) };
}

fn handle_sigsys() {
    // SAFETY: installing a handler with a valid sigaction struct.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = sigsys_returns_eperm as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()), 0);
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Not a test: the body of a helper process (see the module docs). Passes when not a helper.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (wait, mode) = match mode.strip_prefix("now:") {
        Some(m) => (false, m.to_owned()),
        None => (true, mode),
    };
    let out = |s: String| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "SREDIAG:{s}").unwrap();
        o.flush().unwrap();
    };
    if wait {
        out("ready".into());
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }
    let parts: Vec<&str> = mode.split(':').collect();
    let arg = |i: usize| {
        parts
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match parts[0] {
        "burn" => {
            out(format!("cpu_at_go={}", process_cpu().as_nanos()));
            burn(Duration::from_millis(arg(1)));
        }
        "burn_tree" => {
            out(format!("cpu_at_go={}", process_cpu().as_nanos()));
            let kids: Vec<Child> = (0..arg(1))
                .map(|_| {
                    Command::new(std::env::current_exe().unwrap())
                        .args([
                            "--exact",
                            "helper_process",
                            "--nocapture",
                            "--test-threads=1",
                        ])
                        .env(HELPER_ENV, format!("now:burn:{}", arg(2)))
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for mut k in kids {
                assert!(k.wait().unwrap().success());
            }
        }
        "trap" | "errno" => {
            // trap: SECCOMP_RET_TRAP + a SIGSYS handler returning EPERM (the SDK design);
            // errno: SECCOMP_RET_ERRNO(EPERM), for the cost comparison.
            no_core_dumps();
            let action = if parts[0] == "trap" {
                handle_sigsys();
                0x0003_0000
            } else {
                0x0005_0000 | libc::EPERM as u32
            };
            install(&filter(SYS_MKDIR as u32, action));
            let mut eperm = 0;
            let t0 = Instant::now();
            for _ in 0..arg(1) {
                if forbidden_call() == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
                {
                    eperm += 1;
                }
            }
            let per_call = t0.elapsed().as_nanos() / u128::from(arg(1).max(1));
            out(format!("ns_per_call={per_call}"));
            out(format!("eperm={eperm}"));
        }
        "trap_burn" => {
            // N handled traps, then burn CPU: the bpftrace cross-check workload.
            no_core_dumps();
            handle_sigsys();
            install(&filter(SYS_MKDIR as u32, 0x0003_0000));
            let mut eperm = 0;
            for _ in 0..arg(1) {
                if forbidden_call() == -1 {
                    eperm += 1;
                }
            }
            burn(Duration::from_millis(arg(2)));
            out(format!("eperm={eperm}"));
        }
        // B4 workloads (a process that is not a plugin): each prints `ns=<elapsed>`.
        "getppid" => {
            let t0 = Instant::now();
            for _ in 0..arg(1) {
                // SAFETY: getppid has no preconditions.
                std::hint::black_box(unsafe { libc::getppid() });
            }
            out(format!("ns={}", t0.elapsed().as_nanos()));
        }
        "pingpong" => {
            // Both threads on CPU 0: every round trip is two context switches on one CPU, not
            // a cross-CPU wake-up (whose latency varies by tens of µs on this VM).
            // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            let t = ping_pong(arg(1) as u32);
            out(format!("ns={}", t.as_nanos()));
        }
        "faults" => {
            // mmap, touch every page (a page fault and an rss_stat each), munmap: `arg(2)` rounds
            // of `arg(1)` MiB.
            let len = (arg(1) as usize) << 20;
            let t0 = Instant::now();
            for _ in 0..arg(2) {
                // SAFETY: anonymous private mapping, touched within its length, then unmapped.
                unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    assert_ne!(p, libc::MAP_FAILED);
                    for off in (0..len).step_by(4096) {
                        *p.cast::<u8>().add(off) = 1;
                    }
                    libc::munmap(p, len);
                }
            }
            out(format!("ns={}", t0.elapsed().as_nanos()));
        }
        "trap_die" => {
            no_core_dumps();
            install(&filter(SYS_MKDIR as u32, 0x0003_0000));
            forbidden_call();
            unreachable!("SIGSYS kills");
        }
        "kill" => {
            no_core_dumps();
            install(&filter(SYS_MKDIR as u32, 0x8000_0000));
            forbidden_call();
            unreachable!("KILL_PROCESS kills");
        }
        "kill_thread" => {
            no_core_dumps();
            let before = threads();
            for _ in 0..arg(1) {
                // The filter is installed on the new thread only; the thread dies, the process lives.
                let _detached = std::thread::spawn(|| {
                    install(&filter(SYS_MKDIR as u32, 0x0000_0000));
                    forbidden_call();
                });
                let t0 = Instant::now();
                while threads() > before && t0.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(threads(), before, "the killed thread did not go away");
            }
            out(format!("killed={}", arg(1)));
        }
        "fork_exec_trap" => {
            // A descendant (fork + exec) makes the violations.
            let status = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "helper_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER_ENV, format!("now:trap:{}", arg(1)))
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            out("done".into());
        }
        other => panic!("unknown helper mode {other}"),
    }
    std::process::exit(0);
}

// ---- tests -------------------------------------------------------------------------------------

#[test]
fn loads_and_attaches_every_observer() {
    let _s = serial();
    if !privileged("loads_and_attaches_every_observer") {
        return;
    }
    let rt = runtime();
    let _g = rt.enter();
    let t0 = Instant::now();
    let obs = load(Options::default());
    println!("loaded and attached in {:?}", t0.elapsed());
    for s in obs.status() {
        println!(
            "{}: up={} attach={:?} note={:?}",
            s.name, s.up, s.attach, s.reason
        );
    }
    let cpu = obs.status().into_iter().find(|s| s.name == "cpu").unwrap();
    assert_eq!(cpu.attach, vec!["tp_btf sched_switch"]);
    let mem = obs.map_memory();
    println!("map memory: {mem:?}");
    // 12 (with srediag_spawners and srediag_ev_budget), and the IPC observer's four.
    assert_eq!(mem.len(), 16, "every map reports its memory: {mem:?}");
    assert!(mem.iter().all(|(_, b)| *b > 0));
    drop(obs);

    let raw = load(Options {
        raw_tp_only: true,
        ..Options::default()
    });
    let cpu = raw.status().into_iter().find(|s| s.name == "cpu").unwrap();
    assert_eq!(cpu.attach, vec!["raw_tp sched_switch"]);
}

/// `|bpf - reference| <= 5%` of the reference.
fn assert_close(what: &str, bpf: Duration, reference: Duration) {
    let (b, r) = (bpf.as_secs_f64(), reference.as_secs_f64());
    let err = (b - r).abs() / r;
    println!(
        "{what}: bpf {b:.4}s, reference {r:.4}s, error {:.2}%",
        err * 100.0
    );
    assert!(
        err <= 0.05,
        "{what}: bpf {b:.4}s vs reference {r:.4}s ({:.2}% > 5%)",
        err * 100.0
    );
}

#[test]
fn cpu_time_matches_the_kernels_accounting() {
    let _s = serial();
    if !privileged("cpu_time_matches_the_kernels_accounting") {
        return;
    }
    let rt = runtime();
    let _g = rt.enter();
    for opts in [
        Options::default(),
        Options {
            raw_tp_only: true,
            ..Options::default()
        },
    ] {
        let obs = load(opts);
        // One process burning ~1 s.
        let id = obs.plugin_id("burner").unwrap();
        let mut h = Helper::spawn("burn:1000");
        obs.register(id, "burner", &[h.pid()]).unwrap();
        h.go();
        let at_go = Duration::from_nanos(h.expect("cpu_at_go").parse().unwrap());
        let (status, total) = h.wait();
        assert!(status.success());
        print_misses(&obs);
        assert_close(
            &format!("one process ({opts:?})"),
            obs.cpu_time(id).unwrap(),
            total - at_go,
        );

        // A process whose two children (fork + exec) burn 0.5 s each: only the parent is
        // registered, the children are followed through fork.
        let id = obs.plugin_id("tree").unwrap();
        let mut h = Helper::spawn("burn_tree:2:500");
        let pid = h.pid();
        obs.register(id, "tree", &[pid]).unwrap();
        h.go();
        let at_go = Duration::from_nanos(h.expect("cpu_at_go").parse().unwrap());
        let (status, total) = h.wait();
        assert!(status.success());
        // A child's last slice is charged at its final switch-out, which may follow the
        // parent's wakeup (exit_notify runs before the final schedule) by a moment; so does its
        // removal from the map. Wait for that before comparing.
        let t0 = Instant::now();
        while !obs.tracked_pids(id).is_empty() && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            obs.tracked_pids(id),
            Vec::<u32>::new(),
            "exited processes leave the map"
        );
        assert_close(
            &format!("process tree ({opts:?})"),
            obs.cpu_time(id).unwrap(),
            total - at_go,
        );
    }
}

#[test]
fn cpu_time_matches_the_cgroup() {
    use srediag::plugins::sandbox::cgroup::{self, Limits};
    let _s = serial();
    if !privileged("cpu_time_matches_the_cgroup") {
        return;
    }
    let layout = srediag::sys::cgroup::detect(&*srediag::sys::real_host()).unwrap();
    let driver =
        cgroup::driver(&layout, &format!("srediag-bpftest-{}", std::process::id())).unwrap();
    let cg = driver.create("burner", &Limits::default()).unwrap();
    let rt = runtime();
    let _g = rt.enter();
    let obs = load(Options::default());
    let id = obs.plugin_id("burner").unwrap();
    let mut h = Helper::spawn("burn:1000");
    for f in cg.procs_files() {
        std::fs::write(&f, h.pid().to_string()).unwrap();
    }
    let before = cg.cpu_usage_ns().unwrap();
    obs.register(id, "burner", &[h.pid()]).unwrap();
    h.go();
    let (status, _) = h.wait();
    assert!(status.success());
    let cgroup_ns = cg.cpu_usage_ns().unwrap() - before;
    let result = std::panic::catch_unwind(|| {
        assert_close(
            "cgroup",
            obs.cpu_time(id).unwrap(),
            Duration::from_nanos(cgroup_ns),
        );
    });
    let _ = cg.kill_all();
    let _ = cg.remove();
    let _ = driver.remove_root();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Waits (bounded) until `want` events of `plugin_id` arrived.
fn events_of(
    rx: &mut tokio::sync::broadcast::Receiver<Violation>,
    seen: &mut Vec<Violation>,
    plugin_id: u32,
    want: usize,
) -> Vec<Violation> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.iter().filter(|v| v.plugin_id == plugin_id).count() < want
        && Instant::now() < deadline
    {
        match rx.try_recv() {
            Ok(v) => seen.push(v),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("event stream: {e}"),
        }
    }
    seen.iter()
        .filter(|v| v.plugin_id == plugin_id)
        .cloned()
        .collect()
}

#[test]
fn seccomp_violations_are_counted_exactly() {
    let _s = serial();
    if !privileged("seccomp_violations_are_counted_exactly") {
        return;
    }
    // Both program variants: tp_btf, and the raw_tp fallback of older kernels (which finds a
    // KILL_THREAD's syscall number without the 5.11+/5.15+ helpers).
    for opts in [
        Options::default(),
        Options {
            raw_tp_only: true,
            ..Options::default()
        },
    ] {
        println!("-- {opts:?}");
        seccomp_exact(opts);
    }
}

fn seccomp_exact(opts: Options) {
    let rt = runtime();
    let _g = rt.enter();
    let obs = load(opts);
    let mut rx = obs.subscribe();
    let mut seen = Vec::new();
    let mut expected: BTreeMap<(u32, String, Action), u64> = BTreeMap::new();

    // TRAP with a SIGSYS handler that returns EPERM: the process lives on, N violations.
    let n = random_n();
    let id = obs.plugin_id("trap-handled").unwrap();
    let mut h = Helper::spawn(&format!("trap:{n}"));
    let helper_pid = h.pid();
    obs.register(id, "trap-handled", &[helper_pid]).unwrap();
    h.go();
    h.expect("ns_per_call");
    assert_eq!(
        h.expect("eperm"),
        n.to_string(),
        "every trapped call returned EPERM"
    );
    assert!(h.wait().0.success());
    expected.insert((id, "mkdir".into(), Action::Trap), n.into());
    let ev = events_of(&mut rx, &mut seen, id, n as usize);
    assert_eq!(ev.len(), n as usize, "one event per violation: {ev:?}");
    for v in &ev {
        assert_eq!(
            (
                v.pid,
                v.syscall_nr,
                v.syscall.as_str(),
                v.action,
                v.source,
                v.arch
            ),
            (helper_pid, 83, "mkdir", Action::Trap, "signal", "x86_64")
        );
    }

    // TRAP without a handler, KILL_PROCESS: each violation kills its process.
    for (name, mode, action) in [
        ("trap-default", "trap_die", Action::Trap),
        ("kill", "kill", Action::Kill),
    ] {
        let n = random_n();
        let id = obs.plugin_id(name).unwrap();
        for _ in 0..n {
            let mut h = Helper::spawn(mode);
            obs.register(id, name, &[h.pid()]).unwrap();
            h.go();
            let (status, _) = h.wait();
            assert_eq!(status.signal(), Some(libc::SIGSYS), "{name}: {status:?}");
        }
        expected.insert((id, "mkdir".into(), action), n.into());
        assert_eq!(
            events_of(&mut rx, &mut seen, id, n as usize).len(),
            n as usize,
            "{name} events"
        );
    }

    // KILL_THREAD in a multi-threaded process: no signal, only the thread's exit.
    let n = random_n();
    let id = obs.plugin_id("kill-thread").unwrap();
    let mut h = Helper::spawn(&format!("kill_thread:{n}"));
    obs.register(id, "kill-thread", &[h.pid()]).unwrap();
    h.go();
    assert_eq!(h.expect("killed"), n.to_string());
    assert!(h.wait().0.success());
    expected.insert((id, "mkdir".into(), Action::KillThread), n.into());
    let ev = events_of(&mut rx, &mut seen, id, n as usize);
    assert!(
        ev.iter()
            .all(|v| v.source == "exit" && v.syscall_nr == 83 && v.tid != v.pid),
        "{ev:?}"
    );

    // A descendant (fork + exec) of a registered process is attributed to the same plugin.
    let n = random_n();
    let id = obs.plugin_id("descendant").unwrap();
    let mut h = Helper::spawn(&format!("fork_exec_trap:{n}"));
    let helper_pid = h.pid();
    obs.register(id, "descendant", &[helper_pid]).unwrap();
    h.go();
    h.expect("done");
    assert!(h.wait().0.success());
    expected.insert((id, "mkdir".into(), Action::Trap), n.into());
    let ev = events_of(&mut rx, &mut seen, id, n as usize);
    assert!(
        ev.iter().all(|v| v.pid != helper_pid),
        "the grandchild made the calls: {ev:?}"
    );

    let got: BTreeMap<(u32, String, Action), u64> = obs
        .violations()
        .into_iter()
        .map(|v| ((v.plugin_id, v.syscall, v.action), v.count))
        .collect();
    println!("violations: {got:?}");
    assert_eq!(got, expected);
    assert!(
        obs.dropped().iter().all(|(_, n)| *n == 0),
        "{:?}",
        obs.dropped()
    );
    assert_eq!(
        seen.len() as u64,
        expected.values().sum::<u64>(),
        "no stray events"
    );
}

/// The kernel's event budget, exactly (one thread: no window races): a burst of violations
/// sends `budget` events and suppresses the rest, counted per plugin and in the dropped stats,
/// while every violation is counted; the first event of the next window says how many of the
/// plugin's events were suppressed before it.
#[test]
fn violation_events_beyond_the_budget_are_suppressed_and_counted() {
    let _s = serial();
    if !privileged("violation_events_beyond_the_budget_are_suppressed_and_counted") {
        return;
    }
    let rt = runtime();
    let _g = rt.enter();
    let budget = 5u32;
    let obs = load(Options {
        event_budget: budget,
        ..Options::default()
    });
    assert_eq!(obs.event_budget(), budget);
    let mut rx = obs.subscribe();
    let id = obs.plugin_id("burst").unwrap();
    let dropped = |obs: &Observers| {
        obs.dropped()
            .into_iter()
            .find(|(r, _)| *r == "event_budget")
            .map(|(_, n)| n)
            .expect("reason event_budget")
    };
    // Two bursts, the second in the next window; each far below a window's length (~6 us per
    // violation).
    let mut sent = Vec::new();
    let mut violations = 0u64;
    for burst in 0..2 {
        let n = u64::from(budget) * 10 + u64::from(random_n());
        let received = obs.events_received();
        let mut h = Helper::spawn(&format!("trap:{n}"));
        obs.register(id, "burst", &[h.pid()]).unwrap();
        h.go();
        h.expect("ns_per_call");
        assert_eq!(h.expect("eperm"), n.to_string());
        assert!(h.wait().0.success());
        violations += n;
        let suppressed_total = violations - u64::from(budget) * (burst + 1);
        poll_until(Duration::from_secs(5), "the burst's events read", || {
            (obs.events_received() == received + u64::from(budget)).then_some(())
        });
        let mut events = Vec::new();
        while let Ok(v) = rx.try_recv() {
            events.push(v);
        }
        println!(
            "burst {burst}: {n} violations, {} events, suppressed {:?}",
            events.len(),
            obs.events_suppressed(id)
        );
        assert_eq!(events.len(), budget as usize, "{events:?}");
        assert!(events.iter().all(|v| v.plugin_id == id));
        assert_eq!(obs.events_suppressed(id), Some(suppressed_total));
        assert_eq!(dropped(&obs), suppressed_total);
        let total: u64 = obs
            .violations()
            .iter()
            .filter(|v| v.plugin_id == id)
            .map(|v| v.count)
            .sum();
        assert_eq!(total, violations, "every violation counted");
        // What was suppressed before each event: nothing in the first window; in the second,
        // the first burst's suppressed events, on its first event.
        let before: Vec<u64> = events.iter().map(|v| v.suppressed_before).collect();
        let mut want = vec![0; budget as usize];
        if burst == 1 {
            want[0] = suppressed_total - (n - u64::from(budget));
        }
        assert_eq!(before, want);
        sent.push(n);
        // The budget is per window of time: the next burst starts after this one's window.
        std::thread::sleep(srediag::bpf::abi::EVENT_WINDOW);
    }
    assert_eq!(
        obs.plugin_stats("burst").map(|s| s.events_suppressed),
        Some(violations - 2 * u64::from(budget))
    );
    assert!(
        obs.dropped()
            .iter()
            .all(|(r, n)| *r == "event_budget" || *n == 0),
        "{:?}",
        obs.dropped()
    );
}

/// Program runs the kernel skipped (recursion protection), which would lose switches.
fn print_misses(obs: &Observers) {
    let ids = obs.program_ids();
    for p in bpftool_json("prog").as_array().into_iter().flatten() {
        if ids.contains(&(p["id"].as_u64().unwrap_or(0) as u32))
            && p["recursion_misses"].as_u64().unwrap_or(0) > 0
        {
            println!("{}: {} recursion misses", p["name"], p["recursion_misses"]);
        }
    }
}

fn bpftool_json(what: &str) -> serde_json::Value {
    let out = Command::new("bpftool")
        .args(["-j", what, "show"])
        .output()
        .expect("bpftool (Debian: apt install bpftool)");
    assert!(
        out.status.success(),
        "bpftool {what} show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(id, name)` of every program or map whose name starts with `srediag_` (the probe's
/// short-lived `srediag_probe` aside).
fn srediag_objects(what: &str) -> Vec<(u64, String)> {
    bpftool_json(what)
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| Some((o["id"].as_u64()?, o["name"].as_str()?.to_owned())))
        .filter(|(_, n)| n.starts_with("srediag_") && n != "srediag_probe")
        .collect()
}

#[test]
fn nothing_is_left_after_drop() {
    let _s = serial();
    if !privileged("nothing_is_left_after_drop") {
        return;
    }
    let rt = runtime();
    let _g = rt.enter();
    let obs = load(Options::default());
    let ids = obs.program_ids();
    assert_eq!(
        ids.len(),
        8,
        "one program per hook and the two IPC uprobe programs: {ids:?}"
    );
    let progs = srediag_objects("prog");
    assert!(
        ids.iter()
            .all(|id| progs.iter().any(|(p, _)| *p == u64::from(*id))),
        "{progs:?}"
    );
    assert!(srediag_objects("map").len() >= 10);
    drop(obs);
    // Programs go at once; maps once the programs' RCU grace period has passed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (progs, maps) = (srediag_objects("prog"), srediag_objects("map"));
        if progs.is_empty() && maps.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after drop: programs {progs:?}, maps {maps:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two sets of observers side by side, reached only through the hooks the agent hands its
/// plugin manager (`Arc<dyn PluginObservers>`): each tracks and charges only the plugin it was
/// told about (one armed before the clone, one registered after the spawn), and dropping the
/// last clone of one frees its programs while the other keeps running. With the process-wide
/// instance this replaced, a second set replaced the first and every hook reached the last one
/// loaded.
#[test]
fn observers_run_side_by_side_and_free_on_drop() {
    let _s = serial();
    if !privileged("observers_run_side_by_side_and_free_on_drop") {
        return;
    }
    let rt = runtime();
    let _g = rt.enter();
    let a: std::sync::Arc<dyn PluginObservers> = std::sync::Arc::new(load(Options::default()));
    let b: std::sync::Arc<dyn PluginObservers> = std::sync::Arc::new(load(Options::default()));
    // A's plugin is tracked from its clone (this thread armed), B's once "spawned".
    let armed = a.before_clone("p");
    assert!(armed.is_some(), "A could not arm this thread");
    let mut ha = Helper::spawn("burn:300");
    drop(armed);
    let mut hb = Helper::spawn("burn:300");
    b.plugin_started("p", hb.pid(), &Vec::new);
    let (oa, ob) = (a.bpf().unwrap(), b.bpf().unwrap());
    let (ida, idb) = (oa.plugin_id("p").unwrap(), ob.plugin_id("p").unwrap());
    assert_eq!(oa.tracked_pids(ida), [ha.pid()]);
    assert_eq!(ob.tracked_pids(idb), [hb.pid()]);
    ha.go();
    hb.go();
    let at_go_a = Duration::from_nanos(ha.expect("cpu_at_go").parse().unwrap());
    let at_go_b = Duration::from_nanos(hb.expect("cpu_at_go").parse().unwrap());
    let (sa, total_a) = ha.wait();
    let (sb, total_b) = hb.wait();
    assert!(sa.success() && sb.success());
    assert_close(
        "A's plugin, in A",
        oa.cpu_time(ida).unwrap(),
        total_a - at_go_a,
    );
    assert_close(
        "B's plugin, in B",
        ob.cpu_time(idb).unwrap(),
        total_b - at_go_b,
    );

    let (a_ids, b_ids) = (oa.program_ids(), ob.program_ids());
    assert!(
        a_ids.iter().all(|id| !b_ids.contains(id)),
        "{a_ids:?} {b_ids:?}"
    );
    drop(a);
    poll_until(Duration::from_secs(5), "A's programs to go", || {
        let progs: Vec<u64> = srediag_objects("prog")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        a_ids
            .iter()
            .all(|id| !progs.contains(&u64::from(*id)))
            .then_some(())
    });
    let progs: Vec<u64> = srediag_objects("prog")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        b_ids.iter().all(|id| progs.contains(&u64::from(*id))),
        "B's programs went with A's: {b_ids:?} {progs:?}"
    );
    // B still tracks what it is told.
    let hc = Helper::spawn("burn:0");
    b.plugin_started("q", hc.pid(), &Vec::new);
    let idq = ob.plugin_id("q").unwrap();
    assert_eq!(ob.tracked_pids(idq), [hc.pid()]);
}

/// Two threads ping-ponging one byte over two pipes: `round_trips` context-switch pairs.
fn ping_pong(round_trips: u32) -> Duration {
    let mut a = [0i32; 2];
    let mut b = [0i32; 2];
    // SAFETY: pipe() writes two fds into each valid array.
    unsafe {
        assert_eq!(libc::pipe(a.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(b.as_mut_ptr()), 0);
    }
    let (a_r, a_w, b_r, b_w) = (a[0], a[1], b[0], b[1]);
    let start = Instant::now();
    let echo = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        for _ in 0..round_trips {
            // SAFETY: valid fds and a 1-byte buffer.
            unsafe {
                libc::read(a_r, byte.as_mut_ptr().cast(), 1);
                libc::write(b_w, byte.as_ptr().cast(), 1);
            }
        }
    });
    let mut byte = [7u8; 1];
    for _ in 0..round_trips {
        // SAFETY: valid fds and a 1-byte buffer.
        unsafe {
            libc::write(a_w, byte.as_ptr().cast(), 1);
            libc::read(b_r, byte.as_mut_ptr().cast(), 1);
        }
    }
    echo.join().unwrap();
    let took = start.elapsed();
    for fd in [a_r, a_w, b_r, b_w] {
        // SAFETY: closing fds this function opened.
        unsafe { libc::close(fd) };
    }
    took
}

fn switches() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// The host tax of the sched_switch program on a process that is not a plugin.
#[test]
#[ignore = "a measurement (~1 min): run with --ignored --nocapture"]
fn sched_switch_overhead() {
    let _s = serial();
    if !privileged("sched_switch_overhead") {
        return;
    }
    const ROUND_TRIPS: u32 = 200_000;
    let rt = runtime();
    let _g = rt.enter();
    ping_pong(20_000); // warm-up
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..9 {
        let t = ping_pong(ROUND_TRIPS);
        off.push(t);
        let obs = load(Options::default());
        let c0 = switches();
        let t_on = ping_pong(ROUND_TRIPS);
        let n = switches() - c0;
        on.push(t_on);
        drop(obs);
        println!(
            "round {round}: detached {:.3}s, attached {:.3}s ({n} context switches host-wide)",
            t.as_secs_f64(),
            t_on.as_secs_f64()
        );
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (off_m, on_m) = (med(&mut off), med(&mut on));
    println!(
        "median: detached {:.3}s, attached {:.3}s, throughput ratio attached/detached {:.4}",
        off_m.as_secs_f64(),
        on_m.as_secs_f64(),
        off_m.as_secs_f64() / on_m.as_secs_f64()
    );

    // What a violation costs the plugin: ERRNO vs TRAP + a handler returning EPERM.
    for mode in ["errno", "trap"] {
        let mut h = Helper::spawn(&format!("{mode}:100000"));
        h.go();
        println!("{mode}: {} ns per refused call", h.expect("ns_per_call"));
        h.expect("eperm");
        assert!(h.wait().0.success());
    }

    // Per-run cost of the program itself (BPF run-time statistics, on only for this).
    let obs = load(Options::default());
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").unwrap();
    ping_pong(ROUND_TRIPS);
    let progs = bpftool_json("prog");
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").unwrap();
    for p in progs.as_array().unwrap() {
        let name = p["name"].as_str().unwrap_or("");
        if obs
            .program_ids()
            .contains(&(p["id"].as_u64().unwrap_or(0) as u32))
        {
            let (ns, cnt) = (
                p["run_time_ns"].as_u64().unwrap_or(0),
                p["run_cnt"].as_u64().unwrap_or(0),
            );
            if cnt > 0 {
                println!(
                    "{name}: {cnt} runs, {:.1} ns per run",
                    ns as f64 / cnt as f64
                );
            }
        }
    }
}

/// tracefs at /sys/kernel/tracing for bpftrace's classic tracepoints; unmounted on drop when this
/// test mounted it.
struct Tracefs {
    mounted_here: bool,
}

impl Tracefs {
    fn ensure() -> Result<Tracefs, String> {
        if std::path::Path::new("/sys/kernel/tracing/events/sched").exists() {
            return Ok(Tracefs {
                mounted_here: false,
            });
        }
        let st = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !st.success() {
            return Err(format!("mount -t tracefs failed: {st}"));
        }
        Ok(Tracefs { mounted_here: true })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = Command::new("umount").arg("/sys/kernel/tracing").status();
        }
    }
}

/// An independent count with Debian's bpftrace: the SIGSYS seccomp signals raised by process
/// `pid` (signal:signal_generate, sig 31, si_code SYS_SECCOMP; generated in the violating task)
/// and its on-CPU time (sched_switch: time since the previous switch on that CPU, at each
/// switch-out of one of its threads: wall time on the CPU, another method than srediag's
/// se.sum_exec_runtime). Both must agree: violations exactly, CPU within 5%.
#[test]
fn agrees_with_bpftrace() {
    let _s = serial();
    if !privileged("agrees_with_bpftrace") {
        return;
    }
    if Command::new("bpftrace").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "bpftrace missing (scripts/deps.txt, test group)"
        );
        println!("skipped agrees_with_bpftrace: bpftrace not installed (cargo xtask deps)");
        return;
    }
    let _tracefs = Tracefs::ensure().expect("tracefs for bpftrace");
    let rt = runtime();
    let _g = rt.enter();
    let obs = load(Options::default());
    let n = random_n() * 5;
    let id = obs.plugin_id("xcheck").unwrap();
    let mut h = Helper::spawn(&format!("trap_burn:{n}:800"));
    let pid = h.pid();
    obs.register(id, "xcheck", &[pid]).unwrap();
    let script = format!(
        r#"tracepoint:signal:signal_generate /args->sig == 31 && args->code == 1 && pid == {pid}/ {{ @viol = count(); }}
tracepoint:sched:sched_switch {{ if (pid == {pid} && @ts[cpu] > 0) {{ @cpu = sum(nsecs - @ts[cpu]); }} @ts[cpu] = nsecs; }}
END {{ clear(@ts); print(@viol); print(@cpu); clear(@viol); clear(@cpu); }}"#
    );
    let mut bt = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut bt_out = BufReader::new(bt.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            bt_out.read_line(&mut line).unwrap() > 0,
            "bpftrace exited before attaching"
        );
        if line.starts_with("Attaching") {
            break;
        }
    }
    h.go();
    assert_eq!(h.expect("eperm"), n.to_string());
    let (status, _) = h.wait();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut bt_out, &mut rest).unwrap();
    let _ = bt.wait();
    // `@viol: N` / `@cpu: NS` (a map never updated prints nothing: 0).
    let field = |k: &str| -> u64 {
        rest.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("bad {k} in bpftrace output: {rest}"))
            })
            .unwrap_or(0)
    };
    println!("bpftrace: {}", rest.trim());
    let bt_viol = field("@viol:");
    let bt_cpu = Duration::from_nanos(field("@cpu:"));
    let ours: u64 = obs
        .violations()
        .iter()
        .filter(|v| v.plugin_id == id)
        .map(|v| v.count)
        .sum();
    println!("violations: made {n}, srediag {ours}, bpftrace {bt_viol}");
    assert_eq!((ours, bt_viol), (u64::from(n), u64::from(n)));
    assert_close(
        "cpu vs bpftrace sched_switch",
        obs.cpu_time(id).unwrap(),
        bt_cpu,
    );
}

/// One B4 workload in a fresh helper process (not a plugin): its elapsed time.
fn workload(mode: &str) -> Duration {
    let mut h = Helper::spawn(mode);
    h.go();
    let ns: u64 = h.expect("ns").parse().unwrap();
    assert!(h.wait().0.success());
    Duration::from_nanos(ns)
}

/// B4 host tax (`cargo xtask bench bpf` runs this): workloads in processes that are not plugins,
/// with nothing attached, with srediag's observers attached (one idle process registered as a
/// plugin, so the maps are not empty), and with a minimal raw_tp on sys_enter (the reference: the
/// cheapest global syscall hook), alternated for `SREDIAG_B4_ROUNDS` (default 11) rounds, the
/// order rotated each round. Prints per-workload medians and throughput ratios
/// (detached / attached: 1.0 = no tax).
#[test]
#[ignore = "a benchmark (~1 min): cargo xtask bench bpf"]
fn host_tax_b4() {
    let _s = serial();
    if !privileged("host_tax_b4") {
        return;
    }
    let rounds: usize = std::env::var("SREDIAG_B4_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let workloads = [
        ("getppid x2M", "getppid:2000000"),
        ("pipe ping-pong x100k, 1 CPU", "pingpong:100000"),
        ("page faults 64MiB x6", "faults:64:6"),
    ];
    let states = ["detached", "observers", "raw_tp ref"];
    let rt = runtime();
    let _g = rt.enter();
    for (_, m) in workloads {
        workload(m); // warm-up
    }
    // times[state][workload] = one Duration per round
    let mut times = vec![vec![Vec::new(); workloads.len()]; states.len()];
    for round in 0..rounds {
        for k in 0..states.len() {
            let st = (round + k) % states.len();
            let mut idle = None;
            let mut obs = None;
            let mut reference = None;
            match st {
                1 => {
                    let o = load(Options::default());
                    let h = Helper::spawn("getppid:0"); // waits on stdin: an idle "plugin"
                    let id = o.plugin_id("b4-idle").unwrap();
                    o.register(id, "b4-idle", &[h.pid()]).unwrap();
                    idle = Some(h);
                    obs = Some(o);
                }
                2 => reference = Some(srediag::bpf::reference::Reference::attach().unwrap()),
                _ => {}
            }
            for (w, (_, m)) in workloads.iter().enumerate() {
                times[st][w].push(workload(m));
            }
            if let Some(r) = &reference {
                assert!(r.hits() > 2_000_000, "the reference saw the syscalls");
            }
            drop(reference);
            drop(obs);
            drop(idle);
        }
        print!("round {round}:");
        for (w, (name, _)) in workloads.iter().enumerate() {
            print!(" {name}:");
            for per_state in &times {
                print!(" {:.1}ms", per_state[w][round].as_secs_f64() * 1e3);
            }
        }
        println!();
    }
    let med = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nB4 host tax, {rounds} rounds alternated, load average at the end: {}",
        load_avg.trim()
    );
    println!("| workload | detached (median) | observers | ratio | raw_tp ref | ratio |");
    println!("|---|---|---|---|---|---|");
    for (w, (name, _)) in workloads.iter().enumerate() {
        let d = med(&times[0][w]);
        let o = med(&times[1][w]);
        let r = med(&times[2][w]);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.3} | {:.1} ms | {:.3} |",
            d.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3,
            d.as_secs_f64() / o.as_secs_f64(),
            r.as_secs_f64() * 1e3,
            d.as_secs_f64() / r.as_secs_f64()
        );
    }
}
