//! One plugin's link: the in-flight window, sequence numbers, attach/detach per incarnation, the
//! output budget and the answer timeout.
//!
//! **Ownership across a hot swap.** During a swap two supervisors share the link: the old one's
//! (its incarnation drains) and the new one's. The link belongs to one of them, the *owner*
//! (named by its [`Slot`]): the first to attach, then whoever took the link over. Only the owner
//! attaches an incarnation or parks the link. Without that, an old supervisor whose incarnation
//! died just before the takeover restarted it and attached it *after*, demoting the new one to
//! "draining" for good (the data path stalled with nothing to say why), and an old supervisor
//! quarantined during (or before) the swap left the link parked, so the stage dropped every batch
//! as `unavailable` while the new incarnation served (`tests/tests/plugin_swap.rs`).

use super::io;
use super::metrics::DataPathMetrics;
use crate::model::Signal;
use crate::plugins::config::DataPathConfig;
use crate::plugins::ledger::{Ledger, Violation};
use crate::plugins::supervisor::Slot;
use srediag_plugin_sdk::control::DataPathInfo;
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::ring::{Ring, RingConfig, RingError, WakeMode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Outputs the reader may have handed to the stage and the stage not taken yet. Past it the
/// reader waits (and stops reading the ring, so the plugin waits too): a plugin can never make
/// the agent hold more than this many decoded answers, whatever it publishes.
pub const OUTPUT_QUEUE: usize = 8;

/// Records an answer may hold beyond `max_output_ratio` × the batch's records.
const OUTPUT_SLACK_ITEMS: u64 = 256;

/// Bytes an answer may hold beyond `max_output_ratio` × the batch's encoded size.
const OUTPUT_SLACK_BYTES: u64 = 64 * 1024;

/// And per input record (an enricher adding an attribute to tiny records).
const OUTPUT_SLACK_BYTES_PER_RECORD: u64 = 1024;

/// What a plugin's link carries, from the plugin's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Batches go to the plugin; its answers (records, keep flags) go on downstream.
    Processor,
    /// Batches go to the plugin; its answer acknowledges delivery (an empty `Result`) or a
    /// definitive failure (`Fail`).
    Exporter,
    /// Nothing goes to the plugin; what it emits enters the pipelines that list it.
    Receiver,
}

impl Role {
    /// The role of a plugin of type `t` in a pipeline (`None`: it has no data path).
    pub fn of(t: srediag_plugin_sdk::PluginType) -> Option<Role> {
        use srediag_plugin_sdk::PluginType as T;
        match t {
            T::Processor => Some(Role::Processor),
            T::Exporter => Some(Role::Exporter),
            T::Receiver => Some(Role::Receiver),
            T::Extension | T::Diagnostics => None,
        }
    }
}

/// What the link hands back to its pipeline stage.
#[derive(Debug)]
pub enum Output {
    /// Records the plugin passed on (a processor's answer, a receiver's emission).
    Records(Records),
    /// An exporter plugin delivered a batch.
    Delivered {
        /// Its signal.
        signal: Signal,
        /// Records in it.
        items: u64,
    },
    /// A batch that is gone for good: the plugin refused it (an exporter: failed to deliver it
    /// for good), or it could not be sent.
    Dropped {
        /// Its signal.
        signal: Signal,
        /// Records in it.
        items: u64,
        /// Why.
        reason: &'static str,
    },
}

/// The signal of `records`.
pub fn signal_of(records: &Records) -> Signal {
    match records {
        Records::Logs(_) => Signal::Logs,
        Records::Metrics(_) => Signal::Metrics,
    }
}

struct InFlight {
    records: Arc<Records>,
    /// One window slot, shared by the parts of a batch the writer had to split.
    _permit: Arc<OwnedSemaphorePermit>,
    /// Items already forwarded from `Partial` answers (duplicated if the batch is re-sent).
    forwarded: u64,
    /// Items and payload bytes answered so far by the current incarnation (the output budget).
    answered_items: u64,
    answered_bytes: u64,
    /// Encoded size of the batch as last sent (the output budget's base).
    sent_bytes: u64,
    /// Handed to an incarnation at least once (a re-send counts as a redelivery).
    sent: bool,
    /// The attachment (incarnation) it was last handed to; 0: none.
    generation: u64,
    /// Since when the current incarnation owes an answer, and the link's paused time then.
    since: Instant,
    paused_then: Duration,
}

