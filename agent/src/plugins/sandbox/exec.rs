//! The sandbox helper: `srediag __sandbox-exec`, a fresh single-threaded process that the agent
//! starts for each plugin. Being single-threaded, it may allocate and use libraries freely while
//! it builds the sandbox — unlike code running between `fork` and `exec` in the multi-threaded
//! agent. Order (each step needs the privileges the later ones drop):
//!
//! 1. read the [`SandboxSpec`] from fd 4; join the plugin's cgroups;
//! 2. `unshare` mount, pid, ipc, uts (and net) namespaces; make `/` private;
//! 3. `fork`: the child becomes pid 1 of the new pid namespace; the helper stays outside, forwards
//!    SIGTERM/SIGINT and exits with the child's status (signals as 128+N), so the agent sees one
//!    process and one status;
//! 4. child: mount a fresh `/proc` (only the plugin's processes), set the hostname, compile the
//!    seccomp filter and build the Landlock ruleset (still root), drop uid/gid/capabilities, set
//!    `PR_SET_PDEATHSIG` (after the credential change, which clears it), `no_new_privs`, Landlock,
//!    seccomp **last**, then `execveat(5, "", argv, envp, AT_EMPTY_PATH)`: fd 5 is the sealed
//!    memfd holding exactly the verified bytes (`trust/sealed.rs`); no path is opened.

use super::spec::{MAX_SPEC, PROGRAM_FD, SPEC_FD, SandboxSpec};
use super::{creds, landlock, seccomp};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;

/// Exit code when the sandbox could not be built (distinct from plugin exit codes by convention).
pub const SANDBOX_FAILED: i32 = 121;

fn die(plugin: &str, msg: &str) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "srediag sandbox for plugin {plugin}: {msg}"
    );
    // SAFETY: _exit never returns and runs no destructors.
    unsafe { libc::_exit(SANDBOX_FAILED) }
}

fn cstr(s: &[u8]) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new("?").expect("no NUL"))
}

