//! The handshake: `hello` (versions, type, name) → `welcome` (configuration, data path) or
//! `reject` → `ready`.
//!
//! Everything in `hello` is the plugin's claim: versions and type are compared, names and
//! versions must be short printable words ([`handshake_text`]) before they are stored, shown or
//! logged, and a refusal quotes at most [`QUOTE`] characters of anything the plugin sent.

use super::Supervisor;
use super::end::{End, ExitReason, codes};
use crate::plugins::control::ControlChannel;
use crate::plugins::ledger::{Violation, escape_controls};
use srediag_plugin_sdk::control::{AgentMsg, DataPathInfo, PROTOCOL_VERSION, PluginMsg};
use srediag_plugin_sdk::wire::WIRE_SCHEMA_VERSION;

/// Most characters of plugin-supplied text quoted in an error.
const QUOTE: usize = 64;

/// Longest name or version accepted in `hello`.
const MAX_WORD: usize = 64;

/// Most capabilities kept from `hello`, and the longest one.
const MAX_CAPABILITIES: usize = 64;
const MAX_CAPABILITY: usize = 128;

/// True for a name, version or capability a plugin may announce: 1..=`max` characters of
/// `[A-Za-z0-9._+:/-]` (semver, `processor/dedup`), nothing that could move a terminal cursor or
/// fake a log field.
pub fn handshake_text(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+:/-".contains(&b))
}

/// Plugin-supplied text quoted in an error: cut and escaped.
fn quote(s: &str) -> String {
    let cut: String = s.chars().take(QUOTE).collect();
    let more = if s.chars().count() > QUOTE { "…" } else { "" };
    format!("\"{}\"{more}", escape_controls(&cut))
}

impl Supervisor {
    /// Runs the handshake on `ctl`; `Ok` once the plugin said `ready`.
    pub(super) async fn handshake(
        &self,
        ctl: &ControlChannel,
        data_path: Option<DataPathInfo>,
    ) -> Result<(), End> {
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
            ("name", &name),
            ("version", &version),
            ("sdk_version", &sdk_version),
        ] {
            if !handshake_text(v, MAX_WORD) {
                return Err(self.reject(
                    ctl,
                    codes::ABI,
                    format!(
                        "hello: {field} {} is not 1–{MAX_WORD} characters of [A-Za-z0-9._+:/-]",
                        quote(v)
                    ),
                ));
            }
        }
        if protocol_version != PROTOCOL_VERSION {
            return Err(self.reject(
                ctl,
                codes::ABI,
                format!(
                    "protocol version mismatch: plugin {name} {version} speaks {protocol_version} (sdk {sdk_version}), this agent speaks {PROTOCOL_VERSION}; rebuild the plugin against srediag-plugin-sdk {}",
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
            .filter(|c| handshake_text(c, MAX_CAPABILITY))
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
                Ok(Some(PluginMsg::Ready {})) => return Ok(()),
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
        self.metrics
            .load
            .with_label_values(&[&self.name, "rejected_compat"])
            .inc();
        self.set(|s| s.error = Some(format!("{code}: {message}")));
        End::Rejected(format!("{code}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_words_are_short_and_printable() {
        for ok in [
            "1.2.3",
            "0.1.0-rc.1+build.5",
            "processor/dedup",
            "srediag-test-plugin",
        ] {
            assert!(handshake_text(ok, 64), "{ok}");
        }
        for bad in [
            "",
            "1.0\x1b[1;31m",
            "a b",
            "x\r",
            "\u{202e}",
            &"9".repeat(65),
            "\x1b]0;owned\x07",
        ] {
            assert!(!handshake_text(bad, 64), "{bad:?}");
        }
    }

    #[test]
    fn quotes_are_cut_and_escaped() {
        let q = quote(&format!("\x1b[31m{}", "v".repeat(60_000)));
        assert!(q.len() < 100, "{}", q.len());
        assert!(!q.contains('\x1b'));
    }
}
