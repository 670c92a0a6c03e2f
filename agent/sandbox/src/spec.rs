//! What the agent applies to confine one plugin (`spawn.rs` turns it into a child plan).

use super::landlock::LandlockSpec;
use super::seccomp::{CompiledFilter, SeccompError};
use std::path::PathBuf;

/// Why a plugin's [`SandboxSpec`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Its seccomp profile does not compile (unknown, invalid, or no network rules for a plugin
    /// granted ports).
    #[error("seccomp profile {profile}: {source}")]
    Seccomp {
        /// The profile's name.
        profile: String,
        /// Why.
        #[source]
        source: SeccompError,
    },
}

/// The fd on which the child finds the plugin's executable: a sealed memfd holding exactly the
/// verified bytes (`srediag-trust`'s `sealed.rs`); it is `execveat`ed, no path is ever opened.
pub const PROGRAM_FD: i32 = 5;

/// The plugin's scratch tmpfs (`limits.scratch_size`, `limits.scratch_inodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScratchLimits {
    /// tmpfs `size` in bytes (rounded up to pages by the kernel), and `RLIMIT_FSIZE`; never 0
    /// (tmpfs reads 0 as unlimited).
    pub bytes: u64,
    /// tmpfs `nr_inodes`; never 0 (unlimited).
    pub inodes: u64,
}

impl ScratchLimits {
    /// The tmpfs mount options: size, inodes, and a root directory only the plugin may use.
    pub fn mount_options(&self, uid: u32, gid: u32) -> String {
        format!(
            "size={},nr_inodes={},mode=0700,uid={uid},gid={gid}",
            self.bytes.max(1),
            self.inodes.max(1)
        )
    }
}

/// Everything applied before the plugin's executable runs.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Plugin id (for messages).
    pub plugin: String,
    /// Where the executable came from (bundle entrypoint or `path:`), for argv[0] and messages
    /// only: the child runs the sealed memfd on [`PROGRAM_FD`], never this path.
    pub program: PathBuf,
    /// Arguments after argv[0].
    pub args: Vec<String>,
    /// The complete environment of the plugin (empty plus the configured allowlist).
    pub env: Vec<(String, String)>,
    /// Unprivileged uid.
    pub uid: u32,
    /// Unprivileged gid.
    pub gid: u32,
    /// Open-file limit (`RLIMIT_NOFILE`, soft and hard).
    pub nofile: u64,
    /// Hostname inside the UTS namespace.
    pub hostname: String,
    /// Give the plugin its own (empty) network namespace.
    pub new_net: bool,
    /// `cgroup.procs` files to join before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// The private writable directory (working directory of the plugin): the child mounts a
    /// tmpfs of its own over it (the host's directory is only the mount point).
    pub scratch_dir: PathBuf,
    /// Size and inodes of that tmpfs; the size is also `RLIMIT_FSIZE`.
    pub scratch: ScratchLimits,
    /// Landlock rules.
    pub landlock: LandlockSpec,
    /// The compiled seccomp filter (profile, action, network rules), installed last.
    pub seccomp: CompiledFilter,
}
