//! Processors: transform telemetry between receivers and exporters.

pub mod batch;

use super::ComponentConfig;
use crate::pipeline::{BuildContext, BuildError, Processor};

/// Builds a processor instance for one pipeline.
pub fn build(cfg: &ComponentConfig, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    match cfg {
        ComponentConfig::Batch(c) => Ok(Box::new(batch::BatchProcessor::new(c))),
        other => Err(BuildError::WrongKind {
            id: ctx.id.clone(),
            type_name: other.type_name(),
        }),
    }
}
