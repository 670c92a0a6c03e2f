//! `srediag plugin install BUNDLE` and `srediag plugin remove NAME`.
//!
//! Install copies the bundle into a staging directory inside the plugin directory, verifies
//! **the copy** (so what is installed is what was verified, whatever happens to the source),
//! then moves it into place atomically: `rename` when `<plugin-dir>/<name>` is new,
//! `renameat2(RENAME_EXCHANGE)` when it replaces an installed version (a running agent sees the
//! old or the new bundle, never a mix), and removes the old copy. The installed directory is
//! named after the manifest's `name`, so `bundle: <name>` in the configuration finds it. The
//! agent records the rollback mark when it loads the bundle; install only checks it.
//!
//! The source may sit in a directory another user can write, who may swap any file for a
//! symlink (to a root-only file) while install runs. So the copy never resolves a path in the
//! source twice: the bundle's directory is opened once and walked through
//! [`BundleDir::visit`], the same walk verification uses (`openat2` beneath the bundle fd with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, `O_NOFOLLOW | O_NONBLOCK`, `fstat` must say a regular
//! file with one link; sizes capped). The staging directory is created 0700 and every copied
//! file 0600, so until the copy is verified no other user can read it; only then are the final
//! modes set (directories 0755, files 0644, or 0755 when executable in the source). The plugin
//! directory itself must be owned by root (or the installing user) and writable by nobody else
//! (`crate::sys::safe_path`), else nothing is installed.

use super::Output;
use super::exit::{CONFIG, CmdResult, FAILURE, Failure, NO_INPUT, REJECTED, ok};
use super::output::print;
use super::plugin_verify::{load_policy, load_state, verdict};
use crate::plugins::config::DEFAULT_PLUGIN_DIR;
use crate::plugins::trust::Status;
use crate::plugins::trust::bundle::{
    BundleDir, Entry, MAX_BUNDLE_BYTES, MAX_FILE_BYTES, ReadError,
};
use crate::plugins::trust::policy::DEFAULT_POLICY_PATH;
use crate::sys::safe_path::{self, LastDir, SafeDir};
use clap::Args;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `srediag plugin install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The bundle directory to install.
    pub bundle: PathBuf,
    /// The trust policy the bundle must satisfy.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_POLICY_PATH, env = "SREDIAG_TRUST_POLICY")]
    pub policy: PathBuf,
    /// The plugin directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGIN_DIR, env = "SREDIAG_PLUGIN_DIR")]
    pub plugin_dir: PathBuf,
    /// Also check the rollback marks in this state file (read only).
    #[arg(long, value_name = "FILE", env = "SREDIAG_PLUGIN_STATE")]
    pub plugin_state: Option<PathBuf>,
}

/// `srediag plugin remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The installed plugin's name (its directory under the plugin directory).
    pub name: String,
    /// The plugin directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGIN_DIR, env = "SREDIAG_PLUGIN_DIR")]
    pub plugin_dir: PathBuf,
}

/// Mode of the staging directory and its subdirectories until the copy is verified.
const STAGING_DIR_MODE: u32 = 0o700;
/// Mode of every copied file until the copy is verified.
const STAGING_FILE_MODE: u32 = 0o600;
/// Final mode of installed directories and executable files.
const FINAL_EXEC_MODE: u32 = 0o755;
/// Final mode of other installed files.
const FINAL_FILE_MODE: u32 = 0o644;

fn fail(code: u8, msg: String) -> Failure {
    Failure::new(code, msg)
}

/// The staging copy `<plugin-dir>/.install-<pid>-<random>`: removed on drop (after an exchange it
/// holds the previous version, which goes with it).
struct Staging<'a> {
    pdir: &'a SafeDir,
    name: String,
    root: OwnedFd,
    /// Bundle-relative path and final mode of everything copied, in creation order.
    finals: Vec<(String, u32)>,
}

