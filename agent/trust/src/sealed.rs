//! The executable a plugin runs: a sealed memfd holding exactly the bytes that were hashed.
//!
//! The bundle reader copies the entrypoint from its `openat2` fd into a memfd
//! (`MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC`), hashing every byte it copies. Sealing adds
//! `F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`: from then on nobody — not root, not
//! the agent — can change the content. [`ExeWriter::seal`] then reads the sealed content back
//! through the memfd and hashes it again, and the loader compares that digest with the one the
//! signature covers. The plugin's process (the sandbox crate's `exec.rs`, between `clone` and the
//! exec) runs the memfd with `execveat(fd, "", …, AT_EMPTY_PATH)`; no path is ever opened again
//! between the check and the exec.

use rustix::fs::{MemfdFlags, SealFlags};
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Errors while preparing the sealed executable.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A memfd operation failed.
    #[error("sealed executable for {name}: {op}: {source}")]
    Io {
        /// The plugin/file the memfd is for.
        name: String,
        /// Which step (`memfd_create`, `write`, `seal`, `read back`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The content read back differs from what was hashed while copying (never expected).
    #[error(
        "sealed executable for {name}: content read back has sha256 {actual}, copied bytes had {expected}"
    )]
    Mismatch {
        /// The plugin/file.
        name: String,
        /// Digest while copying.
        expected: String,
        /// Digest read back.
        actual: String,
    },
}

/// A memfd being filled; every byte written is hashed.
#[derive(Debug)]
pub struct ExeWriter {
    name: String,
    fd: OwnedFd,
    hasher: Sha256,
    len: u64,
}

/// A sealed memfd whose content has the digest [`SealedExe::sha256`].
#[derive(Debug)]
pub struct SealedExe {
    fd: OwnedFd,
    sha256: [u8; 32],
    len: u64,
}

fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    let label = format!("srediag-plugin:{}", name.replace(['/', '\0'], "_"));
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3+) says explicitly that this memfd is meant to be executed (and keeps
    // the kernel from warning or refusing under vm.memfd_noexec=1); older kernels reject the
    // flag with EINVAL and make every memfd executable.
    match rustix::fs::memfd_create(label.as_str(), base | MemfdFlags::EXEC) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::INVAL) => Ok(rustix::fs::memfd_create(label.as_str(), base)?),
        Err(e) => Err(e.into()),
    }
}

impl ExeWriter {
    /// A new, empty memfd named after `name` (shown in `/proc/PID/exe` of the plugin).
    pub fn new(name: &str) -> Result<ExeWriter, SealError> {
        let fd = memfd(name).map_err(|source| SealError::Io {
            name: name.to_string(),
            op: "memfd_create",
            source,
        })?;
        Ok(ExeWriter {
            name: name.to_string(),
            fd,
            hasher: Sha256::new(),
            len: 0,
        })
    }

