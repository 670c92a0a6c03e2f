//! The plugin side of the data path: a thread that takes batches from the agent→plugin ring,
//! hands them to the plugin's component and writes results to the plugin→agent ring.

use crate::PluginError;
use crate::component::{EMIT_TIMEOUT, Exporter, Processor, Receiver, RingEmitter};
use crate::control::DataPathInfo;
use crate::data::Records;
use crate::probe::{sampled, srediag_probe_consume, srediag_probe_publish};
use crate::ring::{Consumer, Frames, Producer, Ring, RingError, WaitOptions};
use crate::wire::{self, Encoder, Tag};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The data component a plugin registered.
pub(crate) enum DataComponent {
    Processor(Box<dyn Processor>),
    Exporter(Box<dyn Exporter>),
    Receiver(Box<dyn Receiver>),
}

/// Both rings of one plugin, opened from the fds the agent passed.
pub(crate) struct Rings {
    to_plugin: Ring,
    from_plugin: Ring,
    info: DataPathInfo,
}

impl Rings {
    /// Maps the rings named in the welcome message. Takes ownership of the two fds.
    pub(crate) fn open(info: DataPathInfo) -> Result<Rings, String> {
        let own = |fd: i32| {
            // SAFETY: fcntl(F_GETFD) only checks that the fd is open.
            if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(format!("data path fd {fd} is not open"));
            }
            // SAFETY: the agent passed this fd for the ring and nothing else in the plugin owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let to_plugin = Ring::open(own(info.to_plugin_fd)?, None)
            .map_err(|e| format!("agent→plugin ring: {e}"))?;
        let from_plugin = Ring::open(own(info.from_plugin_fd)?, None)
            .map_err(|e| format!("plugin→agent ring: {e}"))?;
        Ok(Rings {
            to_plugin,
            from_plugin,
            info,
        })
    }
}

struct Sender {
    tx: Producer,
    ring: Ring,
    ring_id: u64,
    enc: Encoder,
    stop: Arc<AtomicBool>,
}

impl Sender {
    /// Pushes one frame, waiting for space in bounded steps; gives up only when stopping or when
    /// `limit` passed.
    fn push(&mut self, tag: Tag, payload_of: &[u8], limit: Duration) -> Result<(), PluginError> {
        let until = Instant::now() + limit;
        loop {
            match self
                .tx
                .push_timeout(tag as u32, payload_of, Duration::from_millis(100))
            {
                Ok(()) => return Ok(()),
                Err(RingError::TimedOut(_))
                    if Instant::now() < until && !self.stop.load(Ordering::Relaxed) => {}
                Err(e) => return Err(PluginError(format!("plugin→agent ring: {e}"))),
            }
        }
    }

    /// Sends `records` for `seq` under `tag`, splitting into `Partial` frames when one frame
    /// cannot hold it.
    fn send_records(
        &mut self,
        tag: Tag,
        seq: u64,
        records: Records,
        limit: Duration,
    ) -> Result<(), PluginError> {
        let items = records.items();
        let max = self.tx.max_frame();
        let len = self
            .enc
            .encode(seq, &records)
            .map_err(|e| PluginError(e.to_string()))?
            .len();
        if len > max {
            if items <= 1 {
                return Err(PluginError(format!(
                    "one record encodes to {len} bytes, more than the ring's {max}-byte frame limit"
                )));
            }
            let mut parts = records.split((items as usize).div_ceil(2)).into_iter();
            let first = parts.next().expect("split of a non-empty batch");
            let rest: Vec<Records> = parts.collect();
            let lead = if tag == Tag::Result {
                Tag::Partial
            } else {
                tag
            };
            self.send_records(lead, seq, first, limit)?;
            let n = rest.len();
            for (i, r) in rest.into_iter().enumerate() {
                self.send_records(if i + 1 == n { tag } else { lead }, seq, r, limit)?;
            }
            return Ok(());
        }
        let bytes = self
            .enc
            .encode(seq, &records)
            .map_err(|e| PluginError(e.to_string()))?
            .to_vec();
        // Before the push: once the frame is visible the agent may consume it at once, and its
        // consume hit must find the publish timestamp (a split answer's last part wins).
        self.probe(seq, items);
        self.push(tag, &bytes, limit)?;
        Ok(())
    }

    fn probe(&self, seq: u64, items: u64) {
        if sampled(self.ring.probe_sampling(), seq) {
            srediag_probe_publish(self.ring_id, seq, items);
        }
    }
}

