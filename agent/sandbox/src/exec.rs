//! The plugin's side of the spawn: what runs in the child between `clone` and `execveat`.
//!
//! The agent is multi-threaded and the child shares its memory (`CLONE_VM`, on its own stack,
//! while the cloning thread waits), so the child may only make raw syscalls: no allocation, no
//! locks, no glibc wrapper that keeps process-wide state (`setxid`), no writes to the agent's
//! memory besides its own stack and errno. Everything that needs more is prepared by the agent
//! before the clone (`spawn.rs`): the cgroup files are open, the Landlock ruleset is built, the
//! seccomp filter is compiled, argv and envp are C arrays. The child is created already inside
//! its new mount, pid, ipc, uts (and net) namespaces, as pid 1 of its pid namespace, with every
//! signal blocked. Order (each step needs the privileges the later ones drop):
//!
//! 1. reset every signal handler to the default (the agent's handlers must never run here) —
//!    except SIGXFSZ, ignored (an ignored disposition survives `execve`), so a write past
//!    `RLIMIT_FSIZE` fails with EFBIG instead of killing the plugin — and empty the signal mask;
//!    join the plugin's cgroups (write `0` to each open `cgroup.procs`) and, when the spawner
//!    keeps one for this plugin, its empty network namespace (`setns`);
//! 2. move the passed fds into place (0–3, 5–7) and mark every other fd close-on-exec;
//!    `setsid`;
//! 3. make `/` private (nothing mounted below propagates to the host), mount a fresh `/proc`
//!    (only the plugin's processes), mount a tmpfs of its own over the scratch directory (sized
//!    bytes and inodes from its limits; its pages are charged to the plugin's memory cgroup, since
//!    the child is already in it; the host's directory stays an empty mount point), set the
//!    hostname, enter the scratch directory (after the mount: the working directory is the tmpfs),
//!    add the Landlock rules for paths under the new `/proc` and for the scratch tmpfs (their
//!    inodes exist only now: a rule the agent made for the host's directory would not cover what
//!    is mounted over it), then lower `RLIMIT_NOFILE` (the child still holds a copy of the agent's
//!    fd table, marked close-on-exec, so opening anything must come first) and set
//!    `RLIMIT_FSIZE` to the scratch size (no file it writes, anywhere, grows past it);
//! 4. drop groups, gid, uid and every capability set; `PR_SET_PDEATHSIG` (after the credential
//!    change, which clears it); `no_new_privs`; Landlock; seccomp **last**;
//! 5. `execveat(5, "", argv, envp, AT_EMPTY_PATH)`: fd 5 is the sealed memfd holding exactly the
//!    verified bytes (`trust/sealed.rs`); no path is opened.
//!
//! A failing step writes its errno and name to the report pipe (close-on-exec: the agent reads
//! EOF when the exec succeeded) and exits with [`SANDBOX_FAILED`]. EOF alone also comes from a
//! child killed before its exec (say, by a cgroup kill); the supervisor then sees it exit and
//! classifies that status like any other.
//!
//! Only `libc::syscall` and plain wrappers run here: no cancellation-point wrappers (`write`,
//! `open`, `close` of glibc touch the thread's `struct pthread`, which the child shares).

use super::creds;
use super::seccomp::CompiledFilter;
use super::spec::PROGRAM_FD;
use std::ffi::CStr;
use std::os::fd::RawFd;

/// Exit code when the sandbox could not be built (distinct from plugin exit codes by convention).
pub const SANDBOX_FAILED: i32 = 121;

/// Size of a failure report: errno (4 bytes, native endian) and the step's name (up to 60).
pub const REPORT_LEN: usize = 64;

