//! Debian kernel images, from Debian packages only: a private apt state per kernel under
//! `target/kernels/apt/<name>/` (sources: this machine's Debian mirror, the suites of the kernel,
//! Debian's keyring), `apt-get update` at most every 12 hours, the metapackage's dependency
//! names the current image, `apt-get download` fetches it, and `dpkg-deb --fsys-tarfile` unpacks
//! its `boot/` (vmlinuz, config) into `target/kernels/<package>_<version>/` (kept as a cache;
//! `target/` is never committed). The machine's own apt sources and state are not touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use super::matrix::DebianKernel;
use crate::{apt, show};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Image {
    /// `linux-image-6.1.0-57-cloud-amd64`.
    pub package: String,
    /// `6.1.192-3`.
    pub version: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// Its `.config`.
    pub config: PathBuf,
}

const REFRESH: Duration = Duration::from_secs(12 * 3600);

struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(base: &Path, k: &DebianKernel) -> Result<PrivateApt> {
        let dir = base.join("apt").join(k.name);
        for d in ["lists/partial", "cache/archives/partial", "parts", "prefs"] {
            std::fs::create_dir_all(dir.join(d))
                .with_context(|| format!("mkdir {}", dir.join(d).display()))?;
        }
        let m = apt::mirrors();
        let (security, archive): (Vec<&str>, Vec<&str>) =
            k.suites.iter().partition(|s| s.ends_with("-security"));
        let mut text = format!(
            "# written by `cargo xtask kernels`: the suites of {} from this machine's mirror\n",
            k.name
        );
        text.push_str(&apt::stanza(&m.archive, &archive));
        if !security.is_empty() {
            text.push('\n');
            text.push_str(&apt::stanza(&m.security, &security));
        }
        std::fs::write(dir.join("parts/debian.sources"), text)?;
        Ok(PrivateApt { dir })
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        let d = |p: &str| self.dir.join(p).display().to_string();
        for (k, v) in [
            ("Dir::Etc::SourceList", "/dev/null".to_string()),
            ("Dir::Etc::SourceParts", d("parts")),
            ("Dir::Etc::Preferences", "/dev/null".to_string()),
            ("Dir::Etc::PreferencesParts", d("prefs")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::Cache", d("cache")),
            ("Debug::NoLocking", "1".to_string()),
            ("Acquire::Languages", "none".to_string()),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        if crate::is_root() {
            // The download lands in our directory, which apt's `_apt` user may not enter.
            c.args(["-o", "APT::Sandbox::User=root"]);
        }
        c
    }

    fn fresh(&self) -> bool {
        let stamp = self.dir.join("lists/updated");
        std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < REFRESH)
    }

    fn update(&self) -> Result<()> {
        if self.fresh() {
            return Ok(());
        }
        let mut c = self.cmd("apt-get");
        c.args(["-q", "update"]);
        run_quiet(&mut c)?;
        std::fs::write(self.dir.join("lists/updated"), "")?;
        Ok(())
    }

    /// The package the metapackage depends on (the current image).
    fn current(&self, meta: &str) -> Result<(String, String)> {
        let mut c = self.cmd("apt-cache");
        c.args(["depends", meta]);
        let out = output(&mut c)?;
        let pkg = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Depends: "))
            .map(|p| p.trim().to_string())
            .filter(|p| p.starts_with("linux-image-"))
            .with_context(|| format!("`{}` names no linux-image package:\n{out}", show(&c)))?;
        let mut c = self.cmd("apt-cache");
        c.args(["show", "--no-all-versions", &pkg]);
        let out = output(&mut c)?;
        let version = out
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("`{}`: no Version", show(&c)))?;
        Ok((pkg, version))
    }
}

fn output(c: &mut Command) -> Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", show(c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_quiet(c: &mut Command) -> Result<()> {
    output(c).map(|_| ())
}

/// The newest image of `k` already unpacked under `base` (offline fallback).
fn cached(base: &Path, k: &DebianKernel) -> Option<Image> {
    let prefix = match k.name {
        "debian-6.1" => "linux-image-6.1.",
        "debian-6.12" => "linux-image-6.12.",
        "debian-5.10" => "linux-image-5.10.",
        _ => return None,
    };
    let mut found: Vec<Image> = std::fs::read_dir(base)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let (package, version) = name.strip_prefix(prefix).map(|_| name.split_once('_'))??;
            image_in(&e.path(), package, version)
        })
        .collect();
    found.sort_by(|a, b| a.version.cmp(&b.version));
    found.pop()
}

fn image_in(dir: &Path, package: &str, version: &str) -> Option<Image> {
    let release = package.strip_prefix("linux-image-")?;
    let vmlinuz = dir.join(format!("boot/vmlinuz-{release}"));
    let config = dir.join(format!("boot/config-{release}"));
    (vmlinuz.is_file() && config.is_file()).then(|| Image {
        package: package.to_string(),
        version: version.to_string(),
        vmlinuz,
        config,
    })
}

/// The current image of `k`, downloaded and unpacked once.
pub fn image(base: &Path, k: &DebianKernel) -> Result<Image> {
    let apt = PrivateApt::new(base, k)?;
    let resolved = apt.update().and_then(|()| apt.current(k.meta));
    let (package, version) = match resolved {
        Ok(v) => v,
        Err(e) => match cached(base, k) {
            Some(img) => {
                eprintln!(
                    "kernels: warning: cannot resolve the current {} ({e:#}); using the cached {} {}",
                    k.name, img.package, img.version
                );
                return Ok(img);
            }
            None => return Err(e),
        },
    };
    let dir = base.join(format!("{package}_{version}"));
    if let Some(img) = image_in(&dir, &package, &version) {
        return Ok(img);
    }
    let debs = base.join("debs");
    std::fs::create_dir_all(&debs)?;
    let mut c = apt.cmd("apt-get");
    c.args(["-q", "download", &format!("{package}={version}")])
        .current_dir(&debs);
    println!(
        "kernels: {} → {package} {version}: apt-get download",
        k.name
    );
    run_quiet(&mut c)?;
    let deb = std::fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                debs.display()
            )
        })?;
    let tmp = base.join(format!(".{package}.unpack"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    // Only boot/ (vmlinuz, config, System.map): the modules are not used by the guest.
    let st = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" ./boot")
        .arg("sh")
        .arg(&deb)
        .arg(&tmp)
        .status()
        .context("dpkg-deb | tar")?;
    if !st.success() {
        bail!("unpacking {} failed: {st}", deb.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    std::fs::remove_file(&deb)?;
    image_in(&dir, &package, &version).with_context(|| {
        format!(
            "{}: no boot/vmlinuz-* and config in the package",
            deb.display()
        )
    })
}
