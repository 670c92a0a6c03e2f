//! Landlock rulesets for plugins: read-only allowlist, one writable scratch directory, TCP only
//! to and on the ports a plugin is granted, and scoping (no signals, no abstract sockets outside).
//!
//! Raw syscalls (x86_64: 444–446) rather than a crate: the rules are few and the kernel ABI is
//! small. The agent builds the ruleset (an fd) before it clones the plugin; the child adds the
//! rules for what exists only in its own mount namespace — its fresh `/proc` and the tmpfs over
//! its scratch directory ([`add_rule_raw`]) — and enforces the ruleset ([`restrict_self_raw`])
//! with raw syscalls only.
//!
//! **What is required is derived per plugin from what its namespaces do not already isolate**
//! ([`needs`]): every plugin needs the filesystem rules (ABI 1). A plugin without a network grant
//! runs in its own, empty network namespace (no TCP peer, and abstract unix sockets are per
//! network namespace) and its own pid namespace (no host process to signal), so ABI 1 is all it
//! needs. A plugin granted TCP ports shares the host's network namespace: its port rules need
//! ABI 4, and the host's abstract unix sockets (which have no file permissions: containerd's shim
//! sockets were reachable this way, CVE-2020-15257) are kept out by scoping, ABI 6. Anything the
//! kernel offers beyond that is used as well (TCP denied entirely, scoping, truncate and ioctl
//! rights); only a missing requirement fails the start (SRD-P008 naming it), unless the operator
//! allowed degraded mode. Landlock restricts ports, not addresses, and TCP only (not UDP).

use srediag_sys::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const RULE_PATH_BENEATH: u32 = 1;
const RULE_NET_PORT: u32 = 2;

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

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

pub use srediag_sys::landlock::{MAX_PORTS, TcpPorts};

/// One rule per port of `ports`: (port, `NET_CONNECT_TCP` and/or `NET_BIND_TCP`), sorted by port.
fn port_rules(ports: &TcpPorts) -> Vec<(u16, u64)> {
    let mut rules: std::collections::BTreeMap<u16, u64> = Default::default();
    for p in &ports.connect {
        *rules.entry(*p).or_default() |= NET_CONNECT_TCP;
    }
    for p in &ports.bind {
        *rules.entry(*p).or_default() |= NET_BIND_TCP;
    }
    rules.into_iter().collect()
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
    /// The TCP ports the plugin may connect to and bind; none: it runs in its own network
    /// namespace and every TCP connect and bind is denied.
    pub network: TcpPorts,
    /// Run even when the kernel cannot enforce every rule (logged loudly and counted).
    pub allow_degraded: bool,
}

/// Something a plugin's ruleset must enforce, because its namespaces do not already isolate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Filesystem rules: every plugin.
    Filesystem,
    /// TCP port rules: a plugin granted ports (it shares the host's network namespace).
    TcpPorts,
    /// Abstract unix socket scoping: a plugin in the host's network namespace, where host
    /// services' abstract sockets (no file permissions) are reachable.
    AbstractUnixSockets,
}

impl Need {
    /// The Landlock ABI that brings it.
    pub fn abi(self) -> i32 {
        match self {
            Need::Filesystem => 1,
            Need::TcpPorts => 4,
            Need::AbstractUnixSockets => 6,
        }
    }

    /// What and why, for messages (`needs ABI N for …`).
    pub fn describe(self) -> &'static str {
        match self {
            Need::Filesystem => "filesystem rules",
            Need::TcpPorts => "TCP port rules (the plugin's network grant)",
            Need::AbstractUnixSockets => {
                "abstract unix socket scoping (a plugin in the host network namespace)"
            }
        }
    }
}

/// What a plugin with (`network_grant`) or without a network grant requires, lowest ABI first.
pub fn needs(network_grant: bool) -> Vec<Need> {
    if network_grant {
        vec![Need::Filesystem, Need::TcpPorts, Need::AbstractUnixSockets]
    } else {
        vec![Need::Filesystem]
    }
}

