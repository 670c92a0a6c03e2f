//! Wiring a validated configuration into running stages, and stopping them in order.

use super::stage::{ExporterStage, run_exporter, run_processor};
use super::{BuildContext, BuildError, Fanout, QueueSender, ReceiverOutput, queue};
use crate::components::{self, Kind};
use crate::config::Config;
use crate::model::Signal;
use crate::telemetry::Telemetry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The link of plugin `plugin` (pipeline entry `id`).
fn plugin_link(
    links: &crate::plugins::datapath::Links,
    id: &str,
    plugin: &str,
) -> Result<Arc<crate::plugins::datapath::Link>, BuildError> {
    links
        .get(plugin)
        .cloned()
        .ok_or_else(|| BuildError::Invalid {
            id: id.to_string(),
            message: format!("plugin `{plugin}` is not defined under `plugins`"),
        })
}

/// Readiness names a plugin stage that cannot deliver (stalled or parked).
fn delivery_check(telemetry: &Telemetry, what: String, link: &Arc<crate::plugins::datapath::Link>) {
    let l = link.clone();
    telemetry.health.add_delivery_check(Box::new(move || {
        l.not_delivering().map(|why| format!("{what}: {why}"))
    }));
}

/// The running pipelines.
pub struct RunningService {
    shutdown: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    receivers: Vec<JoinHandle<()>>,
    processors: Vec<JoinHandle<()>>,
    exporters: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
    telemetry: Arc<Telemetry>,
}

/// Builds every component the pipelines use and starts them: exporters first, receivers last.
pub async fn start(
    config: &Config,
    telemetry: Arc<Telemetry>,
    links: &crate::plugins::datapath::Links,
) -> Result<RunningService, BuildError> {
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (abandon, abandon_rx) = watch::channel(false);
    let ctx = |id: &str| BuildContext {
        id: id.to_string(),
        telemetry: telemetry.clone(),
    };

    // Exporters: one instance (and one queue) per id, shared by every pipeline that lists it.
    let mut exporter_inputs: BTreeMap<String, QueueSender> = BTreeMap::new();
    let mut exporters = Vec::new();
    for pipeline in config.service.pipelines.values() {
        for id in &pipeline.exporters {
            if exporter_inputs.contains_key(id) {
                continue;
            }
            if let Some(plugin) = id.strip_prefix(crate::plugins::datapath::PLUGIN_PREFIX) {
                let link = plugin_link(links, id, plugin)?;
                let qcfg = link.cfg.queue.clone();
                let (tx, rx) = queue(&qcfg, telemetry.queue("exporter", id, "", qcfg.capacity));
                let stage = ExporterStage {
                    id: id.clone(),
                    logs: telemetry.exporter(id, Signal::Logs),
                    metrics: telemetry.exporter(id, Signal::Metrics),
                    errors: telemetry.component("exporter", id),
                };
                delivery_check(&telemetry, format!("exporter {id}"), &link);
                let run = super::plugin_exporter::run_plugin_exporter(
                    link,
                    rx,
                    stage,
                    abandon_rx.clone(),
                );
                exporters.push(watched(
                    &telemetry,
                    format!("exporter/{id}"),
                    shutdown_rx.clone(),
                    run,
                ));
                exporter_inputs.insert(id.clone(), tx);
                continue;
            }
            let c = component(config, Kind::Exporter, id)?;
            let exporter = components::exporters::build(&c.config, &ctx(id)).await?;
            let qcfg = c.queue.clone().unwrap_or_default();
            let (tx, rx) = queue(&qcfg, telemetry.queue("exporter", id, "", qcfg.capacity));
            let stage = ExporterStage {
                id: id.clone(),
                logs: telemetry.exporter(id, Signal::Logs),
                metrics: telemetry.exporter(id, Signal::Metrics),
                errors: telemetry.component("exporter", id),
            };
            let run = run_exporter(exporter, rx, stage, abandon_rx.clone());
            exporters.push(watched(
                &telemetry,
                format!("exporter/{id}"),
                shutdown_rx.clone(),
                run,
            ));
            exporter_inputs.insert(id.clone(), tx);
        }
    }

    // Processors: one instance per pipeline, chained back to front.
    let mut processors = Vec::new();
    let mut entries: BTreeMap<(String, Signal), Vec<QueueSender>> = BTreeMap::new();
    for (name, pipeline) in &config.service.pipelines {
        let signal = Config::pipeline_signal(name).ok_or_else(|| BuildError::Invalid {
            id: name.clone(),
            message: "pipeline id has no valid signal".into(),
        })?;
        let mut next = Fanout::new(
            pipeline
                .exporters
                .iter()
                .map(|id| exporter_inputs[id].clone())
                .collect(),
        );
        for id in pipeline.processors.iter().rev() {
            if let Some(plugin) = id.strip_prefix(crate::plugins::datapath::PLUGIN_PREFIX) {
                let link = plugin_link(links, id, plugin)?;
                let qcfg = link.cfg.queue.clone();
                delivery_check(
                    &telemetry,
                    format!("pipeline {name}: processor {id}"),
                    &link,
                );
                let (tx, rx) = queue(&qcfg, telemetry.queue("processor", id, name, qcfg.capacity));
                let counters = telemetry.processor(id, name, signal);
                let run =
                    super::plugin_stage::run_plugin_processor(link, rx, next, counters, signal);
                processors.push(watched(
                    &telemetry,
                    format!("processor/{id}"),
                    shutdown_rx.clone(),
                    run,
                ));
                next = Fanout::new(vec![tx]);
                continue;
            }
            let c = component(config, Kind::Processor, id)?;
            let processor = components::processors::build(&c.config, &ctx(id))?;
            let qcfg = c.queue.clone().unwrap_or_default();
            let (tx, rx) = queue(&qcfg, telemetry.queue("processor", id, name, qcfg.capacity));
            let counters = telemetry.processor(id, name, signal);
            let run = run_processor(processor, rx, next, counters);
            processors.push(watched(
                &telemetry,
                format!("processor/{id}"),
                shutdown_rx.clone(),
                run,
            ));
            next = Fanout::new(vec![tx]);
        }
        let targets = next.into_targets();
        for r in &pipeline.receivers {
            entries
                .entry((r.clone(), signal))
                .or_default()
                .extend(targets.iter().cloned());
        }
    }
    drop(exporter_inputs);

    // Receivers: one instance per id, feeding every pipeline that lists it.
    let mut receiver_ids: Vec<&String> = config
        .service
        .pipelines
        .values()
        .flat_map(|p| &p.receivers)
        .collect();
    receiver_ids.sort();
    receiver_ids.dedup();
    let mut built = Vec::new();
    for id in receiver_ids {
        let receiver: Box<dyn super::Receiver> =
            match id.strip_prefix(crate::plugins::datapath::PLUGIN_PREFIX) {
                Some(plugin) => {
                    let link = plugin_link(links, id, plugin)?;
                    delivery_check(&telemetry, format!("receiver {id}"), &link);
                    Box::new(super::PluginReceiver::new(link))
                }
                None => {
                    let c = component(config, Kind::Receiver, id)?;
                    components::receivers::build(&c.config, &ctx(id)).await?
                }
            };
        let mut slot = |s: Signal| {
            entries
                .remove(&(id.clone(), s))
                .map(|t| (Fanout::new(t), telemetry.receiver(id, s)))
        };
        let out = ReceiverOutput::new(slot(Signal::Logs), slot(Signal::Metrics));
        built.push(((id.clone(), receiver), out));
    }
    let receivers = built
        .into_iter()
        .map(|((id, r), out)| {
            let run = r.run(out, shutdown_rx.clone());
            watched(
                &telemetry,
                format!("receiver/{id}"),
                shutdown_rx.clone(),
                run,
            )
        })
        .collect();
    // Ready is declared by the caller once everything else is up (the plugin manager's start-up
    // cleanup, the admin socket): see `cli/run.rs`.
    Ok(RunningService {
        shutdown,
        abandon,
        receivers,
        processors,
        exporters,
        drain_timeout: config.service.shutdown_timeout,
        telemetry,
    })
}