    /// Appends `buf` (and hashes it).
    pub fn write(&mut self, mut buf: &[u8]) -> Result<(), SealError> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        while !buf.is_empty() {
            match rustix::io::write(&self.fd, buf) {
                Ok(0) => {
                    return Err(self.io("write", std::io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => buf = &buf[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(self.io("write", e.into())),
            }
        }
        Ok(())
    }

    /// Copies everything `r` yields (at most `cap` bytes; more is an error reported by the
    /// caller through the returned length being `cap + 1`).
    pub fn copy_from(&mut self, r: &mut impl std::io::Read, cap: u64) -> std::io::Result<u64> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut r = r.take(cap + 1);
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(self.len),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write(&buf[..n]).map_err(std::io::Error::other)?;
        }
    }

    /// SHA-256 of the bytes written so far.
    pub fn sha256(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// Bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> SealError {
        SealError::Io {
            name: self.name.clone(),
            op,
            source,
        }
    }

    /// Seals the memfd (no write, shrink, grow, and no more seal changes), reads the sealed
    /// content back through the fd and checks that it hashes to what was copied.
    pub fn seal(self) -> Result<SealedExe, SealError> {
        let expected = self.sha256();
        // r-x for everyone: the plugin runs as an unprivileged uid and must be able to exec it.
        rustix::fs::fchmod(&self.fd, rustix::fs::Mode::from_raw_mode(0o555))
            .map_err(|e| self.io("fchmod", e.into()))?;
        // F_SEAL_WRITE fails with EBUSY while a page still has an extra reference: the pages
        // just written can sit in another CPU's LRU batch when the writing thread migrated (seen
        // about once in 2,500 starts here). `mlock` drains every CPU's batch
        // (`lru_add_drain_all`), then the seal is tried again.
        let seals = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
        let mut tries = 0;
        loop {
            match rustix::fs::fcntl_add_seals(&self.fd, seals) {
                Ok(()) => break,
                Err(rustix::io::Errno::BUSY) if tries < 20 => {
                    tries += 1;
                    srediag_sys::mm::drain_lru_batches();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => return Err(self.io("seal", e.into())),
            }
        }
        let sealed = SealedExe {
            fd: self.fd,
            sha256: [0; 32],
            len: self.len,
        };
        let actual = sealed.hash_content().map_err(|source| SealError::Io {
            name: self.name.clone(),
            op: "read back",
            source,
        })?;
        if actual != expected {
            return Err(SealError::Mismatch {
                name: self.name,
                expected: super::keys::hex(&expected),
                actual: super::keys::hex(&actual),
            });
        }
        Ok(SealedExe {
            sha256: actual,
            ..sealed
        })
    }
}

impl SealedExe {
    /// Copies a whole file (`r`) into a new sealed memfd. Used for the unsigned `path:` dev mode,
    /// where there is no bundle; signed bundles go through the bundle reader.
    pub fn from_reader(
        name: &str,
        r: &mut impl std::io::Read,
        cap: u64,
    ) -> Result<SealedExe, SealError> {
        let mut w = ExeWriter::new(name)?;
        let n = w.copy_from(r, cap).map_err(|source| SealError::Io {
            name: name.to_string(),
            op: "copy",
            source,
        })?;
        if n > cap {
            return Err(SealError::Io {
                name: name.to_string(),
                op: "copy",
                source: std::io::Error::other(format!("larger than {cap} bytes")),
            });
        }
        w.seal()
    }

    /// The memfd (fd 5 of the plugin, which `execveat`s it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// SHA-256 of the sealed content (checked by reading it back after sealing).
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Lowercase hex of [`SealedExe::sha256`].
    pub fn sha256_hex(&self) -> String {
        super::keys::hex(&self.sha256)
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty executable.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The seals in place (`F_GET_SEALS`).
    pub fn seals(&self) -> std::io::Result<SealFlags> {
        Ok(rustix::fs::fcntl_get_seals(&self.fd)?)
    }

    /// The whole content, read through the fd (tests, `plugin inspect`).
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        loop {
            let n = rustix::io::pread(&self.fd, &mut buf, off)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            off += n as u64;
        }
    }

    fn hash_content(&self) -> std::io::Result<[u8; 32]> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        loop {
            let n = match rustix::io::pread(&self.fd, &mut buf, off) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Ok(h.finalize().into());
            }
            h.update(&buf[..n]);
            off += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_content_is_immutable_and_hashed() {
        let mut w = ExeWriter::new("t").unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        let s = w.seal().unwrap();
        assert_eq!(s.read_all().unwrap(), b"hello world");
        assert_eq!(s.sha256(), crate::keys::sha256(b"hello world"));
        let seals = s.seals().unwrap();
        assert!(
            seals
                .contains(SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        );
        // Writes, truncation and new seals are refused now.
        assert!(rustix::io::pwrite(&s.fd, b"X", 0).is_err());
        assert!(rustix::fs::ftruncate(&s.fd, 1).is_err());
        assert!(rustix::fs::fcntl_add_seals(&s.fd, SealFlags::EXEC).is_err());
        // Another fd of the same memfd (as /proc/self/fd/N gives) cannot write either.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&s.fd));
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            assert!(std::io::Write::write_all(&mut f, b"X").is_err());
        }
        assert_eq!(s.read_all().unwrap(), b"hello world");
    }
}
