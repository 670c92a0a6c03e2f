//! Plugin bundle verification, end to end through the library: bundles are real directories,
//! keys and signatures are made by the `openssl` CLI (the formats cosign and openssl write, not
//! only srediag's own signer), and every negative case must be rejected with its own reason
//! code.

use srediag::plugins::trust::manifest::Manifest;
use srediag::plugins::trust::policy::{KeyEntry, PolicyFile, TrustPolicy};
use srediag::plugins::trust::rollback::RollbackStore;
use srediag::plugins::trust::{Rejection, Status, TrustedBy, VerifiedBundle, verify_bundle_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sh(cmd: &str, dir: &Path) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_hex(data: &[u8]) -> String {
    srediag::plugins::trust::keys::hex(&srediag::plugins::trust::keys::sha256(data))
}

/// A scratch area with two openssl-made P-256 key pairs (`a` trusted, `b` not).
struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        for k in ["a", "b"] {
            sh(
                &format!(
                    "openssl ecparam -name prime256v1 -genkey -noout -out {k}.key && openssl ec -in {k}.key -pubout -out {k}.pub 2>/dev/null"
                ),
                tmp.path(),
            );
        }
        Lab { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn policy(&self, f: impl FnOnce(&mut PolicyFile)) -> TrustPolicy {
        let mut pf = PolicyFile {
            keys: vec![KeyEntry {
                name: "vendor".into(),
                pem: None,
                path: Some(PathBuf::from("a.pub")),
            }],
            ..Default::default()
        };
        f(&mut pf);
        TrustPolicy::from_file(pf, self.path(), &self.path().join("trust.yaml")).unwrap()
    }

    /// Writes bundle `name` (version, binary content) and returns its directory.
    fn bundle(&self, name: &str, version: &str, binary: &[u8], extra_yaml: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/dedup"), binary).unwrap();
        std::fs::write(dir.join("README"), b"docs").unwrap();
        let h = sha256_hex(binary);
        let manifest = format!(
            "api_version: srediag.io/plugin/v1\nname: dedup\ntype: processor\nversion: {version}\ndescription: drops duplicate records\n\
entrypoint: ./bin/dedup\nsha256: {h}\ncapabilities: [processor/dedup]\nrequires:\n  srediag: \">=0.1\"\n  ipc_protocol: 1\n  schema_version: 1\n\
sandbox:\n  landlock:\n    read_only: [/proc]\n  limits:\n    memory_max: 64MiB\n{extra_yaml}files:\n  bin/dedup:\n    sha256: {h}\n  README:\n    sha256: {}\n",
            sha256_hex(b"docs")
        );
        std::fs::write(dir.join("manifest.yaml"), manifest).unwrap();
        dir
    }

    /// Signs the bundle's statement with openssl: `openssl dgst -sha256 -sign` (raw DER).
    fn openssl_sign(&self, dir: &Path, key: &str) -> Vec<u8> {
        let m = Manifest::parse(&std::fs::read(dir.join("manifest.yaml")).unwrap()).unwrap();
        let stmt = self.path().join("statement.json");
        std::fs::write(&stmt, m.statement()).unwrap();
        sh(
            &format!("openssl dgst -sha256 -sign {key}.key statement.json"),
            self.path(),
        )
    }

    /// cosign `sign-blob --key` format (base64 of the DER) written into the manifest.
    fn sign_in_manifest(&self, dir: &Path, key: &str) {
        let der = self.openssl_sign(dir, key);
        std::fs::write(self.path().join("sig.der"), &der).unwrap();
        let b64 = String::from_utf8(sh("base64 -w0 sig.der", self.path())).unwrap();
        let text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
        std::fs::write(
            dir.join("manifest.yaml"),
            text.replace(
                "files:\n",
                &format!("cosign_signature: \"{b64}\"\nfiles:\n"),
            ),
        )
        .unwrap();
    }

    /// Detached `manifest.sig`, raw DER exactly as openssl wrote it.
    fn sign_detached(&self, dir: &Path, key: &str) {
        let der = self.openssl_sign(dir, key);
        std::fs::write(dir.join("manifest.sig"), der).unwrap();
    }
}

fn verify(
    dir: &Path,
    policy: &TrustPolicy,
    store: Option<&RollbackStore>,
) -> Result<VerifiedBundle, Rejection> {
    verify_bundle_dir(dir, policy, &srediag::plugins::loader::host_info(), store).0
}

fn status(r: &Result<VerifiedBundle, Rejection>) -> Status {
    match r {
        Ok(_) => Status::Ok,
        Err(e) => e.status,
    }
}

#[track_caller]
fn expect(r: Result<VerifiedBundle, Rejection>, want: Status, detail_has: &str) {
    match &r {
        Err(e) => {
            assert_eq!(e.status, want, "{e}");
            assert!(
                e.detail.contains(detail_has),
                "detail {:?} lacks {detail_has:?}",
                e.detail
            );
        }
        Ok(v) => panic!(
            "accepted (trusted by {:?}), expected {}",
            v.trusted_by,
            want.as_str()
        ),
    }
}

#[test]
fn happy_path_openssl_signature_in_manifest() {
    let lab = Lab::new();
    let dir = lab.bundle("ok", "1.2.0", b"#!/bin/sh\necho hi\n", "");
    lab.sign_in_manifest(&dir, "a");
    let v = verify(&dir, &lab.policy(|_| {}), None).expect("trusted");
    assert_eq!(
        v.trusted_by,
        TrustedBy::Key {
            name: "vendor".into(),
            source: "cosign_signature".into()
        }
    );
    assert_eq!(
        v.entrypoint.read_all().unwrap(),
        b"#!/bin/sh\necho hi\n",
        "the verified bytes are the entrypoint's"
    );
    assert_eq!(v.manifest.name, "dedup");
}

#[test]
fn happy_path_detached_raw_der_signature() {
    let lab = Lab::new();
    let dir = lab.bundle("ok", "1.2.0", b"binary", "");
    lab.sign_detached(&dir, "a");
    let v = verify(&dir, &lab.policy(|_| {}), None).expect("trusted");
    assert_eq!(
        v.trusted_by,
        TrustedBy::Key {
            name: "vendor".into(),
            source: "manifest.sig".into()
        }
    );
}

#[test]
fn our_signer_matches_openssl_verification() {
    // The other direction: a signature made by srediag verifies with `openssl dgst -verify`.
    let lab = Lab::new();
    let dir = lab.bundle("ok", "1.0.0", b"bin", "");
    let m = Manifest::parse(&std::fs::read(dir.join("manifest.yaml")).unwrap()).unwrap();
    let key = p256_key_from_openssl(&lab);
    let b64 = srediag::plugins::trust::sign_statement(&key, &m.statement());
    std::fs::write(lab.path().join("statement.json"), m.statement()).unwrap();
    std::fs::write(lab.path().join("ours.b64"), b64).unwrap();
    sh(
        "base64 -d ours.b64 > ours.der && openssl dgst -sha256 -verify a.pub -signature ours.der statement.json",
        lab.path(),
    );
}

fn p256_key_from_openssl(lab: &Lab) -> srediag::plugins::trust::keys::P256SigningKey {
    let pem = std::fs::read_to_string(lab.path().join("a.key")).unwrap();
    srediag::plugins::trust::keys::signing_key_from_pem(&pem).expect("openssl SEC1 key")
}

#[test]
fn digest_mismatch() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    std::fs::write(dir.join("bin/dedup"), b"evil").unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedDigest,
        "bin/dedup has sha256",
    );
}

