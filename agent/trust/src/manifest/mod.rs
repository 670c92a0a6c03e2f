//! `manifest.yaml`: the plugin bundle's description, parsed as hostile input.
//!
//! Parsing order (docs/bundles.md): size cap ([`MAX_MANIFEST_BYTES`]) → a YAML event pre-scan
//! (anchors and aliases refused, nesting depth ≤ [`MAX_DEPTH`], at most [`MAX_EVENTS`] events,
//! duplicate keys refused, one document) → strict typed decoding (`deny_unknown_fields`) →
//! semantic validation (names, versions, safe relative paths, digests). Every error carries a
//! line and column.
//!
//! The signed statement ([`Manifest::statement`]) is the canonical JSON of
//! `{"_type": STATEMENT_TYPE, "manifest": <the typed manifest without cosign_signature>}`.

pub mod cli;
mod prescan;
#[cfg(test)]
mod tests;
mod validate;

use crate::canonical::to_canonical_json;
use crate::keys::{hex, sha256};
pub use cli::{ArgError, ArgType, CliArg, CliVerb, OutputSpec};
use prescan::prescan;
use serde::{Deserialize, Serialize};
use srediag_plugin_sdk::PluginType;
use srediag_sys::landlock::TcpPorts;
use std::collections::BTreeMap;
use std::fmt;
pub use validate::{UnsafePath, safe_relative_path};

/// Largest accepted `manifest.yaml`, checked before any parsing.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Deepest accepted nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 32;
/// Most YAML events (nodes) accepted.
pub const MAX_EVENTS: usize = 50_000;
/// The only manifest schema this agent reads.
pub const API_VERSION: &str = "srediag.io/plugin/v1";
/// `_type` of the signed statement (domain separation: a signature over this statement cannot
/// be a signature over anything else).
pub const STATEMENT_TYPE: &str = "https://srediag.io/plugin-bundle/statement/v1";
/// Names in a bundle that are never listed in `files` (the manifest and its signatures).
pub const RESERVED_FILES: [&str; 3] = ["manifest.yaml", "manifest.sig", "manifest.sigstore.json"];

/// A manifest problem at a position in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// 1-based line (0 when the problem is not at a position, e.g. the size cap).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "manifest.yaml: {}", self.msg)
        } else {
            write!(f, "manifest.yaml:{}:{}: {}", self.line, self.col, self.msg)
        }
    }
}

/// `manifest.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema of this file: `srediag.io/plugin/v1`.
    pub api_version: String,
    /// Plugin name: `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
    /// Plugin type (seed §2).
    #[serde(rename = "type")]
    pub plugin_type: PluginType,
    /// Semantic version; the rollback high-water mark compares it.
    pub version: String,
    /// One line for operators.
    #[serde(default)]
    pub description: String,
    /// The executable, a bundle-relative path listed in `files` (a leading `./` is allowed).
    pub entrypoint: String,
    /// SHA-256 (lowercase hex) of the entrypoint; must equal its `files` entry (seed field).
    pub sha256: String,
    /// The seed's in-manifest signature: base64 DER ECDSA over the statement (cosign
    /// `sign-blob --key` format). Excluded from the signed bytes; absent when the signature is
    /// detached (`manifest.sig`, `manifest.sigstore.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosign_signature: Option<String>,
    /// Capabilities the plugin provides (`processor/vectorhash`, `diag/dedup-stats`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Processors only: passing data on unprocessed while the plugin is down is harmless (a
    /// deduplicator, a sampler), so an operator may set `data_path.on_unavailable: bypass`.
    /// Default `false`: a redactor or a filter must not be skipped, and the agent refuses
    /// `bypass` for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bypass_harmless: bool,
    /// What the plugin needs from the agent and the host.
    pub requires: Requires,
    /// How the plugin is confined; the agent never grants more.
    #[serde(default)]
    pub sandbox: Sandbox,
    /// Diagnostics verbs (`srediag diagnose <plugin> <verb>`): names, typed arguments, output
    /// kinds ([`cli`]). Any plugin type may declare them; a diagnostics plugin exists for them.
    #[serde(default)]
    pub cli: Vec<CliVerb>,
    /// JSON Schema of the plugin's `config`, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
    /// Every file of the bundle except the manifest and its signatures, with its SHA-256.
    pub files: BTreeMap<String, FileEntry>,
}

/// `requires`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// srediag versions the plugin works with (semver requirement, e.g. `>=0.1, <0.3`).
    pub srediag: String,
    /// Control/IPC protocol version the plugin speaks.
    pub ipc_protocol: u32,
    /// Wire-schema (FlatBuffers) version the plugin speaks.
    pub schema_version: u32,
    /// Lowest kernel (`major.minor`), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
    /// Kernel features the plugin needs (`landlock`, `btf`, `seccomp`, …).
    #[serde(default)]
    pub kernel_features: Vec<String>,
}

/// `sandbox`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    /// Name of a built-in seccomp profile; default the plugin type's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
    /// Landlock paths on the host (absolute).
    pub landlock: Landlock,
    /// The TCP ports it may use (receivers and exporters only): `{connect: [443], bind: [4317]}`.
    /// Default `false`: no network (its own empty network namespace). `true` (every port) is
    /// refused.
    pub network: Network,
    /// Resource limits the plugin asks for (the operator's config may lower them).
    pub limits: Limits,
}

