//! The event stream: `srediag_events` (a BPF ring buffer) read asynchronously.
//!
//! What reaches it is bounded in the kernel: at most `srediag_event_budget` violation events per
//! plugin and second (default [`abi::EVENT_BUDGET`]); beyond that a violation is counted but its
//! event suppressed and counted per plugin (`srediag_ev_budget`). Each event carries its
//! plugin's suppressed count, so a [`Violation`] says how many of that plugin's events were
//! suppressed since its previous one (`suppressed_before`). Without the budget a plugin looping
//! on a denied syscall (~1.4·10^5 violations a second with the SDK's EPERM handler) made the
//! agent drain and process every event: 32% of a core in a release build, 47–58% in a debug one.
//!
//! The reader task waits on an epoll fd that watches the ring buffer's fd, through tokio's
//! `AsyncFd`; when it is readable it drains the ring completely (the kernel side only wakes a
//! reader that has caught up) and publishes each decoded event to a broadcast channel. The task
//! holds neither the ring buffer nor the observers (only a `Weak`): dropping `Observers` closes
//! the ring buffer at once (the kernel removes it from the epoll set) and aborts the task.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::abi::{self, Event};
use super::observers::Inner;
use super::seccomp::Action;

/// Events a subscriber may fall behind by before it starts losing the oldest.
pub(super) const CHANNEL_CAPACITY: usize = 1024;

/// A seccomp violation by a plugin process, as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Wall-clock time of the violation.
    #[serde(with = "unix_seconds")]
    pub time: SystemTime,
    /// Host pid of the process.
    pub pid: u32,
    /// Host tid of the thread.
    pub tid: u32,
    /// Plugin id.
    pub plugin_id: u32,
    /// Plugin name (`id-N` when the id was never registered with a name).
    pub plugin: String,
    /// Syscall number (-1 when unknown).
    pub syscall_nr: i32,
    /// Syscall name, or the number.
    pub syscall: String,
    /// Architecture of the call.
    pub arch: &'static str,
    /// The seccomp action.
    pub action: Action,
    /// Which kernel hook saw it: `signal` (signal_generate) or `exit` (sched_process_exit).
    pub source: &'static str,
    /// The thread's command name.
    pub comm: String,
    /// Violation events of this plugin the kernel suppressed (over its event budget) between
    /// the previous event the agent received from it and this one; those violations are counted
    /// all the same.
    pub suppressed_before: u64,
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        s.serialize_f64(secs)
    }
}

/// Converts a `bpf_ktime_get_ns()` timestamp (CLOCK_MONOTONIC) to wall-clock time.
fn wall_time(ktime_ns: u64) -> SystemTime {
    let age = super::cpu::monotonic_ns().saturating_sub(ktime_ns);
    SystemTime::now()
        .checked_sub(Duration::from_nanos(age))
        .unwrap_or_else(SystemTime::now)
}

impl Inner {
    /// Turns a raw event into a [`Violation`] (`None` for other kinds); `suppressed_before` is
    /// left 0 (see [`Inner::drain`]).
    pub(super) fn violation(&self, ev: &Event) -> Option<Violation> {
        if ev.kind != abi::EVENT_VIOLATION {
            return None;
        }
        let (syscall, arch) = self.syscalls.resolve(ev.arch, ev.syscall_nr);
        Some(Violation {
            time: wall_time(ev.ktime_ns),
            pid: ev.tgid,
            tid: ev.tid,
            plugin_id: ev.plugin_id,
            plugin: self.plugin_name(ev.plugin_id),
            syscall_nr: ev.syscall_nr,
            syscall,
            arch,
            action: Action::from_raw(ev.action),
            source: if ev.source == abi::SOURCE_EXIT {
                "exit"
            } else {
                "signal"
            },
            comm: ev.comm(),
            suppressed_before: 0,
        })
    }

