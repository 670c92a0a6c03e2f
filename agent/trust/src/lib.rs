//! `srediag-trust`: signed plugin bundles — manifest, digests, signatures, trust policy,
//! rollback protection (issue 5; the bundle format and the exact signed bytes are in
//! docs/bundles.md).
//!
//! # Crypto stack
//!
//! Signatures are verified by this crate's own offline Sigstore verifier ([`sigstore`]) and
//! [`keys::PublicKey`], on RustCrypto crates only (`p256`, `p384`, `ed25519-dalek`, `rsa` verify,
//! `sha2`, `x509-cert`, `der`, `cms`): no C code, no OpenSSL, no network. It passes the whole
//! Sigstore conformance corpus (`tests/tests/trust_conformance.rs`). Why not the `sigstore`
//! crate, what this verifies, and the measurements: docs/decisions/0002-own-sigstore-verifier.md.
//!
//! # Boundaries (checked by the compiler)
//! - `#![forbid(unsafe_code)]`: the one raw call sealing needs (draining LRU batches) is
//!   `srediag_sys::mm`.
//! - No dependency on the sandbox or the agent: what a manifest is compared with
//!   ([`HostInfo`]) is passed in by the caller; this crate never probes the host.
//!
//! # Flow
//! [`verify_bundle_dir`]: read `manifest.yaml` through the bundle's directory fd → parse
//! (hostile-input limits) → signature against the policy (or digest allowlist, or
//! `allow_unsigned`) → every file's digest against `files` (unlisted files, symlinks, hardlinks
//! refused) → compatibility with this agent → rollback high-water mark. The result has one
//! stable reason code ([`Status`]).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod canonical;
pub mod compat;
pub mod keys;
pub mod manifest;
pub mod policy;
pub mod rollback;
pub mod sealed;
pub mod sigstore;
#[cfg(test)]
mod testing;

pub use compat::{CompatError, HostInfo, KNOWN_KERNEL_FEATURES, WIRE_SCHEMA_VERSION, check_compat};
use keys::{PublicKey, decode_signature};
use manifest::Manifest;
use policy::TrustPolicy;
use rollback::RollbackStore;
use serde::Serialize;
use std::path::Path;

/// The outcome of a verification; the strings are stable (CLI JSON, metrics labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Trusted: may be loaded.
    Ok,
    /// A file's content does not match the manifest, a file is missing, or a file is not listed.
    RejectedDigest,
    /// A signature is present but none verifies with a trusted key/identity.
    RejectedSignature,
    /// Authentic or not, the policy does not allow it (unsigned, signer not trusted).
    RejectedPolicy,
    /// Older than, or the same version as but different from, what was loaded before.
    RejectedRollback,
    /// Needs another srediag, protocol, schema or kernel.
    RejectedCompat,
    /// The bundle or manifest cannot be read or parsed, or has a forbidden shape.
    Malformed,
}

impl Status {
    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::RejectedDigest => "rejected_digest",
            Status::RejectedSignature => "rejected_signature",
            Status::RejectedPolicy => "rejected_policy",
            Status::RejectedRollback => "rejected_rollback",
            Status::RejectedCompat => "rejected_compat",
            Status::Malformed => "malformed",
        }
    }

    /// Every status, in a fixed order.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::RejectedDigest,
        Status::RejectedSignature,
        Status::RejectedPolicy,
        Status::RejectedRollback,
        Status::RejectedCompat,
        Status::Malformed,
    ];
}

/// A rejected bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", status.as_str())]
pub struct Rejection {
    /// The reason code.
    pub status: Status,
    /// What exactly, naming files, versions, signers.
    pub detail: String,
}

fn reject(status: Status, detail: impl Into<String>) -> Rejection {
    Rejection {
        status,
        detail: detail.into(),
    }
}