/// Everything the child needs, prepared by the agent before the clone: numbers, and pointers
/// into memory the agent keeps alive (and the child has a copy of) until the clone returns.
pub struct ChildPlan<'a> {
    /// Open (write-only) `cgroup.procs` files to join, in order.
    pub cgroup_procs: &'a [RawFd],
    /// A network namespace to join (`setns`) rather than a new one from the clone.
    pub netns: Option<RawFd>,
    /// `(from, to)`: fds to `dup2` into place (every `from` is ≥ 100, so none is overwritten).
    pub moves: &'a [(RawFd, RawFd)],
    /// Every fd from here up is close-on-exec (so is fd 4).
    pub first_closed: u32,
    /// Hostname inside the UTS namespace.
    pub hostname: &'a [u8],
    /// The scratch directory (working directory), where the tmpfs is mounted.
    pub scratch: &'a CStr,
    /// The scratch tmpfs's mount options (`size=…,nr_inodes=…,mode=0700,uid=…,gid=…`).
    pub scratch_options: &'a CStr,
    /// `RLIMIT_NOFILE`, soft and hard.
    pub nofile: u64,
    /// `RLIMIT_FSIZE` in bytes, soft and hard (the scratch size).
    pub fsize: u64,
    /// Unprivileged uid.
    pub uid: u32,
    /// Unprivileged gid.
    pub gid: u32,
    /// Highest capability number of the kernel.
    pub last_cap: u32,
    /// The Landlock ruleset fd, or `None` when the kernel has no Landlock (degraded mode).
    pub landlock: Option<RawFd>,
    /// Landlock rules the child adds itself (paths under its fresh `/proc` and its scratch
    /// tmpfs): path and rights.
    pub deferred_rules: &'a [(&'a CStr, u64)],
    /// The seccomp filter, installed last.
    pub seccomp: &'a CompiledFilter,
    /// NULL-terminated argv.
    pub argv: &'a [*const libc::c_char],
    /// NULL-terminated envp.
    pub envp: &'a [*const libc::c_char],
    /// Write end of the report pipe (close-on-exec).
    pub report: RawFd,
}

