//! Reading a bundle directory without trusting its shape: every open is `openat2` beneath the
//! bundle's directory fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`
//! and `O_NOFOLLOW`, so no path in the bundle can leave it, symlinks anywhere are refused, and
//! hardlinked files (whose content another directory could change) are refused. Each file is
//! read once through its fd and hashed; the entrypoint is copied into a memfd while it is hashed
//! (`sealed.rs`), so what runs later is exactly what was hashed.
//!
//! [`BundleDir::visit`] is the one walk: verification hashes through it, and `srediag plugin
//! install` copies through it (`cli/plugin_install.rs`), so both see the same files with the same
//! refusals and limits.

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
/// Largest bundle: the sum of its files' sizes.
pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024 * 1024;
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
fn open_file(dir: impl AsFd, rel: &str) -> Result<(std::fs::File, rustix::fs::Stat), ReadError> {
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
    Ok((std::fs::File::from(fd), st))
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

/// What [`BundleDir::visit`] meets, in a stable order (names sorted, a directory before what it
/// holds).
#[derive(Debug)]
pub enum Entry<'a> {
    /// A directory (bundle-relative path), opened beneath its parent; its entries follow.
    Dir {
        /// Bundle-relative path.
        rel: &'a str,
    },
    /// A regular file with one link, opened `O_NOFOLLOW | O_NONBLOCK` beneath its directory.
    File {
        /// Bundle-relative path.
        rel: &'a str,
        /// The open file.
        file: std::fs::File,
        /// Its size and mode when opened (`fstat`).
        size: u64,
        /// Its permission bits when opened.
        mode: u32,
    },
}

impl BundleDir {
    /// Opens the directory `dir` (the path itself may be a symlink: the operator named it;
    /// nothing beneath it may).
    pub fn open_root(dir: &Path) -> Result<BundleDir, ReadError> {
        let root: OwnedFd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ReadError::Io {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        Ok(BundleDir { root })
    }

    /// Opens `dir` and reads its `manifest.yaml` (at most the size cap + 1 bytes, so the parser
    /// reports an oversize manifest).
    pub fn open(dir: &Path) -> Result<(BundleDir, Vec<u8>), ReadError> {
        let b = BundleDir::open_root(dir)?;
        let (mut f, _) = open_file(&b.root, "manifest.yaml")?;
        let manifest = read_capped(&mut f, "manifest.yaml", MAX_MANIFEST_BYTES as u64)?;
        Ok((b, manifest))
    }

    /// Walks the bundle: symlinks anywhere, hardlinked files, devices, FIFOs, sockets and names
    /// that are not UTF-8 are refused; at most [`MAX_DIR_DEPTH`] levels, [`MAX_FILES`] files,
    /// [`MAX_FILE_BYTES`] per file and [`MAX_BUNDLE_BYTES`] in all (sizes as opened; a visitor
    /// that reads must cap its reads too, a file can grow while open).
    pub fn visit(
        &self,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let mut totals = Totals::default();
        walk(&self.root, "", 0, &mut totals, f)
    }

    /// Reads the signatures, the digest of every other file, and the bytes of `keep` (the
    /// entrypoint) if it is a file of the bundle.
    pub fn read(&self, keep: Option<&str>) -> Result<BundleContents, ReadError> {
        let mut out = BundleContents::default();
        self.visit(&mut |e| {
            let Entry::File { rel, mut file, .. } = e else {
                return Ok(());
            };
            match rel {
                "manifest.sig" => {
                    out.detached_sig = Some(read_capped(&mut file, rel, MAX_SIG_BYTES)?);
                }
                "manifest.sigstore.json" => {
                    out.sigstore_bundle = Some(read_capped(&mut file, rel, MAX_SIGSTORE_BYTES)?);
                }
                _ if RESERVED_FILES.contains(&rel) => {}
                _ if keep == Some(rel) => {
                    // The entrypoint: copied into a memfd through this fd, hashed while copied.
                    let mut w = super::sealed::ExeWriter::new(rel).map_err(|e| ReadError::Io {
                        path: rel.to_string(),
                        msg: e.to_string(),
                    })?;
                    let n = w
                        .copy_from(&mut file, MAX_FILE_BYTES)
                        .map_err(io_err(rel))?;
                    if n > MAX_FILE_BYTES {
                        return Err(too_big(rel));
                    }
                    out.digests.insert(rel.to_string(), w.sha256());
                    out.kept = Some(w);
                }
                _ => {
                    let d = hash_capped(&mut file, rel, MAX_FILE_BYTES)?;
                    out.digests.insert(rel.to_string(), d);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

fn too_big(rel: &str) -> ReadError {
    ReadError::Limit(format!("{rel}: larger than {MAX_FILE_BYTES} bytes"))
}

/// SHA-256 of at most `cap` bytes, streamed (a large file costs no memory); more is an error.
fn hash_capped(f: &mut std::fs::File, rel: &str, cap: u64) -> Result<[u8; 32], ReadError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err(rel))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > cap {
            return Err(too_big(rel));
        }
        h.update(&buf[..k]);
    }
    Ok(h.finalize().into())
}

#[derive(Default)]
struct Totals {
    files: usize,
    bytes: u64,
}

fn walk(
    dir: &OwnedFd,
    prefix: &str,
    depth: usize,
    totals: &mut Totals,
    visit: &mut dyn FnMut(Entry<'_>) -> Result<(), ReadError>,
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
                visit(Entry::Dir { rel: &rel })?;
                walk(&sub, &format!("{rel}/"), depth + 1, totals, visit)?;
            }
            FileType::RegularFile => {
                totals.files += 1;
                if totals.files > MAX_FILES {
                    return Err(ReadError::Limit(format!("more than {MAX_FILES} files")));
                }
                let (file, st) = open_file(dir, &name)?;
                let size = st.st_size as u64;
                if size > MAX_FILE_BYTES {
                    return Err(too_big(&rel));
                }
                totals.bytes += size;
                if totals.bytes > MAX_BUNDLE_BYTES {
                    return Err(ReadError::Limit(format!(
                        "files larger than {MAX_BUNDLE_BYTES} bytes in all"
                    )));
                }
                visit(Entry::File {
                    rel: &rel,
                    file,
                    size,
                    mode: st.st_mode & 0o7777,
                })?;
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
