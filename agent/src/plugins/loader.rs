//! Loading a plugin: from its configuration to a sealed executable and the sandbox it gets, before
//! anything is spawned.
//!
//! - `bundle:` — the bundle directory (relative: beneath the plugin directory) is verified
//!   against the trust policy: signature, every file's digest, compatibility, rollback
//!   (`trust::verify_bundle_dir`). The entrypoint is copied through the bundle's directory fd
//!   into a memfd while it is hashed, sealed, read back and compared with the signed digest
//!   (`trust/sealed.rs`). The rollback high-water mark is raised once the bundle is accepted.
//! - `path:` — unsigned development mode, only when the policy says `allow_unsigned: true`: the
//!   file is copied into a sealed memfd the same way (no signature, no rollback mark), and the
//!   load is logged loudly and counted.
//!
//! **The configuration may only narrow what a signed manifest grants** ([`effective_sandbox`]):
//! the seccomp profile must be the manifest's; the `log` (monitor-only) seccomp action is refused;
//! TCP ports only among those the manifest grants (`network: false` takes them all away); extra
//! read-only paths must lie beneath a path the manifest grants; resource limits are the smaller
//! of the configuration's (defaults included) and the manifest's. Anything wider is an SRD-P016
//! error naming the field (and the port).

use super::config::{BundlesConfig, LimitsConfig, PluginConfig};
use super::metrics::PluginMetrics;
use super::sandbox::landlock::TcpPorts;
use super::sandbox::seccomp::SeccompAction;
use super::trust::manifest::Manifest;
use super::trust::manifest::Network;
use super::trust::policy::TrustPolicy;
use super::trust::rollback::RollbackStore;
use super::trust::sealed::SealedExe;
use super::trust::{HostInfo, Status, TrustedBy};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a plugin may not be loaded: each kind has one stable code (seed §9; the table is in
/// docs/plugins.md) and one `srediag_plugin_load_total{status}` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadFailure {
    /// A bundle file differs from, is missing from, or is not listed in the manifest.
    Digest,
    /// A signature is present but none verifies with a trusted key or identity.
    Signature,
    /// The policy does not allow it: unsigned, or an untrusted signer.
    Policy,
    /// Older than (or the same version as, but different from) what was loaded before.
    Rollback,
    /// The plugin needs another agent, protocol, schema, kernel — or another type than configured.
    Compat,
    /// The bundle cannot be read or has a forbidden shape.
    Malformed,
    /// Neither `bundle` nor `path` is set.
    NoSource,
    /// The configuration asks for more than the signed manifest grants.
    Widens,
    /// The trust policy cannot be used.
    PolicyUnusable,
    /// The rollback state file cannot be used.
    StateUnusable,
    /// The executable could not be read or sealed.
    Executable,
}

impl LoadFailure {
    /// The stable code (`SRD-P0xx`).
    pub fn code(self) -> &'static str {
        match self {
            LoadFailure::Digest => "SRD-P010",
            LoadFailure::Signature => "SRD-P011",
            LoadFailure::Policy => "SRD-P012",
            LoadFailure::Rollback => "SRD-P013",
            LoadFailure::Compat => "SRD-P014",
            LoadFailure::Malformed | LoadFailure::NoSource => "SRD-P015",
            LoadFailure::Widens => "SRD-P016",
            LoadFailure::PolicyUnusable | LoadFailure::StateUnusable => "SRD-P017",
            LoadFailure::Executable => "SRD-P018",
        }
    }

    /// The `srediag_plugin_load_total{status}` value.
    pub fn status(self) -> &'static str {
        match self {
            LoadFailure::Digest => "rejected_digest",
            LoadFailure::Signature => "rejected_signature",
            LoadFailure::Policy | LoadFailure::PolicyUnusable => "rejected_policy",
            LoadFailure::Rollback => "rejected_rollback",
            LoadFailure::Compat => "rejected_compat",
            LoadFailure::Malformed => "rejected_malformed",
            LoadFailure::NoSource
            | LoadFailure::Widens
            | LoadFailure::StateUnusable
            | LoadFailure::Executable => "failed",
        }
    }

    /// An I/O failure (state file, memfd, a missing source) that a later start may not meet again:
    /// retried like any failed start. Trust decisions and a configuration wider than the manifest
    /// stand until an operator acts.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            LoadFailure::NoSource | LoadFailure::StateUnusable | LoadFailure::Executable
        )
    }

    /// The kind of a trust rejection.
    fn of(status: Status) -> LoadFailure {
        match status {
            Status::RejectedDigest => LoadFailure::Digest,
            Status::RejectedSignature => LoadFailure::Signature,
            Status::RejectedPolicy => LoadFailure::Policy,
            Status::RejectedRollback => LoadFailure::Rollback,
            Status::RejectedCompat => LoadFailure::Compat,
            Status::Malformed | Status::Ok => LoadFailure::Malformed,
        }
    }
}

