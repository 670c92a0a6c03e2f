//! Configuration: YAML in the OpenTelemetry Collector's shape, strict, with every problem
//! reported as `FILE:LINE:COL: error: PATH: message`.
//!
//! Loading goes text → position index + YAML value → `${env:…}` interpolation → typed decode of
//! each section and component (serde, `deny_unknown_fields`) → cross-reference validation.

mod diagnostic;
mod id;
mod interpolate;
mod load;
mod position;
mod secret;
mod validate;

pub use diagnostic::{Diagnostic, Severity};
pub use id::ComponentId;
pub use interpolate::{Env, ProcessEnv};
pub use load::{
    DEFAULT_CONFIG, EMBEDDED_NAME, LoadError, Source, decode as load_decode, load, load_str,
};
pub use secret::{EnvRef, EnvRefs, MIN_SCRUB_LEN, REDACTED, Secret, Seg};

use crate::components::{ComponentConfig, Kind};
use crate::model::Signal;
use crate::pipeline::QueueConfig;
use crate::telemetry::LogFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Receivers by id.
    pub receivers: BTreeMap<ComponentId, Component>,
    /// Processors by id.
    pub processors: BTreeMap<ComponentId, Component>,
    /// Exporters by id.
    pub exporters: BTreeMap<ComponentId, Component>,
    /// Extensions by id (no built-in extension yet; plugins will provide them).
    pub extensions: BTreeMap<ComponentId, Component>,
    /// Plugins to run in their sandboxes, by name.
    pub plugins: crate::plugins::config::Plugins,
    /// How the components are wired and how the agent reports on itself.
    pub service: Service,
    /// Where `${env:…}` references were, to keep their values out of what is printed.
    #[serde(skip)]
    pub env_refs: EnvRefs,
}

/// One configured component.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Receiver, processor, exporter or extension.
    #[serde(skip)]
    pub kind: Kind,
    /// The type's own settings, defaults filled in.
    #[serde(flatten)]
    pub config: ComponentConfig,
    /// The input queue (processors and exporters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueConfig>,
}

/// The `service` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Extensions to start, by id.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// The agent's own metrics endpoint and logs.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The admin socket (`srediag plugin list|restart`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Where signed plugin bundles, the trust policy and the rollback marks live.
    #[serde(default)]
    pub bundles: crate::plugins::config::BundlesConfig,
    /// How long shutdown waits for queued data to be delivered before counting the rest as
    /// dropped (`reason="shutdown"`). Default 30s, below systemd's default 90s stop timeout.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Pipelines by id (`metrics`, `logs/app`: the signal, then an optional name).
    pub pipelines: BTreeMap<String, Pipeline>,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `service.admin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Unix socket path, mode 0600, root only (checked with SO_PEERCRED). Default
    /// `/run/srediag/srediag.sock`. Only created when plugins are configured.
    #[serde(default = "default_admin_socket")]
    pub socket: std::path::PathBuf,
}

fn default_admin_socket() -> std::path::PathBuf {
    crate::plugins::config::DEFAULT_ADMIN_SOCKET.into()
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: default_admin_socket(),
        }
    }
}

/// `service.telemetry`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The self-metrics endpoint.
    #[serde(default)]
    pub metrics: TelemetryMetrics,
    /// Logging.
    #[serde(default)]
    pub logs: TelemetryLogs,
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMetrics {
    /// Listen address for `/metrics`, `/-/healthy` and `/-/ready`. Default `127.0.0.1:9464`
    /// (loopback: the agent runs as root; expose it deliberately).
    #[serde(default = "default_telemetry_address")]
    pub address: String,
}

fn default_telemetry_address() -> String {
    "127.0.0.1:9464".to_string()
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        TelemetryMetrics {
            address: default_telemetry_address(),
        }
    }
}

/// `service.telemetry.logs`. The command line's `--log-level`/`--log-format` win over these.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryLogs {
    /// A `tracing` filter (`info`, `debug`, `srediag=debug,warn`). Default `info`.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json`. Default `text`.
    #[serde(default)]
    pub format: LogFormat,
}

fn default_level() -> String {
    "info".to_string()
}

impl Default for TelemetryLogs {
    fn default() -> Self {
        TelemetryLogs {
            level: default_level(),
            format: LogFormat::Text,
        }
    }
}

/// One pipeline: receivers → processors (in order) → exporters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Receiver ids feeding this pipeline.
    pub receivers: Vec<String>,
    /// Processor ids, applied in order.
    #[serde(default)]
    pub processors: Vec<String>,
    /// Exporter ids; every batch goes to each of them.
    pub exporters: Vec<String>,
}

impl Config {
    /// The configuration as `print-config` shows it: defaults filled in, secret settings
    /// redacted (`${env:NAME}` as written, else `<redacted>`), see [`secret`].
    pub fn redacted(&self) -> Result<serde_yaml::Value, serde_yaml::Error> {
        Ok(self.env_refs.redact(serde_yaml::to_value(self)?))
    }

    /// The signal of a pipeline id (validated at load).
    pub fn pipeline_signal(id: &str) -> Option<Signal> {
        Signal::parse(id.split('/').next().unwrap_or(id))
    }

    /// Looks a component up by kind and id.
    pub fn component(&self, kind: Kind, id: &str) -> Option<&Component> {
        let id = ComponentId::parse(id).ok()?;
        match kind {
            Kind::Receiver => self.receivers.get(&id),
            Kind::Processor => self.processors.get(&id),
            Kind::Exporter => self.exporters.get(&id),
            Kind::Extension => self.extensions.get(&id),
        }
    }
}

#[cfg(test)]
mod tests;