struct Attached {
    /// Which attachment this is (an incarnation's handle on the link).
    generation: u64,
    to_io: std::sync::mpsc::Sender<(u64, Arc<Records>)>,
    io: io::IoThreads,
    rings: [Arc<Ring>; 2],
    /// Why its I/O stopped while the plugin lives (the supervisor ends the incarnation).
    broken: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// The supervisor the link belongs to (module doc); `None` until the first attach.
    owner: Option<Slot>,
    next_seq: u64,
    next_generation: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// The incarnation new batches go to.
    current: Option<Attached>,
    /// During a hot swap: the previous incarnation, answering what it was sent before the new
    /// one took over; it gets nothing new.
    draining: Option<Attached>,
}

impl Inner {
    fn attachment(&mut self, generation: u64) -> Option<&mut Attached> {
        [self.current.as_mut(), self.draining.as_mut()]
            .into_iter()
            .flatten()
            .find(|a| a.generation == generation)
    }
}

/// The readers' waits for the stage (any of them waiting counts once).
#[derive(Default)]
struct Pause {
    waiting: u32,
    since: Option<Instant>,
    total: Duration,
}

/// The rings of an incarnation that is being started.
pub struct Prepared {
    /// agent→plugin.
    pub to_plugin: Ring,
    /// plugin→agent.
    pub from_plugin: Ring,
    /// What the welcome message tells the plugin.
    pub info: DataPathInfo,
}

static RING_IDS: AtomicU64 = AtomicU64::new(1);

/// One plugin's data path, across its incarnations.
pub struct Link {
    /// Plugin name.
    pub name: String,
    /// What the link carries.
    pub role: Role,
    /// Settings.
    pub cfg: DataPathConfig,
    inner: Mutex<Inner>,
    window: Arc<Semaphore>,
    out_tx: mpsc::Sender<Output>,
    out_rx: Mutex<Option<mpsc::Receiver<Output>>>,
    pub(super) metrics: DataPathMetrics,
    pub(super) ledger: Arc<Ledger>,
    /// Time the readers spent (and are spending) waiting for the stage to take outputs: not the
    /// plugin's fault, so it does not count towards the answer timeout.
    pause: Mutex<Pause>,
    probe_sampling: std::sync::atomic::AtomicU32,
    /// True while the plugin is parked (quarantined or rejected): it does not come back without
    /// an operator, so its stage stops waiting for it.
    parked: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A ready incarnation could not be connected to the link.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Its rings or I/O threads could not be set up.
    #[error("{0}")]
    Ring(#[from] RingError),
    /// Another supervisor's incarnation took the link over (hot swap): this supervisor is done.
    #[error("a hot swap's new incarnation serves the data path now")]
    Superseded,
}

/// Why a link says its incarnation must end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stall {
    /// The oldest batch has been waiting for its answer too long.
    Unanswered {
        /// Its sequence number.
        seq: u64,
        /// How long (time the agent was not taking answers excluded).
        waited: Duration,
        /// `data_path.answer_timeout`.
        timeout: Duration,
    },
    /// An I/O thread stopped while the plugin lives (the plugin closed or broke a ring).
    Broken(String),
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::Unanswered {
                seq,
                waited,
                timeout,
            } => write!(
                f,
                "batch {seq} unanswered for {:.1}s (data_path.answer_timeout {timeout:?})",
                waited.as_secs_f64()
            ),
            Stall::Broken(why) => write!(f, "{why}"),
        }
    }
}

