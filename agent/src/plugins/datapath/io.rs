//! The two threads that move one incarnation's batches: a writer (encode, publish) and a reader
//! (copy out, verify, decode). Ring waits are blocking futex waits, so they run on their own OS
//! threads, never on the async runtime; every wait is bounded ([`TICK`]) so both threads notice a
//! stop request promptly whatever the plugin does.
//!
//! What a hostile plugin can make these threads spend is bounded:
//! - at the first violation in what the reader read (a bad frame or index, an answer to a batch
//!   that is not in flight, more output than the budget), the rest of that read is discarded and
//!   the reader sleeps until the next tick: at most ten violations a second reach the ledger,
//!   whatever the plugin writes, and each costs one log line at most (the ledger's log budget);
//! - wake-ups without data (a plugin poking the futex) past [`MAX_EMPTY_WAKEUPS`] a second are a
//!   violation, and the thread stops sleeping on the futex for the rest of the incarnation: it
//!   polls every [`POLL`] instead, which the plugin cannot speed up;
//! - a thread that stops because of the plugin (a broken index, a closed ring) while the plugin
//!   lives tells the link, and the supervisor ends the incarnation as `hang`.

use super::link::Link;
use crate::plugins::ledger::Violation;
use srediag_plugin_sdk::control::DataPathInfo;
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::probe::{sampled, srediag_probe_consume, srediag_probe_publish};
use srediag_plugin_sdk::ring::{Consumer, Frames, Producer, Ring, RingError, WaitOptions};
use srediag_plugin_sdk::wire::{self, Encoder, Tag};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(100);

/// Poll period of a thread that stopped trusting the futex (wake-up flood).
const POLL: Duration = Duration::from_millis(2);

/// Most wake-ups without data a second before it is a flood.
pub const MAX_EMPTY_WAKEUPS: u64 = 200;

/// Most `try_recv` rounds of the final drain after the plugin died (each reads everything
/// published; a dead plugin publishes nothing new, so one or two rounds are the norm).
const DRAIN_ROUNDS: usize = 64;

