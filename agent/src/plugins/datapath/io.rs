//! The two threads that move one incarnation's batches: a writer (encode, publish) and a reader
//! (copy out, verify, decode). Ring waits are blocking futex waits, so they run on their own OS
//! threads, never on the async runtime; every wait is bounded (100 ms) so both threads notice a
//! stop request promptly whatever the plugin does.

use super::link::Link;
use srediag_plugin_sdk::control::DataPathInfo;
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::probe::{sampled, srediag_probe_consume, srediag_probe_publish};
use srediag_plugin_sdk::ring::{Frames, Ring, RingError, WaitOptions};
use srediag_plugin_sdk::wire::{self, Encoder, Tag};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);

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
                Box::new(move || write_loop(&link, tx, info.to_plugin_ring, batches, &stop)),
            )?
        };
        let reader = {
            let (link, stop) = (link.clone(), stop.clone());
            spawn(
                "srediag-ipc-r".into(),
                Box::new(move || read_loop(&link, rx, info.from_plugin_ring, &stop)),
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

fn write_loop(
    link: &Link,
    mut tx: srediag_plugin_sdk::ring::Producer,
    ring_id: u64,
    batches: Receiver<(u64, Arc<Records>)>,
    stop: &AtomicBool,
) {
    let mut enc = Encoder::new();
    let max = link.cfg.max_frame as usize;
    let counter = link
        .metrics
        .batches
        .with_label_values(&[&link.name, "to_plugin"]);
    loop {
        let (seq, records) = match batches.recv_timeout(TICK) {
            Ok(x) => x,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        };
        let bytes = match enc.encode(seq, &records) {
            Ok(b) if b.len() <= max => b,
            _ => {
                link.resplit(seq);
                continue;
            }
        };
        let probe = sampled(link.probe_sampling(), seq);
        loop {
            // Before each attempt (the last one's timestamp wins): once the frame is visible the
            // plugin may consume it at once, and its consume hit must find the timestamp.
            if probe {
                srediag_probe_publish(ring_id, seq, records.items());
            }
            match tx.push_timeout(Tag::Batch as u32, bytes, TICK) {
                Ok(()) => break,
                Err(RingError::TimedOut(_)) if !stop.load(Ordering::Relaxed) => {}
                Err(RingError::TimedOut(_)) | Err(RingError::Closed) => return,
                Err(e) => {
                    // Only the plugin can cause this (it owns the consumer's index).
                    link.violation(1, &format!("agent→plugin ring: {e}"));
                    return;
                }
            }
        }
        counter.inc();
    }
}

fn read_loop(
    link: &Link,
    mut rx: srediag_plugin_sdk::ring::Consumer,
    ring_id: u64,
    stop: &AtomicBool,
) {
    let mut frames = Frames::new();
    let mut seen_violations = 0;
    let mut drain_rounds = 0;
    let counter = link
        .metrics
        .batches
        .with_label_values(&[&link.name, "from_plugin"]);
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let r = if stopping {
            drain_rounds += 1;
            rx.try_recv(&mut frames)
        } else {
            rx.recv_timeout(&mut frames, TICK)
        };
        let v = rx.stats().peer_violations();
        if v > seen_violations {
            link.violation(
                v - seen_violations,
                "malformed frame or index on the plugin→agent ring",
            );
            seen_violations = v;
        }
        match r {
            Ok(0) if stopping => return,
            Ok(_) => {}
            Err(RingError::Closed) => return,
            Err(_) if stopping && drain_rounds > DRAIN_ROUNDS => return,
            Err(_) => continue,
        }
        for f in frames.iter() {
            match Tag::from_u32(f.tag) {
                Some(t @ (Tag::Result | Tag::Partial)) => match wire::decode(f.payload) {
                    Ok((seq, records)) => {
                        counter.inc();
                        if t == Tag::Result && sampled(link.probe_sampling(), seq) {
                            srediag_probe_consume(ring_id, seq, records.items());
                        }
                        link.answer(seq, records, t == Tag::Result);
                    }
                    Err(e) => link.violation(1, &format!("undecodable answer: {e}")),
                },
                Some(Tag::Keep) => match wire::parse_keep_payload(f.payload) {
                    Ok((seq, flags)) => {
                        counter.inc();
                        if sampled(link.probe_sampling(), seq) {
                            srediag_probe_consume(ring_id, seq, flags.len() as u64);
                        }
                        link.keep(seq, &flags);
                    }
                    Err(e) => link.violation(1, &format!("bad keep frame: {e}")),
                },
                Some(Tag::Fail) => match wire::parse_seq_payload(f.payload) {
                    Ok((seq, reason)) => {
                        counter.inc();
                        link.failed(seq, &reason);
                    }
                    Err(e) => link.violation(1, &format!("bad failure report: {e}")),
                },
                Some(Tag::Emit) => {
                    link.violation(1, "emit frame from a plugin that is not a receiver")
                }
                Some(Tag::Batch) | None => {
                    link.violation(1, &format!("unexpected frame tag {}", f.tag))
                }
            }
        }
        if stopping && drain_rounds > DRAIN_ROUNDS {
            return;
        }
    }
}
