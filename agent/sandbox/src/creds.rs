//! Dropping every privilege: supplementary groups, gid, uid, all capability sets.
//!
//! [`drop_to`] runs in the plugin's child between `clone` and `exec`, so it makes raw syscalls
//! only and reports failures as (step, errno) without allocating; [`last_cap`] reads procfs and
//! runs in the agent beforehand.

/// The highest capability number this kernel knows (read in the agent, before the clone).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

fn check(r: libc::c_long, step: &'static str) -> Result<(), (&'static str, i32)> {
    if r < 0 { Err((step, errno())) } else { Ok(()) }
}

/// Empties the bounding and ambient sets, switches to `uid`/`gid` with no supplementary groups,
/// then clears the effective, permitted and inheritable sets. Must run as root. Capabilities
/// `0..=last_cap` are dropped from the bounding set (numbers the kernel does not know answer
/// `EINVAL`, which is ignored).
///
/// Async-signal-safe: raw syscalls only (no glibc `setxid` broadcast), no allocation. On failure, the step and the errno.
pub fn drop_to(uid: u32, gid: u32, last_cap: u32) -> Result<(), (&'static str, i32)> {
    // SAFETY: plain prctl/set*id/capset syscalls with scalar or stack arguments.
    unsafe {
        for cap in 0..=last_cap {
            let r = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
            if r < 0 && errno() != libc::EINVAL {
                return Err(("drop bounding capability", errno()));
            }
        }
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ) as libc::c_long,
            "clear ambient capabilities",
        )?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) as libc::c_long,
            "clear keepcaps",
        )?;
        // Raw syscalls, not glibc's wrappers: those broadcast the change to every thread glibc
        // believes exists (`setxid`), and after a raw `clone` those are the agent's threads.
        check(
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
            "setgroups",
        )?;
        check(
            libc::syscall(libc::SYS_setresgid, gid, gid, gid),
            "setresgid",
        )?;
        check(
            libc::syscall(libc::SYS_setresuid, uid, uid, uid),
            "setresuid",
        )?;
        // setresuid to non-root cleared effective and permitted; clear inheritable explicitly.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut h = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let d = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        check(
            libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()),
            "capset",
        )?;
    }
    Ok(())
}