/// The running threads of one incarnation.
pub(super) struct IoThreads {
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

impl IoThreads {
    pub(super) fn start(
        link: Arc<Link>,
        generation: u64,
        to_plugin: Arc<Ring>,
        from_plugin: Arc<Ring>,
        info: DataPathInfo,
        batches: Receiver<(u64, Arc<Records>)>,
    ) -> Result<IoThreads, RingError> {
        let wait = WaitOptions::spin(link.cfg.spin);
        let tx = to_plugin.producer(wait)?;
        let rx = from_plugin.consumer(wait)?;
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| RingError::Config(format!("data path thread: {e}")))
        };
        let writer = {
            let (link, stop) = (link.clone(), stop.clone());
            spawn(
                "srediag-ipc-w".into(),
                Box::new(move || {
                    Writer::new(&link, generation, tx, info.to_plugin_ring, &stop).run(batches)
                }),
            )?
        };
        let reader = {
            let (link, stop) = (link.clone(), stop.clone());
            spawn(
                "srediag-ipc-r".into(),
                Box::new(move || {
                    Reader::new(&link, generation, rx, info.from_plugin_ring, &stop).run()
                }),
            )?
        };
        Ok(IoThreads {
            stop,
            writer: Some(writer),
            reader: Some(reader),
        })
    }

    /// Stops both threads; the reader drains what was published first. Blocks ≤ ~100 ms plus
    /// the drain.
    pub(super) fn stop_and_join(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in [self.writer.take(), self.reader.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

impl Drop for IoThreads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Counts wake-ups without data per second; true once they exceed [`MAX_EMPTY_WAKEUPS`].
struct WakeupGuard {
    window: Instant,
    seen: u64,
    polling: bool,
}

impl WakeupGuard {
    fn new() -> WakeupGuard {
        WakeupGuard {
            window: Instant::now(),
            seen: 0,
            polling: false,
        }
    }

    /// `total` is the endpoint's running count of empty wake-ups.
    fn check(&mut self, link: &Link, total: u64, ring: &str) {
        if self.polling || self.window.elapsed() < Duration::from_secs(1) {
            return;
        }
        let n = total - self.seen;
        self.seen = total;
        self.window = Instant::now();
        if n > MAX_EMPTY_WAKEUPS {
            self.polling = true;
            link.ledger.record(Violation::WakeupFlood, 1, || {
                format!(
                    "{n} wake-ups without data on the {ring} ring in one second; polling it every {POLL:?} from now on"
                )
            });
        }
    }
}

struct Writer<'a> {
    link: &'a Link,
    generation: u64,
    tx: Producer,
    ring_id: u64,
    stop: &'a AtomicBool,
    wakeups: WakeupGuard,
}

impl<'a> Writer<'a> {
    fn new(
        link: &'a Link,
        generation: u64,
        tx: Producer,
        ring_id: u64,
        stop: &'a AtomicBool,
    ) -> Writer<'a> {
        Writer {
            link,
            generation,
            tx,
            ring_id,
            stop,
            wakeups: WakeupGuard::new(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(mut self, batches: Receiver<(u64, Arc<Records>)>) {
        let mut enc = Encoder::new();
        let max = self.link.cfg.max_frame as usize;
        let counter = self
            .link
            .metrics
            .batches
            .with_label_values(&[&self.link.name, "to_plugin"]);
        loop {
            let (seq, records) = match batches.recv_timeout(TICK) {
                Ok(x) => x,
                Err(RecvTimeoutError::Timeout) if !self.stopping() => continue,
                Err(_) => return,
            };
            let bytes = match enc.encode(seq, &records) {
                Ok(b) if b.len() <= max => b,
                _ => {
                    self.link.resplit(seq, self.stop);
                    continue;
                }
            };
            self.link.sent(seq, bytes.len());
            let probe = sampled(self.link.probe_sampling(), seq);
            if !self.push(seq, records.items(), bytes, probe) {
                return;
            }
            counter.inc();
        }
    }

    /// Publishes one frame, waiting for space in bounded steps. False when the thread must end.
    fn push(&mut self, seq: u64, items: u64, bytes: &[u8], probe: bool) -> bool {
        loop {
            // Before each attempt (the last one's timestamp wins): once the frame is visible the
            // plugin may consume it at once, and its consume hit must find the timestamp.
            if probe {
                srediag_probe_publish(self.ring_id, seq, items);
            }
            let r = if self.wakeups.polling {
                let r = self.tx.try_push(Tag::Batch as u32, bytes);
                if matches!(r, Err(RingError::Full)) {
                    std::thread::sleep(POLL);
                }
                r
            } else {
                self.tx.push_timeout(Tag::Batch as u32, bytes, TICK)
            };
            self.wakeups
                .check(self.link, self.tx.stats().empty_wakeups, "agent→plugin");
            match r {
                Ok(()) => return true,
                Err(RingError::TimedOut(_) | RingError::Full) if !self.stopping() => {}
                Err(RingError::TimedOut(_) | RingError::Full) => return false,
                Err(RingError::Closed) => {
                    if !self.stopping() {
                        self.link.broken(
                            self.generation,
                            "the plugin closed its input ring (agent→plugin)".into(),
                        );
                    }
                    return false;
                }
                Err(e) => {
                    // Only the plugin can cause this (it owns the consumer's index).
                    self.link.ledger.record(Violation::MalformedFrame, 1, || {
                        format!("agent→plugin ring: {e}")
                    });
                    self.link.broken(
                        self.generation,
                        format!("the plugin broke its input ring (agent→plugin): {e}"),
                    );
                    return false;
                }
            }
        }
    }
}

struct Reader<'a> {
    link: &'a Link,
    generation: u64,
    rx: Consumer,
    ring_id: u64,
    stop: &'a AtomicBool,
    wakeups: WakeupGuard,
    seen_violations: u64,
}

impl<'a> Reader<'a> {
    fn new(
        link: &'a Link,
        generation: u64,
        rx: Consumer,
        ring_id: u64,
        stop: &'a AtomicBool,
    ) -> Reader<'a> {
        Reader {
            link,
            generation,
            rx,
            ring_id,
            stop,
            wakeups: WakeupGuard::new(),
            seen_violations: 0,
        }
    }

    /// Sleeps until the next tick (or the stop request): after a violation, the plugin waits.
    fn penalty(&self) {
        let until = Instant::now() + TICK;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn run(mut self) {
        let mut frames = Frames::new();
        let mut drain_rounds = 0;
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            let r = if stopping {
                drain_rounds += 1;
                self.rx.try_recv(&mut frames)
            } else if self.wakeups.polling {
                let r = self.rx.try_recv(&mut frames);
                if matches!(r, Ok(0)) {
                    std::thread::sleep(POLL);
                }
                r
            } else {
                self.rx.recv_timeout(&mut frames, TICK)
            };
            let stats = self.rx.stats();
            self.wakeups
                .check(self.link, stats.empty_wakeups, "plugin→agent");
            let mut refused = false;
            let v = stats.peer_violations();
            if v > self.seen_violations {
                self.link.ledger.record(
                    Violation::MalformedFrame,
                    v - self.seen_violations,
                    || "malformed frame or index on the plugin→agent ring".into(),
                );
                self.seen_violations = v;
                refused = true;
            }
            match r {
                Ok(0) if stopping => return,
                Ok(_) => {}
                Err(RingError::Closed) => {
                    if !stopping {
                        self.link.broken(
                            self.generation,
                            "the plugin closed its output ring (plugin→agent)".into(),
                        );
                    }
                    return;
                }
                Err(_) if stopping && drain_rounds > DRAIN_ROUNDS => return,
                Err(_) => {}
            }
            // A quarantined plugin is being killed: what it still publishes is not looked at
            // (its unanswered batches stay in flight for an incarnation an operator allows).
            if !refused && !self.link.ledger.quarantined() {
                for f in frames.iter() {
                    if !self.frame(f.tag, f.payload) {
                        refused = true;
                        break; // the rest of this read is not looked at
                    }
                }
            }
            if stopping && drain_rounds > DRAIN_ROUNDS {
                return;
            }
            if refused && !stopping {
                self.penalty();
            }
        }
    }

    /// Handles one frame; false when it was a violation.
    fn frame(&self, tag: u32, payload: &[u8]) -> bool {
        let link = self.link;
        let counter = || {
            link.metrics
                .batches
                .with_label_values(&[&link.name, "from_plugin"])
                .inc()
        };
        match Tag::from_u32(tag) {
            Some(t @ (Tag::Result | Tag::Partial)) => match wire::decode(payload) {
                Ok((seq, records)) => {
                    counter();
                    if t == Tag::Result && sampled(link.probe_sampling(), seq) {
                        srediag_probe_consume(self.ring_id, seq, records.items());
                    }
                    link.answer(seq, records, payload.len(), t == Tag::Result, self.stop)
                }
                Err(e) => {
                    link.ledger.record(Violation::MalformedFrame, 1, || {
                        format!("undecodable answer: {e}")
                    });
                    false
                }
            },
            Some(Tag::Keep) => match wire::parse_keep_payload(payload) {
                Ok((seq, flags)) => {
                    counter();
                    if sampled(link.probe_sampling(), seq) {
                        srediag_probe_consume(self.ring_id, seq, flags.len() as u64);
                    }
                    link.keep(seq, &flags, self.stop)
                }
                Err(e) => {
                    link.ledger.record(Violation::MalformedFrame, 1, || {
                        format!("bad keep frame: {e}")
                    });
                    false
                }
            },
            Some(Tag::Fail) => match wire::parse_seq_payload(payload) {
                Ok((seq, reason)) => {
                    counter();
                    link.failed(seq, &reason, self.stop)
                }
                Err(e) => {
                    link.ledger.record(Violation::MalformedFrame, 1, || {
                        format!("bad failure report: {e}")
                    });
                    false
                }
            },
            Some(Tag::Emit) => match wire::decode(payload) {
                Ok((_, records)) => {
                    counter();
                    link.emitted(records, self.stop)
                }
                Err(e) => {
                    link.ledger.record(Violation::MalformedFrame, 1, || {
                        format!("undecodable emission: {e}")
                    });
                    false
                }
            },
            Some(Tag::Batch) | None => {
                link.ledger.record(Violation::MalformedFrame, 1, || {
                    format!("unexpected frame tag {tag}")
                });
                false
            }
        }
    }
}
