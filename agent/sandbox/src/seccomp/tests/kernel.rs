//! Filters installed in forked children (no root needed: `no_new_privs` is enough).

use super::super::policy::ioctl_request;
use super::super::{Action, CompiledFilter, Options, SeccompError, compile};
use super::child::{self, Outcome, raw};
use super::probes::{check, denied_probes, nr};
use super::{profiles_with_widest_options, to_bytes};

pub(super) const EPERM: i64 = -(libc::EPERM as i64);
pub(super) const ENOSYS: i64 = -(libc::ENOSYS as i64);
const ENOTTY: i64 = -(libc::ENOTTY as i64);
pub(super) const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;

#[test]
fn denied_syscalls_return_eperm_in_every_profile() {
    let probes = denied_probes();
    assert!(probes.len() >= 80, "{}", probes.len());
    for (name, opts) in profiles_with_widest_options() {
        let filter = compile(name, Action::Errno, &opts).unwrap();
        let pipe = child::pipe();
        let o = child::run(|out| {
            child::prepare(true);
            out.put(child::install(&filter));
            // Allowed calls still work: getpid, and a write to a pipe.
            out.put(raw(libc::SYS_getpid, [0; 6]));
            out.put(raw(
                libc::SYS_write,
                [pipe[1] as u64, c"x".as_ptr() as u64, 1, 0, 0, 0],
            ));
            for p in &probes {
                out.put(raw(p.nr, p.args));
            }
            0
        });
        child::close(&pipe);
        let mut expected = vec![
            ("install".into(), 0),
            ("getpid".into(), o.pid.into()),
            ("write".into(), 1),
        ];
        expected.extend(probes.iter().map(|p| (p.what.clone(), p.expect)));
        check(&o, &expected, name);
    }
    println!(
        "{} denied calls checked in each of {:?}",
        probes.len(),
        super::profile_names()
    );
}

#[test]
fn denied_syscalls_kill_in_kill_mode() {
    // Unambiguous (a kernel EPERM could hide a broken filter): each call must kill the child.
    let probes = denied_probes();
    for (name, opts) in profiles_with_widest_options() {
        let filter = compile(name, Action::Kill, &opts).unwrap();
        for p in &probes {
            let o = child::run(|out| {
                child::prepare(true);
                out.put(child::install(&filter));
                out.put(raw(p.nr, p.args));
                0
            });
            if p.expect == ENOSYS {
                check(&o, &[("install".into(), 0), (p.what.clone(), ENOSYS)], name);
            } else {
                assert!(o.killed_by_sigsys(), "{name}: {} not killed: {o:?}", p.what);
                assert_eq!(o.values, [0], "{name}: {}", p.what);
            }
        }
    }
}

/// Runs `calls` under `filter` as root (no_new_privs only) and returns the results.
fn results_as_root(filter: &CompiledFilter, calls: &[(libc::c_long, [u64; 6])]) -> Outcome {
    child::run(|out| {
        child::prepare(false);
        out.put(child::install(filter));
        for (nr, args) in calls {
            out.put(raw(*nr, *args));
        }
        0
    })
}