/// A plugin that may not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: plugin {plugin}: {message}", failure.code())]
pub struct LoadError {
    /// Why.
    pub failure: LoadFailure,
    /// The plugin's name in the configuration.
    pub plugin: String,
    /// What, naming the field or file, with the remedy.
    pub message: String,
}

impl LoadError {
    /// The stable code (`SRD-P0xx`).
    pub fn code(&self) -> &'static str {
        self.failure.code()
    }

    /// The `srediag_plugin_load_total{status}` value.
    pub fn status(&self) -> &'static str {
        self.failure.status()
    }

    /// See [`LoadFailure::is_transient`].
    pub fn is_transient(&self) -> bool {
        self.failure.is_transient()
    }
}

/// What this agent offers plugins, for the trust crate's compatibility check: its version, the
/// SDK's protocol and schema, and the running kernel's facts (probed here, through `sys`).
pub fn host_info() -> HostInfo {
    HostInfo::new(
        semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(semver::Version::new(0, 0, 0)),
        crate::sys::facts::kernel_facts(&*crate::sys::real_host()),
    )
}

/// What the sandbox gets, after the manifest and the configuration were combined.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveSandbox {
    /// Built-in seccomp profile name.
    pub seccomp_profile: String,
    /// `errno`, `kernel_errno`, `trap`, `kill` (or `log` for unsigned `path:` plugins only).
    pub seccomp_action: SeccompAction,
    /// The TCP ports granted; any: the host network namespace, TCP on those ports only.
    pub network: TcpPorts,
    /// Read+execute paths beyond the shared libraries (the directory of a `path:` plugin).
    pub read_exec: Vec<PathBuf>,
    /// Read-only host paths.
    pub read_only: Vec<PathBuf>,
    /// Read-write host paths (besides the scratch directory and /dev/null).
    pub read_write: Vec<PathBuf>,
    /// Resource limits.
    pub limits: LimitsConfig,
}

/// A plugin ready to be spawned.
#[derive(Debug)]
pub struct Loaded {
    /// The executable: sealed memfd with the verified bytes.
    pub exe: SealedExe,
    /// Where it came from (argv[0] and messages only).
    pub program: PathBuf,
    /// The signed manifest (bundles only).
    pub manifest: Option<Manifest>,
    /// Statement digest (bundles only).
    pub digest: Option<String>,
    /// Who vouched (`Unsigned` for `path:` plugins and `allow_unsigned` bundles).
    pub trusted_by: TrustedBy,
    /// The sandbox to build.
    pub sandbox: EffectiveSandbox,
}

/// Trust policy, host facts and rollback marks, shared by every supervisor.
pub struct TrustContext {
    settings: BundlesConfig,
    host: HostInfo,
    rollback: Mutex<Option<RollbackStore>>,
}

impl TrustContext {
    /// The trust policy is read at every load (a start, or `srediag plugin restart`), so a fixed
    /// or rotated policy applies without restarting the agent; an unusable one is reported at each
    /// load, naming the file.
    pub fn new(settings: BundlesConfig) -> TrustContext {
        TrustContext {
            settings,
            host: host_info(),
            rollback: Mutex::new(None),
        }
    }

