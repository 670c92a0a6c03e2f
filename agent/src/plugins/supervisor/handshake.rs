//! The handshake: `hello` (versions, type, name) → `welcome` (configuration, data path) or
//! `reject` → `ready`.
//!
//! Everything in `hello` is the plugin's claim: versions and type are compared, names and
//! versions must be short words of a small ASCII charset ([`crate::text::check_handshake_text`])
//! before they are stored, shown or logged, and a refusal quotes at most a short escaped prefix
//! of anything the plugin sent.

use super::Supervisor;
use super::end::{End, ExitReason, codes};
use crate::plugins::control::ControlChannel;
use crate::plugins::ledger::Violation;
use crate::text::{HandshakeField, check_handshake_text, valid_handshake_text};
use srediag_plugin_sdk::control::{
    AgentMsg, DataPathInfo, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, PluginMsg,
};
use srediag_plugin_sdk::wire::WIRE_SCHEMA_VERSION;

/// Most capabilities kept from `hello`.
const MAX_CAPABILITIES: usize = 64;

impl Supervisor {
    /// Runs the handshake on `ctl`; once the plugin said `ready`, the protocol version it speaks.
    pub(super) async fn handshake(
        &self,
        ctl: &ControlChannel,
        data_path: Option<DataPathInfo>,
    ) -> Result<u32, End> {
        let hello = match ctl.recv().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(End::Crashed(
                    ExitReason::Crash,
                    "closed the control socket before hello".into(),
                ));
            }
            Err(e) => return Err(self.reject(ctl, codes::ABI, format!("malformed hello: {e}"))),
        };
        let PluginMsg::Hello {
            protocol_version,
            name,
            version,
            plugin_type,
            capabilities,
            sdk_version,
            schema_version,
        } = hello
        else {
            return Err(self.reject(ctl, codes::ABI, "the first message must be hello".into()));
        };
        for (field, v) in [
            (HandshakeField::Name, &name),
            (HandshakeField::Version, &version),
            (HandshakeField::SdkVersion, &sdk_version),
        ] {
            if let Err(e) = check_handshake_text(field, v) {
                return Err(self.reject(ctl, codes::ABI, format!("hello: {e}")));
            }
        }
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol_version) {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "protocol version mismatch: plugin {name} {version} speaks {protocol_version} (sdk {sdk_version}), this agent speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; rebuild the plugin against srediag-plugin-sdk {}",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if schema_version != WIRE_SCHEMA_VERSION {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "wire schema mismatch: plugin {name} {version} uses data schema {schema_version} (sdk {sdk_version}), this agent uses {WIRE_SCHEMA_VERSION}; rebuild the plugin against srediag-plugin-sdk {}",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if plugin_type != self.cfg.plugin_type {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "type mismatch: configured as {}, plugin says {}",
                    self.cfg.plugin_type.as_str(),
                    plugin_type.as_str()
                ),
            ));
        }
        let capabilities: Vec<String> = capabilities
            .into_iter()
            .filter(|c| valid_handshake_text(HandshakeField::Capability, c))
            .take(MAX_CAPABILITIES)
            .collect();
        self.set(|s| {
            s.version = version;
            s.capabilities = capabilities;
        });
        ctl.send(&AgentMsg::Welcome {
            protocol_version: PROTOCOL_VERSION,
            config: self.cfg.config.clone(),
            data_path,
        })
        .map_err(|e| End::Crashed(ExitReason::Crash, format!("control socket: {e}")))?;
        loop {
            match ctl.recv().await {
                Ok(Some(PluginMsg::Ready {})) => return Ok(protocol_version),
                Ok(Some(PluginMsg::Error { message })) => {
                    return Err(End::start_failed(format!(
                        "init failed: {}",
                        crate::plugins::ledger::clean(message.as_bytes())
                    )));
                }
                Ok(Some(other)) => {
                    self.metrics
                        .runtime_errors
                        .with_label_values(&[&self.name])
                        .inc();
                    self.ledger.record(Violation::UnexpectedMessage, 1, || {
                        format!("{} before ready", other.kind())
                    });
                }
                Ok(None) => {
                    return Err(End::Crashed(
                        ExitReason::Crash,
                        "closed the control socket before ready".into(),
                    ));
                }
                Err(e) => {
                    return Err(self.reject(ctl, codes::ABI, format!("malformed message: {e}")));
                }
            }
        }
    }

    /// Refuses the plugin (SRD-P002 and the like): tells it why, counts it, records the error.
    /// An incompatible plugin stays incompatible: it is `rejected` at once, not restarted.
    fn reject(&self, ctl: &ControlChannel, code: &str, message: String) -> End {
        let _ = ctl.send(&AgentMsg::Reject {
            code: code.to_string(),
            message: message.clone(),
        });
        let error = format!("{code}: {message}");
        self.emit(super::events::LoadRefused {
            status: "rejected_compat",
            error: &error,
        });
        End::Rejected(error)
    }
}
