//! [`CgroupError`]: everything that can go wrong driving per-plugin cgroups.

use std::path::PathBuf;

/// An error creating, limiting, killing, reading or removing a plugin cgroup. Every file-system
/// variant names the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup file system (v1 or v2) is mounted in the agent's mount namespace.
    #[error("no cgroup file system is mounted (neither cgroup v1 nor cgroup2 in mountinfo)")]
    NoCgroupFs,
    /// A plugin or root name that cannot be used as a cgroup directory name.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Limits that the kernel would refuse or that contradict each other.
    #[error("invalid cgroup limits: {reason}")]
    InvalidLimits {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A limit was requested for a controller that no hierarchy of this host offers.
    #[error(
        "the {controller} controller is not mounted on any cgroup hierarchy, so {limit} cannot be enforced"
    )]
    ControllerUnavailable {
        /// The missing controller (`memory`, `cpu`, `pids`).
        controller: &'static str,
        /// The limit that needed it (`memory_max`, ...).
        limit: &'static str,
    },
    /// The plugin's cgroup directory exists already (a stale one: run `cleanup_stale` first).
    #[error("cgroup {path} already exists (stale cgroup of an earlier run?)")]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// `mkdir` of a cgroup directory failed.
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a control file failed (the kernel rejects bad values with `EINVAL`).
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading a control file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The control file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Listing a cgroup directory failed.
    #[error("cannot list cgroup directory {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `rmdir` of a cgroup directory failed (`EBUSY` after retries: processes are still inside).
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Sending `SIGKILL` to a member process failed for another reason than it being gone.
    #[error("cannot kill pid {pid} of cgroup {name}: {source}")]
    Signal {
        /// The plugin cgroup's name.
        name: String,
        /// The process.
        pid: u32,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Processes were still alive after every kill round (stuck in uninterruptible sleep?).
    #[error("cgroup {name} still holds pids {pids:?} after {rounds} kill rounds")]
    KillTimeout {
        /// The plugin cgroup's name.
        name: String,
        /// The survivors.
        pids: Vec<u32>,
        /// How many rounds were tried.
        rounds: u32,
    },
    /// The agent's own process is a member: killing the cgroup would kill the agent.
    #[error("cgroup {path} contains the agent itself (pid {pid}); refusing to kill it")]
    ContainsSelf {
        /// The directory whose `cgroup.procs` lists the agent.
        path: PathBuf,
        /// The agent's pid.
        pid: u32,
    },
    /// `cleanup_stale` removed some stale cgroups but not all of them.
    #[error(
        "stale cgroup cleanup incomplete: {failed:?} not removed ({cleaned:?} removed): {first}"
    )]
    CleanupIncomplete {
        /// Plugin cgroups that were removed.
        cleaned: Vec<String>,
        /// Plugin cgroups that could not be removed.
        failed: Vec<String>,
        /// The first failure.
        #[source]
        first: Box<CgroupError>,
    },
}