#[test]
fn ioctl_requests_are_compared_on_the_low_32_bits() {
    let pipe = child::pipe();
    let fd = pipe[0] as u64;
    let mut n: libc::c_int = -1;
    let np = (&raw mut n) as u64;
    let ioctl = |req: u64, arg: u64| (libc::SYS_ioctl, [fd, req, arg, 0, 0, 0]);
    let tiocsti = ioctl_request(libc::TIOCSTI);
    let calls = [
        ioctl(tiocsti, c"x".as_ptr() as u64),
        ioctl(tiocsti | 1 << 32, c"x".as_ptr() as u64),
        ioctl(tiocsti | 0xffff_ffff_0000_0000, c"x".as_ptr() as u64),
        ioctl(ioctl_request(libc::TIOCLINUX), 0),
        ioctl(ioctl_request(libc::FIONREAD), np),
        // The kernel reads the request as unsigned int: this is FIONREAD, and allowed as such.
        ioctl(ioctl_request(libc::FIONREAD) | 1 << 32, np),
        // Allowed, the kernel answers ENOTTY on a pipe.
        ioctl(ioctl_request(libc::TCGETS), 0),
    ];
    for action in [Action::Errno, Action::Log] {
        let filter = compile("processor", action, &Options::default()).unwrap();
        let o = results_as_root(&filter, &calls);
        let expected = [
            ("install", 0),
            ("TIOCSTI", EPERM),
            ("TIOCSTI | 1<<32", EPERM),
            ("TIOCSTI | 0xffffffff<<32", EPERM),
            ("TIOCLINUX", EPERM),
            ("FIONREAD", 0),
            ("FIONREAD | 1<<32", 0),
            ("TCGETS on a pipe", ENOTTY),
        ]
        .map(|(w, v)| (w.to_string(), v));
        check(&o, &expected, &format!("{action:?}"));
    }
    child::close(&pipe);
}