type Step = Result<(), (&'static str, i32)>;

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

fn ok(r: libc::c_long, step: &'static str) -> Step {
    if r < 0 { Err((step, errno())) } else { Ok(()) }
}

/// Builds the sandbox and executes the plugin. Never returns: on failure it reports the step
/// and exits with [`SANDBOX_FAILED`]. Async-signal-safe.
pub fn run(plan: &ChildPlan<'_>) -> ! {
    let (step, err) = match setup(plan) {
        Err(e) => e,
        Ok(()) => (
            "execveat",
            exec_fd(PROGRAM_FD, plan.argv, plan.envp)
                .raw_os_error()
                .unwrap_or(0),
        ),
    };
    let mut buf = [0u8; REPORT_LEN];
    buf[..4].copy_from_slice(&err.to_ne_bytes());
    let n = step.len().min(REPORT_LEN - 4);
    buf[4..4 + n].copy_from_slice(&step.as_bytes()[..n]);
    // SAFETY: raw write and _exit; `buf` is on the stack.
    unsafe {
        libc::syscall(libc::SYS_write, plan.report, buf.as_ptr(), 4 + n);
        libc::_exit(SANDBOX_FAILED)
    }
}

fn setup(p: &ChildPlan<'_>) -> Step {
    // SAFETY: raw syscalls with scalar arguments or pointers to memory this process owns.
    unsafe {
        // The kernel's struct sigaction (x86_64): handler, flags, restorer, mask.
        #[repr(C)]
        struct KernelSigaction {
            handler: usize,
            flags: u64,
            restorer: usize,
            mask: u64,
        }
        let default = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        let ignore = KernelSigaction {
            handler: libc::SIG_IGN,
            ..default
        };
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let action = if sig == libc::SIGXFSZ {
                &ignore
            } else {
                &default
            };
            ok(
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    action as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                ),
                "reset signal handlers",
            )?;
        }
        // The agent's alternate signal stack (kept by CLONE_VM|CLONE_VFORK) is not ours.
        let off = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        ok(
            libc::syscall(
                libc::SYS_sigaltstack,
                &off as *const libc::stack_t,
                std::ptr::null_mut::<libc::stack_t>(),
            ),
            "sigaltstack",
        )?;
        let empty: libc::sigset_t = std::mem::zeroed();
        ok(
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &empty as *const libc::sigset_t,
                std::ptr::null_mut::<libc::sigset_t>(),
                8usize,
            ),
            "signal mask",
        )?;
        for &fd in p.cgroup_procs {
            if libc::syscall(libc::SYS_write, fd, b"0".as_ptr(), 1usize) != 1 {
                return Err(("join cgroup", errno()));
            }
        }
        if let Some(ns) = p.netns {
            ok(
                libc::syscall(libc::SYS_setns, ns, libc::CLONE_NEWNET),
                "join the plugin's network namespace",
            )?;
        }
        for &(from, to) in p.moves {
            ok(libc::dup2(from, to) as libc::c_long, "move fds")?;
        }
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        ok(
            libc::syscall(libc::SYS_close_range, 4u32, 4u32, CLOSE_RANGE_CLOEXEC),
            "close fds",
        )?;
        ok(
            libc::syscall(
                libc::SYS_close_range,
                p.first_closed,
                u32::MAX,
                CLOSE_RANGE_CLOEXEC,
            ),
            "close fds",
        )?;
        ok(libc::setsid() as libc::c_long, "setsid")?;
        ok(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) as libc::c_long,
            "make / private",
        )?;
        ok(
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) as libc::c_long,
            "mount /proc",
        )?;
        ok(
            libc::mount(
                c"srediag-scratch".as_ptr(),
                p.scratch.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                p.scratch_options.as_ptr().cast(),
            ) as libc::c_long,
            "mount the scratch tmpfs",
        )?;
        ok(
            libc::sethostname(p.hostname.as_ptr().cast(), p.hostname.len()) as libc::c_long,
            "sethostname",
        )?;
        ok(
            libc::chdir(p.scratch.as_ptr()) as libc::c_long,
            "chdir to the scratch directory",
        )?;
        if let Some(ruleset) = p.landlock {
            for &(path, access) in p.deferred_rules {
                let fd = libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::O_PATH | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    if errno() == libc::ENOENT {
                        continue; // like the agent's rules: a missing path is no error
                    }
                    return Err((
                        "open a /proc or scratch path for its landlock rule",
                        errno(),
                    ));
                }
                let r = super::landlock::add_rule_raw(ruleset, fd as libc::c_int, access);
                libc::syscall(libc::SYS_close, fd);
                r.map_err(|e| ("landlock rule for a /proc or scratch path", e))?;
            }
        }
        let nofile = libc::rlimit {
            rlim_cur: p.nofile,
            rlim_max: p.nofile,
        };
        ok(
            libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) as libc::c_long,
            "setrlimit(RLIMIT_NOFILE)",
        )?;
        let fsize = libc::rlimit {
            rlim_cur: p.fsize,
            rlim_max: p.fsize,
        };
        ok(
            libc::setrlimit(libc::RLIMIT_FSIZE, &fsize) as libc::c_long,
            "setrlimit(RLIMIT_FSIZE)",
        )?;
        creds::drop_to(p.uid, p.gid, p.last_cap)?;
        ok(
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) as libc::c_long,
            "PR_SET_PDEATHSIG",
        )?;
        ok(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long,
            "PR_SET_NO_NEW_PRIVS",
        )?;
        if let Some(ruleset) = p.landlock {
            super::landlock::restrict_self_raw(ruleset)
                .map_err(|e| ("landlock restrict_self", e))?;
        }
        p.seccomp.install().map_err(|e| ("seccomp install", e.0))?;
    }
    Ok(())
}

/// Executes the file open on `fd` (the sealed memfd) with `execveat(fd, "", argv, envp,
/// AT_EMPTY_PATH)`, after marking `fd` close-on-exec so the plugin does not inherit it. Returns
/// only on failure. Async-signal-safe (raw syscalls only): callable right after `fork`.
/// `argv` and `envp` must be NULL-terminated arrays of C strings.
pub fn exec_fd(
    fd: libc::c_int,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> std::io::Error {
    if argv.last().is_none_or(|p| !p.is_null()) || envp.last().is_none_or(|p| !p.is_null()) {
        return std::io::Error::from_raw_os_error(libc::EINVAL);
    }
    // SAFETY: fcntl on an fd number; execveat with NULL-terminated arrays (checked above) of C
    // strings the caller keeps alive, and an empty NUL-terminated path.
    unsafe {
        if libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return std::io::Error::last_os_error();
        }
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    std::io::Error::last_os_error()
}
