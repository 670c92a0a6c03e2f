//! A small errno newtype that prints the symbolic name (`EPERM`) with its meaning.

use std::fmt;

/// An errno value returned by a failed syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// `ENOTSUPP`: kernel-internal "operation not supported" that leaks out of `bpf()`.
const ENOTSUPP: i32 = 524;

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Function not implemented.
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// Operation not supported.
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    /// Permission denied.
    pub const EACCES: Errno = Errno(libc::EACCES);

    /// The errno of the last failed libc call on this thread.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The symbolic name (`EPERM`), or `errno N` when unknown.
    pub fn name(self) -> String {
        match self.describe() {
            Some((name, _)) => name.to_owned(),
            None => format!("errno {}", self.0),
        }
    }

    fn describe(self) -> Option<(&'static str, &'static str)> {
        Some(match self.0 {
            libc::EPERM => ("EPERM", "operation not permitted"),
            libc::ENOENT => ("ENOENT", "no such file or directory"),
            libc::ESRCH => ("ESRCH", "no such process"),
            libc::EINTR => ("EINTR", "interrupted system call"),
            libc::EIO => ("EIO", "input/output error"),
            libc::E2BIG => ("E2BIG", "argument list too long"),
            libc::EBADF => ("EBADF", "bad file descriptor"),
            libc::EAGAIN => ("EAGAIN", "resource temporarily unavailable"),
            libc::ENOMEM => ("ENOMEM", "cannot allocate memory"),
            libc::EACCES => ("EACCES", "permission denied"),
            libc::EFAULT => ("EFAULT", "bad address"),
            libc::EBUSY => ("EBUSY", "device or resource busy"),
            libc::EEXIST => ("EEXIST", "file exists"),
            libc::EINVAL => ("EINVAL", "invalid argument"),
            libc::ENOSPC => ("ENOSPC", "no space left on device"),
            libc::ERANGE => ("ERANGE", "numerical result out of range"),
            libc::ENOSYS => ("ENOSYS", "function not implemented"),
            libc::EOPNOTSUPP => ("EOPNOTSUPP", "operation not supported"),
            ENOTSUPP => ("ENOTSUPP", "operation not supported by the kernel"),
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.describe() {
            Some((name, text)) => write!(f, "{name} ({text})"),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for Errno {}
