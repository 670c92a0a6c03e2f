//! An exporter plugin (`exporters: [plugin/<name>]`): batches go to the plugin over its link, up
//! to the in-flight window, and each is counted when the plugin answers — `sent` after it
//! acknowledged delivery, `failed` after it reported a definitive failure. A plugin killed
//! mid-export gets its unacknowledged batches again after its restart (at least once; the
//! re-sent batches are counted in `srediag_plugin_ipc_redelivered_batches_total`).

use super::stage::ExporterStage;
use super::{QueueReceiver, Shutdown, shutdown_signalled};
use crate::model::Batch;
use crate::plugins::datapath::{Link, Output};
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

/// Counts one verdict of the plugin.
fn count(stage: &ExporterStage, o: Output) {
    match o {
        Output::Delivered { signal, items } => stage.counters(signal).sent.inc_by(items),
        Output::Dropped {
            signal,
            items,
            reason,
        } => {
            stage.counters(signal).failed.inc_by(items);
            stage.errors.errors.inc();
            tracing::error!(exporter = %stage.id, items, reason, "exporter plugin failed a batch; items counted as failed");
        }
        Output::Records(_) => {}
    }
}

/// Sends one batch, in parts of at most `max` items, each holding a window slot; verdicts keep
/// being counted while it waits. A parked plugin (quarantined or rejected) does not come back on
/// its own: the parts still waiting count as failed instead of holding the queue.
async fn submit(
    link: &Link,
    stage: &ExporterStage,
    b: Batch,
    max: usize,
    verdicts: &mut mpsc::Receiver<Output>,
) {
    let signal = b.signal();
    let mut parts = to_records(b).split(max).into_iter();
    while let Some(part) = parts.next() {
        let slot = loop {
            tokio::select! {
                biased;
                Some(o) = verdicts.recv() => count(stage, o),
                s = link.slot() => break Some(s),
                _ = link.until_parked() => break None,
            }
        };
        match slot {
            Some(slot) => link.submit(part, slot),
            None => {
                let items = part.items() + parts.map(|p| p.items()).sum::<u64>();
                link.dropped_unavailable(items);
                stage.counters(signal).failed.inc_by(items);
                return;
            }
        }
    }
}

/// Runs until the input closes and every batch sent was answered, or until `abandon` fires
/// (then what is still queued or unanswered is counted as dropped at shutdown).
pub(super) async fn run_plugin_exporter(
    link: Arc<Link>,
    mut input: QueueReceiver,
    stage: ExporterStage,
    mut abandon: Shutdown,
) {
    let Some(mut verdicts) = link.take_output() else {
        tracing::error!(plugin = %link.name, "a plugin's data path can serve one exporter only");
        return;
    };
    let max = link.cfg.max_batch_records.max(1);
    loop {
        tokio::select! {
            biased;
            Some(o) = verdicts.recv() => count(&stage, o),
            _ = shutdown_signalled(&mut abandon) => {
                let n = input.abandon() + link.in_flight_items();
                tracing::warn!(exporter = %stage.id, dropped_items = n, "drain timeout: queued and unacknowledged items dropped");
                return;
            }
            b = input.recv() => match b {
                Some(b) if link.is_parked() => {
                    let items = b.items();
                    link.dropped_unavailable(items);
                    stage.counters(b.signal()).failed.inc_by(items);
                }
                Some(b) => submit(&link, &stage, b, max, &mut verdicts).await,
                None => break,
            },
        }
    }
    // Drain: everything sent must be answered, until the drain timeout gives up.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while link.in_flight() > 0 {
        tokio::select! {
            Some(o) = verdicts.recv() => count(&stage, o),
            _ = tick.tick() => {}
            _ = shutdown_signalled(&mut abandon) => {
                let n = link.in_flight_items();
                input.count_abandoned(n);
                tracing::warn!(exporter = %stage.id, dropped_items = n, "drain timeout: unacknowledged items dropped");
                return;
            }
        }
    }
    while let Ok(o) = verdicts.try_recv() {
        count(&stage, o);
    }
}
