//! A private Sigstore for tests: a Fulcio-like CA, a CT log, a Rekor-like log and a trusted
//! root, all made here, so keyless plugin bundles can be signed offline and the whole path —
//! bundle directory → `manifest.sigstore.json` → policy identity — is tested, including the
//! failures issue 5 lists (wrong identity, wrong issuer, expired certificate without a valid
//! timestamp, a log entry swapped in from another signature, a missing inclusion proof).

use super::keys::{b64_encode, hex, sha256};
use super::sigstore::x509::{EKU_CODE_SIGNING, FULCIO_ISSUER_V2, SCT_LIST};
use der::asn1::{BitString, Ia5String, OctetString, UtcTime, Utf8StringRef};
use der::{Decode as _, Encode as _};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;
use std::str::FromStr as _;
use std::time::Duration;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// Identity and issuer the fixture's certificates carry.
pub const IDENTITY: &str =
    "https://github.com/example-org/plugins/.github/workflows/release.yml@refs/tags/v1.2.0";
/// OIDC issuer of the fixture's certificates.
pub const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).expect("key")
}

fn spki(k: &SigningKey) -> Vec<u8> {
    k.verifying_key()
        .to_public_key_der()
        .expect("spki")
        .into_vec()
}

fn sign(k: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let s: p256::ecdsa::Signature = k.sign(msg);
    s.to_der().as_bytes().to_vec()
}

fn ext(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).expect("octets"),
    }
}

fn time(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).expect("time"))
}

fn tbs(
    serial: u8,
    issuer: &str,
    subject: &str,
    valid: (u64, u64),
    subject_key: &SigningKey,
    extensions: Vec<Extension>,
) -> TbsCertificate {
    TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).expect("serial"),
        signature: AlgorithmIdentifierOwned {
            oid: ECDSA_SHA256,
            parameters: None,
        },
        issuer: Name::from_str(issuer).expect("issuer"),
        validity: Validity {
            not_before: time(valid.0),
            not_after: time(valid.1),
        },
        subject: if subject.is_empty() {
            Name::default()
        } else {
            Name::from_str(subject).expect("subject")
        },
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&spki(subject_key))
            .expect("spki"),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    }
}

fn certify(t: TbsCertificate, issuer_key: &SigningKey) -> Vec<u8> {
    let sig = sign(issuer_key, &t.to_der().expect("tbs"));
    Certificate {
        tbs_certificate: t,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_SHA256,
            parameters: None,
        },
        signature: BitString::from_bytes(&sig).expect("bits"),
    }
    .to_der()
    .expect("cert")
}

/// The private Sigstore.
pub struct Fixture {
    ca: SigningKey,
    ca_der: Vec<u8>,
    ct: SigningKey,
    rekor: SigningKey,
    /// Unix time the CA's validity starts (everything happens after it).
    pub t0: u64,
}

/// Knobs for one signature.
pub struct SignOpts<'a> {
    /// SAN URI of the signing certificate.
    pub identity: &'a str,
    /// OIDC issuer recorded in the certificate.
    pub issuer: &'a str,
    /// Seconds after `t0` at which the log integrates the entry (the certificate is valid for
    /// 600 s from `t0 + 60`).
    pub integrated_after: u64,
    /// Sign this artifact in the log body instead (a log entry from another signature).
    pub logged_artifact: Option<&'a [u8]>,
    /// Drop the inclusion proof.
    pub no_inclusion_proof: bool,
}

impl Default for SignOpts<'_> {
    fn default() -> Self {
        SignOpts {
            identity: IDENTITY,
            issuer: ISSUER,
            integrated_after: 120,
            logged_artifact: None,
            no_inclusion_proof: false,
        }
    }
}

