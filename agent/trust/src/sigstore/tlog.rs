//! Transparency-log proofs: Rekor v1 Signed Entry Timestamps, RFC 6962/9162 Merkle inclusion
//! proofs, and checkpoints (C2SP signed notes, including Rekor v2's Ed25519 log keys and
//! witness cosignatures, which are ignored unless their key is trusted).

use super::model::TlogEntry;
use super::x509::Validity;
use crate::keys::{Hash, PublicKey, b64, b64_encode, hex, sha256};
use sha2::Digest as _;

/// Why a transparency-log proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    /// The entry has no Signed Entry Timestamp.
    #[error("log entry has no signed entry timestamp")]
    NoSet,
    /// The entry has no integrated time.
    #[error("log entry has no integrated time")]
    NoIntegratedTime,
    /// The SET is not base64.
    #[error("signed entry timestamp is not base64")]
    SetNotBase64,
    /// The SET's signature fails.
    #[error("signed entry timestamp does not verify with the log key")]
    SetInvalid,
    /// The entry has no inclusion proof.
    #[error("log entry has no inclusion proof")]
    NoInclusionProof,
    /// Negative index or non-positive tree size.
    #[error("inclusion proof index/size out of range")]
    ProofRange,
    /// A proof hash is not 32 bytes of base64.
    #[error("malformed inclusion proof hash")]
    ProofHash,
    /// The proof has the wrong shape for its index and size.
    #[error("inclusion proof does not verify")]
    ProofInvalid,
    /// The proof's root hash is not base64.
    #[error("malformed inclusion proof root")]
    ProofRoot,
    /// The proof leads to another root than it claims.
    #[error("inclusion proof does not lead to its root hash")]
    RootMismatch,
    /// The proof has no checkpoint.
    #[error("inclusion proof has no checkpoint")]
    NoCheckpoint,
    /// The checkpoint cannot be parsed.
    #[error(transparent)]
    Checkpoint(#[from] NoteError),
    /// The checkpoint commits to another tree.
    #[error("checkpoint does not commit to the inclusion proof's tree")]
    CheckpointTree,
    /// No signature line of the checkpoint is the log's.
    #[error("checkpoint is not signed by the log")]
    CheckpointSignature,
}

/// Why a checkpoint (a C2SP signed note) cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// No blank line, or no signature line after it.
    #[error("checkpoint has no signatures")]
    NoSignatures,
    /// The first line is empty.
    #[error("checkpoint has no origin")]
    NoOrigin,
    /// The second line is not a number.
    #[error("checkpoint has no tree size")]
    NoSize,
    /// The third line is not 32 bytes of base64.
    #[error("checkpoint has no root hash")]
    NoRoot,
    /// A signature line is not `— name base64`.
    #[error("malformed checkpoint signature line")]
    SignatureLine,
    /// A signature is not base64.
    #[error("checkpoint signature is not base64")]
    SignatureNotBase64,
    /// A signature is too short for its key hint, or the name is empty.
    #[error("malformed checkpoint signature")]
    Signature,
}

/// A transparency log from the trusted root.
#[derive(Debug, Clone)]
pub struct Tlog {
    /// `logId.keyId`.
    pub key_id: Vec<u8>,
    /// The key, when its algorithm is supported.
    pub key: Option<PublicKey>,
    /// Validity, ns (closed interval).
    pub valid: Validity,
}

/// Verifies the Signed Entry Timestamp: the log's signature over the canonical JSON
/// `{"body","integratedTime","logID","logIndex"}`.
pub fn verify_set(
    entry: &TlogEntry,
    body: &[u8],
    log: &Tlog,
    key: &PublicKey,
) -> Result<(), TlogError> {
    let promise = entry.inclusion_promise.as_ref().ok_or(TlogError::NoSet)?;
    let integrated = entry.integrated_time.ok_or(TlogError::NoIntegratedTime)?.0;
    let sig = b64(&promise.signed_entry_timestamp).ok_or(TlogError::SetNotBase64)?;
    let payload = format!(
        r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
        b64_encode(body),
        integrated,
        hex(&log.key_id),
        entry.log_index.0
    );
    if key.verify(payload.as_bytes(), &sig, Hash::Sha256) {
        Ok(())
    } else {
        Err(TlogError::SetInvalid)
    }
}