impl<'a> Staging<'a> {
    fn create(pdir: &'a SafeDir) -> std::io::Result<Staging<'a>> {
        let name = format!(
            ".install-{}-{}",
            std::process::id(),
            crate::plugins::trust::keys::hex(&rand4())
        );
        rustix::fs::mkdirat(
            pdir.fd(),
            name.as_str(),
            Mode::from_raw_mode(STAGING_DIR_MODE),
        )?;
        let opened = rustix::fs::openat(
            pdir.fd(),
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let root = match opened {
            Ok(fd) => fd,
            Err(e) => {
                let _ = rustix::fs::unlinkat(pdir.fd(), name.as_str(), AtFlags::REMOVEDIR);
                return Err(e.into());
            }
        };
        Ok(Staging {
            pdir,
            name,
            root,
            finals: Vec::new(),
        })
    }

    fn path(&self) -> PathBuf {
        self.pdir.path().join(&self.name)
    }

    /// Copies the bundle through its fds: directories 0700, files 0600 (`O_EXCL | O_NOFOLLOW`).
    fn copy_from(&mut self, src: &BundleDir) -> Result<(), ReadError> {
        let mut total = 0u64;
        let root = &self.root;
        let finals = &mut self.finals;
        src.visit(&mut |e| {
            let io = |rel: &str| {
                let rel = rel.to_string();
                move |e: std::io::Error| ReadError::Io {
                    path: rel.clone(),
                    msg: e.to_string(),
                }
            };
            match e {
                Entry::Dir { rel } => {
                    rustix::fs::mkdirat(root, rel, Mode::from_raw_mode(STAGING_DIR_MODE))
                        .map_err(|e| io(rel)(e.into()))?;
                    finals.push((rel.to_string(), FINAL_EXEC_MODE));
                }
                Entry::File {
                    rel, file, mode, ..
                } => {
                    let fd = rustix::fs::openat(
                        root,
                        rel,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(STAGING_FILE_MODE),
                    )
                    .map_err(|e| io(rel)(e.into()))?;
                    let mut out = std::fs::File::from(fd);
                    let n = std::io::copy(&mut file.take(MAX_FILE_BYTES + 1), &mut out)
                        .map_err(io(rel))?;
                    if n > MAX_FILE_BYTES {
                        return Err(ReadError::Limit(format!(
                            "{rel}: larger than {MAX_FILE_BYTES} bytes"
                        )));
                    }
                    total += n;
                    if total > MAX_BUNDLE_BYTES {
                        return Err(ReadError::Limit(format!(
                            "files larger than {MAX_BUNDLE_BYTES} bytes in all"
                        )));
                    }
                    let fin = if mode & 0o111 != 0 {
                        FINAL_EXEC_MODE
                    } else {
                        FINAL_FILE_MODE
                    };
                    finals.push((rel.to_string(), fin));
                }
            }
            Ok(())
        })
    }

    /// After verification: the final modes, the staging directory itself first (so while it
    /// is still 0700, everything in it is 0700/0600: what `tests/tests/cli_hardening.rs`
    /// checks).
    fn publish_modes(&self) -> std::io::Result<()> {
        rustix::fs::fchmod(&self.root, Mode::from_raw_mode(FINAL_EXEC_MODE))?;
        for (rel, mode) in &self.finals {
            rustix::fs::chmodat(
                &self.root,
                rel.as_str(),
                Mode::from_raw_mode(*mode),
                AtFlags::empty(),
            )?;
        }
        Ok(())
    }

    /// Moves the copy to `<plugin-dir>/<target>`: exchanged with an installed version (which
    /// then sits under the staging name until drop removes it), or renamed without replacing.
    fn move_to(&self, target: &str) -> std::io::Result<()> {
        let exists = rustix::fs::statat(self.pdir.fd(), target, AtFlags::SYMLINK_NOFOLLOW).is_ok();
        let flags = if exists {
            RenameFlags::EXCHANGE
        } else {
            RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(
            self.pdir.fd(),
            self.name.as_str(),
            self.pdir.fd(),
            target,
            flags,
        )?;
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path());
    }
}

/// A plugin (directory) name: `[a-z0-9][a-z0-9-]{0,62}` (the manifest's name rule).
fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn sync_dir(d: &Path) {
    if let Ok(f) = std::fs::File::open(d) {
        let _ = f.sync_all();
    }
}

/// The plugin directory, created (0755) if missing, checked and opened.
fn plugin_dir(dir: &Path) -> Result<SafeDir, Failure> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| fail(NO_INPUT, format!("--plugin-dir {}: {e}", dir.display())))?;
    safe_path::open_dir(dir, LastDir::Private).map_err(|e| {
        fail(
            CONFIG,
            format!(
                "--plugin-dir: {e} (the plugin directory must be owned by root and writable by no one else; nothing installed)"
            ),
        )
    })
}

