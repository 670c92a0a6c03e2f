//! `srediag-sys`: the kernel seams of srediag, shared by the agent, the trust crate and the
//! sandbox crate (dependencies point one way: agent → sandbox, trust → sys).
//!
//! Everything that looks at the host goes through the [`Host`] trait (in the style of youki's
//! `Syscall` trait and vector's `PROCFS_ROOT`): file reads are relative to a root directory and
//! syscalls return an [`Errno`], so probe logic is unit-tested without root against a fake host
//! ([`fake::FakeHost`], in this crate's tests and behind the `fake` feature for other crates'
//! tests). [`real_host`] is the production implementation.
//!
//! Besides the `Host` trait: cgroup layout detection ([`cgroup`]) over [`mountinfo`], the one
//! Landlock ABI probe and the TCP port grant ([`landlock`]), the facts a manifest may require of
//! the kernel ([`facts`]), byte sizes ([`units`]), and the safe-path rule for files that decide
//! what the root agent trusts ([`safe_path`]).
//!
//! The unsafe code lives in small files ([`bpf`], [`landlock`], [`seccomp`], [`mm`], [`fd`])
//! with a `// SAFETY:` comment on every unsafe block; the rest uses rustix's safe calls.

pub mod bpf;
pub mod btf;
pub mod caps;
pub mod cgroup;
mod errno;
pub mod facts;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod fd;
pub mod landlock;
pub mod mm;
pub mod mountinfo;
mod real;
mod rootfs;
pub mod safe_path;
pub mod seccomp;
pub mod units;

use std::path::{Path, PathBuf};

pub use bpf::{AttachType, LoadError, MapCreate, MapType, ProgLoad, ProgType};
pub use errno::Errno;
pub use real::RealHost;
pub use rootfs::RootFs;

/// An error reading a file or directory through a [`Host`].
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path as the caller named it (before the host root is applied).
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory could not be listed.
    #[error("cannot list directory {path}: {source}")]
    ReadDir {
        /// The path as the caller named it (before the host root is applied).
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// The I/O error kind, e.g. to tell a missing file from a permission problem.
    pub fn kind(&self) -> std::io::ErrorKind {
        match self {
            FsError::Read { source, .. } | FsError::ReadDir { source, .. } => source.kind(),
        }
    }
}

/// What `uname(2)` returns, as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uname {
    /// Kernel name, e.g. `Linux`.
    pub sysname: String,
    /// Kernel release, e.g. `6.18.44`.
    pub release: String,
    /// Kernel build version string.
    pub version: String,
    /// Hardware architecture, e.g. `x86_64` or `aarch64`.
    pub machine: String,
}

/// The host as srediag sees it: files under a root directory plus a few syscalls.
///
/// Paths are absolute host paths such as `/proc/self/mountinfo`; an implementation may read them
/// below another root (a container's view of the host, or a test directory).
pub trait Host {
    /// Reads a whole file as UTF-8 text.
    fn read_to_string(&self, path: &Path) -> Result<String, FsError>;
    /// Reads a whole file as bytes.
    fn read(&self, path: &Path) -> Result<Vec<u8>, FsError>;
    /// Whether the path exists (follows symlinks; false on any error).
    fn exists(&self, path: &Path) -> bool;
    /// The entry names of a directory, sorted.
    fn read_dir_names(&self, path: &Path) -> Result<Vec<String>, FsError>;
    /// The size the file system reports for a file.
    fn metadata_len(&self, path: &Path) -> Result<u64, FsError>;
    /// `uname(2)`.
    fn uname(&self) -> Result<Uname, Errno>;
    /// Loads a trivial BPF program (`r0 = 0; exit`) of the requested kind and closes it at once.
    fn bpf_prog_load(&self, req: &ProgLoad) -> Result<(), LoadError>;
    /// Creates a BPF map of the requested kind and closes it at once.
    fn bpf_map_create(&self, req: &MapCreate) -> Result<(), Errno>;
    /// Issues `BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)` and closes the returned fd at once (which
    /// turns run-time statistics off again).
    fn bpf_enable_stats(&self) -> Result<(), Errno>;
    /// The Landlock ABI version (`landlock_create_ruleset(NULL, 0, VERSION)`).
    fn landlock_abi(&self) -> Result<i32, Errno>;
    /// `prctl(PR_GET_SECCOMP)`: the calling thread's seccomp mode (0 none, 1 strict, 2 filter).
    fn prctl_get_seccomp(&self) -> Result<i32, Errno>;
    /// The effective user id.
    fn euid(&self) -> u32;
}

/// The production host: the real root file system and real syscalls.
pub fn real_host() -> Box<dyn Host> {
    Box::new(RealHost::new())
}