impl Link {
    /// A link with nothing attached.
    pub fn new(
        name: &str,
        role: Role,
        cfg: DataPathConfig,
        metrics: DataPathMetrics,
        ledger: Arc<Ledger>,
    ) -> Link {
        let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
        metrics.oldest.with_label_values(&[name]).set(0.0);
        Link {
            name: name.to_string(),
            role,
            window: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            probe_sampling: cfg.probe_sampling.into(),
            cfg,
            inner: Mutex::default(),
            out_tx,
            out_rx: Mutex::new(Some(out_rx)),
            metrics,
            ledger,
            pause: Mutex::new(Pause::default()),
            parked: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The supervisor of `owner` parked the plugin (quarantined, rejected: `true`) or starts it
    /// again. Ignored from a supervisor the link does not belong to (a swapped-out one).
    pub fn park(&self, parked: bool, owner: Slot) {
        let g = self.lock();
        if g.owner.is_none_or(|o| o == owner) {
            self.parked.send_replace(parked);
        }
    }

    /// True while the plugin is parked.
    pub fn is_parked(&self) -> bool {
        *self.parked.borrow()
    }

    /// Resolves once the plugin is parked.
    pub async fn until_parked(&self) {
        let mut rx = self.parked.subscribe();
        let _ = rx.wait_for(|p| *p).await;
    }

    /// Why the plugin's stage cannot deliver right now, if it cannot: parked, or the oldest
    /// batch has waited more than half the answer timeout. For readiness.
    pub fn not_delivering(&self) -> Option<String> {
        if self.is_parked() && self.cfg.on_unavailable == crate::plugins::config::Unavailable::Block
        {
            return Some(format!(
                "plugin {} is not running (quarantined or rejected; `srediag plugin restart {}`)",
                self.name, self.name
            ));
        }
        match self.oldest() {
            Some((seq, waited)) if waited > self.cfg.answer_timeout / 2 => Some(format!(
                "plugin {}: batch {seq} unanswered for {:.1}s",
                self.name,
                waited.as_secs_f64()
            )),
            _ => None,
        }
    }

    /// Records in the batches sent and not answered.
    pub fn in_flight_items(&self) -> u64 {
        self.lock()
            .in_flight
            .values()
            .map(|f| f.records.items())
            .sum()
    }

    /// Counts records a receiver plugin emitted for a signal no pipeline of it takes
    /// (`reason="no_pipeline"`).
    pub fn dropped_no_pipeline(&self, signal: Signal, items: u64) {
        let _ = signal;
        self.metrics
            .dropped
            .with_label_values(&[&self.name, "no_pipeline"])
            .inc_by(items);
    }

    /// Counts records a parked plugin's stage dropped (`reason="unavailable"`).
    pub fn dropped_unavailable(&self, items: u64) {
        self.metrics
            .dropped
            .with_label_values(&[&self.name, "unavailable"])
            .inc_by(items);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All the time the agent was not taking answers, including a wait still going on.
    fn paused(&self) -> Duration {
        let p = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        p.total + p.since.map(|t| t.elapsed()).unwrap_or_default()
    }

    fn pause_begins(&self) {
        let mut p = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        p.waiting += 1;
        p.since.get_or_insert_with(Instant::now);
    }

    fn pause_ends(&self) {
        let mut p = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        p.waiting = p.waiting.saturating_sub(1);
        if p.waiting == 0
            && let Some(t) = p.since.take()
        {
            p.total += t.elapsed();
        }
    }

    /// The stage's receiving end of the outputs (once).
    pub fn take_output(&self) -> Option<mpsc::Receiver<Output>> {
        self.out_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Waits for a window slot (backpressure: a plugin that does not answer stops the stage).
    pub async fn slot(&self) -> Arc<OwnedSemaphorePermit> {
        Arc::new(
            self.window
                .clone()
                .acquire_owned()
                .await
                .expect("the window semaphore is never closed"),
        )
    }

    /// Submits one batch (already cut to `max_batch_records`) holding a window slot.
    pub fn submit(&self, records: Records, permit: Arc<OwnedSemaphorePermit>) {
        let mut g = self.lock();
        self.insert(&mut g, Arc::new(records), permit);
    }

    fn insert(&self, g: &mut Inner, records: Arc<Records>, permit: Arc<OwnedSemaphorePermit>) {
        g.next_seq += 1;
        let seq = g.next_seq;
        let generation = match &g.current {
            Some(a) if a.to_io.send((seq, records.clone())).is_ok() => a.generation,
            _ => 0,
        };
        g.in_flight.insert(
            seq,
            InFlight {
                records,
                _permit: permit,
                forwarded: 0,
                answered_items: 0,
                answered_bytes: 0,
                sent_bytes: 0,
                sent: generation != 0,
                generation,
                since: Instant::now(),
                paused_then: self.paused(),
            },
        );
        self.gauge(g);
    }

    fn gauge(&self, g: &Inner) {
        self.metrics
            .in_flight
            .with_label_values(&[&self.name])
            .set(g.in_flight.len() as i64);
    }

    /// True while an incarnation is attached (the plugin is ready).
    pub fn available(&self) -> bool {
        self.lock().current.is_some()
    }

    /// Counts records passed on without the plugin (`on_unavailable: bypass`).
    pub fn bypassed(&self, items: u64) {
        self.metrics
            .bypassed
            .with_label_values(&[&self.name])
            .inc_by(items);
    }

    /// Batches sent and not answered.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// How long the oldest batch has been waiting for the current incarnation's answer (time
    /// the agent was not taking answers excluded); zero when nothing is in flight or nothing is
    /// attached. Also updates `srediag_plugin_ipc_oldest_in_flight_seconds`.
    pub fn oldest(&self) -> Option<(u64, Duration)> {
        let g = self.lock();
        let paused = self.paused();
        let oldest = match &g.current {
            Some(a) => g
                .in_flight
                .iter()
                .find(|(_, f)| f.generation == a.generation)
                .map(|(seq, f)| {
                    let waited = f
                        .since
                        .elapsed()
                        .saturating_sub(paused.saturating_sub(f.paused_then));
                    (*seq, waited)
                }),
            None => None,
        };
        self.metrics
            .oldest
            .with_label_values(&[&self.name])
            .set(oldest.map(|(_, d)| d.as_secs_f64()).unwrap_or(0.0));
        oldest
    }

    /// Whether incarnation `generation` must end: its I/O broke, or (while it is the current one) its
    /// oldest batch waited longer than `data_path.answer_timeout`.
    pub fn stall(&self, generation: u64) -> Option<Stall> {
        let current = {
            let mut g = self.lock();
            if let Some(why) = g.attachment(generation).and_then(|a| a.broken.clone()) {
                return Some(Stall::Broken(why));
            }
            g.current
                .as_ref()
                .is_some_and(|a| a.generation == generation)
        };
        if !current {
            return None;
        }
        match self.oldest() {
            Some((seq, waited)) if waited > self.cfg.answer_timeout => Some(Stall::Unanswered {
                seq,
                waited,
                timeout: self.cfg.answer_timeout,
            }),
            _ => None,
        }
    }

    /// An I/O thread of attachment `generation` stopped for a reason the plugin caused, while the
    /// plugin lives.
    pub(super) fn broken(&self, generation: u64, why: String) {
        let mut g = self.lock();
        if let Some(a) = g.attachment(generation)
            && a.broken.is_none()
        {
            a.broken = Some(why);
        }
    }

    /// New rings for an incarnation about to be spawned.
    pub fn prepare(&self) -> Result<Prepared, RingError> {
        let cfg = RingConfig {
            capacity: self.cfg.ring_capacity as usize,
            max_frame: self.cfg.max_frame as usize,
            wake: WakeMode::Futex,
        };
        let to_plugin = Ring::create(cfg)?;
        let from_plugin = Ring::create(cfg)?;
        let every = self.probe_sampling.load(Ordering::Relaxed);
        to_plugin.set_probe_sampling(every);
        from_plugin.set_probe_sampling(every);
        let info = DataPathInfo {
            to_plugin_fd: srediag_plugin_sdk::control::TO_PLUGIN_FD,
            from_plugin_fd: srediag_plugin_sdk::control::FROM_PLUGIN_FD,
            to_plugin_ring: RING_IDS.fetch_add(1, Ordering::Relaxed),
            from_plugin_ring: RING_IDS.fetch_add(1, Ordering::Relaxed),
        };
        Ok(Prepared {
            to_plugin,
            from_plugin,
            info,
        })
    }

    /// Starts the I/O threads of a ready incarnation's rings.
    fn connect(self: &Arc<Self>, p: Prepared) -> Result<Attached, RingError> {
        let generation = {
            let mut g = self.lock();
            g.next_generation += 1;
            g.next_generation
        };
        let to_plugin = Arc::new(p.to_plugin);
        let from_plugin = Arc::new(p.from_plugin);
        let (tx, rx) = std::sync::mpsc::channel();
        let io = io::IoThreads::start(
            self.clone(),
            generation,
            to_plugin.clone(),
            from_plugin.clone(),
            p.info,
            rx,
        )?;
        Ok(Attached {
            generation,
            to_io: tx,
            io,
            rings: [to_plugin, from_plugin],
            broken: None,
        })
    }

    /// Connects a ready incarnation of `owner`'s supervisor and re-sends it every batch still in
    /// flight and not handed to a live incarnation (in `seq` order) before anything new. The
    /// answer clock of each starts now. Returns the attachment's generation (what
    /// [`Link::detach`] takes); [`AttachError::Superseded`] when the link belongs to another
    /// supervisor (a hot swap took it over).
    pub fn attach(self: &Arc<Self>, p: Prepared, owner: Slot) -> Result<u64, AttachError> {
        let superseded = |g: &Inner| g.owner.is_some_and(|o| o != owner);
        if superseded(&self.lock()) {
            return Err(AttachError::Superseded);
        }
        let a = self.connect(p)?;
        let generation = a.generation;
        let mut g = self.lock();
        if superseded(&g) {
            // Taken over while this one's threads started.
            drop(g);
            self.disconnect(a);
            return Err(AttachError::Superseded);
        }
        g.owner = Some(owner);
        let orphan = self.install(&mut g, a);
        drop(g);
        if let Some(o) = orphan {
            self.disconnect(o);
        }
        Ok(generation)
    }

    /// Makes `a` the current attachment and hands it what nobody live holds. Returns an
    /// attachment to disconnect once the lock is released (none in practice: only the owner
    /// attaches, after its previous incarnation detached).
    fn install(&self, g: &mut Inner, a: Attached) -> Option<Attached> {
        let mut orphan = None;
        if let Some(old) = g.current.take() {
            // Never two current incarnations: the old one's batches go to the new one.
            if g.draining.is_none() {
                g.draining = Some(old);
            } else {
                orphan = Some(old);
            }
        }
        let draining = g.draining.as_ref().map(|d| d.generation);
        g.current = Some(a);
        self.resend(g, |f| Some(f.generation) != draining);
        orphan
    }

    /// Hot swap, make before break: a ready incarnation of `owner`'s supervisor takes over, and
    /// the link belongs to `owner` from now on (it is also unparked: a ready incarnation serves).
    /// New batches go to it; the current one becomes the draining one and answers what it
    /// already has (its batches stay its own until it is detached, then they go to the new one).
    /// With no current incarnation (the old one is dead or starting again) it is attached as by
    /// [`Link::attach`]. Returns the new attachment's generation.
    pub fn takeover(self: &Arc<Self>, p: Prepared, owner: Slot) -> Result<u64, AttachError> {
        let a = self.connect(p)?;
        let generation = a.generation;
        let previous = {
            let mut g = self.lock();
            g.owner = Some(owner);
            self.parked.send_replace(false);
            if g.current.is_some() {
                let previous = g.draining.take();
                g.draining = g.current.take();
                g.current = Some(a);
                previous
            } else {
                self.install(&mut g, a)
            }
        };
        if let Some(p) = previous {
            // A second swap before the first one's drain ended: the oldest one is done.
            self.disconnect(p);
        }
        Ok(generation)
    }

    /// True when attachment `generation` has nothing left to answer.
    pub fn drained(&self, generation: u64) -> bool {
        !self
            .lock()
            .in_flight
            .values()
            .any(|f| f.generation == generation)
    }

    /// Hands the batches `pick` selects to the current incarnation (re-sends, counted).
    fn resend(&self, g: &mut Inner, pick: impl Fn(&InFlight) -> bool) {
        let Some(current) = &g.current else {
            return;
        };
        let (generation, to_io) = (current.generation, current.to_io.clone());
        let paused = self.paused();
        let mut resent = 0;
        let mut dup = 0;
        for (seq, f) in g.in_flight.iter_mut() {
            if f.generation == generation || !pick(f) {
                continue;
            }
            let _ = to_io.send((*seq, f.records.clone()));
            resent += u64::from(std::mem::replace(&mut f.sent, true));
            dup += std::mem::take(&mut f.forwarded);
            f.generation = generation;
            f.answered_items = 0;
            f.answered_bytes = 0;
            f.since = Instant::now();
            f.paused_then = paused;
        }
        if resent > 0 {
            self.metrics
                .redelivered
                .with_label_values(&[&self.name])
                .inc_by(resent);
            if dup > 0 {
                self.metrics
                    .duplicates
                    .with_label_values(&[&self.name])
                    .inc_by(dup);
            }
            tracing::info!(plugin = %self.name, batches = resent, "re-sending unanswered batches to the current incarnation");
        }
    }

    /// Stops an attachment's threads: the reader drains what the plugin published first.
    fn disconnect(&self, a: Attached) {
        drop(a.to_io);
        a.io.stop_and_join();
        drop(a.rings);
    }

    /// Disconnects incarnation `generation` after its process died (or was stopped). Its unanswered
    /// batches stay in flight: the current incarnation gets them at once when `generation` was the
    /// draining one, the next one when `generation` was current.
    pub fn detach(&self, generation: u64) {
        let a = {
            let mut g = self.lock();
            if g.current
                .as_ref()
                .is_some_and(|a| a.generation == generation)
            {
                g.current.take()
            } else if g
                .draining
                .as_ref()
                .is_some_and(|a| a.generation == generation)
            {
                g.draining.take()
            } else {
                None
            }
        };
        if let Some(a) = a {
            self.disconnect(a);
        }
        let mut g = self.lock();
        self.resend(&mut g, |f| f.generation == generation);
        for f in g
            .in_flight
            .values_mut()
            .filter(|f| f.generation == generation)
        {
            f.generation = 0; // nobody has it: the next attach sends it
        }
        drop(g);
        if !self.available() {
            self.metrics
                .oldest
                .with_label_values(&[&self.name])
                .set(0.0);
        }
    }

    /// Sets the probe sampling period on the current rings and future ones (0 = off).
    pub fn set_probe_sampling(&self, every: u32) {
        self.probe_sampling.store(every, Ordering::Relaxed);
        let g = self.lock();
        for a in [g.current.as_ref(), g.draining.as_ref()]
            .into_iter()
            .flatten()
        {
            for r in &a.rings {
                r.set_probe_sampling(every);
            }
        }
    }

    /// The probe sampling period the agent applies (its own copy: the ring header is writable by
    /// the plugin, so the agent never trusts the value read back from it).
    pub fn probe_sampling(&self) -> u32 {
        self.probe_sampling.load(Ordering::Relaxed)
    }

    /// The plugin's ledger (violations, log budget).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The writer sent batch `seq` encoded in `bytes` bytes (the output budget's base).
    pub(super) fn sent(&self, seq: u64, bytes: usize) {
        if let Some(f) = self.lock().in_flight.get_mut(&seq) {
            f.sent_bytes = bytes as u64;
        }
    }

    /// Hands an output to the stage, waiting while the stage has [`OUTPUT_QUEUE`] untaken (that
    /// time is the agent's, not the plugin's: it pauses the answer clock). Gives the output back
    /// when `stop` is set meanwhile (the incarnation is being detached: the reader must not wait
    /// on the pipeline for ever) or the stage is gone.
    fn output(&self, o: Output, stop: &AtomicBool) -> Result<(), Output> {
        let mut o = match self.out_tx.try_send(o) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(o)) => return Err(o),
            Err(mpsc::error::TrySendError::Full(o)) => o,
        };
        self.pause_begins();
        let r = loop {
            if stop.load(Ordering::SeqCst) {
                break Err(o);
            }
            std::thread::sleep(Duration::from_millis(1));
            match self.out_tx.try_send(o) {
                Ok(()) => break Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => o = back,
                Err(mpsc::error::TrySendError::Closed(back)) => break Err(back),
            }
        };
        self.pause_ends();
        r
    }

    /// The plugin answered `seq` (or part of it) with `records` from a payload of `bytes` bytes.
    /// Unknown `seq`: a violation. Beyond the output budget: a violation, and the excess answer
    /// is dropped and counted (`reason="output_budget"`). Returns false when the answer was
    /// refused (the reader stops reading for a while). An answer the stage could not take
    /// because the incarnation is being detached leaves the batch in flight (re-delivered).
    pub(super) fn answer(
        &self,
        seq: u64,
        records: Records,
        bytes: usize,
        last: bool,
        stop: &AtomicBool,
    ) -> bool {
        let items = records.items();
        let over = {
            let mut g = self.lock();
            let Some(f) = g.in_flight.get_mut(&seq) else {
                drop(g);
                self.ledger.record(Violation::UnknownBatch, 1, || {
                    format!("answer to batch {seq}, which is not in flight")
                });
                return false;
            };
            if self.role == Role::Exporter {
                // An exporter acknowledges with one empty `Result`: nothing comes back.
                if !last || items > 0 {
                    drop(g);
                    self.ledger.record(Violation::UnknownBatch, 1, || {
                        format!(
                            "an exporter answered batch {seq} with records ({items}); it acknowledges with an empty result"
                        )
                    });
                    return false;
                }
                let (signal, n) = (signal_of(&f.records), f.records.items());
                drop(g);
                // Counted first, then forgotten: a plugin dying in between gets it again.
                if self
                    .output(Output::Delivered { signal, items: n }, stop)
                    .is_ok()
                {
                    let mut g = self.lock();
                    g.in_flight.remove(&seq);
                    self.gauge(&g);
                }
                return true;
            }
            let budget = self.budget(f.records.items(), f.sent_bytes);
            f.answered_items = f.answered_items.saturating_add(items);
            f.answered_bytes = f.answered_bytes.saturating_add(bytes as u64);
            (f.answered_items > budget.0 || f.answered_bytes > budget.1).then(|| {
                (
                    f.records.items(),
                    f.sent_bytes,
                    f.answered_items,
                    f.answered_bytes,
                    signal_of(&records),
                )
            })
        };
        if let Some((in_items, in_bytes, out_items, out_bytes, signal)) = over {
            let ratio = self.cfg.max_output_ratio;
            self.ledger.record(Violation::OutputBudget, 1, || {
                format!(
                    "batch {seq} of {in_items} records ({in_bytes} bytes) answered with {out_items} records ({out_bytes} bytes) so far, more than data_path.max_output_ratio {ratio} allows; the excess is dropped"
                )
            });
            self.metrics
                .dropped
                .with_label_values(&[&self.name, "output_budget"])
                .inc_by(items);
            let _ = signal;
            if last {
                let mut g = self.lock();
                g.in_flight.remove(&seq);
                self.gauge(&g);
            }
            return false;
        }
        if items > 0 && self.output(Output::Records(records), stop).is_err() {
            return true; // stays in flight: re-delivered (its earlier parts counted as duplicates)
        }
        let mut g = self.lock();
        if last {
            g.in_flight.remove(&seq);
            self.gauge(&g);
        } else if let Some(f) = g.in_flight.get_mut(&seq) {
            f.forwarded += items;
        }
        true
    }

    /// What the answers to a batch of `items` records, `bytes` bytes encoded, may hold:
    /// `max_output_ratio` × both, plus slack (a fixed amount, and 1 KiB per input record: an
    /// enricher adding an attribute to tiny records stays within).
    fn budget(&self, items: u64, bytes: u64) -> (u64, u64) {
        let ratio = u64::from(self.cfg.max_output_ratio);
        (
            ratio
                .saturating_mul(items)
                .saturating_add(OUTPUT_SLACK_ITEMS),
            ratio
                .saturating_mul(bytes)
                .saturating_add(OUTPUT_SLACK_BYTES)
                .saturating_add(items.saturating_mul(OUTPUT_SLACK_BYTES_PER_RECORD)),
        )
    }

    /// The plugin answered `seq` with one flag per item: forward the flagged items of our copy.
    /// A wrong number of flags is a violation (the batch stays in flight).
    pub(super) fn keep(&self, seq: u64, flags: &[bool], stop: &AtomicBool) -> bool {
        if self.role != Role::Processor {
            self.ledger.record(Violation::UnknownBatch, 1, || {
                format!("keep flags for batch {seq} from a plugin that is not a processor")
            });
            return false;
        }
        let records = {
            let g = self.lock();
            match g.in_flight.get(&seq) {
                Some(f) if f.records.items() == flags.len() as u64 && f.forwarded == 0 => {
                    Some(f.records.clone())
                }
                Some(_) => None,
                None => {
                    drop(g);
                    self.ledger.record(Violation::UnknownBatch, 1, || {
                        format!("keep flags for batch {seq}, which is not in flight")
                    });
                    return false;
                }
            }
        };
        let Some(records) = records else {
            self.ledger.record(Violation::UnknownBatch, 1, || {
                format!("keep flags for batch {seq} do not match its items")
            });
            return false;
        };
        let records = Arc::try_unwrap(records).unwrap_or_else(|a| (*a).clone());
        if let Some(kept) = records.retain_items(flags)
            && kept.items() > 0
            && self.output(Output::Records(kept), stop).is_err()
        {
            return true; // stays in flight: re-delivered
        }
        let mut g = self.lock();
        g.in_flight.remove(&seq);
        self.gauge(&g);
        true
    }

    /// The plugin refused batch `seq`: its records are dropped and counted.
    pub(super) fn failed(&self, seq: u64, reason: &str, stop: &AtomicBool) -> bool {
        let f = self
            .lock()
            .in_flight
            .get(&seq)
            .map(|f| (signal_of(&f.records), f.records.items()));
        match f {
            Some((signal, items)) => {
                self.ledger.log().warn(
                    crate::plugins::ledger::LogSource::Agent,
                    &format!("plugin refused batch {seq} of {items} records: {reason}"),
                );
                if self.drop_records(signal, items, "failed", stop) {
                    let mut g = self.lock();
                    g.in_flight.remove(&seq);
                    self.gauge(&g);
                }
                true
            }
            None => {
                self.ledger.record(Violation::UnknownBatch, 1, || {
                    format!("failure report for batch {seq}, which is not in flight")
                });
                false
            }
        }
    }

    /// The writer could not encode batch `seq` in one frame: split it into new batches that
    /// share its window slot (order among them kept).
    pub(super) fn resplit(&self, seq: u64, stop: &AtomicBool) {
        let mut g = self.lock();
        let Some(f) = g.in_flight.remove(&seq) else {
            return;
        };
        let items = f.records.items();
        if items <= 1 {
            drop(g);
            tracing::warn!(plugin = %self.name, "a record larger than data_path.max_frame was dropped");
            self.drop_records(signal_of(&f.records), items, "oversize", stop);
            return;
        }
        let records = Arc::try_unwrap(f.records).unwrap_or_else(|a| (*a).clone());
        for part in records.split((items as usize).div_ceil(2)) {
            self.insert(&mut g, Arc::new(part), f._permit.clone());
        }
    }

    /// Counts a batch gone for good and tells the stage (exporters count it as failed). False
    /// when the stage could not be told (the incarnation is being detached).
    fn drop_records(
        &self,
        signal: Signal,
        items: u64,
        reason: &'static str,
        stop: &AtomicBool,
    ) -> bool {
        let told = self
            .output(
                Output::Dropped {
                    signal,
                    items,
                    reason,
                },
                stop,
            )
            .is_ok();
        if told {
            self.metrics
                .dropped
                .with_label_values(&[&self.name, reason])
                .inc_by(items);
        }
        told
    }

    /// A receiver plugin emitted `records`: they go to the pipelines. From any other plugin an
    /// emission is a violation. False when refused.
    pub(super) fn emitted(&self, records: Records, stop: &AtomicBool) -> bool {
        if self.role != Role::Receiver {
            self.ledger.record(Violation::MalformedFrame, 1, || {
                "emit frame from a plugin that is not a receiver".into()
            });
            return false;
        }
        let items = records.items();
        if items > 0 && self.output(Output::Records(records), stop).is_err() {
            // Read while the incarnation was being detached and the pipelines were full: counted.
            self.metrics
                .dropped
                .with_label_values(&[&self.name, "stopped"])
                .inc_by(items);
        }
        true
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
