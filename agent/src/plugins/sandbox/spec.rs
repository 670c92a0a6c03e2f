//! What the sandbox helper needs to confine one plugin, passed from the agent as JSON on an
//! inherited pipe.

use super::landlock::LandlockSpec;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The fd on which the helper reads its [`SandboxSpec`].
pub const SPEC_FD: i32 = 4;

/// The fd on which the helper finds the plugin's executable: a sealed memfd holding exactly the
/// verified bytes (`trust/sealed.rs`); the helper `execveat`s it, it never opens a path.
pub const PROGRAM_FD: i32 = 5;

/// Largest spec accepted.
pub const MAX_SPEC: usize = 1024 * 1024;

/// Everything the helper applies before it executes the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Plugin id (for messages).
    pub plugin: String,
    /// Where the executable came from (bundle entrypoint or `path:`), for argv[0] and messages
    /// only: the helper runs the sealed memfd on [`PROGRAM_FD`], never this path.
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
    /// The private writable directory (working directory of the plugin).
    pub scratch_dir: PathBuf,
    /// Landlock rules.
    pub landlock: LandlockSpec,
    /// Seccomp profile name (`profiles/seccomp/<name>.yaml`).
    pub seccomp_profile: String,
    /// Seccomp action for denied syscalls: `errno`, `trap`, `kill` or `log`.
    pub seccomp_action: String,
    /// The filter, compiled (and cached) by the agent: `struct sock_filter` instructions.
    pub seccomp_filter: Vec<u8>,
}
