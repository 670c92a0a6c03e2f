//! The benchmark's system calls (sockets, rusage, clocks, child fds).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// An `AF_UNIX` `SOCK_SEQPACKET` socketpair.
pub fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut sv = [0; 2];
    // SAFETY: `sv` has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors, each owned once.
    unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
}

/// Sends one packet (blocking).
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) {
    // SAFETY: `buf` is readable for its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    assert_eq!(
        n,
        buf.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
}

/// Receives one packet (blocking); 0 at end of stream.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert!(n >= 0, "recv: {}", std::io::Error::last_os_error());
    n as usize
}

/// CPU time (user + system) of this process in nanoseconds.
pub fn cpu_ns() -> u64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is writable.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Takes ownership of an inherited descriptor.
pub fn inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the parent placed a descriptor at this number for us; owned once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Makes `fds` appear at the given numbers in the child (moved above 100 first so that no dup2
/// overwrites a source not yet moved; dup2 onto another number clears FD_CLOEXEC).
pub fn pass_fds(cmd: &mut Command, fds: &[(BorrowedFd<'_>, RawFd)]) {
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, to)| (f.as_raw_fd(), *to)).collect();
    assert!(pairs.len() <= 8);
    // SAFETY: the closure runs between fork and exec and only calls fcntl and dup2
    // (async-signal-safe), no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 8];
            for (i, (from, _)) in pairs.iter().enumerate() {
                high[i] = libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, (_, to)) in pairs.iter().enumerate() {
                if libc::dup2(high[i], *to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
