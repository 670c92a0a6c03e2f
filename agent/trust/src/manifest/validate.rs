//! Semantic validation of a decoded manifest: names, versions, safe relative paths, digests,
//! the sandbox it asks for. Errors are `(field path, message)`; the parser turns the first into
//! a positioned [`ManifestError`](super::ManifestError).

use super::*;

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

/// Why a bundle-relative path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// Nothing (or only `./`).
    #[error("empty path")]
    Empty,
    /// Starts with `/`.
    #[error("{0:?} is absolute: bundle paths are relative")]
    Absolute(String),
    /// A NUL or a backslash, or longer than 1024 bytes.
    #[error("{0:?} contains a forbidden character or is too long")]
    Character(String),
    /// An empty or `.` component.
    #[error("{0:?} has an empty or '.' component")]
    EmptyComponent(String),
    /// A `..` component.
    #[error("{0:?} contains '..': bundle paths may not leave the bundle")]
    Parent(String),
    /// A component over 255 bytes.
    #[error("{0:?} has a component longer than 255 bytes")]
    LongComponent(String),
}

/// A bundle-relative path is safe: relative, `/`-separated, no empty, `.` or `..` components,
/// no NUL or backslash, at most 255 bytes per component and 1024 in all. Returns the path
/// without a leading `./`.
pub fn safe_relative_path(p: &str) -> Result<&str, UnsafePath> {
    let q = p.strip_prefix("./").unwrap_or(p);
    if q.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if q.starts_with('/') {
        return Err(UnsafePath::Absolute(p.to_string()));
    }
    if q.len() > 1024 || q.contains(['\0', '\\']) {
        return Err(UnsafePath::Character(p.to_string()));
    }
    for c in q.split('/') {
        match c {
            "" | "." => return Err(UnsafePath::EmptyComponent(p.to_string())),
            ".." => return Err(UnsafePath::Parent(p.to_string())),
            c if c.len() > 255 => return Err(UnsafePath::LongComponent(p.to_string())),
            _ => {}
        }
    }
    Ok(q)
}

fn host_path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == ".." || c == ".")
}

impl Manifest {
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
                Err(m) => push(&format!("files.{path}"), m.to_string()),
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
            Err(m) => push("entrypoint", m.to_string()),
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
                PluginType::Receiver | PluginType::Exporter | PluginType::Extension
            )
        {
            push(
                "sandbox.network",
                "only receivers, exporters and extensions may have network access".into(),
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
        if self.bypass_harmless && self.plugin_type != PluginType::Processor {
            push(
                "bypass_harmless",
                "only processors can be bypassed (data_path.on_unavailable)".into(),
            );
        }
        for (path, msg) in super::cli::problems(&self.cli) {
            push(&path, msg);
        }
        if let Some(schema) = &self.config_schema
            && !schema.is_object()
        {
            push("config_schema", "must be a JSON Schema object".into());
        }
        e
    }
}
