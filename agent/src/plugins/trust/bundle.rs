//! Reading a bundle directory without trusting its shape: every open is `openat2` beneath the
//! bundle's directory fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`
//! and `O_NOFOLLOW`, so no path in the bundle can leave it, symlinks anywhere are refused, and
//! hardlinked files (whose content another directory could change) are refused. Each file is
//! read once through its fd and hashed; the entrypoint is copied into a memfd while it is hashed
//! (`sealed.rs`), so what runs later is exactly what was hashed.

use super::keys::sha256;
use super::manifest::{MAX_MANIFEST_BYTES, RESERVED_FILES};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Deepest directory nesting inside a bundle.
pub const MAX_DIR_DEPTH: usize = 16;
/// Most files in a bundle.
pub const MAX_FILES: usize = 4096;
/// Largest single file.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// Largest detached signature file.
const MAX_SIG_BYTES: u64 = 64 * 1024;
/// Largest `manifest.sigstore.json`.
const MAX_SIGSTORE_BYTES: u64 = 1024 * 1024;

/// Why a bundle directory could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// I/O failure (names the bundle-relative path).
    #[error("{path}: {msg}")]
    Io {
        /// Bundle-relative path.
        path: String,
        /// What failed.
        msg: String,
    },
    /// A symlink, hardlink, device, FIFO or socket, or a name that is not UTF-8.
    #[error("{path}: {msg}")]
    Shape {
        /// Bundle-relative path.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// Too many files, too deep, too large.
    #[error("{0}")]
    Limit(String),
}

/// What was read.
#[derive(Debug, Default)]
pub struct BundleContents {
    /// `manifest.sig`, when present.
    pub detached_sig: Option<Vec<u8>>,
    /// `manifest.sigstore.json`, when present.
    pub sigstore_bundle: Option<Vec<u8>>,
    /// SHA-256 of every other regular file, by bundle-relative path.
    pub digests: BTreeMap<String, [u8; 32]>,
    /// The file named `keep`, copied into a memfd while it was hashed (not sealed yet).
    pub kept: Option<super::sealed::ExeWriter>,
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn io_err(path: &str) -> impl Fn(std::io::Error) -> ReadError + '_ {
    move |e| ReadError::Io {
        path: path.to_string(),
        msg: e.to_string(),
    }
}

/// Opens a regular file beneath `dir`; refuses anything else and hardlinked files.
fn open_file(dir: impl AsFd, rel: &str) -> Result<(std::fs::File, u64), ReadError> {
    let fd: OwnedFd = rustix::fs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        resolve(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::XDEV {
            ReadError::Shape {
                path: rel.into(),
                msg: "is or passes through a symlink (symlinks are not allowed in bundles)".into(),
            }
        } else {
            ReadError::Io {
                path: rel.into(),
                msg: e.to_string(),
            }
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io {
        path: rel.into(),
        msg: e.to_string(),
    })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ReadError::Shape {
            path: rel.into(),
            msg: "is not a regular file".into(),
        });
    }
    if st.st_nlink != 1 {
        return Err(ReadError::Shape {
            path: rel.into(),
            msg: format!(
                "has {} hard links (hardlinks are not allowed in bundles)",
                st.st_nlink
            ),
        });
    }
    Ok((std::fs::File::from(fd), st.st_size as u64))
}

/// Reads at most `cap` bytes (`cap + 1` to let the caller detect oversize).
fn read_capped(f: &mut std::fs::File, rel: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
    let mut v = Vec::new();
    f.take(cap + 1).read_to_end(&mut v).map_err(io_err(rel))?;
    Ok(v)
}

/// An open bundle directory: everything is read through this one fd, so renaming or replacing
/// the path afterwards changes nothing.
#[derive(Debug)]
pub struct BundleDir {
    root: OwnedFd,
}

