//! RFC 3161 signed timestamps: a CMS `SignedData` over a `TSTInfo` whose message imprint is
//! the hash of the Sigstore signature. Verified against the trusted root's timestamp
//! authorities only (certificates embedded in the token are ignored: they prove nothing).

use super::x509::{Cert, EKU_TIME_STAMPING, Validity, parse_time};
use crate::keys::Hash;
use der::{Decode as _, Encode as _, Reader as _};
use x509_cert::spki::ObjectIdentifier;

/// `id-signedData`.
const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-ct-TSTInfo`.
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// `id-contentType` attribute.
const ATTR_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// `id-messageDigest` attribute.
const ATTR_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// `id-ecPublicKey` (some signers put the key algorithm where the signature algorithm goes).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `rsaEncryption` (likewise, for RSA signers such as `openssl ts`).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why an RFC 3161 timestamp does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The `TimeStampResp` wrapper cannot be decoded.
    #[error("malformed timestamp response: {0}")]
    Response(String),
    /// The response's status is neither granted nor grantedWithMods.
    #[error("timestamp response status is not granted")]
    NotGranted,
    /// The token (`ContentInfo`, `SignedData`, its content) cannot be decoded.
    #[error("malformed timestamp: {0}")]
    Malformed(String),
    /// The token is not a CMS `SignedData`.
    #[error("timestamp is not a CMS SignedData")]
    NotSignedData,
    /// The signed content is not a `TSTInfo`.
    #[error("timestamp content is not a TSTInfo")]
    NotTstInfo,
    /// The signed content is absent.
    #[error("timestamp without content")]
    NoContent,
    /// The `TSTInfo` cannot be decoded.
    #[error("malformed TSTInfo: {0}")]
    TstInfo(String),
    /// `genTime` is not a GeneralizedTime.
    #[error("TSTInfo genTime is not a GeneralizedTime")]
    GenTimeType,
    /// `genTime` cannot be parsed.
    #[error("bad genTime")]
    GenTime,
    /// The message imprint uses an unsupported hash.
    #[error("unsupported message imprint hash")]
    ImprintHash,
    /// The stamped hash is not the signature's.
    #[error("timestamp message imprint does not match the signature")]
    ImprintMismatch,
    /// No trusted TSA signed it; why each signer/TSA pair failed.
    #[error("timestamp does not verify: {}", reasons(.0))]
    NotVerified(Vec<TsaRejection>),
}

/// Why one signer of a timestamp, checked against one trusted TSA, does not verify it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsaRejection {
    /// The signer's digest algorithm is unsupported.
    #[error("unsupported digest algorithm")]
    DigestAlgorithm,
    /// The signer's signature algorithm is unsupported.
    #[error("unsupported signature algorithm")]
    SignatureAlgorithm,
    /// The signed attributes name another content type or digest.
    #[error("signed attributes do not match the token")]
    SignedAttributes,
    /// The signed attributes cannot be re-encoded.
    #[error("{0}")]
    AttributeEncoding(String),
    /// The stamped time is outside the TSA's validity in the trusted root.
    #[error("timestamp outside the TSA's trusted-root validity")]
    TsaValidity,
    /// The stamped time is outside the TSA's certificate chain.
    #[error("timestamp outside the TSA certificate chain's validity")]
    ChainValidity,
    /// The TSA's chain in the trusted root does not verify.
    #[error("TSA chain in the trusted root does not verify")]
    Chain,
    /// The TSA's certificate may not stamp time.
    #[error("TSA certificate lacks the timeStamping usage")]
    Usage,
    /// The signature is not the TSA's.
    #[error("timestamp not signed by a trusted TSA")]
    Signature,
}

fn reasons(why: &[TsaRejection]) -> String {
    if why.is_empty() {
        "no trusted TSA".into()
    } else {
        why.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A timestamp authority from the trusted root.
#[derive(Debug, Clone)]
pub struct Tsa {
    /// Leaf first, root last.
    pub chain: Vec<Cert>,
    /// Validity from the trusted root, ns (closed interval).
    pub valid: Validity,
}

/// What the token says.
struct TstInfo {
    imprint_alg: ObjectIdentifier,
    imprint: Vec<u8>,
    gen_time: i64,
}

/// Decodes `TSTInfo` far enough for verification (version, policy, messageImprint,
/// serialNumber, genTime; the optional tail is skipped).
fn parse_tst_info(b: &[u8]) -> Result<TstInfo, TimestampError> {
    let mut r = der::SliceReader::new(b).map_err(|e| TimestampError::TstInfo(e.to_string()))?;
    let out = r
        .sequence(|r| {
            let _version = der::asn1::Int::decode(r)?;
            let _policy = ObjectIdentifier::decode(r)?;
            let (imprint_alg, imprint) = r.sequence(|r| {
                let alg = x509_cert::spki::AlgorithmIdentifierOwned::decode(r)?;
                let h = der::asn1::OctetString::decode(r)?;
                Ok((alg.oid, h.into_bytes()))
            })?;
            let _serial = der::asn1::Int::decode(r)?;
            let t = der::asn1::AnyRef::decode(r)?;
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            Ok((
                imprint_alg,
                imprint,
                der::Tagged::tag(&t),
                t.value().to_vec(),
            ))
        })
        .map_err(|e| TimestampError::TstInfo(e.to_string()))?;
    if out.2 != der::Tag::GeneralizedTime {
        return Err(TimestampError::GenTimeType);
    }
    let s = std::str::from_utf8(&out.3).map_err(|_| TimestampError::GenTime)?;
    let gen_time = parse_time(s).ok_or(TimestampError::GenTime)?;
    Ok(TstInfo {
        imprint_alg: out.0,
        imprint: out.1,
        gen_time,
    })
}

/// Sigstore stores the whole `TimeStampResp` (`SEQUENCE { PKIStatusInfo, ContentInfo }`); a
/// bare `TimeStampToken` (`ContentInfo`) is accepted too. The status must be granted (0) or
/// grantedWithMods (1).
fn unwrap_response(b: &[u8]) -> Result<&[u8], TimestampError> {
    let bad = |e: der::Error| TimestampError::Response(e.to_string());
    let mut r = der::SliceReader::new(b).map_err(bad)?;
    let outer = der::asn1::AnyRef::decode(&mut r).map_err(bad)?;
    let mut inner = der::SliceReader::new(outer.value()).map_err(bad)?;
    let first = der::asn1::AnyRef::decode(&mut inner).map_err(bad)?;
    if der::Tagged::tag(&first) == der::Tag::ObjectIdentifier {
        return Ok(b);
    }
    let mut st = der::SliceReader::new(first.value()).map_err(bad)?;
    let status = der::asn1::Int::decode(&mut st).map_err(bad)?;
    if !matches!(status.as_bytes(), [0] | [1]) {
        return Err(TimestampError::NotGranted);
    }
    let token = inner.read_slice(inner.remaining_len()).map_err(bad)?;
    Ok(token)
}

/// Verifies one RFC 3161 token over `signature` (the bytes whose hash the TSA stamped) and
/// returns its time (ns). Some trusted TSA must: be valid (trusted-root interval) at the
/// stamped time, have a chain valid at that time, and have signed the token.
pub fn verify_timestamp(
    token: &[u8],
    signature: &[u8],
    tsas: &[Tsa],
) -> Result<i64, TimestampError> {
    let malformed = |e: der::Error| TimestampError::Malformed(e.to_string());
    let token = unwrap_response(token)?;
    let ci = cms::content_info::ContentInfo::from_der(token).map_err(malformed)?;
    if ci.content_type != SIGNED_DATA {
        return Err(TimestampError::NotSignedData);
    }
    let sd: cms::signed_data::SignedData = ci.content.decode_as().map_err(malformed)?;
    if sd.encap_content_info.econtent_type != TST_INFO {
        return Err(TimestampError::NotTstInfo);
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or(TimestampError::NoContent)?;
    let econtent = econtent
        .decode_as::<der::asn1::OctetString>()
        .map_err(malformed)?;
    let econtent = econtent.as_bytes();
    let tst = parse_tst_info(econtent)?;
    let ih = Hash::from_digest_oid(&tst.imprint_alg).ok_or(TimestampError::ImprintHash)?;
    if ih.digest(signature) != tst.imprint {
        return Err(TimestampError::ImprintMismatch);
    }
    let t = tst.gen_time;
    let mut why = Vec::new();
    for si in sd.signer_infos.0.iter() {
        let Some(dh) = Hash::from_digest_oid(&si.digest_alg.oid) else {
            why.push(TsaRejection::DigestAlgorithm);
            continue;
        };
        let sig_hash = if si.signature_algorithm.oid == EC_PUBLIC_KEY
            || si.signature_algorithm.oid == RSA_ENCRYPTION
        {
            dh
        } else {
            match Hash::from_sig_oid(&si.signature_algorithm.oid) {
                Some(h) => h,
                None => {
                    why.push(TsaRejection::SignatureAlgorithm);
                    continue;
                }
            }
        };
        let signed: Vec<u8> = match &si.signed_attrs {
            Some(attrs) => {
                let ct = attrs.iter().find(|a| a.oid == ATTR_CONTENT_TYPE);
                let ct_ok = ct
                    .and_then(|a| a.values.iter().next())
                    .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
                    .is_some_and(|o| o == TST_INFO);
                let md = attrs
                    .iter()
                    .find(|a| a.oid == ATTR_MESSAGE_DIGEST)
                    .and_then(|a| a.values.iter().next())
                    .and_then(|v| v.decode_as::<der::asn1::OctetString>().ok());
                if !ct_ok || md.is_none_or(|m| m.as_bytes() != dh.digest(econtent).as_slice()) {
                    why.push(TsaRejection::SignedAttributes);
                    continue;
                }
                match attrs.to_der() {
                    Ok(d) => d,
                    Err(e) => {
                        why.push(TsaRejection::AttributeEncoding(e.to_string()));
                        continue;
                    }
                }
            }
            None => econtent.to_vec(),
        };
        for tsa in tsas {
            if t < tsa.valid.0 || tsa.valid.1.is_some_and(|e| t > e) {
                why.push(TsaRejection::TsaValidity);
                continue;
            }
            let Some(leaf) = tsa.chain.first() else {
                continue;
            };
            if !tsa.chain.iter().all(|c| c.valid_at(t)) {
                why.push(TsaRejection::ChainValidity);
                continue;
            }
            if !tsa.chain.windows(2).all(|w| w[0].issued_by(&w[1])) {
                why.push(TsaRejection::Chain);
                continue;
            }
            let eku = leaf.ext_key_usage();
            if !eku.is_empty() && !eku.contains(&EKU_TIME_STAMPING) {
                why.push(TsaRejection::Usage);
                continue;
            }
            let Ok(key) = leaf.public_key() else { continue };
            if key.verify(&signed, si.signature.as_bytes(), sig_hash) {
                return Ok(t);
            }
            why.push(TsaRejection::Signature);
        }
    }
    why.dedup();
    Err(TimestampError::NotVerified(why))
}