fn node(l: &[u8], r: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// The root computed from an inclusion proof (RFC 9162 §2.1.3.2), or `None` if the proof has
/// the wrong shape.
pub fn root_from_proof(
    index: u64,
    size: u64,
    leaf: [u8; 32],
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// Verifies the entry's inclusion proof and the checkpoint that commits to its root.
pub fn verify_inclusion(
    entry: &TlogEntry,
    body: &[u8],
    log: &Tlog,
    key: &PublicKey,
) -> Result<(), TlogError> {
    let proof = entry
        .inclusion_proof
        .as_ref()
        .ok_or(TlogError::NoInclusionProof)?;
    let (index, size) = (proof.log_index.0, proof.tree_size.0);
    if index < 0 || size <= 0 {
        return Err(TlogError::ProofRange);
    }
    let mut leaf_in = Vec::with_capacity(body.len() + 1);
    leaf_in.push(0u8);
    leaf_in.extend_from_slice(body);
    let leaf = sha256(&leaf_in);
    let hashes: Vec<[u8; 32]> = proof
        .hashes
        .iter()
        .map(|h| b64(h).and_then(|v| <[u8; 32]>::try_from(v).ok()))
        .collect::<Option<_>>()
        .ok_or(TlogError::ProofHash)?;
    let root =
        root_from_proof(index as u64, size as u64, leaf, &hashes).ok_or(TlogError::ProofInvalid)?;
    let claimed = b64(&proof.root_hash).ok_or(TlogError::ProofRoot)?;
    if claimed != root {
        return Err(TlogError::RootMismatch);
    }
    let cp = proof.checkpoint.as_ref().ok_or(TlogError::NoCheckpoint)?;
    let note = parse_note(&cp.envelope)?;
    if note.size != size as u64 || note.root != root {
        return Err(TlogError::CheckpointTree);
    }
    if !note.signed_by(log, key) {
        return Err(TlogError::CheckpointSignature);
    }
    Ok(())
}

/// A parsed checkpoint.
struct Note<'a> {
    /// The signed text, up to and including the newline before the blank line.
    text: &'a str,
    origin: &'a str,
    size: u64,
    root: Vec<u8>,
    /// `(name, key hint, signature)`.
    sigs: Vec<(&'a str, [u8; 4], Vec<u8>)>,
}

fn parse_note(envelope: &str) -> Result<Note<'_>, NoteError> {
    let split = envelope.find("\n\n").ok_or(NoteError::NoSignatures)?;
    let text = &envelope[..split + 1];
    let mut lines = text.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(NoteError::NoOrigin)?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or(NoteError::NoSize)?;
    let root = lines
        .next()
        .and_then(b64)
        .filter(|r| r.len() == 32)
        .ok_or(NoteError::NoRoot)?;
    let mut sigs = Vec::new();
    for line in envelope[split + 2..].lines() {
        if line.is_empty() {
            continue;
        }
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(NoteError::SignatureLine)?;
        let (name, sig) = rest.rsplit_once(' ').ok_or(NoteError::SignatureLine)?;
        let raw = b64(sig).ok_or(NoteError::SignatureNotBase64)?;
        if raw.len() < 5 || name.is_empty() {
            return Err(NoteError::Signature);
        }
        sigs.push((name, [raw[0], raw[1], raw[2], raw[3]], raw[4..].to_vec()));
    }
    if sigs.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    Ok(Note {
        text,
        origin,
        size,
        root,
        sigs,
    })
}

impl Note<'_> {
    /// Some signature line is the log's: the key hint matches the log's key under the line's
    /// name, the name matches the origin, and the signature verifies. Other lines (witness
    /// cosignatures, unknown keys) are ignored.
    fn signed_by(&self, log: &Tlog, key: &PublicKey) -> bool {
        self.sigs.iter().any(|(name, hint, sig)| {
            let name_ok = *name == self.origin
                || self
                    .origin
                    .strip_prefix(*name)
                    .is_some_and(|r| r.starts_with(" - "));
            if !name_ok {
                return false;
            }
            match key {
                PublicKey::Ed25519(k) => {
                    let mut h = sha2::Sha256::new();
                    h.update(name.as_bytes());
                    h.update([b'\n', 0x01]);
                    h.update(k.as_bytes());
                    let want: [u8; 32] = h.finalize().into();
                    want[..4] == hint[..] && key.verify(self.text.as_bytes(), sig, Hash::Sha256)
                }
                _ => {
                    log.key_id.get(..4) == Some(&hint[..])
                        && key.verify(self.text.as_bytes(), sig, Hash::Sha256)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_small_trees() {
        let leaves: Vec<[u8; 32]> = (0u8..5).map(|i| sha256(&[0, i])).collect();
        // size 1: the root is the leaf
        assert_eq!(root_from_proof(0, 1, leaves[0], &[]), Some(leaves[0]));
        // size 3: root = H(H(l0,l1), l2)
        let n01 = node(&leaves[0], &leaves[1]);
        let root3 = node(&n01, &leaves[2]);
        assert_eq!(root_from_proof(2, 3, leaves[2], &[n01]), Some(root3));
        assert_eq!(
            root_from_proof(0, 3, leaves[0], &[leaves[1], leaves[2]]),
            Some(root3)
        );
        assert_ne!(
            root_from_proof(1, 3, leaves[0], &[leaves[1], leaves[2]]),
            Some(root3)
        );
        assert_eq!(root_from_proof(3, 3, leaves[0], &[]), None);
        // a proof too long or too short is rejected
        assert_eq!(root_from_proof(0, 3, leaves[0], &[leaves[1]]), None);
    }

    #[test]
    fn notes_need_origin_size_root_and_signature() {
        let root = b64_encode(&[7u8; 32]);
        assert!(parse_note(&format!("o\n1\n{root}\n\n\u{2014} o AAAAAAA=\n")).is_ok());
        let err = |n: &str| parse_note(n).err();
        assert_eq!(
            err(&format!("\n1\n{root}\n\n\u{2014} o AAAAAAA=\n")),
            Some(NoteError::NoOrigin)
        );
        assert_eq!(
            err(&format!("o\n{root}\n\n\u{2014} o AAAAAAA=\n")),
            Some(NoteError::NoSize)
        );
        assert_eq!(
            err("o\n1\n\n\u{2014} o AAAAAAA=\n"),
            Some(NoteError::NoRoot)
        );
        assert_eq!(
            err(&format!("o\n1\n{root}\n\n")),
            Some(NoteError::NoSignatures)
        );
        assert_eq!(
            err(&format!("o\n1\n{root}\n\nno dash o AAAAAAA=\n")),
            Some(NoteError::SignatureLine)
        );
        assert_eq!(
            err(&format!("o\n1\n{root}\n\n\u{2014} o AAA=\n")),
            Some(NoteError::Signature)
        );
    }
}
