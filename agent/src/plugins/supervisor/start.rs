//! Starting an incarnation: verification (or its cache), cgroup, scratch directory, sandbox
//! specification, spawn — and the [`Running`] guard that owns the process from then on.

use super::Supervisor;
use super::end::{End, ExitReason, codes};
use super::events::{LoadRefused, SandboxDegraded, StartFailed};
use super::status::Laps;
use crate::plugins::control::ControlChannel;
use crate::plugins::datapath::Prepared;
use crate::plugins::ledger::LogSource;
use crate::plugins::loader::Loaded;
use crate::plugins::sandbox::cgroup::PluginCgroup;
use crate::plugins::sandbox::landlock::{self, Enforcement};
use crate::plugins::sandbox::spawn::{self, PluginProcess, Spawned};
use crate::plugins::sandbox::spawner::{self, SpawnRequest};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// A spawned incarnation. Dropping it kills the plugin's cgroup (the process handle's own drop
/// then reaps it without blocking); [`Running::kill_and_reap`] does the same and returns the
/// exit status.
pub(super) struct Running<'a> {
    /// The plugin's cgroup.
    pub(super) cg: &'a dyn PluginCgroup,
    /// The plugin process (pid 1 of its namespace).
    pub(super) child: PluginProcess,
    /// Readable once the process exited (its pidfd).
    pub(super) exited: AsyncFd<OwnedFd>,
    /// The agent's end of the control socket.
    pub(super) ctl: ControlChannel,
    /// The cgroup's OOM kill counter before the spawn.
    pub(super) oom_before: u64,
    /// When the process was spawned.
    pub(super) spawned: Instant,
    /// The data-path rings, until they are attached.
    pub(super) prepared: Option<Prepared>,
    /// The control protocol version the plugin speaks (from its `hello`).
    pub(super) protocol: u32,
    reaped: bool,
}

