//! The raw syscalls of this module: joining cgroups from a forked child, and race-free `SIGKILL`
//! through pidfds. Every unsafe block is here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Moves the calling process into the cgroups whose `cgroup.procs` files `fds` are open on, by
/// writing `"0"` (= the writer) to each with `write(2)`.
///
/// Async-signal-safe: no allocation, no lock, only `write(2)` and `errno`, so it may run in a
/// child between `fork` and `exec` (`CommandExt::pre_exec`) of a multi-threaded agent. Open the
/// fds in the parent with [`PluginCgroup::open_procs_fds`](super::PluginCgroup::open_procs_fds).
/// Call it before dropping privileges: moving a process needs root (or write access to the
/// `cgroup.procs` of the common ancestor on v2). Returns the errno of the first failure
/// (`EBADF`, `EACCES`, `EBUSY` ...).
pub fn join_raw(fds: &[RawFd]) -> Result<(), i32> {
    for &fd in fds {
        loop {
            // SAFETY: write(2) reads one byte from a static buffer; an invalid fd is reported as
            // EBADF, never undefined behaviour. No memory is allocated and no lock is taken.
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
            if n >= 0 {
                return Err(libc::EIO);
            }
            // `last_os_error` only reads errno; it does not allocate.
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if errno != libc::EINTR {
                return Err(errno);
            }
        }
    }
    Ok(())
}

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
    fn join_raw_writes_zero_to_each_fd() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [dir.path().join("a"), dir.path().join("b")];
        let files: Vec<std::fs::File> = paths
            .iter()
            .map(|p| std::fs::File::create(p).unwrap())
            .collect();
        let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        join_raw(&fds).unwrap();
        for p in &paths {
            assert_eq!(std::fs::read_to_string(p).unwrap(), "0");
        }
        assert_eq!(join_raw(&[-1]), Err(libc::EBADF));
        assert_eq!(join_raw(&[]), Ok(()));
    }

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
