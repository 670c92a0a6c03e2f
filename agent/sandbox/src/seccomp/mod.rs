//! Seccomp profiles (data in `profiles/seccomp/`) compiled to BPF filters.
//!
//! The last step of the plugin sandbox, installed by the plugin's child right before it execs the
//! sealed executable:
//!
//! ```text
//! agent (multi-threaded; spawn.rs)                 child (exec.rs, between clone(CLONE_VM|
//! compile("processor", Action::Errno, &opts)         CLONE_VFORK) and execveat: raw syscalls only)
//!   = libseccomp → BPF program (allocates,     ──▶  prctl(PR_SET_NO_NEW_PRIVS) … Landlock …
//!     cached per profile, action, network)          filter.install()  (one raw seccomp(2))
//!                                                   execveat(5 = sealed memfd, "", AT_EMPTY_PATH)
//! ```
//!
//! - **Profiles are data**: one YAML file per profile in `profiles/seccomp/`, embedded in the
//!   binary; every rule names the code path that needs it. `base` is what every glibc/Rust plugin
//!   process needs (including the dynamic loader after the exec); `receiver`, `processor`,
//!   `exporter`, `diagnostics` and `extension` include it; `network` is a fragment included by
//!   `receiver` and `exporter` only when the plugin declares network access ([`Options::network`]).
//! - **Default deny**: everything not allowed gets the [`Action`] chosen at compile time.
//! - **Invariants in code** (see `policy.rs`): a hard deny list no profile can allow (a superset of
//!   what Docker's default profile does not allow unconditionally), `clone3` → `ENOSYS`, `ioctl`
//!   only for a few harmless requests compared on the low 32 bits, `clone` only without
//!   `CLONE_NEW*`, `socket` only `AF_UNIX`/`AF_INET`/`AF_INET6` × `SOCK_STREAM`/`SOCK_DGRAM`.
//! - **Architecture**: x86_64 only; i386 (`int 0x80`) and x32 syscalls kill the process.

mod compiler;
mod error;
mod filter;
mod policy;
mod profile;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use libseccomp::ScmpAction;
use serde::{Deserialize, Serialize};

pub use error::{Errno, SeccompError};
pub use filter::CompiledFilter;

/// What happens to a syscall the profile does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Fail the call with `EPERM`.
    Errno,
    /// Deliver `SIGSYS` (`si_code` `SYS_SECCOMP`); the plugin SDK's handler returns `EPERM` and
    /// the plugin continues (counted as `trap`); the default disposition kills the process.
    Trap,
    /// Kill the whole process (`SECCOMP_RET_KILL_PROCESS`, seen as death by `SIGSYS`).
    Kill,
    /// Monitor-only: let the call through and log it (rate-limited kernel log). The hard deny list,
    /// `clone3` → `ENOSYS` and a few argument guards (`TIOCSTI`, `CLONE_NEW*`, packet, netlink and
    /// raw sockets) stay enforced with `EPERM`; other argument filters are not.
    Log,
}

impl Action {
    /// The configuration word (`errno`, `trap`, `kill`, `log`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Errno => "errno",
            Action::Trap => "trap",
            Action::Kill => "kill",
            Action::Log => "log",
        }
    }

    fn to_scmp(self) -> ScmpAction {
        match self {
            Action::Errno => ScmpAction::Errno(libc::EPERM),
            Action::Trap => ScmpAction::Trap,
            Action::Kill => ScmpAction::KillProcess,
            Action::Log => ScmpAction::Log,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin's configuration asks a denied syscall to do (`sandbox.seccomp_action`): an
/// [`Action`], plus `kernel_errno`. Parsed once where the configuration is read; serialised as the
/// same word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompAction {
    /// `EPERM`, compiled as `SECCOMP_RET_TRAP | EPERM`: the SDK's SIGSYS handler returns
    /// `-EPERM` and the eBPF observer counts every violation (the default).
    #[default]
    Errno,
    /// The plain `SECCOMP_RET_ERRNO | EPERM`, for plugins without the SDK's handler; violations
    /// are not counted.
    KernelErrno,
    /// `SIGSYS`: the SDK handler returns `EPERM`, a plugin without it dies.
    Trap,
    /// Kill the whole process.
    Kill,
    /// Monitor only: allowed and logged by the kernel (refused for signed bundles).
    Log,
}

/// A `sandbox.seccomp_action` word that is none of [`SeccompAction`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?}: use errno, kernel_errno, trap, kill or log")]
pub struct UnknownSeccompAction(pub String);

impl SeccompAction {
    /// Every action, in the order the error message lists them.
    pub const ALL: [SeccompAction; 5] = [
        SeccompAction::Errno,
        SeccompAction::KernelErrno,
        SeccompAction::Trap,
        SeccompAction::Kill,
        SeccompAction::Log,
    ];

    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            SeccompAction::Errno => "errno",
            SeccompAction::KernelErrno => "kernel_errno",
            SeccompAction::Trap => "trap",
            SeccompAction::Kill => "kill",
            SeccompAction::Log => "log",
        }
    }

    /// The filter's default [`Action`] and whether `errno` is compiled as a trap
    /// ([`Options::errno_via_trap`]): `errno` → (errno, trap), `kernel_errno` → (errno, plain).
    pub fn compiled(self) -> (Action, bool) {
        match self {
            SeccompAction::Errno => (Action::Errno, true),
            SeccompAction::KernelErrno => (Action::Errno, false),
            SeccompAction::Trap => (Action::Trap, true),
            SeccompAction::Kill => (Action::Kill, true),
            SeccompAction::Log => (Action::Log, true),
        }
    }
}

