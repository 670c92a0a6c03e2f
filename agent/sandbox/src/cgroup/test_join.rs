//! Test support: putting a test's own child process into a plugin cgroup before it execs, the way
//! the plugin's child joins (write `0` to each open `cgroup.procs`), for the privileged tests.
//! Production spawns join in `exec.rs` (raw syscalls between `clone` and `execveat`).

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use super::PluginCgroup;

/// Moves the calling process into the cgroups whose `cgroup.procs` files `fds` are open on, by
/// writing `"0"` (= the writer) to each with `write(2)`. Async-signal-safe: no allocation, no
/// lock, only `write(2)` and `errno`, so it may run in a `CommandExt::pre_exec` closure. Returns
/// the errno of the first failure (`EBADF`, `EACCES`, `EBUSY` ...).
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

/// Opens every `cgroup.procs` of `cg` `O_WRONLY | O_CLOEXEC` on the real cgroupfs.
pub fn open_procs_fds(cg: &dyn PluginCgroup) -> io::Result<Vec<OwnedFd>> {
    cg.procs_files()
        .into_iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(OwnedFd::from)
        })
        .collect()
}

#[test]
fn join_raw_writes_zero_to_each_fd() {
    use std::os::fd::AsRawFd as _;
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
