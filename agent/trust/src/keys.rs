//! Public keys and signature checks shared by the key-based path (`cosign sign-blob --key`,
//! `openssl dgst -sha256 -sign`) and the Sigstore path (Fulcio certificates, Rekor and CT log
//! keys, TSA certificates).

use base64::Engine as _;
use p256::pkcs8::DecodePublicKey as _;
use sha2::Digest as _;
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

/// `id-ecPublicKey`.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1` / P-256.
const P256_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` / P-384.
const P384_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `rsaEncryption`.
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-Ed25519`.
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A hash function named by a signature algorithm or a message imprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// Digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// From a digest algorithm OID (`id-sha256`, …).
    pub fn from_digest_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        match oid.to_string().as_str() {
            "2.16.840.1.101.3.4.2.1" => Some(Hash::Sha256),
            "2.16.840.1.101.3.4.2.2" => Some(Hash::Sha384),
            "2.16.840.1.101.3.4.2.3" => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// From a signature algorithm OID (`ecdsa-with-SHA256`, `sha256WithRSAEncryption`, …).
    pub fn from_sig_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        match oid.to_string().as_str() {
            "1.2.840.10045.4.3.2" | "1.2.840.113549.1.1.11" => Some(Hash::Sha256),
            "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => Some(Hash::Sha384),
            "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" => Some(Hash::Sha512),
            _ => None,
        }
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Lowercase hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A verification key: what Sigstore and cosign use. ECDSA P-256/P-384 and Ed25519; RSA
/// (PKCS#1 v1.5, verification only) for private Sigstore deployments whose Fulcio CA or CT log
/// keys are RSA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// ECDSA over P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA over P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA, PKCS#1 v1.5 signatures.
    Rsa(rsa::RsaPublicKey),
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM, or not a `PUBLIC KEY` block.
    #[error("not a PEM public key (expected a -----BEGIN PUBLIC KEY----- block)")]
    NotPem,
    /// Bad DER or unsupported algorithm.
    #[error("unsupported or malformed public key: {0}")]
    Unsupported(String),
    /// A private key could not be encoded as PEM.
    #[error("cannot encode the private key: {0}")]
    Encode(String),
}

impl PublicKey {
    /// From a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        use der::Decode as _;
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::Unsupported(e.to_string()))?;
        let alg = spki.algorithm.oid;
        if alg == EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| KeyError::Unsupported("EC key without a named curve".into()))?;
            if curve == P256_CURVE {
                return p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map(PublicKey::P256)
                    .map_err(|e| KeyError::Unsupported(e.to_string()));
            }
            if curve == P384_CURVE {
                return p384::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map(PublicKey::P384)
                    .map_err(|e| KeyError::Unsupported(e.to_string()));
            }
            return Err(KeyError::Unsupported(format!("EC curve {curve}")));
        }
        if alg == ED25519 {
            let raw: [u8; 32] = spki
                .subject_public_key
                .as_bytes()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Unsupported("Ed25519 key is not 32 bytes".into()))?;
            return ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map(PublicKey::Ed25519)
                .map_err(|e| KeyError::Unsupported(e.to_string()));
        }
        if alg == RSA {
            use rsa::pkcs8::DecodePublicKey as _;
            use rsa::traits::PublicKeyParts as _;
            let k = rsa::RsaPublicKey::from_public_key_der(der)
                .map_err(|e| KeyError::Unsupported(e.to_string()))?;
            if k.size() < 256 {
                return Err(KeyError::Unsupported(
                    "RSA key shorter than 2048 bits".into(),
                ));
            }
            return Ok(PublicKey::Rsa(k));
        }
        Err(KeyError::Unsupported(format!("algorithm {alg}")))
    }

    /// From a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as written by `cosign generate-key-pair`
    /// (`cosign.pub`) and `openssl pkey -pubout`.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let der = pem_decode(pem, "PUBLIC KEY").ok_or(KeyError::NotPem)?;
        PublicKey::from_spki_der(&der)
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            PublicKey::P256(k) => k
                .to_public_key_der()
                .map(|d| d.into_vec())
                .unwrap_or_default(),
            PublicKey::P384(k) => k
                .to_public_key_der()
                .map(|d| d.into_vec())
                .unwrap_or_default(),
            PublicKey::Ed25519(k) => {
                // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING 00 || key }
                let mut v = vec![
                    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
                ];
                v.extend_from_slice(k.as_bytes());
                v
            }
            PublicKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                k.to_public_key_der()
                    .map(|d| d.into_vec())
                    .unwrap_or_default()
            }
        }
    }

    /// A stable id: `sha256:` + hex of the DER SubjectPublicKeyInfo (what Rekor v1 uses as
    /// its log id).
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex(&sha256(&self.to_spki_der())))
    }

    /// Checks an ECDSA (ASN.1 DER) or RSA PKCS#1 v1.5 signature over a precomputed digest.
    /// Ed25519 keys never verify a digest.
    pub fn verify_prehash(&self, digest: &[u8], sig_der: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig_der)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig_der)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            PublicKey::Rsa(k) => {
                let scheme = match digest.len() {
                    32 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    48 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    64 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                    _ => return false,
                };
                k.verify(scheme, digest, sig_der).is_ok()
            }
            PublicKey::Ed25519(_) => false,
        }
    }

    /// Checks a signature over `msg`: ECDSA (DER) or RSA over `hash(msg)`, or Ed25519 (64 raw bytes)
    /// over `msg` itself.
    pub fn verify(&self, msg: &[u8], sig: &[u8], hash: Hash) -> bool {
        match self {
            PublicKey::Ed25519(k) => {
                let Ok(raw) = <[u8; 64]>::try_from(sig) else {
                    return false;
                };
                k.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&raw))
                    .is_ok()
            }
            _ => self.verify_prehash(&hash.digest(msg), sig),
        }
    }

    /// The hash that goes with this key when nothing else says (SHA-256 for P-256, SHA-384 for
    /// P-384).
    pub fn default_hash(&self) -> Hash {
        match self {
            PublicKey::P384(_) => Hash::Sha384,
            _ => Hash::Sha256,
        }
    }
}

