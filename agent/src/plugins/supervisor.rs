//! One supervisor task per plugin: prepare the sandbox, spawn, handshake, watch (pidfd, control
//! socket, heartbeats, cgroup accounting), stop, restart with backoff, quarantine.

use super::config::PluginConfig;
use super::control::ControlChannel;
use super::metrics::PluginMetrics;
use super::sandbox::cgroup::{CgroupDriver, PluginCgroup};
use super::sandbox::landlock::LandlockSpec;
use super::sandbox::seccomp;
use super::sandbox::spawn::{self, Spawned};
use super::sandbox::spawner::{self, SpawnRequest};
use super::sandbox::spec::{SandboxSpec, ScratchLimits};
use serde::Serialize;
use srediag_plugin_sdk::control::{AgentMsg, PROTOCOL_VERSION, PluginMsg};
use srediag_plugin_sdk::wire::WIRE_SCHEMA_VERSION;
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// What the operator sees of a plugin (`srediag plugin list`). JSON field names are stable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginStatus {
    /// Plugin id from the configuration.
    pub name: String,
    /// Version from the handshake.
    pub version: String,
    /// Type from the configuration.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// starting, ready, degraded, stopping, stopped, failed or quarantined.
    pub state: String,
    /// Host pid of the plugin process (pid 1 of its namespace), when running.
    pub pid: Option<u32>,
    /// Unix time of the last start.
    pub started_at: Option<u64>,
    /// Seconds since the last start, while running.
    pub uptime_seconds: Option<u64>,
    /// Restarts since the agent started.
    pub restarts: u64,
    /// Memory charged to the plugin's cgroup.
    pub memory_bytes: Option<u64>,
    /// CPU used by the current incarnation's cgroup.
    pub cpu_seconds: Option<f64>,
    /// How the last incarnation ended.
    pub last_exit: Option<String>,
    /// The last error, with its code.
    pub error: Option<String>,
    /// Capabilities from the handshake.
    pub capabilities: Vec<String>,
    /// Start of the incarnation (verification, cgroup, scratch, spawn, sandbox, handshake) →
    /// ready, in milliseconds.
    pub last_startup_ms: Option<f64>,
    /// Restart request → ready of the last requested restart, in milliseconds.
    pub last_restart_ms: Option<f64>,
    /// Where the last start's time went, in milliseconds.
    pub last_startup_phases_ms: Option<StartupPhases>,
}

/// The phases of a start, in milliseconds (they add up to `last_startup_ms`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StartupPhases {
    /// Bundle verification, or the reuse of the last verified load.
    pub verify: f64,
    /// Creating the plugin's cgroup(s) and writing its limits.
    pub cgroup: f64,
    /// Creating the private scratch directory.
    pub scratch: f64,
    /// Seccomp filter, Landlock check, control socket and data-path rings.
    pub prepare: f64,
    /// The clone into the namespaces and the sandbox steps, up to the plugin's `execveat`.
    pub spawn: f64,
    /// The plugin's own start and the handshake, up to `ready`.
    pub handshake: f64,
}

/// Splits a start into [`StartupPhases`].
struct Laps {
    started: Instant,
    last: Instant,
    phases: StartupPhases,
}

impl Laps {
    fn new() -> Laps {
        let now = Instant::now();
        Laps {
            started: now,
            last: now,
            phases: StartupPhases::default(),
        }
    }

    /// Milliseconds since the previous lap.
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1e3;
        self.last = now;
        ms
    }
}

/// Requests to a supervisor.
pub enum Request {
    /// Stop (or leave quarantine) and start again now.
    Restart,
    /// Stop for good; answer when done.
    Stop(oneshot::Sender<()>),
}