/// Who vouched for a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrustedBy {
    /// A key from the policy.
    Key {
        /// The key's name in the policy.
        name: String,
        /// Where the signature was (`cosign_signature`, `manifest.sig`, `manifest.sigstore.json`).
        source: String,
    },
    /// A keyless Sigstore signer.
    Identity {
        /// Certificate SAN.
        identity: String,
        /// OIDC issuer.
        issuer: String,
    },
    /// The statement digest is in the policy's allowlist.
    Digest,
    /// Nothing: `allow_unsigned` is on. The caller must log loudly and count it.
    Unsigned,
}

/// A verified bundle: what may be loaded, and its entrypoint in a sealed memfd.
#[derive(Debug)]
pub struct VerifiedBundle {
    /// The manifest (all of it covered by the signature).
    pub manifest: Manifest,
    /// `sha256:<hex>` of the signed statement.
    pub digest: String,
    /// Who vouched.
    pub trusted_by: TrustedBy,
    /// The entrypoint, copied through the bundle's fd into a sealed memfd while it was hashed;
    /// its digest equals the signed `sha256`. Exec this fd, never re-open the path.
    pub entrypoint: sealed::SealedExe,
}

/// The JSON shape of a verification result (`srediag plugin verify -o json`).
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Reason code.
    pub status: Status,
    /// Plugin name, when the manifest parsed.
    pub name: Option<String>,
    /// Plugin version, when the manifest parsed.
    pub version: Option<String>,
    /// Statement digest, when the manifest parsed.
    pub digest: Option<String>,
    /// Who vouched, when trusted.
    pub trusted_by: Option<TrustedBy>,
    /// Human-readable detail.
    pub detail: String,
}

impl Verdict {
    /// From a verification result (`partial` is the manifest when it parsed).
    pub fn new(result: &Result<VerifiedBundle, Rejection>, partial: Option<&Manifest>) -> Verdict {
        match result {
            Ok(v) => Verdict {
                status: Status::Ok,
                name: Some(v.manifest.name.clone()),
                version: Some(v.manifest.version.clone()),
                digest: Some(v.digest.clone()),
                trusted_by: Some(v.trusted_by.clone()),
                detail: "trusted".into(),
            },
            Err(r) => Verdict {
                status: r.status,
                name: partial.map(|m| m.name.clone()),
                version: partial.map(|m| m.version.clone()),
                digest: partial.map(Manifest::statement_digest),
                trusted_by: None,
                detail: r.detail.clone(),
            },
        }
    }
}

/// A key signature over the statement: ECDSA (DER) over SHA-256 of it (cosign
/// `sign-blob --key`, `openssl dgst -sha256 -sign`), for P-384 keys SHA-384 too, Ed25519 over
/// the statement itself.
pub fn key_signature_ok(key: &PublicKey, statement: &[u8], sig: &[u8]) -> bool {
    key.verify(statement, sig, keys::Hash::Sha256)
        || (matches!(key, PublicKey::P384(_)) && key.verify(statement, sig, keys::Hash::Sha384))
}

/// Signs `statement` the way `cosign sign-blob --key` does (base64 of DER ECDSA P-256 over
/// SHA-256) — for `srediag plugin sign` and tests; any cosign/openssl signature verifies the
/// same way.
pub fn sign_statement(key: &p256::ecdsa::SigningKey, statement: &[u8]) -> String {
    use p256::ecdsa::signature::Signer as _;
    let sig: p256::ecdsa::Signature = key.sign(statement);
    keys::b64_encode(sig.to_der().as_bytes())
}

