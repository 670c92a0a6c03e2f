//! The agent instance: its run directory and the lock that makes it the only agent using it.
//!
//! A root agent cleans what a killed predecessor left — plugin cgroups, scratch directories —
//! before it starts its own plugins. Without a lock a second `srediag run` (even one without
//! plugins, on other ports) took the first agent's live plugins for leftovers and SIGKILLed them.
//! So a root agent first takes an exclusive `flock` on `<run dir>/agent.lock` and writes its pid
//! into it; while another agent holds it, `srediag run` refuses to start (exit 69, naming the
//! holder). Holding the lock makes everything under the run directory and the instance's cgroup
//! root this agent's: what is there was left by a dead holder of the same lock, and only that is
//! cleaned. The kernel releases the lock when the agent dies, however it dies.
//!
//! The run directory defaults to `/run/srediag` (`--run-dir`, `SREDIAG_RUN_DIR`); agents with
//! different run directories are independent instances with their own cgroup roots
//! (`srediag` for the default, `srediag-<hash of the run dir>` otherwise) — that is how tests run
//! agents side by side.

use rustix::fs::{FlockOperation, Mode, OFlags};
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/srediag";

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another agent holds the lock.
    #[error(
        "another srediag agent (pid {holder}) is running with run directory {dir}: stop it first, or give this one its own --run-dir"
    )]
    Held {
        /// The run directory.
        dir: PathBuf,
        /// The holder's pid as it wrote it (`unknown` when unreadable).
        holder: String,
    },
    /// The run directory (or its `plugins` directory) is not safe for a root agent to clean: a
    /// symlink, not owned by root, writable by others, or under such a directory.
    #[error("run directory: {0}")]
    Unsafe(#[from] crate::sys::safe_path::SafePathError),
    /// The run directory or lock file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// This agent's instance: its run directory, held exclusively.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    cgroup_root: String,
    _lock: OwnedFd,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstanceError + '_ {
    move |source| InstanceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Instance {
    /// Takes the lock of run directory `dir` (created 0755 when missing), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Instance, InstanceError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // The agent deletes what it finds under the run directory: another user must not be able
        // to point any of it elsewhere (a `plugins` symlink to a root-only directory, say).
        use crate::sys::safe_path::{LastDir, open_dir};
        open_dir(dir, LastDir::Private)?;
        let plugins = dir.join("plugins");
        if std::fs::symlink_metadata(&plugins).is_ok() {
            open_dir(&plugins, LastDir::Private)?;
        }
        let path = dir.join("agent.lock");
        let fd = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io(&path)(e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io(&path)(e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io(&path)(std::io::Error::other("not a regular file")));
        }
        let mut file = std::fs::File::from(fd);
        if let Err(e) = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                    holder.to_string()
                } else {
                    "unknown".into()
                };
                return Err(InstanceError::Held {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            return Err(io(&path)(e.into()));
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
        Ok(Instance {
            cgroup_root: cgroup_root(dir),
            dir: dir.to_path_buf(),
            _lock: OwnedFd::from(file),
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the plugins' scratch directories live.
    pub fn scratch_root(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// The name of this instance's cgroup root (one path component under each hierarchy).
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }
}

/// `srediag` for the default run directory, else `srediag-<8 hex digits of FNV-1a(dir)>`.
pub fn cgroup_root(dir: &Path) -> String {
    if dir == Path::new(DEFAULT_RUN_DIR) {
        return "srediag".into();
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in dir.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("srediag-{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let d = tempfile::tempdir().expect("tempdir");
        let first = Instance::acquire(d.path()).expect("first");
        match Instance::acquire(d.path()) {
            Err(InstanceError::Held { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        Instance::acquire(d.path()).expect("free again once dropped");
    }

    #[test]
    fn cgroup_roots_differ_by_run_directory() {
        assert_eq!(cgroup_root(Path::new(DEFAULT_RUN_DIR)), "srediag");
        let a = cgroup_root(Path::new("/tmp/a/run"));
        let b = cgroup_root(Path::new("/tmp/b/run"));
        assert!(a.starts_with("srediag-") && b.starts_with("srediag-") && a != b);
    }

    #[test]
    fn a_run_directory_others_can_redirect_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let run = d.path().join("run");
        std::fs::create_dir(&run).expect("run");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            Instance::acquire(&run),
            Err(InstanceError::Unsafe(_))
        ));
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("elsewhere");
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        std::os::unix::fs::symlink(&elsewhere, run.join("plugins")).expect("symlink");
        assert!(matches!(
            Instance::acquire(&run),
            Err(InstanceError::Unsafe(_))
        ));
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("agent.lock")).expect("symlink");
        assert!(matches!(
            Instance::acquire(d.path()),
            Err(InstanceError::Io { .. })
        ));
    }
}
