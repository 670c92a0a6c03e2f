//! Rollback protection: per plugin, the highest version loaded so far and its statement digest,
//! kept in a root-owned state file (default `/var/lib/srediag/plugin-versions.json`).
//!
//! An older version is rejected, and so is the same version with another digest (a re-signed
//! or swapped build). The file is replaced atomically (write a temp file in the same directory,
//! fsync, rename over, fsync the directory), so after a crash or `kill -9` it holds either the
//! old or the new state, never a torn one. Anyone who can edit the file could lower the mark, so
//! it is opened by the safe-path rule (`srediag_sys::safe_path`, shared with the trust policy):
//! not a symlink, a regular file owned by root (or the agent's effective uid), not writable by
//! group or others, in directories no other user can change.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The version type marks compare (re-exported for callers).
pub use semver::Version;

/// Default location.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/srediag/plugin-versions.json";

/// One plugin's high-water mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// Highest version loaded.
    pub version: String,
    /// Its statement digest (`sha256:<hex>`).
    pub digest: String,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version (1).
    pub format: u32,
    /// By plugin name.
    pub plugins: BTreeMap<String, Mark>,
}

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// I/O on the state file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Unusable state file.
    #[error("{path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The file or a directory above it could be changed by another user (owner, mode,
    /// symlink), or cannot be opened safely.
    #[error("{0}")]
    Unsafe(srediag_sys::safe_path::SafePathError),
    /// The candidate would roll back.
    #[error("{0}")]
    Rollback(String),
}

/// Largest accepted state file.
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// The state file.
#[derive(Debug)]
pub struct RollbackStore {
    path: PathBuf,
    state: State,
}

impl RollbackStore {
    /// Opens (or starts) the state at `path`. The directory must exist.
    pub fn open(path: &Path) -> Result<RollbackStore, RollbackError> {
        use srediag_sys::safe_path::{self, SafePathError};
        let invalid = |msg: String| RollbackError::Invalid {
            path: path.to_path_buf(),
            msg,
        };
        let state = match safe_path::open_file(path) {
            Err(e) if e.is_not_found() => State {
                format: 1,
                plugins: BTreeMap::new(),
            },
            Err(SafePathError::Io { path, source }) => {
                return Err(RollbackError::Io { path, source });
            }
            Err(e @ SafePathError::Unsafe { .. }) => {
                return Err(RollbackError::Unsafe(e));
            }
            Ok((f, _)) => {
                let bytes = safe_path::read_capped(path, f, MAX_STATE_BYTES)
                    .map_err(RollbackError::Unsafe)?;
                if bytes.len() as u64 > MAX_STATE_BYTES {
                    return Err(invalid("larger than 16 MiB".into()));
                }
                let s: State =
                    serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
                if s.format != 1 {
                    return Err(invalid(format!("unknown format {}", s.format)));
                }
                s
            }
        };
        Ok(RollbackStore {
            path: path.to_path_buf(),
            state,
        })
    }

    /// The current marks.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Would loading `name` at `version` with `digest` roll back?
    pub fn check(
        &self,
        name: &str,
        version: &semver::Version,
        digest: &str,
    ) -> Result<(), RollbackError> {
        let Some(mark) = self.state.plugins.get(name) else {
            return Ok(());
        };
        let Ok(high) = semver::Version::parse(&mark.version) else {
            return Err(RollbackError::Rollback(format!(
                "stored version {:?} of {name} is unreadable",
                mark.version
            )));
        };
        if *version < high {
            return Err(RollbackError::Rollback(format!(
                "{name} {version} is older than {high}, already loaded (rollback refused)"
            )));
        }
        if *version == high && digest != mark.digest {
            return Err(RollbackError::Rollback(format!(
                "{name} {version} has digest {digest}, but {version} was loaded with {} (same version, different content)",
                mark.digest
            )));
        }
        Ok(())
    }

    /// Checks, then raises the mark to `version`/`digest` and persists it atomically.
    pub fn record(
        &mut self,
        name: &str,
        version: &semver::Version,
        digest: &str,
    ) -> Result<(), RollbackError> {
        self.check(name, version, digest)?;
        let mark = Mark {
            version: version.to_string(),
            digest: digest.to_string(),
        };
        if self.state.plugins.get(name) == Some(&mark) {
            return Ok(());
        }
        let mut next = self.state.clone();
        next.plugins.insert(name.to_string(), mark);
        write_atomic(
            &self.path,
            &serde_json::to_vec_pretty(&next).unwrap_or_default(),
        )?;
        self.state = next;
        Ok(())
    }
}

/// Replaces `path` with `bytes`: temp file (0600, same directory) → write → fsync → rename →
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RollbackError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RollbackError::Io { path: p, source }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let result = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn marks_only_go_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut s = RollbackStore::open(&p).unwrap();
        s.record("a", &v("1.2.0"), "sha256:aa").unwrap();
        assert!(s.check("a", &v("1.1.9"), "sha256:bb").is_err());
        assert!(s.check("a", &v("1.2.0"), "sha256:bb").is_err());
        assert!(s.check("a", &v("1.2.0"), "sha256:aa").is_ok());
        assert!(s.check("b", &v("0.0.1"), "sha256:cc").is_ok());
        s.record("a", &v("1.3.0"), "sha256:dd").unwrap();
        let again = RollbackStore::open(&p).unwrap();
        assert_eq!(again.state().plugins["a"].version, "1.3.0");
        assert!(again.check("a", &v("1.2.0"), "sha256:aa").is_err());
    }
}
