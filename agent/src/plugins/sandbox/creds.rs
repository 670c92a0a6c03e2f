//! Dropping every privilege: supplementary groups, gid, uid, all capability sets.

use std::io;

fn check(r: libc::c_long, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Empties the bounding and ambient sets, switches to `uid`/`gid` with no supplementary groups,
/// then clears the effective, permitted and inheritable sets. Must run as root.
pub fn drop_to(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain prctl/set*id/capset syscalls with scalar or stack arguments.
    unsafe {
        for cap in 0..=last_cap() {
            let r = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                check(r as libc::c_long, "drop bounding capability")?;
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
        check(
            libc::setgroups(0, std::ptr::null()) as libc::c_long,
            "setgroups",
        )?;
        check(libc::setresgid(gid, gid, gid) as libc::c_long, "setresgid")?;
        check(libc::setresuid(uid, uid, uid) as libc::c_long, "setresuid")?;
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