/// How an incarnation ended.
#[derive(Debug)]
enum End {
    /// Asked to stop (agent shutdown); answered once the cgroup and scratch are gone.
    Stopped(Option<oneshot::Sender<()>>),
    /// Asked to restart (when the request came).
    Restart(Instant),
    /// Died or was killed: reason label and detail.
    Crashed(&'static str, String),
    /// Could not start (handshake refused): reason label and message. Counts as a crash.
    Failed(&'static str, String),
    /// Broke the data path's rules too often: quarantined at once, whatever the crash count.
    Quarantine(String),
    /// Not loaded: the bundle did not verify or the configuration widens the manifest. Nothing
    /// was spawned; no automatic retry (`srediag plugin restart` verifies again).
    Rejected(String),
}

/// Stable error codes (seed §9), printed with every plugin failure.
pub mod codes {
    /// Handshake version or type mismatch ("ABI mismatch").
    pub const ABI: &str = "SRD-P002";
    /// The plugin crashed or was killed.
    pub const CRASH: &str = "SRD-P005";
    /// The plugin stopped answering heartbeats.
    pub const HANG: &str = "SRD-P006";
    /// Out of memory inside its cgroup.
    pub const OOM: &str = "SRD-P004";
    /// Killed by its seccomp profile.
    pub const SECCOMP: &str = "SRD-P003";
    /// The sandbox could not be built.
    pub const SANDBOX: &str = "SRD-P008";
    /// Quarantined after repeated crashes.
    pub const QUARANTINE: &str = "SRD-P007";
    /// Malformed frames or impossible ring indices on the data path.
    pub const MALFORMED: &str = "SRD-P009";
}

/// A supervisor's fixed inputs.
pub struct Supervisor {
    /// Plugin id.
    pub name: String,
    /// Settings.
    pub cfg: PluginConfig,
    /// Shared status for the admin socket.
    pub status: Arc<Mutex<PluginStatus>>,
    /// Metrics.
    pub metrics: PluginMetrics,
    /// cgroup driver.
    pub cgroups: Arc<dyn CgroupDriver>,
    /// Parent of the scratch directories (`/run/srediag/plugins`).
    pub scratch_root: PathBuf,
    /// The shared-memory data path, when a pipeline uses this plugin.
    pub link: Option<Arc<crate::plugins::datapath::Link>>,
    /// Trust policy, host facts, rollback marks (shared by all supervisors).
    pub trust: Arc<super::loader::TrustContext>,
    /// The last successful load and the fingerprint of what it verified: a restart of an
    /// unchanged bundle reuses its sealed executable instead of copying and hashing it again.
    pub last_load: Mutex<Option<(Vec<u64>, Arc<super::loader::Loaded>)>>,
}

/// The cgroup limits of a plugin's settings (`memory.high` defaults to 80% of `memory.max`).
pub fn limits(l: &super::config::LimitsConfig) -> super::sandbox::cgroup::Limits {
    super::sandbox::cgroup::Limits {
        memory_max: Some(l.memory_max),
        memory_high: Some(l.memory_high.unwrap_or(l.memory_max / 10 * 8)),
        cpu_weight: Some(l.cpu_weight),
        cpu_max: (l.cpu_max > 0.0).then_some(((l.cpu_max * 100_000.0) as u64, 100_000)),
        pids_max: Some(l.pids_max),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// ±20% jitter around `d`, from a cheap clock-seeded generator (no RNG dependency needed).
fn jitter(d: Duration) -> Duration {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(n) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let f = 0.8 + (x % 4001) as f64 / 10_000.0;
    d.mul_f64(f)
}

/// Backoff before restart number `n` (1-based).
pub fn backoff(initial: Duration, max: Duration, n: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << n.saturating_sub(1).min(20));
    jitter(exp.min(max))
}

impl Supervisor {
    fn set(&self, f: impl FnOnce(&mut PluginStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// Counts a start that failed (`srediag_plugin_load_total{status="failed"}`).
    fn load_failed(&self) {
        self.metrics
            .load
            .with_label_values(&[&self.name, "failed"])
            .inc();
    }

    fn state(&self, state: &str) {
        self.metrics.set_state(&self.name, state);
        self.set(|s| s.state = state.to_string());
    }

    /// Runs until stopped.
    pub async fn run(self, mut requests: mpsc::Receiver<Request>) {
        let mut crashes: VecDeque<Instant> = VecDeque::new();
        let mut consecutive = 0u32;
        let mut restart_requested: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let end = self
                .incarnation(&mut requests, restart_requested.take())
                .await;
            let ran = started.elapsed();
            match end {
                End::Rejected(msg) => {
                    tracing::error!(plugin = %self.name, "{msg}");
                    self.set(|s| {
                        s.last_exit = Some(msg.clone());
                        s.pid = None;
                        s.uptime_seconds = None;
                    });
                    self.state("rejected");
                    match requests.recv().await {
                        Some(Request::Restart) => {
                            restart_requested = Some(Instant::now());
                            crashes.clear();
                            consecutive = 0;
                            continue;
                        }
                        Some(Request::Stop(done)) => {
                            self.state("stopped");
                            let _ = done.send(());
                            return;
                        }
                        None => return,
                    }
                }
                End::Stopped(done) => {
                    self.state("stopped");
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                End::Restart(at) => {
                    self.metrics
                        .restarts
                        .with_label_values(&[&self.name, "requested"])
                        .inc();
                    self.set(|s| s.restarts += 1);
                    consecutive = 0;
                    restart_requested = Some(at);
                    continue;
                }
                End::Quarantine(detail) => {
                    tracing::error!(plugin = %self.name, %detail, "plugin quarantined");
                    self.set(|s| {
                        s.last_exit = Some(format!("malformed: {detail}"));
                        s.pid = None;
                        s.uptime_seconds = None;
                        s.error = Some(format!("{}: {detail}", codes::MALFORMED));
                    });
                    self.metrics
                        .restarts
                        .with_label_values(&[&self.name, "malformed"])
                        .inc();
                    self.state("quarantined");
                    match requests.recv().await {
                        Some(Request::Restart) => {
                            if let Some(l) = &self.link {
                                l.clear_quarantine();
                            }
                            restart_requested = Some(Instant::now());
                            crashes.clear();
                            consecutive = 0;
                            self.set(|s| s.restarts += 1);
                            continue;
                        }
                        Some(Request::Stop(done)) => {
                            self.state("stopped");
                            let _ = done.send(());
                            return;
                        }
                        None => return,
                    }
                }
                End::Crashed(reason, detail) | End::Failed(reason, detail) => {
                    tracing::error!(plugin = %self.name, reason, %detail, "plugin ended");
                    self.set(|s| {
                        s.last_exit = Some(format!("{reason}: {detail}"));
                        s.pid = None;
                        s.uptime_seconds = None;
                    });
                    if ran > self.cfg.restart.window {
                        consecutive = 0;
                    }
                    consecutive += 1;
                    let now = Instant::now();
                    crashes.push_back(now);
                    while crashes
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > self.cfg.restart.window)
                    {
                        crashes.pop_front();
                    }
                    if crashes.len() as u32 >= self.cfg.restart.quarantine_after {
                        let msg = format!(
                            "{}: plugin {} quarantined after {} crashes within {:?}; fix it, then `srediag plugin restart {}`",
                            codes::QUARANTINE,
                            self.name,
                            crashes.len(),
                            self.cfg.restart.window,
                            self.name
                        );
                        tracing::error!(plugin = %self.name, "{msg}");
                        self.set(|s| s.error = Some(msg));
                        self.state("quarantined");
                        match requests.recv().await {
                            Some(Request::Restart) => {
                                restart_requested = Some(Instant::now());
                                crashes.clear();
                                consecutive = 0;
                                self.metrics
                                    .restarts
                                    .with_label_values(&[&self.name, "requested"])
                                    .inc();
                                self.set(|s| s.restarts += 1);
                                continue;
                            }
                            Some(Request::Stop(done)) => {
                                self.state("stopped");
                                let _ = done.send(());
                                return;
                            }
                            None => return,
                        }
                    }
                    self.state("failed");
                    let wait = backoff(
                        self.cfg.restart.initial_backoff,
                        self.cfg.restart.max_backoff,
                        consecutive,
                    );
                    tracing::info!(plugin = %self.name, reason, wait = ?wait, "restarting after backoff");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        r = requests.recv() => match r {
                            Some(Request::Stop(done)) => { self.state("stopped"); let _ = done.send(()); return; }
                            Some(Request::Restart) => {}
                            None => return,
                        }
                    }
                    self.metrics
                        .restarts
                        .with_label_values(&[&self.name, reason])
                        .inc();
                    self.set(|s| s.restarts += 1);
                }
            }
        }
    }

    fn spec(
        &self,
        cg: &dyn PluginCgroup,
        scratch: &Path,
        loaded: &super::loader::Loaded,
    ) -> Result<SandboxSpec, String> {
        let cfg = &self.cfg;
        let sb = &loaded.sandbox;
        let profile = sb.seccomp_profile.clone();
        // `errno` is compiled as TRAP|EPERM (the SDK's SIGSYS handler returns -EPERM and the
        // eBPF observer counts it); `kernel_errno` is the plain SECCOMP_RET_ERRNO.
        let (word, via_trap) = match sb.seccomp_action.as_str() {
            "kernel_errno" => ("errno", false),
            w => (w, true),
        };
        let action: seccomp::Action =
            serde_json::from_value(serde_json::Value::String(word.to_owned()))
                .map_err(|_| format!("unknown seccomp action {:?}", sb.seccomp_action))?;
        let filter = seccomp::compile(
            &profile,
            action,
            &seccomp::Options::with_network(!sb.network.is_empty()).errno_via_trap(via_trap),
        )
        .map_err(|e| format!("seccomp profile {profile}: {e}"))?;
        let mut read_exec: Vec<PathBuf> = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
            .iter()
            .map(PathBuf::from)
            .collect();
        read_exec.extend(sb.read_exec.iter().cloned());
        let mut read_only: Vec<PathBuf> = ["/etc/ld.so.cache", "/proc", "/dev/urandom"]
            .iter()
            .map(PathBuf::from)
            .collect();
        read_only.extend(sb.read_only.iter().cloned());
        let mut read_write = vec![scratch.to_path_buf(), PathBuf::from("/dev/null")];
        read_write.extend(sb.read_write.iter().cloned());
        Ok(SandboxSpec {
            plugin: self.name.clone(),
            program: loaded.program.clone(),
            args: cfg.args.clone(),
            env: cfg
                .env
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                .collect(),
            uid: cfg.uid(&self.name),
            gid: cfg.gid(&self.name),
            nofile: sb.limits.nofile,
            hostname: format!("srediag-{}", self.name),
            new_net: sb.network.is_empty(),
            cgroup_procs: cg.procs_files(),
            scratch_dir: scratch.to_path_buf(),
            scratch: ScratchLimits {
                bytes: sb.limits.scratch_bytes(),
                inodes: sb.limits.scratch_inodes,
            },
            landlock: LandlockSpec {
                read_exec,
                read_only,
                read_write,
                network: sb.network.clone(),
                allow_degraded: cfg.sandbox.allow_degraded,
            },
            seccomp: filter,
        })
    }

    fn make_scratch(&self) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.scratch_root)?;
        std::fs::set_permissions(&self.scratch_root, std::fs::Permissions::from_mode(0o711))?;
        let dir = self.scratch_root.join(&self.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        // Only the mount point of the plugin's own tmpfs (mounted in its mount namespace): it
        // stays empty and root's.
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }

    /// One start-to-end life of the plugin.
    async fn incarnation(
        &self,
        requests: &mut mpsc::Receiver<Request>,
        restart_requested: Option<Instant>,
    ) -> End {
        // Startup time counts everything: verification (or its cache), cgroup, scratch directory,
        // the clone and the sandbox steps, the plugin's exec and its handshake.
        let mut laps = Laps::new();
        self.state("starting");
        self.set(|s| {
            s.error = None;
            s.capabilities.clear();
        });
        let fail = |code: &str, what: String| {
            self.load_failed();
            self.set(|s| s.error = Some(format!("{code}: {what}")));
            End::Failed("start", format!("{code}: {what}"))
        };
        // Verify first: nothing is created or spawned for a plugin that does not verify. A restart
        // of a bundle whose files and policy are untouched since the last verification reuses
        // that load (its executable is a sealed memfd: the same verified bytes).
        let fingerprint = self.trust.fingerprint(&self.cfg);
        let cached = {
            let last = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
            match (&*last, &fingerprint) {
                (Some((fp, l)), Some(now)) if fp == now => Some(l.clone()),
                _ => None,
            }
        };
        let fresh = match cached {
            Some(l) => Ok(l),
            None => self
                .trust
                .load(&self.name, &self.cfg, &self.metrics)
                .map(|l| {
                    let l = Arc::new(l);
                    *self.last_load.lock().unwrap_or_else(|p| p.into_inner()) =
                        fingerprint.map(|fp| (fp, l.clone()));
                    l
                }),
        };
        let loaded = match fresh {
            Ok(l) => l,
            Err(e) => {
                self.metrics
                    .load
                    .with_label_values(&[&self.name, e.status])
                    .inc();
                let msg = e.to_string();
                self.set(|s| s.error = Some(msg.clone()));
                // Trust decisions stand until an operator acts (`plugin restart`); an I/O
                // failure (state file, memfd) is retried like any failed start.
                let transient = e.status == super::loader::status::FAILED
                    && e.code != super::loader::codes::WIDENS;
                if transient {
                    return End::Failed("start", msg);
                }
                return End::Rejected(msg);
            }
        };
        if let Some(m) = &loaded.manifest {
            let v = m.version.clone();
            self.set(|s| s.version = v);
        }
        laps.phases.verify = laps.lap();
        let cg = match self
            .cgroups
            .create(&self.name, &limits(&loaded.sandbox.limits))
        {
            Ok(c) => c,
            Err(e) => return fail(codes::SANDBOX, format!("cgroup: {e}")),
        };
        laps.phases.cgroup = laps.lap();
        let scratch = match self.make_scratch() {
            Ok(d) => d,
            Err(e) => {
                cleanup(&*cg, None);
                return fail(
                    codes::SANDBOX,
                    format!(
                        "scratch directory under {}: {e}",
                        self.scratch_root.display()
                    ),
                );
            }
        };
        let end = self
            .run_in(&*cg, &scratch, &loaded, requests, restart_requested, laps)
            .await;
        if let Some(l) = &self.link {
            // The process is gone: drain what it published, keep what it did not answer.
            tokio::task::block_in_place(|| l.detach());
        }
        // Killing the cgroup waits for its processes to exit (their scratch tmpfs is freed then,
        // by the kernel) and removing it retries: neither may hold an async worker.
        if let Err(e) = tokio::task::spawn_blocking(move || cleanup(&*cg, Some(&scratch))).await {
            tracing::warn!(plugin = %self.name, error = %e, "plugin cleanup task failed");
        }
        crate::bpf::plugin_stopped(&self.name);
        end
    }

    async fn run_in(
        &self,
        cg: &dyn PluginCgroup,
        scratch: &Path,
        loaded: &super::loader::Loaded,
        requests: &mut mpsc::Receiver<Request>,
        restart_requested: Option<Instant>,
        mut laps: Laps,
    ) -> End {
        laps.phases.scratch = laps.lap();
        let spec = match self.spec(cg, scratch, loaded) {
            Ok(s) => s,
            Err(e) => {
                self.load_failed();
                return End::Failed("start", format!("{}: {e}", codes::SANDBOX));
            }
        };
        match super::sandbox::landlock::enforcement(&spec.landlock) {
            Ok(super::sandbox::landlock::Enforcement::Full { .. }) => {}
            Ok(super::sandbox::landlock::Enforcement::Degraded(why)) => {
                self.metrics.degraded.with_label_values(&[&self.name]).inc();
                tracing::error!(plugin = %self.name, %why, "SANDBOX DEGRADED: Landlock cannot enforce every rule; running anyway because sandbox.allow_degraded is true");
            }
            Err(e) => {
                self.load_failed();
                return End::Failed("start", format!("{}: {e}", codes::SANDBOX));
            }
        }
        let (agent_end, plugin_end) = match spawn::control_pair() {
            Ok(p) => p,
            Err(e) => return End::Failed("start", format!("{}: socketpair: {e}", codes::SANDBOX)),
        };
        let prepared = match self.link.as_ref().map(|l| l.prepare()).transpose() {
            Ok(p) => p,
            Err(e) => {
                self.load_failed();
                return End::Failed("start", format!("{}: data path rings: {e}", codes::SANDBOX));
            }
        };
        let oom_before = cg.oom_kills().unwrap_or(0);
        let request = (|| -> std::io::Result<SpawnRequest> {
            Ok(SpawnRequest {
                spec,
                control: plugin_end,
                program: loaded.exe.fd().try_clone_to_owned()?,
                data: match &prepared {
                    Some(p) => Some((
                        p.to_plugin.memfd().try_clone_to_owned()?,
                        p.from_plugin.memfd().try_clone_to_owned()?,
                    )),
                    None => None,
                },
            })
        })();
        laps.phases.prepare = laps.lap();
        let spawned = match request {
            Ok(r) => spawner::spawn(r).await,
            Err(e) => Err(e),
        };
        let Spawned {
            process: mut child,
            stdout,
            stderr,
        } = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.load_failed();
                return End::Crashed(
                    "sandbox",
                    format!("{}: cannot start the plugin: {e}", codes::SANDBOX),
                );
            }
        };
        laps.phases.spawn = laps.lap();
        let spawned = Instant::now();
        crate::bpf::plugin_started(&self.name, child.id(), || cg.pids());
        self.set(|s| {
            s.started_at = Some(now_unix());
            s.pid = None;
        });
        tokio::spawn(forward_output(self.name.clone(), "stdout", stdout));
        tokio::spawn(forward_output(self.name.clone(), "stderr", stderr));
        let exited = match child.pidfd().and_then(|fd| {
            // SAFETY: the pidfd moves into the AsyncFd, which keeps it open for its lifetime.
            unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
        }) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = cg.kill_all();
                let _ = reap(&mut child).await;
                return End::Failed("start", format!("pidfd: {e}"));
            }
        };
        let ctl = match ControlChannel::new(agent_end) {
            Ok(c) => c,
            Err(e) => {
                let _ = cg.kill_all();
                let _ = reap(&mut child).await;
                return End::Failed("start", format!("control socket: {e}"));
            }
        };
        // Handshake.
        let hs = tokio::time::timeout(
            self.cfg.heartbeat.startup_timeout,
            self.handshake(&ctl, prepared.as_ref().map(|p| p.info)),
        );
        let hs = tokio::select! {
            r = hs => r,
            _ = exited.readable() => Ok(Err(End::Crashed("crash", "exited before the handshake finished".into()))),
        };
        match hs {
            Ok(Ok(())) => {}
            Ok(Err(end)) => {
                // Let the plugin finish dying on its own (e.g. SIGSYS) before the cgroup kill, so
                // its status says why.
                let _ = tokio::time::timeout(Duration::from_millis(500), exited.readable()).await;
                let _ = cg.kill_all();
                let status = reap(&mut child).await;
                return self.classify(end, status, cg, oom_before);
            }
            Err(_) => {
                let _ = cg.kill_all();
                let _ = reap(&mut child).await;
                self.load_failed();
                return End::Failed(
                    "start",
                    format!(
                        "{}: no ready within {:?}",
                        codes::HANG,
                        self.cfg.heartbeat.startup_timeout
                    ),
                );
            }
        }
        if let Some(p) = &prepared {
            let pid = child.id();
            // Before the data path starts, so the first sampled batch is seen.
            crate::bpf::ipc_started(
                &self.name,
                pid,
                p.info.to_plugin_ring,
                p.info.from_plugin_ring,
            );
        }
        if let (Some(link), Some(p)) = (&self.link, prepared)
            && let Err(e) = link.attach(p)
        {
            let _ = cg.kill_all();
            let _ = reap(&mut child).await;
            return End::Failed("start", format!("{}: data path: {e}", codes::SANDBOX));
        }
        if let Some(m) = &loaded.manifest {
            // The signed manifest's version is what operators see; the plugin's own claim in
            // the handshake is untrusted.
            let said = self
                .status
                .lock()
                .map(|s| s.version.clone())
                .unwrap_or_default();
            if said != m.version {
                tracing::warn!(plugin = %self.name, manifest = %m.version, handshake = %said, "plugin reports another version than its signed manifest");
            }
            let v = m.version.clone();
            self.set(|s| s.version = v);
        }
        self.metrics
            .load
            .with_label_values(&[&self.name, "loaded"])
            .inc();
        laps.phases.handshake = laps.lap();
        let startup = laps.started.elapsed();
        self.metrics
            .startup
            .with_label_values(&[&self.name])
            .observe(startup.as_secs_f64());
        let plugin_pid = Some(child.id());
        self.set(|s| {
            s.pid = plugin_pid;
            s.last_startup_ms = Some(startup.as_secs_f64() * 1e3);
            s.last_startup_phases_ms = Some(laps.phases);
            if let Some(at) = restart_requested {
                s.last_restart_ms = Some(at.elapsed().as_secs_f64() * 1e3);
            }
        });
        self.state("ready");
        tracing::info!(plugin = %self.name, pid = ?plugin_pid, ?startup, "plugin ready");

        let mut tick = tokio::time::interval(self.cfg.heartbeat.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut last_ack = Instant::now();
        let mut cpu_last = 0u64;
        let mut ctl_open = true;
        let quarantine = async {
            match &self.link {
                Some(l) => l.quarantine_requested().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(quarantine);
        let end = loop {
            tokio::select! {
                _ = exited.readable() => break End::Crashed("crash", String::new()),
                _ = &mut quarantine => {
                    let _ = cg.kill_all();
                    let n = self.link.as_ref().map(|l| l.violations()).unwrap_or(0);
                    break End::Quarantine(format!("{n} malformed frames or ring indices on the data path (data_path.quarantine_after_malformed); fix the plugin, then `srediag plugin restart {}`", self.name));
                }
                m = ctl.recv(), if ctl_open => match m {
                    Ok(Some(PluginMsg::HeartbeatAck { seq: s })) if s == seq => last_ack = Instant::now(),
                    Ok(Some(PluginMsg::HeartbeatAck { .. })) => {}
                    Ok(Some(PluginMsg::Error { message })) => {
                        self.metrics.runtime_errors.with_label_values(&[&self.name]).inc();
                        tracing::warn!(plugin = %self.name, error = %truncate(&message, 512), "plugin reported an error");
                    }
                    Ok(Some(other)) => {
                        self.metrics.runtime_errors.with_label_values(&[&self.name]).inc();
                        tracing::warn!(plugin = %self.name, message = ?other, "unexpected control message");
                    }
                    Ok(None) => ctl_open = false,
                    Err(super::control::ChannelError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => ctl_open = false,
                    Err(e) => {
                        self.metrics.runtime_errors.with_label_values(&[&self.name]).inc();
                        tracing::warn!(plugin = %self.name, error = %e, "bad control message");
                    }
                },
                _ = tick.tick() => {
                    if let Some(m) = cg.memory_current() {
                        self.metrics.memory.with_label_values(&[&self.name]).set(m as i64);
                        self.set(|s| s.memory_bytes = Some(m));
                    }
                    if let Some(ns) = cg.cpu_usage_ns() {
                        if ns > cpu_last {
                            self.metrics.cpu.with_label_values(&[&self.name]).inc_by((ns - cpu_last) as f64 / 1e9);
                            cpu_last = ns;
                        }
                        self.set(|s| s.cpu_seconds = Some(ns as f64 / 1e9));
                    }
                    self.set(|s| s.uptime_seconds = Some(spawned.elapsed().as_secs()));
                    if last_ack.elapsed() > self.cfg.heartbeat.timeout {
                        let _ = cg.kill_all();
                        break End::Crashed("hang", format!("{}: no heartbeat answer for {:?}", codes::HANG, last_ack.elapsed()));
                    }
                    seq += 1;
                    if ctl.send(&AgentMsg::Heartbeat { seq }).is_err() && !ctl_open {
                        // The plugin closed its socket; its exit is being observed.
                    }
                }
                r = requests.recv() => match r {
                    Some(Request::Stop(done)) => {
                        self.graceful_stop(&ctl, &exited, cg, &child).await;
                        let _ = reap(&mut child).await;
                        return End::Stopped(Some(done));
                    }
                    Some(Request::Restart) => {
                        let at = Instant::now();
                        self.graceful_stop(&ctl, &exited, cg, &child).await;
                        let _ = reap(&mut child).await;
                        return End::Restart(at);
                    }
                    None => {
                        self.graceful_stop(&ctl, &exited, cg, &child).await;
                        let _ = reap(&mut child).await;
                        return End::Stopped(None);
                    }
                }
            }
        };
        let _ = cg.kill_all();
        let status = reap(&mut child).await;
        self.classify(end, status, cg, oom_before)
    }

    async fn handshake(
        &self,
        ctl: &ControlChannel,
        data_path: Option<srediag_plugin_sdk::control::DataPathInfo>,
    ) -> Result<(), End> {
        let hello = match ctl.recv().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(End::Crashed(
                    "crash",
                    "closed the control socket before hello".into(),
                ));
            }
            Err(e) => return Err(self.reject(ctl, codes::ABI, format!("malformed hello: {e}"))),
        };
        let PluginMsg::Hello {
            protocol_version,
            name,
            version,
            plugin_type,
            capabilities,
            sdk_version,
            schema_version,
        } = hello
        else {
            return Err(self.reject(ctl, codes::ABI, "the first message must be hello".into()));
        };
        if protocol_version != PROTOCOL_VERSION {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "protocol version mismatch: plugin {name} {version} speaks {protocol_version} (sdk {sdk_version}), this agent speaks {PROTOCOL_VERSION}; rebuild the plugin against srediag-plugin-sdk {}",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if schema_version != WIRE_SCHEMA_VERSION {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "wire schema mismatch: plugin {name} {version} uses data schema {schema_version} (sdk {sdk_version}), this agent uses {WIRE_SCHEMA_VERSION}; rebuild the plugin against srediag-plugin-sdk {}",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if plugin_type != self.cfg.plugin_type {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "type mismatch: configured as {}, plugin says {}",
                    self.cfg.plugin_type.as_str(),
                    plugin_type.as_str()
                ),
            ));
        }
        self.set(|s| {
            s.version = truncate(&version, 64);
            s.capabilities = capabilities
                .iter()
                .take(64)
                .map(|c| truncate(c, 128))
                .collect();
        });
        ctl.send(&AgentMsg::Welcome {
            protocol_version: PROTOCOL_VERSION,
            config: self.cfg.config.clone(),
            data_path,
        })
        .map_err(|e| End::Crashed("crash", format!("control socket: {e}")))?;
        loop {
            match ctl.recv().await {
                Ok(Some(PluginMsg::Ready {})) => return Ok(()),
                Ok(Some(PluginMsg::Error { message })) => {
                    return Err(End::Failed(
                        "start",
                        format!("init failed: {}", truncate(&message, 512)),
                    ));
                }
                Ok(Some(_)) => {
                    self.metrics
                        .runtime_errors
                        .with_label_values(&[&self.name])
                        .inc();
                }
                Ok(None) => {
                    return Err(End::Crashed(
                        "crash",
                        "closed the control socket before ready".into(),
                    ));
                }
                Err(e) => {
                    return Err(self.reject(ctl, codes::ABI, format!("malformed message: {e}")));
                }
            }
        }
    }

    fn reject(&self, ctl: &ControlChannel, code: &str, message: String) -> End {
        let _ = ctl.send(&AgentMsg::Reject {
            code: code.to_string(),
            message: message.clone(),
        });
        self.metrics
            .load
            .with_label_values(&[&self.name, "rejected_compat"])
            .inc();
        self.set(|s| s.error = Some(format!("{code}: {message}")));
        End::Failed("start", format!("{code}: {message}"))
    }

    async fn graceful_stop(
        &self,
        ctl: &ControlChannel,
        exited: &AsyncFd<std::os::fd::OwnedFd>,
        cg: &dyn PluginCgroup,
        child: &spawn::PluginProcess,
    ) {
        self.state("stopping");
        let grace = self.cfg.shutdown_grace;
        let _ = ctl.send(&AgentMsg::Shutdown {
            grace_ms: grace.as_millis() as u64,
        });
        if tokio::time::timeout(grace, exited.readable()).await.is_ok() {
            return;
        }
        // Through the pidfd: never a recycled pid. As pid 1 of its namespace the plugin only
        // receives SIGTERM when it handles it (the SDK does).
        let _ = child.signal(libc::SIGTERM);
        if tokio::time::timeout(Duration::from_millis(500), exited.readable())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(plugin = %self.name, "plugin ignored shutdown; killing its cgroup");
        let _ = cg.kill_all();
    }

    fn classify(
        &self,
        end: End,
        status: Option<std::process::ExitStatus>,
        cg: &dyn PluginCgroup,
        oom_before: u64,
    ) -> End {
        let oom = cg.oom_kills().unwrap_or(0).saturating_sub(oom_before);
        if oom > 0 {
            self.metrics
                .oom_kills
                .with_label_values(&[&self.name])
                .inc_by(oom);
        }
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match status {
            Some(s) => (s.code(), s.signal()),
            None => (None, None),
        };
        let detail = match status {
            Some(s) => format!("{s}"),
            None => "status unknown".into(),
        };
        if let End::Failed(..) | End::Quarantine(_) = end {
            return end;
        }
        if oom > 0 {
            return End::Crashed(
                "oom",
                format!(
                    "{}: out of memory in its cgroup (limit {} bytes; {detail})",
                    codes::OOM,
                    self.cfg.limits.memory_max
                ),
            );
        }
        if let End::Crashed("hang", d) = end {
            return End::Crashed("hang", d);
        }
        // The plugin is the agent's own child: its status is its own exit code or the signal
        // that killed it (a sandbox that could not be built never gets here: the spawn fails).
        match (code, signal) {
            (_, Some(libc::SIGSYS)) => End::Crashed(
                "seccomp",
                format!("{}: killed by its seccomp profile (SIGSYS)", codes::SECCOMP),
            ),
            (_, Some(n)) => {
                End::Crashed("signal", format!("{}: killed by signal {n}", codes::CRASH))
            }
            (Some(0), _) => {
                End::Crashed("exited", "exited with status 0 without being asked".into())
            }
            _ => End::Crashed("crash", format!("{}: {detail}", codes::CRASH)),
        }
    }
}

