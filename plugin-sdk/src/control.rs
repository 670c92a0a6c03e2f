//! The control protocol between the agent and a plugin.
//!
//! Transport: an `AF_UNIX` `SOCK_SEQPACKET` socketpair; the plugin's end is fd [`CONTROL_FD`].
//! Each message is one packet holding one JSON object (at most [`MAX_MESSAGE`] bytes) tagged by
//! `type`. Message boundaries come from the socket, so nothing a plugin prints on stdout or
//! stderr can break the protocol. Everything a plugin sends is untrusted: the agent bounds the
//! size, parses strictly (unknown fields and types are errors) and counts malformed messages.
//!
//! Sequence: plugin `hello` → agent `welcome` (or `reject`, e.g. on a protocol version skew) →
//! plugin `ready`; then agent `heartbeat` / plugin `heartbeat_ack`; agent `shutdown` → plugin
//! `shutdown_ack` and exit. Version 2 adds: agent `drain` → plugin `drain_ack` once every batch
//! it received is answered (hot swap, make-before-break), plugin `health` (an extension's
//! own status), and diagnostics verbs: agent `invoke` (id, verb, checked arguments, the output
//! kind the operator asked for) → plugin `invoke_text` / `invoke_json` / `invoke_file` chunks →
//! plugin `invoke_end` (status); agent `cancel` stops an invocation (Ctrl-C, timeout, output
//! limit). The agent speaks every version from [`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`]
//! and sends a plugin only the messages its version knows (verbs need 2).

use serde::{Deserialize, Serialize};

/// The protocol version this SDK speaks. The agent refuses a plugin that speaks a version outside
/// [`MIN_PROTOCOL_VERSION`]..=[`PROTOCOL_VERSION`], naming both (the seed's "ABI mismatch").
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest protocol version the agent still speaks (1: no `drain`, no `health`).
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// A plugin's own view of its health (protocol 2, `health` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working as intended.
    Ok,
    /// Working, with a problem worth telling (e.g. a backend slow to answer).
    Degraded,
    /// Not doing its job.
    Unhealthy,
}

impl HealthStatus {
    /// Lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// The plugin's end of the control socket.
pub const CONTROL_FD: i32 = 3;

/// Largest control message in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What a diagnostics verb writes (the manifest's `cli[].output[].kind`): the operator picks one
/// per invocation (`-o text|json`, `--output FILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Text for a terminal (`invoke_text`).
    Text,
    /// JSON values, one per `invoke_json` (printed as JSON Lines).
    Json,
    /// A file of a declared media type (`invoke_file`, base64), written by the CLI.
    File,
}

impl OutputKind {
    /// Lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Text => "text",
            OutputKind::Json => "json",
            OutputKind::File => "file",
        }
    }
}

/// How an invocation ended, as the plugin reports it (`invoke_end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvokeStatus {
    /// The verb finished.
    Ok,
    /// The verb failed; `message` says why.
    Failed,
    /// The verb stopped because the agent cancelled it.
    Cancelled,
}

impl InvokeStatus {
    /// Lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            InvokeStatus::Ok => "ok",
            InvokeStatus::Failed => "failed",
            InvokeStatus::Cancelled => "cancelled",
        }
    }
}

/// Largest text of one `invoke_text` the SDK sends (bytes; JSON escaping may grow it up to six
/// times, which still fits [`MAX_MESSAGE`]).
pub const MAX_TEXT_CHUNK: usize = 8 * 1024;

/// Largest file piece of one `invoke_file` the SDK sends (bytes before base64).
pub const MAX_FILE_CHUNK: usize = 32 * 1024;

/// The seed's plugin types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginType {
    /// Ingests telemetry from external sources.
    Receiver,
    /// Transforms, deduplicates, compresses telemetry.
    Processor,
    /// Forwards telemetry to external destinations.
    Exporter,
    /// Provides diagnostics verbs under `srediag diagnose`.
    Diagnostics,
    /// Special observability or integration capabilities.
    Extension,
}

impl PluginType {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginType::Receiver => "receiver",
            PluginType::Processor => "processor",
            PluginType::Exporter => "exporter",
            PluginType::Diagnostics => "diagnostics",
            PluginType::Extension => "extension",
        }
    }
}