impl Running<'_> {
    /// Kills whatever is left in the cgroup and reaps the plugin: its exit status, if it could be
    /// had within about a second (a process stuck in the kernel is left to the handle's drop).
    pub(super) async fn kill_and_reap(&mut self) -> Option<std::process::ExitStatus> {
        let _ = self.cg.kill_all();
        self.reap().await
    }

    /// Reaps the plugin (after it exited or was killed): polls without blocking the runtime for
    /// up to 1 s, SIGKILLing it after 0.5 s.
    pub(super) async fn reap(&mut self) -> Option<std::process::ExitStatus> {
        self.reaped = true;
        for i in 0..200 {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) => {
                    if i == 100 {
                        let _ = self.child.signal(libc::SIGKILL);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits up to `d` for the plugin to exit on its own.
    pub(super) async fn exit_within(&self, d: Duration) -> bool {
        tokio::time::timeout(d, self.exited.readable())
            .await
            .is_ok()
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.cg.kill_all();
        }
    }
}

impl Supervisor {
    /// Verifies the plugin, or reuses the last verified load when the bundle's files and the
    /// policy are unchanged since (its executable is a sealed memfd: the same verified bytes).
    /// Nothing is created or spawned for a plugin that does not verify.
    pub(super) fn verify(&self) -> Result<Arc<Loaded>, End> {
        let fingerprint = self.trust.fingerprint(&self.cfg);
        let cached = {
            let last = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
            match (&*last, &fingerprint) {
                (Some((fp, l)), Some(now)) if fp == now => Some(l.clone()),
                _ => None,
            }
        };
        if let Some(l) = cached {
            return Ok(l);
        }
        match self.trust.load(&self.name, &self.cfg, &self.metrics) {
            Ok(l) => {
                let l = Arc::new(l);
                *self.last_load.lock().unwrap_or_else(|p| p.into_inner()) =
                    fingerprint.map(|fp| (fp, l.clone()));
                Ok(l)
            }
            Err(e) => {
                let msg = e.to_string();
                self.emit(LoadRefused {
                    status: e.status(),
                    error: &msg,
                });
                // Trust decisions stand until an operator acts (`plugin restart`); an I/O
                // failure (state file, memfd) is retried like any failed start.
                let transient = e.is_transient();
                Err(if transient {
                    End::start_failed(msg)
                } else {
                    End::Rejected(msg)
                })
            }
        }
    }

    /// A start that failed before anything ran: counted, recorded, and the end to return.
    pub(super) fn start_failure(&self, code: &str, what: String) -> End {
        self.emit(StartFailed { code, what: &what });
        End::start_failed(format!("{code}: {what}"))
    }

    /// This host cannot build the plugin's sandbox as required (Landlock too old for its grant,
    /// a controller its limits need, a profile that does not compile): retrying cannot help, so
    /// the plugin is refused at once (`rejected`, `srediag_plugin_load_total{status=
    /// "rejected_sandbox"}`) instead of burning its restarts; `srediag plugin restart` tries again.
    pub(super) fn sandbox_refused(&self, what: String) -> End {
        let msg = format!("{}: {what}", codes::SANDBOX);
        self.emit(LoadRefused {
            status: "rejected_sandbox",
            error: &msg,
        });
        End::Rejected(msg)
    }

    /// Builds the sandbox and spawns the plugin into it.
    pub(super) async fn spawn<'a>(
        &self,
        cg: &'a dyn PluginCgroup,
        scratch: &Path,
        loaded: &Loaded,
        laps: &mut Laps,
    ) -> Result<Running<'a>, End> {
        laps.phases.scratch = laps.lap();
        let spec = self
            .spec(cg, scratch, loaded)
            .map_err(|e| self.sandbox_refused(e.to_string()))?;
        match landlock::enforcement(&spec.landlock) {
            Ok(Enforcement::Full { .. }) => {}
            Ok(Enforcement::Degraded(why)) => self.emit(SandboxDegraded(&why.to_string())),
            Err(e) => return Err(self.sandbox_refused(e.to_string())),
        }
        let (agent_end, plugin_end) = spawn::control_pair()
            .map_err(|e| End::start_failed(format!("{}: socketpair: {e}", codes::SANDBOX)))?;
        let prepared = self
            .link
            .as_ref()
            .map(|l| l.prepare())
            .transpose()
            .map_err(|e| self.start_failure(codes::SANDBOX, format!("data path rings: {e}")))?;
        let oom_before = cg.oom_kills().unwrap_or(0);
        let request = (|| -> std::io::Result<SpawnRequest> {
            Ok(SpawnRequest {
                observer: self.observers.clone(),
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
            process: child,
            stdout,
            stderr,
        } = spawned.map_err(|e| {
            let what = format!("cannot start the plugin: {e}");
            self.emit(StartFailed {
                code: codes::SANDBOX,
                what: &what,
            });
            End::Crashed(ExitReason::Sandbox, format!("{}: {what}", codes::SANDBOX))
        })?;
        laps.phases.spawn = laps.lap();
        let spawned = Instant::now();
        self.observers
            .plugin_started(&self.name, child.id(), &|| cg.pids());
        self.set(|s| {
            s.started_at = Some(super::now_unix());
            s.pid = None;
        });
        tokio::spawn(super::output::forward_output(
            self.ledger.clone(),
            LogSource::Stdout,
            stdout,
        ));
        tokio::spawn(super::output::forward_output(
            self.ledger.clone(),
            LogSource::Stderr,
            stderr,
        ));
        let exited = match child.pidfd().and_then(|fd| {
            // SAFETY: the pidfd moves into the AsyncFd, which keeps it open for its lifetime.
            unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
        }) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = cg.kill_all();
                drop(child); // kills and reaps without blocking
                return Err(End::start_failed(format!("pidfd: {e}")));
            }
        };
        let ctl = match ControlChannel::new(agent_end) {
            Ok(c) => c,
            Err(e) => {
                let _ = cg.kill_all();
                drop(child);
                return Err(End::start_failed(format!("control socket: {e}")));
            }
        };
        Ok(Running {
            cg,
            child,
            exited,
            ctl,
            oom_before,
            spawned,
            prepared,
            protocol: 0,
            reaped: false,
        })
    }
}
