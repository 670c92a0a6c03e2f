//! Loading a plugin: from its configuration to a sealed executable and the sandbox it gets, before
//! anything is spawned.
//!
//! - `bundle:` — the bundle directory (relative: beneath the plugin directory) is verified
//!   against the trust policy: signature, every file's digest, compatibility, rollback
//!   (`trust::verify_bundle_dir`). The entrypoint is copied through the bundle's directory fd
//!   into a memfd while it is hashed, sealed, read back and compared with the signed digest
//!   (`trust/sealed.rs`). The rollback high-water mark is raised once the bundle is accepted:
//!   at once for a start, only once the new incarnation serves for a hot swap
//!   ([`TrustContext::load_for_swap`], [`TrustContext::record`]): an upgrade that is aborted
//!   must not leave the running version refused as a rollback at the agent's next start.
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

mod failure;
mod narrow;

pub use failure::{LoadError, LoadFailure};
pub use narrow::{EffectiveSandbox, check_bypass, effective_sandbox};

use crate::plugins::config::{BundlesConfig, PluginConfig};
use crate::plugins::metrics::PluginMetrics;
use crate::plugins::trust::manifest::{Manifest, Network};
use crate::plugins::trust::policy::TrustPolicy;
use crate::plugins::trust::rollback::RollbackStore;
use crate::plugins::trust::sealed::SealedExe;
use crate::plugins::trust::{HostInfo, TrustedBy};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What this agent offers plugins, for the trust crate's compatibility check: its version, the
/// SDK's protocol and schema, and the running kernel's facts (probed here, through `sys`).
pub fn host_info() -> HostInfo {
    HostInfo::new(
        semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(semver::Version::new(0, 0, 0)),
        crate::sys::facts::kernel_facts(&*crate::sys::real_host()),
    )
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

    /// Verifies and prepares plugin `name`; counts the verification and raises its rollback
    /// mark. Never spawns anything.
    pub fn load(
        &self,
        name: &str,
        cfg: &PluginConfig,
        metrics: &PluginMetrics,
    ) -> Result<Loaded, LoadError> {
        self.load_marking(name, cfg, metrics, true)
    }

    /// Like [`TrustContext::load`] for a hot swap's new incarnation: the rollback mark is checked
    /// but raised only by [`TrustContext::record`], once that incarnation serves.
    pub fn load_for_swap(
        &self,
        name: &str,
        cfg: &PluginConfig,
        metrics: &PluginMetrics,
    ) -> Result<Loaded, LoadError> {
        self.load_marking(name, cfg, metrics, false)
    }

    /// Raises the rollback mark of a bundle loaded by [`TrustContext::load_for_swap`] (nothing
    /// for a `path:` plugin).
    pub fn record(&self, loaded: &Loaded) -> Result<(), String> {
        let (Some(m), Some(digest)) = (&loaded.manifest, &loaded.digest) else {
            return Ok(());
        };
        let version = m.semver().ok_or("version is not semver")?;
        let mut guard = self.rollback.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(store) => store
                .record(&m.name, &version, digest)
                .map_err(|e| format!("cannot record the rollback mark: {e}")),
            None => Ok(()),
        }
    }

    fn load_marking(
        &self,
        name: &str,
        cfg: &PluginConfig,
        metrics: &PluginMetrics,
        mark: bool,
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
            (Some(bundle), _) => self.load_bundle(name, cfg, bundle, policy, metrics, mark),
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
                let exe = SealedExe::from_reader(
                    name,
                    &mut f,
                    crate::plugins::trust::bundle::MAX_FILE_BYTES,
                )
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
        mark: bool,
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
        let (result, _) =
            crate::plugins::trust::verify_bundle_dir(&dir, policy, &self.host, guard.as_ref());
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
        let sandbox = check_bypass(cfg, m)
            .and_then(|()| effective_sandbox(cfg, m))
            .map_err(|(field, msg)| {
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
        if let Some(store) = guard.as_mut().filter(|_| mark) {
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