/// Finds who vouches for `m` (signature, digest allowlist, or `allow_unsigned`).
fn establish_trust(
    m: &Manifest,
    detached: Option<&[u8]>,
    sigstore_bundle: Option<&[u8]>,
    policy: &TrustPolicy,
) -> Result<TrustedBy, Rejection> {
    let statement = m.statement();
    let digest = m.statement_digest();
    let mut key_sigs: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut bad_encoding = Vec::new();
    if let Some(s) = &m.cosign_signature {
        match decode_signature(s.as_bytes()) {
            Some(sig) => key_sigs.push(("cosign_signature", sig)),
            None => bad_encoding.push("cosign_signature is not base64"),
        }
    }
    if let Some(s) = detached {
        match decode_signature(s) {
            Some(sig) => key_sigs.push(("manifest.sig", sig)),
            None => bad_encoding.push("manifest.sig is neither base64 nor DER"),
        }
    }
    for (source, sig) in &key_sigs {
        if let Some((name, _)) = policy
            .keys
            .iter()
            .find(|(_, k)| key_signature_ok(k, &statement, sig))
        {
            return Ok(TrustedBy::Key {
                name: name.clone(),
                source: (*source).to_string(),
            });
        }
    }
    let mut why: Vec<String> = key_sigs
        .iter()
        .map(|(source, _)| {
            format!(
                "{source} does not verify with any of the {} trusted keys",
                policy.keys.len()
            )
        })
        .collect();
    why.extend(bad_encoding.iter().map(|s| s.to_string()));
    // A signature that fails cryptographically is rejected_signature; one that verifies but
    // names a signer the policy does not trust is rejected_policy.
    let mut broken = !key_sigs.is_empty() || !bad_encoding.is_empty();
    let mut untrusted = false;
    if let Some(b) = sigstore_bundle {
        use sigstore::{Signer, SigstoreError, verify_bundle};
        let mut note = |e: SigstoreError, what: &str| -> Result<(), Rejection> {
            match e {
                SigstoreError::Malformed(e) => {
                    return Err(reject(
                        Status::Malformed,
                        format!("manifest.sigstore.json: {e}"),
                    ));
                }
                SigstoreError::Certificate(e) => {
                    return Err(reject(
                        Status::Malformed,
                        format!("manifest.sigstore.json: {e}"),
                    ));
                }
                SigstoreError::Policy(e) => {
                    untrusted = true;
                    why.push(format!("manifest.sigstore.json{what}: {e}"));
                }
                e => {
                    broken = true;
                    why.push(format!("manifest.sigstore.json{what}: {e}"));
                }
            }
            Ok(())
        };
        match &policy.trusted_root {
            None => {
                untrusted = true;
                why.push(
                    "manifest.sigstore.json present but the policy has no trusted_root".into(),
                );
            }
            Some(root) => {
                for id in &policy.identities {
                    let matcher = |s: &str| id.identity.matches(s);
                    match verify_bundle(
                        b,
                        &statement,
                        root,
                        &Signer::Identity {
                            identity: &matcher,
                            issuer: &id.issuer,
                        },
                    ) {
                        Ok(v) => {
                            return Ok(TrustedBy::Identity {
                                identity: v.signer,
                                issuer: v.issuer.unwrap_or_default(),
                            });
                        }
                        Err(e) => note(e, "")?,
                    }
                }
                for (name, key) in &policy.keys {
                    match verify_bundle(b, &statement, root, &Signer::Key(key)) {
                        Ok(_) => {
                            return Ok(TrustedBy::Key {
                                name: name.clone(),
                                source: "manifest.sigstore.json".into(),
                            });
                        }
                        Err(e) => note(e, &format!(" (key {name})"))?,
                    }
                }
                if policy.identities.is_empty() && policy.keys.is_empty() {
                    untrusted = true;
                    why.push(
                        "manifest.sigstore.json present but the policy trusts no identity or key"
                            .into(),
                    );
                }
            }
        }
    }
    let status = if !broken && untrusted {
        Status::RejectedPolicy
    } else {
        Status::RejectedSignature
    };
    if policy.digests.contains(&digest) {
        return Ok(TrustedBy::Digest);
    }
    if key_sigs.is_empty() && sigstore_bundle.is_none() && bad_encoding.is_empty() {
        if policy.allow_unsigned {
            return Ok(TrustedBy::Unsigned);
        }
        return Err(reject(
            Status::RejectedPolicy,
            format!("bundle {digest} is unsigned and the policy does not allow unsigned bundles"),
        ));
    }
    why.dedup();
    Err(reject(status, why.join("; ")))
}

