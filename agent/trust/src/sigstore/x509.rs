//! X.509 pieces of Sigstore verification: certificates with their exact signed bytes, chain
//! links, Fulcio extensions, embedded SCTs (RFC 6962 §3.3), and time helpers.
//!
//! Times are nanoseconds since the Unix epoch (`i64`), so closed intervals with fractional
//! bounds (`…T23:59:59.999Z`) compare exactly.

use crate::keys::{Hash, PublicKey, sha256};
use der::{Decode as _, Encode as _};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::spki::ObjectIdentifier;

/// Embedded SCT list (RFC 6962).
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
/// Fulcio: OIDC issuer, raw bytes (deprecated form).
pub const FULCIO_ISSUER_V1: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio: OIDC issuer, DER UTF8String.
pub const FULCIO_ISSUER_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio: SAN otherName for usernames.
const FULCIO_OTHERNAME_SAN: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");
/// `id-ce-subjectAltName`.
const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// `id-ce-basicConstraints`.
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// `id-ce-keyUsage`.
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// `id-ce-extKeyUsage`.
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// `id-kp-codeSigning`.
pub const EKU_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// `id-kp-timeStamping`.
pub const EKU_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// Nanoseconds per second.
pub const NS: i64 = 1_000_000_000;

/// Why a certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// DER decoding of the certificate failed.
    #[error("malformed certificate: {0}")]
    Der(String),
    /// The outer TLV is broken.
    #[error("malformed certificate")]
    Tlv,
    /// Bytes follow the certificate.
    #[error("trailing bytes after certificate")]
    Trailing,
    /// The `tbsCertificate` TLV is broken.
    #[error("malformed tbsCertificate")]
    Tbs,
    /// The subject public key cannot be re-encoded.
    #[error("subject public key: {0}")]
    Spki(String),
    /// The subject public key is not one srediag verifies with.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

/// Why the embedded SCTs of a signing certificate do not vouch for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SctError {
    /// The certificate has no SCT list extension.
    #[error("signing certificate has no embedded SCT")]
    Missing,
    /// The SCT list cannot be decoded.
    #[error("malformed SCT list")]
    MalformedList,
    /// The SCT list's length field is wrong.
    #[error("malformed SCT list length")]
    ListLength,
    /// An SCT cannot be decoded.
    #[error("malformed SCT")]
    Malformed,
    /// The precertificate (the TBS without the SCT list) cannot be encoded.
    #[error("precertificate: {0}")]
    Precertificate(String),
    /// No SCT verifies; why each one failed.
    #[error("no valid SCT: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoneValid(Vec<SctRejection>),
}

/// Why one embedded SCT does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SctRejection {
    /// Not a v1 SCT (or trailing bytes).
    #[error("unsupported SCT version")]
    Version,
    /// Its log is not in the trusted root.
    #[error("SCT from a CT log not in the trusted root")]
    UnknownLog,
    /// Its log's key algorithm is unsupported.
    #[error("CT log key algorithm unsupported")]
    LogKey,
    /// Its time is outside its log key's validity.
    #[error("SCT outside its CT log key's validity")]
    Validity,
    /// Its signature algorithm is unsupported or does not fit the log key.
    #[error("SCT signature algorithm unsupported")]
    Algorithm,
    /// Its signature fails.
    #[error("SCT signature does not verify")]
    Signature,
}

/// A closed validity interval in ns: start, and an end unless open-ended.
pub type Validity = (i64, Option<i64>);

/// A parsed certificate with its DER and the exact `tbsCertificate` bytes its signature covers.
#[derive(Debug, Clone)]
pub struct Cert {
    /// The whole certificate, DER.
    pub der: Vec<u8>,
    /// The `tbsCertificate` TLV as it appears in `der` (not re-encoded).
    pub tbs_der: Vec<u8>,
    /// The parsed form.
    pub cert: Certificate,
}

/// `(tag, header length, total length)` of the DER TLV at the start of `b`.
fn tlv(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (hl, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (2 + n, len)
    };
    let total = hl.checked_add(len)?;
    (total <= b.len()).then_some((tag, hl, total))
}

impl Cert {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Cert, CertError> {
        let cert = Certificate::from_der(der).map_err(|e| CertError::Der(e.to_string()))?;
        let (_, hl, total) = tlv(der).ok_or(CertError::Tlv)?;
        if total != der.len() {
            return Err(CertError::Trailing);
        }
        let inner = &der[hl..];
        let (_, _, tbs_len) = tlv(inner).ok_or(CertError::Tbs)?;
        Ok(Cert {
            der: der.to_vec(),
            tbs_der: inner[..tbs_len].to_vec(),
            cert,
        })
    }