/// Plugin → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PluginMsg {
    /// First message: who the plugin is and what it speaks.
    Hello {
        /// [`PROTOCOL_VERSION`] of the plugin's SDK.
        protocol_version: u32,
        /// Plugin name.
        name: String,
        /// Plugin version.
        version: String,
        /// Plugin type.
        plugin_type: PluginType,
        /// Capabilities (the seed's `Capabilities()`), e.g. `processor/vectorhash`.
        capabilities: Vec<String>,
        /// The SDK version it was built with.
        sdk_version: String,
        /// [`crate::wire::WIRE_SCHEMA_VERSION`] of the plugin's SDK (the data path's schema).
        schema_version: u32,
    },
    /// `init` and `register` succeeded; the plugin serves.
    Ready {},
    /// Answer to a heartbeat.
    HeartbeatAck {
        /// The heartbeat's sequence number.
        seq: u64,
    },
    /// Protocol 2: text output of invocation `id`.
    InvokeText {
        /// The invocation.
        id: u64,
        /// A piece of text (the CLI escapes control characters other than newline and tab).
        text: String,
    },
    /// Protocol 2: one JSON value of invocation `id` (the CLI prints one per line).
    InvokeJson {
        /// The invocation.
        id: u64,
        /// The value.
        value: serde_json::Value,
    },
    /// Protocol 2: a piece of the file invocation `id` writes (in order).
    InvokeFile {
        /// The invocation.
        id: u64,
        /// Media type; one the verb declares in the manifest.
        media_type: String,
        /// The bytes, base64 (standard alphabet, padded).
        data: String,
    },
    /// Protocol 2: invocation `id` is over; nothing more comes for it.
    InvokeEnd {
        /// The invocation.
        id: u64,
        /// How it ended.
        status: InvokeStatus,
        /// Why it failed, or a one-line summary (the CLI prints it on stderr).
        #[serde(default)]
        message: String,
    },
    /// A runtime error the plugin survived (counted in `srediag_plugin_runtime_errors_total`).
    Error {
        /// What went wrong.
        message: String,
    },
    /// `shutdown` ran; the plugin exits next.
    ShutdownAck {},
    /// Protocol 2: every batch received before `drain` is answered; nothing is being processed.
    DrainAck {},
    /// Protocol 2: the plugin's own health (extensions report it; the agent shows and exports it).
    Health {
        /// The status.
        status: HealthStatus,
        /// Why, for an operator (short; the agent cuts and escapes it).
        #[serde(default)]
        message: String,
    },
}

impl PluginMsg {
    /// The message's `type` word (for logs: never the plugin's whole message).
    pub fn kind(&self) -> &'static str {
        match self {
            PluginMsg::Hello { .. } => "hello",
            PluginMsg::Ready {} => "ready",
            PluginMsg::HeartbeatAck { .. } => "heartbeat_ack",
            PluginMsg::InvokeText { .. } => "invoke_text",
            PluginMsg::InvokeJson { .. } => "invoke_json",
            PluginMsg::InvokeFile { .. } => "invoke_file",
            PluginMsg::InvokeEnd { .. } => "invoke_end",
            PluginMsg::Error { .. } => "error",
            PluginMsg::ShutdownAck {} => "shutdown_ack",
            PluginMsg::DrainAck {} => "drain_ack",
            PluginMsg::Health { .. } => "health",
        }
    }
}

/// Agent → plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMsg {
    /// The handshake is accepted; here is the plugin's configuration.
    Welcome {
        /// The agent's protocol version.
        protocol_version: u32,
        /// The plugin's settings from the agent's configuration (`plugins.<id>.config`).
        config: serde_json::Value,
        /// The shared-memory rings, when the plugin's component is in a pipeline.
        #[serde(default)]
        data_path: Option<DataPathInfo>,
    },
    /// Protocol 2: run a diagnostics verb (`srediag diagnose <plugin> <verb>`); answer with
    /// output chunks of kind `output` for `id`, then `invoke_end`.
    Invoke {
        /// Invocation id to echo.
        id: u64,
        /// The verb (declared in the manifest's `cli`).
        verb: String,
        /// Every declared argument that has a value (given or default), checked against the
        /// manifest: strings and enum values as strings, integers as integers, booleans as
        /// booleans, durations as integer milliseconds.
        args: std::collections::BTreeMap<String, serde_json::Value>,
        /// What the operator asked for (one of the verb's declared output kinds).
        output: OutputKind,
    },
    /// Protocol 2: stop invocation `id` (the operator pressed Ctrl-C, its timeout passed, or its
    /// output went over the limit). Output sent after this is discarded.
    Cancel {
        /// The invocation.
        id: u64,
    },
    /// The handshake is refused.
    Reject {
        /// Stable error code (see the agent's error table).
        code: String,
        /// Why, naming both sides of a mismatch.
        message: String,
    },
    /// Liveness check; answer with `heartbeat_ack`.
    Heartbeat {
        /// Sequence number to echo.
        seq: u64,
    },
    /// Stop: run `shutdown`, answer `shutdown_ack`, exit within `grace_ms`.
    Shutdown {
        /// Time before the agent kills the plugin.
        grace_ms: u64,
    },
    /// Protocol 2: another incarnation takes over the data path; the agent sends no new batches.
    /// Answer every batch already received, then `drain_ack`.
    Drain {},
}

