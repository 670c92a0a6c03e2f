//! `srediag plugin install BUNDLE` and `srediag plugin remove NAME`.
//!
//! Install copies the bundle into a temporary directory inside the plugin directory, verifies
//! **the copy** (so what is installed is what was verified, whatever happens to the source),
//! then moves it into place atomically: `rename` when `<plugin-dir>/<name>` is new,
//! `renameat2(RENAME_EXCHANGE)` when it replaces an installed version (a running agent sees the
//! old or the new bundle, never a mix), and removes the old copy. The installed directory is
//! named after the manifest's `name`, so `bundle: <name>` in the configuration finds it. The
//! agent records the rollback mark when it loads the bundle; install only checks it.

use super::Output;
use super::exit::{CmdResult, FAILURE, Failure, NO_INPUT, REJECTED, ok};
use super::output::print;
use super::plugin_verify::{load_policy, load_state, verdict};
use crate::plugins::config::DEFAULT_PLUGIN_DIR;
use crate::plugins::trust::Status;
use crate::plugins::trust::policy::DEFAULT_POLICY_PATH;
use clap::Args;
use std::os::unix::fs::PermissionsExt as _;
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

fn fail(code: u8, msg: String) -> Failure {
    Failure::new(code, msg)
}

/// Copies a bundle tree: directories and regular files only (anything else is refused).
fn copy_tree(from: &Path, to: &Path, depth: usize) -> Result<(), String> {
    if depth > crate::plugins::trust::bundle::MAX_DIR_DEPTH {
        return Err(format!("{}: nested too deep", from.display()));
    }
    std::fs::create_dir(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", from.display()))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let meta =
            std::fs::symlink_metadata(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            copy_tree(&src, &dst, depth + 1)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
            let mode = meta.permissions().mode() & 0o755;
            let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode));
        } else {
            return Err(format!(
                "{}: not a regular file or directory (symlinks are not allowed in bundles)",
                src.display()
            ));
        }
    }
    Ok(())
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

/// Verifies, then installs.
pub fn install(a: InstallArgs, out: Output) -> CmdResult {
    let policy = load_policy(&a.policy)?;
    let state = load_state(a.plugin_state.as_deref())?;
    if !a.bundle.is_dir() {
        return Err(fail(
            NO_INPUT,
            format!("bundle {}: not a directory", a.bundle.display()),
        ));
    }
    std::fs::create_dir_all(&a.plugin_dir).map_err(|e| {
        fail(
            NO_INPUT,
            format!("--plugin-dir {}: {e}", a.plugin_dir.display()),
        )
    })?;
    let tmp = a.plugin_dir.join(format!(
        ".install-{}-{}",
        std::process::id(),
        crate::plugins::trust::keys::hex(&rand4())
    ));
    let cleanup = |p: &Path| {
        let _ = std::fs::remove_dir_all(p);
    };
    if let Err(e) = copy_tree(&a.bundle, &tmp, 0) {
        cleanup(&tmp);
        return Err(fail(REJECTED, format!("malformed: {e}")));
    }
    let (v, verified) = verdict(&tmp, &policy, state.as_ref());
    drop(verified);
    if v.status != Status::Ok {
        cleanup(&tmp);
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
        cleanup(&tmp);
        return Err(fail(REJECTED, format!("malformed: plugin name {name:?}")));
    }
    let target = a.plugin_dir.join(&name);
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755));
    let moved = if std::fs::symlink_metadata(&target).is_ok() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(std::io::Error::from)
    } else {
        std::fs::rename(&tmp, &target)
    };
    if let Err(e) = moved {
        cleanup(&tmp);
        return Err(fail(
            FAILURE,
            format!("cannot move the verified copy to {}: {e}", target.display()),
        ));
    }
    // After an exchange, `tmp` holds the previous version.
    cleanup(&tmp);
    sync_dir(&a.plugin_dir);
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
