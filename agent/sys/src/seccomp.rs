//! seccomp mode query.

use super::Errno;

/// `prctl(PR_GET_SECCOMP)`: 0 (disabled), 1 (strict) or 2 (filter) for the calling thread;
/// `EINVAL` when the kernel lacks `CONFIG_SECCOMP`.
pub fn get_mode() -> Result<i32, Errno> {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments and only returns the thread's mode.
    let ret = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(ret)
}
