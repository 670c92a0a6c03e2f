//! Opening a file that decides what the root agent trusts (the trust policy, its key files and
//! Sigstore trusted root, the rollback state) or where it writes (an exporter's output, a key
//! pair), only when no other user can have put it there or swap it afterwards.
//!
//! # The rule ("safe path", as OpenSSH's `safe_path`, extended to sticky directories)
//! - A **trusted owner** is root or the effective uid of this process.
//! - The **file** is opened with `O_NOFOLLOW` (a symlink as the last component is refused, not
//!   followed), `O_NONBLOCK` (a planted FIFO cannot block the open) and checked on its fd
//!   (`fstat`): a regular file, owned by a trusted owner, not writable by group or others.
//! - **Every directory** from `/` down to the one holding the file must be owned by a trusted
//!   owner and not writable by group or others — except a directory that is **sticky and owned
//!   by root**, such as `/tmp` (mode 1777): there others may create entries but cannot rename or
//!   remove anyone else's, and the next component is itself checked for a trusted owner, so a
//!   name another user created first is refused, not used.
//! - **Symlinks on the way** are followed by hand (at most 40): each must be owned by a trusted
//!   owner (its directory was checked already), and its target is walked by the same rule.
//! - The walk opens each component with `O_PATH | O_NOFOLLOW` relative to the previous one and
//!   checks what it opened (`fstat` on the fd), then opens the file relative to the last
//!   directory's fd: no path is resolved twice, so nothing can be swapped between check and use.
//!
//! A directory the caller will write into may be judged more strictly ([`LastDir::Private`]:
//! not even a sticky root-owned directory), e.g. the plugin directory `plugin install` fills.

use rustix::fs::{FileType, Mode, OFlags, Stat};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed in one walk (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// `S_ISVTX`.
const STICKY: u32 = 0o1000;

/// What is wrong with a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The last component is a symlink.
    Symlink,
    /// Not a regular file.
    NotRegularFile,
    /// A component on the way is not a directory.
    NotDirectory,
    /// Owned by someone else than root or the effective uid.
    Owner {
        /// The owner.
        uid: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// A file writable by group or others.
    Writable {
        /// Its mode bits.
        mode: u32,
    },
    /// A directory writable by group or others (and not sticky and root-owned, where allowed).
    DirWritable {
        /// Its mode bits.
        mode: u32,
        /// Whether a sticky root-owned directory would have been accepted here.
        sticky_ok: bool,
    },
    /// A hard-linked file (another directory entry can change it).
    HardLinked {
        /// Its link count.
        links: u64,
    },
    /// Too many symlinks on the way.
    TooManySymlinks,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Symlink => f.write_str("is a symlink (refused, not followed)"),
            Problem::NotRegularFile => f.write_str("is not a regular file"),
            Problem::NotDirectory => f.write_str("is not a directory"),
            Problem::Owner { uid, euid } if *euid == 0 => {
                write!(f, "is owned by uid {uid}, not by root")
            }
            Problem::Owner { uid, euid } => {
                write!(f, "is owned by uid {uid}, not by root or uid {euid}")
            }
            Problem::Writable { mode } => write!(
                f,
                "is writable by group or others (mode {:04o}; make it 0644 or stricter)",
                mode & 0o7777
            ),
            Problem::DirWritable { mode, sticky_ok } => write!(
                f,
                "directory is writable by group or others (mode {:04o}){}",
                mode & 0o7777,
                if *sticky_ok {
                    " and is not a sticky root-owned directory like /tmp"
                } else {
                    ""
                }
            ),
            Problem::HardLinked { links } => write!(f, "has {links} hard links"),
            Problem::TooManySymlinks => write!(f, "more than {MAX_SYMLINKS} symlinks on the way"),
        }
    }
}

/// A path that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SafePathError {
    /// Unsafe: another user could have written or could swap it.
    #[error("{}: {problem}", path.display())]
    Unsafe {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        problem: Problem,
    },
    /// It cannot be opened or examined.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SafePathError {
    /// Whether something on the way does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SafePathError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The path the error names.
    pub fn path(&self) -> &Path {
        match self {
            SafePathError::Unsafe { path, .. } | SafePathError::Io { path, .. } => path,
        }
    }
}

