//! What an incarnation's sandbox is made of: the cgroup limits, the sandbox specification handed
//! to the spawner, and the private scratch directory.

use super::Supervisor;
use crate::plugins::loader::Loaded;
use crate::plugins::sandbox::cgroup::{Limits, PluginCgroup};
use crate::plugins::sandbox::landlock::LandlockSpec;
use crate::plugins::sandbox::seccomp;
use crate::plugins::sandbox::spec::{SandboxSpec, ScratchLimits, SpecError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The cgroup limits of a plugin's settings (`memory.high` only when set: see
/// [`crate::plugins::config::LimitsConfig::memory_high`]).
pub fn limits(l: &crate::plugins::config::LimitsConfig) -> Limits {
    Limits {
        memory_max: Some(l.memory_max),
        memory_high: l.memory_high,
        cpu_weight: Some(l.cpu_weight),
        cpu_max: (l.cpu_max > 0.0).then_some(((l.cpu_max * 100_000.0) as u64, 100_000)),
        pids_max: Some(l.pids_max),
    }
}

impl Supervisor {
    /// The sandbox of one incarnation, from the verified load (which already narrowed the
    /// manifest with the configuration).
    pub(super) fn spec(
        &self,
        cg: &dyn PluginCgroup,
        scratch: &Path,
        loaded: &Loaded,
    ) -> Result<SandboxSpec, SpecError> {
        let cfg = &self.cfg;
        let sb = &loaded.sandbox;
        let profile = sb.seccomp_profile.clone();
        // `errno` is compiled as TRAP|EPERM (the SDK's SIGSYS handler returns -EPERM and the
        // eBPF observer counts it); `kernel_errno` is the plain SECCOMP_RET_ERRNO.
        let (action, via_trap) = sb.seccomp_action.compiled();
        let filter = seccomp::compile(
            &profile,
            action,
            &seccomp::Options::with_network(!sb.network.is_empty()).errno_via_trap(via_trap),
        )
        .map_err(|source| SpecError::Seccomp {
            profile: profile.clone(),
            source,
        })?;
        let mut read_exec: Vec<PathBuf> = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
            .iter()
            .map(PathBuf::from)
            .collect();
        read_exec.extend(sb.read_exec.iter().cloned());
        let mut read_only: Vec<PathBuf> = ["/etc/ld.so.cache", "/proc", "/dev/urandom"]
            .iter()
            .map(PathBuf::from)
            .collect();
        read_only.extend(sb.read_only.iter().cloned());
        let mut read_write = vec![scratch.to_path_buf(), PathBuf::from("/dev/null")];
        read_write.extend(sb.read_write.iter().cloned());
        Ok(SandboxSpec {
            plugin: self.name.clone(),
            program: loaded.program.clone(),
            args: cfg.args.clone(),
            env: cfg
                .env
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                .collect(),
            uid: cfg.uid(&self.name),
            gid: cfg.gid(&self.name),
            nofile: sb.limits.nofile,
            hostname: format!("srediag-{}", self.name),
            new_net: sb.network.is_empty(),
            cgroup_procs: cg.procs_files(),
            scratch_dir: scratch.to_path_buf(),
            scratch: ScratchLimits {
                bytes: sb.limits.scratch_bytes(),
                inodes: sb.limits.scratch_inodes,
            },
            landlock: LandlockSpec {
                read_exec,
                read_only,
                read_write,
                network: sb.network.clone(),
                allow_degraded: cfg.sandbox.allow_degraded,
            },
            seccomp: filter,
        })
    }

    /// A fresh scratch directory for the incarnation: only the mount point of the plugin's own
    /// tmpfs (mounted in its mount namespace), so it stays empty and root's, mode 0700.
    pub(super) fn make_scratch(&self) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.scratch_root)?;
        std::fs::set_permissions(&self.scratch_root, std::fs::Permissions::from_mode(0o711))?;
        let dir = self.scratch_root.join(self.slot.instance(&self.name));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }
}

/// Empties and removes the incarnation's cgroup and scratch directory. Blocking (cgroup kill
/// rounds, a scratch tree of any size): call it off the async runtime.
pub(super) fn cleanup(cg: &dyn PluginCgroup, scratch: Option<&Path>) {
    if let Err(e) = cg.kill_all() {
        tracing::warn!(cgroup = cg.name(), error = %e, "cannot empty plugin cgroup");
    }
    if let Err(e) = cg.remove() {
        tracing::warn!(cgroup = cg.name(), error = %e, "cannot remove plugin cgroup");
    }
    if let Some(d) = scratch
        && let Err(e) = std::fs::remove_dir_all(d)
    {
        tracing::warn!(dir = %d.display(), error = %e, "cannot remove scratch directory");
    }
}
