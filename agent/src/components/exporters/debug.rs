//! The `debug` exporter: a human-readable line (or more) per batch in the agent's log.

use crate::model::{Batch, common::any_value::Value};
use crate::pipeline::{BoxFuture, BuildContext, ExportError, Exporter};
use serde::{Deserialize, Serialize};

/// How much the `debug` exporter prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch: signal and item count.
    #[default]
    Basic,
    /// Plus one line per metric or log record (name/body).
    Normal,
    /// Plus every attribute.
    Detailed,
}

/// `debug` settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How much to print. Default `basic`.
    pub verbosity: Verbosity,
}

/// The running exporter.
pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
}

impl DebugExporter {
    /// An exporter with these settings.
    pub fn new(cfg: &Config, ctx: &BuildContext) -> Self {
        DebugExporter {
            id: ctx.id.clone(),
            verbosity: cfg.verbosity,
        }
    }
}

fn show(v: &Option<crate::model::common::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(a: &[crate::model::common::KeyValue]) -> String {
    a.iter()
        .map(|kv| format!("{}={}", kv.key, show(&kv.value)))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Exporter for DebugExporter {
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>> {
        tracing::info!(exporter = %self.id, signal = %batch.signal(), items = batch.items(), "batch");
        if self.verbosity != Verbosity::Basic {
            let detailed = self.verbosity == Verbosity::Detailed;
            match &batch {
                Batch::Logs(l) => {
                    for r in l
                        .resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .flat_map(|s| &s.log_records)
                    {
                        let a = if detailed {
                            attrs(&r.attributes)
                        } else {
                            String::new()
                        };
                        tracing::info!(exporter = %self.id, severity = %r.severity_text, body = %show(&r.body), attributes = %a, "log record");
                    }
                }
                Batch::Metrics(m) => {
                    for x in m
                        .resource_metrics
                        .iter()
                        .flat_map(|r| &r.scope_metrics)
                        .flat_map(|s| &s.metrics)
                    {
                        tracing::info!(exporter = %self.id, name = %x.name, unit = %x.unit, "metric");
                    }
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
}
