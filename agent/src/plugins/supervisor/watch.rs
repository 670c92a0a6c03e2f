//! Watching a ready incarnation: its exit, its control socket, heartbeats and accounting, the
//! data path's progress, the ledger's quarantine request, and operator requests. One method per
//! event; the loop only dispatches.
//!
//! The control socket is read at most [`MAX_CONTROL_PER_TICK`] messages per heartbeat interval:
//! past that the plugin is flooding (a [`Violation::ControlFlood`], once per interval) and the
//! agent stops reading until the next tick, so the flood costs the plugin blocked sends, not the
//! agent CPU.

use super::start::Running;
use super::{End, ExitReason, Request, Supervisor, codes};
use crate::plugins::control::ChannelError;
use crate::plugins::ledger::{LogSource, Violation};
use crate::plugins::trust::manifest::CliVerb;
use crate::plugins::verbs::session::is_invocation_message;
use crate::plugins::verbs::{Frame, Invocations};
use srediag_plugin_sdk::control::{AgentMsg, PluginMsg};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most control messages read per heartbeat interval (a well-behaved plugin sends one heartbeat
/// answer and the odd error report).
pub const MAX_CONTROL_PER_TICK: u32 = 64;

/// What woke the watch loop.
enum Event {
    Exited,
    Quarantine(Violation, String),
    Control(Result<Option<PluginMsg>, ChannelError>),
    Tick,
    Request(Option<Request>),
    /// While draining: time to look whether the drain is over.
    DrainTick,
    /// While verbs run: timeouts, clients gone.
    VerbTick,
    /// Room for the frame that waited for its client (or the client is gone).
    VerbRoom(Result<tokio::sync::mpsc::OwnedPermit<Frame>, ()>),
}

/// Room in `sink` for one frame (never resolves without a sink).
async fn room(
    sink: Option<tokio::sync::mpsc::Sender<Frame>>,
) -> Result<tokio::sync::mpsc::OwnedPermit<Frame>, ()> {
    match sink {
        Some(s) => s.reserve_owned().await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

/// How often a draining incarnation is checked.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// A drain in progress (hot swap).
struct Draining {
    until: Instant,
    done: tokio::sync::oneshot::Sender<super::DrainOutcome>,
}

/// The watch loop's own state.
pub(super) struct Watch {
    /// Sequence number of the last heartbeat sent.
    sent: u64,
    /// Highest heartbeat sequence number answered.
    acked: u64,
    /// When the current heartbeat was answered.
    last_ack: Instant,
    /// cgroup CPU time already counted.
    cpu_last: u64,
    /// False once the plugin closed its end.
    ctl_open: bool,
    /// Control messages read since the last tick.
    messages: u32,
    /// Asked to drain (another incarnation takes over).
    draining: bool,
    /// The plugin said every batch it received is answered.
    drained: bool,
    /// The drain request being served.
    drain: Option<Draining>,
    /// Diagnostics verbs running in this incarnation.
    pub(super) verbs: Invocations,
}

impl Watch {
    fn reading(&self) -> bool {
        // A frame waiting for a slow client stops reading: the plugin's sends block instead
        // of the agent buffering its output.
        self.ctl_open && self.messages < MAX_CONTROL_PER_TICK && !self.verbs.has_pending()
    }
}

impl Supervisor {
    /// Watches a ready incarnation until it ends.
    pub(super) async fn watch(
        &self,
        run: &mut Running<'_>,
        requests: &mut mpsc::Receiver<Request>,
        verbs: &[CliVerb],
    ) -> End {
        let mut tick = tokio::time::interval(self.cfg.heartbeat.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut w = Watch {
            sent: 0,
            acked: 0,
            last_ack: Instant::now(),
            cpu_last: 0,
            ctl_open: true,
            messages: 0,
            draining: false,
            drained: false,
            drain: None,
            verbs: Invocations::new(&self.name, self.cfg.verbs.clone(), verbs, run.protocol),
        };
        let mut drain_tick = tokio::time::interval(DRAIN_POLL);
        let mut verb_tick = tokio::time::interval(Invocations::TICK);
        loop {
            let reading = w.reading();
            let event = tokio::select! {
                _ = run.exited.readable() => Event::Exited,
                (kind, detail) = self.ledger.quarantine_requested() => Event::Quarantine(kind, detail),
                m = run.ctl.recv(), if reading => Event::Control(m),
                _ = tick.tick() => Event::Tick,
                _ = drain_tick.tick(), if w.draining => Event::DrainTick,
                _ = verb_tick.tick(), if w.verbs.busy() => Event::VerbTick,
                p = room(w.verbs.pending_sink()), if w.verbs.has_pending() => Event::VerbRoom(p),
                r = requests.recv(), if !w.draining => Event::Request(r),
            };
            let end = match event {
                Event::Exited => Some(End::Crashed(ExitReason::Crash, String::new())),
                Event::Quarantine(kind, detail) => Some(self.on_quarantine(run, kind, detail)),
                Event::Control(Ok(Some(m))) if is_invocation_message(&m) => {
                    self.on_verb_message(run, &mut w, m);
                    None
                }
                Event::Control(m) => {
                    self.on_control(&mut w, m);
                    None
                }
                Event::VerbTick => {
                    self.on_verb_tick(run, &mut w);
                    None
                }
                Event::VerbRoom(p) => {
                    self.on_verb_room(run, &mut w, p);
                    None
                }
                Event::Request(Some(Request::Invoke(req))) => {
                    self.on_invoke(run, &mut w, req);
                    None
                }
                Event::Tick => self.on_tick(run, &mut w),
                Event::Request(Some(Request::Drain { timeout, done })) => {
                    self.start_drain(run, &mut w, timeout, done);
                    None
                }
                Event::DrainTick => self.on_drain_tick(run, &mut w).await,
                Event::Request(r) => Some(self.on_request(run, r).await),
            };
            if let Some(end) = end {
                return match (end, w.drain.take()) {
                    (end @ End::Drained(..), _) | (end, None) => end,
                    // Anything else that ends a draining incarnation (death, quarantine, hang)
                    // ends the drain too: what it did not answer goes to the new incarnation.
                    (_, Some(d)) => {
                        run.kill_and_reap().await;
                        End::Drained(d.done, super::DrainOutcome::Died)
                    }
                };
            }
        }
    }

    /// Hot swap: the new incarnation took over the link; this one answers what it has. A
    /// protocol-1 plugin knows no `drain`: its in-flight batches being answered is enough.
    fn start_drain(
        &self,
        run: &Running<'_>,
        w: &mut Watch,
        timeout: Duration,
        done: tokio::sync::oneshot::Sender<super::DrainOutcome>,
    ) {
        w.draining = true;
        w.drained = run.protocol < 2;
        w.drain = Some(Draining {
            until: Instant::now() + timeout,
            done,
        });
        if run.protocol >= 2 && run.ctl.send(&AgentMsg::Drain {}).is_err() {
            w.drained = true; // it is going away anyway; the timeout decides
        }
        tracing::info!(plugin = %self.name, pid = run.child.id(), ?timeout, "draining the old incarnation");
    }

    /// While draining: done when every batch sent to this incarnation is answered and the plugin
    /// acknowledged the drain; killed at the drain timeout.
    async fn on_drain_tick(&self, run: &mut Running<'_>, w: &mut Watch) -> Option<End> {
        let generation = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation;
        let answered = match (&self.link, generation) {
            (Some(l), Some(g)) => l.drained(g),
            _ => true,
        };
        let d = w.drain.as_ref()?;
        if answered && w.drained {
            let done = w.drain.take()?.done;
            self.graceful_stop(run).await;
            let _ = run.reap().await;
            tracing::info!(plugin = %self.name, pid = run.child.id(), "old incarnation drained and stopped");
            return Some(End::Drained(done, super::DrainOutcome::Acked));
        }
        if Instant::now() >= d.until {
            let done = w.drain.take()?.done;
            tracing::warn!(plugin = %self.name, pid = run.child.id(), "old incarnation did not drain in time; killing it (its unanswered batches go to the new one)");
            run.kill_and_reap().await;
            return Some(End::Drained(done, super::DrainOutcome::TimedOut));
        }
        None
    }

    fn on_quarantine(&self, run: &Running<'_>, kind: Violation, detail: String) -> End {
        let _ = run.cg.kill_all();
        End::Quarantine(format!(
            "{} violations, the last {kind}: {detail} (data_path.quarantine_after_malformed, data_path.max_output_ratio); fix the plugin, then `srediag plugin restart {}`",
            self.ledger.total(),
            self.name
        ))
    }

    /// Counts one control message towards the cap per heartbeat interval.
    pub(super) fn count_message(&self, w: &mut Watch) {
        w.messages += 1;
        if w.messages == MAX_CONTROL_PER_TICK {
            self.ledger.record(Violation::ControlFlood, 1, || {
                format!(
                    "{MAX_CONTROL_PER_TICK} control messages within one heartbeat interval; not reading more until the next"
                )
            });
        }
    }

    fn on_control(&self, w: &mut Watch, m: Result<Option<PluginMsg>, ChannelError>) {
        self.count_message(w);
        match m {
            Ok(Some(PluginMsg::HeartbeatAck { seq })) => {
                if seq <= w.acked || seq > w.sent {
                    self.ledger.record(Violation::HeartbeatFlood, 1, || {
                        format!(
                            "heartbeat answer {seq}; the agent sent up to {} and had {} answered",
                            w.sent, w.acked
                        )
                    });
                    return;
                }
                w.acked = seq;
                if seq == w.sent {
                    w.last_ack = Instant::now();
                }
            }
            Ok(Some(PluginMsg::Error { message })) => {
                self.metrics
                    .runtime_errors
                    .with_label_values(&[&self.name])
                    .inc();
                self.ledger.log().warn(
                    LogSource::Control,
                    &format!("plugin reported an error: {message}"),
                );
            }
            Ok(Some(PluginMsg::Health { status, message })) => {
                self.emit(super::events::HealthReported {
                    status,
                    message: &message,
                });
            }
            Ok(Some(PluginMsg::DrainAck {})) if w.draining => w.drained = true,
            Ok(Some(other)) => {
                self.metrics
                    .runtime_errors
                    .with_label_values(&[&self.name])
                    .inc();
                self.ledger.record(Violation::UnexpectedMessage, 1, || {
                    format!("unexpected control message {}", other.kind())
                });
            }
            Ok(None) => w.ctl_open = false,
            Err(ChannelError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                w.ctl_open = false
            }
            Err(e) => {
                self.metrics
                    .runtime_errors
                    .with_label_values(&[&self.name])
                    .inc();
                self.ledger.record(Violation::ControlMalformed, 1, || {
                    format!("bad control message: {e}")
                });
            }
        }
    }

    fn on_tick(&self, run: &Running<'_>, w: &mut Watch) -> Option<End> {
        w.messages = 0;
        if w.verbs.has_pending() {
            // The agent is not reading (a client is slow): the plugin's heartbeat answers wait
            // behind its verb output, through no fault of its own.
            w.last_ack = Instant::now();
        }
        let cpu = run.cg.cpu_usage_ns().map(|ns| {
            let delta = ns.saturating_sub(w.cpu_last);
            w.cpu_last = w.cpu_last.max(ns);
            (delta, ns)
        });
        self.emit(super::events::Accounted {
            memory: run.cg.memory_current(),
            cpu_ns: cpu,
            uptime: run.spawned.elapsed().as_secs(),
        });
        if w.last_ack.elapsed() > self.cfg.heartbeat.timeout {
            let _ = run.cg.kill_all();
            return Some(End::Crashed(
                ExitReason::Hang,
                format!(
                    "{}: no heartbeat answer for {:?}",
                    codes::HANG,
                    w.last_ack.elapsed()
                ),
            ));
        }
        let generation = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation;
        if let (Some(link), Some(g)) = (&self.link, generation)
            && let Some(stall) = link.stall(g)
        {
            let _ = run.cg.kill_all();
            return Some(End::Crashed(
                ExitReason::Hang,
                format!("{}: data path: {stall}", codes::HANG),
            ));
        }
        w.sent += 1;
        // A plugin that does not read its socket fills the buffer; the heartbeat timeout
        // decides then.
        let _ = run.ctl.send(&AgentMsg::Heartbeat { seq: w.sent });
        None
    }

    async fn on_request(&self, run: &mut Running<'_>, r: Option<Request>) -> End {
        let at = Instant::now();
        self.graceful_stop(run).await;
        let _ = run.reap().await;
        match r {
            Some(Request::Stop(done)) => End::Stopped(Some(done)),
            Some(Request::Restart) => End::Restart(at),
            Some(Request::Drain { done, .. }) => End::Drained(done, super::DrainOutcome::Acked),
            // Handled by the watch loop before it gets here.
            Some(Request::Invoke(_)) | None => End::Stopped(None),
        }
    }

    /// `shutdown` message → grace → SIGTERM → 0.5 s → kill the cgroup. Each step is logged
    /// with the pid: the hot-swap tests check from these lines that an old incarnation is never
    /// stopped before its successor is ready.
    pub(super) async fn graceful_stop(&self, run: &Running<'_>) {
        self.state(super::PluginState::Stopping);
        let grace = self.cfg.shutdown_grace;
        let pid = run.child.id();
        tracing::info!(plugin = %self.name, pid, ?grace, "asking the plugin to shut down");
        let _ = run.ctl.send(&AgentMsg::Shutdown {
            grace_ms: grace.as_millis() as u64,
        });
        if run.exit_within(grace).await {
            return;
        }
        // Through the pidfd: never a recycled pid. As pid 1 of its namespace the plugin only
        // receives SIGTERM when it handles it (the SDK does).
        tracing::warn!(plugin = %self.name, pid, "plugin did not exit within shutdown_grace; sending SIGTERM");
        let _ = run.child.signal(libc::SIGTERM);
        if run.exit_within(Duration::from_millis(500)).await {
            return;
        }
        tracing::warn!(plugin = %self.name, pid, "plugin ignored shutdown; killing its cgroup");
        let _ = run.cg.kill_all();
    }
}