    fn policy(&self) -> Result<TrustPolicy, String> {
        TrustPolicy::load(&self.settings.trust_policy).map_err(|e| {
            format!(
                "trust policy {}: {e} (install one — profiles/trust/trust.yaml is an annotated example — or pass --trust-policy / SREDIAG_TRUST_POLICY)",
                self.settings.trust_policy.display()
            )
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &BundlesConfig {
        &self.settings
    }

    /// What a load of `cfg` depends on, cheaply: the trust policy file and every file of the
    /// bundle (or the `path:` executable), as (inode, size, mtime, ctime) from `lstat`. Equal
    /// fingerprints mean nothing was replaced or written since the last verification, so a
    /// restart may reuse that load's sealed executable: its bytes cannot change (sealed), so what
    /// runs is still exactly what was verified. `None` when something cannot be read (then the
    /// load verifies in full and reports the problem).
    pub fn fingerprint(&self, cfg: &PluginConfig) -> Option<Vec<u64>> {
        use std::os::unix::fs::MetadataExt;
        fn push(out: &mut Vec<u64>, m: &std::fs::Metadata) {
            out.extend([
                m.dev(),
                m.ino(),
                m.size(),
                m.mode() as u64,
                m.mtime() as u64,
                m.mtime_nsec() as u64,
                m.ctime() as u64,
                m.ctime_nsec() as u64,
            ]);
        }
        fn walk(dir: &Path, depth: usize, out: &mut Vec<u64>) -> Option<()> {
            if depth > 8 || out.len() > 8 * 4096 {
                return None;
            }
            let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let m = std::fs::symlink_metadata(e.path()).ok()?;
                push(out, &m);
                if m.is_dir() {
                    walk(&e.path(), depth + 1, out)?;
                }
            }
            Some(())
        }
        let mut out = Vec::new();
        push(
            &mut out,
            &std::fs::metadata(&self.settings.trust_policy).ok()?,
        );
        match (&cfg.bundle, &cfg.path) {
            (Some(b), _) => {
                let dir = self.bundle_dir(b);
                push(&mut out, &std::fs::symlink_metadata(&dir).ok()?);
                walk(&dir, 0, &mut out)?;
            }
            (None, Some(p)) => push(&mut out, &std::fs::metadata(p).ok()?),
            (None, None) => return None,
        }
        Some(out)
    }

    /// The bundle directory a `bundle:` value names.
    pub fn bundle_dir(&self, bundle: &Path) -> PathBuf {
        resolve_bundle(&self.settings.directory, bundle)
    }

    /// Verifies and prepares plugin `name`; counts the verification. Never spawns anything.
    pub fn load(
        &self,
        name: &str,
        cfg: &PluginConfig,
        metrics: &PluginMetrics,
    ) -> Result<Loaded, LoadError> {
        let err = |failure: LoadFailure, message: String| LoadError {
            failure,
            plugin: name.to_string(),
            message,
        };
        // A failed verification, counted under its status.
        let counted = |failure: LoadFailure, message: String| {
            metrics.verification(failure.status());
            err(failure, message)
        };
        let policy = self
            .policy()
            .map_err(|e| counted(LoadFailure::PolicyUnusable, e))?;
        let policy = &policy;
        match (&cfg.bundle, &cfg.path) {
            (Some(bundle), _) => self.load_bundle(name, cfg, bundle, policy, metrics),
            (None, Some(path)) => {
                if !policy.allow_unsigned {
                    return Err(counted(
                        LoadFailure::Policy,
                        format!(
                            "path: {} is an unsigned plugin and the trust policy {} does not allow unsigned plugins (use a signed `bundle:`, or set allow_unsigned: true for development)",
                            path.display(),
                            self.settings.trust_policy.display()
                        ),
                    ));
                }
                let mut f = std::fs::File::open(path).map_err(|e| {
                    counted(
                        LoadFailure::Executable,
                        format!("path: {}: {e}", path.display()),
                    )
                })?;
                let exe =
                    SealedExe::from_reader(name, &mut f, super::trust::bundle::MAX_FILE_BYTES)
                        .map_err(|e| counted(LoadFailure::Executable, format!("path: {e}")))?;
                metrics.verification("unsigned");
                tracing::error!(
                    plugin = %name,
                    path = %path.display(),
                    sha256 = %exe.sha256_hex(),
                    "UNSIGNED PLUGIN: loading an unverified executable because the trust policy allows unsigned plugins (development mode)"
                );
                let mut read_exec = Vec::new();
                if let Some(dir) = path.parent() {
                    read_exec.push(dir.to_path_buf());
                }
                read_exec.push(path.clone());
                Ok(Loaded {
                    exe,
                    program: path.clone(),
                    manifest: None,
                    digest: None,
                    trusted_by: TrustedBy::Unsigned,
                    sandbox: EffectiveSandbox {
                        seccomp_profile: cfg
                            .sandbox
                            .seccomp_profile
                            .clone()
                            .unwrap_or_else(|| cfg.plugin_type.as_str().to_string()),
                        seccomp_action: cfg.sandbox.seccomp_action,
                        network: cfg.network.as_ref().map(Network::ports).unwrap_or_default(),
                        read_exec,
                        read_only: cfg.sandbox.read_only.clone(),
                        read_write: Vec::new(),
                        limits: cfg.limits.clone(),
                    },
                })
            }
            (None, None) => Err(err(
                LoadFailure::NoSource,
                "neither `bundle` nor `path` is set".into(),
            )),
        }
    }

    fn load_bundle(
        &self,
        name: &str,
        cfg: &PluginConfig,
        bundle: &Path,
        policy: &TrustPolicy,
        metrics: &PluginMetrics,
    ) -> Result<Loaded, LoadError> {
        let err = |failure: LoadFailure, message: String| LoadError {
            failure,
            plugin: name.to_string(),
            message,
        };
        // A failed verification, counted under its status.
        let counted = |failure: LoadFailure, message: String| {
            metrics.verification(failure.status());
            err(failure, message)
        };
        let dir = self.bundle_dir(bundle);
        let t0 = std::time::Instant::now();
        // Check and record under one lock: two supervisors cannot interleave check and record.
        let mut guard = self.rollback.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            match RollbackStore::open(&self.settings.state_file) {
                Ok(s) => *guard = Some(s),
                Err(e) => {
                    return Err(counted(
                        LoadFailure::StateUnusable,
                        format!(
                            "rollback state: {e} (it must be a root-owned file not writable by others; --plugin-state / SREDIAG_PLUGIN_STATE)"
                        ),
                    ));
                }
            }
        }
        let (result, _) = super::trust::verify_bundle_dir(&dir, policy, &self.host, guard.as_ref());
        let v = match result {
            Ok(v) => v,
            Err(r) => {
                metrics.verification(r.status.as_str());
                return Err(err(
                    LoadFailure::of(r.status),
                    format!(
                        "bundle {}: {}: {}",
                        dir.display(),
                        r.status.as_str(),
                        r.detail
                    ),
                ));
            }
        };
        let m = &v.manifest;
        let result_label = if v.trusted_by == TrustedBy::Unsigned {
            "unsigned"
        } else {
            "ok"
        };
        if m.plugin_type != cfg.plugin_type {
            return Err(counted(
                LoadFailure::Compat,
                format!(
                    "type: configured as {}, the signed manifest of bundle {} says {}",
                    cfg.plugin_type.as_str(),
                    dir.display(),
                    m.plugin_type.as_str()
                ),
            ));
        }
        let sandbox = effective_sandbox(cfg, m).map_err(|(field, msg)| {
                        counted(
                LoadFailure::Widens,
                format!(
                    "plugins.{name}.{field}: {msg}; the configuration may only narrow what the signed manifest of {} grants",
                    dir.display()
                ),
            )
        })?;
        let version = m
            .semver()
            .ok_or_else(|| err(LoadFailure::Malformed, "version is not semver".into()))?;
        if let Some(store) = guard.as_mut() {
            if let Some(parent) = self.settings.state_file.parent()
                && !parent.exists()
            {
                let _ = std::fs::create_dir_all(parent);
            }
            store.record(&m.name, &version, &v.digest).map_err(|e| {
                counted(
                    LoadFailure::StateUnusable,
                    format!("cannot record the rollback mark: {e}"),
                )
            })?;
        }
        drop(guard);
        metrics.verification(result_label);
        if v.trusted_by == TrustedBy::Unsigned {
            tracing::error!(
                plugin = %name,
                bundle = %dir.display(),
                digest = %v.digest,
                "UNSIGNED PLUGIN: loading an unsigned bundle because the trust policy allows unsigned bundles"
            );
        } else {
            tracing::info!(
                plugin = %name,
                bundle = %dir.display(),
                version = %m.version,
                digest = %v.digest,
                trusted_by = ?v.trusted_by,
                bytes = v.entrypoint.len(),
                verify_ms = t0.elapsed().as_secs_f64() * 1e3,
                "plugin bundle verified, entrypoint sealed"
            );
        }
        Ok(Loaded {
            program: dir.join(m.entrypoint_path()),
            manifest: Some(v.manifest.clone()),
            digest: Some(v.digest.clone()),
            trusted_by: v.trusted_by.clone(),
            exe: v.entrypoint,
            sandbox,
        })
    }
}

/// `bundle` as given when absolute, else beneath `plugin_dir`.
pub fn resolve_bundle(plugin_dir: &Path, bundle: &Path) -> PathBuf {
    if bundle.is_absolute() {
        bundle.to_path_buf()
    } else {
        plugin_dir.join(bundle)
    }
}

/// The ports `configured` keeps of the manifest's `granted` (all of them when not configured,
/// none for `false`); a port the manifest does not grant is an error naming it.
fn narrow_ports(
    configured: Option<&Network>,
    granted: &TcpPorts,
) -> Result<TcpPorts, (String, String)> {
    let wanted = match configured {
        None => return Ok(granted.clone()),
        Some(Network::Flag(false)) => return Ok(TcpPorts::default()),
        Some(n @ Network::Flag(true)) => {
            let (_, msg) = n.problems().remove(0);
            return Err(("network".into(), msg));
        }
        Some(Network::Ports(p)) => p,
    };
    for (list, asked, allowed) in [
        ("connect", &wanted.connect, &granted.connect),
        ("bind", &wanted.bind, &granted.bind),
    ] {
        for (i, port) in asked.iter().enumerate() {
            if !allowed.contains(port) {
                return Err((
                    format!("network.{list}[{i}]"),
                    format!(
                        "port {port} is not granted: the manifest's network grant is {granted}"
                    ),
                ));
            }
        }
    }
    Ok(wanted.clone())
}

fn beneath(p: &Path, grants: &[String]) -> bool {
    grants.iter().any(|g| p.starts_with(g))
}

/// Combines the signed manifest's `sandbox` with the configuration, which may only narrow it.
/// Errors are `(field, message)`.
pub fn effective_sandbox(
    cfg: &PluginConfig,
    m: &Manifest,
) -> Result<EffectiveSandbox, (String, String)> {
    let s = &m.sandbox;
    let profile = s
        .seccomp_profile
        .clone()
        .unwrap_or_else(|| m.plugin_type.as_str().to_string());
    if let Some(p) = &cfg.sandbox.seccomp_profile
        && *p != profile
    {
        return Err((
            "sandbox.seccomp_profile".into(),
            format!("{p:?} differs from the manifest's profile {profile:?}"),
        ));
    }
    if cfg.sandbox.seccomp_action == SeccompAction::Log {
        return Err((
            "sandbox.seccomp_action".into(),
            "`log` (monitor only) would let every syscall through".into(),
        ));
    }
    let network = narrow_ports(cfg.network.as_ref(), &s.network.ports())?;
    let grants: Vec<String> = s
        .landlock
        .read_only
        .iter()
        .chain(&s.landlock.read_write)
        .cloned()
        .collect();
    for (i, p) in cfg.sandbox.read_only.iter().enumerate() {
        if !beneath(p, &grants) {
            return Err((
                format!("sandbox.read_only[{i}]"),
                format!(
                    "{} is not beneath a path the manifest grants ({grants:?})",
                    p.display()
                ),
            ));
        }
    }
    let mut limits = cfg.limits.clone();
    if let Some(mm) = &s.limits.memory_max
        && let Ok(b) = crate::sys::units::parse_bytes(mm)
        && b < limits.memory_max
    {
        limits.memory_max = b;
        limits.memory_high = limits.memory_high.map(|h| h.min(b));
    }
    if let Some(c) = &s.limits.cpu_max
        && let Ok(c) = c.parse::<f64>()
        && (limits.cpu_max == 0.0 || c < limits.cpu_max)
    {
        limits.cpu_max = c;
    }
    if let Some(p) = s.limits.pids_max {
        limits.pids_max = limits.pids_max.min(p);
    }
    Ok(EffectiveSandbox {
        seccomp_profile: profile,
        seccomp_action: cfg.sandbox.seccomp_action,
        network,
        read_exec: Vec::new(),
        read_only: s
            .landlock
            .read_only
            .iter()
            .map(PathBuf::from)
            .chain(cfg.sandbox.read_only.iter().cloned())
            .collect(),
        read_write: s.landlock.read_write.iter().map(PathBuf::from).collect(),
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(sandbox: &str) -> Manifest {
        let h = "0".repeat(64);
        let text = format!(
            "api_version: srediag.io/plugin/v1\nname: dedup\ntype: exporter\nversion: 1.0.0\nentrypoint: bin/d\nsha256: {h}\nrequires: {{srediag: \">=0.1\", ipc_protocol: 1, schema_version: 1}}\nsandbox: {sandbox}\nfiles: {{bin/d: {{sha256: {h}}}}}\n"
        );
        Manifest::parse(text.as_bytes()).unwrap()
    }

    fn cfg(extra: &str) -> PluginConfig {
        serde_yaml::from_str(&format!("bundle: dedup\ntype: exporter\n{extra}")).unwrap()
    }

    #[test]
    fn config_narrows_never_widens() {
        let m = manifest(
            "{network: {connect: [443, 8123], bind: [13133]}, landlock: {read_only: [/etc/ssl]}, limits: {memory_max: 64MiB, cpu_max: \"0.5\", pids_max: 8}}",
        );
        let e = effective_sandbox(&cfg(""), &m).unwrap();
        assert_eq!(
            e.network,
            TcpPorts {
                connect: vec![443, 8123],
                bind: vec![13133]
            },
            "the manifest's grant applies by default"
        );
        assert_eq!(e.seccomp_profile, "exporter");
        assert_eq!(e.limits.memory_max, 64 << 20);
        assert_eq!(e.limits.cpu_max, 0.5);
        assert_eq!(e.limits.pids_max, 8);
        assert_eq!(e.read_only, [PathBuf::from("/etc/ssl")]);
        // Narrowing is fine.
        let e = effective_sandbox(
            &cfg("network: false\nlimits: {memory_max: 16MiB, pids_max: 4}\nsandbox: {read_only: [/etc/ssl/certs]}"),
            &m,
        )
        .unwrap();
        assert!(e.network.is_empty());
        assert_eq!((e.limits.memory_max, e.limits.pids_max), (16 << 20, 4));
        let e = effective_sandbox(&cfg("network: {connect: [8123]}"), &m).unwrap();
        assert_eq!(
            e.network,
            TcpPorts {
                connect: vec![8123],
                bind: vec![]
            }
        );
        // A port the manifest does not grant is refused, naming it (the agent's OTLP port, say).
        for (extra, field, port) in [
            (
                "network: {connect: [443, 4318]}",
                "network.connect[1]",
                "port 4318",
            ),
            ("network: {bind: [443]}", "network.bind[0]", "port 443"),
        ] {
            let (f, msg) = effective_sandbox(&cfg(extra), &m).unwrap_err();
            assert_eq!(f, field, "{extra}");
            assert!(
                msg.contains(port) && msg.contains("connect [443, 8123]"),
                "{msg}"
            );
        }
        // Widening is refused, naming the field.
        let m2 = manifest("{}");
        for (extra, field) in [
            ("network: true", "network"),
            ("network: {connect: [443]}", "network.connect[0]"),
            (
                "sandbox: {seccomp_profile: network}",
                "sandbox.seccomp_profile",
            ),
            ("sandbox: {seccomp_action: log}", "sandbox.seccomp_action"),
            ("sandbox: {read_only: [/home]}", "sandbox.read_only[0]"),
        ] {
            let (f, _) = effective_sandbox(&cfg(extra), &m2).unwrap_err();
            assert_eq!(f, field, "{extra}");
        }
        // Larger limits than the manifest's are capped at the manifest's.
        let e = effective_sandbox(&cfg("limits: {memory_max: 1GiB, pids_max: 1000}"), &m).unwrap();
        assert_eq!((e.limits.memory_max, e.limits.pids_max), (64 << 20, 8));
    }

    #[test]
    fn relative_bundles_resolve_beneath_the_plugin_dir() {
        let d = Path::new("/var/lib/srediag/plugins");
        assert_eq!(resolve_bundle(d, Path::new("x")), d.join("x"));
        assert_eq!(
            resolve_bundle(d, Path::new("/opt/x")),
            PathBuf::from("/opt/x")
        );
    }
}
