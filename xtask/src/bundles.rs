//! `cargo xtask bundles`: first-party plugins → signed bundles with a local development key.
//!
//! For every directory under `plugins/` (plus each `--source DIR`) that holds a `manifest.yaml`
//! next to a `Cargo.toml`:
//! 1. build the binary named by the manifest's `entrypoint` (`cargo build -p <crate> --bin
//!    <file name>`, release with `--release`);
//! 2. assemble `target/bundles/<profile>/plugins/<name>/`: the binary at the entrypoint path and
//!    the manifest with `version` (from the crate when absent), `sha256` and `files` filled in;
//! 3. sign it with `srediag plugin sign` using the development key
//!    `target/bundles/dev-key/cosign.key` (generated once by `srediag plugin keygen`; under
//!    `target/`, never committed);
//! 4. write `target/bundles/dev-trust.yaml`, a trust policy that trusts exactly that key with
//!    `allow_unsigned: false`.
//!
//! The development rollback state (`target/bundles/<profile>/plugin-versions.json`) is removed on
//! every run: a rebuild changes a bundle's digest without changing its version, which the
//! rollback check would (rightly) refuse. Production state is never touched.

use crate::{cargo, root, run_cmd};
use anyhow::{Context, Result, bail};
use sha2::Digest as _;
use std::path::{Path, PathBuf};

/// Where everything goes.
pub struct Layout {
    /// `target/bundles`.
    pub base: PathBuf,
    /// `target/bundles/<profile>/plugins`: `--plugin-dir`.
    pub plugin_dir: PathBuf,
    /// `target/bundles/dev-trust.yaml`: `--trust-policy`.
    pub policy: PathBuf,
    /// `target/bundles/<profile>/plugin-versions.json`: `--plugin-state`.
    pub state: PathBuf,
}

/// The layout for a profile (`debug` or `release`).
pub fn layout(release: bool) -> Layout {
    let base = root().join("target/bundles");
    let profile = if release { "release" } else { "debug" };
    Layout {
        plugin_dir: base.join(profile).join("plugins"),
        policy: base.join("dev-trust.yaml"),
        state: base.join(profile).join("plugin-versions.json"),
        base,
    }
}

fn crate_info(dir: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml"))
        .with_context(|| format!("{}/Cargo.toml", dir.display()))?;
    let mut name = None;
    let mut version = None;
    let mut in_package = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_package = l == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let val = |l: &str| {
            l.split('=')
                .nth(1)
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        if l.starts_with("name") {
            name = val(l);
        } else if l.starts_with("version") && !l.contains("workspace") {
            version = val(l);
        }
    }
    let name = name.with_context(|| format!("{}/Cargo.toml: no [package] name", dir.display()))?;
    // `version.workspace = true`: the workspace's version.
    let version = match version {
        Some(v) => v,
        None => {
            let ws = std::fs::read_to_string(root().join("Cargo.toml"))?;
            ws.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("version = ")
                        .map(|v| v.trim_matches('"').to_string())
                })
                .context("workspace version")?
        }
    };
    Ok((name, version))
}

/// The plugin source directories: `plugins/*/` with a manifest, plus `extra`.
pub fn sources(extra: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root().join("plugins")) {
        for e in rd.flatten() {
            if e.path().join("manifest.yaml").is_file() {
                out.push(e.path());
            }
        }
    }
    for d in extra {
        let d = if d.is_absolute() {
            d.clone()
        } else {
            root().join(d)
        };
        if !d.join("manifest.yaml").is_file() {
            bail!("{}: no manifest.yaml", d.display());
        }
        out.push(d);
    }
    out.sort();
    Ok(out)
}

fn srediag_bin(release: bool) -> PathBuf {
    root().join(if release {
        "target/release/srediag"
    } else {
        "target/debug/srediag"
    })
}

