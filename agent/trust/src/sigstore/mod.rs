//! Offline verification of Sigstore bundles (`*.sigstore.json`, bundle v0.1–v0.3) against a
//! pinned `trusted_root.json`. No network: everything needed is in the bundle and the root.
//!
//! What is checked, in order (any failure rejects):
//! 1. the bundle parses, has a known media type and exactly one signing material: a Fulcio
//!    certificate (a chain in v0.1/v0.2 without a root certificate in it) or a public key the
//!    caller supplies;
//! 2. the content: a message signature over the artifact (its `messageDigest`, if present,
//!    must equal the artifact's), or a DSSE envelope with one signature over
//!    `PAE(payloadType, payload)` whose in-toto statement names the artifact's SHA-256;
//! 3. exactly one transparency-log entry, from a log in the trusted root, whose body is bound to
//!    this signature (same signature bytes, same certificate or key, same artifact digest /
//!    payload hash): `hashedrekord` 0.0.1/0.0.2, `dsse` 0.0.1, `intoto` 0.0.2;
//! 4. the entry's inclusion proof and a checkpoint signed by that log (always required), and,
//!    when present, the Rekor v1 Signed Entry Timestamp (the integrated time is only used as a
//!    signing time when the SET that signs it verifies);
//! 5. signing times: the SET-verified integrated time and every RFC 3161 timestamp (each must
//!    verify against a trusted TSA); at least one is required (Rekor v2 entries carry no
//!    integrated time, so they need a TSA timestamp);
//! 6. for certificates: the chain to a Fulcio CA of the trusted root, valid (certificates and
//!    the CA's trusted-root interval) at every signing time, the leaf valid at every signing time,
//!    a valid embedded SCT from a trusted CT log, code-signing usage, and the identity (SAN) and
//!    OIDC issuer the caller's policy demands — there is no "any signer" mode.

mod body;
pub mod model;
mod root;
pub mod tlog;
pub mod tsa;
pub mod x509;

pub use root::TrustedRoot;
pub use tlog::{NoteError, TlogError};
pub use tsa::{TimestampError, TsaRejection};
pub use x509::{CertError, SctError, SctRejection};

use crate::keys::{PublicKey, b64, hex, sha256};
use body::check_body;
use model::Bundle;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use x509::{Cert, EKU_CODE_SIGNING, NS, Validity};

