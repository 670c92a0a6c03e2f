//! How an incarnation ended, and the classification of a plugin's exit status.

use crate::plugins::sandbox::cgroup::PluginCgroup;
use std::time::Instant;
use tokio::sync::oneshot;

/// Stable error codes (seed §9), printed with every plugin failure.
pub mod codes {
    /// Handshake version or type mismatch ("ABI mismatch").
    pub const ABI: &str = "SRD-P002";
    /// The plugin crashed or was killed.
    pub const CRASH: &str = "SRD-P005";
    /// The plugin stopped answering heartbeats, or stopped answering batches.
    pub const HANG: &str = "SRD-P006";
    /// Out of memory inside its cgroup.
    pub const OOM: &str = "SRD-P004";
    /// Killed by its seccomp profile.
    pub const SECCOMP: &str = "SRD-P003";
    /// The sandbox could not be built.
    pub const SANDBOX: &str = "SRD-P008";
    /// Quarantined after repeated crashes.
    pub const QUARANTINE: &str = "SRD-P007";
    /// Broke the protocol or a budget too often (data path or control channel).
    pub const MALFORMED: &str = "SRD-P009";
}

/// Why an incarnation ended badly (`srediag_plugin_restarts_total{reason}`). Labels are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Exited with a non-zero status, or closed its control socket.
    Crash,
    /// Stopped answering heartbeats or batches.
    Hang,
    /// Killed by the OOM killer inside its cgroup.
    Oom,
    /// Killed by its seccomp profile.
    Seccomp,
    /// Killed by another signal.
    Signal,
    /// Exited with status 0 without being asked.
    Exited,
    /// The sandbox could not be built or the process could not be spawned.
    Sandbox,
    /// The start failed before `ready` (handshake refused, init failed, no ready in time).
    Start,
}

impl ExitReason {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Crash => "crash",
            ExitReason::Hang => "hang",
            ExitReason::Oom => "oom",
            ExitReason::Seccomp => "seccomp",
            ExitReason::Signal => "signal",
            ExitReason::Exited => "exited",
            ExitReason::Sandbox => "sandbox",
            ExitReason::Start => "start",
        }
    }
}

/// How an incarnation ended.
#[derive(Debug)]
pub(super) enum End {
    /// Asked to stop (agent shutdown); answered once the cgroup and scratch are gone.
    Stopped(Option<oneshot::Sender<()>>),
    /// Asked to restart (when the request came).
    Restart(Instant),
    /// Drained for a hot swap and stopped: how it went, and whom to tell.
    Drained(oneshot::Sender<super::DrainOutcome>, super::DrainOutcome),
    /// Died, was killed, or could not start: why, and the detail. Counts as a crash.
    Crashed(ExitReason, String),
    /// Broke the rules too often (data path or control channel): quarantined at once, whatever
    /// the crash count.
    Quarantine(String),
    /// Refused for a reason a restart cannot change: the bundle did not verify, the
    /// configuration widens the manifest, this host cannot build the sandbox as required, or the
    /// handshake is incompatible. No automatic retry (`srediag plugin restart` tries again).
    Rejected(String),
}

impl End {
    /// A start that failed before `ready`.
    pub(super) fn start_failed(detail: String) -> End {
        End::Crashed(ExitReason::Start, detail)
    }
}

