//! The raw syscalls of this module: race-free `SIGKILL` through pidfds (and `kill(2)` for
//! kernels without them). Every unsafe block of the cgroup code is here; the plugin's child joins
//! its cgroups in `exec.rs`, between `clone` and `execveat`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `pidfd_open(pid, 0)` (5.3+): a handle that keeps naming this process even if its pid is
/// reused after it dies.
pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(fd, SIGKILL, NULL, 0)`.
pub(super) fn pidfd_kill(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: the fd is a live pidfd we own; a null siginfo is allowed and means "as kill(2)".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `kill(pid, SIGKILL)`, for kernels without pidfds.
pub(super) fn kill(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) with a positive pid signals only that process.
    if unsafe { libc::kill(pid, libc::SIGKILL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfd_of_a_dead_pid() {
        // pid_t::MAX is never a live pid.
        let e = pidfd_open(i32::MAX as u32).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENOSYS)),
            "{e}"
        );
        assert!(kill(0).is_err());
    }
}
