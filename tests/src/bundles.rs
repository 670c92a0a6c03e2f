//! Helpers for signed-bundle tests: keys made by `srediag plugin keygen`, bundles assembled
//! from a built binary, signatures by `srediag plugin sign`, trust policies.

use crate::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SHA-256 (hex) of a file.
pub fn sha256_file(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `srediag ARGS`, asserting exit 0; stdout.
pub fn srediag_ok(args: &[&str]) -> String {
    let out = srediag(args, Duration::from_secs(60));
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        0,
        "srediag {} failed:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// `srediag plugin keygen --output-dir DIR`: (private key, public key).
pub fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    srediag_ok(&[
        "plugin",
        "keygen",
        "--output-dir",
        &dir.display().to_string(),
    ]);
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// Assembles bundle `dir` for plugin `name`: `binary` copied to `bin/<name>`, a manifest with
/// `version`, digests filled in, `extra` appended (YAML lines such as `sandbox: {...}`).
pub fn make_bundle(dir: &Path, name: &str, ptype: &str, version: &str, binary: &Path, extra: &str) {
    std::fs::create_dir_all(dir.join("bin")).expect("mkdir bundle");
    let exe = dir.join("bin").join(name);
    std::fs::copy(binary, &exe).expect("copy plugin binary");
    let h = sha256_file(&exe);
    std::fs::write(
        dir.join("manifest.yaml"),
        format!(
            "api_version: srediag.io/plugin/v1\nname: {name}\ntype: {ptype}\nversion: {version}\nentrypoint: bin/{name}\nsha256: {h}\nrequires:\n  srediag: \">=0.1, <0.2\"\n  ipc_protocol: 1\n  schema_version: 1\n{extra}files:\n  bin/{name}: {{sha256: {h}}}\n"
        ),
    )
    .expect("write manifest");
}

/// `srediag plugin sign BUNDLE --key KEY`.
pub fn sign(bundle: &Path, key: &Path) {
    srediag_ok(&[
        "plugin",
        "sign",
        &bundle.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]);
}

/// Writes a trust policy trusting `public` (name `test`).
pub fn write_policy(path: &Path, public: &Path, allow_unsigned: bool) {
    std::fs::write(
        path,
        format!(
            "allow_unsigned: {allow_unsigned}\nkeys:\n  - name: test\n    path: {}\n",
            public.display()
        ),
    )
    .expect("write policy");
}
