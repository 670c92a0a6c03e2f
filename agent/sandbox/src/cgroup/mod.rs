//! Per-plugin cgroups, v1 and v2 behind one trait.
//!
//! # Rule: plain cgroupfs
//!
//! Cgroups are driven through cgroupfs directly (no cgroups-rs: it cannot reach a cgroup2 mount
//! outside `/sys/fs/cgroup`, kills on v2 only, creates directories in every v1 hierarchy, joins by
//! pid after spawn, and pulls 74 crates — docs/decisions/0001-plain-cgroupfs.md, with the timings
//! measured here). The plugin's child joins every hierarchy with raw `write(2)`s before it execs
//! (`exec.rs`), so not one instruction of the plugin runs outside its limits. The layout comes
//! from [`srediag_sys::cgroup::detect`]; each controller is driven on exactly one hierarchy
//! ([`CgroupLayout::home_of`]: v2 when the cgroup2 hierarchy has it, else its v1 hierarchy), so
//! pure v1, hybrid and pure v2 hosts, and mixed hosts with only some controllers on v2, all work.
//!
//! # Layout
//!
//! A plugin `p` gets `<mount>/<root_name>/p` (default `root_name` [`DEFAULT_ROOT`]) only in the
//! hierarchies it needs: the ones homing memory, cpu, cpuacct (v1 usage accounting) and pids,
//! plus the cgroup2 hierarchy when mounted even without controllers (`cgroup.kill`,
//! `cgroup.events`, `cpu.stat`), plus the v1 freezer only when no cgroup2 hierarchy exists (to
//! stop forks while killing). A new process joins all of them ([`PluginCgroup::procs_files`]).
//! On v2 the used controllers are enabled with `"+memory +cpu +pids"` in `cgroup.subtree_control`
//! from the mount root down to `<root_name>`.
//!
//! One driver type ([`FsDriver`]) serves v1, hybrid, v2 and mixed hosts: the version difference
//! is per controller, so it lives in the controller files (`memory.rs` writes `memory.max` or
//! `memory.limit_in_bytes` depending on where memory is homed), not in two parallel drivers that
//! would each need the other's code on a mixed host.
//!
//! | file | content |
//! |---|---|
//! | `driver.rs` | hierarchy plan, create, cleanup of stale cgroups |
//! | `plugin.rs` | one plugin's cgroup: membership, kill, stats, remove |
//! | `memory.rs`, `cpu.rs`, `pids.rs` | one controller each, v1 and v2 files |
//! | `v1.rs`, `v2.rs` | version specifics (freezer; subtree_control, kill, freeze, events) |
//! | `fs.rs` | the [`CgroupFs`] seam (real cgroupfs, fake tree for unit tests) |
//! | `sys.rs` | raw syscalls (pidfds, `kill`) |

mod cpu;
mod driver;
mod error;
mod fs;
mod limits;
mod memory;
mod pids;
mod plugin;
mod sys;
mod v1;
mod v2;

#[cfg(test)]
mod privileged_tests;
#[cfg(test)]
mod test_join;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

pub use driver::FsDriver;
pub use error::CgroupError;
pub use fs::{CgroupFs, RealFs};
pub use limits::{CPU_MAX_PERIOD_US, CPU_MIN_US, CPU_WEIGHT_RANGE, Limits, shares_from_weight};
pub use plugin::{FsCgroup, KILL_ROUNDS, RMDIR_ATTEMPTS};
pub use srediag_sys::cgroup::{CgroupLayout, CgroupVersion};

/// The default parent of plugin cgroups in each hierarchy.
pub const DEFAULT_ROOT: &str = "srediag";

/// Creates plugin cgroups on one host and cleans up what an earlier agent left behind.
pub trait CgroupDriver: Send + Sync {
    /// Creates the cgroup of plugin `name` (one path component) with `limits` written. Fails with
    /// [`CgroupError::Exists`] when it exists already, and with
    /// [`CgroupError::ControllerUnavailable`] when a limit needs a controller the host lacks
    /// (fail closed). A failure removes what this call created.
    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn PluginCgroup>, CgroupError>;

    /// Kills and removes every `<root_name>/<plugin>` cgroup in every hierarchy used (to be run
    /// at agent start). Returns the plugin names cleaned, sorted, so the agent can log them.
    fn cleanup_stale(&self) -> Result<Vec<String>, CgroupError>;

    /// Removes the `<root_name>` directories (agent shutdown, after every plugin cgroup is
    /// removed); missing ones are fine.
    fn remove_root(&self) -> Result<(), CgroupError>;
}

/// One plugin's cgroup.
pub trait PluginCgroup: Send + Sync {
    /// Every `cgroup.procs` a new process must join (one per hierarchy).
    fn procs_files(&self) -> Vec<PathBuf>;

    /// The pids of the member processes (union over the hierarchies, sorted), in the agent's pid
    /// namespace. Empty when unreadable.
    fn pids(&self) -> Vec<u32>;

    /// Kills every member process and returns once none is left: v2 `cgroup.kill` when the
    /// kernel has it (also on the controller-less cgroup2 hierarchy of a hybrid host), else
    /// rounds of freeze, `SIGKILL` of each listed pid (through a pidfd, re-checked against the
    /// membership), thaw. Gives up with [`CgroupError::KillTimeout`] after [`KILL_ROUNDS`] rounds
    /// (~0.8 s). Refuses with [`CgroupError::ContainsSelf`] if the agent is a member.
    fn kill_all(&self) -> Result<(), CgroupError>;

    /// Memory in use, bytes (v2 `memory.current`, v1 `memory.usage_in_bytes`).
    fn memory_current(&self) -> Option<u64>;

    /// CPU time used, ns (v2 `cpu.stat` `usage_usec` × 1000, v1 `cpuacct.usage`).
    fn cpu_usage_ns(&self) -> Option<u64>;

    /// OOM kills inside the cgroup (v2 `memory.events` `oom_kill`, v1 `memory.oom_control`
    /// `oom_kill`): the evidence that a plugin death was an OOM kill.
    fn oom_kills(&self) -> Option<u64>;

    /// Whether any process is a member (v2 `cgroup.events` `populated`, else `cgroup.procs`).
    fn is_populated(&self) -> bool;

    /// Removes the directory in every hierarchy (and any child cgroups), retrying briefly while
    /// the kernel answers `EBUSY`. Call [`kill_all`](Self::kill_all) first. Missing directories
    /// are fine, so it is idempotent.
    fn remove(&self) -> Result<(), CgroupError>;

    /// The plugin name.
    fn name(&self) -> &str;
}

/// A controller's directory in one plugin cgroup and the version of its hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Home {
    dir: PathBuf,
    version: CgroupVersion,
}

/// The production driver for `layout` (from [`srediag_sys::cgroup::detect`]) on the real
/// cgroupfs, with plugin cgroups under `<mount>/<root_name>/`.
pub fn driver(
    layout: &CgroupLayout,
    root_name: &str,
) -> Result<Box<dyn CgroupDriver>, CgroupError> {
    driver_with_fs(layout, root_name, Arc::new(RealFs::new()))
}

/// [`driver`] over another [`CgroupFs`] (a different root, or a fake tree in tests).
pub fn driver_with_fs(
    layout: &CgroupLayout,
    root_name: &str,
    fs: Arc<dyn CgroupFs>,
) -> Result<Box<dyn CgroupDriver>, CgroupError> {
    Ok(Box::new(FsDriver::new(layout, root_name, fs)?))
}