/// How the last directory of a walk is judged (the ones above it always by the sticky rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastDir {
    /// Not writable by group or others at all.
    Private,
    /// Like every directory above it: a sticky root-owned directory is accepted.
    StickyRootOk,
}

/// The effective uid.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Root or the effective uid.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

fn io_err(path: &Path) -> impl Fn(rustix::io::Errno) -> SafePathError + '_ {
    move |e| SafePathError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn unsafe_at(path: &Path, problem: Problem) -> SafePathError {
    SafePathError::Unsafe {
        path: path.to_path_buf(),
        problem,
    }
}

/// Checks a directory's owner and mode.
fn check_dir(st: &Stat, sticky_ok: bool) -> Result<(), Problem> {
    if !trusted_owner(st.st_uid) {
        return Err(Problem::Owner {
            uid: st.st_uid,
            euid: euid(),
        });
    }
    let mode = st.st_mode;
    if mode & 0o022 != 0 && !(sticky_ok && mode & STICKY != 0 && st.st_uid == 0) {
        return Err(Problem::DirWritable { mode, sticky_ok });
    }
    Ok(())
}

/// Checks a file's type, owner, mode and link count on its `fstat`.
pub fn check_file(path: &Path, st: &Stat) -> Result<(), SafePathError> {
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(unsafe_at(path, Problem::NotRegularFile));
    }
    if !trusted_owner(st.st_uid) {
        return Err(unsafe_at(
            path,
            Problem::Owner {
                uid: st.st_uid,
                euid: euid(),
            },
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(unsafe_at(
            path,
            Problem::Writable {
                mode: st.st_mode & 0o7777,
            },
        ));
    }
    Ok(())
}

/// A directory reached by the safe walk: an `O_PATH` fd to use with the `*at` calls, and the
/// path it was reached by (symlinks resolved).
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl SafeDir {
    /// The directory's fd (`O_PATH`: good as the `dirfd` of `openat`, `mkdirat`, `renameat`,
    /// `unlinkat`, not for reading entries).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The resolved path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn components(p: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

fn open_path(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Walks `path` (relative paths start at the current directory) by the rule in the module doc
/// and returns its last directory; `last` says how that one is judged.
pub fn open_dir(path: &Path, last: LastDir) -> Result<SafeDir, SafePathError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|source| SafePathError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .join(path)
    };
    let root_path = PathBuf::from("/");
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(&root_path))?;
    let st = rustix::fs::fstat(&root).map_err(io_err(&root_path))?;
    check_dir(&st, true).map_err(|p| unsafe_at(&root_path, p))?;
    let mut stack = vec![(root, root_path)];
    let mut queue: VecDeque<OsString> = components(&abs).collect();
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (top, top_path) = stack.last().expect("the root stays on the stack");
        let here = top_path.join(&name);
        let fd = open_path(top, &name).map_err(io_err(&here))?;
        let st = rustix::fs::fstat(&fd).map_err(io_err(&here))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(unsafe_at(&here, Problem::TooManySymlinks));
                }
                if !trusted_owner(st.st_uid) {
                    return Err(unsafe_at(
                        &here,
                        Problem::Owner {
                            uid: st.st_uid,
                            euid: euid(),
                        },
                    ));
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(io_err(&here))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for c in components(&target).rev() {
                    queue.push_front(c);
                }
            }
            FileType::Directory => {
                // The last directory is judged at the end (a trailing `..` can make any one last).
                check_dir(&st, true).map_err(|p| unsafe_at(&here, p))?;
                stack.push((fd, here));
            }
            _ => return Err(unsafe_at(&here, Problem::NotDirectory)),
        }
    }
    let (fd, path) = stack.pop().expect("the root stays on the stack");
    let st = rustix::fs::fstat(&fd).map_err(io_err(&path))?;
    check_dir(&st, last == LastDir::StickyRootOk).map_err(|p| unsafe_at(&path, p))?;
    Ok(SafeDir { fd, path })
}

/// `path`'s directory and file name (`.` for a bare name).
pub fn split(path: &Path) -> Result<(&Path, &OsStr), SafePathError> {
    let name = path.file_name().ok_or_else(|| SafePathError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "names no file"),
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, name))
}

