//! One supervisor task per plugin: verify, prepare the sandbox, spawn, handshake, watch (pidfd,
//! control socket, heartbeats, cgroup accounting, data-path progress), stop, restart with
//! backoff, quarantine.
//!
//! One job per file: [`policy`] (restart and quarantine decisions, pure), [`start`] (verification,
//! spawn, and the [`start::Running`] guard whose drop kills the incarnation), [`handshake`],
//! [`watch`] (the loop, one method per event), [`end`] (how an incarnation ended, exit
//! classification, error codes), [`status`] (what the operator sees), [`spec`] (the sandbox of an
//! incarnation), [`output`] (stdout/stderr into the log, within the plugin's budgets).

mod end;
mod events;
mod handshake;
mod output;
mod policy;
mod spec;
mod start;
mod status;
mod verbs;
mod watch;

pub use end::{ExitReason, codes};
pub use policy::backoff;
pub use spec::limits;
pub use status::{PluginHealth, PluginState, PluginStatus, StartupPhases};
pub use watch::MAX_CONTROL_PER_TICK;

use super::config::PluginConfig;
use super::datapath::AttachError;
use super::ledger::Ledger;
use super::metrics::PluginMetrics;
use super::sandbox::cgroup::{CgroupDriver, PluginCgroup};
use crate::bpf::PluginObservers;
use end::End;
use events::{
    BackingOff, Ended, Quarantine, Quarantined, Ready, Refused, Restarting, StateChanged,
};
use policy::{RestartPolicy, Verdict};
use status::Laps;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Requests to a supervisor.
pub enum Request {
    /// Stop (or leave quarantine) and start again now.
    Restart,
    /// Stop for good; answer when done.
    Stop(oneshot::Sender<()>),
    /// Hot swap: another incarnation took over the data path. Answer what was already sent to
    /// this one (`drain` to the plugin, then its `drain_ack`), then stop; past `timeout` kill it
    /// (its unanswered batches go to the new incarnation). Answer with how it went.
    Drain {
        /// How long the plugin may take.
        timeout: std::time::Duration,
        /// Told when this supervisor has stopped.
        done: oneshot::Sender<DrainOutcome>,
    },
    /// Run a diagnostics verb in the running incarnation (`srediag diagnose <plugin> <verb>`);
    /// refused at once when none runs.
    Invoke(crate::plugins::verbs::InvokeRequest),
}

/// How a drained incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// It answered everything it had and acknowledged the drain.
    Acked,
    /// It did not within the drain timeout: killed.
    TimedOut,
    /// It died while draining.
    Died,
    /// It was not running (failed, quarantined, rejected).
    NotRunning,
}

/// Which pair of cgroup and scratch names an incarnation uses: during a hot swap two incarnations
/// of one plugin run side by side, so they alternate between two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Slot {
    /// `<name>`.
    #[default]
    A,
    /// `<name>.b`.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The cgroup and scratch directory name of plugin `name` in this slot.
    pub fn instance(self, name: &str) -> String {
        match self {
            Slot::A => name.to_string(),
            Slot::B => format!("{name}.b"),
        }
    }
}

/// Which slot's supervisor serves a plugin: its state is the plugin's state
/// (`srediag_plugin_state`, the memory gauge). During a hot swap two supervisors run; the new one
/// serves from the moment it is ready, so an aborted swap's incarnation (starting, then stopped)
/// and a swapped-out one (draining, stopping, stopped) never overwrite what the serving one says.
#[derive(Debug, Default)]
pub struct Serving(std::sync::atomic::AtomicBool);

