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
fn parse_tst_info(b: &[u8]) -> Result<TstInfo, String> {
    let mut r = der::SliceReader::new(b).map_err(|e| e.to_string())?;
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
        .map_err(|e| format!("malformed TSTInfo: {e}"))?;
    if out.2 != der::Tag::GeneralizedTime {
        return Err("TSTInfo genTime is not a GeneralizedTime".into());
    }
    let s = std::str::from_utf8(&out.3).map_err(|_| "bad genTime")?;
    let gen_time = parse_time(s).ok_or("bad genTime")?;
    Ok(TstInfo {
        imprint_alg: out.0,
        imprint: out.1,
        gen_time,
    })
}

/// Sigstore stores the whole `TimeStampResp` (`SEQUENCE { PKIStatusInfo, ContentInfo }`); a
/// bare `TimeStampToken` (`ContentInfo`) is accepted too. The status must be granted (0) or
/// grantedWithMods (1).
fn unwrap_response(b: &[u8]) -> Result<&[u8], String> {
    let bad = |e: der::Error| format!("malformed timestamp response: {e}");
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
        return Err("timestamp response status is not granted".into());
    }
    let token = inner.read_slice(inner.remaining_len()).map_err(bad)?;
    Ok(token)
}

/// Verifies one RFC 3161 token over `signature` (the bytes whose hash the TSA stamped) and
/// returns its time (ns). Some trusted TSA must: be valid (trusted-root interval) at the
/// stamped time, have a chain valid at that time, and have signed the token.
pub fn verify_timestamp(token: &[u8], signature: &[u8], tsas: &[Tsa]) -> Result<i64, String> {
    let token = unwrap_response(token)?;
    let ci = cms::content_info::ContentInfo::from_der(token)
        .map_err(|e| format!("malformed timestamp: {e}"))?;
    if ci.content_type != SIGNED_DATA {
        return Err("timestamp is not a CMS SignedData".into());
    }
    let sd: cms::signed_data::SignedData = ci
        .content
        .decode_as()
        .map_err(|e| format!("malformed timestamp: {e}"))?;
    if sd.encap_content_info.econtent_type != TST_INFO {
        return Err("timestamp content is not a TSTInfo".into());
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("timestamp without content")?;
    let econtent = econtent
        .decode_as::<der::asn1::OctetString>()
        .map_err(|e| format!("malformed timestamp: {e}"))?;
    let econtent = econtent.as_bytes();
    let tst = parse_tst_info(econtent)?;
    let ih = Hash::from_digest_oid(&tst.imprint_alg).ok_or("unsupported message imprint hash")?;
    if ih.digest(signature) != tst.imprint {
        return Err("timestamp message imprint does not match the signature".into());
    }
    let t = tst.gen_time;
    let mut why = Vec::new();
    for si in sd.signer_infos.0.iter() {
        let Some(dh) = Hash::from_digest_oid(&si.digest_alg.oid) else {
            why.push("unsupported digest algorithm".to_string());
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
                    why.push("unsupported signature algorithm".into());
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
                    why.push("signed attributes do not match the token".into());
                    continue;
                }
                match attrs.to_der() {
                    Ok(d) => d,
                    Err(e) => {
                        why.push(e.to_string());
                        continue;
                    }
                }
            }
            None => econtent.to_vec(),
        };
        for tsa in tsas {
            if t < tsa.valid.0 || tsa.valid.1.is_some_and(|e| t > e) {
                why.push("timestamp outside the TSA's trusted-root validity".into());
                continue;
            }
            let Some(leaf) = tsa.chain.first() else {
                continue;
            };
            if !tsa.chain.iter().all(|c| c.valid_at(t)) {
                why.push("timestamp outside the TSA certificate chain's validity".into());
                continue;
            }
            if !tsa.chain.windows(2).all(|w| w[0].issued_by(&w[1])) {
                why.push("TSA chain in the trusted root does not verify".into());
                continue;
            }
            let eku = leaf.ext_key_usage();
            if !eku.is_empty() && !eku.contains(&EKU_TIME_STAMPING) {
                why.push("TSA certificate lacks the timeStamping usage".into());
                continue;
            }
            let Ok(key) = leaf.public_key() else { continue };
            if key.verify(&signed, si.signature.as_bytes(), sig_hash) {
                return Ok(t);
            }
            why.push("timestamp not signed by a trusted TSA".into());
        }
    }
    why.dedup();
    Err(format!(
        "timestamp does not verify: {}",
        if why.is_empty() {
            "no trusted TSA".into()
        } else {
            why.join("; ")
        }
    ))
}
