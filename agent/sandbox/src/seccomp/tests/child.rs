//! Running code under a filter in a forked child.
//!
//! The test harness is multi-threaded, so the child only makes raw syscalls: everything (filters,
//! syscall lists, paths) is prepared before `fork`, results go back through a pipe as `i64`s, and
//! the child ends with `_exit`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};

use super::super::CompiledFilter;

/// How a child ended and what it reported.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Raw `waitpid` status.
    pub(crate) status: libc::c_int,
    /// Values reported with [`Reporter::put`], in order.
    pub(crate) values: Vec<i64>,
    /// The child's pid.
    pub(crate) pid: libc::pid_t,
}

impl Outcome {
    /// The exit code, if the child exited.
    pub(crate) fn exit_code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    /// The signal that killed the child, if one did.
    pub(crate) fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }

    /// Whether the child was killed by `SIGSYS` (seccomp kill, trap with default disposition, or a
    /// foreign architecture).
    pub(crate) fn killed_by_sigsys(&self) -> bool {
        self.signal() == Some(libc::SIGSYS)
    }
}

/// The child's end of the result pipe.
#[derive(Clone, Copy)]
pub(crate) struct Reporter(RawFd);

impl Reporter {
    /// Sends one value to the parent. Async-signal-safe.
    pub(crate) fn put(self, v: i64) {
        // SAFETY: writes 8 bytes from a valid local to an fd owned by this child.
        unsafe { libc::write(self.0, (&raw const v).cast(), 8) };
    }
}

/// A close-on-exec pipe: `[read end, write end]`.
pub(crate) fn pipe() -> [RawFd; 2] {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    fds
}

/// Closes fds the test owns.
pub(crate) fn close(fds: &[RawFd]) {
    for fd in fds {
        // SAFETY: the caller owns these fds and does not use them afterwards.
        unsafe { libc::close(*fd) };
    }
}

/// A raw syscall returning `-errno` on failure, like the kernel ABI. Async-signal-safe.
pub(crate) fn raw(nr: libc::c_long, args: [u64; 6]) -> i64 {
    // SAFETY: the tests pass arguments the kernel validates (null pointers, small integers) or
    // pointers to live locals.
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if r == -1 {
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        r
    }
}

/// Child setup before installing a filter: no core dumps (SIGSYS dumps core by default; also none
/// through a piped `core_pattern`), a
/// watchdog, and optionally dropping root so that a broken filter cannot let a zero-argument call
/// change the host. Raw syscalls only.
pub(crate) fn prepare(drop_root: bool) {
    let no_core = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    raw(
        libc::SYS_prlimit64,
        [
            0,
            libc::RLIMIT_CORE as u64,
            (&raw const no_core) as u64,
            0,
            0,
            0,
        ],
    );
    raw(
        libc::SYS_prctl,
        [libc::PR_SET_DUMPABLE as u64, 0, 0, 0, 0, 0],
    );
    raw(libc::SYS_alarm, [30, 0, 0, 0, 0, 0]);
    if drop_root && rustix::process::getuid().is_root() {
        let nobody = 65534;
        raw(libc::SYS_setgroups, [0, 0, 0, 0, 0, 0]);
        raw(libc::SYS_setresgid, [nobody, nobody, nobody, 0, 0, 0]);
        raw(libc::SYS_setresuid, [nobody, nobody, nobody, 0, 0, 0]);
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS)` then [`CompiledFilter::install`]; returns 0 or `-errno`.
pub(crate) fn install(filter: &CompiledFilter) -> i64 {
    let r = raw(
        libc::SYS_prctl,
        [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
    );
    if r != 0 {
        return r;
    }
    match filter.install() {
        Ok(()) => 0,
        Err(e) => -i64::from(e.0),
    }
}

/// Forks; the child runs `f` (raw syscalls only!) and `_exit`s with its return value. The parent
/// collects the reported values and the wait status.
pub(crate) fn run(f: impl FnOnce(Reporter) -> i32) -> Outcome {
    let fds = pipe();
    // SAFETY: the child only runs `f`, which makes raw syscalls, and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: closing the read end in the child.
        unsafe { libc::close(fds[0]) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(Reporter(fds[1]))))
            .unwrap_or(101);
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing the write end in the parent; the read end is owned by `results` below.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is an open fd owned by nobody else.
    let mut results = unsafe { File::from_raw_fd(fds[0]) };
    let mut bytes = Vec::new();
    results.read_to_end(&mut bytes).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    let values = bytes
        .chunks_exact(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    Outcome {
        status,
        values,
        pid,
    }
}

/// Forks a child that installs `filter` (after [`prepare`]) and executes `argv[0]` with `envp`
/// the way the sandbox helper does (open on fd 5, `execveat(5, "", …, AT_EMPTY_PATH)`, the only
/// exec the profiles allow); returns the outcome and what the program wrote to stdout/stderr.
pub(crate) fn exec(
    filter: &CompiledFilter,
    argv: &[&std::ffi::CStr],
    envp: &[&std::ffi::CStr],
) -> (Outcome, String) {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let [out_r, out_w] = pipe();
    let prog = std::fs::File::open(argv[0].to_str().expect("utf-8 program path"))
        .expect("open the program to exec");
    let prog_fd = std::os::fd::AsRawFd::as_raw_fd(&prog);
    // SAFETY: the child only makes raw syscalls (dup2, close, prctl, seccomp, execveat) on
    // prepared data, then `_exit`s if the exec fails.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        prepare(false);
        // SAFETY: fds owned by this child; dup2 clears FD_CLOEXEC on the targets.
        unsafe {
            libc::dup2(out_w, 1);
            libc::dup2(out_w, 2);
            libc::dup2(prog_fd, crate::spec::PROGRAM_FD);
        }
        if install(filter) != 0 {
            // SAFETY: see above.
            unsafe { libc::_exit(120) };
        }
        let _ = crate::exec::exec_fd(crate::spec::PROGRAM_FD, &argv_p, &envp_p);
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(121) }
    }
    close(&[out_w]);
    // SAFETY: out_r is an open fd owned by nobody else.
    let mut stdout = unsafe { File::from_raw_fd(out_r) };
    let mut output = String::new();
    let _ = stdout.read_to_string(&mut output);
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    (
        Outcome {
            status,
            values: Vec::new(),
            pid,
        },
        output,
    )
}
