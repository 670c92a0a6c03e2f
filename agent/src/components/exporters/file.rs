//! The `file` exporter: one OTLP/JSON request object per line, rotated by size.
//!
//! The agent runs as root and writes what any OTLP client sent, so the output is opened so that
//! no other user can redirect or read it:
//! - the parent directory (created 0750 when missing) must pass the safe-path rule
//!   (`crate::sys::safe_path`): owned by root, not writable by group or others — a sticky
//!   root-owned directory such as `/tmp` is accepted, since others cannot rename or remove our
//!   file there — and so must every directory above it;
//! - the file is opened beneath that directory's fd with `O_NOFOLLOW | O_NONBLOCK` (a planted
//!   symlink is refused, not followed; a FIFO without a reader fails the open instead of
//!   blocking it), and must be a regular file — or a FIFO, written blocking, never rotated —
//!   with one link, owned by root (or the agent's effective uid): in a sticky directory another
//!   user may have created the name first;
//! - a regular file's mode is set to `file_mode` (default 0640) with `fchmod`, whatever the
//!   umask or an older mode;
//! - rotation renames beneath the same directory fd and creates the new file `O_EXCL`, so a name
//!   planted between the rename and the create is refused too.

use crate::model::Batch;
use crate::pipeline::{BoxFuture, BuildContext, BuildError, ExportError, Exporter};
use crate::sys::safe_path::{self, LastDir, SafeDir, SafePathError};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `file` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file to append to; parent directories are created (mode 0750). Required. The parent
    /// must be owned by root and not writable by others (a sticky root-owned directory such as
    /// /tmp is accepted); a symlink at `path` is refused.
    pub path: PathBuf,
    /// Mode of the file (and of every rotated file), octal with a leading zero (`0640`, or
    /// quoted `"0640"`). Read/write bits only, never writable by others. Default `0640`.
    #[serde(default)]
    pub file_mode: FileMode,
    /// Size-based rotation. Default: rotate at 64 MiB, keep 3 old files.
    #[serde(default)]
    pub rotation: Rotation,
}

/// A file mode as an octal string: `"0640"`, or `0640` unquoted (the leading zero keeps it a
/// string for the YAML parser). A plain number (`640`, or `0o640`, which YAML reads as 416) is
/// refused rather than guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Default for FileMode {
    fn default() -> Self {
        FileMode(0o640)
    }
}

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quoted octal file mode such as \"0640\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FileMode, E> {
                let digits = v.strip_prefix("0o").unwrap_or(v);
                if digits.is_empty() || digits.len() > 4 {
                    return Err(E::custom(format!(
                        "file mode {v:?} is not an octal mode such as \"0640\""
                    )));
                }
                u32::from_str_radix(digits, 8).map(FileMode).map_err(|_| {
                    E::custom(format!(
                        "file mode {v:?} is not an octal mode such as \"0640\""
                    ))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FileMode, E> {
                Err(E::custom(format!(
                    "file mode {v} is a number: quote it as an octal string such as \"0640\" (YAML reads an unquoted 0640 as decimal 640)"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FileMode, E> {
                self.visit_u64(v.unsigned_abs())
            }
        }
        d.deserialize_any(V)
    }
}

/// `rotation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Rotate when the file would grow past this many MiB; 0 disables rotation. Default 64.
    pub max_megabytes: u64,
    /// Old files kept as `PATH.1` (newest) … `PATH.N`. Default 3.
    pub max_backups: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 64,
            max_backups: 3,
        }
    }
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err(("path".into(), "must not be empty".into()));
        }
        if self.path.file_name().is_none() {
            return Err((
                "path".into(),
                format!("{} names no file", self.path.display()),
            ));
        }
        let m = self.file_mode.0;
        if m & !0o666 != 0 || m & 0o002 != 0 {
            return Err((
                "file_mode".into(),
                format!(
                    "{m:04o}: only read and write bits, and never writable by others (e.g. \"0640\", \"0600\")"
                ),
            ));
        }
        Ok(())
    }
}

struct Sink {
    dir: SafeDir,
    name: OsString,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    regular: bool,
    mode: u32,
    max_bytes: u64,
    backups: u32,
}

fn unsafe_err(e: SafePathError) -> (PathBuf, std::io::Error) {
    match e {
        SafePathError::Unsafe { path, problem } => {
            (path, std::io::Error::other(problem.to_string()))
        }
        SafePathError::Io { path, source } => (path, source),
    }
}

/// What [`open_output`] opened.
struct Output {
    file: File,
    size: u64,
    /// A regular file (else a FIFO: no rotation, no mode change).
    regular: bool,
}

