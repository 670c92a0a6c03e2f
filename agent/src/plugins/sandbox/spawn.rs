//! Starting the sandbox helper from the multi-threaded agent.
//!
//! Between `fork` and `exec` only raw syscalls run (no allocation, no locks): the closure moves
//! the prepared fds into place, marks every other fd close-on-exec, starts a new session and sets
//! the parent-death signal. Everything else (namespaces, credentials, Landlock, seccomp) happens in
//! the freshly executed, single-threaded helper (see `exec.rs`).
//!
//! Invariant: spawn from a long-lived thread (a tokio worker, never `spawn_blocking`):
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits.

use super::spec::{PROGRAM_FD, SPEC_FD, SandboxSpec};
use srediag_plugin_sdk::control::{CONTROL_FD, FROM_PLUGIN_FD, TO_PLUGIN_FD};
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Where to find the `srediag` binary that runs the helper (this executable by default).
pub fn helper_program() -> std::path::PathBuf {
    std::env::var_os("SREDIAG_SANDBOX_HELPER")
        .map(Into::into)
        .unwrap_or_else(|| "/proc/self/exe".into())
}

/// A started helper.
pub struct Spawned {
    /// The helper process (its status is the plugin's status).
    pub child: Child,
    /// A pidfd of the helper: readable when it exits.
    pub pidfd: OwnedFd,
}

fn dup_high(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd ≥ 100 that we own.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Opens a pidfd for `pid`.
pub fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(pid, 0) returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Starts the helper with `control` as its fd 3, the spec on fd 4 and the sealed executable
/// (`program`, a memfd) on fd 5; stdout and stderr are pipes for the agent's log. `data` (the
/// ring memfds) lands on fds 6 and 7, which the plugin inherits.
pub fn spawn(
    spec: &SandboxSpec,
    control: &OwnedFd,
    program: BorrowedFd<'_>,
    data: Option<(BorrowedFd<'_>, BorrowedFd<'_>)>,
) -> std::io::Result<Spawned> {
    let json = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if json.len() >= 60 * 1024 {
        return Err(std::io::Error::other(
            "sandbox spec larger than a pipe buffer",
        ));
    }
    std::fs::File::from(wr).write_all(&json)?; // closed here: the helper reads to EOF
    let spec_fd = dup_high(rd.as_raw_fd())?;
    drop(rd);
    let ctl_fd = dup_high(control.as_raw_fd())?;
    let prog_fd = dup_high(program.as_raw_fd())?;
    let (ctl, spc, prg) = (ctl_fd.as_raw_fd(), spec_fd.as_raw_fd(), prog_fd.as_raw_fd());
    let data_fds = match data {
        Some((a, b)) => Some((dup_high(a.as_raw_fd())?, dup_high(b.as_raw_fd())?)),
        None => None,
    };
    let data_raw = data_fds
        .as_ref()
        .map(|(a, b)| (a.as_raw_fd(), b.as_raw_fd()));
    let first_closed: u32 = if data_raw.is_some() { 8 } else { 6 };
    let mut cmd = Command::new(helper_program());
    cmd.arg0("srediag-sandbox")
        .arg("__sandbox-exec")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe raw syscalls on fds prepared above.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(ctl, CONTROL_FD) < 0
                || libc::dup2(spc, SPEC_FD) < 0
                || libc::dup2(prg, PROGRAM_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((a, b)) = data_raw
                && (libc::dup2(a, TO_PLUGIN_FD) < 0 || libc::dup2(b, FROM_PLUGIN_FD) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // Everything above the passed fds closes at exec (std's own exec-error pipe keeps
            // working).
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            if libc::syscall(
                libc::SYS_close_range,
                first_closed,
                u32::MAX,
                CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(ctl_fd);
    drop(spec_fd);
    drop(prog_fd);
    drop(data_fds);
    let pidfd = pidfd_open(child.id())?;
    Ok(Spawned { child, pidfd })
}

/// An `AF_UNIX` `SOCK_SEQPACKET` socketpair: (agent end, plugin end), both close-on-exec.
pub fn control_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Keeps fds 3 to 7 open in the agent (on /dev/null when free), so that the pipe `std` creates
/// while spawning can never land on the numbers the helper's fds are moved to.
pub fn reserve_low_fds() {
    for fd in [
        CONTROL_FD,
        SPEC_FD,
        PROGRAM_FD,
        TO_PLUGIN_FD,
        FROM_PLUGIN_FD,
    ] {
        // SAFETY: F_GETFD only queries; open returns the lowest free fd.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                let n = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if n >= 0 && n != fd {
                    libc::close(n);
                }
            }
        }
    }
}