/// The final word on an incarnation: the cgroup's OOM counter and the process's own exit status
/// decide what a crash was. Ends that are already decided (a failed start, a quarantine, a hang)
/// stay what they are, except that an OOM kill always wins over a crash.
pub(super) fn classify(
    end: End,
    status: Option<std::process::ExitStatus>,
    oom_kills: u64,
    memory_max: u64,
) -> End {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match status {
        Some(s) => (s.code(), s.signal()),
        None => (None, None),
    };
    let detail = match status {
        Some(s) => format!("{s}"),
        None => "status unknown".into(),
    };
    match end {
        End::Crashed(ExitReason::Start, _) | End::Quarantine(_) | End::Rejected(_) => return end,
        _ if oom_kills > 0 => {
            return End::Crashed(
                ExitReason::Oom,
                format!(
                    "{}: out of memory in its cgroup (limit {memory_max} bytes; {detail})",
                    codes::OOM
                ),
            );
        }
        End::Crashed(ExitReason::Hang, d) => return End::Crashed(ExitReason::Hang, d),
        _ => {}
    }
    // The plugin is the agent's own child: its status is its own exit code or the signal that
    // killed it (a sandbox that could not be built never gets here: the spawn fails).
    match (code, signal) {
        (_, Some(libc::SIGSYS)) => End::Crashed(
            ExitReason::Seccomp,
            format!("{}: killed by its seccomp profile (SIGSYS)", codes::SECCOMP),
        ),
        (_, Some(n)) => End::Crashed(
            ExitReason::Signal,
            format!("{}: killed by signal {n}", codes::CRASH),
        ),
        (Some(0), _) => End::Crashed(
            ExitReason::Exited,
            "exited with status 0 without being asked".into(),
        ),
        _ => End::Crashed(ExitReason::Crash, format!("{}: {detail}", codes::CRASH)),
    }
}

/// OOM kills in `cg` since `before` (the counter is per cgroup, which outlives incarnations only
/// within one start).
pub(super) fn oom_since(cg: &dyn PluginCgroup, before: u64) -> u64 {
    cg.oom_kills().unwrap_or(0).saturating_sub(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn reason(e: &End) -> Option<ExitReason> {
        match e {
            End::Crashed(r, _) => Some(*r),
            _ => None,
        }
    }

    #[test]
    fn exit_statuses_map_to_reasons() {
        let crash = || End::Crashed(ExitReason::Crash, String::new());
        let sigsys = ExitStatus::from_raw(libc::SIGSYS);
        let sigkill = ExitStatus::from_raw(libc::SIGKILL);
        let ok = ExitStatus::from_raw(0);
        let code3 = ExitStatus::from_raw(3 << 8);
        assert_eq!(
            reason(&classify(crash(), Some(sigsys), 0, 1)),
            Some(ExitReason::Seccomp)
        );
        assert_eq!(
            reason(&classify(crash(), Some(sigkill), 0, 1)),
            Some(ExitReason::Signal)
        );
        assert_eq!(
            reason(&classify(crash(), Some(ok), 0, 1)),
            Some(ExitReason::Exited)
        );
        assert_eq!(
            reason(&classify(crash(), Some(code3), 0, 1)),
            Some(ExitReason::Crash)
        );
        // A plugin exiting with code 159 (128 + SIGSYS) is not a seccomp kill.
        let code159 = ExitStatus::from_raw(159 << 8);
        assert_eq!(
            reason(&classify(crash(), Some(code159), 0, 1)),
            Some(ExitReason::Crash)
        );
    }

    #[test]
    fn oom_wins_over_crash_and_hang_but_not_over_decided_ends() {
        let sigkill = ExitStatus::from_raw(libc::SIGKILL);
        let hang = End::Crashed(ExitReason::Hang, "x".into());
        assert_eq!(
            reason(&classify(hang, Some(sigkill), 1, 1)),
            Some(ExitReason::Oom)
        );
        let hang = End::Crashed(ExitReason::Hang, "x".into());
        assert_eq!(
            reason(&classify(hang, Some(sigkill), 0, 1)),
            Some(ExitReason::Hang)
        );
        let start = End::start_failed("no ready".into());
        assert_eq!(
            reason(&classify(start, Some(sigkill), 1, 1)),
            Some(ExitReason::Start)
        );
        assert!(matches!(
            classify(End::Quarantine("q".into()), Some(sigkill), 1, 1),
            End::Quarantine(_)
        ));
    }
}