/// Where the data path's rings are (fds the agent passed at spawn) and their probe ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPathInfo {
    /// fd of the agent→plugin ring's memfd (the plugin consumes).
    pub to_plugin_fd: i32,
    /// fd of the plugin→agent ring's memfd (the plugin produces).
    pub from_plugin_fd: i32,
    /// Probe id of the agent→plugin ring (the first argument of the SDK's probe sites).
    pub to_plugin_ring: u64,
    /// Probe id of the plugin→agent ring.
    pub from_plugin_ring: u64,
}

/// The agent→plugin ring's memfd in the plugin (fd 5 is the sandbox helper's sealed executable,
/// closed at exec).
pub const TO_PLUGIN_FD: i32 = 6;
/// The plugin→agent ring's memfd in the plugin.
pub const FROM_PLUGIN_FD: i32 = 7;

/// Encodes a message as one packet.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).unwrap_or_default()
}

/// Why a packet is not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("control message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Not a valid message.
    #[error("malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Decodes one packet strictly.
pub fn decode<T: for<'de> Deserialize<'de>>(packet: &[u8]) -> Result<T, DecodeError> {
    if packet.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLarge(packet.len()));
    }
    Ok(serde_json::from_slice(packet)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let m = PluginMsg::Hello {
            protocol_version: 1,
            name: "x".into(),
            version: "0.1.0".into(),
            plugin_type: PluginType::Processor,
            capabilities: vec!["processor/x".into()],
            sdk_version: "0.1.0".into(),
            schema_version: 1,
        };
        let bytes = encode(&m);
        assert_eq!(decode::<PluginMsg>(&bytes).unwrap(), m);
        assert!(decode::<PluginMsg>(br#"{"type":"ready","extra":1}"#).is_err());
        assert!(decode::<PluginMsg>(br#"{"type":"format_disk"}"#).is_err());
        assert!(matches!(
            decode::<PluginMsg>(&vec![b' '; MAX_MESSAGE + 1]),
            Err(DecodeError::TooLarge(_))
        ));
        assert_eq!(
            decode::<AgentMsg>(br#"{"type":"heartbeat","seq":7}"#).unwrap(),
            AgentMsg::Heartbeat { seq: 7 }
        );
    }

    #[test]
    fn verb_messages_round_trip_and_are_strict() {
        let invoke = AgentMsg::Invoke {
            id: 3,
            verb: "cpu-profile".into(),
            args: [("duration".to_string(), serde_json::json!(10_000))].into(),
            output: OutputKind::File,
        };
        assert_eq!(decode::<AgentMsg>(&encode(&invoke)).unwrap(), invoke);
        for m in [
            PluginMsg::InvokeText {
                id: 3,
                text: "x".into(),
            },
            PluginMsg::InvokeJson {
                id: 3,
                value: serde_json::json!({"a": [1]}),
            },
            PluginMsg::InvokeFile {
                id: 3,
                media_type: "image/svg+xml".into(),
                data: "AAAA".into(),
            },
            PluginMsg::InvokeEnd {
                id: 3,
                status: InvokeStatus::Cancelled,
                message: String::new(),
            },
        ] {
            assert_eq!(decode::<PluginMsg>(&encode(&m)).unwrap(), m);
        }
        assert!(
            decode::<PluginMsg>(br#"{"type":"invoke_end","id":1,"status":"exploded"}"#).is_err()
        );
        assert!(
            decode::<PluginMsg>(br#"{"type":"invoke_text","id":1,"text":"x","more":1}"#).is_err()
        );
        assert!(decode::<AgentMsg>(br#"{"type":"invoke","id":1,"verb":"v","args":{}}"#).is_err());
    }
}
