//! The stage that runs a plugin processor (`processors: [plugin/<name>]`): batches go to the
//! plugin over its [`Link`] and what it answers goes on downstream, re-split to the stage's batch
//! size (`data_path.max_batch_records`), so a plugin's large answer never becomes one oversized
//! batch downstream.
//!
//! The stage keeps taking the plugin's answers while it waits for a window slot: the link hands
//! answers over a bounded queue ([`crate::plugins::datapath::OUTPUT_QUEUE`]), so a stage that
//! stopped taking them would stop the plugin too.

use super::{Fanout, QueueReceiver};
use crate::model::{Batch, Signal};
use crate::plugins::datapath::{Link, Output};
use crate::plugins::ledger::Violation;
use crate::telemetry::ProcessorCounters;
use srediag_plugin_sdk::data::Records;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn to_records(b: Batch) -> Records {
    match b {
        Batch::Logs(l) => Records::Logs(l),
        Batch::Metrics(m) => Records::Metrics(m),
    }
}

fn to_batch(r: Records) -> Batch {
    match r {
        Records::Logs(l) => Batch::Logs(l),
        Records::Metrics(m) => Batch::Metrics(m),
    }
}

struct Stage {
    link: Arc<Link>,
    output: Fanout,
    counters: ProcessorCounters,
    signal: Signal,
    max: usize,
}

impl Stage {
    /// Passes one answer on downstream (in batches of at most `max` items).
    async fn forward(&self, o: Output) {
        let Output::Records(r) = o else { return };
        let items = r.items();
        let b = to_batch(r);
        if b.signal() != self.signal {
            let (want, got) = (self.signal, b.signal());
            self.link.ledger().record(Violation::UnknownBatch, 1, || {
                format!("answered a {want} batch with {got}")
            });
            return;
        }
        self.counters.outgoing.inc_by(items);
        if items as usize <= self.max {
            self.output.send(b).await;
            return;
        }
        for part in to_records(b).split(self.max) {
            self.output.send(to_batch(part)).await;
        }
    }

    /// Sends one input batch to the plugin, in parts of at most `max` items, each holding a
    /// window slot; answers keep flowing downstream while it waits for slots. When the plugin is
    /// parked (it will not come back without an operator) the parts still waiting are dropped
    /// and counted instead of holding the pipeline (and every pipeline sharing its receivers).
    async fn submit(&self, b: Batch, answers: &mut mpsc::Receiver<Output>) {
        let mut parts = to_records(b).split(self.max).into_iter();
        while let Some(part) = parts.next() {
            let slot = loop {
                tokio::select! {
                    biased;
                    Some(o) = answers.recv() => self.forward(o).await,
                    s = self.link.slot() => break Some(s),
                    _ = self.link.until_parked() => break None,
                }
            };
            match slot {
                Some(slot) => self.link.submit(part, slot),
                None => {
                    let items = part.items() + parts.map(|p| p.items()).sum::<u64>();
                    self.link.dropped_unavailable(items);
                    return;
                }
            }
        }
    }
}

/// Runs until the input closes and every batch sent to the plugin was answered.
pub(super) async fn run_plugin_processor(
    link: Arc<Link>,
    mut input: QueueReceiver,
    output: Fanout,
    counters: ProcessorCounters,
    signal: Signal,
) {
    let Some(mut answers) = link.take_output() else {
        tracing::error!(plugin = %link.name, "a plugin's data path can serve one pipeline stage only");
        return;
    };
    let bypass = link.cfg.on_unavailable == crate::plugins::config::Unavailable::Bypass;
    let stage = Stage {
        max: link.cfg.max_batch_records.max(1),
        link,
        output,
        counters,
        signal,
    };
    loop {
        tokio::select! {
            biased;
            Some(o) = answers.recv() => stage.forward(o).await,
            b = input.recv() => match b {
                Some(b) => {
                    stage.counters.incoming.inc_by(b.items());
                    if bypass && !stage.link.available() {
                        stage.link.bypassed(b.items());
                        stage.counters.outgoing.inc_by(b.items());
                        stage.output.send(b).await;
                        continue;
                    }
                    if stage.link.is_parked() {
                        stage.link.dropped_unavailable(b.items());
                        continue;
                    }
                    stage.submit(b, &mut answers).await;
                }
                None => break,
            },
        }
    }
    // Drain: everything sent must be answered (or the service's drain timeout gives up on us).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while stage.link.in_flight() > 0 {
        tokio::select! {
            Some(o) = answers.recv() => stage.forward(o).await,
            _ = tick.tick() => {}
        }
    }
    while let Ok(o) = answers.try_recv() {
        stage.forward(o).await;
    }
}
