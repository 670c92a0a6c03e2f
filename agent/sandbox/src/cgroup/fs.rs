//! The seam between the cgroup logic and cgroupfs: every read, write, `mkdir`, `rmdir` and open
//! goes through [`CgroupFs`], so unit tests run the real logic on a plain directory tree
//! ([`TreeFs`], test builds only) without root, and check exactly what was written.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::CgroupError;

/// File operations on cgroup hierarchies. Paths are absolute host paths (a hierarchy's mount
/// point joined with the cgroup's path); an implementation may place them below another root.
pub trait CgroupFs: Send + Sync + std::fmt::Debug {
    /// `mkdir(2)`; `AlreadyExists` when the directory exists.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir(2)` of a cgroup directory (its interface files go with it).
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole control file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` to a control file in one `write(2)` (cgroupfs parses each write whole).
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Whether the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// The names of the sub-directories (child cgroups), sorted.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
}

/// The real cgroupfs, below `root` (`/` in production; another root when the host's
/// `/sys/fs/cgroup` is mounted elsewhere, e.g. into a container).
#[derive(Debug, Clone)]
pub struct RealFs {
    root: PathBuf,
}

impl RealFs {
    /// Host paths as they are.
    pub fn new() -> RealFs {
        RealFs::with_root("/")
    }

    /// Host paths below `root`.
    pub fn with_root(root: impl Into<PathBuf>) -> RealFs {
        RealFs { root: root.into() }
    }

    fn at(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl Default for RealFs {
    fn default() -> Self {
        RealFs::new()
    }
}

impl CgroupFs for RealFs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(self.at(path))
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(self.at(path))
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(self.at(path))
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // No O_CREAT/O_TRUNC: control files exist or the write is wrong.
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.at(path))?;
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", value.len()),
            ));
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.at(path).exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        subdirs_of(&self.at(path))
    }
}

fn subdirs_of(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes a control file, mapping the error to [`CgroupError::Write`].
pub(super) fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<(), CgroupError> {
    fs.write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// The value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The pids listed in a `cgroup.procs` text.
pub(super) fn parse_pids(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.split_ascii_whitespace().filter_map(|w| w.parse().ok())
}

/// A fake cgroupfs for unit tests: a plain directory tree in a temporary directory. Writes create
/// files and are logged in order; `rmdir` deletes the files in the directory first, as cgroupfs
/// does with interface files.
#[cfg(test)]
#[derive(Debug)]
pub struct TreeFs {
    dir: tempfile::TempDir,
    log: std::sync::Mutex<Vec<(PathBuf, String)>>,
}

#[cfg(test)]
impl TreeFs {
    /// An empty tree.
    pub fn new() -> TreeFs {
        TreeFs {
            dir: tempfile::tempdir().unwrap(),
            log: Default::default(),
        }
    }

    fn at(&self, path: &Path) -> PathBuf {
        self.dir.path().join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Creates a file (and its parents) with `text`, as the kernel would have, without logging.
    pub fn put(&self, path: impl AsRef<Path>, text: &str) -> &Self {
        let p = self.at(path.as_ref());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Creates a directory (and its parents) without logging.
    pub fn put_dir(&self, path: impl AsRef<Path>) -> &Self {
        std::fs::create_dir_all(self.at(path.as_ref())).unwrap();
        self
    }

    /// The current content of a file, `None` if absent.
    pub fn get(&self, path: impl AsRef<Path>) -> Option<String> {
        std::fs::read_to_string(self.at(path.as_ref())).ok()
    }

    /// Whether a directory exists.
    pub fn is_dir(&self, path: impl AsRef<Path>) -> bool {
        self.at(path.as_ref()).is_dir()
    }

    /// The sub-directories of a directory, sorted.
    pub fn subdirs_of(&self, path: impl AsRef<Path>) -> Vec<String> {
        subdirs_of(&self.at(path.as_ref())).unwrap()
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        self.log.lock().unwrap().clone()
    }

    /// Opens a file of the tree `O_WRONLY | O_CLOEXEC` (creating it), as a spawn opens each
    /// `cgroup.procs`.
    pub fn open_write(&self, path: impl AsRef<Path>) -> io::Result<std::os::fd::OwnedFd> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.at(path.as_ref()))?;
        Ok(f.into())
    }
}

#[cfg(test)]
impl CgroupFs for TreeFs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(self.at(path))
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        let p = self.at(path);
        for entry in std::fs::read_dir(&p)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        std::fs::remove_dir(p)
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(self.at(path))
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let p = self.at(path);
        if !p.parent().is_some_and(Path::is_dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        std::fs::write(p, value)?;
        self.log
            .lock()
            .unwrap()
            .push((path.to_owned(), value.to_owned()));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.at(path).exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        subdirs_of(&self.at(path))
    }
}