/// Opens `path` for reading by the rule in the module doc; the file and its `fstat`.
pub fn open_file(path: &Path) -> Result<(std::fs::File, Stat), SafePathError> {
    let (dir, name) = split(path)?;
    // An unsafe directory is named; a missing or unreadable one is reported as the file's.
    let dir = open_dir(dir, LastDir::StickyRootOk).map_err(|e| match e {
        SafePathError::Io { source, .. } => SafePathError::Io {
            path: path.to_path_buf(),
            source,
        },
        unsafe_dir => unsafe_dir,
    })?;
    let fd = rustix::fs::openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            unsafe_at(path, Problem::Symlink)
        } else {
            io_err(path)(e)
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(io_err(path))?;
    check_file(path, &st)?;
    Ok((std::fs::File::from(fd), st))
}

/// Reads a file opened by [`open_file`], at most `cap` bytes (`cap + 1` are read, so the caller
/// can tell an oversize file).
pub fn read_capped(path: &Path, mut f: std::fs::File, cap: u64) -> Result<Vec<u8>, SafePathError> {
    use std::io::Read as _;
    let mut v = Vec::new();
    (&mut f)
        .take(cap + 1)
        .read_to_end(&mut v)
        .map_err(|source| SafePathError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn accepts_a_private_file_under_tmp() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("trust.yaml");
        std::fs::write(&f, "allow_unsigned: false\n").unwrap();
        chmod(&f, 0o644);
        let (file, st) = open_file(&f).unwrap();
        assert_eq!(st.st_size, 22);
        assert_eq!(read_capped(&f, file, 100).unwrap().len(), 22);
    }

    #[test]
    fn refuses_writable_files_symlinks_and_writable_directories() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("trust.yaml");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o666);
        let e = open_file(&f).unwrap_err();
        assert!(
            matches!(&e, SafePathError::Unsafe { problem: Problem::Writable { mode: 0o666 }, path } if path == &f),
            "{e}"
        );
        assert!(e.to_string().contains("mode 0666"), "{e}");
        chmod(&f, 0o644);
        let link = d.path().join("link.yaml");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = open_file(&link).unwrap_err();
        assert!(
            matches!(
                &e,
                SafePathError::Unsafe {
                    problem: Problem::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("k.pub"), "k").unwrap();
        chmod(&sub, 0o775);
        let e = open_file(&sub.join("k.pub")).unwrap_err();
        assert!(
            matches!(&e, SafePathError::Unsafe { problem: Problem::DirWritable { .. }, path } if path == &sub),
            "{e}"
        );
        // Sticky: accepted only when root owns it (as root, the tempdir is root's; otherwise ours).
        chmod(&sub, 0o1777);
        let r = open_file(&sub.join("k.pub"));
        assert_eq!(r.is_ok(), euid() == 0, "{r:?}");
    }

    #[test]
    fn follows_trusted_symlinks_in_directories() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), "x").unwrap();
        chmod(&real.join("f"), 0o600);
        std::os::unix::fs::symlink("real", d.path().join("alias")).unwrap();
        let dir = open_dir(&d.path().join("alias"), LastDir::Private).unwrap();
        assert_eq!(dir.path(), real);
        open_file(&d.path().join("alias/f")).unwrap();
        open_file(&d.path().join("alias/../real/f")).unwrap();
        // A FIFO is not opened for long and is refused.
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = open_file(&fifo).unwrap_err();
        assert!(
            matches!(
                e,
                SafePathError::Unsafe {
                    problem: Problem::NotRegularFile,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            open_file(&d.path().join("missing"))
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn tmp_is_accepted_only_as_a_sticky_root_directory() {
        let tmp = Path::new("/tmp");
        let st = rustix::fs::stat(tmp).unwrap();
        if st.st_uid == 0 && st.st_mode & 0o1777 == 0o1777 {
            open_dir(tmp, LastDir::StickyRootOk).unwrap();
            let e = open_dir(tmp, LastDir::Private).unwrap_err();
            assert!(e.to_string().contains("writable by group or others"), "{e}");
        }
    }
}
