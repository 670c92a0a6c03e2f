//! A hostile plugin for the sandbox tests (`tests/tests/plugin_sandbox.rs`).
//!
//! It speaks the SDK protocol like any plugin, then, in `init` (after the handshake, with the
//! configuration of the `welcome` message), tries to escape: each attempt prints one line on
//! stdout, which the agent copies into its log tagged with the plugin's name:
//!
//! ```text
//! HOSTILE {"attempt":"syscalls","target":"bpf","ok":false,"errno":1,"ret":-1}
//! ```
//!
//! Configuration (`plugins.<name>.config`):
//!
//! ```text
//! {"attempts": ["env", "syscalls", "files", "signals", "net", "ioctl", "ports"],
//!  "final": "none|i386|x32|denied|hang|forkbomb|threadbomb|membomb|cpuspin|fdbomb|diskfill|inodefill",
//!  "agent_pid": N, "host_pid": N, "port": N, "admin_socket": "/path",
//!  "connect_ports": [N, ...], "bind_ports": [N, ...]   (attempt `ports`: TCP to 127.0.0.1),
//!  "fill_mib": 256, "file_mib": 1, "seek_mib": 0
//!                                   (final `diskfill`: at most fill_mib MiB into the working
//!                                    directory, in files of file_mib MiB, 0 = one file, each
//!                                    written from offset seek_mib MiB on, sparse before it),
//!  "fill_files": 100000             (final `inodefill`: at most that many empty files),
//!  "trigger": "file in the scratch directory (optional): attempts and final wait for it; a JSON
//!              object in it is merged into this configuration",
//!  "pace_ms": 12, "delay_ms": 0, "final_in_init": false}
//! ```
//!
//! The final runs in a background thread, `delay_ms` after the attempts (so normally after the
//! plugin is `ready`), or inside `init` itself with `final_in_init` (before `ready`).
//!
//! Its first argument may name the plugin type it announces (`receiver`, `exporter`; default
//! `processor`): a receiver or exporter can be granted network ports.
//!
//! With the argument `--protocol-version N` it only sends a `hello` with protocol version `N`
//! (what a plugin built against an incompatible SDK would send), prints the agent's answer
//! (`{"attempt":"handshake",...}`) and exits 1.
//!
//! Lines are paced (`pace_ms`, default 12 ms) so the agent's per-stream output limit (100 lines
//! per second) never drops one. After the attempts it prints `{"attempt":"done",...}`, starts the
//! `final` in a background thread (after `trigger` appears, when set) and keeps answering
//! heartbeats until the final kills it.
//!
//! Every probe is harmless if it gets through: invalid or null arguments, a child created by a
//! probe that should have failed exits at once (the fork bomb's children only sleep, inside the
//! plugin's cgroup and pid namespace), nothing outside the process is written to unless the
//! sandbox already failed (and then the test fails too).

use serde_json::{Map, Value, json};
use srediag_plugin_sdk::wire::WIRE_SCHEMA_VERSION;
use srediag_plugin_sdk::{
    Context, PROTOCOL_VERSION, Plugin, PluginError, PluginInfo, PluginType, Registry,
};
use std::io::Write;
use std::time::{Duration, Instant};

/// Prints one `HOSTILE {...}` line (flushed) and waits `pace`.
#[derive(Clone, Copy)]
struct Reporter {
    pace: Duration,
}

