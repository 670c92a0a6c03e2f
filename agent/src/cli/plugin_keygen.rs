//! `srediag plugin keygen`: an ECDSA P-256 key pair for signing bundles.
//!
//! Writes `cosign.key` (PEM PKCS#8 `PRIVATE KEY`, mode 0600, unencrypted) and `cosign.pub`
//! (PEM `PUBLIC KEY`). The public key is what `cosign verify-blob --key` and a trust policy's
//! `keys[].path` read. cosign's own *encrypted* key format (`ENCRYPTED SIGSTORE PRIVATE KEY`) is
//! not written; `cosign import-key-pair --key cosign.key` converts this one for cosign, and
//! `openssl dgst -sha256 -sign cosign.key` uses it as it is.

use super::exit::{CmdResult, FAILURE, Failure, NO_INPUT, ok};
use crate::plugins::trust::keys;
use clap::Args;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// `srediag plugin keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for `cosign.key` and `cosign.pub` (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output_dir: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

/// A fresh random P-256 signing key (bytes from the kernel's CSPRNG).
pub fn generate() -> std::io::Result<keys::P256SigningKey> {
    let mut f = std::fs::File::open("/dev/urandom")?;
    loop {
        let mut b = [0u8; 32];
        std::io::Read::read_exact(&mut f, &mut b)?;
        // Out-of-range scalars (zero or ≥ n, probability ~2^-32) are drawn again.
        if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&b) {
            return Ok(k);
        }
    }
}

/// PEM PKCS#8 of a signing key.
pub fn private_pem(key: &keys::P256SigningKey) -> Result<String, String> {
    use p256::pkcs8::EncodePrivateKey as _;
    let sk: p256::SecretKey = key.into();
    sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .map(|z| z.to_string())
        .map_err(|e| e.to_string())
}

fn write_new(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), Failure> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(mode);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).map_err(|e| {
        Failure::new(
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                FAILURE
            } else {
                NO_INPUT
            },
            format!(
                "{}: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    " (use --force to overwrite)"
                } else {
                    ""
                }
            ),
        )
    })?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Failure::new(FAILURE, format!("{}: {e}", path.display())))
}

/// Generates and writes the pair.
pub fn execute(a: KeygenArgs) -> CmdResult {
    std::fs::create_dir_all(&a.output_dir)
        .map_err(|e| Failure::new(NO_INPUT, format!("{}: {e}", a.output_dir.display())))?;
    let key = generate().map_err(|e| Failure::new(FAILURE, format!("/dev/urandom: {e}")))?;
    let private = private_pem(&key).map_err(|e| Failure::new(FAILURE, e))?;
    let public = keys::public_pem(&key);
    let (kp, pp) = (
        a.output_dir.join("cosign.key"),
        a.output_dir.join("cosign.pub"),
    );
    write_new(&kp, private.as_bytes(), 0o600, a.force)?;
    write_new(&pp, public.as_bytes(), 0o644, a.force)?;
    let fp = crate::plugins::trust::keys::PublicKey::from_pem(&public)
        .map(|k| k.fingerprint())
        .unwrap_or_default();
    println!(
        "private key written to {}\npublic key written to {} ({fp})",
        kp.display(),
        pp.display()
    );
    ok()
}