/// Why a bundle was rejected. The variant is the category a caller maps to a reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigstoreError {
    /// The bundle (or trusted root) could not be parsed or is structurally invalid.
    #[error("malformed sigstore bundle: {0}")]
    Malformed(String),
    /// The trusted root is unusable.
    #[error("invalid trusted root: {0}")]
    TrustedRoot(String),
    /// A certificate in the bundle cannot be parsed (a malformed bundle, like [`Self::Malformed`]).
    #[error("malformed sigstore bundle: {0}")]
    Certificate(#[source] CertError),
    /// A cryptographic or consistency check failed.
    #[error("sigstore verification failed: {0}")]
    Invalid(String),
    /// The signing certificate's key is unusable.
    #[error("sigstore verification failed: {0}")]
    SigningKey(#[source] CertError),
    /// The transparency-log entry's inclusion proof, checkpoint or Signed Entry Timestamp fails.
    #[error("sigstore verification failed: {0}")]
    Tlog(#[from] TlogError),
    /// An RFC 3161 timestamp fails.
    #[error("sigstore verification failed: {0}")]
    Timestamp(#[from] TimestampError),
    /// No embedded SCT vouches for the signing certificate.
    #[error("sigstore verification failed: {0}")]
    Sct(#[from] SctError),
    /// Everything verified but the signer is not the one the policy names.
    #[error("signer not allowed by policy: {0}")]
    Policy(String),
}

fn invalid(s: impl Into<String>) -> SigstoreError {
    SigstoreError::Invalid(s.into())
}

fn malformed(s: impl Into<String>) -> SigstoreError {
    SigstoreError::Malformed(s.into())
}

fn within(t: i64, v: Validity) -> bool {
    v.0 <= t && v.1.is_none_or(|e| t <= e)
}

/// Who must have signed.
#[derive(Clone)]
pub enum Signer<'a> {
    /// A Fulcio certificate whose SAN satisfies `identity` and whose OIDC issuer equals `issuer`.
    Identity {
        /// The SAN check (exact or anchored regex, decided by the caller).
        identity: &'a dyn Fn(&str) -> bool,
        /// Exact OIDC issuer URL.
        issuer: &'a str,
    },
    /// A managed key (`verificationMaterial.publicKey`).
    Key(&'a PublicKey),
}

/// What verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The certificate SAN that matched (keyless), or the key fingerprint (managed key).
    pub signer: String,
    /// The OIDC issuer (keyless).
    pub issuer: Option<String>,
    /// Verified signing times, ns since the epoch.
    pub times: Vec<i64>,
    /// The log index of the entry.
    pub log_index: i64,
}

/// The signed content.
enum Content {
    /// The signature (DER) over the artifact.
    Message { sig: Vec<u8> },
    /// The signature over `pae`, and the payload's SHA-256.
    Dsse {
        sig: Vec<u8>,
        pae: Vec<u8>,
        payload: Vec<u8>,
        payload_type: String,
    },
}

impl Content {
    fn sig(&self) -> &[u8] {
        match self {
            Content::Message { sig } | Content::Dsse { sig, .. } => sig,
        }
    }
}

/// `PAE(type, body)` of DSSE v1.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// Verifies `bundle_json` over `artifact`, offline, against `root`, requiring `signer`.
/// `now` (ns) bounds log times from above.
pub fn verify_bundle(
    bundle_json: &[u8],
    artifact: &[u8],
    root: &TrustedRoot,
    signer: &Signer<'_>,
) -> Result<Verified, SigstoreError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    verify_bundle_at(bundle_json, artifact, root, signer, now)
}

/// [`verify_bundle`] with an explicit current time.
pub fn verify_bundle_at(
    bundle_json: &[u8],
    artifact: &[u8],
    root: &TrustedRoot,
    signer: &Signer<'_>,
    now: i64,
) -> Result<Verified, SigstoreError> {
    let bundle: Bundle =
        serde_json::from_slice(bundle_json).map_err(|e| malformed(e.to_string()))?;
    let version = match bundle.media_type.as_str() {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => 1,
        "application/vnd.dev.sigstore.bundle+json;version=0.2" => 2,
        "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => 3,
        other => {
            return Err(malformed(format!(
                "unsupported bundle media type {other:?}"
            )));
        }
    };
    let vm = bundle
        .verification_material
        .as_ref()
        .ok_or_else(|| malformed("no verificationMaterial"))?;
    let artifact_sha256 = sha256(artifact);

    // 1. Signing material.
    let leaf: Option<Cert> = match (&vm.x509_certificate_chain, &vm.certificate, &vm.public_key) {
        (Some(ch), None, None) if version < 3 => {
            let certs: Vec<Cert> = ch
                .certificates
                .iter()
                .map(|c| {
                    b64(&c.raw_bytes)
                        .ok_or_else(|| malformed("certificate is not base64"))
                        .and_then(|d| Cert::parse(&d).map_err(SigstoreError::Certificate))
                })
                .collect::<Result<_, _>>()?;
            if certs.is_empty() {
                return Err(malformed("empty certificate chain"));
            }
            if certs.iter().any(Cert::is_self_issued) {
                return Err(invalid(
                    "certificate chain in the bundle contains a root certificate",
                ));
            }
            Some(certs.into_iter().next().expect("non-empty"))
        }
        (None, Some(c), None) => {
            let d = b64(&c.raw_bytes).ok_or_else(|| malformed("certificate is not base64"))?;
            Some(Cert::parse(&d).map_err(SigstoreError::Certificate)?)
        }
        (None, None, Some(_)) => None,
        _ => {
            return Err(malformed(
                "verificationMaterial must hold exactly one of certificate, chain, public key",
            ));
        }
    };
    let key: PublicKey = match (&leaf, signer) {
        (Some(c), Signer::Identity { .. }) => c.public_key().map_err(SigstoreError::SigningKey)?,
        (None, Signer::Key(k)) => (*k).clone(),
        (Some(_), Signer::Key(_)) => {
            return Err(SigstoreError::Policy(
                "bundle is signed with a certificate, a key was required".into(),
            ));
        }
        (None, Signer::Identity { .. }) => {
            return Err(SigstoreError::Policy(
                "bundle is signed with a key, a certificate identity was required".into(),
            ));
        }
    };

    // 2. Content and its signature.
    let content = match (&bundle.message_signature, &bundle.dsse_envelope) {
        (Some(m), None) => {
            let sig = b64(&m.signature).ok_or_else(|| malformed("signature is not base64"))?;
            if let Some(d) = &m.message_digest {
                let digest =
                    b64(&d.digest).ok_or_else(|| malformed("messageDigest is not base64"))?;
                if d.algorithm != "SHA2_256" || digest != artifact_sha256 {
                    return Err(invalid("messageDigest does not match the artifact"));
                }
            }
            let ok = match &key {
                PublicKey::P256(_) => key.verify_prehash(&artifact_sha256, &sig),
                _ => key.verify(artifact, &sig, key.default_hash()),
            };
            if !ok {
                return Err(invalid("signature does not verify over the artifact"));
            }
            Content::Message { sig }
        }
        (None, Some(env)) => {
            if env.signatures.len() != 1 {
                return Err(invalid("DSSE envelope must carry exactly one signature"));
            }
            let sig = b64(&env.signatures[0].sig)
                .ok_or_else(|| malformed("DSSE signature is not base64"))?;
            let payload =
                b64(&env.payload).ok_or_else(|| malformed("DSSE payload is not base64"))?;
            let pae = pae(&env.payload_type, &payload);
            if !key.verify(&pae, &sig, key.default_hash()) {
                return Err(invalid("DSSE signature does not verify"));
            }
            if env.payload_type != "application/vnd.in-toto+json" {
                return Err(invalid(format!(
                    "unsupported DSSE payload type {:?}",
                    env.payload_type
                )));
            }
            let stmt: Value = serde_json::from_slice(&payload)
                .map_err(|e| invalid(format!("in-toto statement: {e}")))?;
            let want = hex(&artifact_sha256);
            let named = stmt["subject"].as_array().is_some_and(|subjects| {
                subjects
                    .iter()
                    .any(|s| s["digest"]["sha256"].as_str() == Some(want.as_str()))
            });
            if !named {
                return Err(invalid(
                    "in-toto statement does not name the artifact's digest",
                ));
            }
            Content::Dsse {
                sig,
                pae,
                payload,
                payload_type: env.payload_type.clone(),
            }
        }
        _ => {
            return Err(malformed(
                "bundle must hold exactly one of messageSignature, dsseEnvelope",
            ));
        }
    };

    // 3. The log entry, bound to this signature.
    if vm.tlog_entries.len() != 1 {
        return Err(invalid(format!(
            "expected exactly one transparency log entry, found {}",
            vm.tlog_entries.len()
        )));
    }
    let entry = &vm.tlog_entries[0];
    if entry.log_index.0 < 0 || entry.integrated_time.is_some_and(|t| t.0 < 0) {
        return Err(malformed("negative log index or integrated time"));
    }
    let body =
        b64(&entry.canonicalized_body).ok_or_else(|| malformed("log entry body is not base64"))?;
    let key_id = b64(&entry.log_id.key_id).ok_or_else(|| malformed("log id is not base64"))?;
    let log = root
        .tlogs
        .iter()
        .find(|l| l.key_id == key_id)
        .ok_or_else(|| invalid("log entry comes from a log not in the trusted root"))?;
    let log_key = log
        .key
        .as_ref()
        .ok_or_else(|| invalid("log key algorithm unsupported"))?;
    let rekor_v2 = check_body(
        entry,
        &body,
        &content,
        leaf.as_ref(),
        &key,
        &artifact_sha256,
    )?;

    // 4. Inclusion: proof + checkpoint always; SET for Rekor v1 (it is what signs the time).
    tlog::verify_inclusion(entry, &body, log, log_key)?;
    let mut times = Vec::new();
    if !rekor_v2 && entry.inclusion_promise.is_some() {
        // The integrated time is a signing time only because the SET signs it.
        tlog::verify_set(entry, &body, log, log_key)?;
        let t = entry
            .integrated_time
            .ok_or_else(|| invalid("log entry has no integrated time"))?
            .0
            .saturating_mul(NS);
        if t > now + 60 * NS {
            return Err(invalid("integrated time is in the future"));
        }
        if !within(t, log.valid) {
            return Err(invalid("integrated time outside the log key's validity"));
        }
        times.push(t);
    }

    // 5. Timestamps.
    if let Some(tvd) = &vm.timestamp_verification_data {
        for ts in &tvd.rfc3161_timestamps {
            let token =
                b64(&ts.signed_timestamp).ok_or_else(|| malformed("timestamp is not base64"))?;
            let t = tsa::verify_timestamp(&token, content.sig(), &root.tsas)?;
            if t > now + 60 * NS {
                return Err(invalid("timestamp is in the future"));
            }
            if rekor_v2 && !within(t, log.valid) {
                return Err(invalid("timestamp outside the log key's validity"));
            }
            times.push(t);
        }
    }
    if times.is_empty() {
        return Err(invalid(
            "no verified signing time (Rekor v2 entries need an RFC 3161 timestamp)",
        ));
    }

    // 6. Certificate chain, SCT, identity.
    let (signer_name, issuer) = match (&leaf, signer) {
        (Some(leaf), Signer::Identity { identity, issuer }) => {
            for &t in &times {
                if !leaf.valid_at(t) {
                    return Err(invalid("signing time outside the certificate's validity"));
                }
            }
            let ca = root
                .cas
                .iter()
                .find(|ca| {
                    !ca.chain.is_empty()
                        && leaf.issued_by(&ca.chain[0])
                        && ca.chain.windows(2).all(|w| w[0].issued_by(&w[1]))
                        && within(leaf.not_before(), ca.valid)
                        && times.iter().all(|&t| within(t, ca.valid) && ca.chain.iter().all(|c| c.valid_at(t)))
                })
                .ok_or_else(|| invalid("certificate does not chain to a Fulcio CA of the trusted root valid at signing time"))?;
            x509::verify_embedded_scts(leaf, &ca.chain[0], &root.ctlogs)?;
            if leaf.is_ca()
                || !leaf.allows_digital_signature()
                || !leaf.ext_key_usage().contains(&EKU_CODE_SIGNING)
            {
                return Err(invalid("certificate is not a code-signing leaf"));
            }
            let got_issuer = leaf.fulcio_issuer().ok_or_else(|| {
                SigstoreError::Policy("certificate has no OIDC issuer extension".into())
            })?;
            if got_issuer != *issuer {
                return Err(SigstoreError::Policy(format!(
                    "OIDC issuer {got_issuer:?} is not {issuer:?}"
                )));
            }
            let sans = leaf.san_identities();
            let matched = sans.iter().find(|s| identity(s)).ok_or_else(|| {
                SigstoreError::Policy(format!("certificate identity {sans:?} not allowed"))
            })?;
            (matched.clone(), Some(got_issuer))
        }
        _ => (key.fingerprint(), None),
    };
    Ok(Verified {
        signer: signer_name,
        issuer,
        times,
        log_index: entry.log_index.0,
    })
}

/// The fuzzing entry point (`fuzz/fuzz_targets/sigstore_bundle.rs`): arbitrary bundle bytes,
/// verified against `root` (an empty trusted root when `None`), must never panic.
pub fn fuzz_one_with(data: &[u8], root: Option<&TrustedRoot>) {
    let empty;
    let root = match root {
        Some(r) => r,
        None => {
            empty = TrustedRoot::from_json(
                br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
            )
            .expect("empty root");
            &empty
        }
    };
    let any = |_: &str| true;
    let _ = verify_bundle_at(
        data,
        b"artifact",
        root,
        &Signer::Identity {
            identity: &any,
            issuer: "https://issuer.invalid",
        },
        0,
    );
}

/// [`fuzz_one_with`] and an empty trusted root.
pub fn fuzz_one(data: &[u8]) {
    fuzz_one_with(data, None);
}
