//! Transparency-log proofs: Rekor v1 Signed Entry Timestamps, RFC 6962/9162 Merkle inclusion
//! proofs, and checkpoints (C2SP signed notes, including Rekor v2's Ed25519 log keys and
//! witness cosignatures, which are ignored unless their key is trusted).

use super::model::TlogEntry;
use super::x509::Validity;
use crate::keys::{Hash, PublicKey, b64, b64_encode, hex, sha256};
use sha2::Digest as _;

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
) -> Result<(), String> {
    let promise = entry
        .inclusion_promise
        .as_ref()
        .ok_or("log entry has no signed entry timestamp")?;
    let integrated = entry
        .integrated_time
        .ok_or("log entry has no integrated time")?
        .0;
    let sig = b64(&promise.signed_entry_timestamp).ok_or("signed entry timestamp is not base64")?;
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
        Err("signed entry timestamp does not verify with the log key".into())
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
) -> Result<(), String> {
    let proof = entry
        .inclusion_proof
        .as_ref()
        .ok_or("log entry has no inclusion proof")?;
    let (index, size) = (proof.log_index.0, proof.tree_size.0);
    if index < 0 || size <= 0 {
        return Err("inclusion proof index/size out of range".into());
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
        .ok_or("malformed inclusion proof hash")?;
    let root = root_from_proof(index as u64, size as u64, leaf, &hashes)
        .ok_or("inclusion proof does not verify")?;
    let claimed = b64(&proof.root_hash).ok_or("malformed inclusion proof root")?;
    if claimed != root {
        return Err("inclusion proof does not lead to its root hash".into());
    }
    let cp = proof
        .checkpoint
        .as_ref()
        .ok_or("inclusion proof has no checkpoint")?;
    let note = parse_note(&cp.envelope)?;
    if note.size != size as u64 || note.root != root {
        return Err("checkpoint does not commit to the inclusion proof's tree".into());
    }
    if !note.signed_by(log, key) {
        return Err("checkpoint is not signed by the log".into());
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

fn parse_note(envelope: &str) -> Result<Note<'_>, String> {
    let split = envelope
        .find("\n\n")
        .ok_or("checkpoint has no signatures")?;
    let text = &envelope[..split + 1];
    let mut lines = text.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or("checkpoint has no origin")?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or("checkpoint has no tree size")?;
    let root = lines
        .next()
        .and_then(b64)
        .filter(|r| r.len() == 32)
        .ok_or("checkpoint has no root hash")?;
    let mut sigs = Vec::new();
    for line in envelope[split + 2..].lines() {
        if line.is_empty() {
            continue;
        }
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or("malformed checkpoint signature line")?;
        let (name, sig) = rest
            .rsplit_once(' ')
            .ok_or("malformed checkpoint signature line")?;
        let raw = b64(sig).ok_or("checkpoint signature is not base64")?;
        if raw.len() < 5 || name.is_empty() {
            return Err("malformed checkpoint signature".into());
        }
        sigs.push((name, [raw[0], raw[1], raw[2], raw[3]], raw[4..].to_vec()));
    }
    if sigs.is_empty() {
        return Err("checkpoint has no signatures".into());
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
        assert!(parse_note(&format!("\n1\n{root}\n\n\u{2014} o AAAAAAA=\n")).is_err());
        assert!(parse_note(&format!("o\n{root}\n\n\u{2014} o AAAAAAA=\n")).is_err());
        assert!(parse_note("o\n1\n\n\u{2014} o AAAAAAA=\n").is_err());
        assert!(parse_note(&format!("o\n1\n{root}\n\n")).is_err());
    }
}
