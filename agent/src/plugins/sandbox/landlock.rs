//! Landlock rulesets for plugins: read-only allowlist, one writable scratch directory, no TCP
//! unless the plugin needs the network, and scoping (no signals, no abstract sockets outside).
//!
//! Raw syscalls (x86_64: 444–446) rather than a crate: the rules are few and the kernel ABI is
//! small. The agent builds the ruleset (an fd) before it clones the plugin; the child adds the
//! rule for its own fresh `/proc` ([`add_rule_raw`]) and enforces the ruleset
//! ([`restrict_self_raw`]) with raw syscalls only. The ABI is probed and the build fails closed
//! when the kernel cannot enforce every handled right, unless the operator allowed degraded mode.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: u32 = 1;

/// Filesystem rights (`LANDLOCK_ACCESS_FS_*`).
pub mod fs {
    /// Execute a file.
    pub const EXECUTE: u64 = 1 << 0;
    /// Open a file for writing.
    pub const WRITE_FILE: u64 = 1 << 1;
    /// Open a file for reading.
    pub const READ_FILE: u64 = 1 << 2;
    /// List a directory.
    pub const READ_DIR: u64 = 1 << 3;
    /// Remove a directory.
    pub const REMOVE_DIR: u64 = 1 << 4;
    /// Unlink a file.
    pub const REMOVE_FILE: u64 = 1 << 5;
    /// Create a character device.
    pub const MAKE_CHAR: u64 = 1 << 6;
    /// Create a directory.
    pub const MAKE_DIR: u64 = 1 << 7;
    /// Create a regular file.
    pub const MAKE_REG: u64 = 1 << 8;
    /// Create a socket file.
    pub const MAKE_SOCK: u64 = 1 << 9;
    /// Create a FIFO.
    pub const MAKE_FIFO: u64 = 1 << 10;
    /// Create a block device.
    pub const MAKE_BLOCK: u64 = 1 << 11;
    /// Create a symlink.
    pub const MAKE_SYM: u64 = 1 << 12;
    /// Link or rename across directories (ABI 2).
    pub const REFER: u64 = 1 << 13;
    /// Truncate (ABI 3).
    pub const TRUNCATE: u64 = 1 << 14;
    /// ioctl on devices (ABI 5).
    pub const IOCTL_DEV: u64 = 1 << 15;
}

const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// Rights that apply to regular files (others are directory-only).
const FILE_RIGHTS: u64 =
    fs::EXECUTE | fs::WRITE_FILE | fs::READ_FILE | fs::TRUNCATE | fs::IOCTL_DEV;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What a plugin may touch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockSpec {
    /// Paths readable and executable (the bundle, shared libraries).
    pub read_exec: Vec<PathBuf>,
    /// Paths readable only.
    pub read_only: Vec<PathBuf>,
    /// Paths readable and writable (the private scratch directory).
    pub read_write: Vec<PathBuf>,
    /// Whether TCP bind/connect stay allowed (the plugin declared network access).
    pub network: bool,
    /// Run even when the kernel cannot enforce every rule (logged loudly and counted).
    pub allow_degraded: bool,
}

/// Landlock could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// The kernel lacks Landlock or some handled right, and degraded mode is off.
    #[error(
        "landlock cannot enforce the plugin's rules: {0} (allow `sandbox.allow_degraded` to run anyway)"
    )]
    Unsupported(String),
    /// A syscall failed.
    #[error("landlock {op} failed for {path}: {source}")]
    Syscall {
        /// Which operation.
        op: &'static str,
        /// The path involved, or `-`.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How the ruleset will be enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Every rule is enforced.
    Full {
        /// Landlock ABI version.
        abi: i32,
    },
    /// Some rules cannot be enforced (what is missing).
    Degraded(String),
}

/// The Landlock ABI version of the running kernel, or the errno.
pub fn abi_version() -> Result<i32, i32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns a number.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as i32)
    }
}

fn fs_rights(abi: i32) -> u64 {
    let mut r = (1 << 13) - 1;
    if abi >= 2 {
        r |= fs::REFER;
    }
    if abi >= 3 {
        r |= fs::TRUNCATE;
    }
    if abi >= 5 {
        r |= fs::IOCTL_DEV;
    }
    r
}

