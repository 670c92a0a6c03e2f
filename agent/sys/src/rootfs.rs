//! File reads below a root directory (the `PROCFS_ROOT` seam shared by the real and fake hosts).

use std::path::{Component, Path, PathBuf};

use super::FsError;

/// Maps absolute host paths (`/proc/self/status`) below a root directory and reads them.
#[derive(Debug, Clone)]
pub struct RootFs {
    root: PathBuf,
}

impl RootFs {
    /// File reads relative to `root` (`/` for the real host).
    pub fn new(root: impl Into<PathBuf>) -> RootFs {
        RootFs { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of a host path: the root joined with the path's normal components
    /// (`..` and the leading `/` are dropped so a path never escapes the root lexically).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        let mut out = self.root.clone();
        for c in path.components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    /// Reads a whole file as UTF-8 text.
    pub fn read_to_string(&self, path: &Path) -> Result<String, FsError> {
        std::fs::read_to_string(self.resolve(path)).map_err(|source| FsError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a whole file as bytes.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        std::fs::read(self.resolve(path)).map_err(|source| FsError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Whether the path exists.
    pub fn exists(&self, path: &Path) -> bool {
        self.resolve(path).exists()
    }

    /// Sorted entry names of a directory (names that are not UTF-8 are converted lossily).
    pub fn read_dir_names(&self, path: &Path) -> Result<Vec<String>, FsError> {
        let err = |source| FsError::ReadDir {
            path: path.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.resolve(path)).map_err(err)? {
            names.push(
                entry
                    .map_err(err)?
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        names.sort();
        Ok(names)
    }

    /// The size the file system reports for a file.
    pub fn metadata_len(&self, path: &Path) -> Result<u64, FsError> {
        std::fs::metadata(self.resolve(path))
            .map(|m| m.len())
            .map_err(|source| FsError::Read {
                path: path.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_below_root() {
        let fs = RootFs::new("/tmp/root");
        assert_eq!(
            fs.resolve(Path::new("/proc/self/status")),
            Path::new("/tmp/root/proc/self/status")
        );
        assert_eq!(
            fs.resolve(Path::new("/../etc/passwd")),
            Path::new("/tmp/root/etc/passwd")
        );
        assert_eq!(
            RootFs::new("/").resolve(Path::new("/sys")),
            Path::new("/sys")
        );
    }

    #[test]
    fn errors_name_the_host_path() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RootFs::new(dir.path());
        let err = fs.read_to_string(Path::new("/proc/nope")).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read /proc/nope"),
            "{err}"
        );
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
