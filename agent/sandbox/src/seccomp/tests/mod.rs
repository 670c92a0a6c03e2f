//! Tests of the seccomp module: profile validation here, filters in a forked child in `kernel.rs`.

mod child;
mod docker;
mod exec;
mod kernel;
mod probes;

use std::collections::BTreeSet;

use super::profile::{self, Source};
use super::{
    Action, CompiledFilter, Options, SeccompError, compile, policy, profile_names, syscalls_allowed,
};

/// A program as bytes (`struct sock_filter` array, native endian), to compare programs.
pub(super) fn to_bytes(f: &CompiledFilter) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.program.len() * 8);
    for i in f.program.iter() {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// The plugin profiles, each with the widest options it accepts (network where permitted).
pub(super) fn profiles_with_widest_options() -> Vec<(&'static str, Options)> {
    profile_names()
        .into_iter()
        .map(|name| {
            let network = profile::resolve(name).unwrap().network_capable;
            (name, Options::with_network(network))
        })
        .collect()
}

#[test]
fn profile_names_are_the_plugin_types_and_base() {
    assert_eq!(
        profile_names(),
        [
            "base",
            "receiver",
            "processor",
            "exporter",
            "diagnostics",
            "extension"
        ]
    );
}

#[test]
fn every_profile_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/seccomp");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let embedded: BTreeSet<String> = profile::EMBEDDED
        .iter()
        .map(|s| format!("{}.yaml", s.name))
        .collect();
    assert_eq!(
        on_disk, embedded,
        "profiles/seccomp/ and profile::EMBEDDED differ"
    );
}

#[test]
fn every_profile_resolves_compiles_and_has_commented_rules() {
    for (name, opts) in profiles_with_widest_options() {
        let p = profile::resolve(name).unwrap();
        assert!(!p.rules.is_empty(), "{name}");
        for action in [Action::Errno, Action::Trap, Action::Kill, Action::Log] {
            for network in [false, opts.network] {
                let f = compile(name, action, &Options::with_network(network))
                    .unwrap_or_else(|e| panic!("{name} {action:?}: {e}"));
                assert!(f.instructions() > 10, "{name}");
            }
        }
    }
    // Comments are checked on every file, included or not.
    for src in profile::EMBEDDED {
        let text: serde_yaml::Value = serde_yaml::from_str(src.text).unwrap();
        for rule in text["allow"].as_sequence().unwrap() {
            let comment = rule["comment"].as_str().unwrap_or_default();
            assert!(
                comment.trim().len() > 10,
                "{}: rule without a real comment",
                src.file
            );
        }
    }
}

#[test]
fn no_profile_contains_a_redundant_rule() {
    // resolve() rejects redundancy along the include chain (including network fragments); this
    // proves every profile passes, and the synthetic cases below prove the check works.
    for name in profile_names() {
        profile::resolve(name).unwrap();
    }
    let base = "name: a\ndescription: d\ndefault_action: errno\nallow:\n";
    let cases = [
        // same syscall twice in one file
        format!(
            "{base}  - {{syscalls: [read], comment: one}}\n  - {{syscalls: [read], comment: two}}\n"
        ),
        // unconditional and conditional
        format!(
            "{base}  - {{syscalls: [fcntl], comment: one}}\n  - {{syscalls: [fcntl], comment: two, \
             args: [{{index: 1, op: eq, value: 1}}]}}\n"
        ),
        // the same value twice in a list expands to two identical rules
        format!(
            "{base}  - {{syscalls: [fcntl], comment: one, args: [{{index: 1, op: eq, value: [1, 1]}}]}}\n"
        ),
    ];
    for text in &cases {
        let table = [Source {
            name: "a",
            file: "a.yaml",
            text: leak(text),
        }];
        let err = profile::resolve_in(&table, "a").unwrap_err();
        assert!(matches!(err, SeccompError::RedundantRule { .. }), "{err}");
    }
    // across the include chain
    let table = [
        Source {
            name: "a",
            file: "a.yaml",
            text: leak(&format!("{base}  - {{syscalls: [read], comment: again}}\n"))
                .replace("allow:", "include: [b]\nallow:")
                .leak(),
        },
        Source {
            name: "b",
            file: "b.yaml",
            text: "name: b\ndescription: d\nfragment: true\nallow:\n  - {syscalls: [read], comment: first}\n",
        },
    ];
    let err = profile::resolve_in(&table, "a").unwrap_err().to_string();
    assert_eq!(
        err,
        "a.yaml rule 1: read is already allowed by b.yaml rule 1 (redundant rule)"
    );
    // different arguments are not redundant
    let text = format!(
        "{base}  - {{syscalls: [fcntl], comment: one, args: [{{index: 1, op: eq, value: [1, 2]}}]}}\n"
    );
    let table = [Source {
        name: "a",
        file: "a.yaml",
        text: leak(&text),
    }];
    profile::resolve_in(&table, "a").unwrap();
}

