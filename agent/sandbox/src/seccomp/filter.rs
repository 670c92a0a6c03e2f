//! A compiled filter and its allocation-free installation.

use std::fmt;

use super::Action;
use super::error::{Errno, SeccompError};

/// The kernel's `BPF_MAXINSNS`.
pub(crate) const BPF_MAXINSNS: usize = 4096;

/// A seccomp BPF program, ready to install in the plugin's child.
///
/// Build it in the agent with [`compile`](super::compile) (libseccomp allocates and is not
/// async-signal-safe); the child (`exec.rs`, between `clone` and `execveat`, sharing the agent's
/// memory) calls [`install`](Self::install) as the last step before the exec.
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

    /// Parses the program libseccomp exported (a `struct sock_filter` array, native endian):
    /// non-empty, whole instructions, at most `BPF_MAXINSNS` of them.
    pub(crate) fn program_from_bytes(
        bytes: &[u8],
    ) -> Result<Box<[libc::sock_filter]>, SeccompError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return Err(SeccompError::Export {
                source: std::io::Error::other(format!(
                    "libseccomp exported {} bytes, not a sock_filter array",
                    bytes.len()
                )),
            });
        }
        let program: Box<[libc::sock_filter]> = bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        if program.len() > BPF_MAXINSNS {
            return Err(SeccompError::TooLarge {
                instructions: program.len(),
                max: BPF_MAXINSNS,
            });
        }
        Ok(program)
    }

    /// Installs the filter on the calling thread with a raw `seccomp(SECCOMP_SET_MODE_FILTER)`.
    ///
    /// Performs exactly one syscall and no allocation, so it may run in the plugin's child between
    /// `clone` and `execveat` (or after `fork` of a multi-threaded process).
    ///
    /// Preconditions, the caller's job:
    /// - `prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)` has been called (or the thread has
    ///   `CAP_SYS_ADMIN`), otherwise the kernel answers `EACCES`;
    /// - the process is single-threaded (the filter applies to the calling thread and the threads it
    ///   creates later; no `TSYNC`);
    /// - everything the sandbox setup still needs is done: after this only the syscalls of the
    ///   profile (and `execveat` of the plugin) work.
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