impl Reporter {
    fn line(&self, mut fields: Map<String, Value>, attempt: &str, target: &str) {
        fields.insert("attempt".into(), json!(attempt));
        fields.insert("target".into(), json!(target));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "HOSTILE {}", Value::Object(fields));
        let _ = out.flush();
        drop(out);
        std::thread::sleep(self.pace);
    }

    /// An attempt with its outcome: `ret >= 0` is success, else `errno` says why it failed.
    fn outcome(&self, attempt: &str, target: &str, ret: i64, errno: i32, extra: Value) {
        let mut m = Map::new();
        m.insert("ok".into(), json!(ret >= 0));
        m.insert("errno".into(), json!(if ret >= 0 { 0 } else { errno }));
        m.insert("ret".into(), json!(ret));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        self.line(m, attempt, target);
    }

    fn info(&self, attempt: &str, target: &str, extra: Value) {
        let mut m = Map::new();
        m.insert("ok".into(), json!(true));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        self.line(m, attempt, target);
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw syscall with six arguments: (return value, errno). `forks`: the call creates a process
/// when it succeeds; the child exits at once.
fn raw(nr: libc::c_long, a: [u64; 6], forks: bool) -> (i64, i32) {
    // SAFETY: every call site passes scalars, null pointers or pointers to live buffers that the
    // kernel validates; a call that would create a process is handled below (the child exits at
    // once without touching anything).
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    let e = errno();
    if forks && r == 0 {
        // SAFETY: we are the child of an unexpected fork: leave without running any destructor.
        unsafe { libc::_exit(0) };
    }
    (r, e)
}

const NEG1: u64 = u64::MAX; // -1 as a 64-bit argument (fd, pid)

fn p(s: &'static std::ffi::CStr) -> u64 {
    s.as_ptr() as u64
}

/// The dangerous syscalls, with arguments that are harmless if the call gets through.
fn syscall_table() -> Vec<(&'static str, libc::c_long, [u64; 6], bool)> {
    use libc::*;
    let me = std::process::id() as u64;
    let sig = SIGCHLD as u64;
    vec![
        ("bpf", SYS_bpf, [0xffff, 0, 0, 0, 0, 0], false),
        (
            "perf_event_open",
            SYS_perf_event_open,
            [0, 0, NEG1, NEG1, 0, 0],
            false,
        ),
        (
            "io_uring_setup",
            SYS_io_uring_setup,
            [1, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "io_uring_enter",
            SYS_io_uring_enter,
            [NEG1, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "io_uring_register",
            SYS_io_uring_register,
            [NEG1, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "ptrace(PTRACE_PEEKUSER)",
            SYS_ptrace,
            [PTRACE_PEEKUSER as u64, 999_999, 0, 0, 0, 0],
            false,
        ),
        (
            "process_vm_readv",
            SYS_process_vm_readv,
            [999_999, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "process_vm_writev",
            SYS_process_vm_writev,
            [999_999, 0, 0, 0, 0, 0],
            false,
        ),
        ("kcmp", SYS_kcmp, [me, me, 0, 0, 0, 0], false),
        ("pidfd_getfd", SYS_pidfd_getfd, [NEG1, 0, 0, 0, 0, 0], false),
        (
            "process_madvise",
            SYS_process_madvise,
            [NEG1, 0, 0, 0, 0, 0],
            false,
        ),
        ("unshare(0)", SYS_unshare, [0, 0, 0, 0, 0, 0], false),
        (
            "unshare(CLONE_NEWUSER)",
            SYS_unshare,
            [CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "unshare(CLONE_NEWNS)",
            SYS_unshare,
            [CLONE_NEWNS as u64, 0, 0, 0, 0, 0],
            false,
        ),
        ("setns", SYS_setns, [NEG1, 0, 0, 0, 0, 0], false),
        ("mount", SYS_mount, [0, 0, 0, 0, 0, 0], false),
        (
            "umount2",
            SYS_umount2,
            [p(c"/srediag-hostile-none"), 0, 0, 0, 0, 0],
            false,
        ),
        ("pivot_root", SYS_pivot_root, [0, 0, 0, 0, 0, 0], false),
        ("chroot", SYS_chroot, [p(c"/"), 0, 0, 0, 0, 0], false),
        (
            "move_mount",
            SYS_move_mount,
            [NEG1, 0, NEG1, 0, 0, 0],
            false,
        ),
        ("open_tree", SYS_open_tree, [NEG1, 0, 0, 0, 0, 0], false),
        ("fsopen", SYS_fsopen, [0, 0, 0, 0, 0, 0], false),
        ("fsconfig", SYS_fsconfig, [NEG1, 0, 0, 0, 0, 0], false),
        ("fsmount", SYS_fsmount, [NEG1, 0, 0, 0, 0, 0], false),
        ("fspick", SYS_fspick, [NEG1, 0, 0, 0, 0, 0], false),
        (
            "mount_setattr",
            SYS_mount_setattr,
            [NEG1, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "open_by_handle_at",
            SYS_open_by_handle_at,
            [NEG1, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "name_to_handle_at",
            SYS_name_to_handle_at,
            [AT_FDCWD as u64, p(c"."), 0, 0, 0, 0],
            false,
        ),
        ("keyctl", SYS_keyctl, [0, (-3i64) as u64, 0, 0, 0, 0], false),
        ("add_key", SYS_add_key, [0, 0, 0, 0, 0, 0], false),
        ("request_key", SYS_request_key, [0, 0, 0, 0, 0, 0], false),
        ("userfaultfd", SYS_userfaultfd, [0, 0, 0, 0, 0, 0], false),
        ("init_module", SYS_init_module, [0, 0, 0, 0, 0, 0], false),
        (
            "finit_module",
            SYS_finit_module,
            [NEG1, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "delete_module",
            SYS_delete_module,
            [p(c"srediag_hostile_none"), 0, 0, 0, 0, 0],
            false,
        ),
        // x86_64 numbers of syscalls the libc crate no longer names (the kernel answers ENOSYS).
        ("create_module", 174, [0, 0, 0, 0, 0, 0], false),
        ("get_kernel_syms", 177, [0, 0, 0, 0, 0, 0], false),
        ("query_module", 178, [0, 0, 0, 0, 0, 0], false),
        ("kexec_load", SYS_kexec_load, [0, 0, 0, 0, 0, 0], false),
        (
            "kexec_file_load",
            SYS_kexec_file_load,
            [NEG1, NEG1, 0, 0, 0, 0],
            false,
        ),
        // Invalid magic: even a privileged caller gets EINVAL.
        ("reboot", SYS_reboot, [0, 0, 0, 0, 0, 0], false),
        ("swapon", SYS_swapon, [0, 0, 0, 0, 0, 0], false),
        ("swapoff", SYS_swapoff, [0, 0, 0, 0, 0, 0], false),
        ("acct", SYS_acct, [0, 0, 0, 0, 0, 0], false),
        ("settimeofday", SYS_settimeofday, [0, 0, 0, 0, 0, 0], false),
        (
            "clock_settime",
            SYS_clock_settime,
            [CLOCK_REALTIME as u64, 0, 0, 0, 0, 0],
            false,
        ),
        ("adjtimex", SYS_adjtimex, [0, 0, 0, 0, 0, 0], false),
        (
            "clock_adjtime",
            SYS_clock_adjtime,
            [CLOCK_REALTIME as u64, 0, 0, 0, 0, 0],
            false,
        ),
        ("syslog", SYS_syslog, [10, 0, 0, 0, 0, 0], false),
        ("quotactl", SYS_quotactl, [0, 0, 0, 0, 0, 0], false),
        ("quotactl_fd", SYS_quotactl_fd, [NEG1, 0, 0, 0, 0, 0], false),
        (
            "sethostname",
            SYS_sethostname,
            [p(c"x"), 1, 0, 0, 0, 0],
            false,
        ),
        (
            "setdomainname",
            SYS_setdomainname,
            [p(c"x"), 1, 0, 0, 0, 0],
            false,
        ),
        ("vhangup", SYS_vhangup, [0, 0, 0, 0, 0, 0], false),
        ("mbind", SYS_mbind, [0, 0, 0, 0, 0, 0], false),
        (
            "set_mempolicy",
            SYS_set_mempolicy,
            [0, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "get_mempolicy",
            SYS_get_mempolicy,
            [0, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "set_mempolicy_home_node",
            SYS_set_mempolicy_home_node,
            [0, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "migrate_pages",
            SYS_migrate_pages,
            [0, 0, 0, 0, 0, 0],
            false,
        ),
        ("move_pages", SYS_move_pages, [0, 0, 0, 0, 0, 0], false),
        ("iopl", SYS_iopl, [0, 0, 0, 0, 0, 0], false),
        ("ioperm", SYS_ioperm, [0, 0, 0, 0, 0, 0], false),
        ("modify_ldt", SYS_modify_ldt, [0, 0, 0, 0, 0, 0], false),
        (
            "fanotify_init",
            SYS_fanotify_init,
            [0, 0, 0, 0, 0, 0],
            false,
        ),
        ("uselib", SYS_uselib, [0, 0, 0, 0, 0, 0], false),
        ("ustat", SYS_ustat, [0, 0, 0, 0, 0, 0], false),
        ("sysfs", SYS_sysfs, [3, 0, 0, 0, 0, 0], false),
        ("_sysctl", SYS__sysctl, [0, 0, 0, 0, 0, 0], false),
        ("nfsservctl", SYS_nfsservctl, [0, 0, 0, 0, 0, 0], false),
        (
            "lookup_dcookie",
            SYS_lookup_dcookie,
            [0, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "personality(ADDR_NO_RANDOMIZE)",
            SYS_personality,
            [0x004_0000, 0, 0, 0, 0, 0],
            false,
        ),
        ("setuid(0)", SYS_setuid, [0, 0, 0, 0, 0, 0], false),
        ("setgid(0)", SYS_setgid, [0, 0, 0, 0, 0, 0], false),
        ("setreuid(0,0)", SYS_setreuid, [0, 0, 0, 0, 0, 0], false),
        ("setresuid(0,0,0)", SYS_setresuid, [0, 0, 0, 0, 0, 0], false),
        ("setresgid(0,0,0)", SYS_setresgid, [0, 0, 0, 0, 0, 0], false),
        ("setgroups", SYS_setgroups, [0, 0, 0, 0, 0, 0], false),
        ("capset", SYS_capset, [0, 0, 0, 0, 0, 0], false),
        (
            "prctl(PR_SET_PDEATHSIG,0)",
            SYS_prctl,
            [PR_SET_PDEATHSIG as u64, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "prctl(PR_SET_DUMPABLE,1)",
            SYS_prctl,
            [PR_SET_DUMPABLE as u64, 1, 0, 0, 0, 0],
            false,
        ),
        (
            "prctl(PR_CAP_AMBIENT_RAISE)",
            SYS_prctl,
            [
                PR_CAP_AMBIENT as u64,
                PR_CAP_AMBIENT_RAISE as u64,
                21,
                0,
                0,
                0,
            ],
            false,
        ),
        (
            "mknodat(char 1:3)",
            SYS_mknodat,
            [
                AT_FDCWD as u64,
                p(c"hostile-node"),
                (S_IFCHR | 0o600) as u64,
                0x103,
                0,
                0,
            ],
            false,
        ),
        (
            "sched_setscheduler(SCHED_FIFO)",
            SYS_sched_setscheduler,
            [0, SCHED_FIFO as u64, 0, 0, 0, 0],
            false,
        ),
        (
            "ioprio_set(RT)",
            SYS_ioprio_set,
            [1, 0, 1 << 13, 0, 0, 0],
            false,
        ),
        ("fork", SYS_fork, [0, 0, 0, 0, 0, 0], true),
        ("clone(SIGCHLD)", SYS_clone, [sig, 0, 0, 0, 0, 0], true),
        (
            "clone(CLONE_NEWUSER)",
            SYS_clone,
            [CLONE_NEWUSER as u64 | sig, 0, 0, 0, 0, 0],
            true,
        ),
        (
            "clone(CLONE_NEWNET)",
            SYS_clone,
            [CLONE_NEWNET as u64 | sig, 0, 0, 0, 0, 0],
            true,
        ),
        (
            "clone(CLONE_NEWPID)",
            SYS_clone,
            [CLONE_NEWPID as u64 | sig, 0, 0, 0, 0, 0],
            true,
        ),
        ("clone3", SYS_clone3, [0, 0, 0, 0, 0, 0], true),
        (
            "socket(AF_PACKET,SOCK_RAW)",
            SYS_socket,
            [AF_PACKET as u64, SOCK_RAW as u64, 0x0300, 0, 0, 0],
            false,
        ),
        (
            "socket(AF_INET,SOCK_RAW)",
            SYS_socket,
            [AF_INET as u64, SOCK_RAW as u64, IPPROTO_RAW as u64, 0, 0, 0],
            false,
        ),
        (
            "socket(AF_NETLINK)",
            SYS_socket,
            [AF_NETLINK as u64, SOCK_RAW as u64, 0, 0, 0, 0],
            false,
        ),
        (
            "socket(AF_INET,SOCK_STREAM)",
            SYS_socket,
            [AF_INET as u64, SOCK_STREAM as u64, 0, 0, 0, 0],
            false,
        ),
        (
            "memfd_create",
            SYS_memfd_create,
            [p(c"hostile"), 0, 0, 0, 0, 0],
            false,
        ),
        (
            "execveat",
            SYS_execveat,
            [NEG1, p(c""), 0, 0, AT_EMPTY_PATH as u64, 0],
            false,
        ),
        // The profiles allow no exec by path (only execveat of the sealed memfd on fd 5): EPERM
        // here, where an allowed execve would say ENOENT.
        (
            "execve",
            SYS_execve,
            [p(c"/nonexistent/srediag-hostile"), 0, 0, 0, 0, 0],
            false,
        ),
    ]
}

fn attempt_syscalls(r: &Reporter) {
    for (name, nr, args, forks) in syscall_table() {
        let (ret, e) = raw(nr, args, forks);
        if ret > 2 && (name.starts_with("socket") || name == "memfd_create") {
            // SAFETY: closing the fd the unexpected success returned.
            unsafe { libc::close(ret as libc::c_int) };
        }
        r.outcome("syscalls", name, ret, e, json!({"nr": nr}));
    }
}

fn attempt_env(r: &Reporter) {
    let vars: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    use rustix::process::{geteuid, getgid, getpid, getppid, getuid};
    let (uid, euid, gid, pid, ppid) = (
        getuid().as_raw(),
        geteuid().as_raw(),
        getgid().as_raw(),
        getpid().as_raw_nonzero().get(),
        getppid().map_or(0, |p| p.as_raw_nonzero().get()),
    );
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut host = [0u8; 65];
    // SAFETY: gethostname writes at most len bytes into the buffer.
    unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len() - 1) };
    let host = String::from_utf8_lossy(&host[..host.iter().position(|b| *b == 0).unwrap_or(0)])
        .into_owned();
    r.info(
        "env",
        "identity",
        json!({"env": vars, "uid": uid, "euid": euid, "gid": gid, "pid": pid, "ppid": ppid, "cwd": cwd, "hostname": host}),
    );
}

fn open_path(path: &str, flags: libc::c_int) -> (i64, i32) {
    let c = std::ffi::CString::new(path).unwrap_or_default();
    // SAFETY: a valid C string; the returned fd is closed by the caller.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    (i64::from(fd), errno())
}

fn try_read(r: &Reporter, target: &str) {
    let (fd, e) = open_path(target, libc::O_RDONLY);
    let mut bytes = 0i64;
    if fd >= 0 {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a live buffer from the fd opened above.
            let n = unsafe { libc::read(fd as libc::c_int, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            bytes += n as i64;
        }
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd as libc::c_int) };
    }
    r.outcome(
        "files",
        &format!("read {target}"),
        fd,
        e,
        json!({"bytes": bytes}),
    );
}

fn try_write(r: &Reporter, target: &str, create: bool) {
    let flags = libc::O_WRONLY
        | if create {
            libc::O_CREAT | libc::O_TRUNC
        } else {
            0
        };
    let (fd, e) = open_path(target, flags);
    let mut written = 0i64;
    if fd >= 0 {
        if create {
            // SAFETY: writing a static buffer to the fd opened above.
            written =
                unsafe { libc::write(fd as libc::c_int, b"hostile\n".as_ptr().cast(), 8) } as i64;
        }
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd as libc::c_int) };
    }
    r.outcome(
        "files",
        &format!("write {target}"),
        fd,
        e,
        json!({"written": written}),
    );
}

fn attempt_files(r: &Reporter, cfg: &Value) {
    let agent = cfg["agent_pid"].as_u64().unwrap_or(0);
    try_read(r, "/etc/shadow");
    try_read(r, &format!("/proc/{agent}/environ"));
    try_read(r, "/proc/1/environ");
    try_read(r, "/etc/hostname");
    try_read(r, "/root/.bash_history");
    // Listing a directory outside the allowlist.
    let (fd, e) = open_path("/", libc::O_RDONLY | libc::O_DIRECTORY);
    if fd >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd as libc::c_int) };
    }
    r.outcome("files", "readdir /", fd, e, json!({}));
    try_write(r, "/tmp/hostile", true);
    try_write(r, "/etc/hostile", true);
    try_write(r, "/run/srediag/hostile", true);
    try_write(r, "/run/srediag/plugins/hostile-escape", true);
    try_write(r, "/dev/shm/hostile", true);
    try_write(r, "/proc/sysrq-trigger", false);
    try_write(r, "/proc/self/oom_score_adj", false);
    // The plugin's own cgroup limits and the root cgroup (escaping it): from /proc/self/cgroup.
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        // v1 controllers under /sys/fs/cgroup/<controller>; the v2 line (empty controller list)
        // at /sys/fs/cgroup itself (cgroup v2 only) or /sys/fs/cgroup/unified (hybrid): an
        // attacker tries both, and every v2 limit file, not knowing which layout the host has.
        let (dirs, files): (&[&str], &[&str]) = match ctrl {
            "memory" => (&["/memory"], &["memory.limit_in_bytes"]),
            "pids" => (&["/pids"], &["pids.max"]),
            "cpu" => (&["/cpu"], &["cpu.cfs_quota_us"]),
            "" => (
                &["", "/unified"],
                &[
                    "cgroup.procs",
                    "memory.max",
                    "memory.high",
                    "pids.max",
                    "cpu.max",
                ],
            ),
            _ => continue,
        };
        for dir in dirs {
            for file in files {
                try_write(r, &format!("/sys/fs/cgroup{dir}{path}/{file}"), false);
            }
            try_write(r, &format!("/sys/fs/cgroup{dir}/cgroup.procs"), false);
        }
    }
    // The scratch directory (the working directory) is the one writable place.
    try_write(r, "hostile-scratch", true);
    try_read(r, "hostile-scratch");
}

fn attempt_signals(r: &Reporter, cfg: &Value) {
    let host = cfg["host_pid"].as_i64().unwrap_or(0) as libc::pid_t;
    let agent = cfg["agent_pid"].as_i64().unwrap_or(0) as libc::pid_t;
    for (target, pid, sig) in [
        ("kill(host_pid, 0)", host, 0),
        ("kill(host_pid, SIGTERM)", host, libc::SIGTERM),
        ("kill(agent_pid, 0)", agent, 0),
    ] {
        // SAFETY: kill with scalar arguments.
        let rc = unsafe { libc::kill(pid, sig) };
        r.outcome(
            "signals",
            target,
            i64::from(rc),
            errno(),
            json!({"pid": pid}),
        );
    }
    for (target, pid) in [
        ("ptrace(PTRACE_ATTACH, agent_pid)", agent),
        ("ptrace(PTRACE_ATTACH, host_pid)", host),
    ] {
        let (ret, e) = raw(
            libc::SYS_ptrace,
            [libc::PTRACE_ATTACH as u64, pid as u64, 0, 0, 0, 0],
            false,
        );
        r.outcome("signals", target, ret, e, json!({"pid": pid}));
    }
    let (ret, e) = raw(libc::SYS_pidfd_open, [host as u64, 0, 0, 0, 0, 0], false);
    if ret >= 0 {
        // SAFETY: closing the pidfd the unexpected success returned.
        unsafe { libc::close(ret as libc::c_int) };
    }
    r.outcome(
        "signals",
        "pidfd_open(host_pid)",
        ret,
        e,
        json!({"pid": host}),
    );
}

fn attempt_net(r: &Reporter, cfg: &Value) {
    let port = cfg["port"].as_u64().unwrap_or(1) as u16;
    for (target, family) in [
        ("tcp4 127.0.0.1", libc::AF_INET),
        ("tcp6 ::1", libc::AF_INET6),
    ] {
        // SAFETY: socket with scalar arguments.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        let e = errno();
        if fd < 0 {
            r.outcome(
                "net",
                &format!("socket {target}"),
                i64::from(fd),
                e,
                json!({"port": port}),
            );
            continue;
        }
        // SAFETY: connect with a sockaddr built on the stack for the call; fd closed after.
        let rc = unsafe {
            if family == libc::AF_INET {
                let mut a: libc::sockaddr_in = std::mem::zeroed();
                a.sin_family = libc::AF_INET as libc::sa_family_t;
                a.sin_port = port.to_be();
                a.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
                libc::connect(
                    fd,
                    (&a as *const libc::sockaddr_in).cast(),
                    std::mem::size_of_val(&a) as libc::socklen_t,
                )
            } else {
                let mut a: libc::sockaddr_in6 = std::mem::zeroed();
                a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                a.sin6_port = port.to_be();
                a.sin6_addr.s6_addr[15] = 1;
                libc::connect(
                    fd,
                    (&a as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of_val(&a) as libc::socklen_t,
                )
            }
        };
        let e = errno();
        // SAFETY: closing the socket created above.
        unsafe { libc::close(fd) };
        r.outcome(
            "net",
            &format!("connect {target}"),
            i64::from(rc),
            e,
            json!({"port": port, "socket": "created"}),
        );
    }
    if let Some(path) = cfg["admin_socket"].as_str() {
        // SAFETY: socket with scalar arguments.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        let e = errno();
        if fd < 0 {
            r.outcome(
                "net",
                "socket unix (admin socket)",
                i64::from(fd),
                e,
                json!({}),
            );
        } else {
            // SAFETY: sockaddr_un zeroed and filled within bounds; fd closed after.
            let rc = unsafe {
                let mut a: libc::sockaddr_un = std::mem::zeroed();
                a.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (i, b) in path.bytes().take(a.sun_path.len() - 1).enumerate() {
                    a.sun_path[i] = b as libc::c_char;
                }
                let rc = libc::connect(
                    fd,
                    (&a as *const libc::sockaddr_un).cast(),
                    std::mem::size_of_val(&a) as libc::socklen_t,
                );
                libc::close(fd);
                rc
            };
            r.outcome(
                "net",
                "connect unix (admin socket)",
                i64::from(rc),
                errno(),
                json!({"path": path}),
            );
        }
    }
}

fn attempt_ioctl(r: &Reporter) {
    let c: u8 = b'x';
    let tiocsti = libc::TIOCSTI;
    for (target, fd, req) in [
        ("ioctl(1, TIOCSTI)", 1u64, tiocsti),
        ("ioctl(1, TIOCSTI|1<<32)", 1, tiocsti | (1 << 32)),
        ("ioctl(0, TIOCSTI)", 0, tiocsti),
        (
            "ioctl(2, TIOCSTI|0xffffffff00000000)",
            2,
            tiocsti | 0xffff_ffff_0000_0000,
        ),
        ("ioctl(1, TIOCSCTTY)", 1, libc::TIOCSCTTY),
        ("ioctl(1, TIOCLINUX)", 1, libc::TIOCLINUX),
        ("ioctl(3, SIOCGIFCONF)", 3, libc::SIOCGIFCONF),
    ] {
        let (ret, e) = raw(
            libc::SYS_ioctl,
            [fd, req, (&c as *const u8) as u64, 0, 0, 0],
            false,
        );
        r.outcome("ioctl", target, ret, e, json!({"request": req}));
    }
    let mut n: libc::c_int = 0;
    let (ret, e) = raw(
        libc::SYS_ioctl,
        [
            1,
            libc::FIONREAD,
            (&mut n as *mut libc::c_int) as u64,
            0,
            0,
            0,
        ],
        false,
    );
    r.outcome(
        "ioctl",
        "ioctl(1, FIONREAD)",
        ret,
        e,
        json!({"allowed_by_profile": true}),
    );
    let (fd, e) = open_path("/dev/tty", libc::O_RDWR);
    if fd >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd as libc::c_int) };
    }
    r.outcome("ioctl", "open /dev/tty", fd, e, json!({}));
}

/// `attempts: ports`: a TCP connect to 127.0.0.1 on each of `connect_ports` and a bind + listen on
/// 127.0.0.1 on each of `bind_ports` (what a network grant allows or not).
fn attempt_ports(r: &Reporter, cfg: &Value) {
    let ports = |key: &str| -> Vec<u16> {
        cfg[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as u16)
                    .collect()
            })
            .unwrap_or_default()
    };
    let addr = |port: u16| {
        // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = port.to_be();
        a.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        a
    };
    for (what, list) in [
        ("connect", ports("connect_ports")),
        ("bind", ports("bind_ports")),
    ] {
        for port in list {
            // SAFETY: socket with scalar arguments.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                r.outcome(
                    "ports",
                    &format!("socket for {what} {port}"),
                    -1,
                    errno(),
                    json!({"port": port}),
                );
                continue;
            }
            let a = addr(port);
            let len = std::mem::size_of_val(&a) as libc::socklen_t;
            let sa = (&a as *const libc::sockaddr_in).cast();
            // SAFETY: connect/bind/listen on the socket created above with a sockaddr on the
            // stack; the socket is closed after.
            let (rc, e) = unsafe {
                let rc = if what == "connect" {
                    libc::connect(fd, sa, len)
                } else {
                    let rc = libc::bind(fd, sa, len);
                    if rc == 0 { libc::listen(fd, 1) } else { rc }
                };
                let e = errno();
                libc::close(fd);
                (rc, e)
            };
            r.outcome(
                "ports",
                &format!("{what} {port}"),
                i64::from(rc),
                e,
                json!({"port": port}),
            );
        }
    }
}

