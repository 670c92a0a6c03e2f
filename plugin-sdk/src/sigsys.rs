//! The SIGSYS handler that turns srediag's `errno` seccomp action into an error return.
//!
//! srediag compiles a plugin profile's `errno` action as `SECCOMP_RET_TRAP` with the errno in the
//! action's data: the kernel then raises SIGSYS (`si_code` `SYS_SECCOMP`, the errno in
//! `si_errno`) instead of failing the call silently, so the agent's eBPF observer sees and counts
//! every violation on the `signal_generate` tracepoint, at no cost to any other process on the
//! host. This handler makes the refused call return `-errno` (it writes the syscall's return
//! register in the saved context) and lets the plugin continue exactly as with
//! `SECCOMP_RET_ERRNO`.
//!
//! A plain `trap` action (no errno in `si_errno`) returns `-EPERM` as well: with the SDK, `trap`
//! differs from `errno` only in its label. A plugin that wants `trap` to kill it resets SIGSYS to
//! the default disposition (the kernel then forces the death).
//!
//! [`run`](crate::run) installs it first thing. A plugin that does not use `run` calls
//! [`install_seccomp_errno_handler`] at the top of `main`. Without it (or if a plugin replaces
//! the handler, blocks or ignores SIGSYS) the first violation kills the plugin with SIGSYS: the
//! violation is still counted and the agent reports a seccomp kill.

/// `si_code` of a seccomp SIGSYS.
const SYS_SECCOMP: libc::c_int = 1;

/// The saved return register of the interrupted syscall.
#[cfg(target_arch = "x86_64")]
// SAFETY (for callers): `uc` must be the ucontext the kernel passed to an SA_SIGINFO handler.
unsafe fn set_return(uc: *mut libc::ucontext_t, value: i64) {
    // SAFETY: the caller passes the kernel-provided, writable ucontext; REG_RAX indexes gregs.
    unsafe { (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = value };
}

#[cfg(target_arch = "aarch64")]
// SAFETY (for callers): as above.
unsafe fn set_return(uc: *mut libc::ucontext_t, value: i64) {
    // SAFETY: the caller passes the kernel-provided, writable ucontext; x0 is the return register.
    unsafe { (*uc).uc_mcontext.regs[0] = value as u64 };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn set_return(_uc: *mut libc::ucontext_t, _value: i64) {}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if info.is_null() || ctx.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, errno) = unsafe { ((*info).si_code, (*info).si_errno) };
    if code != SYS_SECCOMP {
        return; // a SIGSYS someone sent: nothing to return
    }
    // A plain `trap` action carries no errno: EPERM. (Re-raising SIGSYS to die would not
    // work: the plugin is pid 1 of its pid namespace, and such a process ignores default-action
    // signals it sends itself; only the kernel's own seccomp signal is forced.)
    let errno = if errno > 0 && errno <= 4095 {
        errno
    } else {
        libc::EPERM
    };
    // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler. Only the saved
    // register is written: async-signal-safe.
    unsafe { set_return(ctx.cast(), -i64::from(errno)) };
}

/// Why the handler could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SigsysError {
    /// `sigaction` failed.
    #[error("sigaction(SIGSYS): {0}")]
    Sigaction(#[source] std::io::Error),
    /// The architecture has no implementation.
    #[error("no seccomp errno handler for this architecture")]
    Unsupported,
}

/// Installs the SIGSYS handler that makes a syscall refused by srediag's `errno` seccomp action
/// return `-errno` (see the module docs). Idempotent; call it before anything that could make a
/// refused syscall. [`run`](crate::run) calls it for you.
///
/// # Errors
///
/// [`SigsysError`] when `sigaction` fails or the architecture is not supported.
pub fn install_seccomp_errno_handler() -> Result<(), SigsysError> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(SigsysError::Unsupported);
    }
    // SAFETY: a zeroed sigaction is valid; the handler only writes the saved register.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        // SA_NODEFER: a refused call inside another handler still gets its errno.
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return Err(SigsysError::Sigaction(std::io::Error::last_os_error()));
        }
        // A blocked SIGSYS would make the kernel reset the handler and kill us: unblock it.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSYS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// On the calling thread only: `mkdir` → `SECCOMP_RET_TRAP | data`, everything else allowed.
    fn trap_mkdir(data: u16) {
        const LD_W_ABS: u16 = 0x20;
        const JEQ_K: u16 = 0x15;
        const RET_K: u16 = 0x06;
        let i = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        let prog = [
            i(LD_W_ABS, 0, 0, 4),
            i(JEQ_K, 0, 3, 0xC000_003E),
            i(LD_W_ABS, 0, 0, 0),
            i(JEQ_K, 0, 1, libc::SYS_mkdir as u32),
            i(RET_K, 0, 0, 0x0003_0000 | u32::from(data)),
            i(RET_K, 0, 0, 0x7fff_0000),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr().cast_mut(),
        };
        // SAFETY: prctl and seccomp with a valid, live filter (the kernel copies it); no TSYNC:
        // only this thread is filtered.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &raw const fprog
                ),
                0
            );
        }
    }

    fn mkdir() -> (i64, Option<i32>) {
        // SAFETY: mkdir of a static NUL-terminated path (refused by the filter).
        let rc = unsafe { libc::syscall(libc::SYS_mkdir, c"/srediag-sdk-test".as_ptr(), 0o700) };
        (rc, std::io::Error::last_os_error().raw_os_error())
    }

    #[test]
    fn a_trapped_call_returns_the_errno_from_the_filter() {
        install_seccomp_errno_handler().unwrap();
        let results = std::thread::spawn(|| {
            trap_mkdir(libc::EACCES as u16);
            (0..5).map(|_| mkdir()).collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        assert!(
            results.iter().all(|r| *r == (-1, Some(libc::EACCES))),
            "{results:?}"
        );
        // A plain trap (no data): EPERM.
        let r = std::thread::spawn(|| {
            trap_mkdir(0);
            mkdir()
        })
        .join()
        .unwrap();
        assert_eq!(r, (-1, Some(libc::EPERM)));
    }
}
