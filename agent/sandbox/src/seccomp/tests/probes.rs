//! The syscalls every profile must deny, as probes a child makes, and the check of its answers.

use std::collections::BTreeSet;

use super::super::{policy, profile};
use super::child::Outcome;
use super::docker::{self, ARG_RESTRICTED};
use super::kernel::{CLONE_THREAD, ENOSYS, EPERM};

/// A syscall made in the child and the result a denying filter must produce.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) what: String,
    pub(super) nr: libc::c_long,
    pub(super) args: [u64; 6],
    pub(super) expect: i64,
}

pub(super) fn nr(name: &str) -> libc::c_long {
    profile::syscall_nr(name)
        .unwrap_or_else(|| panic!("{name}"))
        .into()
}

pub(super) fn probe(what: impl Into<String>, name: &str, args: [u64; 6], expect: i64) -> Probe {
    Probe {
        what: what.into(),
        nr: nr(name),
        args,
        expect,
    }
}

/// Calls that must be denied in every profile: the hard deny list with zero arguments, everything
/// Docker does not allow unconditionally, and argument-level denials with arguments chosen so that
/// the kernel would answer differently (EINVAL, a new fd) if the filter let them through.
pub(super) fn denied_probes() -> Vec<Probe> {
    let zero = [0; 6];
    let mut names: BTreeSet<String> = policy::HARD_DENY.iter().map(|s| s.to_string()).collect();
    if let Some(d) = docker::docker_denied() {
        names.extend(
            d.into_iter()
                .filter(|n| !ARG_RESTRICTED.contains(&n.as_str())),
        );
    }
    let mut probes: Vec<Probe> = names
        .iter()
        .map(|n| {
            let expect = if policy::ENOSYS_SYSCALLS.contains(&n.as_str()) {
                ENOSYS
            } else {
                EPERM
            };
            probe(n.clone(), n, zero, expect)
        })
        .collect();
    // CLONE_THREAD without CLONE_SIGHAND is EINVAL in the kernel: nothing is created even if the
    // filter were broken, but the filter must answer EPERM first.
    for (flag, bit) in [
        ("CLONE_NEWNS", libc::CLONE_NEWNS),
        ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
        ("CLONE_NEWUTS", libc::CLONE_NEWUTS),
        ("CLONE_NEWIPC", libc::CLONE_NEWIPC),
        ("CLONE_NEWUSER", libc::CLONE_NEWUSER),
        ("CLONE_NEWPID", libc::CLONE_NEWPID),
        ("CLONE_NEWNET", libc::CLONE_NEWNET),
    ] {
        let args = [CLONE_THREAD | bit as u64, 0, 0, 0, 0, 0];
        probes.push(probe(
            format!("clone({flag}|CLONE_THREAD)"),
            "clone",
            args,
            EPERM,
        ));
    }
    let sock = |what: &str, f: i32, t: i32, p: i32| {
        probe(
            what,
            "socket",
            [f as u64, t as u64, p as u64, 0, 0, 0],
            EPERM,
        )
    };
    probes.extend([
        sock(
            "socket(AF_PACKET, SOCK_RAW)",
            libc::AF_PACKET,
            libc::SOCK_RAW,
            0x0300,
        ),
        sock(
            "socket(AF_INET, SOCK_RAW, ICMP)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ),
        sock(
            "socket(AF_INET6, SOCK_RAW, ICMPV6)",
            libc::AF_INET6,
            libc::SOCK_RAW,
            58,
        ),
        sock(
            "socket(AF_NETLINK, SOCK_RAW)",
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            0,
        ),
        sock(
            "socket(AF_VSOCK, SOCK_STREAM)",
            libc::AF_VSOCK,
            libc::SOCK_STREAM,
            0,
        ),
        sock(
            "socket(AF_ALG, SOCK_SEQPACKET)",
            libc::AF_ALG,
            libc::SOCK_SEQPACKET,
            0,
        ),
        sock(
            "socket(AF_INET, SOCK_STREAM, SCTP)",
            libc::AF_INET,
            libc::SOCK_STREAM,
            132,
        ),
        sock(
            "socket(AF_INET, SOCK_DGRAM, UDPLITE)",
            libc::AF_INET,
            libc::SOCK_DGRAM,
            136,
        ),
        probe(
            "personality(ADDR_NO_RANDOMIZE)",
            "personality",
            [0x004_0000, 0, 0, 0, 0, 0],
            EPERM,
        ),
    ]);
    probes
}

pub(super) fn check(o: &Outcome, expected: &[(String, i64)], ctx: &str) {
    assert_eq!(
        o.exit_code(),
        Some(0),
        "{ctx}: child status {:#x}",
        o.status
    );
    assert_eq!(o.values.len(), expected.len(), "{ctx}: {:?}", o.values);
    let wrong: Vec<_> = expected
        .iter()
        .zip(&o.values)
        .filter(|((_, want), got)| want != *got)
        .map(|((what, want), got)| format!("{what}: want {want}, got {got}"))
        .collect();
    assert!(wrong.is_empty(), "{ctx}: {wrong:#?}");
}