    /// `notBefore`, ns.
    pub fn not_before(&self) -> i64 {
        self.cert
            .tbs_certificate
            .validity
            .not_before
            .to_unix_duration()
            .as_secs() as i64
            * NS
    }

    /// `notAfter`, ns (inclusive).
    pub fn not_after(&self) -> i64 {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs() as i64
            * NS
    }

    /// Valid at `t` (closed interval).
    pub fn valid_at(&self, t: i64) -> bool {
        self.not_before() <= t && t <= self.not_after()
    }

    /// The subject public key.
    pub fn public_key(&self) -> Result<PublicKey, CertError> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| CertError::Spki(e.to_string()))?;
        Ok(PublicKey::from_spki_der(&spki)?)
    }

    /// DER of the subject public key info.
    pub fn spki_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap_or_default()
    }

    /// The value (inner bytes of the OCTET STRING) of extension `oid`.
    pub fn ext(&self, oid: &ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| &e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// Subject and issuer names are equal.
    pub fn is_self_issued(&self) -> bool {
        self.cert.tbs_certificate.subject == self.cert.tbs_certificate.issuer
    }

    /// `issuer` issued this certificate: names chain and `issuer`'s key verifies the signature.
    pub fn issued_by(&self, issuer: &Cert) -> bool {
        if self.cert.tbs_certificate.issuer != issuer.cert.tbs_certificate.subject {
            return false;
        }
        let Some(hash) = Hash::from_sig_oid(&self.cert.signature_algorithm.oid) else {
            return false;
        };
        let Ok(key) = issuer.public_key() else {
            return false;
        };
        let Some(sig) = self.cert.signature.as_bytes() else {
            return false;
        };
        key.verify(&self.tbs_der, sig, hash)
    }

    /// basicConstraints says CA.
    pub fn is_ca(&self) -> bool {
        self.ext(&BASIC_CONSTRAINTS)
            .and_then(|v| x509_cert::ext::pkix::BasicConstraints::from_der(v).ok())
            .is_some_and(|bc| bc.ca)
    }

    /// The extended key usages (empty when the extension is absent).
    pub fn ext_key_usage(&self) -> Vec<ObjectIdentifier> {
        self.ext(&EXT_KEY_USAGE)
            .and_then(|v| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(v).ok())
            .map(|e| e.0)
            .unwrap_or_default()
    }

    /// keyUsage has digitalSignature (true when the extension is absent).
    pub fn allows_digital_signature(&self) -> bool {
        match self.ext(&KEY_USAGE) {
            None => true,
            Some(v) => {
                x509_cert::ext::pkix::KeyUsage::from_der(v).is_ok_and(|ku| ku.digital_signature())
            }
        }
    }

    /// The signer identities in the SAN: URIs, e-mail addresses and Fulcio's otherName.
    pub fn san_identities(&self) -> Vec<String> {
        let Some(v) = self.ext(&SAN) else {
            return Vec::new();
        };
        let Ok(san) = x509_cert::ext::pkix::SubjectAltName::from_der(v) else {
            return Vec::new();
        };
        san.0
            .iter()
            .filter_map(|g| match g {
                GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
                GeneralName::Rfc822Name(s) => Some(s.to_string()),
                GeneralName::OtherName(o) if o.type_id == FULCIO_OTHERNAME_SAN => o
                    .value
                    .decode_as::<der::asn1::Utf8StringRef<'_>>()
                    .ok()
                    .map(|s| s.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The OIDC issuer Fulcio recorded (`1.3.6.1.4.1.57264.1.8`, else the older `.1.1`).
    pub fn fulcio_issuer(&self) -> Option<String> {
        if let Some(v) = self.ext(&FULCIO_ISSUER_V2) {
            return der::asn1::Utf8StringRef::from_der(v)
                .ok()
                .map(|s| s.to_string());
        }
        self.ext(&FULCIO_ISSUER_V1)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }
}

/// A CT log key from the trusted root.
#[derive(Debug, Clone)]
pub struct CtLog {
    /// RFC 6962 log id (SHA-256 of the key's DER SPKI).
    pub log_id: Vec<u8>,
    /// The key, when its algorithm is supported.
    pub key: Option<PublicKey>,
    /// Validity, ns.
    pub valid: Validity,
}

/// Verifies the SCTs embedded in `leaf` (issued by `issuer`): at least one must come from a
/// trusted CT log, within that log's validity, and verify over the precertificate entry.
pub fn verify_embedded_scts(leaf: &Cert, issuer: &Cert, ctlogs: &[CtLog]) -> Result<(), SctError> {
    let ext = leaf.ext(&SCT_LIST).ok_or(SctError::Missing)?;
    let list = der::asn1::OctetStringRef::from_der(ext).map_err(|_| SctError::MalformedList)?;
    let list = list.as_bytes();
    let mut r = Tls(list);
    let total = r.u16().ok_or(SctError::MalformedList)? as usize;
    if total != r.0.len() {
        return Err(SctError::ListLength);
    }
    // The precertificate TBS: the leaf's TBS without the SCT list extension.
    let mut tbs = leaf.cert.tbs_certificate.clone();
    if let Some(exts) = tbs.extensions.as_mut() {
        exts.retain(|e| e.extn_id != SCT_LIST);
    }
    let tbs_der = tbs
        .to_der()
        .map_err(|e| SctError::Precertificate(e.to_string()))?;
    let issuer_key_hash = sha256(&issuer.spki_der());
    let mut errors = Vec::new();
    while !r.0.is_empty() {
        let sct = r.vec16().ok_or(SctError::Malformed)?;
        let mut s = Tls(sct);
        let (
            Some(version),
            Some(log_id),
            Some(ts),
            Some(exts),
            Some(hash_alg),
            Some(sig_alg),
            Some(sig),
        ) = (
            s.u8(),
            s.take(32),
            s.u64(),
            s.vec16(),
            s.u8(),
            s.u8(),
            s.vec16(),
        )
        else {
            return Err(SctError::Malformed);
        };
        if version != 0 || !s.0.is_empty() {
            errors.push(SctRejection::Version);
            continue;
        }
        let Some(log) = ctlogs.iter().find(|l| l.log_id == log_id) else {
            errors.push(SctRejection::UnknownLog);
            continue;
        };
        let Some(key) = &log.key else {
            errors.push(SctRejection::LogKey);
            continue;
        };
        let t = (ts as i64).saturating_mul(1_000_000);
        if t < log.valid.0 || log.valid.1.is_some_and(|e| t > e) {
            errors.push(SctRejection::Validity);
            continue;
        }
        let alg_ok = match key {
            PublicKey::Rsa(_) => sig_alg == 1,
            PublicKey::Ed25519(_) => sig_alg == 7,
            _ => sig_alg == 3,
        };
        if hash_alg != 4 || !alg_ok {
            errors.push(SctRejection::Algorithm);
            continue;
        }
        let mut signed = vec![0u8, 0u8];
        signed.extend_from_slice(&ts.to_be_bytes());
        signed.extend_from_slice(&[0, 1]);
        signed.extend_from_slice(&issuer_key_hash);
        let n = tbs_der.len();
        signed.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        signed.extend_from_slice(&tbs_der);
        signed.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        signed.extend_from_slice(exts);
        if key.verify(&signed, sig, Hash::Sha256) {
            return Ok(());
        }
        errors.push(SctRejection::Signature);
    }
    Err(SctError::NoneValid(errors))
}

/// A TLS-encoding reader.
struct Tls<'a>(&'a [u8]);

impl<'a> Tls<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f]Z` (RFC 3339, UTC) or ASN.1 GeneralizedTime
/// `YYYYMMDDHHMMSS[.f]Z` into ns.
pub fn parse_time(s: &str) -> Option<i64> {
    let digits: String;
    let (main, frac) = if s.contains('-') || s.contains(':') {
        let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
        let (date, time) = s.split_once(['T', 't'])?;
        let (time, frac) = time.split_once('.').map_or((time, ""), |(a, b)| (a, b));
        digits = format!("{}{}", date.replace('-', ""), time.replace(':', ""));
        (digits.as_str(), frac)
    } else {
        let s = s.strip_suffix('Z')?;
        s.split_once('.').map_or((s, ""), |(a, b)| (a, b))
    };
    if main.len() != 14
        || !main.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n = |a: usize, b: usize| main[a..b].parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    let mut nanos = 0i64;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(c - b'0') * 10i64.pow(8 - i as u32);
    }
    secs.checked_mul(NS)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2021-01-12T11:53:27Z"), Some(1_610_452_407 * NS));
        assert_eq!(
            parse_time("2022-10-31T23:59:59.999Z"),
            Some(1_667_260_799 * NS + 999_000_000)
        );
        assert_eq!(parse_time("20210112115327Z"), Some(1_610_452_407 * NS));
        assert_eq!(
            parse_time("20210112115327.5Z"),
            Some(1_610_452_407 * NS + 500_000_000)
        );
        assert_eq!(parse_time("2021-13-12T11:53:27Z"), None);
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn tlv_lengths() {
        assert_eq!(tlv(&[0x30, 0x00]), Some((0x30, 2, 2)));
        assert_eq!(tlv(&[0x30, 0x81, 0x01, 0x00]), Some((0x30, 3, 4)));
        assert_eq!(tlv(&[0x30, 0x05]), None);
    }
}