#[test]
fn one_flipped_signature_bit() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    let mut der = lab.openssl_sign(&dir, "a");
    let n = der.len();
    der[n - 5] ^= 0x01;
    std::fs::write(dir.join("manifest.sig"), der).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedSignature,
        "does not verify",
    );
}

#[test]
fn wrong_key() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "b");
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedSignature,
        "does not verify with any of the 1 trusted keys",
    );
}

#[test]
fn unsigned() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedPolicy,
        "unsigned",
    );
    let v = verify(&dir, &lab.policy(|p| p.allow_unsigned = true), None).expect("allow_unsigned");
    assert_eq!(v.trusted_by, TrustedBy::Unsigned);
}

#[test]
fn digest_allowlist() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    let digest = Manifest::parse(&std::fs::read(dir.join("manifest.yaml")).unwrap())
        .unwrap()
        .statement_digest();
    let v = verify(
        &dir,
        &lab.policy(|p| p.digests = vec![digest.clone()]),
        None,
    )
    .expect("allowlisted");
    assert_eq!(v.trusted_by, TrustedBy::Digest);
    assert_eq!(v.digest, digest);
}

#[test]
fn manifest_edited_after_signing() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    let text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    // A wider sandbox: the files are untouched, only the grant changes.
    let wider = text.replace("read_only: [/proc]", "read_only: [/proc, /etc]");
    assert_ne!(text, wider);
    std::fs::write(dir.join("manifest.yaml"), wider).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedSignature,
        "cosign_signature does not verify",
    );
}

#[test]
fn extra_file_not_listed() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    std::fs::write(dir.join("bin/helper.so"), b"unsigned code").unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedDigest,
        "bin/helper.so is not listed",
    );
}

#[test]
fn symlinks_and_hardlinks_are_refused() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("bin/escape")).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "symlink",
    );

    // The entrypoint itself a symlink to a file outside the bundle.
    let dir = lab.bundle("y", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    let outside = lab.path().join("outside");
    std::fs::write(&outside, b"good").unwrap();
    std::fs::remove_file(dir.join("bin/dedup")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("bin/dedup")).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "symlink",
    );

    // A directory symlink.
    let dir = lab.bundle("z", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "symlink",
    );

    // A hardlink: same content, but another directory could change it.
    let dir = lab.bundle("w", "1.2.0", b"good", "");
    lab.sign_in_manifest(&dir, "a");
    std::fs::remove_file(dir.join("bin/dedup")).unwrap();
    std::fs::hard_link(&outside, dir.join("bin/dedup")).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "hard links",
    );
}

