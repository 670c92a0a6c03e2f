//! One plugin's link: the in-flight window, sequence numbers, attach/detach per incarnation.

use super::io;
use super::metrics::DataPathMetrics;
use crate::plugins::config::DataPathConfig;
use srediag_plugin_sdk::control::DataPathInfo;
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::ring::{Ring, RingConfig, RingError, WakeMode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

/// What the link hands back to its pipeline stage.
#[derive(Debug)]
pub enum Output {
    /// Records the plugin passed on.
    Records(Records),
    /// A batch that is gone for good: the plugin refused it, or it could not be sent.
    Dropped {
        /// Records in it.
        items: u64,
        /// Why.
        reason: &'static str,
    },
}

struct InFlight {
    records: Arc<Records>,
    /// One window slot, shared by the parts of a batch the writer had to split.
    _permit: Arc<OwnedSemaphorePermit>,
    /// Items already forwarded from `Partial` answers (duplicated if the batch is re-sent).
    forwarded: u64,
    /// Handed to an incarnation at least once (a re-send counts as a redelivery).
    sent: bool,
}

struct Attached {
    to_io: std::sync::mpsc::Sender<(u64, Arc<Records>)>,
    io: io::IoThreads,
    rings: [Arc<Ring>; 2],
}

#[derive(Default)]
struct Inner {
    next_seq: u64,
    in_flight: BTreeMap<u64, InFlight>,
    attached: Option<Attached>,
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
    /// Settings.
    pub cfg: DataPathConfig,
    inner: Mutex<Inner>,
    window: Arc<Semaphore>,
    out_tx: mpsc::UnboundedSender<Output>,
    out_rx: Mutex<Option<mpsc::UnboundedReceiver<Output>>>,
    pub(super) metrics: DataPathMetrics,
    violations: AtomicU64,
    quarantined: AtomicBool,
    quarantine: Notify,
    probe_sampling: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link with nothing attached.
    pub fn new(name: &str, cfg: DataPathConfig, metrics: DataPathMetrics) -> Link {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        Link {
            name: name.to_string(),
            window: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            probe_sampling: cfg.probe_sampling.into(),
            cfg,
            inner: Mutex::default(),
            out_tx,
            out_rx: Mutex::new(Some(out_rx)),
            metrics,
            violations: AtomicU64::new(0),
            quarantined: AtomicBool::new(false),
            quarantine: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stage's receiving end of the outputs (once).
    pub fn take_output(&self) -> Option<mpsc::UnboundedReceiver<Output>> {
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
        let sent = match &g.attached {
            Some(a) => a.to_io.send((seq, records.clone())).is_ok(),
            None => false,
        };
        g.in_flight.insert(
            seq,
            InFlight {
                records,
                _permit: permit,
                forwarded: 0,
                sent,
            },
        );
        self.metrics
            .in_flight
            .with_label_values(&[&self.name])
            .set(g.in_flight.len() as i64);
    }

    /// True while an incarnation is attached (the plugin is ready).
    pub fn available(&self) -> bool {
        self.lock().attached.is_some()
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

    /// Connects a ready incarnation: starts its I/O threads and re-sends every batch still in
    /// flight (in `seq` order) before anything new.
    pub fn attach(self: &Arc<Self>, p: Prepared) -> Result<(), RingError> {
        let to_plugin = Arc::new(p.to_plugin);
        let from_plugin = Arc::new(p.from_plugin);
        let (tx, rx) = std::sync::mpsc::channel();
        let threads = io::IoThreads::start(
            self.clone(),
            to_plugin.clone(),
            from_plugin.clone(),
            p.info,
            rx,
        )?;
        let mut g = self.lock();
        let mut resent = 0;
        for (seq, f) in g.in_flight.iter_mut() {
            let _ = tx.send((*seq, f.records.clone()));
            resent += u64::from(std::mem::replace(&mut f.sent, true));
        }
        if resent > 0 {
            self.metrics
                .redelivered
                .with_label_values(&[&self.name])
                .inc_by(resent);
            let dup: u64 = g
                .in_flight
                .values_mut()
                .map(|f| std::mem::take(&mut f.forwarded))
                .sum();
            if dup > 0 {
                self.metrics
                    .duplicates
                    .with_label_values(&[&self.name])
                    .inc_by(dup);
            }
            tracing::info!(plugin = %self.name, batches = resent, "re-sending unanswered batches to the new incarnation");
        }
        g.attached = Some(Attached {
            to_io: tx,
            io: threads,
            rings: [to_plugin, from_plugin],
        });
        Ok(())
    }

    /// Disconnects the incarnation after its process died (or was stopped): the reader drains
    /// what the plugin published, then both threads end. Unanswered batches stay in flight.
    pub fn detach(&self) {
        let attached = self.lock().attached.take();
        if let Some(a) = attached {
            drop(a.to_io);
            a.io.stop_and_join();
            drop(a.rings);
        }
    }

    /// Sets the probe sampling period on the current rings and future ones (0 = off).
    pub fn set_probe_sampling(&self, every: u32) {
        self.probe_sampling.store(every, Ordering::Relaxed);
        if let Some(a) = &self.lock().attached {
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

    /// Resolves when the link decided the plugin must be quarantined (too many violations).
    pub async fn quarantine_requested(&self) {
        loop {
            let n = self.quarantine.notified();
            if self.quarantined.load(Ordering::SeqCst) {
                return;
            }
            n.await;
        }
    }

    /// Clears the quarantine request (an operator restarted the plugin).
    pub fn clear_quarantine(&self) {
        self.violations.store(0, Ordering::SeqCst);
        self.quarantined.store(false, Ordering::SeqCst);
    }

    /// Peer violations counted so far (since the last quarantine reset).
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::SeqCst)
    }

    /// A violation noticed outside the link (e.g. an answer of the wrong signal).
    pub fn report_violation(&self, what: &str) {
        self.violation(1, what);
    }

    /// Counts `n` violations by the plugin; may request quarantine.
    pub(super) fn violation(&self, n: u64, what: &str) {
        if n == 0 {
            return;
        }
        self.metrics
            .malformed
            .with_label_values(&[&self.name])
            .inc_by(n);
        let total = self.violations.fetch_add(n, Ordering::SeqCst) + n;
        tracing::warn!(plugin = %self.name, total, "data path violation: {what}");
        if total >= self.cfg.quarantine_after_malformed
            && !self.quarantined.swap(true, Ordering::SeqCst)
        {
            self.quarantine.notify_waiters();
        }
    }

    /// The plugin answered `seq` (or part of it). Unknown `seq`: a violation.
    pub(super) fn answer(&self, seq: u64, records: Records, last: bool) {
        let items = records.items();
        {
            let mut g = self.lock();
            let Some(f) = g.in_flight.get_mut(&seq) else {
                drop(g);
                self.violation(1, &format!("answer to batch {seq}, which is not in flight"));
                return;
            };
            if last {
                g.in_flight.remove(&seq);
                self.metrics
                    .in_flight
                    .with_label_values(&[&self.name])
                    .set(g.in_flight.len() as i64);
            } else {
                f.forwarded += items;
            }
        }
        if items > 0 {
            let _ = self.out_tx.send(Output::Records(records));
        }
    }

    /// The plugin answered `seq` with one flag per item: forward the flagged items of our copy.
    /// A wrong number of flags is a violation (the batch stays in flight).
    pub(super) fn keep(&self, seq: u64, flags: &[bool]) {
        let entry = {
            let mut g = self.lock();
            match g.in_flight.get(&seq) {
                Some(f) if f.records.items() == flags.len() as u64 && f.forwarded == 0 => {
                    let e = g.in_flight.remove(&seq);
                    self.metrics
                        .in_flight
                        .with_label_values(&[&self.name])
                        .set(g.in_flight.len() as i64);
                    e
                }
                Some(_) => None,
                None => {
                    drop(g);
                    self.violation(
                        1,
                        &format!("keep flags for batch {seq}, which is not in flight"),
                    );
                    return;
                }
            }
        };
        let Some(f) = entry else {
            self.violation(
                1,
                &format!("keep flags for batch {seq} do not match its items"),
            );
            return;
        };
        let records = Arc::try_unwrap(f.records).unwrap_or_else(|a| (*a).clone());
        if let Some(kept) = records.retain_items(flags)
            && kept.items() > 0
        {
            let _ = self.out_tx.send(Output::Records(kept));
        }
    }

    /// The plugin refused batch `seq`: its records are dropped and counted.
    pub(super) fn failed(&self, seq: u64, reason: &str) {
        let f = self.lock().in_flight.remove(&seq);
        match f {
            Some(f) => {
                let items = f.records.items();
                tracing::warn!(plugin = %self.name, seq, items, reason, "plugin refused a batch");
                self.drop_records(items, "failed");
            }
            None => self.violation(
                1,
                &format!("failure report for batch {seq}, which is not in flight"),
            ),
        }
    }

    /// The writer could not encode batch `seq` in one frame: split it into new batches that
    /// share its window slot (order among them kept).
    pub(super) fn resplit(&self, seq: u64) {
        let mut g = self.lock();
        let Some(f) = g.in_flight.remove(&seq) else {
            return;
        };
        let items = f.records.items();
        if items <= 1 {
            drop(g);
            tracing::warn!(plugin = %self.name, "a record larger than data_path.max_frame was dropped");
            self.drop_records(items, "oversize");
            return;
        }
        let records = Arc::try_unwrap(f.records).unwrap_or_else(|a| (*a).clone());
        for part in records.split((items as usize).div_ceil(2)) {
            self.insert(&mut g, Arc::new(part), f._permit.clone());
        }
    }

    fn drop_records(&self, items: u64, reason: &'static str) {
        self.metrics
            .dropped
            .with_label_values(&[&self.name, reason])
            .inc_by(items);
        let _ = self.out_tx.send(Output::Dropped { items, reason });
    }
}
