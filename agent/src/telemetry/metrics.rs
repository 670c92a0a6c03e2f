//! The self-metrics registry. Names follow Prometheus conventions (`_total`, `_bytes`,
//! `_seconds`); items are log records or metric data points.

use super::Health;
use crate::model::Signal;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;

/// Every metric srediag exports about itself, with the registry that serves them.
pub struct Telemetry {
    /// The registry rendered at `/metrics`.
    pub registry: Registry,
    /// Health and readiness.
    pub health: Health,
    receiver_accepted: IntCounterVec,
    receiver_refused: IntCounterVec,
    processor_incoming: IntCounterVec,
    processor_outgoing: IntCounterVec,
    exporter_sent: IntCounterVec,
    exporter_failed: IntCounterVec,
    queue_dropped: IntCounterVec,
    queue_size: IntGaugeVec,
    queue_capacity: IntGaugeVec,
    component_errors: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Telemetry {
    /// Creates the registry with build info and process metrics.
    pub fn new() -> Arc<Telemetry> {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "srediag_build_info",
                "Build information; the value is always 1.",
            ),
            &["version", "rustc", "target", "profile"],
        )
        .expect("static metric definition");
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("SREDIAG_RUSTC_VERSION").unwrap_or("unknown"),
                std::env::consts::ARCH,
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            ])
            .set(1);
        registry
            .register(Box::new(build))
            .expect("metric registered once");
        let process = prometheus::process_collector::ProcessCollector::for_self();
        registry
            .register(Box::new(process))
            .expect("metric registered once");
        Arc::new(Telemetry {
            receiver_accepted: counter(
                &registry,
                "srediag_receiver_accepted_items_total",
                "Items a receiver accepted into the pipelines.",
                &["receiver", "signal"],
            ),
            receiver_refused: counter(
                &registry,
                "srediag_receiver_refused_items_total",
                "Items a receiver refused (malformed input or shutting down); the sender was told.",
                &["receiver", "signal"],
            ),
            processor_incoming: counter(
                &registry,
                "srediag_processor_incoming_items_total",
                "Items a processor received.",
                &["processor", "pipeline", "signal"],
            ),
            processor_outgoing: counter(
                &registry,
                "srediag_processor_outgoing_items_total",
                "Items a processor passed on.",
                &["processor", "pipeline", "signal"],
            ),
            exporter_sent: counter(
                &registry,
                "srediag_exporter_sent_items_total",
                "Items an exporter delivered.",
                &["exporter", "signal"],
            ),
            exporter_failed: counter(
                &registry,
                "srediag_exporter_failed_items_total",
                "Items an exporter gave up on after its retries.",
                &["exporter", "signal"],
            ),
            queue_dropped: counter(
                &registry,
                "srediag_queue_dropped_items_total",
                "Items dropped in front of a stage: queue_full (drop policy), shutdown (drain timeout), closed (stage gone).",
                &["kind", "component", "pipeline", "reason"],
            ),
            queue_size: gauge(
                &registry,
                "srediag_queue_size",
                "Batches waiting in a stage's input queue.",
                &["kind", "component", "pipeline"],
            ),
            queue_capacity: gauge(
                &registry,
                "srediag_queue_capacity",
                "Capacity of a stage's input queue, in batches.",
                &["kind", "component", "pipeline"],
            ),
            component_errors: counter(
                &registry,
                "srediag_component_errors_total",
                "Errors a component reported (failed scrapes, failed exports, bad requests).",
                &["kind", "component"],
            ),
            registry,
            health: Health::default(),
        })
    }

    /// Counters of one receiver for one signal.
    pub fn receiver(&self, id: &str, signal: Signal) -> ReceiverCounters {
        ReceiverCounters {
            accepted: self
                .receiver_accepted
                .with_label_values(&[id, signal.as_str()]),
            refused: self
                .receiver_refused
                .with_label_values(&[id, signal.as_str()]),
        }
    }

    /// Counters of one processor in one pipeline.
    pub fn processor(&self, id: &str, pipeline: &str, signal: Signal) -> ProcessorCounters {
        let l = [id, pipeline, signal.as_str()];
        ProcessorCounters {
            incoming: self.processor_incoming.with_label_values(&l),
            outgoing: self.processor_outgoing.with_label_values(&l),
        }
    }

    /// Counters of one exporter for one signal.
    pub fn exporter(&self, id: &str, signal: Signal) -> ExporterCounters {
        ExporterCounters {
            sent: self.exporter_sent.with_label_values(&[id, signal.as_str()]),
            failed: self
                .exporter_failed
                .with_label_values(&[id, signal.as_str()]),
        }
    }

    /// Gauges and drop counters of one stage's input queue.
    pub fn queue(
        &self,
        kind: &str,
        component: &str,
        pipeline: &str,
        capacity: usize,
    ) -> QueueMetrics {
        let l = [kind, component, pipeline];
        let cap = self.queue_capacity.with_label_values(&l);
        cap.set(capacity as i64);
        let dropped = |reason: &str| {
            self.queue_dropped
                .with_label_values(&[kind, component, pipeline, reason])
        };
        QueueMetrics {
            size: self.queue_size.with_label_values(&l),
            dropped_full: dropped("queue_full"),
            dropped_shutdown: dropped("shutdown"),
            dropped_closed: dropped("closed"),
        }
    }

    /// The error counter of one component.
    pub fn component(&self, kind: &str, id: &str) -> ComponentMetrics {
        ComponentMetrics {
            errors: self.component_errors.with_label_values(&[kind, id]),
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

/// Counters a receiver updates.
#[derive(Clone)]
pub struct ReceiverCounters {
    /// Items accepted into the pipelines.
    pub accepted: IntCounter,
    /// Items refused.
    pub refused: IntCounter,
}

/// Counters a processor stage updates.
#[derive(Clone)]
pub struct ProcessorCounters {
    /// Items in.
    pub incoming: IntCounter,
    /// Items out.
    pub outgoing: IntCounter,
}

/// Counters an exporter stage updates.
#[derive(Clone)]
pub struct ExporterCounters {
    /// Items delivered.
    pub sent: IntCounter,
    /// Items given up on.
    pub failed: IntCounter,
}

/// Metrics of one queue.
#[derive(Clone)]
pub struct QueueMetrics {
    /// Batches waiting.
    pub size: IntGauge,
    /// Items dropped because the queue was full under the drop policy.
    pub dropped_full: IntCounter,
    /// Items dropped because shutdown's drain timeout expired.
    pub dropped_shutdown: IntCounter,
    /// Items dropped because the stage behind the queue was gone.
    pub dropped_closed: IntCounter,
}

/// Per-component error counter.
#[derive(Clone)]
pub struct ComponentMetrics {
    /// Errors reported by the component.
    pub errors: IntCounter,
}
