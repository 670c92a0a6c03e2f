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

use super::canonical::to_canonical_json;
use super::keys::{hex, sha256};
use serde::{Deserialize, Serialize};
use srediag_plugin_sdk::PluginType;
use srediag_sys::landlock::TcpPorts;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use yaml_rust2::parser::{Event, Parser};

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
    /// What the plugin needs from the agent and the host.
    pub requires: Requires,
    /// How the plugin is confined; the agent never grants more.
    #[serde(default)]
    pub sandbox: Sandbox,
    /// Diagnostics verbs (`srediag diagnose <plugin> <verb>`), diagnostics plugins only.
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

/// One diagnostics verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliVerb {
    /// `[a-z][a-z0-9-]*`.
    pub name: String,
    /// Help text.
    #[serde(default)]
    pub description: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<CliArg>,
}

/// One argument of a verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliArg {
    /// `[a-z][a-z0-9-]*`.
    pub name: String,
    /// Help text.
    #[serde(default)]
    pub description: String,
    /// Must be given.
    #[serde(default)]
    pub required: bool,
}

/// A file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Positions of keys and values, by dotted path, from the pre-scan.
#[derive(Default)]
struct Positions(BTreeMap<String, (usize, usize)>);

impl Positions {
    fn at(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = self.0.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.0.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: HashSet<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Walks the YAML events: refuses anchors, aliases, tags, deep nesting, too many nodes,
/// duplicate keys and multiple documents; records positions.
fn prescan(text: &str) -> Result<Positions, ManifestError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = Positions::default();
    let mut events = 0usize;
    let mut docs = 0usize;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| ManifestError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            msg: format!("invalid YAML: {}", e.info()),
        })?;
        let at = (mark.line(), mark.col() + 1);
        let err = |msg: String| ManifestError {
            line: at.0,
            col: at.1,
            msg,
        };
        events += 1;
        if events > MAX_EVENTS {
            return Err(err(format!("more than {MAX_EVENTS} YAML nodes")));
        }
        // The path of a node starting here, and whether it is a mapping key.
        let next_path = |stack: &mut Vec<Frame>| -> (String, bool) {
            match stack.last_mut() {
                None => (String::new(), false),
                Some(Frame::Seq { path, next }) => {
                    *next += 1;
                    (format!("{path}[{}]", *next - 1), false)
                }
                Some(Frame::Map { path, key, .. }) => match key.take() {
                    Some(k) => (
                        if path.is_empty() {
                            k
                        } else {
                            format!("{path}.{k}")
                        },
                        false,
                    ),
                    None => (path.clone(), true),
                },
            }
        };
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                docs += 1;
                if docs > 1 {
                    return Err(err("more than one YAML document".into()));
                }
            }
            Event::Alias(_) => {
                return Err(err("YAML aliases are not allowed in a manifest".into()));
            }
            Event::Scalar(value, _, anchor, tag) => {
                if anchor != 0 {
                    return Err(err("YAML anchors are not allowed in a manifest".into()));
                }
                if tag.is_some() {
                    return Err(err("YAML tags are not allowed in a manifest".into()));
                }
                let (path, is_key) = next_path(&mut stack);
                if is_key {
                    if let Some(Frame::Map {
                        path: mp,
                        key,
                        seen,
                    }) = stack.last_mut()
                    {
                        if !seen.insert(value.clone()) {
                            return Err(err(format!("duplicate key {value:?}")));
                        }
                        let full = if mp.is_empty() {
                            value.clone()
                        } else {
                            format!("{mp}.{value}")
                        };
                        pos.0.entry(full).or_insert(at);
                        *key = Some(value);
                    }
                } else {
                    pos.0.entry(path).or_insert(at);
                }
            }
            Event::MappingStart(anchor, ref tag) | Event::SequenceStart(anchor, ref tag) => {
                if anchor != 0 {
                    return Err(err("YAML anchors are not allowed in a manifest".into()));
                }
                if tag.is_some() {
                    return Err(err("YAML tags are not allowed in a manifest".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(err(format!("nesting deeper than {MAX_DEPTH}")));
                }
                let (path, is_key) = next_path(&mut stack);
                if is_key {
                    return Err(err(
                        "complex (non-scalar) mapping keys are not allowed".into()
                    ));
                }
                pos.0.entry(path.clone()).or_insert(at);
                if matches!(ev, Event::MappingStart(..)) {
                    stack.push(Frame::Map {
                        path,
                        key: None,
                        seen: HashSet::new(),
                    });
                } else {
                    stack.push(Frame::Seq { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(pos)
}

fn valid_name(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// A bundle-relative path is safe: relative, `/`-separated, no empty, `.` or `..` components,
/// no NUL or backslash, at most 255 bytes per component and 1024 in all. Returns the path
/// without a leading `./`.
pub fn safe_relative_path(p: &str) -> Result<&str, String> {
    let q = p.strip_prefix("./").unwrap_or(p);
    if q.is_empty() {
        return Err("empty path".into());
    }
    if q.starts_with('/') {
        return Err(format!("{p:?} is absolute: bundle paths are relative"));
    }
    if q.len() > 1024 || q.contains(['\0', '\\']) {
        return Err(format!(
            "{p:?} contains a forbidden character or is too long"
        ));
    }
    for c in q.split('/') {
        match c {
            "" | "." => return Err(format!("{p:?} has an empty or '.' component")),
            ".." => {
                return Err(format!(
                    "{p:?} contains '..': bundle paths may not leave the bundle"
                ));
            }
            c if c.len() > 255 => {
                return Err(format!("{p:?} has a component longer than 255 bytes"));
            }
            _ => {}
        }
    }
    Ok(q)
}

fn host_path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == ".." || c == ".")
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

    /// Semantic checks: `(field path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e: Vec<(String, String)> = Vec::new();
        let mut push = |p: &str, m: String| e.push((p.to_string(), m));
        if self.api_version != API_VERSION {
            push(
                "api_version",
                format!(
                    "unsupported {:?}: this agent reads {API_VERSION:?}",
                    self.api_version
                ),
            );
        }
        if !valid_name(&self.name, 63) {
            push(
                "name",
                format!("{:?} must match [a-z0-9][a-z0-9-]{{0,62}}", self.name),
            );
        }
        if semver::Version::parse(&self.version).is_err() {
            push(
                "version",
                format!("{:?} is not a semantic version (e.g. 1.2.3)", self.version),
            );
        }
        if self.description.len() > 1024 || self.description.contains('\0') {
            push(
                "description",
                "longer than 1024 bytes or contains NUL".into(),
            );
        }
        if !is_hex64(&self.sha256) {
            push("sha256", "must be 64 lowercase hex digits".into());
        }
        for (path, f) in &self.files {
            match safe_relative_path(path) {
                Err(m) => push(&format!("files.{path}"), m),
                Ok(q) if q != path => push(
                    &format!("files.{path}"),
                    "write file paths without a leading './'".into(),
                ),
                Ok(q) if RESERVED_FILES.contains(&q) => push(
                    &format!("files.{path}"),
                    format!("{q} is never listed in files"),
                ),
                Ok(_) => {}
            }
            if !is_hex64(&f.sha256) {
                push(
                    &format!("files.{path}.sha256"),
                    "must be 64 lowercase hex digits".into(),
                );
            }
        }
        match safe_relative_path(&self.entrypoint) {
            Err(m) => push("entrypoint", m),
            Ok(q) => match self.files.get(q) {
                None => push("entrypoint", format!("{q:?} is not listed in files")),
                Some(f) if f.sha256 != self.sha256 => {
                    push("sha256", format!("differs from files.{q}.sha256"))
                }
                Some(_) => {}
            },
        }
        for (i, c) in self.capabilities.iter().enumerate() {
            if c.is_empty()
                || c.len() > 128
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-".contains(&b))
            {
                push(
                    &format!("capabilities[{i}]"),
                    format!("{c:?} must match [a-z0-9/._-]{{1,128}}"),
                );
            }
        }
        let r = &self.requires;
        if semver::VersionReq::parse(&r.srediag).is_err() {
            push(
                "requires.srediag",
                format!(
                    "{:?} is not a semver requirement (e.g. \">=0.1, <0.3\")",
                    r.srediag
                ),
            );
        }
        if let Some(k) = &r.min_kernel
            && srediag_sys::facts::parse_kernel(k).is_none()
        {
            push("requires.min_kernel", format!("{k:?} must look like 5.13"));
        }
        for (i, f) in r.kernel_features.iter().enumerate() {
            if !valid_name(f, 32) {
                push(
                    &format!("requires.kernel_features[{i}]"),
                    format!("{f:?} must match [a-z0-9-]{{1,32}}"),
                );
            }
        }
        let s = &self.sandbox;
        if let Some(p) = &s.seccomp_profile
            && !valid_name(p, 64)
        {
            push(
                "sandbox.seccomp_profile",
                format!("{p:?} must name a built-in profile ([a-z0-9-]+), not a path"),
            );
        }
        for (i, p) in s.landlock.read_only.iter().enumerate() {
            if !host_path_ok(p) {
                push(
                    &format!("sandbox.landlock.read_only[{i}]"),
                    format!("{p:?} must be an absolute host path without '.' or '..'"),
                );
            }
        }
        for (i, p) in s.landlock.read_write.iter().enumerate() {
            if !host_path_ok(p) || p == "/" {
                push(
                    &format!("sandbox.landlock.read_write[{i}]"),
                    format!("{p:?} must be an absolute host path other than / without '.' or '..'"),
                );
            }
        }
        for (field, msg) in s.network.problems() {
            push(&format!("sandbox.network{field}"), msg);
        }
        if s.network.granted()
            && !matches!(
                self.plugin_type,
                PluginType::Receiver | PluginType::Exporter
            )
        {
            push(
                "sandbox.network",
                "only receivers and exporters may have network access".into(),
            );
        }
        if let Some(m) = &s.limits.memory_max
            && srediag_sys::units::parse_bytes(m).is_err()
        {
            push(
                "sandbox.limits.memory_max",
                format!("{m:?} is not a size (e.g. 256MiB)"),
            );
        }
        if let Some(c) = &s.limits.cpu_max
            && !c.parse::<f64>().is_ok_and(|v| v > 0.0 && v <= 1024.0)
        {
            push(
                "sandbox.limits.cpu_max",
                format!("{c:?} must be a number of cores in (0, 1024]"),
            );
        }
        if s.limits.pids_max == Some(0) {
            push("sandbox.limits.pids_max", "must be at least 1".into());
        }
        if !self.cli.is_empty() && self.plugin_type != PluginType::Diagnostics {
            push("cli", "only diagnostics plugins declare CLI verbs".into());
        }
        let mut verbs = HashSet::new();
        for (i, v) in self.cli.iter().enumerate() {
            if !valid_name(&v.name, 64)
                || !v.name.as_bytes()[0].is_ascii_lowercase()
                || !verbs.insert(&v.name)
            {
                push(
                    &format!("cli[{i}].name"),
                    format!("{:?} must be a unique [a-z][a-z0-9-]* verb", v.name),
                );
            }
            for (j, a) in v.args.iter().enumerate() {
                if !valid_name(&a.name, 64) {
                    push(
                        &format!("cli[{i}].args[{j}].name"),
                        format!("{:?} must match [a-z0-9-]+", a.name),
                    );
                }
            }
        }
        if let Some(schema) = &self.config_schema
            && !schema.is_object()
        {
            push("config_schema", "must be a JSON Schema object".into());
        }
        e
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
    let yaml = serde_yaml::to_string(&m).expect("serialize");
    if let Ok(again) = Manifest::parse(yaml.as_bytes()) {
        assert_eq!(
            again.statement_digest(),
            m.statement_digest(),
            "round trip changed the signed bytes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let h = "a".repeat(64);
        format!(
            "api_version: srediag.io/plugin/v1\nname: dedup\ntype: processor\nversion: 1.2.0\nentrypoint: ./bin/dedup\nsha256: {h}\ncapabilities: [processor/dedup]\nrequires:\n  srediag: \">=0.1\"\n  ipc_protocol: 1\n  schema_version: 1\nfiles:\n  bin/dedup:\n    sha256: {h}\n"
        )
    }

    #[test]
    fn parses_and_signs_deterministically() {
        let m = Manifest::parse(sample().as_bytes()).unwrap();
        assert_eq!(m.entrypoint_path(), "bin/dedup");
        let mut signed = m.clone();
        signed.cosign_signature = Some("MEUC".into());
        assert_eq!(
            m.statement(),
            signed.statement(),
            "the signature is not part of the signed bytes"
        );
        let s = String::from_utf8(m.statement()).unwrap();
        assert!(s.starts_with(r#"{"_type":"https://srediag.io/plugin-bundle/statement/v1","manifest":{"api_version""#), "{s}");
        assert!(!s.contains(' ') || s.contains("\">=0.1\""));
    }

    #[test]
    fn errors_have_positions() {
        let bad = sample().replace("version: 1.2.0", "version: 1.2.0\nbogus: 1");
        let e = Manifest::parse(bad.as_bytes()).unwrap_err();
        assert!(e.msg.contains("unknown field"), "{e}");
        assert_eq!(e.line, 5, "{e}");
        let bad = sample().replace("entrypoint: ./bin/dedup", "entrypoint: ../dedup");
        let e = Manifest::parse(bad.as_bytes()).unwrap_err();
        assert_eq!((e.line, e.msg.contains("..")), (5, true), "{e}");
        let bad = sample().replace("name: dedup", "name: dedup\nname: other");
        let e = Manifest::parse(bad.as_bytes()).unwrap_err();
        assert!(e.msg.contains("duplicate key"), "{e}");
    }

    #[test]
    fn hostile_yaml() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
        assert!(
            Manifest::parse(bomb.as_bytes())
                .unwrap_err()
                .msg
                .contains("anchors")
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            Manifest::parse(deep.as_bytes())
                .unwrap_err()
                .msg
                .contains("nesting")
        );
        let big = vec![b'#'; MAX_MANIFEST_BYTES + 1];
        assert!(Manifest::parse(&big).unwrap_err().msg.contains("limit"));
        assert!(Manifest::parse(b"!!binary x: 1").is_err());
        assert!(Manifest::parse(b"a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn network_grants_name_ports() {
        let with = |net: &str| {
            sample()
                .replace("type: processor", "type: receiver")
                .replace("files:\n", &format!("sandbox:\n  network: {net}\nfiles:\n"))
        };
        let m = Manifest::parse(with("{connect: [443, 8123], bind: [13133]}").as_bytes()).unwrap();
        assert_eq!(
            m.sandbox.network.ports(),
            TcpPorts {
                connect: vec![443, 8123],
                bind: vec![13133]
            }
        );
        // `false` is signed as it always was (the statement of an old manifest is unchanged).
        let m = Manifest::parse(with("false").as_bytes()).unwrap();
        assert!(!m.sandbox.network.granted());
        assert!(
            String::from_utf8(m.statement())
                .unwrap()
                .contains(r#""network":false"#)
        );
        // `true` (every port) is refused, saying how to list ports, at its line.
        let e = Manifest::parse(with("true").as_bytes()).unwrap_err();
        assert!(
            e.msg.starts_with("sandbox.network: `true` (every TCP port")
                && e.msg.contains("connect: [443, 8123]"),
            "{e}"
        );
        assert_eq!(e.line, 13, "{e}");
        for (bad, what) in [
            ("{connect: [0]}", "sandbox.network.connect[0]: port 0"),
            (
                "{bind: [80, 80]}",
                "sandbox.network.bind[1]: port 80 is listed twice",
            ),
            ("{connect: [70000]}", "70000"),
            ("{connect: [443], udp: [53]}", "unknown field `udp`"),
        ] {
            let e = Manifest::parse(with(bad).as_bytes()).unwrap_err();
            assert!(e.msg.contains(what), "{bad}: {e}");
        }
        // Processors get no network.
        let e = Manifest::parse(
            with("{connect: [443]}")
                .replace("type: receiver", "type: processor")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.msg.contains("only receivers and exporters"), "{e}");
    }

    #[test]
    fn paths() {
        assert_eq!(safe_relative_path("./a/b").unwrap(), "a/b");
        for bad in ["", "/etc/passwd", "a/../b", "..", "a//b", "a/./b", "a\\b"] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
    }
}