fn leak(s: &str) -> &'static str {
    s.to_string().leak()
}

fn resolve_one(allow: &str) -> Result<profile::Resolved, SeccompError> {
    let text = format!("name: a\ndescription: d\ndefault_action: errno\nallow:\n{allow}");
    let table = [Source {
        name: "a",
        file: "profiles/seccomp/a.yaml",
        text: leak(&text),
    }];
    profile::resolve_in(&table, "a")
}

#[test]
fn profile_errors_name_the_file_and_rule() {
    let err = resolve_one(
        "  - {syscalls: [read], comment: ok}\n  - {syscalls: [frobnicate], comment: typo}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "profiles/seccomp/a.yaml rule 2 (\"typo\"): unknown x86_64 syscall \"frobnicate\""
    );
    // i386-only syscalls are not x86_64 syscalls
    let err = resolve_one("  - {syscalls: [socketcall], comment: x}\n").unwrap_err();
    assert!(matches!(err, SeccompError::UnknownSyscall { .. }), "{err}");

    let err = resolve_one("  - {syscalls: [read], comment: ok, extra: 1}\n").unwrap_err();
    assert!(matches!(err, SeccompError::Parse { .. }), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.contains("unknown field `extra`") && source.contains("line 5"),
        "{source}"
    );

    let err = resolve_one("  - {syscalls: [read], comment: \" \"}\n").unwrap_err();
    assert!(err.to_string().contains("needs a comment"), "{err}");

    let err = resolve_one(
        "  - {syscalls: [fcntl], comment: c, args: [{index: 1, op: eq, value: F_NOPE}]}\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown symbol \"F_NOPE\""),
        "{err}"
    );

    let err = resolve_one(
        "  - {syscalls: [fcntl], comment: c, args: [{index: 1, op: masked_eq, value: 3}]}\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs a mask"), "{err}");

    let err = resolve_one("  - {syscalls: [fcntl], comment: c, args: [{index: 1, op: masked_eq, mask: 1, value: 3}]}\n")
        .unwrap_err();
    assert!(err.to_string().contains("outside mask"), "{err}");

    let err =
        resolve_one("  - {syscalls: [fcntl], comment: c, args: [{index: 1, op: ne, value: 3}]}\n")
            .unwrap_err();
    assert!(
        matches!(err, SeccompError::Parse { .. }),
        "ne is not an allow-rule operator: {err}"
    );

    // fragments cannot be compiled, plugin profiles must state their action
    let table = [Source {
        name: "f",
        file: "f.yaml",
        text: "name: f\ndescription: d\nfragment: true\n",
    }];
    assert!(matches!(
        profile::resolve_in(&table, "f"),
        Err(SeccompError::Fragment { .. })
    ));
    let table = [Source {
        name: "p",
        file: "p.yaml",
        text: "name: p\ndescription: d\n",
    }];
    assert!(
        profile::resolve_in(&table, "p")
            .unwrap_err()
            .to_string()
            .contains("default_action")
    );
    // include cycles
    let table = [
        Source {
            name: "a",
            file: "a.yaml",
            text: "name: a\ndescription: d\ndefault_action: kill\ninclude: [b]\n",
        },
        Source {
            name: "b",
            file: "b.yaml",
            text: "name: b\ndescription: d\nfragment: true\ninclude: [a]\n",
        },
    ];
    let err = profile::resolve_in(&table, "a").unwrap_err().to_string();
    assert!(err.contains("include cycle: a -> b -> a"), "{err}");
    assert!(matches!(
        compile("nope", Action::Errno, &Options::default()),
        Err(SeccompError::UnknownProfile { .. })
    ));
    assert!(matches!(
        compile("network", Action::Errno, &Options::default()),
        Err(SeccompError::Fragment { .. })
    ));
}

