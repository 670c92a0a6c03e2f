//! Invariants that hold for every profile, whatever its YAML says.
//!
//! - [`HARD_DENY`]: syscalls no profile may allow (a profile naming one fails to compile). It covers
//!   every x86_64 syscall Docker's default profile does not allow unconditionally (checked against
//!   the peer copy of that profile by the tests) plus the kernel attack surface a plugin never needs.
//! - [`ENOSYS_SYSCALLS`]: answered with `ENOSYS` in every mode so libc falls back (glibc's
//!   `pthread_create`/`posix_spawn` try `clone3` first and use `clone` on `ENOSYS`).
//! - [`check_restricted_args`]: syscalls a profile may allow only with argument filters that keep
//!   them harmless (`ioctl`, `clone`, `socket`, `socketpair`, `personality`).
//! - [`log_mode_guards`]: argument-level denials added in the monitor-only `log` mode, where the
//!   default action lets non-matching calls through.

/// A comparison of one syscall argument, after symbols and value lists are resolved.
///
/// Only positive matches exist: an allow rule built from `ne`/`lt`/`gt` on an `int` argument can be
/// bypassed by setting the upper 32 bits (the kernel truncates, libseccomp compares 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Cmp {
    /// `arg == value` over all 64 bits.
    Eq {
        /// Argument index, 0..=5.
        index: u32,
        /// Expected value.
        value: u64,
    },
    /// `arg & mask == value`.
    MaskedEq {
        /// Argument index, 0..=5.
        index: u32,
        /// Bits compared.
        mask: u64,
        /// Expected value of the masked bits.
        value: u64,
    },
}

impl Cmp {
    pub(crate) fn index(self) -> u32 {
        match self {
            Cmp::Eq { index, .. } | Cmp::MaskedEq { index, .. } => index,
        }
    }

    /// The value the comparison expects, after masking.
    fn value(self) -> u64 {
        match self {
            Cmp::Eq { value, .. } | Cmp::MaskedEq { value, .. } => value,
        }
    }

    /// The bits the comparison looks at.
    fn mask(self) -> u64 {
        match self {
            Cmp::Eq { .. } => u64::MAX,
            Cmp::MaskedEq { mask, .. } => mask,
        }
    }
}

/// Syscalls no profile may allow. Denied by the default action in `errno`/`trap`/`kill` mode and by an
/// explicit `EPERM` rule in `log` mode.
pub(crate) const HARD_DENY: &[&str] = &[
    // eBPF, perf and io_uring: large kernel attack surface, and io_uring bypasses seccomp entirely.
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // Inspecting or modifying other processes.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    // Namespaces, mounts and the root directory.
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    // File handles bypass path-based confinement (Landlock) and open files by inode.
    "open_by_handle_at",
    "name_to_handle_at",
    // Kernel keyrings.
    "keyctl",
    "add_key",
    "request_key",
    // userfaultfd makes kernel races exploitable.
    "userfaultfd",
    // Kernel modules and kexec.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    // Host administration.
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "sethostname",
    "setdomainname",
    "vhangup",
    // NUMA policy of the host's memory.
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "set_mempolicy_home_node",
    "migrate_pages",
    "move_pages",
    // Port I/O and the LDT (x86 legacy attack surface).
    "iopl",
    "ioperm",
    "modify_ldt",
    // fanotify watches the whole filesystem.
    "fanotify_init",
    // Obsolete or unimplemented syscalls (no legitimate caller; Docker denies them too).
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "lookup_dcookie",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "vserver",
];