/// The lowest Landlock ABI that enforces everything a plugin with (or without) a network grant
/// requires.
pub fn required_abi(network_grant: bool) -> i32 {
    needs(network_grant)
        .into_iter()
        .map(Need::abi)
        .max()
        .unwrap_or(1)
}

/// What kernel ABI `abi` cannot enforce of `needs`, as one message (`None`: everything):
/// `kernel ABI 2: needs ABI 4 for TCP port rules (…), ABI 6 for abstract unix socket scoping (…)`.
pub fn missing(abi: i32, needs: &[Need]) -> Option<String> {
    let missing: Vec<String> = needs
        .iter()
        .filter(|n| n.abi() > abi)
        .map(|n| format!("ABI {} for {}", n.abi(), n.describe()))
        .collect();
    (!missing.is_empty()).then(|| format!("kernel ABI {abi}: needs {}", missing.join(", ")))
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

/// The Landlock ABI version of the running kernel (the one probe, `srediag_sys::landlock`).
pub use srediag_sys::landlock::abi_version;

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
    enforcement_at(spec, abi_version())
}

/// [`enforcement`] on a kernel whose `landlock_create_ruleset` version query answered `abi`.
pub fn enforcement_at(
    spec: &LandlockSpec,
    abi: Result<i32, Errno>,
) -> Result<Enforcement, LandlockError> {
    let abi = match abi {
        Ok(v) if v >= 1 => v,
        Ok(v) => return degraded(spec, format!("landlock ABI {v}")),
        Err(e) => {
            return degraded(
                spec,
                format!(
                    "landlock unavailable ({})",
                    std::io::Error::from_raw_os_error(e.0)
                ),
            );
        }
    };
    match missing(abi, &needs(!spec.network.is_empty())) {
        None => Ok(Enforcement::Full { abi }),
        Some(why) => degraded(spec, why),
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
    /// No Landlock in the kernel: nothing to enforce (degraded mode only).
    inert: bool,
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
        Self::build_inner(spec, &[]).map(|(rs, _)| rs)
    }

    /// Like [`build`](Self::build), but rules for paths beneath any of `deferred` (the plugin's
    /// own `/proc` and the tmpfs over its scratch directory, mounted only in its child) are not
    /// added: they are returned with their rights, for the child to add with [`add_rule_raw`]
    /// once the path names what the plugin will see (a rule holds an inode: one for the host's
    /// directory would not cover what is mounted over it).
    pub fn build_deferring(
        spec: &LandlockSpec,
        deferred: &[&Path],
    ) -> Result<(Ruleset, Vec<(PathBuf, u64)>), LandlockError> {
        Self::build_inner(spec, deferred)
    }

    fn build_inner(
        spec: &LandlockSpec,
        deferred: &[&Path],
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
        // Beyond what `needs` requires, everything this kernel has is used: TCP is handled (and
        // denied but for the granted ports) and scoping is on whenever the kernel can.
        let attr = RulesetAttr {
            handled_access_fs: handled_fs,
            handled_access_net: if abi >= 4 {
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
        let rs = Ruleset {
            fd,
            enforcement,
            inert: false,
        };
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
                if deferred.iter().any(|d| p.starts_with(d)) {
                    later.push((p.clone(), access));
                } else {
                    rs.allow(p, access)?;
                }
            }
        }
        if abi >= 4 {
            for (port, access) in port_rules(&spec.network) {
                rs.allow_port(port, access)?;
            }
        }
        Ok((rs, later))
    }

    fn allow_port(&self, port: u16, access: u64) -> Result<(), LandlockError> {
        let attr = NetPortAttr {
            allowed_access: access,
            port: u64::from(port),
        };
        // SAFETY: valid ruleset fd and rule attribute.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_NET_PORT,
                &attr as *const NetPortAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(LandlockError::Syscall {
                op: "add_rule",
                path: format!("tcp port {port}"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
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
        inert: true,
    })
}

impl Ruleset {
    /// The ruleset's fd, for [`add_rule_raw`] and [`restrict_self_raw`] in the child.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// True when nothing can be enforced at all (no Landlock in the kernel).
    pub fn is_inert(&self) -> bool {
        self.inert
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
mod tests;
