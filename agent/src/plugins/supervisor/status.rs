//! What the operator sees of a plugin: its state, its status record and where a start's time went.

use serde::Serialize;
use std::time::Instant;

/// The state of a plugin (`srediag_plugin_state{state}`, `srediag plugin list`). Serialised as
/// the lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Being verified, spawned or in its handshake.
    #[default]
    Starting,
    /// Running and answering.
    Ready,
    /// Running with a sandbox that could not be fully enforced (`sandbox.allow_degraded`).
    Degraded,
    /// Asked to stop; within its shutdown grace.
    Stopping,
    /// Stopped for good.
    Stopped,
    /// Ended; waiting for its backoff before the next start.
    Failed,
    /// Crashed too often or broke the rules too often: waits for `srediag plugin restart`.
    Quarantined,
    /// Refused for a reason a restart cannot change — its bundle did not verify, its
    /// configuration widens the manifest, this host cannot build its sandbox as required, its
    /// handshake is incompatible: waits for `srediag plugin restart`, which tries again.
    Rejected,
}

impl PluginState {
    /// Every state (the state gauge has one series per state).
    pub const ALL: [PluginState; 8] = [
        PluginState::Starting,
        PluginState::Ready,
        PluginState::Degraded,
        PluginState::Stopping,
        PluginState::Stopped,
        PluginState::Failed,
        PluginState::Quarantined,
        PluginState::Rejected,
    ];

    /// The label and JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Starting => "starting",
            PluginState::Ready => "ready",
            PluginState::Degraded => "degraded",
            PluginState::Stopping => "stopping",
            PluginState::Stopped => "stopped",
            PluginState::Failed => "failed",
            PluginState::Quarantined => "quarantined",
            PluginState::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator sees of a plugin (`srediag plugin list`). JSON field names are stable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginStatus {
    /// Plugin id from the configuration.
    pub name: String,
    /// Version: the signed manifest's, else what the handshake said (charset-checked).
    pub version: String,
    /// Type from the configuration.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The plugin's state.
    pub state: PluginState,
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
    /// The plugin's own report of its health (protocol 2 `health` message), if it sent one.
    pub health: Option<PluginHealth>,
    /// How the last hot swap went (`srediag plugin upgrade`, `srediag reload`).
    pub last_swap: Option<crate::plugins::swap::SwapRecord>,
}

/// What a plugin said about its own health.
#[derive(Debug, Clone, Serialize)]
pub struct PluginHealth {
    /// `ok`, `degraded` or `unhealthy`.
    pub status: srediag_plugin_sdk::HealthStatus,
    /// Why (cut and escaped).
    pub message: String,
    /// Unix time of the report.
    pub at: u64,
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
pub(super) struct Laps {
    pub(super) started: Instant,
    last: Instant,
    pub(super) phases: StartupPhases,
}

impl Laps {
    pub(super) fn new() -> Laps {
        let now = Instant::now();
        Laps {
            started: now,
            last: now,
            phases: StartupPhases::default(),
        }
    }

    /// Milliseconds since the previous lap.
    pub(super) fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1e3;
        self.last = now;
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialise_as_the_lowercase_words_of_before() {
        for s in PluginState::ALL {
            assert_eq!(
                serde_json::to_value(s).expect("serialises"),
                serde_json::Value::String(s.as_str().into())
            );
        }
        let st = PluginStatus {
            state: PluginState::Quarantined,
            ..Default::default()
        };
        let v = serde_json::to_value(&st).expect("serialises");
        assert_eq!(v["state"], "quarantined");
    }
}
