//! The JSON shapes of a Sigstore bundle (`*.sigstore.json`, protobuf-specs `Bundle` v0.1–v0.3)
//! and of a `trusted_root.json` (protobuf-specs `TrustedRoot`), as protobuf's JSON mapping
//! writes them: camelCase names, bytes as base64, 64-bit integers as strings.
//!
//! Unknown fields are ignored here on purpose: these are documents written by other Sigstore
//! clients, and protobuf JSON readers must accept fields added by later versions. Every field
//! that verification relies on is required where it is used.

use serde::{Deserialize, Deserializer};

/// A 64-bit integer written as a JSON string (protobuf) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I64(pub i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum N {
            N(i64),
            S(String),
        }
        match N::deserialize(d)? {
            N::N(n) => Ok(I64(n)),
            N::S(s) => s.parse().map(I64).map_err(serde::de::Error::custom),
        }
    }
}

/// `Bundle`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: Option<VerificationMaterial>,
    pub message_signature: Option<MessageSignature>,
    pub dsse_envelope: Option<Envelope>,
}

/// `VerificationMaterial`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    pub x509_certificate_chain: Option<CertificateChain>,
    pub certificate: Option<RawBytes>,
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default)]
    pub tlog_entries: Vec<TlogEntry>,
    pub timestamp_verification_data: Option<TimestampVerificationData>,
}

/// `X509CertificateChain`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateChain {
    #[serde(default)]
    pub certificates: Vec<RawBytes>,
}

/// `X509Certificate` / `{rawBytes}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBytes {
    pub raw_bytes: String,
}

/// `PublicKeyIdentifier`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyIdentifier {
    #[serde(default)]
    pub hint: String,
}

/// `TransparencyLogEntry`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlogEntry {
    pub log_index: I64,
    pub log_id: LogId,
    pub kind_version: KindVersion,
    pub integrated_time: Option<I64>,
    pub inclusion_promise: Option<InclusionPromise>,
    pub inclusion_proof: Option<InclusionProof>,
    pub canonicalized_body: String,
}

/// `LogId`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogId {
    pub key_id: String,
}

/// `KindVersion`.
#[derive(Debug, Deserialize)]
pub struct KindVersion {
    pub kind: String,
    pub version: String,
}

/// `InclusionPromise` (the Signed Entry Timestamp).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionPromise {
    pub signed_entry_timestamp: String,
}

/// `InclusionProof`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub log_index: I64,
    pub root_hash: String,
    pub tree_size: I64,
    #[serde(default)]
    pub hashes: Vec<String>,
    pub checkpoint: Option<Checkpoint>,
}

/// `Checkpoint`.
#[derive(Debug, Deserialize)]
pub struct Checkpoint {
    pub envelope: String,
}

/// `TimestampVerificationData`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampVerificationData {
    #[serde(default)]
    pub rfc3161_timestamps: Vec<Rfc3161Timestamp>,
}

/// `RFC3161SignedTimestamp`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rfc3161Timestamp {
    pub signed_timestamp: String,
}

/// `MessageSignature`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSignature {
    pub message_digest: Option<HashOutput>,
    pub signature: String,
}

/// `HashOutput`.
#[derive(Debug, Deserialize)]
pub struct HashOutput {
    pub algorithm: String,
    pub digest: String,
}

/// A DSSE `Envelope`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload: String,
    pub payload_type: String,
    #[serde(default)]
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Deserialize)]
pub struct EnvelopeSignature {
    pub sig: String,
}

/// `TrustedRoot`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootJson {
    pub media_type: String,
    #[serde(default)]
    pub tlogs: Vec<TransparencyLogInstance>,
    #[serde(default)]
    pub certificate_authorities: Vec<CertificateAuthority>,
    #[serde(default)]
    pub ctlogs: Vec<TransparencyLogInstance>,
    #[serde(default)]
    pub timestamp_authorities: Vec<CertificateAuthority>,
}

/// `TransparencyLogInstance`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransparencyLogInstance {
    #[serde(default)]
    pub base_url: String,
    pub public_key: RootPublicKey,
    pub log_id: LogId,
}

/// `PublicKey` in a trusted root.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootPublicKey {
    pub raw_bytes: Option<String>,
    #[serde(default)]
    pub key_details: String,
    pub valid_for: Option<TimeRange>,
}

/// `TimeRange` (RFC 3339 timestamps; a closed interval).
#[derive(Debug, Deserialize)]
pub struct TimeRange {
    pub start: Option<String>,
    pub end: Option<String>,
}

/// `CertificateAuthority`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthority {
    #[serde(default)]
    pub uri: String,
    pub cert_chain: CertificateChain,
    pub valid_for: Option<TimeRange>,
}
