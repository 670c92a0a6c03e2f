//! The trust policy (`/etc/srediag/trust.yaml`): which signers, which digests, whether unsigned
//! bundles may load. There is no "any valid signer" setting: every key is named, every identity
//! is an exact string or an anchored regex that must not match arbitrary subjects, and every
//! identity is tied to one exact OIDC issuer.
//!
//! Whoever can write the policy, a key file it names or its trusted root decides what the root
//! agent runs, so each is opened by the safe-path rule (`srediag_sys::safe_path`): a regular file,
//! not a symlink, owned by root (or the effective uid), not writable by group or others, in
//! directories only root (or the effective uid) can change — a sticky root-owned directory such
//! as `/tmp` counts as safe. Anything else is refused, naming the file and the problem
//! (SRD-P017).

use super::keys::PublicKey;
use super::sigstore::TrustedRoot;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default location.
pub const DEFAULT_POLICY_PATH: &str = "/etc/srediag/trust.yaml";
/// Largest accepted policy file.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// `trust.yaml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Load bundles without any signature (each load is logged loudly and counted). Default
    /// false.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Trusted public keys (cosign/openssl ECDSA P-256 or P-384, Ed25519).
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Trusted keyless signers.
    #[serde(default)]
    pub identities: Vec<IdentityEntry>,
    /// The Sigstore `trusted_root.json` keyless signatures are checked against (required when
    /// `identities` is not empty). Relative paths are resolved against the policy file.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Statement digests (`sha256:<hex>`, see `srediag plugin inspect`) trusted without a
    /// signature: the operator vouches for exactly these bytes.
    #[serde(default)]
    pub digests: Vec<String>,
}

/// One trusted key: `pem` inline or a `path` to a PEM file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// A label shown as the signer.
    pub name: String,
    /// PEM `PUBLIC KEY`.
    #[serde(default)]
    pub pem: Option<String>,
    /// Path to a PEM `PUBLIC KEY` file (relative to the policy file).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// One trusted keyless signer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEntry {
    /// Exact OIDC issuer URL (Fulcio extension 1.3.6.1.4.1.57264.1.8 / .1.1).
    pub issuer: String,
    /// Exact certificate identity (SAN URI or e-mail).
    #[serde(default)]
    pub identity: Option<String>,
    /// Anchored regex (`^…$`) over the identity.
    #[serde(default)]
    pub identity_regex: Option<String>,
}

/// A policy problem.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy, a key file or the trusted root is not safe to trust (owner, mode, symlink,
    /// directory another user can write), or cannot be opened.
    #[error("{0}")]
    Unsafe(#[from] srediag_sys::safe_path::SafePathError),
    /// Invalid content.
    #[error("{path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// How an identity is matched.
#[derive(Debug, Clone)]
pub enum IdentityMatch {
    /// Equal strings.
    Exact(String),
    /// An anchored regex.
    Regex(regex_lite::Regex),
}

impl IdentityMatch {
    /// Does `s` match.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            IdentityMatch::Exact(e) => e == s,
            IdentityMatch::Regex(r) => r.is_match(s),
        }
    }
}

/// A trusted keyless signer.
#[derive(Debug, Clone)]
pub struct TrustedIdentity {
    /// Exact issuer.
    pub issuer: String,
    /// Identity matcher.
    pub identity: IdentityMatch,
}

/// The checked policy.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Unsigned bundles may load.
    pub allow_unsigned: bool,
    /// `(name, key)`.
    pub keys: Vec<(String, PublicKey)>,
    /// Keyless signers.
    pub identities: Vec<TrustedIdentity>,
    /// The Sigstore trusted root.
    pub trusted_root: Option<TrustedRoot>,
    /// Trusted statement digests.
    pub digests: Vec<String>,
}