#[test]
fn hard_denied_syscalls_cannot_be_allowed() {
    for name in policy::HARD_DENY.iter().chain(policy::ENOSYS_SYSCALLS) {
        let err = resolve_one(&format!("  - {{syscalls: [{name}], comment: evil}}\n")).unwrap_err();
        assert!(
            matches!(&err, SeccompError::HardDenied { syscall, rule: 1, .. } if syscall == name),
            "{name}: {err}"
        );
    }
    // ... not even with argument filters
    let err =
        resolve_one("  - {syscalls: [ptrace], comment: c, args: [{index: 0, op: eq, value: 0}]}\n")
            .unwrap_err();
    assert!(matches!(err, SeccompError::HardDenied { .. }), "{err}");
}

#[test]
fn hard_deny_list_is_large_and_names_real_x86_64_syscalls() {
    assert!(policy::HARD_DENY.len() >= 50, "{}", policy::HARD_DENY.len());
    let unique: BTreeSet<_> = policy::HARD_DENY.iter().collect();
    assert_eq!(
        unique.len(),
        policy::HARD_DENY.len(),
        "duplicates in HARD_DENY"
    );
    for name in policy::HARD_DENY.iter().chain(policy::ENOSYS_SYSCALLS) {
        assert!(
            profile::syscall_nr(name).is_some(),
            "{name} is not an x86_64 syscall"
        );
    }
}

#[test]
fn restricted_syscalls_need_safe_argument_filters() {
    let rejected = [
        // ioctl without filter, with a 64-bit comparison, with TIOCSTI, with a partial mask
        "  - {syscalls: [ioctl], comment: c}\n",
        "  - {syscalls: [ioctl], comment: c, args: [{index: 1, op: eq, value: FIONREAD}]}\n",
        "  - {syscalls: [ioctl], comment: c, args: [{index: 1, op: masked_eq, mask: LOW32, value: 0x5412}]}\n",
        "  - {syscalls: [ioctl], comment: c, args: [{index: 1, op: masked_eq, mask: 0xffff, value: FIONREAD}]}\n",
        // clone without a mask, with a mask missing CLONE_NEWUSER, allowing CLONE_NEWNET
        "  - {syscalls: [clone], comment: c}\n",
        "  - {syscalls: [clone], comment: c, args: [{index: 0, op: masked_eq, mask: \"CLONE_NEWNS|CLONE_NEWNET\", value: 0}]}\n",
        "  - {syscalls: [clone], comment: c, args: [{index: 0, op: masked_eq, mask: \"CLONE_THREAD|CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET\", value: CLONE_NEWNET}]}\n",
        // socket: any family, AF_PACKET (17), raw type, AF_NETLINK (16)
        "  - {syscalls: [socket], comment: c}\n",
        "  - {syscalls: [socket], comment: c, args: [{index: 0, op: eq, value: 17}, {index: 1, op: masked_eq, mask: SOCK_TYPE_MASK, value: SOCK_DGRAM}]}\n",
        "  - {syscalls: [socket], comment: c, args: [{index: 0, op: eq, value: AF_INET}, {index: 1, op: masked_eq, mask: SOCK_TYPE_MASK, value: 3}]}\n",
        "  - {syscalls: [socket], comment: c, args: [{index: 0, op: eq, value: 16}, {index: 1, op: masked_eq, mask: SOCK_TYPE_MASK, value: SOCK_DGRAM}]}\n",
        "  - {syscalls: [socket], comment: c, args: [{index: 0, op: eq, value: AF_INET}]}\n",
        "  - {syscalls: [socketpair], comment: c}\n",
        "  - {syscalls: [personality], comment: c}\n",
        // ADDR_NO_RANDOMIZE
        "  - {syscalls: [personality], comment: c, args: [{index: 0, op: eq, value: 0x0040000}]}\n",
    ];
    for allow in rejected {
        let err = resolve_one(allow).unwrap_err();
        assert!(
            matches!(err, SeccompError::InvalidRule { .. }),
            "{allow}: {err}"
        );
    }
    let accepted = [
        "  - {syscalls: [ioctl], comment: c, args: [{index: 1, op: masked_eq, mask: LOW32, value: [FIONREAD, TCGETS]}]}\n",
        "  - {syscalls: [socket], comment: c, args: [{index: 0, op: eq, value: AF_INET6}, {index: 1, op: masked_eq, mask: SOCK_TYPE_MASK, value: SOCK_STREAM}]}\n",
        "  - {syscalls: [personality], comment: c, args: [{index: 0, op: masked_eq, mask: LOW32, value: 0xffffffff}]}\n",
    ];
    for allow in accepted {
        resolve_one(allow).unwrap_or_else(|e| panic!("{allow}: {e}"));
    }
}

