//! The supervisor's internal events (Vector's pattern): each thing an operator can see happen to a
//! plugin is one type whose `emit` writes the log line, moves the counters and updates the
//! plugin's status together, so the three never disagree and the control flow stays free of
//! bookkeeping.

use super::Supervisor;
use super::end::{ExitReason, codes};
use super::status::{PluginState, StartupPhases};
use std::time::{Duration, Instant};

/// Something that happened to a plugin.
pub(super) trait Event {
    /// Logs, counts and records it.
    fn emit(self, s: &Supervisor);
}

impl Supervisor {
    /// Emits `event`.
    pub(super) fn emit(&self, event: impl Event) {
        event.emit(self);
    }
}

/// The state gauge and the status follow the state.
pub(super) struct StateChanged(pub(super) PluginState);

impl Event for StateChanged {
    fn emit(self, s: &Supervisor) {
        if s.serving.is(s.slot) {
            s.metrics.set_state(&s.name, self.0);
        }
        s.set(|st| st.state = self.0);
    }
}

/// The handshake is done: the plugin serves.
pub(super) struct Ready<'a> {
    pub(super) pid: u32,
    pub(super) startup: Duration,
    pub(super) phases: StartupPhases,
    pub(super) restart_requested: Option<Instant>,
    /// The signed manifest's version (what operators see), when there is a manifest.
    pub(super) manifest_version: Option<&'a str>,
}

impl Event for Ready<'_> {
    fn emit(self, s: &Supervisor) {
        if let Some(v) = self.manifest_version {
            // The plugin's own claim in the handshake is untrusted; the manifest's is signed.
            let said = s
                .status
                .lock()
                .map(|st| st.version.clone())
                .unwrap_or_default();
            if said != v {
                tracing::warn!(plugin = %s.name, manifest = %v, handshake = %said, "plugin reports another version than its signed manifest");
            }
            s.set(|st| st.version = v.to_string());
        }
        s.metrics.load.with_label_values(&[&s.name, "loaded"]).inc();
        s.metrics
            .startup
            .with_label_values(&[&s.name])
            .observe(self.startup.as_secs_f64());
        s.set(|st| {
            st.pid = Some(self.pid);
            st.last_startup_ms = Some(self.startup.as_secs_f64() * 1e3);
            st.last_startup_phases_ms = Some(self.phases);
            if let Some(at) = self.restart_requested {
                st.last_restart_ms = Some(at.elapsed().as_secs_f64() * 1e3);
            }
        });
        StateChanged(PluginState::Ready).emit(s);
        tracing::info!(plugin = %s.name, pid = self.pid, startup = ?self.startup, "plugin ready");
    }
}

/// An incarnation ended badly.
pub(super) struct Ended<'a> {
    pub(super) reason: ExitReason,
    pub(super) detail: &'a str,
}

impl Event for Ended<'_> {
    fn emit(self, s: &Supervisor) {
        tracing::error!(plugin = %s.name, reason = self.reason.as_str(), detail = %self.detail, "plugin ended");
        s.gone(format!("{}: {}", self.reason.as_str(), self.detail));
    }
}

/// The plugin was refused for a reason a restart cannot change.
pub(super) struct Refused<'a>(pub(super) &'a str);

impl Event for Refused<'_> {
    fn emit(self, s: &Supervisor) {
        tracing::error!(plugin = %s.name, "plugin refused: {}", self.0);
        s.gone(format!("rejected: {}", self.0));
    }
}

/// Why a plugin is quarantined.
pub(super) enum Quarantine<'a> {
    /// Too many crashes within the restart window.
    Crashes {
        /// Crashes within the window.
        crashes: usize,
        /// `restart.window`.
        window: Duration,
    },
    /// Too many violations (data path or control channel), or a fatal one.
    Violations(&'a str),
}

/// The plugin is quarantined until an operator restarts it.
pub(super) struct Quarantined<'a>(pub(super) Quarantine<'a>);

impl Event for Quarantined<'_> {
    fn emit(self, s: &Supervisor) {
        let msg = match self.0 {
            Quarantine::Crashes { crashes, window } => format!(
                "{}: plugin {} quarantined after {crashes} crashes within {window:?}; fix it, then `srediag plugin restart {}`",
                codes::QUARANTINE,
                s.name,
                s.name
            ),
            Quarantine::Violations(detail) => {
                s.gone(format!("malformed: {detail}"));
                s.metrics
                    .restarts
                    .with_label_values(&[&s.name, "malformed"])
                    .inc();
                format!("{}: {detail}", codes::MALFORMED)
            }
        };
        tracing::error!(plugin = %s.name, "plugin quarantined: {msg}");
        s.set(|st| st.error = Some(msg));
    }
}