/// Opens (`create_new`: creates) `name` beneath `dir` for appending, by the rules in the module
/// doc.
fn open_output(
    dir: &SafeDir,
    name: &OsStr,
    path: &Path,
    mode: u32,
    create_new: bool,
) -> Result<Output, (PathBuf, std::io::Error)> {
    let mut flags = OFlags::WRONLY
        | OFlags::APPEND
        | OFlags::CREATE
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::NOCTTY
        | OFlags::CLOEXEC;
    if create_new {
        flags |= OFlags::EXCL;
    }
    let io = |e: rustix::io::Errno| (path.to_path_buf(), std::io::Error::from(e));
    let problem =
        |p: safe_path::Problem| (path.to_path_buf(), std::io::Error::other(p.to_string()));
    let fd = rustix::fs::openat(dir.fd(), name, flags, Mode::from_raw_mode(mode)).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            problem(safe_path::Problem::Symlink)
        } else if e == rustix::io::Errno::NXIO {
            // `O_NONBLOCK` made the open fail at once instead of waiting for a reader.
            (
                path.to_path_buf(),
                std::io::Error::other("is a FIFO nobody reads (or a socket)"),
            )
        } else {
            io(e)
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(io)?;
    let regular = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => true,
        FileType::Fifo => false,
        _ => return Err(problem(safe_path::Problem::NotRegularFile)),
    };
    if !safe_path::trusted_owner(st.st_uid) {
        return Err(problem(safe_path::Problem::Owner {
            uid: st.st_uid,
            euid: safe_path::euid(),
        }));
    }
    if st.st_nlink != 1 {
        return Err(problem(safe_path::Problem::HardLinked {
            links: st.st_nlink as u64,
        }));
    }
    if regular && st.st_mode & 0o7777 != mode {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io)?;
    }
    // Writes block (a FIFO's reader applies backpressure); O_NONBLOCK was for the open only.
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(io)?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(io)?;
    Ok(Output {
        file: File::from(fd),
        size: st.st_size as u64,
        regular,
    })
}

fn io_of((path, e): (PathBuf, std::io::Error)) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Sink {
    fn backup(&self, i: u32) -> OsString {
        let mut n = self.name.clone();
        n.push(format!(".{i}"));
        n
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let fd = self.dir.fd();
        let gone = |r: rustix::io::Result<()>| match r {
            Err(rustix::io::Errno::NOENT) | Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::from(e)),
        };
        if self.backups == 0 {
            gone(rustix::fs::unlinkat(fd, &self.name, AtFlags::empty()))?;
        } else {
            gone(rustix::fs::unlinkat(
                fd,
                self.backup(self.backups),
                AtFlags::empty(),
            ))?;
            for i in (1..self.backups).rev() {
                gone(rustix::fs::renameat(
                    fd,
                    self.backup(i),
                    fd,
                    self.backup(i + 1),
                ))?;
            }
            rustix::fs::renameat(fd, &self.name, fd, self.backup(1))?;
        }
        let o = open_output(&self.dir, &self.name, &self.path, self.mode, true).map_err(io_of)?;
        self.out = BufWriter::with_capacity(256 * 1024, o.file);
        self.size = o.size;
        self.regular = o.regular;
        Ok(())
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.regular && self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        // Flushed per batch: what the exporter counts as sent is in the file.
        self.out.flush()?;
        self.size += len;
        Ok(())
    }
}

/// The running exporter.
pub struct FileExporter {
    sink: Arc<Mutex<Sink>>,
}

impl FileExporter {
    /// Creates the parent directory and opens the file now, so a bad path fails the start.
    pub fn open(cfg: &Config, ctx: &BuildContext) -> Result<Self, BuildError> {
        let err = |(path, source): (PathBuf, std::io::Error)| BuildError::Open {
            id: format!("exporters.{}.path", ctx.id),
            path,
            source,
        };
        let (dir, name) = safe_path::split(&cfg.path).map_err(|e| err(unsafe_err(e)))?;
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| err((dir.to_path_buf(), e)))?;
        }
        let dir =
            safe_path::open_dir(dir, LastDir::StickyRootOk).map_err(|e| err(unsafe_err(e)))?;
        let mode = cfg.file_mode.0;
        let o = open_output(&dir, name, &cfg.path, mode, false).map_err(err)?;
        Ok(FileExporter {
            sink: Arc::new(Mutex::new(Sink {
                dir,
                name: name.to_os_string(),
                path: cfg.path.clone(),
                out: BufWriter::with_capacity(256 * 1024, o.file),
                size: o.size,
                regular: o.regular,
                mode,
                max_bytes: cfg.rotation.max_megabytes.saturating_mul(1024 * 1024),
                backups: cfg.rotation.max_backups,
            })),
        })
    }
}

/// Serialises a batch as one OTLP/JSON line.
pub fn to_json_line(batch: &Batch) -> Result<Vec<u8>, serde_json::Error> {
    crate::model::to_json(batch)
}

