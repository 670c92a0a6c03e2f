//! Seccomp violations: the per-CPU counters in `srediag_viol` (exact, whatever happens to the
//! ring buffer) and the names shown for them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aya::maps::{MapData, PerCpuHashMap};
use libseccomp::{ScmpArch, ScmpSyscall};
use serde::Serialize;

use super::abi::{self, ViolationKey};

/// The seccomp action that made a violation visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `SECCOMP_RET_TRAP`: SIGSYS; a handler may return an error and continue.
    Trap,
    /// `SECCOMP_RET_KILL_PROCESS` (or `KILL_THREAD` of the last thread).
    Kill,
    /// `SECCOMP_RET_KILL_THREAD` of one thread in a multi-threaded process.
    KillThread,
    /// srediag's `errno` action: `SECCOMP_RET_TRAP` carrying the errno (seen as `si_errno`),
    /// turned into that errno by the plugin SDK's SIGSYS handler; the plugin continues.
    Errno,
    /// A value this agent does not know.
    Unknown,
}

impl Action {
    pub(super) fn from_raw(raw: u32) -> Action {
        match raw {
            abi::ACTION_TRAP => Action::Trap,
            abi::ACTION_KILL => Action::Kill,
            abi::ACTION_KILL_THREAD => Action::KillThread,
            abi::ACTION_ERRNO => Action::Errno,
            _ => Action::Unknown,
        }
    }

    /// The `action` label: `trap`, `kill`, `kill_thread`, `errno`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trap => "trap",
            Action::Kill => "kill",
            Action::KillThread => "kill_thread",
            Action::Errno => "errno",
            Action::Unknown => "unknown",
        }
    }
}

/// One counter of `srediag_viol`, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationCount {
    /// Plugin id.
    pub plugin_id: u32,
    /// Syscall number (-1 when unknown).
    pub syscall_nr: i32,
    /// Syscall name for `arch`, or the number when unknown.
    pub syscall: String,
    /// Architecture of the call (`x86_64`, `i386`, `x32`, …).
    pub arch: &'static str,
    /// The action.
    pub action: Action,
    /// Violations counted.
    pub count: u64,
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
const AUDIT_ARCH_RISCV64: u32 = 0xC000_00F3;
const AUDIT_ARCH_S390X: u32 = 0x8000_0016;
const AUDIT_ARCH_PPC64LE: u32 = 0xC000_0015;
/// x32 syscalls use `AUDIT_ARCH_X86_64` with this bit set in the number.
const X32_SYSCALL_BIT: i32 = 0x4000_0000;

/// The libseccomp architecture and its label for an `AUDIT_ARCH_*` value and syscall number.
fn arch_of(audit_arch: u32, nr: i32) -> (Option<ScmpArch>, &'static str) {
    match audit_arch {
        AUDIT_ARCH_X86_64 if nr >= 0 && nr & X32_SYSCALL_BIT != 0 => (Some(ScmpArch::X32), "x32"),
        AUDIT_ARCH_X86_64 => (Some(ScmpArch::X8664), "x86_64"),
        AUDIT_ARCH_I386 => (Some(ScmpArch::X86), "i386"),
        AUDIT_ARCH_AARCH64 => (Some(ScmpArch::Aarch64), "aarch64"),
        AUDIT_ARCH_ARM => (Some(ScmpArch::Arm), "arm"),
        AUDIT_ARCH_RISCV64 => (Some(ScmpArch::Riscv64), "riscv64"),
        AUDIT_ARCH_S390X => (Some(ScmpArch::S390X), "s390x"),
        AUDIT_ARCH_PPC64LE => (Some(ScmpArch::Ppc64Le), "ppc64le"),
        _ => (None, "unknown"),
    }
}

/// Syscall names by (arch, number), resolved with libseccomp once each.
#[derive(Default)]
pub(super) struct Names {
    cache: Mutex<BTreeMap<(u32, i32), String>>,
}

impl Names {
    /// `(syscall name, arch label)`; the name is the number when libseccomp does not know it.
    pub(super) fn resolve(&self, audit_arch: u32, nr: i32) -> (String, &'static str) {
        let (arch, label) = arch_of(audit_arch, nr);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let name = cache
            .entry((audit_arch, nr))
            .or_insert_with(|| {
                if nr < 0 {
                    return "unknown".to_owned();
                }
                arch.and_then(|a| ScmpSyscall::from_raw_syscall(nr).get_name_by_arch(a).ok())
                    .unwrap_or_else(|| nr.to_string())
            })
            .clone();
        (name, label)
    }
}

/// Every counter, summed over CPUs.
pub(super) fn counts(
    map: &PerCpuHashMap<MapData, ViolationKey, u64>,
    names: &Names,
) -> Vec<ViolationCount> {
    let mut out: Vec<ViolationCount> = map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, per_cpu)| {
            let (syscall, arch) = names.resolve(k.arch, k.syscall_nr);
            ViolationCount {
                plugin_id: k.plugin_id,
                syscall_nr: k.syscall_nr,
                syscall,
                arch,
                action: Action::from_raw(k.action),
                count: per_cpu.iter().sum(),
            }
        })
        .collect();
    out.sort_by_key(|v| (v.plugin_id, v.syscall_nr, v.arch, v.action));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_x86_64_and_i386_syscalls() {
        let names = Names::default();
        assert_eq!(
            names.resolve(AUDIT_ARCH_X86_64, 83),
            ("mkdir".to_owned(), "x86_64")
        );
        assert_eq!(
            names.resolve(AUDIT_ARCH_X86_64, 110),
            ("getppid".to_owned(), "x86_64")
        );
        assert_eq!(
            names.resolve(AUDIT_ARCH_I386, 39),
            ("mkdir".to_owned(), "i386")
        );
        assert_eq!(names.resolve(AUDIT_ARCH_X86_64, -1).0, "unknown");
        assert_eq!(names.resolve(0x1234, 5), ("5".to_owned(), "unknown"));
        assert_eq!(names.resolve(AUDIT_ARCH_X86_64, 99_999).0, "99999");
    }

    #[test]
    fn actions_have_stable_labels() {
        assert_eq!(Action::from_raw(abi::ACTION_TRAP).as_str(), "trap");
        assert_eq!(Action::from_raw(abi::ACTION_KILL).as_str(), "kill");
        assert_eq!(
            Action::from_raw(abi::ACTION_KILL_THREAD).as_str(),
            "kill_thread"
        );
        assert_eq!(Action::from_raw(abi::ACTION_ERRNO).as_str(), "errno");
        assert_eq!(Action::from_raw(77), Action::Unknown);
    }
}