fn rlimit_fsize() -> [u64; 2] {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) };
    [lim.rlim_cur, lim.rlim_max]
}

/// `final: diskfill`: writes up to `fill_mib` MiB into the working directory (the scratch
/// directory), in files of `file_mib` MiB (0: one file), 64 KiB per write from offset `seek_mib`
/// MiB of each file on, until a write fails. The files stay (their pages stay charged) while the
/// plugin keeps running.
fn diskfill(r: &Reporter, cfg: &Value) {
    let cap = cfg["fill_mib"].as_u64().unwrap_or(256) << 20;
    let per_file = cfg["file_mib"].as_u64().unwrap_or(1) << 20;
    let seek = (cfg["seek_mib"].as_u64().unwrap_or(0) << 20) as libc::off_t;
    let chunk = vec![0x5au8; 64 << 10];
    let (mut written, mut files, mut err) = (0u64, 0u64, 0i32);
    let mut fd = -1;
    let mut in_file = 0u64;
    while written < cap {
        if fd < 0 || (per_file > 0 && in_file >= per_file) {
            if fd >= 0 {
                // SAFETY: closing the file opened below.
                unsafe { libc::close(fd) };
            }
            let name = std::ffi::CString::new(format!("fill-{files}")).unwrap_or_default();
            // SAFETY: a valid C string; the fd is closed above or at the end.
            fd = unsafe {
                libc::open(
                    name.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    0o600,
                )
            };
            if fd < 0 {
                err = errno();
                break;
            }
            // SAFETY: lseek on the fd opened above.
            if seek > 0 && unsafe { libc::lseek(fd, seek, libc::SEEK_SET) } != seek {
                err = errno();
                break;
            }
            files += 1;
            in_file = 0;
        }
        // SAFETY: writing a live buffer to the fd opened above.
        let n = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        if n <= 0 {
            err = if n < 0 { errno() } else { libc::ENOSPC };
            break;
        }
        written += n as u64;
        in_file += n as u64;
    }
    if fd >= 0 {
        // SAFETY: closing the last file.
        unsafe { libc::close(fd) };
    }
    r.info(
        "final",
        "diskfill",
        json!({"written": written, "files": files, "errno": err, "rlimit_fsize": rlimit_fsize()}),
    );
}

