//! Errors of profile loading, compilation and installation.

use std::fmt;

/// A profile could not be loaded, validated or compiled.
///
/// `file` is the profile's path relative to the repository (`profiles/seccomp/base.yaml`): profiles
/// are embedded in the binary, so this names the source file to fix. `rule` is the 1-based position
/// of the rule in that file's `allow` list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// No embedded profile has this name.
    #[error("unknown seccomp profile {name:?} (known: {known})")]
    UnknownProfile {
        /// The requested name.
        name: String,
        /// Comma-separated names of the compilable profiles.
        known: String,
    },
    /// A profile file is not valid YAML or does not match the schema.
    #[error("invalid seccomp profile {file}")]
    Parse {
        /// Profile file.
        file: &'static str,
        /// The YAML/schema error, with line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// A profile-level problem (name mismatch, missing field, bad include).
    #[error("invalid seccomp profile {file}: {reason}")]
    Profile {
        /// Profile file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A rule names a syscall libseccomp does not know on x86_64.
    #[error("{file} rule {rule} ({comment:?}): unknown x86_64 syscall {syscall:?}")]
    UnknownSyscall {
        /// Profile file.
        file: &'static str,
        /// 1-based rule position.
        rule: usize,
        /// The rule's comment, to find it.
        comment: String,
        /// The unknown name.
        syscall: String,
    },
    /// A rule allows a syscall on the hard deny list.
    #[error("{file} rule {rule} ({comment:?}): {syscall} is hard-denied and cannot be allowed")]
    HardDenied {
        /// Profile file.
        file: &'static str,
        /// 1-based rule position.
        rule: usize,
        /// The rule's comment.
        comment: String,
        /// The denied syscall.
        syscall: String,
    },
    /// A rule is malformed or breaks an argument invariant (e.g. an `ioctl` without a 32-bit mask).
    #[error("{file} rule {rule} ({comment:?}): {reason}")]
    InvalidRule {
        /// Profile file.
        file: &'static str,
        /// 1-based rule position.
        rule: usize,
        /// The rule's comment.
        comment: String,
        /// What is wrong.
        reason: String,
    },
    /// A syscall is allowed twice with the same arguments (or once unconditionally and once with
    /// arguments) along the include chain.
    #[error(
        "{file} rule {rule}: {syscall} is already allowed by {first_file} rule {first_rule} \
         (redundant rule)"
    )]
    RedundantRule {
        /// Profile file of the redundant rule.
        file: &'static str,
        /// 1-based rule position.
        rule: usize,
        /// The syscall.
        syscall: String,
        /// Profile file of the earlier rule.
        first_file: &'static str,
        /// 1-based position of the earlier rule.
        first_rule: usize,
    },
    /// The plugin declares network access but its profile has no network rules.
    #[error("seccomp profile {profile:?} does not permit network access (no network_include)")]
    NetworkNotPermitted {
        /// Profile name.
        profile: String,
    },
    /// The profile is an include-only fragment.
    #[error("seccomp profile {profile:?} is a fragment for include, not a plugin profile")]
    Fragment {
        /// Profile name.
        profile: String,
    },
    /// libseccomp refused an operation.
    #[error("libseccomp failed to {op}")]
    Libseccomp {
        /// What was being done.
        op: String,
        /// The library error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Exporting the BPF program through a memfd failed.
    #[error("cannot export the seccomp BPF program through a memfd")]
    Export {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The BPF program is longer than the kernel accepts (`BPF_MAXINSNS`).
    #[error("seccomp program of {instructions} instructions exceeds the kernel limit of {max}")]
    TooLarge {
        /// Program length.
        instructions: usize,
        /// The limit.
        max: usize,
    },
    /// Filters are only built for x86_64.
    #[error("seccomp filters are only built for x86_64")]
    UnsupportedArch,
}

/// An `errno` value returned by a raw syscall in [`CompiledFilter::install`](super::CompiledFilter::install).
///
/// A plain integer so that reading it allocates nothing (it is used after `fork`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current `errno`. Async-signal-safe.
    pub fn last() -> Self {
        // SAFETY: __errno_location returns a valid pointer to the calling thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}
