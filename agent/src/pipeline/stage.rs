//! The tasks that run processors and exporters between their queues.

use super::{Exporter, Fanout, Processor, QueueReceiver, Shutdown, shutdown_signalled};
use crate::model::{Batch, Signal};
use crate::telemetry::{ComponentMetrics, ExporterCounters, ProcessorCounters};
use std::time::Duration;

/// Runs a processor until its input closes, then flushes what it holds downstream.
pub(super) async fn run_processor(
    mut processor: Box<dyn Processor>,
    mut input: QueueReceiver,
    output: Fanout,
    counters: ProcessorCounters,
) {
    let emit = |batches: Vec<Batch>| {
        let output = &output;
        let counters = &counters;
        async move {
            for b in batches {
                if b.is_empty() {
                    continue;
                }
                counters.outgoing.inc_by(b.items());
                output.send(b).await;
            }
        }
    };
    let period = processor.timer().unwrap_or(Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            b = input.recv() => match b {
                Some(b) => {
                    counters.incoming.inc_by(b.items());
                    let out = processor.process(b);
                    emit(out).await;
                }
                None => break,
            },
            _ = tick.tick() => {
                let out = processor.on_timer();
                emit(out).await;
            }
        }
    }
    let out = processor.flush();
    emit(out).await;
}

/// Per-signal counters of one exporter.
pub(super) struct ExporterStage {
    pub id: String,
    pub logs: ExporterCounters,
    pub metrics: ExporterCounters,
    pub errors: ComponentMetrics,
}

impl ExporterStage {
    pub(super) fn counters(&self, s: Signal) -> &ExporterCounters {
        match s {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }
}

/// Runs an exporter until its input closes (then shuts it down), or until `abandon` fires
/// (then every queued item is counted as dropped at shutdown).
pub(super) async fn run_exporter(
    mut exporter: Box<dyn Exporter>,
    mut input: QueueReceiver,
    stage: ExporterStage,
    mut abandon: Shutdown,
) {
    loop {
        let next = tokio::select! {
            b = input.recv() => b,
            _ = shutdown_signalled(&mut abandon) => {
                let n = input.abandon();
                tracing::warn!(exporter = %stage.id, dropped_items = n, "drain timeout: queued items dropped");
                break;
            }
        };
        let Some(batch) = next else { break };
        let items = batch.items();
        let counters = stage.counters(batch.signal());
        tokio::select! {
            r = exporter.export(batch) => match r {
                Ok(()) => counters.sent.inc_by(items),
                Err(e) => {
                    counters.failed.inc_by(items);
                    stage.errors.errors.inc();
                    tracing::error!(exporter = %stage.id, items, error = %e, "export failed; items counted as failed");
                }
            },
            _ = shutdown_signalled(&mut abandon) => {
                input.count_abandoned(items);
                let n = input.abandon();
                tracing::warn!(exporter = %stage.id, dropped_items = n + items, "drain timeout during export: items dropped");
                break;
            }
        }
    }
    if let Err(e) = exporter.shutdown().await {
        stage.errors.errors.inc();
        tracing::error!(exporter = %stage.id, error = %e, "exporter shutdown failed");
    }
}