/// Waiting before the next start.
pub(super) struct BackingOff {
    pub(super) reason: ExitReason,
    pub(super) wait: Duration,
}

impl Event for BackingOff {
    fn emit(self, s: &Supervisor) {
        StateChanged(PluginState::Failed).emit(s);
        tracing::info!(plugin = %s.name, reason = self.reason.as_str(), wait = ?self.wait, "restarting after backoff");
    }
}

/// A restart begins (`srediag_plugin_restarts_total{reason}`).
pub(super) struct Restarting<'a>(pub(super) &'a str);

impl Event for Restarting<'_> {
    fn emit(self, s: &Supervisor) {
        s.metrics
            .restarts
            .with_label_values(&[&s.name, self.0])
            .inc();
        s.set(|st| st.restarts += 1);
    }
}

/// A start failed before anything ran (`srediag_plugin_load_total{status="failed"}`).
pub(super) struct StartFailed<'a> {
    pub(super) code: &'a str,
    pub(super) what: &'a str,
}

impl Event for StartFailed<'_> {
    fn emit(self, s: &Supervisor) {
        s.metrics.load.with_label_values(&[&s.name, "failed"]).inc();
        let msg = format!("{}: {}", self.code, self.what);
        s.set(|st| st.error = Some(msg));
    }
}

/// The plugin was refused before or during its start (`srediag_plugin_load_total{status}`:
/// `rejected_sandbox`, `rejected_compat`, or the loader's verdict).
pub(super) struct LoadRefused<'a> {
    pub(super) status: &'a str,
    pub(super) error: &'a str,
}

impl Event for LoadRefused<'_> {
    fn emit(self, s: &Supervisor) {
        s.metrics
            .load
            .with_label_values(&[&s.name, self.status])
            .inc();
        let e = self.error.to_string();
        s.set(|st| st.error = Some(e));
    }
}

/// The sandbox could not be fully enforced and `sandbox.allow_degraded` lets it run.
pub(super) struct SandboxDegraded<'a>(pub(super) &'a str);

impl Event for SandboxDegraded<'_> {
    fn emit(self, s: &Supervisor) {
        s.metrics.degraded.with_label_values(&[&s.name]).inc();
        tracing::error!(plugin = %s.name, why = %self.0, "SANDBOX DEGRADED: Landlock cannot enforce every rule; running anyway because sandbox.allow_degraded is true");
    }
}

/// One heartbeat interval's accounting of the running incarnation.
pub(super) struct Accounted {
    /// Memory charged to the cgroup.
    pub(super) memory: Option<u64>,
    /// CPU used since the last accounting, and in all, in nanoseconds.
    pub(super) cpu_ns: Option<(u64, u64)>,
    /// Seconds since the spawn.
    pub(super) uptime: u64,
}

impl Event for Accounted {
    fn emit(self, s: &Supervisor) {
        if let Some(m) = self.memory.filter(|_| s.serving.is(s.slot)) {
            s.metrics.memory.with_label_values(&[&s.name]).set(m as i64);
        }
        if let Some((delta, _)) = self.cpu_ns.filter(|(d, _)| *d > 0) {
            s.metrics
                .cpu
                .with_label_values(&[&s.name])
                .inc_by(delta as f64 / 1e9);
        }
        s.set(|st| {
            if let Some(m) = self.memory {
                st.memory_bytes = Some(m);
            }
            if let Some((_, total)) = self.cpu_ns {
                st.cpu_seconds = Some(total as f64 / 1e9);
            }
            st.uptime_seconds = Some(self.uptime);
        });
    }
}

/// The plugin reported its own health.
pub(super) struct HealthReported<'a> {
    pub(super) status: srediag_plugin_sdk::HealthStatus,
    pub(super) message: &'a str,
}

impl Event for HealthReported<'_> {
    fn emit(self, s: &Supervisor) {
        use srediag_plugin_sdk::HealthStatus as H;
        for h in [H::Ok, H::Degraded, H::Unhealthy] {
            s.metrics
                .health
                .with_label_values(&[&s.name, h.as_str()])
                .set(i64::from(h == self.status));
        }
        let message = crate::plugins::ledger::clean(self.message.as_bytes());
        let changed = s
            .status
            .lock()
            .map(|st| st.health.as_ref().map(|h| h.status) != Some(self.status))
            .unwrap_or(true);
        if changed {
            s.ledger.log().warn(
                crate::plugins::ledger::LogSource::Control,
                &format!("plugin health: {}: {message}", self.status.as_str()),
            );
        }
        s.set(|st| {
            st.health = Some(super::status::PluginHealth {
                status: self.status,
                message,
                at: super::now_unix(),
            })
        });
    }
}