/// Builds, assembles and signs every bundle; returns the layout.
pub fn bundles(release: bool, extra: &[PathBuf]) -> Result<Layout> {
    let l = layout(release);
    let srcs = sources(extra)?;
    let mut build = cargo();
    build.arg("build");
    if release {
        build.arg("--release");
    }
    // `--bin` names restrict every package's binaries: name srediag's too, or it is not rebuilt.
    build.args(["-p", "srediag", "--bin", "srediag"]);
    let mut plan = Vec::new();
    for dir in &srcs {
        let (krate, version) = crate_info(dir)?;
        let mpath = dir.join("manifest.yaml");
        let text =
            std::fs::read_to_string(&mpath).with_context(|| format!("{}", mpath.display()))?;
        let mut m: serde_yaml::Value =
            serde_yaml::from_str(&text).with_context(|| format!("{}", mpath.display()))?;
        let entry = m
            .get("entrypoint")
            .and_then(|v| v.as_str())
            .with_context(|| format!("{}: no entrypoint", mpath.display()))?
            .trim_start_matches("./")
            .to_string();
        let bin = Path::new(&entry)
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: entrypoint {entry:?}", mpath.display()))?
            .to_string();
        m.as_mapping_mut()
            .with_context(|| format!("{}: not a mapping", mpath.display()))?;
        build.args(["-p", &krate, "--bin", &bin]);
        plan.push((dir.clone(), m, entry, bin, version));
    }
    run_cmd(&mut build)?;
    let srediag = srediag_bin(release);
    let key = l.base.join("dev-key/cosign.key");
    if !key.is_file() {
        run_cmd(
            std::process::Command::new(&srediag)
                .args(["plugin", "keygen", "--output-dir"])
                .arg(l.base.join("dev-key")),
        )?;
    }
    std::fs::create_dir_all(&l.plugin_dir)?;
    let _ = std::fs::remove_file(&l.state);
    let target_dir = root().join(if release {
        "target/release"
    } else {
        "target/debug"
    });
    for (dir, mut m, entry, bin, version) in plan {
        let map = m.as_mapping_mut().expect("checked above");
        let name = map
            .get("name")
            .and_then(|v| v.as_str())
            .with_context(|| format!("{}/manifest.yaml: no name", dir.display()))?
            .to_string();
        let bytes = std::fs::read(target_dir.join(&bin))
            .with_context(|| format!("{}", target_dir.join(&bin).display()))?;
        let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
        if !map.contains_key("version") {
            map.insert("version".into(), version.into());
        }
        map.insert("sha256".into(), digest.clone().into());
        let mut files = serde_yaml::Mapping::new();
        let mut f = serde_yaml::Mapping::new();
        f.insert("sha256".into(), digest.into());
        files.insert(entry.clone().into(), f.into());
        map.insert("files".into(), files.into());
        let out = l.plugin_dir.join(&name);
        let tmp = l.plugin_dir.join(format!(".{name}.new"));
        let _ = std::fs::remove_dir_all(&tmp);
        let exe = tmp.join(&entry);
        std::fs::create_dir_all(exe.parent().context("entrypoint has a directory")?)?;
        std::fs::write(&exe, &bytes)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(
            tmp.join("manifest.yaml"),
            format!(
                "# generated by `cargo xtask bundles` from {}/manifest.yaml\n{}",
                dir.strip_prefix(root()).unwrap_or(&dir).display(),
                serde_yaml::to_string(&m)?
            ),
        )?;
        run_cmd(
            std::process::Command::new(&srediag)
                .args(["plugin", "sign"])
                .arg(&tmp)
                .arg("--key")
                .arg(&key),
        )?;
        let _ = std::fs::remove_dir_all(&out);
        std::fs::rename(&tmp, &out)
            .with_context(|| format!("rename {} → {}", tmp.display(), out.display()))?;
        println!("bundle {name}: {}", out.display());
    }
    std::fs::write(
        &l.policy,
        "# generated by `cargo xtask bundles`: trusts only the local development key\n\
         # (target/bundles/dev-key/cosign.pub, never committed); unsigned plugins are refused.\n\
         allow_unsigned: false\n\
         keys:\n  - name: srediag-dev\n    path: dev-key/cosign.pub\n",
    )?;
    println!(
        "trust policy {} (plugin dir {})",
        l.policy.display(),
        l.plugin_dir.display()
    );
    Ok(l)
}
