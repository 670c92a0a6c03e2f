//! The transparency-log entry's body: it must record this signature, this signer and this
//! content (`hashedrekord` 0.0.1/0.0.2, `dsse` 0.0.1, `intoto` 0.0.2).

use super::model::TlogEntry;
use super::x509::Cert;
use super::{Content, SigstoreError, invalid, malformed};
use crate::keys::{PublicKey, b64, hex, pem_decode, sha256};
use serde_json::Value;

/// The PEM (or DER) in a log body, decoded to DER.
fn pem_or_der(b64_text: &str, label: &str) -> Option<Vec<u8>> {
    let raw = b64(b64_text)?;
    match std::str::from_utf8(&raw) {
        Ok(s) if s.contains("-----BEGIN") => pem_decode(s, label),
        _ => Some(raw),
    }
}

/// Checks that the log body records this signature, this signer and this content. Returns
/// whether the entry is a Rekor v2 one (no integrated time, no SET).
pub(super) fn check_body(
    entry: &TlogEntry,
    body: &[u8],
    content: &Content,
    leaf: Option<&Cert>,
    key: &PublicKey,
    artifact_sha256: &[u8; 32],
) -> Result<bool, SigstoreError> {
    let b: Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("log entry body: {e}")))?;
    let kind = (
        entry.kind_version.kind.as_str(),
        entry.kind_version.version.as_str(),
    );
    if b["kind"].as_str() != Some(kind.0) || b["apiVersion"].as_str() != Some(kind.1) {
        return Err(invalid("log entry kind/version disagrees with its body"));
    }
    // The signer as recorded: a certificate (DER) or a public key (DER SPKI).
    let signer_matches = |der: Option<Vec<u8>>| -> bool {
        match (der, leaf) {
            (Some(d), Some(c)) => d == c.der,
            (Some(d), None) => PublicKey::from_spki_der(&d).is_ok_and(|k| &k == key),
            _ => false,
        }
    };
    let mismatch = |what: &str| invalid(format!("log entry does not match the bundle: {what}"));
    match (kind, content) {
        (("hashedrekord", "0.0.1"), Content::Message { sig }) => {
            let spec = &b["spec"];
            if spec["data"]["hash"]["algorithm"].as_str() != Some("sha256")
                || spec["data"]["hash"]["value"].as_str() != Some(hex(artifact_sha256).as_str())
            {
                return Err(mismatch("artifact digest"));
            }
            if spec["signature"]["content"]
                .as_str()
                .and_then(b64)
                .as_deref()
                != Some(sig.as_slice())
            {
                return Err(mismatch("signature"));
            }
            let label = if leaf.is_some() {
                "CERTIFICATE"
            } else {
                "PUBLIC KEY"
            };
            if !signer_matches(
                spec["signature"]["publicKey"]["content"]
                    .as_str()
                    .and_then(|s| pem_or_der(s, label)),
            ) {
                return Err(mismatch("signing certificate or key"));
            }
            Ok(false)
        }
        (("hashedrekord", "0.0.2"), _) => {
            let spec = &b["spec"]["hashedRekordV002"];
            let want_digest: Vec<u8> = match content {
                Content::Message { .. } => artifact_sha256.to_vec(),
                Content::Dsse { pae, .. } => sha256(pae).to_vec(),
            };
            if spec["data"]["algorithm"].as_str() != Some("SHA2_256")
                || spec["data"]["digest"].as_str().and_then(b64) != Some(want_digest)
            {
                return Err(mismatch("digest"));
            }
            if spec["signature"]["content"]
                .as_str()
                .and_then(b64)
                .as_deref()
                != Some(content.sig())
            {
                return Err(mismatch("signature"));
            }
            let v = &spec["signature"]["verifier"];
            let der = v["x509Certificate"]["rawBytes"]
                .as_str()
                .or(v["publicKey"]["rawBytes"].as_str())
                .and_then(b64);
            if !signer_matches(der) {
                return Err(mismatch("signing certificate or key"));
            }
            Ok(true)
        }
        (("dsse", "0.0.1"), Content::Dsse { sig, payload, .. }) => {
            let spec = &b["spec"];
            if spec["payloadHash"]["algorithm"].as_str() != Some("sha256")
                || spec["payloadHash"]["value"].as_str() != Some(hex(&sha256(payload)).as_str())
            {
                return Err(mismatch("payload hash"));
            }
            let sigs = spec["signatures"]
                .as_array()
                .ok_or_else(|| mismatch("signatures"))?;
            if sigs.len() != 1
                || sigs[0]["signature"].as_str().and_then(b64).as_deref() != Some(sig.as_slice())
                || !signer_matches(
                    sigs[0]["verifier"]
                        .as_str()
                        .and_then(|s| pem_or_der(s, "CERTIFICATE")),
                )
            {
                return Err(mismatch("signature or verifier"));
            }
            Ok(false)
        }
        (
            ("intoto", "0.0.2"),
            Content::Dsse {
                sig,
                payload,
                payload_type,
                ..
            },
        ) => {
            let c = &b["spec"]["content"];
            if c["payloadHash"]["algorithm"].as_str() != Some("sha256")
                || c["payloadHash"]["value"].as_str() != Some(hex(&sha256(payload)).as_str())
            {
                return Err(mismatch("payload hash"));
            }
            let env = &c["envelope"];
            if env["payloadType"].as_str() != Some(payload_type.as_str()) {
                return Err(mismatch("payload type"));
            }
            let sigs = env["signatures"]
                .as_array()
                .ok_or_else(|| mismatch("signatures"))?;
            // intoto 0.0.2 stores the signature base64-encoded twice and the key as base64 PEM.
            let rec_sig = sigs
                .first()
                .and_then(|s| s["sig"].as_str())
                .and_then(b64)
                .and_then(|inner| std::str::from_utf8(&inner).ok().and_then(b64));
            if sigs.len() != 1
                || rec_sig.as_deref() != Some(sig.as_slice())
                || !signer_matches(
                    sigs[0]["publicKey"]
                        .as_str()
                        .and_then(|s| pem_or_der(s, "CERTIFICATE")),
                )
            {
                return Err(mismatch("signature or verifier"));
            }
            Ok(false)
        }
        _ => Err(invalid(format!(
            "unsupported log entry kind {} {} for this content",
            kind.0, kind.1
        ))),
    }
}
