//! Starting a sandboxed plugin from the multi-threaded agent.
//!
//! The agent prepares everything that allocates or parses (cgroup files opened, Landlock ruleset
//! built, seccomp filter compiled, argv/envp as C arrays, fds moved above 100), then creates the
//! plugin with one `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEW*)`, the way
//! `posix_spawn` does: no copy of the agent's page tables, the child already inside its new
//! namespaces as pid 1 of its pid namespace, with a pidfd. The child resets every signal
//! handler, makes raw syscalls only (`exec.rs`) and `execveat`s the sealed executable; the
//! calling thread waits until then. A failure report arrives on a close-on-exec pipe: EOF means
//! the exec happened.
//!
//! No helper process: the plugin is the agent's own child, so its exit status (exit code, or the
//! signal that killed it, e.g. SIGSYS from seccomp) is read directly through the pidfd.
//!
//! Invariant: call [`spawn`] only from a thread that lives as long as the agent (the spawner
//! thread, `spawner.rs`): `PR_SET_PDEATHSIG` fires when the *thread* that cloned exits.

use super::exec::{self, ChildPlan, REPORT_LEN, SANDBOX_FAILED};
use super::landlock::{LandlockSpec, Ruleset};
use super::spec::{PROGRAM_FD, SandboxSpec};
use srediag_plugin_sdk::control::{CONTROL_FD, FROM_PLUGIN_FD, TO_PLUGIN_FD};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// A started plugin process.
pub struct Spawned {
    /// The plugin (pid in the agent's namespace).
    pub process: PluginProcess,
    /// Read end of the plugin's stdout.
    pub stdout: OwnedFd,
    /// Read end of the plugin's stderr.
    pub stderr: OwnedFd,
}

/// A plugin process, the agent's direct child, held by pid and pidfd.
pub struct PluginProcess {
    pid: u32,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl PluginProcess {
    /// Its pid in the agent's pid namespace.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// A duplicate of its pidfd (readable once it exits), for the async waiter.
    pub fn pidfd(&self) -> std::io::Result<OwnedFd> {
        self.pidfd.try_clone()
    }

    /// Sends `sig` through the pidfd (never to a recycled pid); a no-op once it was reaped.
    pub fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal on our own pidfd with no siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Its exit status if it exited (reaping it), without blocking.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.wait_flags(libc::WNOHANG)
    }

    /// Waits for it to exit (reaping it).
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            match self.wait_flags(0) {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGKILL, then wait.
    pub fn kill_and_wait(&mut self) -> std::io::Result<ExitStatus> {
        let _ = self.signal(libc::SIGKILL);
        self.wait()
    }

    fn wait_flags(&mut self, flags: libc::c_int) -> std::io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        const P_PIDFD: libc::idtype_t = 3;
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid fills `info` for our own child's pidfd.
        let r = unsafe {
            libc::waitid(
                P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | flags,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: waitid filled `info` (si_pid 0 means WNOHANG found nothing).
        let (pid, status, code) = unsafe { (info.si_pid(), info.si_status(), info.si_code) };
        if pid == 0 {
            return Ok(None);
        }
        // The wait(2) encoding ExitStatus understands: code << 8, or the signal number.
        let raw = match code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status & 0x7f,
        };
        let s = ExitStatus::from_raw(raw);
        self.status = Some(s);
        Ok(Some(s))
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        // Never leave a zombie or a running plugin behind a dropped handle, and never block the
        // dropping thread (an async worker) on a process stuck in the kernel: kill it, reap it
        // at once if it is gone, else on a short-lived thread.
        if self.status.is_some() {
            return;
        }
        let _ = self.signal(libc::SIGKILL);
        if let Ok(Some(_)) = self.try_wait() {
            return;
        }
        let Ok(pidfd) = self.pidfd.try_clone() else {
            return;
        };
        self.status = Some(ExitStatus::from_raw(0)); // the thread below owns the reaping now
        let pid = self.pid;
        let spawned = std::thread::Builder::new()
            .name("srediag-reap".into())
            .spawn(move || {
                let mut orphan = PluginProcess {
                    pid,
                    pidfd,
                    status: None,
                };
                let _ = orphan.wait();
            });
        if spawned.is_err() {
            tracing::warn!(
                pid = self.pid,
                "cannot start a thread to reap a killed plugin; it stays a zombie until the agent exits"
            );
        }
    }
}

fn dup_high(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd ≥ 100 that we own.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::Error::other("NUL byte in an argument or variable"))
}

fn open_write(p: &Path) -> std::io::Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map(OwnedFd::from)
        .map_err(|e| std::io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
}