/// `sandbox.network` (and a plugin's `network` setting): `false`, or the TCP ports granted.
///
/// `true` was the grant of every TCP port (the agent's own OTLP receiver and `/metrics`, the
/// node's kubelet or metadata service included). It still parses, so old manifests and
/// configurations get an error saying how to list ports instead of a type error, and is refused
/// by validation ([`Network::problems`]); see ARCHITECTURE.md for why it is not an "all ports"
/// grant. Serialized as written (a bool stays a bool), so the signed statement of a manifest
/// with `network: false` is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Network {
    /// `false` (no network) or `true` (refused).
    Flag(bool),
    /// `{connect: [...], bind: [...]}`.
    Ports(TcpPorts),
}

impl Default for Network {
    fn default() -> Self {
        Network::Flag(false)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Network;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("false or the TCP ports, e.g. {connect: [443], bind: [4317]}")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Network, E> {
                Ok(Network::Flag(b))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Network, A::Error> {
                TcpPorts::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Network::Ports)
            }
        }
        d.deserialize_any(V)
    }
}

/// The message for `network: true`.
pub const ALL_PORTS_REFUSED: &str = "`true` (every TCP port, the agent's own OTLP receiver and \
    /metrics included) is not accepted: list the ports the plugin needs, e.g. \
    `network: {connect: [443, 8123], bind: [13133]}` (Landlock restricts ports, not addresses)";

impl Network {
    /// The ports granted (none for `false`, and for the refused `true`).
    pub fn ports(&self) -> TcpPorts {
        match self {
            Network::Ports(p) => p.clone(),
            Network::Flag(_) => TcpPorts::default(),
        }
    }

    /// Any port granted.
    pub fn granted(&self) -> bool {
        !self.ports().is_empty()
    }

    /// Problems as `(field below "network", message)`: `true`, port 0, duplicates, too many.
    pub fn problems(&self) -> Vec<(String, String)> {
        match self {
            Network::Flag(true) => vec![(String::new(), ALL_PORTS_REFUSED.into())],
            Network::Flag(false) => Vec::new(),
            Network::Ports(p) => p
                .problems()
                .into_iter()
                .map(|(f, m)| (format!(".{f}"), m))
                .collect(),
        }
    }
}

/// `sandbox.landlock`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Landlock {
    /// Host paths readable by the plugin.
    pub read_only: Vec<String>,
    /// Host paths writable by the plugin.
    pub read_write: Vec<String>,
}

/// `sandbox.limits` (strings, so the signed form has no floating point).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// e.g. `256MiB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<String>,
    /// Cores, e.g. `0.5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<String>,
    /// Most processes/threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
}

/// A file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Parses and validates `manifest.yaml` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let top = |msg: String| ManifestError {
            line: 0,
            col: 0,
            msg,
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(top(format!(
                "{} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| top(format!("not UTF-8: {e}")))?;
        let pos = prescan(text)?;
        let de = serde_yaml::Deserializer::from_str(text);
        let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let (line, col) = match e.inner().location() {
                Some(l) => (l.line(), l.column()),
                None => pos.at(&e.path().to_string()),
            };
            ManifestError {
                line,
                col,
                msg: e
                    .inner()
                    .to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        })?;
        if let Some((path, msg)) = m.validate().into_iter().next() {
            let (line, col) = pos.at(&path);
            return Err(ManifestError {
                line,
                col,
                msg: format!("{path}: {msg}"),
            });
        }
        Ok(m)
    }

    /// The entrypoint without a leading `./`.
    pub fn entrypoint_path(&self) -> &str {
        self.entrypoint
            .strip_prefix("./")
            .unwrap_or(&self.entrypoint)
    }

    /// The exact bytes a signature covers: canonical JSON (sorted keys, no insignificant
    /// whitespace) of `{"_type": STATEMENT_TYPE, "manifest": <this manifest without
    /// cosign_signature>}`. It includes the digest of every file.
    pub fn statement(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.cosign_signature = None;
        let v = serde_json::json!({ "_type": STATEMENT_TYPE, "manifest": m });
        to_canonical_json(&v).into_bytes()
    }

    /// `sha256:<hex>` of [`Manifest::statement`]: the bundle's identity (allowlist, rollback).
    pub fn statement_digest(&self) -> String {
        format!("sha256:{}", hex(&sha256(&self.statement())))
    }

    /// The parsed semantic version (validated by [`Manifest::parse`]).
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }
}

/// The fuzzing entry point (`fuzz/fuzz_targets/manifest.rs` and `tests/tests/trust_fuzz.rs`):
/// parsing arbitrary bytes must never panic, never take long, and whatever parses must be
/// valid, have a deterministic statement that is JSON, and keep its digest when re-serialized
/// and parsed again.
pub fn fuzz_one(data: &[u8]) {
    let Ok(m) = Manifest::parse(data) else { return };
    assert!(
        m.validate().is_empty(),
        "parse accepted an invalid manifest"
    );
    let s1 = m.statement();
    assert_eq!(s1, m.statement(), "statement is not deterministic");
    let v: serde_json::Value = serde_json::from_slice(&s1).expect("statement is JSON");
    assert_eq!(v["_type"], STATEMENT_TYPE);
    for (i, v) in m.cli.iter().enumerate() {
        cli::fuzz_args(v, &data[i.min(data.len())..]);
    }
    let yaml = serde_yaml::to_string(&m).expect("serialize");
    if let Ok(again) = Manifest::parse(yaml.as_bytes()) {
        assert_eq!(
            again.statement_digest(),
            m.statement_digest(),
            "round trip changed the signed bytes"
        );
    }
}
