//! The telemetry data model that flows through pipelines.
//!
//! srediag uses the OTLP protobuf messages themselves as its in-memory model (as the OpenTelemetry
//! Collector's `pdata` does): resource and scope attributes, timestamps, severity, and
//! gauge/sum/histogram points keep exact OTLP semantics, and the OTLP receiver and exporter need no
//! conversion. This module adds what the engine needs on top: the [`Signal`] a batch carries, item
//! counting (log records or metric data points), merging for batching, and small builders.

mod build;
mod count;
mod json;

pub use build::{attr_f64, attr_i64, attr_str, gauge_f64, gauge_i64, resource, sum_f64, sum_i64};
pub use count::{log_record_count, metric_point_count};
pub use json::{logs_from_json, metrics_from_json, to_json};
pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest as Logs;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest as Metrics;
pub use opentelemetry_proto::tonic::common::v1 as common;
pub use opentelemetry_proto::tonic::logs::v1 as logs;
pub use opentelemetry_proto::tonic::metrics::v1 as metrics;
pub use opentelemetry_proto::tonic::resource::v1 as resource_v1;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of telemetry a pipeline carries. Pipeline ids start with it (`metrics`, `logs/app`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
}

impl Signal {
    /// Every signal, in display order.
    pub const ALL: [Signal; 2] = [Signal::Logs, Signal::Metrics];

    /// The lowercase name used in configuration and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// Parses a pipeline signal name.
    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "logs" => Some(Signal::Logs),
            "metrics" => Some(Signal::Metrics),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A unit of work moving between pipeline stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// A batch of log records grouped by resource and scope.
    Logs(Logs),
    /// A batch of metrics grouped by resource and scope.
    Metrics(Metrics),
}

impl Batch {
    /// The signal this batch carries.
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Logs(_) => Signal::Logs,
            Batch::Metrics(_) => Signal::Metrics,
        }
    }

    /// Items in the batch: log records, or metric data points (a histogram point counts once).
    /// Every accepted/sent/dropped counter in srediag counts these items.
    pub fn items(&self) -> u64 {
        match self {
            Batch::Logs(l) => log_record_count(l),
            Batch::Metrics(m) => metric_point_count(m),
        }
    }

    /// Appends `other` to `self`. Returns `other` back when the signals differ.
    pub fn merge(&mut self, other: Batch) -> Result<(), Batch> {
        match (self, other) {
            (Batch::Logs(a), Batch::Logs(b)) => {
                a.resource_logs.extend(b.resource_logs);
                Ok(())
            }
            (Batch::Metrics(a), Batch::Metrics(b)) => {
                a.resource_metrics.extend(b.resource_metrics);
                Ok(())
            }
            (_, other) => Err(other),
        }
    }

    /// True when the batch holds no item.
    pub fn is_empty(&self) -> bool {
        self.items() == 0
    }

    /// The batch's size as an OTLP protobuf request: what queue byte bounds count.
    pub fn encoded_len(&self) -> usize {
        match self {
            Batch::Logs(l) => prost::Message::encoded_len(l),
            Batch::Metrics(m) => prost::Message::encoded_len(m),
        }
    }
}

#[cfg(test)]
mod tests;