    /// Reads every record in the ring buffer and publishes it; returns how many were read.
    pub(super) fn drain(&self) -> usize {
        let mut raw = Vec::new();
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let Some(ring) = state.as_mut().and_then(|l| l.ring.as_mut()) else {
                return 0;
            };
            while let Some(item) = ring.next() {
                if let Some(ev) = Event::from_bytes(&item) {
                    raw.push(ev);
                }
            }
        }
        let n = raw.len();
        for ev in raw {
            if ev.kind == abi::EVENT_OOM {
                tracing::warn!(
                    plugin = %self.plugin_name(ev.plugin_id), pid = ev.tgid, comm = %ev.comm(),
                    "OOM killer chose a plugin process"
                );
                continue;
            }
            let Some(mut v) = self.violation(&ev) else {
                continue;
            };
            v.suppressed_before = self.suppressed_since_last(ev.plugin_id, ev.suppressed);
            tracing::debug!(
                plugin = %v.plugin, pid = v.pid, syscall = %v.syscall, nr = v.syscall_nr,
                action = v.action.as_str(), suppressed_before = v.suppressed_before,
                "seccomp violation"
            );
            {
                let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent.len() == super::RECENT_EVENTS {
                    recent.pop_front();
                }
                recent.push_back(v.clone());
            }
            // No subscriber is fine: the counters are kept in the kernel.
            let _ = self.events.send(v);
        }
        self.received
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        n
    }

    /// How much plugin `plugin_id`'s suppressed-event count grew since the highest value its
    /// events carried so far (events of one plugin from two CPUs may arrive slightly out of
    /// order: the count never goes back, and the sum over its events is the last value seen).
    fn suppressed_since_last(&self, plugin_id: u32, total: u64) -> u64 {
        let mut seen = self
            .suppressed_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(plugin_id).or_default();
        let grew = total.saturating_sub(*last);
        *last = (*last).max(total);
        grew
    }
}

/// An epoll instance watching `ring` for input.
fn epoll_on(ring: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    // SAFETY: epoll_create1 has no memory preconditions.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ep` is a new fd that nothing else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: both fds are open for the duration of the call and `ev` is a valid epoll_event.
    let rc = unsafe {
        libc::epoll_ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            ring.as_raw_fd(),
            &mut ev,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ep)
}

/// A reader ready to start: the epoll fd registered with the current tokio runtime.
pub(super) struct Reader {
    handle: tokio::runtime::Handle,
    afd: AsyncFd<OwnedFd>,
}

impl Reader {
    /// Prepares a reader for `ring` on the current tokio runtime (an error outside one).
    pub(super) fn new(ring: BorrowedFd<'_>) -> std::io::Result<Reader> {
        let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let ep = epoll_on(ring)?;
        let afd = {
            let _guard = handle.enter();
            // SAFETY: `ep` is an OwnedFd moved into the AsyncFd, which keeps it open (and its
            // number unchanged) for its whole lifetime.
            unsafe { AsyncFd::register_with_interest(ep, Interest::READABLE) }?
        };
        Ok(Reader { handle, afd })
    }

    /// Starts the task; it ends when `inner` is gone (or is aborted by `Observers::drop`).
    pub(super) fn spawn(self, inner: Weak<Inner>) -> tokio::task::JoinHandle<()> {
        let Reader { handle, afd } = self;
        handle.spawn(async move {
            // Records written before the task first waits.
            if let Some(i) = inner.upgrade() {
                i.drain();
            }
            loop {
                let Ok(mut guard) = afd.readable().await else {
                    return;
                };
                let Some(i) = inner.upgrade() else { return };
                i.drain();
                drop(i);
                guard.clear_ready();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Observers, Options};

    /// Each event carries its plugin's suppressed total; a violation shows the growth since the
    /// highest total seen, per plugin, and events arriving out of order never count twice.
    #[test]
    fn suppressed_before_is_the_growth_per_plugin() {
        let obs = Observers::load(Options::default());
        let i = &obs.inner;
        assert_eq!(i.suppressed_since_last(1, 0), 0);
        assert_eq!(i.suppressed_since_last(1, 500), 500);
        assert_eq!(i.suppressed_since_last(2, 7), 7);
        // An event from another CPU sent earlier, read later: nothing new.
        assert_eq!(i.suppressed_since_last(1, 450), 0);
        assert_eq!(i.suppressed_since_last(1, 500), 0);
        assert_eq!(i.suppressed_since_last(1, 800), 300);
        assert_eq!(i.suppressed_since_last(2, 7), 0);
    }
}