impl Fixture {
    /// A CA, a CT log and a log, valid from a fixed time in the past.
    pub fn new() -> Fixture {
        let t0 = 1_700_000_000;
        let ca = key(1);
        let ca_tbs = tbs(
            1,
            "CN=test-fulcio,O=srediag-test",
            "CN=test-fulcio,O=srediag-test",
            (t0, t0 + 10 * 365 * 86_400),
            &ca,
            vec![ext(
                ObjectIdentifier::new_unwrap("2.5.29.19"),
                true,
                BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                }
                .to_der()
                .expect("bc"),
            )],
        );
        let ca_der = certify(ca_tbs, &ca);
        Fixture {
            ca,
            ca_der,
            ct: key(2),
            rekor: key(3),
            t0,
        }
    }

    /// `trusted_root.json` for this private instance.
    pub fn trusted_root_json(&self) -> String {
        let start = "2023-11-14T00:00:00Z";
        let log = |k: &SigningKey, url: &str| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64_encode(&spki(k)), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": start}},
                "logId": {"keyId": b64_encode(&sha256(&spki(k)))}
            })
        };
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, "https://rekor.test")],
            "ctlogs": [log(&self.ct, "https://ct.test")],
            "certificateAuthorities": [{
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [{"rawBytes": b64_encode(&self.ca_der)}]},
                "validFor": {"start": start}
            }],
            "timestampAuthorities": []
        })
        .to_string()
    }

    /// A Sigstore bundle (v0.3, message signature, Rekor v1 entry with SET, inclusion proof and
    /// checkpoint) over `artifact`.
    pub fn sign(&self, artifact: &[u8], o: &SignOpts<'_>) -> String {
        let leaf_key = key(4);
        let nb = self.t0 + 60;
        let mut exts = vec![
            ext(
                ObjectIdentifier::new_unwrap("2.5.29.15"),
                true,
                KeyUsage(KeyUsages::DigitalSignature.into())
                    .to_der()
                    .expect("ku"),
            ),
            ext(
                ObjectIdentifier::new_unwrap("2.5.29.37"),
                false,
                ExtendedKeyUsage(vec![EKU_CODE_SIGNING])
                    .to_der()
                    .expect("eku"),
            ),
            ext(
                ObjectIdentifier::new_unwrap("2.5.29.17"),
                true,
                SubjectAltName(vec![GeneralName::UniformResourceIdentifier(
                    Ia5String::new(o.identity).expect("ia5"),
                )])
                .to_der()
                .expect("san"),
            ),
            ext(
                FULCIO_ISSUER_V2,
                false,
                Utf8StringRef::new(o.issuer)
                    .expect("utf8")
                    .to_der()
                    .expect("iss"),
            ),
        ];
        // The SCT signs the precertificate TBS (this TBS without the SCT extension).
        let pre = tbs(
            7,
            "CN=test-fulcio,O=srediag-test",
            "",
            (nb, nb + 600),
            &leaf_key,
            exts.clone(),
        );
        let ts_ms = (nb + 1) * 1000;
        let mut signed = vec![0u8, 0u8];
        signed.extend_from_slice(&ts_ms.to_be_bytes());
        signed.extend_from_slice(&[0, 1]);
        signed.extend_from_slice(&sha256(&spki(&self.ca)));
        let pre_der = pre.to_der().expect("pre");
        let n = pre_der.len();
        signed.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        signed.extend_from_slice(&pre_der);
        signed.extend_from_slice(&[0, 0]);
        let sct_sig = sign(&self.ct, &signed);
        let mut sct = vec![0u8];
        sct.extend_from_slice(&sha256(&spki(&self.ct)));
        sct.extend_from_slice(&ts_ms.to_be_bytes());
        sct.extend_from_slice(&[0, 0, 4, 3]);
        sct.extend_from_slice(&(sct_sig.len() as u16).to_be_bytes());
        sct.extend_from_slice(&sct_sig);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&(sct.len() as u16).to_be_bytes());
        list.extend_from_slice(&sct);
        exts.push(ext(
            SCT_LIST,
            false,
            OctetString::new(list)
                .expect("sct")
                .to_der()
                .expect("sct der"),
        ));
        let leaf_der = certify(
            tbs(
                7,
                "CN=test-fulcio,O=srediag-test",
                "",
                (nb, nb + 600),
                &leaf_key,
                exts,
            ),
            &self.ca,
        );

        let sig = sign(&leaf_key, artifact);
        let logged = o.logged_artifact.unwrap_or(artifact);
        let logged_sig = sign(&leaf_key, logged);
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            b64_encode(&leaf_der)
        );
        let body = json!({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex(&sha256(logged))}},
                "signature": {"content": b64_encode(&logged_sig), "publicKey": {"content": b64_encode(pem.as_bytes())}}
            }
        })
        .to_string();
        let body_b64 = b64_encode(body.as_bytes());
        let key_id = sha256(&spki(&self.rekor));
        let integrated = self.t0 + o.integrated_after;
        let set_payload = format!(
            r#"{{"body":"{body_b64}","integratedTime":{integrated},"logID":"{}","logIndex":0}}"#,
            hex(&key_id)
        );
        let set = sign(&self.rekor, set_payload.as_bytes());
        let mut leaf_in = vec![0u8];
        leaf_in.extend_from_slice(body.as_bytes());
        let root = sha256(&leaf_in);
        let note = format!("rekor.test - 1\n1\n{}\n", b64_encode(&root));
        let mut hint_sig = key_id[..4].to_vec();
        hint_sig.extend_from_slice(&sign(&self.rekor, note.as_bytes()));
        let checkpoint = format!("{note}\n\u{2014} rekor.test {}\n", b64_encode(&hint_sig));
        let mut entry = json!({
            "logIndex": "0",
            "logId": {"keyId": b64_encode(&key_id)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": integrated.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": b64_encode(&set)},
            "inclusionProof": {"logIndex": "0", "rootHash": b64_encode(&root), "treeSize": "1", "hashes": [], "checkpoint": {"envelope": checkpoint}},
            "canonicalizedBody": body_b64
        });
        if o.no_inclusion_proof {
            entry
                .as_object_mut()
                .expect("object")
                .remove("inclusionProof");
        }
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"certificate": {"rawBytes": b64_encode(&leaf_der)}, "tlogEntries": [entry]},
            "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64_encode(&sha256(artifact))}, "signature": b64_encode(&sig)}
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::policy::{IdentityEntry, PolicyFile, TrustPolicy};
    use crate::{HostInfo, Status, TrustedBy, verify_bundle_dir};
    use std::path::{Path, PathBuf};

    fn bundle(dir: &Path) -> PathBuf {
        let b = dir.join("bundle");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("plugin"), b"#!/bin/sh\n").unwrap();
        let h = hex(&sha256(b"#!/bin/sh\n"));
        std::fs::write(
            b.join("manifest.yaml"),
            format!(
                "api_version: srediag.io/plugin/v1\nname: p\ntype: processor\nversion: 1.0.0\nentrypoint: plugin\nsha256: {h}\n\
requires: {{srediag: '>=0.0', ipc_protocol: 1, schema_version: 1}}\nfiles: {{plugin: {{sha256: {h}}}}}\n"
            ),
        )
        .unwrap();
        b
    }

    fn statement(b: &Path) -> Vec<u8> {
        Manifest::parse(&std::fs::read(b.join("manifest.yaml")).unwrap())
            .unwrap()
            .statement()
    }

    fn policy(dir: &Path, fx: &Fixture, identity: &str, issuer: &str) -> TrustPolicy {
        std::fs::write(dir.join("trusted_root.json"), fx.trusted_root_json()).unwrap();
        let f = PolicyFile {
            identities: vec![IdentityEntry {
                issuer: issuer.into(),
                identity: Some(identity.into()),
                identity_regex: None,
            }],
            trusted_root: Some("trusted_root.json".into()),
            ..Default::default()
        };
        TrustPolicy::from_file(f, dir, &dir.join("trust.yaml")).unwrap()
    }

    fn run(
        o: &SignOpts<'_>,
        identity: &str,
        issuer: &str,
        edit: impl FnOnce(&Path),
    ) -> Result<TrustedBy, (Status, String)> {
        let tmp = tempfile::tempdir().unwrap();
        let fx = Fixture::new();
        let b = bundle(tmp.path());
        std::fs::write(b.join("manifest.sigstore.json"), fx.sign(&statement(&b), o)).unwrap();
        edit(&b);
        let p = policy(tmp.path(), &fx, identity, issuer);
        verify_bundle_dir(
            &b,
            &p,
            &HostInfo::new(semver::Version::new(0, 1, 0), Default::default()),
            None,
        )
        .0
        .map(|v| v.trusted_by)
        .map_err(|e| (e.status, e.detail))
    }

    #[track_caller]
    fn expect(r: Result<TrustedBy, (Status, String)>, status: Status, has: &str) {
        let (s, d) = r.expect_err("must be rejected");
        assert_eq!(s, status, "{d}");
        assert!(d.contains(has), "{d:?} lacks {has:?}");
    }

    #[test]
    fn keyless_happy_path() {
        let r = run(&SignOpts::default(), IDENTITY, ISSUER, |_| {}).expect("trusted");
        assert_eq!(
            r,
            TrustedBy::Identity {
                identity: IDENTITY.into(),
                issuer: ISSUER.into()
            }
        );
    }

    #[test]
    fn keyless_wrong_identity_and_issuer() {
        expect(
            run(
                &SignOpts::default(),
                "https://github.com/other/x",
                ISSUER,
                |_| {},
            ),
            Status::RejectedPolicy,
            "not allowed",
        );
        expect(
            run(
                &SignOpts::default(),
                IDENTITY,
                "https://accounts.google.com",
                |_| {},
            ),
            Status::RejectedPolicy,
            "OIDC issuer",
        );
        let o = SignOpts {
            issuer: "https://evil.example",
            ..Default::default()
        };
        expect(
            run(&o, IDENTITY, ISSUER, |_| {}),
            Status::RejectedPolicy,
            "evil.example",
        );
    }

    #[test]
    fn keyless_expired_certificate_without_valid_timestamp() {
        // Logged 15 minutes after issuance: the 10-minute certificate had expired.
        let o = SignOpts {
            integrated_after: 60 + 900,
            ..Default::default()
        };
        expect(
            run(&o, IDENTITY, ISSUER, |_| {}),
            Status::RejectedSignature,
            "outside the certificate's validity",
        );
    }

    #[test]
    fn keyless_log_entry_from_another_signature() {
        let o = SignOpts {
            logged_artifact: Some(b"another artifact"),
            ..Default::default()
        };
        expect(
            run(&o, IDENTITY, ISSUER, |_| {}),
            Status::RejectedSignature,
            "log entry does not match",
        );
    }

    #[test]
    fn keyless_missing_inclusion_proof() {
        let o = SignOpts {
            no_inclusion_proof: true,
            ..Default::default()
        };
        expect(
            run(&o, IDENTITY, ISSUER, |_| {}),
            Status::RejectedSignature,
            "no inclusion proof",
        );
        // Underneath, the typed variant callers match on.
        let fx = Fixture::new();
        let root =
            crate::sigstore::TrustedRoot::from_json(fx.trusted_root_json().as_bytes()).unwrap();
        let matcher = |s: &str| s == IDENTITY;
        let e = crate::sigstore::verify_bundle(
            fx.sign(b"artifact", &o).as_bytes(),
            b"artifact",
            &root,
            &crate::sigstore::Signer::Identity {
                identity: &matcher,
                issuer: ISSUER,
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            crate::sigstore::SigstoreError::Tlog(crate::sigstore::TlogError::NoInclusionProof)
        );
    }

    #[test]
    fn keyless_manifest_edited_after_signing() {
        let r = run(&SignOpts::default(), IDENTITY, ISSUER, |b| {
            let t = std::fs::read_to_string(b.join("manifest.yaml")).unwrap();
            std::fs::write(
                b.join("manifest.yaml"),
                t.replace(
                    "version: 1.0.0",
                    "version: 1.0.0\nsandbox: {landlock: {read_write: [/etc]}}",
                ),
            )
            .unwrap();
        });
        expect(r, Status::RejectedSignature, "does not match the artifact");
    }

    #[test]
    fn keyless_malformed_bundle_json() {
        let r = run(&SignOpts::default(), IDENTITY, ISSUER, |b| {
            std::fs::write(b.join("manifest.sigstore.json"), "{\"mediaType\": 3").unwrap()
        });
        expect(r, Status::Malformed, "manifest.sigstore.json");
    }
}
