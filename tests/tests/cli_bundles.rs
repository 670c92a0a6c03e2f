//! `srediag plugin keygen|sign|verify|inspect|install|remove` driven as a real binary, with
//! openssl on the other side: srediag's keys and signatures verify with `openssl`, and
//! openssl's keys and signatures verify with srediag. Needs the `openssl` and `base64` commands.

use serde_json::Value;
use srediag_tests::bundles::*;
use srediag_tests::*;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

fn run(args: &[&str]) -> CmdOutput {
    let out = srediag(args, Duration::from_secs(60));
    out.assert_no_panic();
    out
}

fn sh(cmd: &str, dir: &Path) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .expect("sh")
}

fn p(x: &Path) -> String {
    x.display().to_string()
}

fn blob_bundle(dir: &Path, name: &str, version: &str, content: &[u8]) {
    let parent = dir.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let bin = parent.join(format!("{name}-{version}.bin"));
    std::fs::write(&bin, content).unwrap();
    make_bundle(dir, name, "processor", version, &bin, "");
}

fn verify_json(bundle: &Path, policy: &Path) -> (i32, Value) {
    let out = run(&[
        "plugin",
        "verify",
        &p(bundle),
        "--policy",
        &p(policy),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("verify -o json: {e}: {}\n{}", out.stdout, out.stderr));
    (out.code(), v)
}

#[test]
fn keygen_writes_keys_openssl_reads() {
    let d = TempDir::new().unwrap();
    let (key, public) = keygen(d.path());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let o = sh("openssl pkey -in cosign.key -noout -text", d.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("prime256v1"));
    let o = sh("openssl pkey -pubin -in cosign.pub -noout", d.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // No silent overwrite.
    let out = run(&["plugin", "keygen", "--output-dir", &p(d.path())]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn srediag_signs_openssl_verifies_and_the_other_way_round() {
    let d = TempDir::new().unwrap();
    let (key, public) = keygen(&d.path().join("k"));
    let policy = d.path().join("trust.yaml");
    write_policy(&policy, &public, false);
    let b = d.path().join("b");
    blob_bundle(&b, "dedup", "1.0.0", b"\x7fELF not really");
    sign(&b, &key);
    let (code, v) = verify_json(&b, &policy);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["trusted_by"]["kind"], "key");
    assert_eq!(v["trusted_by"]["source"], "manifest.sig");
    // openssl checks srediag's signature over the statement `plugin inspect --statement` prints.
    let st = run(&["plugin", "inspect", &p(&b), "--statement"]);
    assert_eq!(st.code(), 0);
    std::fs::write(d.path().join("statement.json"), &st.stdout).unwrap();
    assert!(
        st.stdout
            .starts_with("{\"_type\":\"https://srediag.io/plugin-bundle/statement/v1\"")
    );
    let o = sh(
        &format!(
            "base64 -d {}/manifest.sig > sig.der && openssl dgst -sha256 -verify k/cosign.pub -signature sig.der statement.json",
            p(&b)
        ),
        d.path(),
    );
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Verified OK"),
        "openssl: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The statement digest inspect reports is the identity verify reports.
    let ins: Value =
        serde_json::from_str(&run(&["plugin", "inspect", &p(&b), "-o", "json"]).stdout).unwrap();
    assert_eq!(ins["statement_digest"], v["digest"]);
    assert_eq!(ins["files"][0]["status"], "ok");
    assert_eq!(ins["signatures"][0], "manifest.sig");

    // The other way round: an openssl key (SEC1 `EC PRIVATE KEY`) and an openssl signature.
    let o = sh(
        "openssl ecparam -name prime256v1 -genkey -noout -out o.key && openssl ec -in o.key -pubout -out o.pub 2>/dev/null",
        d.path(),
    );
    assert!(o.status.success());
    let opolicy = d.path().join("o-trust.yaml");
    write_policy(&opolicy, &d.path().join("o.pub"), false);
    let (code, v) = verify_json(&b, &opolicy);
    assert_eq!(
        (code, v["status"].as_str()),
        (65, Some("rejected_signature")),
        "{v}"
    );
    let o = sh(
        &format!(
            "openssl dgst -sha256 -sign o.key -out {}/manifest.sig statement.json",
            p(&b)
        ),
        d.path(),
    );
    assert!(o.status.success());
    let (code, v) = verify_json(&b, &opolicy);
    assert_eq!(code, 0, "openssl raw DER signature: {v}");
    // srediag signs with the SEC1 key openssl made, too.
    sign(&b, &d.path().join("o.key"));
    assert_eq!(verify_json(&b, &opolicy).0, 0);
}

#[test]
fn verify_rejections_have_codes_and_exit_65() {
    let d = TempDir::new().unwrap();
    let (key, public) = keygen(&d.path().join("k"));
    let policy = d.path().join("trust.yaml");
    write_policy(&policy, &public, false);
    let b = d.path().join("b");
    blob_bundle(&b, "dedup", "1.0.0", b"binary");
    // Unsigned.
    let (code, v) = verify_json(&b, &policy);
    assert_eq!(
        (code, v["status"].as_str()),
        (65, Some("rejected_policy")),
        "{v}"
    );
    sign(&b, &key);
    assert_eq!(verify_json(&b, &policy).0, 0);
    // One flipped bit in the binary.
    let bin = b.join("bin/dedup");
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    let (code, v) = verify_json(&b, &policy);
    assert_eq!(
        (code, v["status"].as_str()),
        (65, Some("rejected_digest")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("bin/dedup"), "{v}");
    // sign refuses to sign a bundle whose files do not match.
    let out = run(&["plugin", "sign", &p(&b), "--key", &p(&key)]);
    assert_eq!(out.code(), 65, "{}", out.stderr);
    assert!(out.stderr.contains("rejected_digest"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    // Table output: one line with the reason; stderr one line.
    let out = run(&["plugin", "verify", &p(&b), "--policy", &p(&policy)]);
    assert_eq!(out.code(), 65);
    assert!(
        out.stdout.starts_with("rejected_digest: "),
        "{}",
        out.stdout
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    // An unusable policy is a configuration error naming the file.
    let out = run(&[
        "plugin",
        "verify",
        &p(&b),
        "--policy",
        "/nonexistent/trust.yaml",
    ]);
    assert_eq!(out.code(), 78, "{}", out.stderr);
    assert!(out.stderr.contains("SRD-P017") && out.stderr.contains("/nonexistent/trust.yaml"));
    // A bundle that is not there.
    let out = run(&[
        "plugin",
        "verify",
        "/nonexistent/bundle",
        "--policy",
        &p(&policy),
        "-o",
        "json",
    ]);
    assert_eq!(out.code(), 65);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "malformed");
}

#[test]
fn install_verifies_then_replaces_atomically_and_remove_removes() {
    let d = TempDir::new().unwrap();
    let (key, public) = keygen(&d.path().join("k"));
    let policy = d.path().join("trust.yaml");
    write_policy(&policy, &public, false);
    let pdir = d.path().join("plugins");
    let install = |bundle: &Path| {
        run(&[
            "plugin",
            "install",
            &p(bundle),
            "--policy",
            &p(&policy),
            "--plugin-dir",
            &p(&pdir),
            "-o",
            "json",
        ])
    };
    let v1 = d.path().join("src1/dedup");
    blob_bundle(&v1, "dedup", "1.0.0", b"one");
    sign(&v1, &key);
    let out = install(&v1);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        verify_json(&pdir.join("dedup"), &policy).1["version"],
        "1.0.0"
    );
    // A newer version replaces it.
    let v2 = d.path().join("src2/dedup");
    blob_bundle(&v2, "dedup", "1.1.0", b"two");
    sign(&v2, &key);
    assert_eq!(install(&v2).code(), 0);
    assert_eq!(
        verify_json(&pdir.join("dedup"), &policy).1["version"],
        "1.1.0"
    );
    // A tampered bundle is refused and changes nothing.
    let v3 = d.path().join("src3/dedup");
    blob_bundle(&v3, "dedup", "1.2.0", b"three");
    sign(&v3, &key);
    std::fs::write(v3.join("bin/dedup"), b"evil!").unwrap();
    let out = install(&v3);
    assert_eq!(out.code(), 65, "{}", out.stderr);
    assert!(out.stderr.contains("rejected_digest"), "{}", out.stderr);
    assert_eq!(
        verify_json(&pdir.join("dedup"), &policy).1["version"],
        "1.1.0"
    );
    let names: Vec<String> = std::fs::read_dir(&pdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["dedup"], "temporary directories left behind");
    // Remove.
    let rm = |n: &str| run(&["plugin", "remove", n, "--plugin-dir", &p(&pdir)]);
    assert_eq!(rm("dedup").code(), 0);
    assert!(!pdir.join("dedup").exists());
    let out = rm("dedup");
    assert_eq!(out.code(), 66, "{}", out.stderr);
    let out = rm("../etc");
    assert_eq!(out.code(), 78, "{}", out.stderr);
}
