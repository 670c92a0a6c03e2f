//! The stage that runs a plugin processor (`processors: [plugin/<name>]`): batches go to the
//! plugin over its [`Link`] and what it answers goes on downstream.

use super::{Fanout, QueueReceiver};
use crate::model::{Batch, Signal};
use crate::plugins::datapath::{Link, Output};
use crate::telemetry::ProcessorCounters;
use srediag_plugin_sdk::data::Records;
use std::sync::Arc;
use std::time::Duration;

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
    let forward = |o: Output| {
        let output = &output;
        let counters = &counters;
        let link = &link;
        async move {
            match o {
                Output::Records(r) => {
                    let b = to_batch(r);
                    if b.signal() != signal {
                        link.report_violation(&format!(
                            "answered a {signal} batch with {}",
                            b.signal()
                        ));
                        return;
                    }
                    counters.outgoing.inc_by(b.items());
                    output.send(b).await;
                }
                Output::Dropped { .. } => {}
            }
        }
    };
    let max = link.cfg.max_batch_records.max(1);
    let bypass = link.cfg.on_unavailable == crate::plugins::config::Unavailable::Bypass;
    loop {
        tokio::select! {
            biased;
            Some(o) = answers.recv() => forward(o).await,
            b = input.recv() => match b {
                Some(b) => {
                    counters.incoming.inc_by(b.items());
                    if bypass && !link.available() {
                        link.bypassed(b.items());
                        counters.outgoing.inc_by(b.items());
                        output.send(b).await;
                        continue;
                    }
                    for part in to_records(b).split(max) {
                        // Waiting for a window slot while answers keep flowing: the link
                        // releases slots as answers arrive, independently of this loop.
                        let slot = link.slot().await;
                        link.submit(part, slot);
                    }
                }
                None => break,
            },
        }
    }
    // Drain: everything sent must be answered (or the service's drain timeout gives up on us).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while link.in_flight() > 0 {
        tokio::select! {
            Some(o) = answers.recv() => forward(o).await,
            _ = tick.tick() => {}
        }
    }
    while let Ok(o) = answers.try_recv() {
        forward(o).await;
    }
}