/// How `spec` would be enforced on this kernel, without building anything (the agent checks this
/// before spawning, to fail closed early or to log and count a degraded start).
pub fn enforcement(spec: &LandlockSpec) -> Result<Enforcement, LandlockError> {
    let abi = match abi_version() {
        Ok(v) if v >= 1 => v,
        Ok(v) => return degraded(spec, format!("landlock ABI {v}")),
        Err(e) => {
            return degraded(
                spec,
                format!(
                    "landlock unavailable ({})",
                    std::io::Error::from_raw_os_error(e)
                ),
            );
        }
    };
    let mut missing = Vec::new();
    if abi < 4 && !spec.network {
        missing.push("TCP bind/connect rules need ABI 4");
    }
    if abi < 6 {
        missing.push("signal and abstract-socket scoping need ABI 6");
    }
    if missing.is_empty() {
        Ok(Enforcement::Full { abi })
    } else {
        degraded(spec, format!("kernel ABI {abi}: {}", missing.join("; ")))
    }
}

fn degraded(spec: &LandlockSpec, why: String) -> Result<Enforcement, LandlockError> {
    if spec.allow_degraded {
        Ok(Enforcement::Degraded(why))
    } else {
        Err(LandlockError::Unsupported(why))
    }
}

/// `access` as a rule on `path` may carry it: directory rights only on directories.
fn rights_for(path: &Path, access: u64) -> u64 {
    if path.is_dir() {
        access
    } else {
        access & FILE_RIGHTS
    }
}

/// A ruleset ready to be enforced with [`Ruleset::restrict_self`].
pub struct Ruleset {
    fd: OwnedFd,
    /// Full or degraded.
    pub enforcement: Enforcement,
}