/// The Landlock ruleset without the rules for paths under `/proc` and the scratch directory (the
/// child adds those for its own, fresh `/proc` and the tmpfs it mounts over `scratch`: a rule on
/// the agent's procfs or the host's directory would not cover them), and those rules.
fn landlock(
    spec: &LandlockSpec,
    scratch: &Path,
) -> std::io::Result<(Ruleset, Vec<(CString, u64)>)> {
    let (rs, later) = Ruleset::build_deferring(spec, &[Path::new("/proc"), scratch])
        .map_err(std::io::Error::other)?;
    let later = later
        .into_iter()
        .map(|(p, a)| Ok((cstring(p.as_os_str().as_bytes())?, a)))
        .collect::<std::io::Result<_>>()?;
    Ok((rs, later))
}

fn open_read(p: &Path) -> std::io::Result<OwnedFd> {
    std::fs::File::open(p)
        .map(OwnedFd::from)
        .map_err(|e| std::io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
}

/// The child's stack: it shares the agent's memory (`CLONE_VM`) but not its stack. Mapped per
/// spawn, with a guard page below it, and unmapped once the child has exec'd or exited.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    const LEN: usize = 256 * 1024;

    fn new() -> std::io::Result<ChildStack> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack {
            base,
            len: Self::LEN,
        };
        // SAFETY: the lowest page of our own mapping becomes the guard page.
        if unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer (the stack grows down; the end of a mapping is page-aligned).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our mapping, as clone(2) expects for a downward stack.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping; with CLONE_VFORK the child no longer runs on it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `&ChildPlan` passed to clone by `spawn`, which stays blocked (vfork)
    // with the plan alive until this child execs or exits.
    let plan = unsafe { &*(arg as *const ChildPlan<'_>) };
    exec::run(plan)
}

/// Starts the plugin described by `spec`: `control` becomes its fd 3 and the sealed executable
/// (`program`, a memfd) its fd 5 (close-on-exec: only `execveat` uses it); `data` (the ring
/// memfds) lands on fds 6 and 7. stdin is `/dev/null`; stdout and stderr are pipes for the
/// agent's log.
///
/// # Errors
///
/// Preparation failures, or the sandbox step that failed in the child with its errno (e.g.
/// `sandbox step "mount /proc": Operation not permitted`); the child is reaped.
///
/// `netns`: a network namespace the child joins (`setns`) instead of creating one, when the
/// spec asks for its own network (see `spawner.rs`: one kept per plugin).
pub fn spawn(
    spec: &SandboxSpec,
    control: &OwnedFd,
    program: BorrowedFd<'_>,
    data: Option<(BorrowedFd<'_>, BorrowedFd<'_>)>,
    netns: Option<BorrowedFd<'_>>,
) -> std::io::Result<Spawned> {
    // Everything that allocates happens here, before the clone.
    let cgroups = spec
        .cgroup_procs
        .iter()
        .map(|p| open_write(p).and_then(|f| dup_high(f.as_raw_fd())))
        .collect::<std::io::Result<Vec<_>>>()?;
    let cgroup_raw: Vec<RawFd> = cgroups.iter().map(|f| f.as_raw_fd()).collect();
    let (ruleset, deferred) = landlock(&spec.landlock, &spec.scratch_dir)?;
    // Above 100 like every fd the child uses, so no dup2 below can land on it.
    let ruleset_fd = dup_high(ruleset.raw_fd())?;
    let deferred_rules: Vec<(&std::ffi::CStr, u64)> =
        deferred.iter().map(|(p, a)| (p.as_c_str(), *a)).collect();
    let null = dup_high(open_read(Path::new("/dev/null"))?.as_raw_fd())?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    // Moved above 100 (so no dup2 of the child overwrites it); the original closes here, or
    // the read below would never see EOF.
    let report_w = {
        let low = report_w;
        dup_high(low.as_raw_fd())?
    };
    let mut passed: Vec<(OwnedFd, RawFd)> = vec![
        (null, 0),
        (dup_high(out_w.as_raw_fd())?, 1),
        (dup_high(err_w.as_raw_fd())?, 2),
        (dup_high(control.as_raw_fd())?, CONTROL_FD),
        (dup_high(program.as_raw_fd())?, PROGRAM_FD),
    ];
    drop((out_w, err_w));
    if let Some((a, b)) = data {
        passed.push((dup_high(a.as_raw_fd())?, TO_PLUGIN_FD));
        passed.push((dup_high(b.as_raw_fd())?, FROM_PLUGIN_FD));
    }
    let moves: Vec<(RawFd, RawFd)> = passed.iter().map(|(f, to)| (f.as_raw_fd(), *to)).collect();
    let first_closed: u32 = if data.is_some() { 8 } else { 6 };
    let netns = match netns {
        Some(fd) if spec.new_net => Some(dup_high(fd.as_raw_fd())?),
        _ => None,
    };
    let argv: Vec<CString> = std::iter::once(spec.program.as_os_str().as_bytes())
        .chain(spec.args.iter().map(|a| a.as_bytes()))
        .map(cstring)
        .collect::<std::io::Result<_>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<std::io::Result<_>>()?;
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let scratch = cstring(spec.scratch_dir.as_os_str().as_bytes())?;
    let scratch_options = cstring(spec.scratch.mount_options(spec.uid, spec.gid).as_bytes())?;
    let plan = ChildPlan {
        cgroup_procs: &cgroup_raw,
        netns: netns.as_ref().map(|f| f.as_raw_fd()),
        moves: &moves,
        first_closed,
        hostname: spec.hostname.as_bytes(),
        scratch: &scratch,
        scratch_options: &scratch_options,
        nofile: spec.nofile,
        fsize: spec.scratch.bytes,
        uid: spec.uid,
        gid: spec.gid,
        last_cap: super::creds::last_cap(),
        landlock: (!ruleset.is_inert()).then(|| ruleset_fd.as_raw_fd()),
        deferred_rules: &deferred_rules,
        seccomp: &spec.seccomp,
        argv: &argv_p,
        envp: &envp_p,
        report: report_w.as_raw_fd(),
    };
    // Like posix_spawn: the child borrows this address space (no page-table copy, no
    // copy-on-write faults afterwards) on its own stack, and this thread waits (vfork) until it
    // has exec'd or exited. All signals stay blocked across the clone, so no agent handler runs
    // in the child before it resets them (`exec::run`).
    let mut flags = libc::CLONE_VM
        | libc::CLONE_VFORK
        | libc::CLONE_PIDFD
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::SIGCHLD;
    if spec.new_net && netns.is_none() {
        flags |= libc::CLONE_NEWNET;
    }
    let stack = ChildStack::new()?;
    let mut pidfd: libc::c_int = -1;
    // Dropping credentials in the child goes through commit_creds, which resets the dumpable
    // flag of the memory it runs on: with CLONE_VM that is the agent's. Restored below.
    // SAFETY: prctl with scalar arguments.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    // Raw rt_sigprocmask: glibc's wrappers leave its two internal signals unblocked.
    let all: u64 = !0;
    let mut old_mask: u64 = 0;
    // SAFETY: rt_sigprocmask on the calling thread with 8-byte kernel sigsets on the stack.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old_mask as *mut u64,
            8usize,
        )
    };
    // SAFETY: the child runs `child_main` on `stack` with a pointer to `plan`; both outlive it
    // (CLONE_VFORK suspends this thread until the child execs or exits). CLONE_PIDFD stores the
    // pidfd in `pidfd` (the parent_tid argument).
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            &plan as *const ChildPlan<'_> as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_err = std::io::Error::last_os_error();
    // SAFETY: restoring this thread's previous mask and the process's dumpable flag.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old_mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        if dumpable >= 0 {
            libc::prctl(libc::PR_SET_DUMPABLE, dumpable as libc::c_ulong, 0, 0, 0);
        }
    }
    drop(stack);
    if pid < 0 {
        return Err(clone_err);
    }
    // SAFETY: CLONE_PIDFD stored a fresh (close-on-exec) pidfd owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut process = PluginProcess {
        pid: pid as u32,
        pidfd,
        status: None,
    };
    // The child holds its own copies now.
    drop((report_w, passed, cgroups, ruleset_fd, ruleset, netns));
    let mut report = [0u8; REPORT_LEN];
    let mut n = 0;
    let file = std::fs::File::from(report_r);
    while n < REPORT_LEN {
        match std::io::Read::read(&mut &file, &mut report[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = process.kill_and_wait();
                return Err(e);
            }
        }
    }
    if n == 0 {
        return Ok(Spawned {
            process,
            stdout: out_r,
            stderr: err_r,
        });
    }
    let status = process.wait();
    let errno = i32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
    let step = String::from_utf8_lossy(&report[4.min(n)..n]).into_owned();
    let err = std::io::Error::from_raw_os_error(errno);
    Err(std::io::Error::new(
        err.kind(),
        format!(
            "sandbox step {step:?} failed: {err} (child {})",
            match status {
                Ok(s) if s.code() == Some(SANDBOX_FAILED) => "exited".to_string(),
                Ok(s) => s.to_string(),
                Err(e) => format!("not reaped: {e}"),
            }
        ),
    ))
}

/// An `AF_UNIX` `SOCK_SEQPACKET` socketpair: (agent end, plugin end), both close-on-exec.
pub fn control_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