impl Exporter for FileExporter {
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>> {
        let sink = self.sink.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let line = to_json_line(&batch)
                    .map_err(|e| ExportError(format!("cannot encode batch: {e}")))?;
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.write_line(&line)
                    .map_err(|e| ExportError(format!("cannot write {}: {e}", s.path.display())))
            })
            .await
            .map_err(|e| ExportError(format!("writer task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Logs, logs::*};
    use crate::telemetry::Telemetry;

    fn batch(n: usize) -> Batch {
        Batch::Logs(Logs {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            severity_text: "INFO".into(),
                            ..Default::default()
                        };
                        n
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[tokio::test]
    async fn writes_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let cfg = Config {
            path: path.clone(),
            file_mode: FileMode::default(),
            rotation: Rotation {
                max_megabytes: 0,
                max_backups: 2,
            },
        };
        let ctx = BuildContext {
            id: "file".into(),
            telemetry: Telemetry::new(),
        };
        let mut e = FileExporter::open(&cfg, &ctx).unwrap();
        e.sink.lock().unwrap().max_bytes = 300;
        for _ in 0..6 {
            e.export(batch(3)).await.unwrap();
        }
        let mut lines = 0;
        for p in [
            path.clone(),
            path.with_extension("jsonl.1"),
            path.with_extension("jsonl.2"),
        ] {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(
                    v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                        .as_array()
                        .unwrap()
                        .len(),
                    3
                );
                lines += 1;
            }
        }
        assert!(
            path.with_extension("jsonl.1").exists(),
            "no rotation happened"
        );
        assert!(
            !path.with_extension("jsonl.3").exists(),
            "more backups than configured"
        );
        assert!((3..=6).contains(&lines), "lines kept: {lines}");
        // Rotated and fresh files keep the mode.
        for p in [&path, &path.with_extension("jsonl.1")] {
            assert_eq!(mode_of(p), 0o640, "{}", p.display());
        }
    }

    fn ctx() -> BuildContext {
        BuildContext {
            id: "file".into(),
            telemetry: Telemetry::new(),
        }
    }

    fn cfg(path: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            file_mode: FileMode::default(),
            rotation: Rotation::default(),
        }
    }

    fn mode_of(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The attack: another user plants `out.jsonl -> /a/root-only/file` where the exporter will
    /// write. The exporter must refuse with one line naming the path, and not touch the target.
    #[tokio::test]
    async fn planted_symlink_is_refused_and_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shadow");
        std::fs::write(&target, "root:secret\n").unwrap();
        chmod(&target, 0o600);
        let path = dir.path().join("out.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = FileExporter::open(&cfg(&path), &ctx())
            .err()
            .expect("symlink accepted");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("symlink"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:secret\n");
        assert_eq!(mode_of(&target), 0o600);
        // A FIFO nobody reads fails the open at once (it does not block the start).
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = FileExporter::open(&cfg(&path), &ctx())
            .err()
            .expect("FIFO without a reader accepted");
        assert!(e.to_string().contains("FIFO nobody reads"), "{e}");
        // A hard link to another file is refused.
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&target, &path).unwrap();
        let e = FileExporter::open(&cfg(&path), &ctx())
            .err()
            .expect("hardlink accepted");
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:secret\n");
    }

    #[tokio::test]
    async fn output_mode_is_0640_or_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut e = FileExporter::open(&cfg(&path), &ctx()).unwrap();
        e.export(batch(1)).await.unwrap();
        assert_eq!(mode_of(&path), 0o640);
        // An existing file with a looser mode is tightened.
        let older = dir.path().join("older.jsonl");
        std::fs::write(&older, "").unwrap();
        chmod(&older, 0o644);
        let mut c = cfg(&older);
        c.file_mode = FileMode(0o600);
        FileExporter::open(&c, &ctx()).unwrap();
        assert_eq!(mode_of(&older), 0o600);
    }

    #[test]
    fn parent_writable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        let e = FileExporter::open(&cfg(&shared.join("out.jsonl")), &ctx())
            .err()
            .expect("world-writable parent accepted");
        let msg = e.to_string();
        assert!(
            msg.contains(&shared.display().to_string())
                && msg.contains("writable by group or others"),
            "{msg}"
        );
        assert!(!shared.join("out.jsonl").exists());
    }

    #[test]
    fn file_mode_is_a_quoted_octal_string() {
        let c: Config = serde_yaml::from_str("path: /x\nfile_mode: \"0600\"\n").unwrap();
        assert_eq!(c.file_mode, FileMode(0o600));
        assert_eq!(
            serde_yaml::to_string(&c.file_mode).unwrap().trim(),
            "'0600'"
        );
        // serde_yaml reads an unquoted 0640 as the string "0640" (a leading zero is no YAML 1.2
        // integer): octal, as meant. A plain number is refused, never guessed at.
        let c: Config = serde_yaml::from_str("path: /x\nfile_mode: 0640\n").unwrap();
        assert_eq!(c.file_mode, FileMode(0o640));
        let e = serde_yaml::from_str::<Config>("path: /x\nfile_mode: 640\n").unwrap_err();
        assert!(e.to_string().contains("quote it"), "{e}");
        let e = serde_yaml::from_str::<Config>("path: /x\nfile_mode: 0o640\n").unwrap_err();
        assert!(e.to_string().contains("quote it"), "{e}");
        assert!(serde_yaml::from_str::<Config>("path: /x\nfile_mode: \"0999\"\n").is_err());
        let c: Config = serde_yaml::from_str("path: /x\nfile_mode: \"0666\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .1
                .contains("never writable by others")
        );
        let c: Config = serde_yaml::from_str("path: /x\nfile_mode: \"0750\"\n").unwrap();
        assert!(c.validate().is_err());
    }
}