/// `final: inodefill`: creates up to `fill_files` empty files in the working directory, until a
/// creation fails (one directory: the processor profile allows no `mkdir`).
fn inodefill(r: &Reporter, cfg: &Value) {
    let cap = cfg["fill_files"].as_u64().unwrap_or(100_000);
    let (mut created, mut err) = (0u64, 0i32);
    let t0 = Instant::now();
    while created < cap {
        let f = std::ffi::CString::new(format!("f{created}")).unwrap_or_default();
        // SAFETY: a valid C string; the fd is closed at once.
        let fd = unsafe {
            libc::open(
                f.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            err = errno();
            break;
        }
        // SAFETY: closing the file created above.
        unsafe { libc::close(fd) };
        created += 1;
    }
    r.info(
        "final",
        "inodefill",
        json!({"created": created, "errno": err, "ms": t0.elapsed().as_millis() as u64}),
    );
}

/// `int 0x80` (the i386 ABI) with eax = 20 (i386 `getpid`).
#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i64 {
    let mut ret: i64 = 20;
    // SAFETY: the i386 getpid syscall takes no arguments and only writes eax; the registers the
    // compat entry may clobber are declared.
    unsafe {
        core::arch::asm!(
            "int 0x80",
            inout("rax") ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
fn i386_getpid() -> i64 {
    -i64::from(libc::ENOSYS)
}

fn forkbomb(r: &Reporter, cfg: &Value) {
    let rounds = cfg["fork_rounds"].as_u64().unwrap_or(1000);
    let (mut ok, mut failed, mut last) = (0u64, 0u64, 0i32);
    for _ in 0..rounds {
        // SAFETY: fork; the child (if the sandbox lets one through) only sleeps, with raw calls.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            loop {
                // SAFETY: pause in the child of an unexpected fork, until the cgroup is killed.
                unsafe { libc::pause() };
            }
        }
        if pid > 0 {
            ok += 1;
        } else {
            failed += 1;
            last = errno();
        }
    }
    r.info(
        "final",
        "forkbomb",
        json!({"forks_ok": ok, "forks_failed": failed, "errno": last}),
    );
    threadbomb(r, cfg);
}

fn threadbomb(r: &Reporter, cfg: &Value) {
    let max = cfg["thread_max"].as_u64().unwrap_or(100_000);
    let mut n = 0u64;
    let mut err = 0;
    while n < max {
        let b = std::thread::Builder::new().stack_size(64 * 1024);
        match b.spawn(|| {
            loop {
                std::thread::park();
            }
        }) {
            Ok(_) => n += 1,
            Err(e) => {
                err = e.raw_os_error().unwrap_or(-1);
                break;
            }
        }
    }
    r.info(
        "final",
        "threadbomb",
        json!({"threads_ok": n, "errno": err}),
    );
}

fn membomb(r: &Reporter) {
    let mut v: Vec<Vec<u8>> = Vec::new();
    loop {
        v.push(vec![0xa5u8; 8 << 20]);
        if v.len().is_multiple_of(8) {
            r.info("final", "membomb", json!({"mib": v.len() * 8}));
        }
    }
}

fn cpuspin(r: &Reporter, cfg: &Value) {
    let threads = cfg["spin_threads"].as_u64().unwrap_or(4);
    for _ in 0..threads {
        std::thread::spawn(|| {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
    }
    r.info("final", "cpuspin", json!({"threads": threads}));
}

fn fdbomb(r: &Reporter) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let mut n = 0u64;
    let err = loop {
        // SAFETY: opening /dev/null (allowed read-write by the sandbox); the fds are kept on purpose.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            break errno();
        }
        n += 1;
        if n > 10_000_000 {
            break 0;
        }
    };
    r.info(
        "final",
        "fdbomb",
        json!({"opened": n, "errno": err, "rlimit_nofile": [lim.rlim_cur, lim.rlim_max]}),
    );
}

/// Stops answering the agent while staying alive: the control socket stays open (moved to a high
/// fd) and the SDK's loop is left polling a socket nobody writes to.
fn hang(r: &Reporter) {
    let mut sv = [0; 2];
    // SAFETY: fcntl/socketpair/dup2 on fds this process owns; `sv` has room for two fds.
    let ok = unsafe {
        let keep = libc::fcntl(
            srediag_plugin_sdk::control::CONTROL_FD,
            libc::F_DUPFD_CLOEXEC,
            100,
        );
        keep >= 0
            && libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                sv.as_mut_ptr(),
            ) == 0
            && libc::dup2(sv[0], srediag_plugin_sdk::control::CONTROL_FD) >= 0
    };
    r.outcome("final", "hang", if ok { 0 } else { -1 }, errno(), json!({}));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn run_final(r: &Reporter, cfg: &Value, what: &str) {
    match what {
        "i386" => {
            let ret = i386_getpid();
            r.outcome(
                "final",
                "i386",
                ret,
                if ret < 0 { -ret as i32 } else { 0 },
                json!({"survived": true}),
            );
        }
        "x32" => {
            let (ret, e) = raw(39 | 0x4000_0000, [0; 6], false);
            r.outcome("final", "x32", ret, e, json!({"survived": true}));
        }
        "denied" => {
            if cfg["default_sigsys"] == true {
                // Like a plugin without the SDK's SIGSYS handler: a trap then kills.
                // SAFETY: resetting one signal's disposition with a zeroed (SIG_DFL) sigaction.
                unsafe {
                    let sa: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
                }
            }
            let (ret, e) = raw(libc::SYS_bpf, [0xffff, 0, 0, 0, 0, 0], false);
            r.outcome("final", "denied", ret, e, json!({"survived": true}));
        }
        "hang" => hang(r),
        "forkbomb" => forkbomb(r, cfg),
        "threadbomb" => threadbomb(r, cfg),
        "membomb" => membomb(r),
        "cpuspin" => cpuspin(r, cfg),
        "fdbomb" => fdbomb(r),
        "ringwriter" => ringwriter(r, cfg),
        "diskfill" => diskfill(r, cfg),
        "inodefill" => inodefill(r, cfg),
        _ => {}
    }
}

fn run_attempts(r: &Reporter, cfg: &Value) {
    let attempts: Vec<String> = cfg["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for a in &attempts {
        match a.as_str() {
            "env" => attempt_env(r),
            "syscalls" => attempt_syscalls(r),
            "files" => attempt_files(r, cfg),
            "signals" => attempt_signals(r, cfg),
            "net" => attempt_net(r, cfg),
            "ioctl" => attempt_ioctl(r),
            "ports" => attempt_ports(r, cfg),
            other => r.info("unknown", other, json!({"ok": false})),
        }
    }
    r.info("done", "attempts", json!({"attempts": attempts}));
}

/// Waits for the trigger file in the working directory (the scratch directory); a JSON object in
/// it is merged into the configuration (the test passes values it only knows once the agent runs,
/// such as the agent's pid).
fn wait_trigger(name: &str, cfg: &mut Value) {
    loop {
        if let Ok(text) = std::fs::read_to_string(name) {
            if let (Ok(Value::Object(extra)), Value::Object(c)) =
                (serde_json::from_str::<Value>(&text), &mut *cfg)
            {
                c.extend(extra);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Hostile {
    stall: Duration,
    kind: PluginType,
}

/// Passes records through; `stall_ms` in the configuration makes its first batch take that
/// long (a plugin that falls behind).
struct Passthrough {
    stall: Duration,
}

impl srediag_plugin_sdk::Processor for Passthrough {
    fn process(
        &mut self,
        records: srediag_plugin_sdk::data::Records,
    ) -> Result<srediag_plugin_sdk::data::Records, PluginError> {
        std::thread::sleep(std::mem::take(&mut self.stall));
        Ok(records)
    }
}

/// `final: ringwriter`: maps the plugin→agent ring (fd 6) a second time and, for `ring_ms`
/// milliseconds (default 3000), writes random producer indices, random frame headers and random
/// bytes into it while the agent reads — what a compromised plugin could do.
fn ringwriter(r: &Reporter, cfg: &Value) {
    use srediag_plugin_sdk::control::FROM_PLUGIN_FD;
    // SAFETY: zeroed stat is a valid out-parameter; fstat of the inherited ring fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(FROM_PLUGIN_FD, &mut st) } != 0 || st.st_size < 8192 {
        r.info(
            "ringwriter",
            "fstat",
            json!({"ok": false, "errno": errno()}),
        );
        return;
    }
    let len = st.st_size as usize;
    // SAFETY: a fresh shared mapping of the ring memfd; only raw volatile writes follow.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            FROM_PLUGIN_FD,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        r.info("ringwriter", "mmap", json!({"ok": false, "errno": errno()}));
        return;
    }
    let base = base.cast::<u8>();
    let until = Instant::now() + Duration::from_millis(cfg["ring_ms"].as_u64().unwrap_or(3000));
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ std::process::id() as u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut writes = 0u64;
    const TAIL: usize = 64; // layout: producer line at 64, `tail` first
    const DATA: usize = 4096;
    while Instant::now() < until {
        let v = next();
        // SAFETY: every offset is inside the mapping (`TAIL + 8 <= DATA < len`, data writes are
        // reduced modulo the data area); volatile because the agent reads concurrently.
        unsafe {
            match v % 4 {
                0 => std::ptr::write_volatile(base.add(TAIL).cast::<u64>(), next()),
                1 => {
                    let off = DATA + (next() as usize % (len - DATA - 8)) / 8 * 8;
                    std::ptr::write_volatile(base.add(off).cast::<u64>(), next());
                }
                2 => {
                    // A plausible frame header (small length, a known tag) over random bytes,
                    // published by moving `tail` just past it.
                    let off = DATA;
                    std::ptr::write_volatile(
                        base.add(off).cast::<u32>(),
                        (next() % 256) as u32 + 1,
                    );
                    std::ptr::write_volatile(base.add(off + 4).cast::<u32>(), 2);
                    let cur = std::ptr::read_volatile(base.add(TAIL).cast::<u64>());
                    std::ptr::write_volatile(
                        base.add(TAIL).cast::<u64>(),
                        cur.wrapping_add(next() % 512),
                    );
                }
                _ => {
                    for i in 0..64 {
                        let off = DATA + ((next() as usize + i) % (len - DATA));
                        std::ptr::write_volatile(base.add(off), next() as u8);
                    }
                }
            }
        }
        writes += 1;
        if writes.is_multiple_of(64) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    r.info("ringwriter", "done", json!({"writes": writes}));
}

impl Plugin for Hostile {
    fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
        let mut cfg = ctx.config.clone();
        self.stall = Duration::from_millis(cfg["stall_ms"].as_u64().unwrap_or(0));
        let r = Reporter {
            pace: Duration::from_millis(cfg["pace_ms"].as_u64().unwrap_or(12)),
        };
        let trigger = cfg["trigger"].as_str().map(str::to_string);
        if trigger.is_none() {
            run_attempts(&r, &cfg);
        }
        let what = cfg["final"].as_str().unwrap_or("none").to_string();
        if cfg["final_in_init"] == true {
            // Before `ready`: the agent is still in the handshake when this runs.
            run_final(&r, &cfg, &what);
            return Ok(());
        }
        if trigger.is_none() && what == "none" {
            return Ok(());
        }
        let delay = Duration::from_millis(cfg["delay_ms"].as_u64().unwrap_or(0));
        let spawned = std::thread::Builder::new()
            .name("hostile".into())
            .spawn(move || {
                if let Some(t) = trigger {
                    wait_trigger(&t, &mut cfg);
                    run_attempts(&r, &cfg);
                }
                std::thread::sleep(delay);
                run_final(&r, &cfg, &what);
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => Err(PluginError(format!("cannot start the hostile thread: {e}"))),
        }
    }

    fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
        if self.kind != PluginType::Processor {
            r.component(&format!("{}/hostile", self.kind.as_str()));
            return Ok(());
        }
        // A well-behaved processor on the data path (pass-through); `final: ringwriter` scribbles
        // over its ring at the same time.
        r.processor("hostile", Passthrough { stall: self.stall })
    }

    fn capabilities(&self) -> Vec<String> {
        vec![format!("{}/hostile", self.kind.as_str())]
    }

    fn shutdown(&mut self, _ctx: &Context) -> Result<(), PluginError> {
        Ok(())
    }
}

/// `--protocol-version N` / `--schema-version N`: a handshake with another protocol or wire
/// schema version (what a plugin built against an incompatible SDK sends). Prints the agent's
/// answer and exits 1.
fn skewed_handshake(version: u32, schema_version: u32) -> ! {
    use srediag_plugin_sdk::control::{self, AgentMsg, CONTROL_FD, MAX_MESSAGE, PluginMsg};
    let hello = control::encode(&PluginMsg::Hello {
        protocol_version: version,
        name: "srediag-hostile-plugin".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        plugin_type: PluginType::Processor,
        capabilities: vec![],
        sdk_version: format!("skewed-{version}"),
        schema_version,
    });
    // SAFETY: sending a live buffer on the inherited control socket.
    let n = unsafe {
        libc::send(
            CONTROL_FD,
            hello.as_ptr().cast(),
            hello.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    let r = Reporter {
        pace: Duration::ZERO,
    };
    if n < 0 {
        r.outcome("handshake", "hello", -1, errno(), json!({}));
        std::process::exit(1);
    }
    let mut pfd = libc::pollfd {
        fd: CONTROL_FD,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 5000) };
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    // SAFETY: receiving into a live buffer of the given length.
    let n = unsafe {
        libc::recv(
            CONTROL_FD,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    let reply = if n > 0 {
        match control::decode::<AgentMsg>(&buf[..n as usize]) {
            Ok(AgentMsg::Reject { code, message }) => {
                json!({"type": "reject", "code": code, "message": message})
            }
            Ok(other) => json!({"type": format!("{other:?}")}),
            Err(e) => json!({"type": "undecodable", "error": e.to_string()}),
        }
    } else {
        json!({"type": "none", "errno": errno()})
    };
    r.info(
        "handshake",
        "reply",
        json!({"sent_version": version, "reply": reply}),
    );
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = || args.get(2).and_then(|v| v.parse().ok()).unwrap_or(u32::MAX);
    match args.get(1).map(String::as_str) {
        Some("--protocol-version") => skewed_handshake(n(), WIRE_SCHEMA_VERSION),
        Some("--schema-version") => skewed_handshake(PROTOCOL_VERSION, n()),
        _ => {}
    }
    let kind = match args.get(1).map(String::as_str) {
        Some("receiver") => PluginType::Receiver,
        Some("exporter") => PluginType::Exporter,
        _ => PluginType::Processor,
    };
    srediag_plugin_sdk::run(
        PluginInfo::new("srediag-hostile-plugin", env!("CARGO_PKG_VERSION"), kind),
        Hostile {
            stall: Duration::ZERO,
            kind,
        },
    )
}
