//! Exporters: send telemetry out of the agent.

pub mod debug;
pub mod file;
pub mod otlp;
pub mod prometheus;

use super::ComponentConfig;
use crate::pipeline::{BuildContext, BuildError, Exporter};

/// Builds an exporter (binding or opening what it needs now).
pub async fn build(
    cfg: &ComponentConfig,
    ctx: &BuildContext,
) -> Result<Box<dyn Exporter>, BuildError> {
    match cfg {
        ComponentConfig::Debug(c) => Ok(Box::new(debug::DebugExporter::new(c, ctx))),
        ComponentConfig::File(c) => Ok(Box::new(file::FileExporter::open(c, ctx)?)),
        ComponentConfig::OtlpExporter(c) => Ok(Box::new(otlp::OtlpExporter::new(c, ctx)?)),
        ComponentConfig::Prometheus(c) => Ok(Box::new(
            prometheus::PrometheusExporter::bind(c, ctx).await?,
        )),
        other => Err(BuildError::WrongKind {
            id: ctx.id.clone(),
            type_name: other.type_name(),
        }),
    }
}