/// The plugin's exit status, once it exited (or its cgroup was killed): polls without blocking
/// the runtime for up to 1 s, then SIGKILLs it; a process that still does not exit (stuck in
/// the kernel) is left to the handle's drop, which reaps it on another thread.
async fn reap(child: &mut spawn::PluginProcess) -> Option<std::process::ExitStatus> {
    for i in 0..200 {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {
                if i == 100 {
                    let _ = child.signal(libc::SIGKILL);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => return None,
        }
    }
    None
}

fn cleanup(cg: &dyn PluginCgroup, scratch: Option<&Path>) {
    if let Err(e) = cg.kill_all() {
        tracing::warn!(cgroup = cg.name(), error = %e, "cannot empty plugin cgroup");
    }
    if let Err(e) = cg.remove() {
        tracing::warn!(cgroup = cg.name(), error = %e, "cannot remove plugin cgroup");
    }
    if let Some(d) = scratch
        && let Err(e) = std::fs::remove_dir_all(d)
    {
        tracing::warn!(dir = %d.display(), error = %e, "cannot remove scratch directory");
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Reads a plugin's stdout/stderr into the agent's log, tagged and rate-limited (at most 100
/// lines per second per stream; the number suppressed is logged). Lines are cut at 2 KiB, so a
/// plugin writing without newlines cannot grow the agent's memory.
async fn forward_output(plugin: String, stream: &'static str, out: impl std::os::fd::IntoRawFd) {
    use tokio::io::AsyncReadExt;
    const MAX_LINE: usize = 2048;
    // SAFETY: we own the pipe fd taken from the child.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(out.into_raw_fd()) };
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_file(file) else {
        return;
    };
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut window = Instant::now();
    let (mut n, mut suppressed) = (0u32, 0u64);
    let mut emit = |line: &[u8]| {
        if window.elapsed() > Duration::from_secs(1) {
            if suppressed > 0 {
                tracing::warn!(plugin = %plugin, stream, suppressed, "plugin output rate-limited");
            }
            window = Instant::now();
            n = 0;
            suppressed = 0;
        }
        n += 1;
        if n > 100 {
            suppressed += 1;
        } else {
            tracing::info!(plugin = %plugin, stream, "{}", String::from_utf8_lossy(line));
        }
    };
    loop {
        let k = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        for &b in &buf[..k] {
            if b == b'\n' {
                emit(&line);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}