#[test]
fn network_only_where_declared() {
    for name in ["base", "processor", "diagnostics", "extension"] {
        let err = compile(name, Action::Errno, &Options::with_network(true)).unwrap_err();
        assert!(
            matches!(err, SeccompError::NetworkNotPermitted { .. }),
            "{name}: {err}"
        );
    }
    for name in ["receiver", "exporter"] {
        let without = syscalls_allowed(name, &Options::default()).unwrap();
        let with = syscalls_allowed(name, &Options::with_network(true)).unwrap();
        for s in [
            "socket",
            "connect",
            "bind",
            "listen",
            "accept4",
            "setsockopt",
        ] {
            assert!(!without.contains(s) && with.contains(s), "{name} {s}");
        }
    }
}

#[test]
fn allowed_syscall_counts_and_filter_sizes() {
    // Printed for docs and reports (`cargo test ... -- --nocapture`).
    for (name, opts) in profiles_with_widest_options() {
        let plain = syscalls_allowed(name, &Options::default()).unwrap();
        let wide = syscalls_allowed(name, &opts).unwrap();
        let t = std::time::Instant::now();
        let n = 20;
        let mut f = None;
        for _ in 0..n {
            f = Some(super::compiler::compile_uncached(name, Action::Errno, &opts).unwrap());
        }
        let per = t.elapsed() / n;
        compile(name, Action::Errno, &opts).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..n {
            compile(name, Action::Errno, &opts).unwrap();
        }
        let cached = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            profile::resolve(name).unwrap();
        }
        let resolve = t.elapsed() / n;
        let f = f.unwrap();
        println!(
            "profile {name:12} syscalls {:3} (network: {:3}) bpf {:4} insns {:5} bytes \
             compile {:>5} µs (of which YAML {:>5} µs, cached {:>3} µs)",
            plain.len(),
            if opts.network {
                wide.len().to_string()
            } else {
                "-".into()
            },
            f.instructions(),
            to_bytes(&f).len(),
            per.as_micros(),
            resolve.as_micros(),
            cached.as_micros()
        );
        assert!(plain.is_subset(&wide));
        assert_eq!(
            to_bytes(&compile(name, Action::Errno, &opts).unwrap()),
            to_bytes(&f)
        );
    }
}

#[test]
fn base_syscalls_are_in_every_profile() {
    let base = syscalls_allowed("base", &Options::default()).unwrap();
    for name in profile_names() {
        let s = syscalls_allowed(name, &Options::default()).unwrap();
        assert!(base.is_subset(&s), "{name}");
        assert!(
            s.contains("execveat")
                && !s.contains("execve")
                && s.contains("mmap")
                && s.contains("futex"),
            "{name}"
        );
    }
}

