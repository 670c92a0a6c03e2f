//! `cargo xtask deps`: the Debian packages of `scripts/deps.txt` and the tests' Python venv.
//! Idempotent: installs only what is missing, rebuilds the venv only when requirements changed.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{is_root, root, run_cmd};

/// The one list of Debian packages (see the file for who needs each).
const DEPS_TXT: &str = include_str!("../../scripts/deps.txt");
const REQUIREMENTS: &str = "tests/python/requirements.txt";
/// Copy of the requirements the venv was built from: a difference means reinstall.
const STAMP: &str = ".venv/srediag-requirements.txt";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Building and running the agent.
    Build,
    /// Everything, tests included.
    All,
}

/// A package of scripts/deps.txt and the suite it comes from (`None`: the default release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dep {
    name: &'static str,
    suite: Option<&'static str>,
}

/// The packages of scripts/deps.txt (`PACKAGE GROUP [SUITE]`) in `scope`.
fn deps(scope: Scope) -> Vec<Dep> {
    DEPS_TXT
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, group, suite) = (it.next()?, it.next().unwrap_or("build"), it.next());
            (scope == Scope::All || group == "build").then_some(Dep { name, suite })
        })
        .collect()
}

/// The package names in `scope`.
#[cfg(test)]
fn packages(scope: Scope) -> Vec<&'static str> {
    deps(scope).into_iter().map(|d| d.name).collect()
}

fn installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .context("dpkg-query not found: this is not a Debian system; install the packages of scripts/deps.txt yourself")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

pub fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

pub fn ensure(scope: Scope) -> Result<()> {
    let wanted = deps(scope);
    let mut missing = Vec::new();
    for d in &wanted {
        if !installed(d.name)? {
            missing.push(*d);
        }
    }
    let names = |v: &[Dep]| v.iter().map(|d| d.name).collect::<Vec<_>>().join(" ");
    if missing.is_empty() {
        println!("deps: Debian packages present: {}", names(&wanted));
    } else if !is_root() {
        bail!(
            "missing Debian packages: {m}\n  remedy: sudo cargo xtask deps (adds the suites \
             scripts/deps.txt names to apt's sources, then installs)",
            m = names(&missing)
        );
    } else {
        println!(
            "deps: installing missing Debian packages: {}",
            names(&missing)
        );
        apt_install(&missing)?;
        let still: Vec<_> = missing
            .iter()
            .filter(|d| !installed(d.name).unwrap_or(false))
            .map(|d| d.name)
            .collect();
        if !still.is_empty() {
            bail!("apt-get reported success but these are still not installed: {still:?}");
        }
    }
    if scope == Scope::All {
        ensure_venv()?;
    }
    Ok(())
}

/// Stops maintainer scripts from starting daemons (e.g. the prometheus service) during the
/// install: `policy-rc.d` answering 101 is Debian's switch for that. Removed on drop; an
/// existing policy-rc.d is left alone.
struct NoDaemonStart(Option<PathBuf>);

impl NoDaemonStart {
    fn new() -> Self {
        let p = PathBuf::from("/usr/sbin/policy-rc.d");
        if p.exists() {
            return NoDaemonStart(None);
        }
        use std::os::unix::fs::PermissionsExt;
        let ok = std::fs::write(&p, "#!/bin/sh\n# written by cargo xtask deps for the duration of apt-get install\nexit 101\n")
            .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)));
        NoDaemonStart(ok.is_ok().then_some(p))
    }
}

impl Drop for NoDaemonStart {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Installs `pkgs`, each from its suite (added to apt's sources first when none serves it).
/// `--no-remove`: an install that would remove a package (e.g. bookworm's QEMU replacing the
/// backports `qemu-utils` this machine kind has) fails instead.
fn apt_install(pkgs: &[Dep]) -> Result<()> {
    let _guard = NoDaemonStart::new();
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    let mut suites: Vec<Option<&str>> = pkgs.iter().map(|d| d.suite).collect();
    suites.sort();
    suites.dedup();
    for s in suites.iter().flatten() {
        crate::apt::ensure_suite(s)?;
    }
    run_cmd(&mut apt(&["update", "-q"]))?;
    for suite in suites {
        let mut c = apt(&[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--no-remove",
        ]);
        if let Some(s) = suite {
            c.args(["-t", s]);
        }
        c.args(pkgs.iter().filter(|d| d.suite == suite).map(|d| d.name));
        run_cmd(&mut c)?;
    }
    Ok(())
}

/// `.venv` at the repo root with tests/python/requirements.txt installed.
fn ensure_venv() -> Result<()> {
    let root = root();
    let req_path = root.join(REQUIREMENTS);
    let req = std::fs::read_to_string(&req_path)
        .with_context(|| format!("read {}", req_path.display()))?;
    let py = venv_python();
    let stamp = root.join(STAMP);
    let usable = py.is_file()
        && Command::new(&py)
            .args(["-c", "import sys"])
            .output()
            .is_ok_and(|o| o.status.success());
    if usable && std::fs::read_to_string(&stamp).is_ok_and(|s| s == req) {
        println!("deps: .venv up to date with {REQUIREMENTS}");
        return Ok(());
    }
    let venv = root.join(".venv");
    if !usable {
        if venv.exists() {
            println!("deps: .venv is broken, recreating it");
            std::fs::remove_dir_all(&venv).with_context(|| format!("remove {}", venv.display()))?;
        }
        // Debian's interpreter (python3-venv is in scripts/deps.txt); any python3 elsewhere.
        let base = if std::path::Path::new("/usr/bin/python3").is_file() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        run_cmd(Command::new(base).args(["-m", "venv"]).arg(&venv))?;
    }
    run_cmd(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-r",
            ])
            .arg(&req_path),
    )?;
    run_cmd(Command::new(&py).args([
        "-c",
        "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http; print('deps: venv imports ok')",
    ]))?;
    std::fs::write(&stamp, req).with_context(|| format!("write {}", stamp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deps_list_parses() {
        let build = packages(Scope::Build);
        let all = packages(Scope::All);
        assert!(build.contains(&"clang") && build.contains(&"libseccomp-dev"));
        assert!(!build.contains(&"prometheus"));
        assert!(all.contains(&"prometheus") && all.len() > build.len());
        assert!(all.iter().all(|p| !p.contains(' ') && !p.is_empty()));
        // QEMU comes from bookworm-backports (the version of this machine kind's qemu-utils).
        let qemu = deps(Scope::All)
            .into_iter()
            .find(|d| d.name == "qemu-system-x86")
            .expect("qemu-system-x86 in scripts/deps.txt");
        assert_eq!(qemu.suite, Some("bookworm-backports"));
        assert!(
            deps(Scope::All)
                .iter()
                .all(|d| d.suite.is_none_or(|s| s.starts_with("bookworm")))
        );
    }
}