/// Verifies, then installs.
pub fn install(a: InstallArgs, out: Output) -> CmdResult {
    let policy = load_policy(&a.policy)?;
    let state = load_state(a.plugin_state.as_deref())?;
    let src = BundleDir::open_root(&a.bundle)
        .map_err(|e| fail(NO_INPUT, format!("bundle {}: {e}", a.bundle.display())))?;
    let pdir = plugin_dir(&a.plugin_dir)?;
    let mut staging = Staging::create(&pdir).map_err(|e| {
        fail(
            FAILURE,
            format!(
                "cannot create a staging directory in {}: {e}",
                pdir.path().display()
            ),
        )
    })?;
    staging.copy_from(&src).map_err(|e| {
        fail(
            REJECTED,
            format!("malformed: bundle {}: {e}", a.bundle.display()),
        )
    })?;
    let (v, verified) = verdict(&staging.path(), &policy, state.as_ref());
    drop(verified);
    if v.status != Status::Ok {
        print(out, &v, |v| {
            format!("{}: {}\n", v.status.as_str(), v.detail)
        })?;
        eprintln!(
            "srediag: error: bundle {} is not trusted, nothing installed: {}",
            a.bundle.display(),
            v.status.as_str()
        );
        return Ok(ExitCode::from(REJECTED));
    }
    let name = v.name.clone().unwrap_or_default();
    if !valid_name(&name) {
        return Err(fail(REJECTED, format!("malformed: plugin name {name:?}")));
    }
    let target = pdir.path().join(&name);
    staging
        .publish_modes()
        .and_then(|()| staging.move_to(&name))
        .map_err(|e| {
            fail(
                FAILURE,
                format!("cannot move the verified copy to {}: {e}", target.display()),
            )
        })?;
    drop(staging);
    sync_dir(pdir.path());
    print(out, &v, |v| {
        format!(
            "installed {} {} ({}) in {}\n",
            name,
            v.version.as_deref().unwrap_or("?"),
            v.digest.as_deref().unwrap_or("?"),
            target.display()
        )
    })?;
    ok()
}

fn rand4() -> [u8; 4] {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b
}

/// Removes an installed bundle (moved aside first, so the agent never sees half of it).
pub fn remove(a: RemoveArgs) -> CmdResult {
    if !valid_name(&a.name) {
        return Err(fail(
            super::exit::CONFIG,
            format!(
                "invalid plugin name {:?}: [a-z0-9][a-z0-9-]{{0,62}}",
                a.name
            ),
        ));
    }
    let target = a.plugin_dir.join(&a.name);
    match std::fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() && target.join("manifest.yaml").is_file() => {}
        Ok(_) => {
            return Err(fail(
                FAILURE,
                format!(
                    "{} is not an installed bundle (no manifest.yaml)",
                    target.display()
                ),
            ));
        }
        Err(e) => {
            return Err(fail(
                NO_INPUT,
                format!(
                    "plugin {} is not installed in {}: {e}",
                    a.name,
                    a.plugin_dir.display()
                ),
            ));
        }
    }
    let aside = a
        .plugin_dir
        .join(format!(".remove-{}-{}", a.name, std::process::id()));
    std::fs::rename(&target, &aside)
        .map_err(|e| fail(FAILURE, format!("{}: {e}", target.display())))?;
    sync_dir(&a.plugin_dir);
    std::fs::remove_dir_all(&aside)
        .map_err(|e| fail(FAILURE, format!("{}: {e}", aside.display())))?;
    println!("removed plugin {} from {}", a.name, a.plugin_dir.display());
    ok()
}