#[test]
fn action_parses_from_configuration_words() {
    for (word, action) in [
        ("errno", Action::Errno),
        ("trap", Action::Trap),
        ("kill", Action::Kill),
        ("log", Action::Log),
    ] {
        assert_eq!(serde_yaml::from_str::<Action>(word).unwrap(), action);
    }
    assert!(serde_yaml::from_str::<Action>("allow").is_err());
    for name in profile_names() {
        assert_eq!(
            super::default_action(name).unwrap(),
            Action::Errno,
            "{name}"
        );
    }
}

#[test]
fn pseudo_filter_code_is_readable() {
    let pfc = super::pseudo_filter_code("processor", Action::Errno, &Options::default()).unwrap();
    assert!(pfc.contains("filter for arch x86_64"), "{pfc}");
    assert!(
        pfc.contains("filter for syscall \"clone3\"") && pfc.contains("action ERRNO(38)"),
        "{pfc}"
    );
    assert!(
        pfc.contains("action KILL_PROCESS"),
        "bad-arch action: {pfc}"
    );
}

#[test]
fn bpf_prologue_kills_foreign_arches_and_x32_numbers() {
    // White-box check of what the kernel tests observe: libseccomp 2.5 routes a foreign
    // architecture and x86_64 numbers >= __X32_SYSCALL_BIT (except -1) to the bad-arch action.
    const LD_ABS_W: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const KILL_PROCESS: u32 = 0x8000_0000;
    for action in [Action::Errno, Action::Log] {
        let f = compile("processor", action, &Options::default()).unwrap();
        let p = &f.program;
        let jump = |i: usize, off: u8| &p[i + 1 + usize::from(off)];
        let is_kill = |insn: &libc::sock_filter| insn.code == RET_K && insn.k == KILL_PROCESS;
        // seccomp_data.arch, compared with AUDIT_ARCH_X86_64
        assert_eq!((p[0].code, p[0].k), (LD_ABS_W, 4));
        assert_eq!((p[1].code, p[1].k), (JEQ_K, 0xc000_003e));
        assert!(
            is_kill(jump(1, p[1].jf)),
            "{action:?}: foreign arch not killed"
        );
        // seccomp_data.nr >= 0x40000000 and != -1
        assert_eq!((p[2].code, p[2].k), (LD_ABS_W, 0));
        assert_eq!((p[3].code, p[3].k), (JGE_K, 0x4000_0000));
        let next = jump(3, p[3].jt);
        assert_eq!((next.code, next.k), (JEQ_K, 0xffff_ffff));
        assert!(
            is_kill(jump(4, next.jf)),
            "{action:?}: x32 numbers not killed"
        );
    }
}

/// `errno_via_trap`: the default action becomes `SECCOMP_RET_TRAP | EPERM` (the errno reaches the
/// SDK's SIGSYS handler as `si_errno`); nothing else changes.
#[test]
fn errno_via_trap_puts_eperm_in_the_trap_data() {
    const RET_K: u16 = 0x06;
    let rets = |f: &super::CompiledFilter| -> Vec<u32> {
        f.program
            .iter()
            .filter(|i| i.code == RET_K)
            .map(|i| i.k)
            .collect()
    };
    let eperm = libc::EPERM as u32;
    let plain =
        super::compiler::compile_uncached("processor", Action::Errno, &Options::default()).unwrap();
    let trap = super::compiler::compile_uncached(
        "processor",
        Action::Errno,
        &Options::default().errno_via_trap(true),
    )
    .unwrap();
    assert!(rets(&plain).contains(&(0x0005_0000 | eperm)));
    assert!(!rets(&plain).iter().any(|k| k & 0xffff_0000 == 0x0003_0000));
    assert!(rets(&trap).contains(&(0x0003_0000 | eperm)));
    assert!(!rets(&trap).contains(&0x0003_0000));
    assert!(!rets(&trap).contains(&(0x0005_0000 | eperm)));
    assert_eq!(plain.instructions(), trap.instructions());
    // A plain `trap` filter is not patched.
    let t = super::compiler::compile_uncached(
        "processor",
        Action::Trap,
        &Options::default().errno_via_trap(true),
    )
    .unwrap();
    assert!(rets(&t).contains(&0x0003_0000));
}
