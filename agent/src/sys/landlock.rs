//! Landlock ABI version query.

use super::Errno;

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`: the highest Landlock ABI
/// the kernel supports (`ENOSYS`: not built in; `EOPNOTSUPP`: built in but disabled at boot).
pub fn abi_version() -> Result<i32, Errno> {
    // SAFETY: with a NULL attribute pointer and size 0 the kernel reads no user memory; the
    // VERSION flag makes the call return a number rather than a new fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    i32::try_from(ret).map_err(|_| Errno::EINVAL)
}
