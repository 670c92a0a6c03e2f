//! Built-in components: the registry (`srediag components`), their configuration types, and
//! how each is built into a running stage. One module per component, as in vector.

pub mod exporters;
pub mod processors;
pub mod receivers;

use crate::config::load_decode as decode;
use crate::model::Signal;
use serde::Serialize;
use serde_yaml::Value;

/// What a component does in a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Brings telemetry in.
    Receiver,
    /// Transforms telemetry between receivers and exporters.
    Processor,
    /// Sends telemetry out.
    Exporter,
    /// Runs beside the pipelines (health, auth…).
    Extension,
}

impl Kind {
    /// Singular name (`receiver`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }

    /// The config section (`receivers`).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }
}

/// How settled a component is (the OpenTelemetry Collector's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stability {
    /// Incomplete; may change or go away.
    Development,
    /// Usable; configuration may still change.
    Alpha,
    /// Configuration is settled; may still have rough edges.
    Beta,
    /// Settled and covered by compatibility promises.
    Stable,
}

/// A decode error of a component's settings, with the path inside them.
pub type DecodeError = serde_path_to_error::Error<serde_yaml::Error>;

/// A built-in component type.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// Receiver, processor, exporter or extension.
    pub kind: Kind,
    /// The type name used in component ids.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Stability level.
    pub stability: Stability,
    /// Signals it handles.
    pub signals: &'static [Signal],
    /// One line about what it does.
    pub description: &'static str,
    /// Decodes (strictly) and fills defaults.
    #[serde(skip)]
    pub parse: fn(Value) -> Result<ComponentConfig, DecodeError>,
}

/// The settings of one configured component, by type.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ComponentConfig {
    /// `hostmetrics` receiver.
    HostMetrics(receivers::hostmetrics::Config),
    /// `otlp` receiver.
    OtlpReceiver(receivers::otlp::Config),
    /// `batch` processor.
    Batch(processors::batch::Config),
    /// `prometheus` exporter.
    Prometheus(exporters::prometheus::Config),
    /// `file` exporter.
    File(exporters::file::Config),
    /// `otlp` exporter.
    OtlpExporter(exporters::otlp::Config),
    /// `debug` exporter.
    Debug(exporters::debug::Config),
}

impl ComponentConfig {
    /// The component type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ComponentConfig::HostMetrics(_) => "hostmetrics",
            ComponentConfig::OtlpReceiver(_) | ComponentConfig::OtlpExporter(_) => "otlp",
            ComponentConfig::Batch(_) => "batch",
            ComponentConfig::Prometheus(_) => "prometheus",
            ComponentConfig::File(_) => "file",
            ComponentConfig::Debug(_) => "debug",
        }
    }

    /// Semantic checks beyond the types: `(path inside the component, message)` per problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let r = match self {
            ComponentConfig::HostMetrics(c) => c.validate().map_err(|m| (String::new(), m)),
            ComponentConfig::OtlpReceiver(c) => c.validate(),
            ComponentConfig::Batch(c) => c.validate(),
            ComponentConfig::Prometheus(c) => c.validate(),
            ComponentConfig::File(c) => c.validate(),
            ComponentConfig::OtlpExporter(c) => c.validate(),
            ComponentConfig::Debug(_) => Ok(()),
        };
        r.err().into_iter().collect()
    }
}

const METRICS: &[Signal] = &[Signal::Metrics];
const BOTH: &[Signal] = &[Signal::Logs, Signal::Metrics];

static SPECS: &[Spec] = &[
    Spec {
        kind: Kind::Receiver,
        type_name: "hostmetrics",
        stability: Stability::Beta,
        signals: METRICS,
        description: "host CPU, memory, load, disk, network and filesystem metrics from /proc and statvfs",
        parse: |v| decode(v).map(ComponentConfig::HostMetrics),
    },
    Spec {
        kind: Kind::Receiver,
        type_name: "otlp",
        stability: Stability::Beta,
        signals: BOTH,
        description: "OTLP/HTTP server (protobuf or JSON, optional gzip) for logs and metrics",
        parse: |v| decode(v).map(ComponentConfig::OtlpReceiver),
    },
    Spec {
        kind: Kind::Processor,
        type_name: "batch",
        stability: Stability::Beta,
        signals: BOTH,
        description: "groups items into batches by size and timeout",
        parse: |v| decode(v).map(ComponentConfig::Batch),
    },
    Spec {
        kind: Kind::Exporter,
        type_name: "prometheus",
        stability: Stability::Beta,
        signals: METRICS,
        description: "serves the pipeline's metrics for Prometheus to scrape",
        parse: |v| decode(v).map(ComponentConfig::Prometheus),
    },
    Spec {
        kind: Kind::Exporter,
        type_name: "file",
        stability: Stability::Beta,
        signals: BOTH,
        description: "writes OTLP/JSON lines to a file, rotated by size",
        parse: |v| decode(v).map(ComponentConfig::File),
    },
    Spec {
        kind: Kind::Exporter,
        type_name: "otlp",
        stability: Stability::Alpha,
        signals: BOTH,
        description: "sends OTLP/HTTP (protobuf or JSON) to a collector, with retries",
        parse: |v| decode(v).map(ComponentConfig::OtlpExporter),
    },
    Spec {
        kind: Kind::Exporter,
        type_name: "debug",
        stability: Stability::Development,
        signals: BOTH,
        description: "writes a human-readable summary of each batch to the agent's log",
        parse: |v| decode(v).map(ComponentConfig::Debug),
    },
];

/// Every built-in component type.
pub fn specs() -> &'static [Spec] {
    SPECS
}

/// The built-in type `type_name` of `kind`.
pub fn find(kind: Kind, type_name: &str) -> Option<&'static Spec> {
    SPECS
        .iter()
        .find(|s| s.kind == kind && s.type_name == type_name)
}

/// The type names of one kind.
pub fn types_of(kind: Kind) -> Vec<&'static str> {
    SPECS
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.type_name)
        .collect()
}