impl std::str::FromStr for SeccompAction {
    type Err = UnknownSeccompAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SeccompAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownSeccompAction(s.to_string()))
    }
}

impl std::fmt::Display for SeccompAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SeccompAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

/// What the plugin declares, which selects optional parts of its profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The plugin declares network access: adds the profile's `network_include` rules (socket
    /// creation, connect, bind, …). Default false; an error for profiles without network rules.
    pub network: bool,
    /// Compile the [`Action::Errno`] default action as `SECCOMP_RET_TRAP | EPERM` instead of
    /// `SECCOMP_RET_ERRNO | EPERM` (default false). The plugin SDK's SIGSYS handler turns the trap
    /// into `-EPERM` (the errno travels in `si_errno`) and the plugin continues, while the eBPF
    /// seccomp observer sees every violation on `signal_generate` (an ERRNO return is invisible
    /// without a host-wide syscall hook). A process without that handler dies by SIGSYS at its
    /// first violation. Plugins get it unless configured `seccomp_action: kernel_errno`.
    pub errno_via_trap: bool,
}

impl Options {
    /// Options with network access as given.
    pub fn with_network(network: bool) -> Self {
        Options {
            network,
            errno_via_trap: false,
        }
    }

    /// These options with [`errno_via_trap`](Self::errno_via_trap) as given.
    pub fn errno_via_trap(mut self, on: bool) -> Self {
        self.errno_via_trap = on;
        self
    }
}

/// Compiles profile `profile_name` into a BPF program whose default action is `action`.
///
/// Validates the profile first (unknown syscalls, hard-denied syscalls, argument invariants,
/// redundant rules are errors naming the file and rule). Allocates and calls libseccomp: run it in
/// the parent, never after `fork`. Results are cached per (profile, action, network), so a restart
/// pays a copy of the program.
///
/// # Errors
///
/// [`SeccompError::UnknownProfile`], [`SeccompError::Fragment`], a profile validation error,
/// [`SeccompError::NetworkNotPermitted`] when `opts.network` is set for a profile without network
/// rules, or a libseccomp/export failure.
pub fn compile(
    profile_name: &str,
    action: Action,
    opts: &Options,
) -> Result<CompiledFilter, SeccompError> {
    compiler::compile(profile_name, action, opts)
}

/// Names of the compilable profiles (fragments such as `network` are only reachable by include).
pub fn profile_names() -> Vec<&'static str> {
    profile::compilable_names_in(profile::EMBEDDED)
}

/// The action a profile recommends when configuration does not choose one.
///
/// # Errors
///
/// The profile is unknown, a fragment or invalid.
pub fn default_action(profile_name: &str) -> Result<Action, SeccompError> {
    Ok(profile::resolve(profile_name)?.default_action)
}

/// Names of the syscalls a profile allows (with or without argument filters) under `opts`, for
/// docs and tests. Does not include `clone3`, which is answered with `ENOSYS`.
///
/// # Errors
///
/// As [`compile`], without the libseccomp part.
pub fn syscalls_allowed(
    profile_name: &str,
    opts: &Options,
) -> Result<BTreeSet<String>, SeccompError> {
    let p = profile::resolve(profile_name)?;
    if opts.network && !p.network_capable {
        return Err(SeccompError::NetworkNotPermitted {
            profile: profile_name.to_string(),
        });
    }
    Ok(p.rules
        .into_iter()
        .filter(|r| opts.network || !r.network)
        .map(|r| r.syscall)
        .collect())
}

/// libseccomp's pseudo-filter-code text of a compiled profile (human-readable), for debugging.
///
/// # Errors
///
/// As [`compile`].
pub fn pseudo_filter_code(
    profile_name: &str,
    action: Action,
    opts: &Options,
) -> Result<String, SeccompError> {
    compiler::pfc(profile_name, action, opts)
}