/// Largest accepted Sigstore `trusted_root.json`.
pub const MAX_TRUSTED_ROOT_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file the policy trusts (the policy, a key, the trusted root) by the safe-path rule,
/// at most `cap` bytes.
fn read_trusted(path: &Path, cap: u64) -> Result<Vec<u8>, PolicyError> {
    use srediag_sys::safe_path;
    let (f, _) = safe_path::open_file(path)?;
    let bytes = safe_path::read_capped(path, f, cap)?;
    if bytes.len() as u64 > cap {
        return Err(PolicyError::Invalid {
            path: path.into(),
            msg: format!("larger than {cap} bytes"),
        });
    }
    Ok(bytes)
}

/// Subjects no identity regex may match: a pattern that accepts them accepts anyone.
const PROBES: [&str; 4] = [
    "",
    "x",
    "https://attacker.invalid/evil/.github/workflows/x.yml@refs/heads/main",
    "attacker@attacker.invalid",
];

impl TrustPolicy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<TrustPolicy, PolicyError> {
        let bytes = read_trusted(path, MAX_POLICY_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::Invalid {
            path: path.into(),
            msg: "not UTF-8".into(),
        })?;
        let file: PolicyFile = serde_yaml::from_str(&text).map_err(|e| PolicyError::Invalid {
            path: path.into(),
            msg: e.to_string(),
        })?;
        TrustPolicy::from_file(file, path.parent().unwrap_or(Path::new("/")), path)
    }

    /// Checks a parsed policy; relative paths resolve against `base`; errors name `origin`.
    pub fn from_file(
        f: PolicyFile,
        base: &Path,
        origin: &Path,
    ) -> Result<TrustPolicy, PolicyError> {
        let bad = |msg: String| PolicyError::Invalid {
            path: origin.to_path_buf(),
            msg,
        };
        let mut keys = Vec::new();
        for (i, k) in f.keys.iter().enumerate() {
            if k.name.trim().is_empty() {
                return Err(bad(format!("keys[{i}]: name is empty")));
            }
            let pem = match (&k.pem, &k.path) {
                (Some(p), None) => p.clone(),
                (None, Some(p)) => {
                    let p = base.join(p);
                    String::from_utf8(read_trusted(&p, MAX_POLICY_BYTES)?).map_err(|_| {
                        PolicyError::Invalid {
                            path: p.clone(),
                            msg: "not UTF-8".into(),
                        }
                    })?
                }
                _ => {
                    return Err(bad(format!(
                        "keys[{i}] ({}): give exactly one of pem, path",
                        k.name
                    )));
                }
            };
            let key = PublicKey::from_pem(&pem)
                .map_err(|e| bad(format!("keys[{i}] ({}): {e}", k.name)))?;
            keys.push((k.name.clone(), key));
        }
        let mut identities = Vec::new();
        for (i, id) in f.identities.iter().enumerate() {
            if id.issuer.trim().is_empty() {
                return Err(bad(format!(
                    "identities[{i}]: issuer is empty (it is never a wildcard)"
                )));
            }
            let identity = match (&id.identity, &id.identity_regex) {
                (Some(e), None) if !e.trim().is_empty() => IdentityMatch::Exact(e.clone()),
                (None, Some(r)) => {
                    if !r.starts_with('^') || !r.ends_with('$') || r.len() < 3 {
                        return Err(bad(format!(
                            "identities[{i}]: identity_regex {r:?} must be anchored (^…$)"
                        )));
                    }
                    let re = regex_lite::Regex::new(r)
                        .map_err(|e| bad(format!("identities[{i}]: {e}")))?;
                    if let Some(p) = PROBES.iter().find(|p| re.is_match(p)) {
                        return Err(bad(format!(
                            "identities[{i}]: identity_regex {r:?} matches {p:?}: it would trust anyone"
                        )));
                    }
                    IdentityMatch::Regex(re)
                }
                _ => {
                    return Err(bad(format!(
                        "identities[{i}]: give exactly one non-empty identity or identity_regex"
                    )));
                }
            };
            identities.push(TrustedIdentity {
                issuer: id.issuer.clone(),
                identity,
            });
        }
        let trusted_root = match &f.trusted_root {
            None if !identities.is_empty() => {
                return Err(bad(
                    "identities need trusted_root (a Sigstore trusted_root.json)".into(),
                ));
            }
            None => None,
            Some(p) => {
                let p = base.join(p);
                let json = read_trusted(&p, MAX_TRUSTED_ROOT_BYTES)?;
                Some(
                    TrustedRoot::from_json(&json).map_err(|e| PolicyError::Invalid {
                        path: p.clone(),
                        msg: e.to_string(),
                    })?,
                )
            }
        };
        for d in &f.digests {
            let ok = d.strip_prefix("sha256:").is_some_and(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            });
            if !ok {
                return Err(bad(format!(
                    "digests: {d:?} must be sha256:<64 lowercase hex>"
                )));
            }
        }
        Ok(TrustPolicy {
            allow_unsigned: f.allow_unsigned,
            keys,
            identities,
            trusted_root,
            digests: f.digests,
        })
    }

    /// Nothing can be trusted: no key, identity or digest, and unsigned bundles refused.
    pub fn trusts_nothing(&self) -> bool {
        self.keys.is_empty()
            && self.identities.is_empty()
            && self.digests.is_empty()
            && !self.allow_unsigned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(y: &str) -> Result<TrustPolicy, PolicyError> {
        let f: PolicyFile = serde_yaml::from_str(y).map_err(|e| PolicyError::Invalid {
            path: "t".into(),
            msg: e.to_string(),
        })?;
        TrustPolicy::from_file(f, Path::new("/nonexistent"), Path::new("trust.yaml"))
    }

    #[test]
    fn defaults_refuse_everything() {
        let p = from_yaml("{}").unwrap();
        assert!(!p.allow_unsigned);
        assert!(p.trusts_nothing());
        assert!(from_yaml("bogus: 1").is_err());
    }

    #[test]
    fn example_policy_parses() {
        let text = include_str!("../../../profiles/trust/trust.yaml");
        let mut f: PolicyFile = serde_yaml::from_str(text).unwrap();
        assert!(!f.allow_unsigned);
        assert_eq!(
            f.keys[0].path.as_deref(),
            Some(Path::new("keys/srediag-dev.pub"))
        );
        // Check the identities without the files the example points at.
        f.keys.clear();
        f.trusted_root = None;
        let ids = std::mem::take(&mut f.identities);
        TrustPolicy::from_file(f, Path::new("/"), Path::new("trust.yaml")).unwrap();
        for id in ids {
            let re = regex_lite::Regex::new(id.identity_regex.as_deref().unwrap()).unwrap();
            assert!(re.is_match("https://github.com/example-org/srediag-plugins/.github/workflows/release.yml@refs/tags/v1.2.3"));
            assert!(!PROBES.iter().any(|p| re.is_match(p)));
        }
    }

    #[test]
    fn no_wildcards() {
        for re in ["^.*$", "^.+$", ".*", "^$", "^(.*)?$", "^[^@]*@?.*$"] {
            let y = format!(
                "identities: [{{issuer: https://x, identity_regex: '{re}'}}]\ntrusted_root: r.json"
            );
            assert!(from_yaml(&y).is_err(), "{re} accepted");
        }
        assert!(from_yaml("identities: [{issuer: '', identity: a}]").is_err());
        assert!(from_yaml("identities: [{issuer: https://x, identity: ''}]").is_err());
        assert!(from_yaml("identities: [{issuer: https://x}]").is_err());
        assert!(
            from_yaml("identities: [{issuer: https://x, identity: a}]")
                .unwrap_err()
                .to_string()
                .contains("trusted_root")
        );
        assert!(from_yaml("digests: [abc]").is_err());
        assert!(from_yaml("keys: [{name: k}]").is_err());
    }
}
