//! The production [`Host`]: the real root file system and real syscalls.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use super::{Errno, FsError, Host, LoadError, MapCreate, ProgLoad, RootFs, Uname};

/// The real host. Files are read below `/` unless built with [`RealHost::with_root`] (for example
/// the host's `/proc` and `/sys` mounted into a container under `/host`).
#[derive(Debug, Clone)]
pub struct RealHost {
    fs: RootFs,
}

impl RealHost {
    /// Files below `/`.
    pub fn new() -> RealHost {
        RealHost::with_root("/")
    }

    /// Files below `root`; syscalls still go to the running kernel.
    pub fn with_root(root: impl Into<PathBuf>) -> RealHost {
        RealHost {
            fs: RootFs::new(root),
        }
    }
}

impl Default for RealHost {
    fn default() -> Self {
        RealHost::new()
    }
}

fn field(raw: &CStr) -> String {
    raw.to_string_lossy().into_owned()
}

impl Host for RealHost {
    fn read_to_string(&self, path: &Path) -> Result<String, FsError> {
        self.fs.read_to_string(path)
    }
    fn read(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        self.fs.read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.fs.exists(path)
    }
    fn read_dir_names(&self, path: &Path) -> Result<Vec<String>, FsError> {
        self.fs.read_dir_names(path)
    }
    fn metadata_len(&self, path: &Path) -> Result<u64, FsError> {
        self.fs.metadata_len(path)
    }

    fn uname(&self) -> Result<Uname, Errno> {
        // uname(2) cannot fail with a valid buffer (rustix provides it).
        let uts = rustix::system::uname();
        Ok(Uname {
            sysname: field(uts.sysname()),
            release: field(uts.release()),
            version: field(uts.version()),
            machine: field(uts.machine()),
        })
    }

    fn bpf_prog_load(&self, req: &ProgLoad) -> Result<(), LoadError> {
        super::bpf::prog_load(req)
    }
    fn bpf_map_create(&self, req: &MapCreate) -> Result<(), Errno> {
        super::bpf::map_create(req)
    }
    fn bpf_enable_stats(&self) -> Result<(), Errno> {
        super::bpf::enable_stats()
    }
    fn landlock_abi(&self) -> Result<i32, Errno> {
        super::landlock::abi_version()
    }
    fn prctl_get_seccomp(&self) -> Result<i32, Errno> {
        super::seccomp::get_mode()
    }
    fn euid(&self) -> u32 {
        rustix::process::geteuid().as_raw()
    }
}
