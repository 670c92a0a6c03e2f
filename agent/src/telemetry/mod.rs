//! The agent's own telemetry: the metrics registry, health state, the HTTP endpoint serving
//! `/metrics`, `/-/healthy` and `/-/ready`, and logging setup.

mod health;
mod logging;
mod metrics;
mod server;

pub use health::Health;
pub use logging::{LogFormat, init as init_logging};
pub use metrics::{
    ComponentMetrics, ExporterCounters, ProcessorCounters, QueueMetrics, ReceiverCounters,
    Telemetry,
};
pub use server::{ServerError, bind, serve};
