//! Receivers: bring telemetry into the pipelines.

pub mod hostmetrics;
pub mod otlp;

mod otlp_limits;

mod hostmetrics_receiver;

use super::ComponentConfig;
use crate::pipeline::{BuildContext, BuildError, Receiver};

/// Builds a receiver (binding its sockets now, so a port in use fails the start).
pub async fn build(
    cfg: &ComponentConfig,
    ctx: &BuildContext,
) -> Result<Box<dyn Receiver>, BuildError> {
    match cfg {
        ComponentConfig::HostMetrics(c) => Ok(Box::new(
            hostmetrics_receiver::HostMetricsReceiver::new(c, ctx),
        )),
        ComponentConfig::OtlpReceiver(c) => Ok(Box::new(otlp::OtlpReceiver::bind(c, ctx).await?)),
        other => Err(BuildError::WrongKind {
            id: ctx.id.clone(),
            type_name: other.type_name(),
        }),
    }
}