/// Syscalls answered with `ENOSYS` (not `EPERM`) in every mode, and which no profile may allow.
///
/// `clone3` passes its flags in memory, where seccomp cannot check them for `CLONE_NEW*`; glibc
/// (`pthread_create`, `posix_spawn`, `fork`) falls back to `clone`, whose flags are filtered.
pub(crate) const ENOSYS_SYSCALLS: &[&str] = &["clone3"];

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET` (the mask Docker uses; `CLONE_NEWTIME` overlaps the exit-signal byte of `clone` and
/// is only accepted by `clone3`/`unshare`, both denied).
pub(crate) const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32 as u64;

/// The low 32 bits: how the kernel reads an `int`/`unsigned int` argument.
pub(crate) const LOW32: u64 = 0xffff_ffff;

/// The kernel's `SOCK_TYPE_MASK`: the type bits of `socket(2)`'s second argument (the rest are
/// `SOCK_NONBLOCK`/`SOCK_CLOEXEC`, anything else is `EINVAL`).
pub(crate) const SOCK_TYPE_MASK: u64 = 0xf;

/// `SOCK_PACKET` (obsolete, deprecated in libc; denied in `log` mode).
const SOCK_PACKET: u64 = 10;

/// An `ioctl` request number as a filter value (`libc::Ioctl` is `c_ulong` on glibc, `c_int` on musl).
#[allow(clippy::unnecessary_cast, reason = "libc::Ioctl differs between libcs")]
pub(crate) const fn ioctl_request(r: libc::Ioctl) -> u64 {
    r as u64
}

/// The only `ioctl` requests a profile may allow (compared on the low 32 bits).
pub(crate) const SAFE_IOCTLS: &[(&str, u64)] = &[
    ("FIONREAD", ioctl_request(libc::FIONREAD)),
    ("FIONBIO", ioctl_request(libc::FIONBIO)),
    ("FIOCLEX", ioctl_request(libc::FIOCLEX)),
    ("FIONCLEX", ioctl_request(libc::FIONCLEX)),
    ("TCGETS", ioctl_request(libc::TCGETS)),
    ("TIOCGWINSZ", ioctl_request(libc::TIOCGWINSZ)),
];

/// `personality(2)` values a profile may allow: Docker's harmless set (`PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32|UNAME26`, and the query `0xffffffff`).
const SAFE_PERSONALITIES: &[u64] = &[0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Socket families a profile may create.
const SAFE_SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
];

/// Socket types a profile may create (`SOCK_STREAM`, `SOCK_DGRAM`).
const SAFE_SOCKET_TYPES: &[u64] = &[libc::SOCK_STREAM as u64, libc::SOCK_DGRAM as u64];

/// Names usable in profile argument values and masks (`value: AF_INET`, `mask: "A|B"`).
pub(crate) const SYMBOLS: &[(&str, u64)] = &[
    ("LOW32", LOW32),
    // socket(2)
    ("AF_UNIX", libc::AF_UNIX as u64),
    ("AF_INET", libc::AF_INET as u64),
    ("AF_INET6", libc::AF_INET6 as u64),
    ("SOCK_STREAM", libc::SOCK_STREAM as u64),
    ("SOCK_DGRAM", libc::SOCK_DGRAM as u64),
    ("SOCK_TYPE_MASK", SOCK_TYPE_MASK),
    ("IPPROTO_IP", libc::IPPROTO_IP as u64),
    ("IPPROTO_TCP", libc::IPPROTO_TCP as u64),
    ("IPPROTO_UDP", libc::IPPROTO_UDP as u64),
    ("IPPROTO_IPV6", libc::IPPROTO_IPV6 as u64),
    ("SOL_SOCKET", libc::SOL_SOCKET as u64),
    // ioctl(2)
    ("FIONREAD", ioctl_request(libc::FIONREAD)),
    ("FIONBIO", ioctl_request(libc::FIONBIO)),
    ("FIOCLEX", ioctl_request(libc::FIOCLEX)),
    ("FIONCLEX", ioctl_request(libc::FIONCLEX)),
    ("TCGETS", ioctl_request(libc::TCGETS)),
    ("TIOCGWINSZ", ioctl_request(libc::TIOCGWINSZ)),
    // fcntl(2)
    ("F_DUPFD", libc::F_DUPFD as u64),
    ("F_GETFD", libc::F_GETFD as u64),
    ("F_SETFD", libc::F_SETFD as u64),
    ("F_GETFL", libc::F_GETFL as u64),
    ("F_SETFL", libc::F_SETFL as u64),
    ("F_DUPFD_CLOEXEC", libc::F_DUPFD_CLOEXEC as u64),
    ("F_GET_SEALS", libc::F_GET_SEALS as u64),
    // clone(2)
    ("CLONE_THREAD", libc::CLONE_THREAD as u64),
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    // execveat(2)
    ("AT_EMPTY_PATH", libc::AT_EMPTY_PATH as u64),
    // prctl(2)
    ("PR_SET_NAME", libc::PR_SET_NAME as u64),
    ("PR_GET_NAME", libc::PR_GET_NAME as u64),
];

/// Looks up a symbol of [`SYMBOLS`].
pub(crate) fn symbol(name: &str) -> Option<u64> {
    SYMBOLS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Whether `name` is hard-denied (in [`HARD_DENY`] or [`ENOSYS_SYSCALLS`]).
pub(crate) fn is_hard_denied(name: &str) -> bool {
    HARD_DENY.contains(&name) || ENOSYS_SYSCALLS.contains(&name)
}

/// The comparison on argument `index`, if the rule has one.
fn arg(cmps: &[Cmp], index: u32) -> Option<Cmp> {
    cmps.iter().copied().find(|c| c.index() == index)
}

/// Whether `cmp` looks at every bit the kernel reads of an `int` argument.
fn covers_low32(cmp: Cmp) -> bool {
    cmp.mask() & LOW32 == LOW32
}

/// Checks one expanded allow rule of a syscall whose arguments must be filtered.
///
/// Returns the reason the rule is rejected, or `Ok` for syscalls without such a requirement.
pub(crate) fn check_restricted_args(syscall: &str, cmps: &[Cmp]) -> Result<(), String> {
    match syscall {
        "ioctl" => {
            // The request is `unsigned int` in the kernel: compare exactly the low 32 bits, so that
            // TIOCSTI | 1<<32 is TIOCSTI, and only the harmless requests.
            let [
                Cmp::MaskedEq {
                    index: 1,
                    mask: LOW32,
                    value,
                },
            ] = cmps
            else {
                return Err("ioctl must be allowed with exactly one argument filter: \
                            {index: 1, op: masked_eq, mask: LOW32, value: <request>}"
                    .into());
            };
            if SAFE_IOCTLS.iter().any(|(_, v)| v == value) {
                Ok(())
            } else {
                Err(format!(
                    "ioctl request {value:#x} is not one of the harmless requests {}",
                    SAFE_IOCTLS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        "clone" => match arg(cmps, 0) {
            Some(Cmp::MaskedEq { mask, value, .. })
                if mask & CLONE_NAMESPACES == CLONE_NAMESPACES && value & CLONE_NAMESPACES == 0 =>
            {
                Ok(())
            }
            _ => Err(
                "clone must be allowed with {index: 0, op: masked_eq} whose mask covers every \
                      CLONE_NEW* flag and whose value has none of them"
                    .into(),
            ),
        },
        "socket" => {
            let family_ok = arg(cmps, 0)
                .is_some_and(|c| covers_low32(c) && SAFE_SOCKET_FAMILIES.contains(&c.value()));
            let type_ok = arg(cmps, 1).is_some_and(|c| {
                c.mask() & SOCK_TYPE_MASK == SOCK_TYPE_MASK
                    && SAFE_SOCKET_TYPES.contains(&(c.value() & SOCK_TYPE_MASK))
            });
            if family_ok && type_ok {
                Ok(())
            } else {
                Err(
                    "socket must be allowed with argument 0 equal to AF_UNIX, AF_INET or AF_INET6 \
                     and argument 1 masked with SOCK_TYPE_MASK equal to SOCK_STREAM or SOCK_DGRAM"
                        .into(),
                )
            }
        }
        "socketpair" => match arg(cmps, 0) {
            Some(c) if covers_low32(c) && c.value() == libc::AF_UNIX as u64 => Ok(()),
            _ => Err("socketpair must be allowed with argument 0 equal to AF_UNIX".into()),
        },
        "personality" => match arg(cmps, 0) {
            Some(c) if covers_low32(c) && SAFE_PERSONALITIES.contains(&c.value()) => Ok(()),
            _ => Err(format!(
                "personality must be allowed with argument 0 equal to one of {SAFE_PERSONALITIES:#x?}"
            )),
        },
        _ => Ok(()),
    }
}

/// An argument-level denial added (with `EPERM`) only in `log` mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    /// Syscall name.
    pub(crate) syscall: &'static str,
    /// The comparison that selects the dangerous calls.
    pub(crate) cmp: Cmp,
    /// Why the calls are dangerous.
    pub(crate) why: &'static str,
}

/// Denials that keep the monitor-only `log` mode from opening the worst argument-level holes: an
/// allow rule with arguments cannot say "everything else is denied" when the default action lets
/// calls through. One `clone` guard per namespace flag, since a masked comparison tests "all of these
/// bits", not "any".
pub(crate) fn log_mode_guards() -> Vec<Guard> {
    let masked = |syscall, index, mask, value, why| Guard {
        syscall,
        cmp: Cmp::MaskedEq { index, mask, value },
        why,
    };
    let mut out = vec![
        masked(
            "ioctl",
            1,
            LOW32,
            ioctl_request(libc::TIOCSTI),
            "TIOCSTI injects terminal input",
        ),
        masked(
            "ioctl",
            1,
            LOW32,
            ioctl_request(libc::TIOCLINUX),
            "TIOCLINUX pastes console input",
        ),
        masked(
            "socket",
            0,
            LOW32,
            libc::AF_PACKET as u64,
            "packet sockets forge link-layer traffic",
        ),
        masked(
            "socket",
            0,
            LOW32,
            libc::AF_NETLINK as u64,
            "netlink reaches kernel subsystems",
        ),
        masked(
            "socket",
            1,
            SOCK_TYPE_MASK,
            libc::SOCK_RAW as u64,
            "raw sockets forge traffic",
        ),
        masked(
            "socket",
            1,
            SOCK_TYPE_MASK,
            SOCK_PACKET,
            "obsolete packet sockets",
        ),
    ];
    let mut bits = CLONE_NAMESPACES;
    while bits != 0 {
        let bit = bits & bits.wrapping_neg();
        bits &= !bit;
        out.push(masked(
            "clone",
            0,
            bit,
            bit,
            "namespace creation (user namespaces give capabilities)",
        ));
    }
    out
}