fn path_fd(p: &Path) -> Result<OwnedFd, LandlockError> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| LandlockError::Syscall {
        op: "open",
        path: p.display().to_string(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: `c` is a valid C string; O_PATH opens no file contents.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(LandlockError::Syscall {
            op: "open",
            path: p.display().to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Ruleset {
    /// Builds the ruleset for `spec`. Paths that do not exist are skipped (a library directory
    /// missing on this distribution is not an error).
    pub fn build(spec: &LandlockSpec) -> Result<Ruleset, LandlockError> {
        Self::build_inner(spec, None).map(|(rs, _)| rs)
    }

    /// Like [`build`](Self::build), but rules for paths beneath `deferred` (the plugin's own
    /// `/proc`, mounted only in its child) are not added: they are returned with their rights,
    /// for the child to add with [`add_rule_raw`] once the path names what the plugin will see.
    pub fn build_deferring(
        spec: &LandlockSpec,
        deferred: &Path,
    ) -> Result<(Ruleset, Vec<(PathBuf, u64)>), LandlockError> {
        Self::build_inner(spec, Some(deferred))
    }

    fn build_inner(
        spec: &LandlockSpec,
        deferred: Option<&Path>,
    ) -> Result<(Ruleset, Vec<(PathBuf, u64)>), LandlockError> {
        let abi = match abi_version() {
            Ok(v) if v >= 1 => v,
            // No Landlock at all: `enforcement` fails closed, or allows an inert ruleset.
            _ => {
                let why = match enforcement(spec)? {
                    Enforcement::Degraded(w) => w,
                    Enforcement::Full { abi } => format!("landlock ABI {abi}"),
                };
                return degraded_or_fail(spec, why).map(|rs| (rs, Vec::new()));
            }
        };
        let enforcement = enforcement(spec)?;
        let handled_fs = fs_rights(abi);
        let attr = RulesetAttr {
            handled_access_fs: handled_fs,
            handled_access_net: if abi >= 4 && !spec.network {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if abi >= 6 {
                SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
            } else {
                0
            },
        };
        let size = match abi {
            1..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is a valid ruleset attribute of at least `size` bytes.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(LandlockError::Syscall {
                op: "create_ruleset",
                path: "-".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: a new fd owned by us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let rs = Ruleset { fd, enforcement };
        let ro = fs::READ_FILE | fs::READ_DIR;
        let rw = handled_fs & !(fs::EXECUTE | fs::MAKE_CHAR | fs::MAKE_BLOCK);
        let mut later = Vec::new();
        for (paths, access) in [
            (&spec.read_exec, ro | fs::EXECUTE),
            (&spec.read_only, ro),
            (&spec.read_write, rw | ro),
        ] {
            for p in paths {
                if !p.exists() {
                    continue;
                }
                let access = rights_for(p, access & handled_fs);
                match deferred {
                    Some(d) if p.starts_with(d) => later.push((p.clone(), access)),
                    _ => rs.allow(p, access)?,
                }
            }
        }
        Ok((rs, later))
    }

    fn allow(&self, path: &Path, access: u64) -> Result<(), LandlockError> {
        let pfd = path_fd(path)?;
        let attr = PathBeneathAttr {
            allowed_access: access,
            parent_fd: pfd.as_raw_fd(),
        };
        // SAFETY: valid ruleset fd and rule attribute.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(LandlockError::Syscall {
                op: "add_rule",
                path: path.display().to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Enforces the ruleset on the calling thread (and what it executes). `no_new_privs` must be
    /// set first (or the caller must have CAP_SYS_ADMIN).
    pub fn restrict_self(&self) -> Result<(), LandlockError> {
        // SAFETY: valid ruleset fd; flags 0.
        let r =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, self.fd.as_raw_fd(), 0u32) };
        if r < 0 {
            return Err(LandlockError::Syscall {
                op: "restrict_self",
                path: "-".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

fn degraded_or_fail(spec: &LandlockSpec, why: String) -> Result<Ruleset, LandlockError> {
    if !spec.allow_degraded {
        return Err(LandlockError::Unsupported(why));
    }
    // An empty ruleset fd is not possible without Landlock; use /dev/null as an inert fd and
    // make restrict_self a no-op through the Degraded marker.
    let fd = path_fd(Path::new("/dev/null"))?;
    Ok(Ruleset {
        fd,
        enforcement: Enforcement::Degraded(why),
    })
}

impl Ruleset {
    /// The ruleset's fd, for [`add_rule_raw`] and [`restrict_self_raw`] in the child.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// True when nothing can be enforced at all (no Landlock in the kernel).
    pub fn is_inert(&self) -> bool {
        matches!(&self.enforcement, Enforcement::Degraded(w) if w.starts_with("landlock"))
    }
}

/// `landlock_add_rule(ruleset, PATH_BENEATH, {access, path_fd})`: 0 or the errno. Raw syscall,
/// no allocation: callable in the child between `clone` and `exec`.
pub fn add_rule_raw(ruleset: libc::c_int, path_fd: libc::c_int, access: u64) -> Result<(), i32> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: path_fd,
    };
    // SAFETY: a rule attribute on the stack that outlives the call; fds are plain numbers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// `landlock_restrict_self(ruleset, 0)`: 0 or the errno. Raw syscall, no allocation.
pub fn restrict_self_raw(ruleset: libc::c_int) -> Result<(), i32> {
    // SAFETY: a plain syscall on an fd number.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_proc_are_left_to_the_child_with_their_rights() {
        if let Err(e) = abi_version() {
            eprintln!("skipping: this kernel has no landlock (errno {e})");
            return;
        }
        let spec = LandlockSpec {
            read_exec: vec!["/usr/lib".into()],
            read_only: vec![
                "/proc".into(),
                "/proc/meminfo".into(),
                "/etc/hostname".into(),
                "/proc/no-such-file".into(),
            ],
            read_write: vec![],
            network: false,
            allow_degraded: true,
        };
        let (_rs, later) = Ruleset::build_deferring(&spec, Path::new("/proc")).unwrap();
        assert_eq!(
            later,
            [
                (PathBuf::from("/proc"), fs::READ_FILE | fs::READ_DIR),
                // A file: directory rights are dropped, as for the agent's own rules.
                (PathBuf::from("/proc/meminfo"), fs::READ_FILE),
            ]
        );
        // Without deferral everything is added at once.
        let (_rs, none) = Ruleset::build_inner(&spec, None).unwrap();
        assert!(none.is_empty());
    }
}