impl Serving {
    /// True when `slot`'s supervisor serves.
    pub fn is(&self, slot: Slot) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst) == (slot == Slot::B)
    }

    /// `slot`'s supervisor serves from now on.
    pub fn set(&self, slot: Slot) {
        self.0
            .store(slot == Slot::B, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The last successful load of a plugin and the fingerprint of what it verified (shared with the
/// manager, which compares it to decide whether a bundle changed on disk).
pub type LastLoad = Arc<Mutex<Option<(Vec<u64>, Arc<super::loader::Loaded>)>>>;

/// A hot swap's new incarnation: it takes over the link when ready and says so (its pid), or
/// says why it could not start (then its supervisor stops instead of retrying).
pub type Standby = oneshot::Sender<Result<u32, String>>;

/// The running incarnation's handles (the hooks that outlive `run_in`).
#[derive(Debug, Default, Clone, Copy)]
struct Current {
    pid: Option<u32>,
    generation: Option<u64>,
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
    /// What the plugin costs the agent: its log budget and its violations.
    pub ledger: Arc<Ledger>,
    /// Trust policy, host facts, rollback marks (shared by all supervisors).
    pub trust: Arc<super::loader::TrustContext>,
    /// The eBPF observers' hooks (shared by all supervisors).
    pub observers: Arc<dyn PluginObservers>,
    /// The last successful load and the fingerprint of what it verified: a restart of an
    /// unchanged bundle reuses its sealed executable instead of copying and hashing it again.
    pub last_load: LastLoad,
    /// Which cgroup and scratch names this supervisor's incarnations use.
    pub slot: Slot,
    /// Set for a hot swap's new incarnation (taken at its first ready or failure).
    pub standby: Mutex<Option<Standby>>,
    /// Which of the plugin's supervisors serves (shared by both during a hot swap).
    pub serving: Arc<Serving>,
    /// The running incarnation's pid and link attachment.
    current: Mutex<Current>,
}

impl Supervisor {
    /// A supervisor of plugin `name` (its incarnations start when [`Supervisor::run`] runs).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        cfg: PluginConfig,
        status: Arc<Mutex<PluginStatus>>,
        metrics: PluginMetrics,
        cgroups: Arc<dyn CgroupDriver>,
        scratch_root: PathBuf,
        link: Option<Arc<crate::plugins::datapath::Link>>,
        ledger: Arc<Ledger>,
        trust: Arc<super::loader::TrustContext>,
        observers: Arc<dyn PluginObservers>,
        slot: Slot,
        standby: Option<Standby>,
    ) -> Supervisor {
        Supervisor {
            name: name.to_string(),
            cfg,
            status,
            metrics,
            cgroups,
            scratch_root,
            link,
            ledger,
            trust,
            observers,
            last_load: LastLoad::default(),
            slot,
            standby: Mutex::new(standby),
            serving: Arc::default(),
            current: Mutex::new(Current::default()),
        }
    }

    fn take_standby(&self) -> Option<Standby> {
        self.standby
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn set_current(&self, f: impl FnOnce(&mut Current)) {
        f(&mut self.current.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// What a parked supervisor (rejected, quarantined) was asked to do.
enum Parked {
    /// Start again (the operator's `plugin restart`).
    Restart,
    /// Stopped; the requester was answered.
    Stopped,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Supervisor {
    fn set(&self, f: impl FnOnce(&mut PluginStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    fn state(&self, state: PluginState) {
        self.emit(StateChanged(state));
    }

    /// The incarnation is gone: no pid, no uptime, and how it ended.
    fn gone(&self, last_exit: String) {
        self.set(|s| {
            s.last_exit = Some(last_exit);
            s.pid = None;
            s.uptime_seconds = None;
        });
    }

    /// Refuses a verb: no incarnation runs.
    fn refuse_invoke(&self, req: crate::plugins::verbs::InvokeRequest) {
        let state = self.status.lock().unwrap_or_else(|p| p.into_inner()).state;
        req.refuse(
            crate::plugins::verbs::Refusal::NotRunning,
            format!("plugin {} is not running ({})", self.name, state.as_str()),
        );
    }

    /// Waits in `state` until an operator restarts or stops the plugin.
    async fn park(&self, state: PluginState, requests: &mut mpsc::Receiver<Request>) -> Parked {
        self.state(state);
        if let Some(l) = &self.link {
            l.park(true, self.slot);
        }
        let mut next = requests.recv().await;
        while let Some(Request::Invoke(req)) = next {
            self.refuse_invoke(req);
            next = requests.recv().await;
        }
        match next {
            Some(Request::Restart) => {
                if let Some(l) = &self.link {
                    l.park(false, self.slot);
                }
                Parked::Restart
            }
            Some(Request::Stop(done)) => {
                self.state(PluginState::Stopped);
                let _ = done.send(());
                Parked::Stopped
            }
            Some(Request::Drain { done, .. }) => {
                self.state(PluginState::Stopped);
                let _ = done.send(DrainOutcome::NotRunning);
                Parked::Stopped
            }
            Some(Request::Invoke(_)) | None => Parked::Stopped,
        }
    }

    /// Runs until stopped.
    pub async fn run(self, mut requests: mpsc::Receiver<Request>) {
        let this = self;
        let self_ = &this;
        self_.run_loop(&mut requests).await
    }

    async fn run_loop(&self, requests: &mut mpsc::Receiver<Request>) {
        let mut policy = RestartPolicy::new(self.cfg.restart.clone());
        let mut restart_requested: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let end = self.incarnation(requests, restart_requested.take()).await;
            let ran = started.elapsed();
            if let Some(standby) = self.take_standby() {
                // A hot swap's new incarnation that did not become ready: the swap is aborted and
                // this supervisor stops (the old incarnation serves on).
                let why = match &end {
                    End::Crashed(r, d) => format!("{}: {d}", r.as_str()),
                    End::Rejected(m) | End::Quarantine(m) => m.clone(),
                    End::Stopped(_) | End::Drained(..) | End::Restart(_) => "stopped".into(),
                };
                let _ = standby.send(Err(why));
                self.state(PluginState::Stopped);
                if let End::Stopped(Some(done)) = end {
                    let _ = done.send(());
                }
                return;
            }
            let park = match end {
                End::Drained(done, outcome) => {
                    self.state(PluginState::Stopped);
                    let _ = done.send(outcome);
                    return;
                }
                End::Stopped(done) => {
                    self.state(PluginState::Stopped);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                End::Restart(at) => {
                    self.emit(Restarting("requested"));
                    policy.reset_consecutive();
                    restart_requested = Some(at);
                    continue;
                }
                End::Rejected(msg) => {
                    self.emit(Refused(&msg));
                    PluginState::Rejected
                }
                End::Quarantine(detail) => {
                    self.emit(Quarantined(Quarantine::Violations(&detail)));
                    PluginState::Quarantined
                }
                End::Crashed(reason, detail) => {
                    self.emit(Ended {
                        reason,
                        detail: &detail,
                    });
                    match policy.crashed(Instant::now(), ran) {
                        Verdict::Quarantine { crashes } => {
                            self.emit(Quarantined(Quarantine::Crashes {
                                crashes,
                                window: self.cfg.restart.window,
                            }));
                            PluginState::Quarantined
                        }
                        Verdict::RetryAfter(wait) => {
                            self.emit(BackingOff { reason, wait });
                            let until = tokio::time::Instant::now() + wait;
                            loop {
                                tokio::select! {
                                    _ = tokio::time::sleep_until(until) => break,
                                    r = requests.recv() => match r {
                                        Some(Request::Stop(done)) => {
                                            self.state(PluginState::Stopped);
                                            let _ = done.send(());
                                            return;
                                        }
                                        Some(Request::Drain { done, .. }) => {
                                            self.state(PluginState::Stopped);
                                            let _ = done.send(DrainOutcome::NotRunning);
                                            return;
                                        }
                                        Some(Request::Invoke(req)) => self.refuse_invoke(req),
                                        Some(Request::Restart) => break,
                                        None => return,
                                    }
                                }
                            }
                            self.emit(Restarting(reason.as_str()));
                            continue;
                        }
                    }
                }
            };
            // Rejected or quarantined: nothing happens until an operator acts.
            match self.park(park, requests).await {
                Parked::Restart => {
                    self.ledger.clear();
                    policy.reset();
                    restart_requested = Some(Instant::now());
                    self.emit(Restarting("requested"));
                }
                Parked::Stopped => return,
            }
        }
    }

    /// One start-to-end life of the plugin. Startup time counts everything: verification (or
    /// its cache), cgroup, scratch directory, the clone and the sandbox steps, the plugin's exec
    /// and its handshake.
    async fn incarnation(
        &self,
        requests: &mut mpsc::Receiver<Request>,
        restart_requested: Option<Instant>,
    ) -> End {
        let mut laps = Laps::new();
        self.state(PluginState::Starting);
        self.set(|s| {
            s.error = None;
            s.capabilities.clear();
        });
        let loaded = match self.verify() {
            Ok(l) => l,
            Err(end) => return end,
        };
        if let Some(m) = &loaded.manifest {
            let v = m.version.clone();
            self.set(|s| s.version = v);
        }
        laps.phases.verify = laps.lap();
        let cg = match self.cgroups.create(
            &self.slot.instance(&self.name),
            &limits(&loaded.sandbox.limits),
        ) {
            Ok(c) => c,
            Err(e @ crate::plugins::sandbox::cgroup::CgroupError::ControllerUnavailable { .. }) => {
                return self.sandbox_refused(format!("cgroup: {e}"));
            }
            Err(e) => return self.start_failure(codes::SANDBOX, format!("cgroup: {e}")),
        };
        laps.phases.cgroup = laps.lap();
        let scratch = match self.make_scratch() {
            Ok(d) => Some(d),
            Err(e) => {
                let end = self.start_failure(
                    codes::SANDBOX,
                    format!(
                        "scratch directory under {}: {e}",
                        self.scratch_root.display()
                    ),
                );
                self.clean_up(cg, None).await;
                return end;
            }
        };
        let dir = scratch.as_deref().unwrap_or(Path::new("/"));
        let end = self
            .run_in(&*cg, dir, &loaded, requests, restart_requested, laps)
            .await;
        // The process is gone: say so before the (bounded) detach and cleanup.
        self.set(|s| {
            s.pid = None;
            s.uptime_seconds = None;
        });
        let current = std::mem::take(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()));
        if let (Some(l), Some(generation)) = (&self.link, current.generation) {
            // The process is gone: drain what it published, keep what it did not answer.
            tokio::task::block_in_place(|| l.detach(generation));
        }
        self.clean_up(cg, scratch).await;
        if let Some(pid) = current.pid {
            self.observers.plugin_stopped(&self.name, pid);
        }
        end
    }

    /// Removes an incarnation's cgroup and scratch directory off the async runtime (cgroup kill
    /// rounds and a large scratch tree block).
    async fn clean_up(&self, cg: Box<dyn PluginCgroup>, scratch: Option<PathBuf>) {
        let done =
            tokio::task::spawn_blocking(move || spec::cleanup(&*cg, scratch.as_deref())).await;
        if let Err(e) = done {
            tracing::warn!(plugin = %self.name, error = %e, "plugin cleanup task failed");
        }
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
        let mut run = match self.spawn(cg, scratch, loaded, &mut laps).await {
            Ok(r) => r,
            Err(end) => return end,
        };
        let hs = tokio::time::timeout(
            self.cfg.heartbeat.startup_timeout,
            self.handshake(&run.ctl, run.prepared.as_ref().map(|p| p.info)),
        );
        let hs = tokio::select! {
            r = hs => r,
            _ = run.exited.readable() => Ok(Err(End::Crashed(ExitReason::Crash, "exited before the handshake finished".into()))),
        };
        match hs {
            Ok(Ok(protocol)) => run.protocol = protocol,
            Ok(Err(end)) => {
                // Let the plugin finish dying on its own (e.g. SIGSYS) before the cgroup kill, so
                // its status says why.
                run.exit_within(std::time::Duration::from_millis(500)).await;
                let status = run.kill_and_reap().await;
                return self.classify(end, status, &run);
            }
            Err(_) => {
                run.kill_and_reap().await;
                let what = format!("no ready within {:?}", self.cfg.heartbeat.startup_timeout);
                return self.start_failure(codes::HANG, what);
            }
        }
        if let Some(p) = &run.prepared {
            // Before the data path starts, so the first sampled batch is seen.
            self.observers.ipc_started(
                &self.name,
                run.child.id(),
                p.info.to_plugin_ring,
                p.info.from_plugin_ring,
            );
        }
        self.set_current(|c| c.pid = Some(run.child.id()));
        let standby = self.take_standby();
        if let (Some(link), Some(p)) = (&self.link, run.prepared.take()) {
            // A hot swap's new incarnation takes over (the old one drains); any other attaches.
            let attached = if standby.is_some() {
                link.takeover(p, self.slot)
            } else {
                link.attach(p, self.slot)
            };
            match attached {
                Ok(generation) => self.set_current(|c| c.generation = Some(generation)),
                Err(AttachError::Superseded) => {
                    // This supervisor was swapped out while its incarnation (re)started: the new
                    // one serves; this one ends without ever serving (a pending drain request is
                    // answered "not running" by the closed channel).
                    run.kill_and_reap().await;
                    tracing::info!(plugin = %self.name, pid = run.child.id(), "swapped out while starting: the hot swap's new incarnation serves; stopping this one");
                    return End::Stopped(None);
                }
                Err(e) => {
                    run.kill_and_reap().await;
                    if let Some(s) = standby {
                        let _ = s.send(Err(format!("data path: {e}")));
                    }
                    return End::start_failed(format!("{}: data path: {e}", codes::SANDBOX));
                }
            }
        }
        if standby.is_some() {
            self.serving.set(self.slot);
        }
        self.ready(&run, loaded, &mut laps, restart_requested);
        if let Some(s) = standby {
            let _ = s.send(Ok(run.child.id()));
        }
        let verbs = loaded.manifest.as_ref().map(|m| m.cli.as_slice());
        let end = self
            .watch(&mut run, requests, verbs.unwrap_or_default())
            .await;
        if matches!(end, End::Stopped(_) | End::Restart(_) | End::Drained(..)) {
            return end; // stopped gracefully (or killed at the drain timeout) and reaped
        }
        let status = run.kill_and_reap().await;
        self.classify(end, status, &run)
    }

    /// The handshake is done: the plugin is `ready`.
    fn ready(
        &self,
        run: &start::Running<'_>,
        loaded: &super::loader::Loaded,
        laps: &mut Laps,
        restart_requested: Option<Instant>,
    ) {
        laps.phases.handshake = laps.lap();
        self.emit(Ready {
            pid: run.child.id(),
            startup: laps.started.elapsed(),
            phases: laps.phases,
            restart_requested,
            manifest_version: loaded.manifest.as_ref().map(|m| m.version.as_str()),
        });
    }

    /// Classifies an ended incarnation, counting its OOM kills.
    fn classify(
        &self,
        end: End,
        status: Option<std::process::ExitStatus>,
        run: &start::Running<'_>,
    ) -> End {
        let oom = end::oom_since(run.cg, run.oom_before);
        if oom > 0 {
            self.metrics
                .oom_kills
                .with_label_values(&[&self.name])
                .inc_by(oom);
        }
        end::classify(end, status, oom, self.cfg.limits.memory_max)
    }
}