impl BundleDir {
    /// Opens `dir` and reads its `manifest.yaml` (at most the size cap + 1 bytes, so the parser
    /// reports an oversize manifest).
    pub fn open(dir: &Path) -> Result<(BundleDir, Vec<u8>), ReadError> {
        let root: OwnedFd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ReadError::Io {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let (mut f, _) = open_file(&root, "manifest.yaml")?;
        let manifest = read_capped(&mut f, "manifest.yaml", MAX_MANIFEST_BYTES as u64)?;
        Ok((BundleDir { root }, manifest))
    }

    /// Reads the signatures, the digest of every other file, and the bytes of `keep` (the
    /// entrypoint) if it is a file of the bundle.
    pub fn read(&self, keep: Option<&str>) -> Result<BundleContents, ReadError> {
        let mut out = BundleContents::default();
        walk(&self.root, "", 0, keep, &mut out)?;
        Ok(out)
    }
}

fn walk(
    dir: &OwnedFd,
    prefix: &str,
    depth: usize,
    keep: Option<&str>,
    out: &mut BundleContents,
) -> Result<(), ReadError> {
    if depth > MAX_DIR_DEPTH {
        return Err(ReadError::Limit(format!(
            "{prefix}: directories nested deeper than {MAX_DIR_DEPTH}"
        )));
    }
    let here = if prefix.is_empty() { "." } else { prefix };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(|e| ReadError::Io {
        path: here.into(),
        msg: e.to_string(),
    })? {
        let entry = entry.map_err(|e| ReadError::Io {
            path: here.into(),
            msg: e.to_string(),
        })?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = std::str::from_utf8(name).map_err(|_| ReadError::Shape {
            path: format!("{prefix}{}", String::from_utf8_lossy(name)),
            msg: "file name is not UTF-8".into(),
        })?;
        names.push(name.to_string());
    }
    names.sort();
    for name in names {
        let rel = format!("{prefix}{name}");
        let st =
            rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                ReadError::Io {
                    path: rel.clone(),
                    msg: e.to_string(),
                }
            })?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                return Err(ReadError::Shape {
                    path: rel,
                    msg: "is a symlink (symlinks are not allowed in bundles)".into(),
                });
            }
            FileType::Directory => {
                let sub = rustix::fs::openat2(
                    dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                    resolve(),
                )
                .map_err(|e| ReadError::Io {
                    path: rel.clone(),
                    msg: e.to_string(),
                })?;
                walk(&sub, &format!("{rel}/"), depth + 1, keep, out)?;
            }
            FileType::RegularFile => {
                if prefix.is_empty() && RESERVED_FILES.contains(&name.as_str()) {
                    let (mut f, _) = open_file(dir, &name)?;
                    match name.as_str() {
                        "manifest.sig" => {
                            out.detached_sig = Some(read_capped(&mut f, &rel, MAX_SIG_BYTES)?)
                        }
                        "manifest.sigstore.json" => {
                            out.sigstore_bundle =
                                Some(read_capped(&mut f, &rel, MAX_SIGSTORE_BYTES)?)
                        }
                        _ => {}
                    }
                    continue;
                }
                if out.digests.len() >= MAX_FILES {
                    return Err(ReadError::Limit(format!("more than {MAX_FILES} files")));
                }
                let (mut f, size) = open_file(dir, &name)?;
                let too_big =
                    || ReadError::Limit(format!("{rel}: larger than {MAX_FILE_BYTES} bytes"));
                if size > MAX_FILE_BYTES {
                    return Err(too_big());
                }
                if keep == Some(rel.as_str()) {
                    // The entrypoint: copied into a memfd through this fd, hashed while copied.
                    let mut w = super::sealed::ExeWriter::new(&rel).map_err(|e| ReadError::Io {
                        path: rel.clone(),
                        msg: e.to_string(),
                    })?;
                    let n = w.copy_from(&mut f, MAX_FILE_BYTES).map_err(io_err(&rel))?;
                    if n > MAX_FILE_BYTES {
                        return Err(too_big());
                    }
                    out.digests.insert(rel.clone(), w.sha256());
                    out.kept = Some(w);
                } else {
                    let bytes = read_capped(&mut f, &rel, MAX_FILE_BYTES)?;
                    if bytes.len() as u64 > MAX_FILE_BYTES {
                        return Err(too_big());
                    }
                    out.digests.insert(rel.clone(), sha256(&bytes));
                }
            }
            _ => {
                return Err(ReadError::Shape {
                    path: rel,
                    msg: "is a device, FIFO or socket".into(),
                });
            }
        }
    }
    Ok(())
}