/// i386 `getpid` (20) through `int 0x80`.
#[cfg(target_arch = "x86_64")]
fn int80_getpid() -> i64 {
    let ret: i64;
    // SAFETY: a compat syscall without arguments; the kernel clobbers only rax and r8-r11 on the
    // int 0x80 path, declared here.
    unsafe {
        core::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_abis_are_killed() {
    // Without a filter, for the record: int 0x80 works when IA32 emulation is on; x32 getpid is
    // ENOSYS unless the kernel has CONFIG_X86_X32_ABI.
    let control = child::run(|out| {
        child::prepare(false);
        out.put(int80_getpid());
        out.put(raw(39 | X32_SYSCALL_BIT, [0; 6]));
        0
    });
    println!(
        "without filter: int 0x80 getpid -> {} (pid {}), x32 getpid -> {}",
        control.values[0], control.pid, control.values[1]
    );
    for action in [Action::Errno, Action::Trap, Action::Kill, Action::Log] {
        let filter = compile("processor", action, &Options::default()).unwrap();
        let i386 = child::run(|out| {
            child::prepare(false);
            out.put(child::install(&filter));
            out.put(int80_getpid());
            0
        });
        assert!(
            i386.killed_by_sigsys(),
            "{action:?}: int 0x80 survived: {i386:?}"
        );
        assert_eq!(i386.values, [0]);
        let x32 = child::run(|out| {
            child::prepare(false);
            out.put(child::install(&filter));
            out.put(raw(39 | X32_SYSCALL_BIT, [0; 6]));
            0
        });
        assert!(
            x32.killed_by_sigsys(),
            "{action:?}: x32 getpid survived: {x32:?}"
        );
        assert_eq!(x32.values, [0]);
    }
}

#[test]
fn actions_errno_trap_kill_log() {
    // getcpu is allowed by Docker but by no srediag profile: a harmless denied call.
    let getcpu = nr("getcpu");
    assert!(
        !super::super::syscalls_allowed("processor", &Options::default())
            .unwrap()
            .contains("getcpu")
    );
    let run = |action| {
        let filter = compile("processor", action, &Options::default()).unwrap();
        child::run(|out| {
            child::prepare(false);
            out.put(child::install(&filter));
            out.put(raw(getcpu, [0; 6]));
            0
        })
    };
    check(
        &run(Action::Errno),
        &[("install".into(), 0), ("getcpu".into(), EPERM)],
        "errno",
    );
    check(
        &run(Action::Log),
        &[("install".into(), 0), ("getcpu".into(), 0)],
        "log",
    );
    for action in [Action::Kill, Action::Trap] {
        let o = run(action);
        assert!(o.killed_by_sigsys(), "{action:?}: {o:?}");
        assert_eq!(o.values, [0], "{action:?}");
    }
}

#[test]
fn log_mode_still_enforces_the_hard_deny_list_and_guards() {
    let filter = compile("receiver", Action::Log, &Options::with_network(true)).unwrap();
    let calls = [
        // As root without the filter these would succeed (0, a new fd) or fail differently.
        (nr("unshare"), [0; 6]),
        (nr("io_uring_setup"), [0; 6]),
        (nr("bpf"), [0; 6]),
        (nr("clone3"), [0; 6]),
        (
            nr("clone"),
            [CLONE_THREAD | libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
        ),
        (
            nr("socket"),
            [
                libc::AF_PACKET as u64,
                libc::SOCK_RAW as u64,
                0x0300,
                0,
                0,
                0,
            ],
        ),
        (
            nr("socket"),
            [
                libc::AF_INET as u64,
                libc::SOCK_RAW as u64,
                libc::IPPROTO_ICMP as u64,
                0,
                0,
                0,
            ],
        ),
        (
            nr("socket"),
            [libc::AF_NETLINK as u64, libc::SOCK_DGRAM as u64, 0, 0, 0, 0],
        ),
        // Monitor-only: not in the profile, logged and allowed.
        (nr("getcpu"), [0; 6]),
    ];
    let o = results_as_root(&filter, &calls);
    let expected = [
        ("install", 0),
        ("unshare(0)", EPERM),
        ("io_uring_setup", EPERM),
        ("bpf", EPERM),
        ("clone3", ENOSYS),
        ("clone(CLONE_NEWUSER)", EPERM),
        ("socket(AF_PACKET)", EPERM),
        ("socket(AF_INET, SOCK_RAW)", EPERM),
        ("socket(AF_NETLINK)", EPERM),
        ("getcpu", 0),
    ]
    .map(|(w, v)| (w.to_string(), v));
    check(&o, &expected, "log");
}

#[test]
fn sockets_only_inet_and_unix_stream_or_dgram_and_only_with_network() {
    let s = |f: i32, t: i32, p: i32| (nr("socket"), [f as u64, t as u64, p as u64, 0, 0, 0]);
    let calls = [
        s(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0),
        s(
            libc::AF_INET6,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        ),
        s(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        ),
        s(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0),
        s(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0),
        s(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
        s(libc::AF_PACKET, libc::SOCK_DGRAM, 0x0300),
        s(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        s(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        s(libc::AF_NETLINK, libc::SOCK_RAW, 0),
        // high bits on the family: the kernel reads AF_PACKET, the filter must too
        (
            nr("socket"),
            [
                libc::AF_PACKET as u64 | 1 << 32,
                libc::SOCK_DGRAM as u64,
                0,
                0,
                0,
                0,
            ],
        ),
        (
            nr("socketpair"),
            [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
        ),
    ];
    for (name, network) in [
        ("receiver", true),
        ("exporter", true),
        ("receiver", false),
        ("processor", false),
    ] {
        let filter = compile(name, Action::Errno, &Options::with_network(network)).unwrap();
        let o = results_as_root(&filter, &calls);
        let ctx = format!("{name} network={network}");
        assert_eq!(o.exit_code(), Some(0), "{ctx}: {o:?}");
        let v = &o.values;
        assert_eq!(v[0], 0, "{ctx}: install");
        for (i, allowed) in [network, network, network, network].into_iter().enumerate() {
            let got = v[1 + i];
            assert!(
                if allowed { got >= 0 } else { got == EPERM },
                "{ctx}: call {i} -> {got}"
            );
        }
        assert_eq!(
            &v[5..12],
            &[EPERM; 7],
            "{ctx}: seqpacket, packet, raw, ping, netlink, high bits"
        );
        // socketpair(AF_UNIX) is in base: it reaches nothing outside the process.
        let sp = v[12];
        assert!(
            sp == -(libc::EFAULT as i64),
            "{ctx}: socketpair with a NULL array -> {sp}"
        );
    }
}

#[test]
fn clone_without_namespaces_and_clone3_enosys() {
    let clone = nr("clone");
    let fork_like = [libc::SIGCHLD as u64, 0, 0, 0, 0, 0];
    for (name, may_fork) in [("processor", false), ("diagnostics", true)] {
        let filter = compile(name, Action::Errno, &Options::default()).unwrap();
        let o = child::run(|out| {
            child::prepare(false);
            out.put(child::install(&filter));
            out.put(raw(
                clone,
                [CLONE_THREAD | libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
            ));
            out.put(raw(
                clone,
                [
                    libc::CLONE_NEWNET as u64 | libc::SIGCHLD as u64,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            ));
            out.put(raw(nr("clone3"), [0; 6]));
            // A plain fork: only profiles that run helper programs may.
            let pid = raw(clone, fork_like);
            if pid == 0 {
                // SAFETY: the grandchild ends at once.
                unsafe { libc::_exit(0) };
            }
            out.put(if pid > 0 { 1 } else { pid });
            if pid > 0 {
                let mut status = 0;
                raw(
                    libc::SYS_wait4,
                    [pid as u64, (&raw mut status) as u64, 0, 0, 0, 0],
                );
            }
            0
        });
        let fork = if may_fork { 1 } else { EPERM };
        let expected = [
            ("install", 0),
            ("clone(CLONE_NEWUSER|CLONE_THREAD)", EPERM),
            ("clone(CLONE_NEWNET)", EPERM),
            ("clone3", ENOSYS),
            ("fork via clone", fork),
        ]
        .map(|(w, v)| (w.to_string(), v));
        check(&o, &expected, name);
    }
}

#[test]
fn sleeps_interrupted_by_stop_and_continue_resume() {
    // After SIGSTOP/SIGCONT the kernel resumes nanosleep through restart_syscall, which the filter
    // sees as a syscall of its own.
    let filter = compile("processor", Action::Kill, &Options::default()).unwrap();
    let [r, w] = child::pipe();
    // SAFETY: the child only makes raw syscalls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        child::prepare(false);
        if child::install(&filter) != 0 {
            // SAFETY: ends the child.
            unsafe { libc::_exit(120) };
        }
        raw(
            libc::SYS_write,
            [w as u64, c"s".as_ptr() as u64, 1, 0, 0, 0],
        );
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 300_000_000,
        };
        let rc = raw(libc::SYS_nanosleep, [(&raw const ts) as u64, 0, 0, 0, 0, 0]);
        // SAFETY: ends the child.
        unsafe { libc::_exit(if rc == 0 { 0 } else { 1 }) };
    }
    child::close(&[w]);
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a valid buffer from our pipe.
    assert_eq!(unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) }, 1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
        std::thread::sleep(std::time::Duration::from_millis(50));
        libc::kill(pid, libc::SIGCONT);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    child::close(&[r]);
    let killed = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}, killed by {killed:?}"
    );
}

#[test]
fn a_program_parsed_from_exported_bytes_behaves_the_same() {
    let f = compile("processor", Action::Errno, &Options::default()).unwrap();
    let g = CompiledFilter {
        program: CompiledFilter::program_from_bytes(&to_bytes(&f)).unwrap(),
        ..f.clone()
    };
    assert_eq!(to_bytes(&g), to_bytes(&f));
    let o = results_as_root(&g, &[(nr("getcpu"), [0; 6]), (libc::SYS_getpid, [0; 6])]);
    assert_eq!(o.values, [0, EPERM, o.pid.into()]);
    assert!(matches!(
        CompiledFilter::program_from_bytes(&[0; 7]),
        Err(SeccompError::Export { .. })
    ));
    assert!(matches!(
        CompiledFilter::program_from_bytes(&[]),
        Err(SeccompError::Export { .. })
    ));
    assert!(matches!(
        CompiledFilter::program_from_bytes(&vec![0; 8 * 4097]),
        Err(SeccompError::TooLarge {
            instructions: 4097,
            max: 4096
        })
    ));
}
