//! A compiled filter and its allocation-free installation.

use std::fmt;

use super::Action;
use super::error::{Errno, SeccompError};

/// The kernel's `BPF_MAXINSNS`.
pub(crate) const BPF_MAXINSNS: usize = 4096;

/// A seccomp BPF program, ready to install after `fork`.
///
/// Build it in the parent with [`compile`](super::compile) (libseccomp allocates and is not
/// async-signal-safe), move it into the pre-exec child, and call [`install`](Self::install) there as
/// the last step before `execve`.
#[derive(Clone)]
pub struct CompiledFilter {
    pub(crate) profile: String,
    pub(crate) action: Action,
    pub(crate) network: bool,
    pub(crate) program: Box<[libc::sock_filter]>,
}

impl CompiledFilter {
    /// The profile it was compiled from.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The action for syscalls the profile does not allow.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether the network rules are part of the filter.
    pub fn network(&self) -> bool {
        self.network
    }

    /// Number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// The program as bytes (`struct sock_filter` array, native endian), e.g. for a helper process.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.program.len() * 8);
        for i in self.program.iter() {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    /// Rebuilds a filter from [`to_bytes`](Self::to_bytes) output, e.g. in the sandbox helper after
    /// the agent compiled (and cached) it: spawning then costs no YAML parsing or libseccomp work.
    ///
    /// Only for bytes from a trusted channel (the agent's own spec pipe): the program is not
    /// re-validated against the profile, only checked for shape; the kernel verifies the BPF.
    ///
    /// # Errors
    ///
    /// [`SeccompError::Export`] when `bytes` is not a non-empty `sock_filter` array,
    /// [`SeccompError::TooLarge`] beyond `BPF_MAXINSNS`.
    pub fn from_bytes(
        profile: &str,
        action: Action,
        network: bool,
        bytes: &[u8],
    ) -> Result<Self, SeccompError> {
        let program = Self::program_from_bytes(bytes).ok_or_else(|| SeccompError::Export {
            source: std::io::Error::other(format!(
                "{} bytes are not a sock_filter array",
                bytes.len()
            )),
        })?;
        if program.len() > BPF_MAXINSNS {
            return Err(SeccompError::TooLarge {
                instructions: program.len(),
                max: BPF_MAXINSNS,
            });
        }
        Ok(CompiledFilter {
            profile: profile.to_string(),
            action,
            network,
            program,
        })
    }

    /// Parses a `struct sock_filter` array (native endian).
    pub(crate) fn program_from_bytes(bytes: &[u8]) -> Option<Box<[libc::sock_filter]>> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(8)
                .map(|c| libc::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect(),
        )
    }

    /// Installs the filter on the calling thread with a raw `seccomp(SECCOMP_SET_MODE_FILTER)`.
    ///
    /// Performs exactly one syscall and no allocation, so it may run in a child after `fork` of a
    /// multi-threaded process.
    ///
    /// Preconditions, the caller's job:
    /// - `prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)` has been called (or the thread has
    ///   `CAP_SYS_ADMIN`), otherwise the kernel answers `EACCES`;
    /// - the process is single-threaded (the filter applies to the calling thread and the threads it
    ///   creates later; no `TSYNC`);
    /// - everything the sandbox setup still needs is done: after this only the syscalls of the
    ///   profile and `execve` work.
    ///
    /// # Errors
    ///
    /// The `errno` of `seccomp(2)`: `EACCES` without `no_new_privs`, `EINVAL`/`EFAULT` for a bad
    /// program (not produced by [`compile`](super::compile)), `ENOMEM`.
    pub fn install(&self) -> Result<(), Errno> {
        let prog = libc::sock_fprog {
            // compile() rejects programs longer than BPF_MAXINSNS (4096), so this cannot truncate.
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to a valid sock_filter array of `len` instructions that outlives the
        // call; the kernel copies the program and does not keep the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                &raw const prog,
            )
        };
        if rc == 0 { Ok(()) } else { Err(Errno::last()) }
    }
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("profile", &self.profile)
            .field("action", &self.action)
            .field("network", &self.network)
            .field("instructions", &self.program.len())
            .finish()
    }
}
