//! The pinned `trusted_root.json`: transparency logs, Fulcio CAs, CT logs and timestamp
//! authorities, each with a validity interval.

use super::SigstoreError;
use super::model::{self, TrustedRootJson};
use super::tlog::Tlog;
use super::tsa::Tsa;
use super::x509::{Cert, CtLog, Validity, parse_time};
use crate::keys::{PublicKey, b64};

/// A Fulcio CA from the trusted root.
#[derive(Debug, Clone)]
pub(super) struct Ca {
    pub(super) chain: Vec<Cert>,
    pub(super) valid: Validity,
}

/// A parsed, checked `trusted_root.json`.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub(super) tlogs: Vec<Tlog>,
    pub(super) cas: Vec<Ca>,
    pub(super) ctlogs: Vec<CtLog>,
    pub(super) tsas: Vec<Tsa>,
}

fn range(r: &Option<model::TimeRange>, what: &str) -> Result<Validity, SigstoreError> {
    let r = r
        .as_ref()
        .ok_or_else(|| SigstoreError::TrustedRoot(format!("{what} has no validFor")))?;
    let start = r
        .start
        .as_deref()
        .ok_or_else(|| SigstoreError::TrustedRoot(format!("{what} validFor has no start")))
        .and_then(|s| {
            parse_time(s)
                .ok_or_else(|| SigstoreError::TrustedRoot(format!("{what}: bad time {s:?}")))
        })?;
    let end = match r.end.as_deref() {
        None => None,
        Some(s) => Some(
            parse_time(s)
                .ok_or_else(|| SigstoreError::TrustedRoot(format!("{what}: bad time {s:?}")))?,
        ),
    };
    Ok((start, end))
}

fn chain(c: &model::CertificateChain, what: &str) -> Result<Vec<Cert>, SigstoreError> {
    c.certificates
        .iter()
        .map(|r| {
            b64(&r.raw_bytes)
                .ok_or_else(|| {
                    SigstoreError::TrustedRoot(format!("{what}: certificate is not base64"))
                })
                .and_then(|d| {
                    Cert::parse(&d).map_err(|e| SigstoreError::TrustedRoot(format!("{what}: {e}")))
                })
        })
        .collect()
}

impl TrustedRoot {
    /// Parses a `trusted_root.json`. Every key and authority must carry a validity interval with
    /// a start (an open start would make a key trusted for all of history); keys of unsupported
    /// algorithms are kept but can verify nothing.
    pub fn from_json(json: &[u8]) -> Result<TrustedRoot, SigstoreError> {
        let r: TrustedRootJson =
            serde_json::from_slice(json).map_err(|e| SigstoreError::TrustedRoot(e.to_string()))?;
        if !r
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(SigstoreError::TrustedRoot(format!(
                "unknown media type {:?}",
                r.media_type
            )));
        }
        let log = |l: &model::TransparencyLogInstance,
                   what: &str|
         -> Result<(Vec<u8>, Option<PublicKey>, Validity), SigstoreError> {
            let key_id = b64(&l.log_id.key_id)
                .ok_or_else(|| SigstoreError::TrustedRoot(format!("{what}: bad logId")))?;
            let valid = range(&l.public_key.valid_for, &format!("{what} {}", l.base_url))?;
            let key = l
                .public_key
                .raw_bytes
                .as_deref()
                .and_then(b64)
                .and_then(|d| PublicKey::from_spki_der(&d).ok());
            Ok((key_id, key, valid))
        };
        let tlogs = r
            .tlogs
            .iter()
            .map(|l| log(l, "tlog").map(|(key_id, key, valid)| Tlog { key_id, key, valid }))
            .collect::<Result<_, _>>()?;
        let ctlogs = r
            .ctlogs
            .iter()
            .map(|l| log(l, "ctlog").map(|(log_id, key, valid)| CtLog { log_id, key, valid }))
            .collect::<Result<_, _>>()?;
        let cas = r
            .certificate_authorities
            .iter()
            .map(|c| {
                Ok(Ca {
                    chain: chain(&c.cert_chain, &c.uri)?,
                    valid: range(&c.valid_for, &c.uri)?,
                })
            })
            .collect::<Result<_, SigstoreError>>()?;
        let tsas = r
            .timestamp_authorities
            .iter()
            .map(|c| {
                Ok(Tsa {
                    chain: chain(&c.cert_chain, &c.uri)?,
                    valid: range(&c.valid_for, &c.uri)?,
                })
            })
            .collect::<Result<_, SigstoreError>>()?;
        Ok(TrustedRoot {
            tlogs,
            cas,
            ctlogs,
            tsas,
        })
    }
}