#[test]
fn dotdot_in_entrypoint() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    let text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    std::fs::write(
        dir.join("manifest.yaml"),
        text.replace("entrypoint: ./bin/dedup", "entrypoint: ../x/bin/dedup"),
    )
    .unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "'..'",
    );
    std::fs::write(
        dir.join("manifest.yaml"),
        text.replace("entrypoint: ./bin/dedup", "entrypoint: /usr/bin/id"),
    )
    .unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "absolute",
    );
}

#[test]
fn malformed_yaml_and_json() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    std::fs::write(dir.join("manifest.yaml"), "name: [unclosed\n").unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "manifest.yaml:",
    );

    let dir = lab.bundle("y", "1.2.0", b"good", "");
    std::fs::write(
        dir.join("manifest.sigstore.json"),
        "{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\", ",
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/sigstore-conformance/trusted_root.public-good.json");
    let policy = if root.exists() {
        std::fs::copy(&root, lab.path().join("trusted_root.json")).unwrap();
        lab.policy(|p| p.trusted_root = Some("trusted_root.json".into()))
    } else {
        lab.policy(|_| {})
    };
    let r = verify(&dir, &policy, None);
    if root.exists() {
        expect(r, Status::Malformed, "manifest.sigstore.json");
    } else {
        assert_ne!(status(&r), Status::Ok);
    }

    let dir = lab.bundle("z", "1.2.0", b"good", "unknown_field: 1\n");
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "unknown field",
    );
}

#[test]
fn rollback_older_version_and_same_version_other_digest() {
    let lab = Lab::new();
    let state = lab.path().join("state.json");
    let mut store = RollbackStore::open(&state).unwrap();
    let policy = lab.policy(|_| {});

    let v12 = lab.bundle("v12", "1.2.0", b"build-1", "");
    lab.sign_in_manifest(&v12, "a");
    let ok = verify(&v12, &policy, Some(&store)).expect("first load");
    store
        .record(
            &ok.manifest.name,
            &ok.manifest.semver().unwrap(),
            &ok.digest,
        )
        .unwrap();
    assert!(
        verify(&v12, &policy, Some(&store)).is_ok(),
        "the same bundle again is fine"
    );

    let v11 = lab.bundle("v11", "1.1.0", b"old-build", "");
    lab.sign_in_manifest(&v11, "a");
    expect(
        verify(&v11, &policy, Some(&store)),
        Status::RejectedRollback,
        "older than 1.2.0",
    );

    let v12b = lab.bundle("v12b", "1.2.0", b"build-2", "");
    lab.sign_in_manifest(&v12b, "a");
    expect(
        verify(&v12b, &policy, Some(&store)),
        Status::RejectedRollback,
        "same version, different content",
    );

    // The mark survives a restart (a new store from the same file).
    let reopened = RollbackStore::open(&state).unwrap();
    expect(
        verify(&v11, &policy, Some(&reopened)),
        Status::RejectedRollback,
        "older",
    );
    let v13 = lab.bundle("v13", "1.3.0", b"build-3", "");
    lab.sign_in_manifest(&v13, "a");
    assert!(verify(&v13, &policy, Some(&reopened)).is_ok());
}

#[test]
fn yaml_alias_bomb() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    std::fs::write(dir.join("manifest.yaml"), bomb).unwrap();
    let started = std::time::Instant::now();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "anchors",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the bomb was expanded"
    );
}

#[test]
fn oversize_manifest() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    let mut text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    text.push_str(&format!("# {}\n", "x".repeat(300 * 1024)));
    std::fs::write(dir.join("manifest.yaml"), text).unwrap();
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::Malformed,
        "limit",
    );
}

#[test]
fn incompatible_plugin_names_both_sides() {
    let lab = Lab::new();
    let dir = lab.bundle("x", "1.2.0", b"good", "");
    let text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    std::fs::write(
        dir.join("manifest.yaml"),
        text.replace("srediag: \">=0.1\"", "srediag: \">=99.0\""),
    )
    .unwrap();
    lab.sign_in_manifest(&dir, "a");
    let this = env!("CARGO_PKG_VERSION");
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedCompat,
        &format!("requires srediag >=99.0, this agent is {this}"),
    );

    let dir = lab.bundle("y", "1.2.0", b"good", "");
    let text = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    std::fs::write(
        dir.join("manifest.yaml"),
        text.replace("ipc_protocol: 1", "ipc_protocol: 7"),
    )
    .unwrap();
    lab.sign_in_manifest(&dir, "a");
    expect(
        verify(&dir, &lab.policy(|_| {}), None),
        Status::RejectedCompat,
        "speaks IPC protocol 7, this agent speaks 1 to 2",
    );
}

#[test]
fn every_reason_code_is_distinct_and_stable() {
    let codes: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        codes,
        [
            "ok",
            "rejected_digest",
            "rejected_signature",
            "rejected_policy",
            "rejected_rollback",
            "rejected_compat",
            "malformed"
        ]
    );
}