/// Verifies the bundle directory `dir` against `policy`, `host` and (when given) the rollback
/// marks. Does not record a new mark: the loader calls [`RollbackStore::record`] once it
/// commits to loading.
pub fn verify_bundle_dir(
    dir: &Path,
    policy: &TrustPolicy,
    host: &HostInfo,
    rollback: Option<&RollbackStore>,
) -> (Result<VerifiedBundle, Rejection>, Option<Manifest>) {
    let (bdir, manifest_bytes) = match bundle::BundleDir::open(dir) {
        Ok(x) => x,
        Err(e) => return (Err(reject(Status::Malformed, e.to_string())), None),
    };
    let m = match Manifest::parse(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => return (Err(reject(Status::Malformed, e.to_string())), None),
    };
    let r = verify_parsed(&bdir, &m, policy, host, rollback);
    (r, Some(m))
}

fn verify_parsed(
    bdir: &bundle::BundleDir,
    m: &Manifest,
    policy: &TrustPolicy,
    host: &HostInfo,
    rollback: Option<&RollbackStore>,
) -> Result<VerifiedBundle, Rejection> {
    let contents = bdir.read(Some(m.entrypoint_path())).map_err(|e| match e {
        bundle::ReadError::Io { .. }
        | bundle::ReadError::Shape { .. }
        | bundle::ReadError::Limit(_) => reject(Status::Malformed, e.to_string()),
    })?;
    let trusted_by = establish_trust(
        m,
        contents.detached_sig.as_deref(),
        contents.sigstore_bundle.as_deref(),
        policy,
    )?;
    for (path, entry) in &m.files {
        match contents.digests.get(path) {
            None => {
                return Err(reject(
                    Status::RejectedDigest,
                    format!("{path} is listed in the manifest but missing"),
                ));
            }
            Some(d) if keys::hex(d) != entry.sha256 => {
                return Err(reject(
                    Status::RejectedDigest,
                    format!(
                        "{path} has sha256 {}, the manifest says {}",
                        keys::hex(d),
                        entry.sha256
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = contents.digests.keys().find(|p| !m.files.contains_key(*p)) {
        return Err(reject(
            Status::RejectedDigest,
            format!("{extra} is not listed in the manifest (every bundle file must be signed)"),
        ));
    }
    let entrypoint = contents.kept.ok_or_else(|| {
        reject(
            Status::RejectedDigest,
            format!("entrypoint {} is not a file of the bundle", m.entrypoint),
        )
    })?;
    // Seal, read the sealed bytes back, and compare with the digest the signature covers.
    let entrypoint = entrypoint
        .seal()
        .map_err(|e| reject(Status::Malformed, e.to_string()))?;
    if entrypoint.sha256_hex() != m.sha256 {
        return Err(reject(
            Status::RejectedDigest,
            format!(
                "entrypoint {}: sealed copy has sha256 {}, the manifest says {}",
                m.entrypoint,
                entrypoint.sha256_hex(),
                m.sha256
            ),
        ));
    }
    check_compat(m, host).map_err(|e| reject(Status::RejectedCompat, e.to_string()))?;
    let digest = m.statement_digest();
    if let Some(store) = rollback {
        let v = m
            .semver()
            .ok_or_else(|| reject(Status::Malformed, "version is not semver"))?;
        store
            .check(&m.name, &v, &digest)
            .map_err(|e| reject(Status::RejectedRollback, e.to_string()))?;
    }
    Ok(VerifiedBundle {
        manifest: m.clone(),
        digest,
        trusted_by,
        entrypoint,
    })
}