/// The DER inside the first PEM block labelled `label` (`-----BEGIN <label>-----`).
pub fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    pem_decode_all(pem, label).into_iter().next()
}

/// Every PEM block labelled `label`, in order.
pub fn pem_decode_all(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(b) = rest.find(&begin) {
        let after = &rest[b + begin.len()..];
        let Some(e) = after.find(&end) else { break };
        let body: String = after[..e].chars().filter(|c| !c.is_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(d) => out.push(d),
            Err(_) => return Vec::new(),
        }
        rest = &after[e + end.len()..];
    }
    out
}

/// Decodes base64 as Sigstore's JSON carries it: standard alphabet, padding optional; the
/// URL-safe alphabet is accepted too (protobuf JSON allows both). Line breaks are skipped, as
/// Go's and Python's decoders do (bundles written with `base64` without `-w0` carry them); any
/// other whitespace is an error.
pub fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let joined: String;
    let s = if s.contains(['\n', '\r']) {
        joined = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        joined.as_str()
    } else {
        s
    };
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .ok()
}

/// Standard base64 with padding.
pub fn b64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A detached cosign-format signature: base64 of an ASN.1 DER ECDSA signature (what
/// `cosign sign-blob --key` prints and `openssl dgst -sha256 -sign … | base64 -w0` gives).
/// Raw DER is accepted too, so an `openssl dgst` output file can be used unchanged.
pub fn decode_signature(text_or_der: &[u8]) -> Option<Vec<u8>> {
    if text_or_der.first() == Some(&0x30) && p256::ecdsa::Signature::from_der(text_or_der).is_ok() {
        return Some(text_or_der.to_vec());
    }
    let s = std::str::from_utf8(text_or_der).ok()?;
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    b64(&compact)
}

/// The signing key type of `srediag plugin sign` (ECDSA P-256, cosign's default).
pub use p256::ecdsa::SigningKey as P256SigningKey;

/// Reads a P-256 private key: PEM PKCS#8 (`PRIVATE KEY`, `openssl genpkey`) or SEC1
/// (`EC PRIVATE KEY`, `openssl ecparam -genkey`). (Encrypted cosign keys are not read.)
pub fn signing_key_from_pem(pem: &str) -> Result<P256SigningKey, KeyError> {
    use p256::pkcs8::DecodePrivateKey as _;
    if let Some(der) = pem_decode(pem, "PRIVATE KEY") {
        return p256::SecretKey::from_pkcs8_der(&der)
            .map(Into::into)
            .map_err(|e| KeyError::Unsupported(e.to_string()));
    }
    if let Some(der) = pem_decode(pem, "EC PRIVATE KEY") {
        return p256::SecretKey::from_sec1_der(&der)
            .map(Into::into)
            .map_err(|e| KeyError::Unsupported(e.to_string()));
    }
    Err(KeyError::NotPem)
}

/// A fresh random P-256 signing key (bytes from the kernel's CSPRNG, `/dev/urandom`).
pub fn generate_signing_key() -> std::io::Result<P256SigningKey> {
    let mut f = std::fs::File::open("/dev/urandom")?;
    loop {
        let mut b = [0u8; 32];
        std::io::Read::read_exact(&mut f, &mut b)?;
        // Out-of-range scalars (zero or ≥ n, probability ~2^-32) are drawn again.
        if let Ok(k) = P256SigningKey::from_slice(&b) {
            return Ok(k);
        }
    }
}

/// PEM PKCS#8 of a signing key (`plugin keygen`).
pub fn private_pem(key: &P256SigningKey) -> Result<String, KeyError> {
    use p256::pkcs8::EncodePrivateKey as _;
    let sk: p256::SecretKey = key.into();
    sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .map(|z| z.to_string())
        .map_err(|e| KeyError::Encode(e.to_string()))
}

/// The PEM `PUBLIC KEY` of a signing key.
pub fn public_pem(key: &P256SigningKey) -> String {
    use p256::pkcs8::EncodePublicKey as _;
    key.verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_b64() {
        assert!(pem_decode("nothing", "PUBLIC KEY").is_none());
        assert_eq!(b64("aGk=").unwrap(), b"hi");
        assert_eq!(b64("aGk").unwrap(), b"hi");
        assert!(b64("a G k=").is_none());
        assert_eq!(b64("aG\nk=").unwrap(), b"hi");
        assert!(decode_signature(b"   \n").is_none());
    }
}