/// Runs the data path until `stop` is set or the agent closes the ring. Errors the plugin survives
/// are passed to `report`.
pub(crate) fn serve(
    rings: Rings,
    component: DataComponent,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    report: &dyn Fn(String),
    drained: &dyn Fn(),
) {
    let Rings {
        to_plugin,
        from_plugin,
        info,
    } = rings;
    let (tx, rx) = match (
        from_plugin.producer(WaitOptions::default()),
        to_plugin.consumer(WaitOptions::default()),
    ) {
        (Ok(tx), Ok(rx)) => (tx, rx),
        (Err(e), _) | (_, Err(e)) => {
            report(format!("data path: {e}"));
            return;
        }
    };
    let mut sender = Sender {
        tx,
        ring: from_plugin,
        ring_id: info.from_plugin_ring,
        enc: Encoder::new(),
        stop: stop.clone(),
    };
    match component {
        DataComponent::Receiver(mut r) => {
            let mut seq = 0u64;
            let mut send = |records: Records| {
                seq += 1;
                sender.send_records(Tag::Emit, seq, records, EMIT_TIMEOUT)
            };
            // A drain (hot swap) stops a receiver like a shutdown: the next incarnation emits.
            let stopping = Arc::new(AtomicBool::new(false));
            let watcher = {
                let (stop, drain, stopping) = (stop.clone(), drain.clone(), stopping.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && !drain.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    stopping.store(true, Ordering::SeqCst);
                })
            };
            let mut emitter = RingEmitter {
                stop: stopping,
                send: &mut send,
            };
            if let Err(e) = r.run(&mut emitter) {
                report(format!("receiver: {e}"));
            }
            let _ = watcher.join();
            if drain.swap(false, Ordering::SeqCst) {
                drained();
            }
        }
        DataComponent::Processor(p) => consume(
            rx,
            to_plugin,
            info,
            sender,
            Handler::P(p),
            (&stop, &drain),
            report,
            drained,
        ),
        DataComponent::Exporter(e) => consume(
            rx,
            to_plugin,
            info,
            sender,
            Handler::E(e),
            (&stop, &drain),
            report,
            drained,
        ),
    }
}

/// Answers batch `seq` with keep flags (or its failure).
fn answer_flags(
    sender: &mut Sender,
    seq: u64,
    items: u64,
    flags: Result<Vec<bool>, PluginError>,
    patience: Duration,
) -> Result<(), PluginError> {
    match flags {
        Ok(flags) => {
            // Probe first: the agent may consume the frame as soon as it is visible.
            sender.probe(seq, items);
            sender.push(Tag::Keep, &wire::keep_payload(seq, &flags), patience)?;
            Ok(())
        }
        Err(e) => sender.push(Tag::Fail, &wire::fail_payload(seq, &e.0), patience),
    }
}

enum Handler {
    P(Box<dyn Processor>),
    E(Box<dyn Exporter>),
}

/// Takes batches until stopped. `(stop, drain)`: once `drain` is set, the first empty read (every
/// batch received so far is answered: the agent sends nothing new after `drain`) calls `drained`.
#[allow(clippy::too_many_arguments)]
fn consume(
    mut rx: Consumer,
    ring: Ring,
    info: DataPathInfo,
    mut sender: Sender,
    mut handler: Handler,
    (stop, drain): (&AtomicBool, &AtomicBool),
    report: &dyn Fn(String),
    drained: &dyn Fn(),
) {
    let mut frames = Frames::new();
    // Results wait for ring space as long as the agent lives: the agent, not the plugin, decides
    // when a stalled link is dead (heartbeats).
    let patience = Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(&mut frames, Duration::from_millis(100)) {
            Ok(0) => {
                if drain.swap(false, Ordering::SeqCst) {
                    drained();
                }
                continue;
            }
            Ok(_) => {}
            Err(RingError::Closed) => return,
            Err(e) => {
                report(format!("agent→plugin ring: {e}"));
                continue;
            }
        }
        for f in frames.iter() {
            if Tag::from_u32(f.tag) != Some(Tag::Batch) {
                report(format!(
                    "unexpected frame tag {} on the agent→plugin ring",
                    f.tag
                ));
                continue;
            }
            let verified = match wire::verify(f.payload) {
                Ok(v) => v,
                Err(e) => {
                    report(format!("undecodable batch from the agent: {e}"));
                    continue;
                }
            };
            let seq = verified.seq();
            // Read in place first: a processor that only needs to look at log records answers
            // with flags without decoding anything.
            let view = verified.logs_view();
            if let Some(v) = &view
                && sampled(ring.probe_sampling(), seq)
            {
                srediag_probe_consume(info.to_plugin_ring, seq, v.items());
            }
            let flags = match (&mut handler, &view) {
                (Handler::P(p), Some(v)) => p.keep_logs_view(v).map(|r| (r, v.items())),
                _ => None,
            };
            let sent = if let Some((flags, items)) = flags {
                answer_flags(&mut sender, seq, items, flags, patience)
            } else {
                let records = match verified.decode() {
                    Ok((_, r)) => r,
                    Err(e) => {
                        report(format!("undecodable batch from the agent: {e}"));
                        continue;
                    }
                };
                let items = records.items();
                if view.is_none() && sampled(ring.probe_sampling(), seq) {
                    srediag_probe_consume(info.to_plugin_ring, seq, items);
                }
                let flags = match &mut handler {
                    Handler::P(p) => p.keep(&records),
                    Handler::E(_) => None,
                };
                match flags {
                    Some(flags) => answer_flags(&mut sender, seq, items, flags, patience),
                    None => {
                        let result = match &mut handler {
                            Handler::P(p) => p.process(records),
                            Handler::E(e) => e
                                .export(records)
                                .map(|()| Records::Logs(Default::default())),
                        };
                        match result {
                            Ok(out) => sender.send_records(Tag::Result, seq, out, patience),
                            Err(e) => {
                                sender.push(Tag::Fail, &wire::fail_payload(seq, &e.0), patience)
                            }
                        }
                    }
                }
            };
            if let Err(e) = sent {
                report(format!("sending the result of batch {seq}: {e}"));
                return;
            }
        }
    }
}