/// Spawns a stage and watches it: a stage that panics, or ends before shutdown was asked for, marks
/// the agent unhealthy (`/-/healthy` answers 503 naming it) and is logged.
pub(super) fn watched(
    telemetry: &Arc<Telemetry>,
    what: String,
    shutdown: watch::Receiver<bool>,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let telemetry = telemetry.clone();
    tokio::spawn(async move {
        let result = tokio::spawn(fut).await;
        let failure = match result {
            Err(e) if e.is_panic() => Some(format!("{what}: panicked")),
            Err(e) => Some(format!("{what}: {e}")),
            Ok(()) if !*shutdown.borrow() => Some(format!("{what}: stopped unexpectedly")),
            Ok(()) => None,
        };
        if let Some(f) = failure {
            tracing::error!(component = %what, "pipeline component failed; /-/healthy reports it");
            telemetry.health.component_failed(f);
        }
    })
}

fn component<'a>(
    config: &'a Config,
    kind: Kind,
    id: &str,
) -> Result<&'a crate::config::Component, BuildError> {
    config
        .component(kind, id)
        .ok_or_else(|| BuildError::Invalid {
            id: id.to_string(),
            message: format!("{} is not defined", kind.as_str()),
        })
}

impl RunningService {
    /// Stops the receivers, lets processors and exporters drain everything accepted, and waits
    /// at most the drain timeout before counting what is left as dropped.
    pub async fn stop(self) {
        self.telemetry.health.set_ready(false);
        let _ = self.shutdown.send(true);
        let drain = async {
            for h in self.receivers {
                let _ = h.await;
            }
            for h in self.processors {
                let _ = h.await;
            }
        };
        let mut exporters = self.exporters;
        let all = async {
            drain.await;
            for h in &mut exporters {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(self.drain_timeout, all).await.is_err() {
            tracing::warn!(timeout = ?self.drain_timeout, "shutdown drain timeout: abandoning queued items");
            let _ = self.abandon.send(true);
            for h in exporters {
                if !h.is_finished() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
                }
            }
        }
    }
}