fn read_spec() -> Result<SandboxSpec, String> {
    // SAFETY: fd 4 is the spec pipe the agent passed; we take ownership and close it after.
    let f = unsafe { std::fs::File::from_raw_fd(SPEC_FD) };
    let mut buf = Vec::new();
    f.take(MAX_SPEC as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the sandbox spec on fd {SPEC_FD}: {e}"))?;
    if buf.len() > MAX_SPEC {
        return Err("sandbox spec too large".into());
    }
    serde_json::from_slice(&buf).map_err(|e| format!("invalid sandbox spec: {e}"))
}

static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Executes the file open on `fd` (the sealed memfd) with `execveat(fd, "", argv, envp,
/// AT_EMPTY_PATH)`, after marking `fd` close-on-exec so the plugin does not inherit it. Returns
/// only on failure. Async-signal-safe (raw syscalls only): callable right after `fork`.
/// `argv` and `envp` must be NULL-terminated arrays of C strings.
pub fn exec_fd(
    fd: libc::c_int,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> std::io::Error {
    if argv.last().is_none_or(|p| !p.is_null()) || envp.last().is_none_or(|p| !p.is_null()) {
        return std::io::Error::from_raw_os_error(libc::EINVAL);
    }
    // SAFETY: fcntl on an fd number; execveat with NULL-terminated arrays (checked above) of C
    // strings the caller keeps alive, and an empty NUL-terminated path.
    unsafe {
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return std::io::Error::last_os_error();
        }
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    std::io::Error::last_os_error()
}

/// Entry point of `srediag __sandbox-exec`. Never returns.
pub fn main() -> ! {
    let spec = match read_spec() {
        Ok(s) => s,
        Err(e) => die("?", &e),
    };
    let p = spec.plugin.clone();
    for procs in &spec.cgroup_procs {
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .open(procs)
            .and_then(|mut f| f.write_all(b"0"))
        {
            die(&p, &format!("cannot join cgroup {}: {e}", procs.display()));
        }
    }
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if spec.new_net {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare/mount with valid arguments; this process is single-threaded.
    unsafe {
        if libc::unshare(flags) != 0 {
            die(&p, &format!("unshare: {}", std::io::Error::last_os_error()));
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            die(
                &p,
                &format!("make / private: {}", std::io::Error::last_os_error()),
            );
        }
    }
    // SAFETY: single-threaded process: the child may allocate.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die(&p, &format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid > 0 {
        supervise(pid, spec.uid, spec.gid, &p)
    }
    child(spec)
}

/// The helper after fork: drop every privilege (it only waits and forwards signals, to a child
/// with the same uid), wait for the plugin and exit with its status.
fn supervise(pid: libc::pid_t, uid: u32, gid: u32, plugin: &str) -> ! {
    CHILD.store(pid, std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = creds::drop_to(uid, gid) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        die(plugin, &format!("helper cannot drop privileges: {e}"));
    }
    // SAFETY: prctl with scalar arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    // SAFETY: installing async-signal-safe handlers; closing fds this process no longer needs
    // (the control socket must only stay open in the plugin, so its death closes it).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = forward as *const () as usize;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::close(srediag_plugin_sdk::control::CONTROL_FD);
        libc::close(PROGRAM_FD);
        libc::close(srediag_plugin_sdk::control::TO_PLUGIN_FD);
        libc::close(srediag_plugin_sdk::control::FROM_PLUGIN_FD);
        libc::close(0);
        libc::close(1);
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(SANDBOX_FAILED) }
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}

/// The plugin side: pid 1 of the new pid namespace.
fn child(spec: SandboxSpec) -> ! {
    let p = spec.plugin.clone();
    // SAFETY: mounting procfs over /proc in our private mount namespace; sethostname in our UTS ns.
    unsafe {
        let r = libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        );
        if r != 0 {
            die(
                &p,
                &format!("mount /proc: {}", std::io::Error::last_os_error()),
            );
        }
        let h = spec.hostname.as_bytes();
        if libc::sethostname(h.as_ptr().cast(), h.len()) != 0 {
            die(
                &p,
                &format!("sethostname: {}", std::io::Error::last_os_error()),
            );
        }
    }
    let action: seccomp::Action =
        match serde_json::from_value(serde_json::Value::String(spec.seccomp_action.clone())) {
            Ok(a) => a,
            Err(_) => die(
                &p,
                &format!("unknown seccomp action {:?}", spec.seccomp_action),
            ),
        };
    let filter = match seccomp::CompiledFilter::from_bytes(
        &spec.seccomp_profile,
        action,
        spec.landlock.network,
        &spec.seccomp_filter,
    ) {
        Ok(f) => f,
        Err(e) => die(&p, &format!("seccomp: {e}")),
    };
    let ruleset = match landlock::Ruleset::build(&spec.landlock) {
        Ok(r) => r,
        Err(e) => die(&p, &e.to_string()),
    };
    if let landlock::Enforcement::Degraded(why) = &ruleset.enforcement {
        let _ = writeln!(
            std::io::stderr(),
            "srediag sandbox for plugin {p}: WARNING landlock degraded: {why}"
        );
    }
    if let Err(e) = std::env::set_current_dir(&spec.scratch_dir) {
        die(&p, &format!("chdir {}: {e}", spec.scratch_dir.display()));
    }
    let prog = cstr(spec.program.as_os_str().as_bytes());
    let mut argv: Vec<CString> = vec![prog];
    argv.extend(spec.args.iter().map(|a| cstr(a.as_bytes())));
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
        .collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let nofile = libc::rlimit {
        rlim_cur: spec.nofile,
        rlim_max: spec.nofile,
    };
    // SAFETY: setrlimit with a valid struct (lowering a limit needs no privilege).
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) } != 0 {
        die(
            &p,
            &format!(
                "setrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            ),
        );
    }
    if let Err(e) = creds::drop_to(spec.uid, spec.gid) {
        die(&p, &format!("drop privileges: {e}"));
    }
    // SAFETY: prctl with scalar arguments.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            die(&p, &format!("prctl: {}", std::io::Error::last_os_error()));
        }
    }
    if !ruleset.is_inert()
        && let Err(e) = ruleset.restrict_self()
    {
        die(&p, &e.to_string());
    }
    if let Err(e) = filter.install() {
        die(&p, &format!("seccomp install: {e}"));
    }
    let e = exec_fd(PROGRAM_FD, &argv_p, &envp_p);
    let _ = writeln!(
        std::io::stderr(),
        "srediag sandbox for plugin {p}: execveat(fd {PROGRAM_FD}, sealed copy of {}): {e}",
        spec.program.display()
    );
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(127) }
}
