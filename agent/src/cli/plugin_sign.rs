//! `srediag plugin sign BUNDLE --key KEY`: signs the bundle's statement (docs/bundles.md) with an
//! ECDSA P-256 key and writes `BUNDLE/manifest.sig`: base64 of the ASN.1 DER signature over
//! SHA-256 of the statement, exactly what `cosign sign-blob --key` prints. The manifest is parsed
//! as hostile input and every file's digest is checked first, so a bundle whose files do not
//! match its manifest is never signed.

use super::exit::{CONFIG, CmdResult, FAILURE, Failure, NO_INPUT, REJECTED, ok};
use crate::plugins::trust::{bundle::BundleDir, keys, manifest::Manifest, sign_statement};
use clap::Args;
use std::path::{Path, PathBuf};

/// `srediag plugin sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// PEM private key: PKCS#8 (`srediag plugin keygen`, `openssl genpkey`) or SEC1 (`openssl
    /// ecparam -genkey`); ECDSA P-256.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
}

/// Reads and checks a bundle's manifest and file digests; `Err` is a one-line failure.
pub fn checked_manifest(bundle: &Path) -> Result<Manifest, Failure> {
    let (dir, bytes) = BundleDir::open(bundle)
        .map_err(|e| Failure::new(NO_INPUT, format!("bundle {}: {e}", bundle.display())))?;
    let m = Manifest::parse(&bytes)
        .map_err(|e| Failure::new(REJECTED, format!("malformed: {}/{e}", bundle.display())))?;
    let contents = dir.read(None).map_err(|e| {
        Failure::new(
            REJECTED,
            format!("malformed: bundle {}: {e}", bundle.display()),
        )
    })?;
    for (path, f) in &m.files {
        match contents.digests.get(path) {
            Some(d) if keys::hex(d) == f.sha256 => {}
            Some(d) => {
                return Err(Failure::new(
                    REJECTED,
                    format!(
                        "rejected_digest: {}/{path} has sha256 {}, manifest.yaml files.{path}.sha256 says {}",
                        bundle.display(),
                        keys::hex(d),
                        f.sha256
                    ),
                ));
            }
            None => {
                return Err(Failure::new(
                    REJECTED,
                    format!(
                        "rejected_digest: {}/{path} is listed in manifest.yaml files but missing",
                        bundle.display()
                    ),
                ));
            }
        }
    }
    if let Some(extra) = contents.digests.keys().find(|p| !m.files.contains_key(*p)) {
        return Err(Failure::new(
            REJECTED,
            format!(
                "rejected_digest: {}/{extra} is not listed in manifest.yaml files (every bundle file must be signed)",
                bundle.display()
            ),
        ));
    }
    Ok(m)
}

/// Signs.
pub fn execute(a: SignArgs) -> CmdResult {
    let pem = std::fs::read_to_string(&a.key)
        .map_err(|e| Failure::new(NO_INPUT, format!("--key {}: {e}", a.key.display())))?;
    let key = keys::signing_key_from_pem(&pem).map_err(|e| {
        Failure::new(
            CONFIG,
            format!(
                "--key {}: {e} (an unencrypted ECDSA P-256 PEM key is needed; encrypted cosign keys are not read)",
                a.key.display()
            ),
        )
    })?;
    let m = checked_manifest(&a.bundle)?;
    let sig = sign_statement(&key, &m.statement());
    let out = a.bundle.join("manifest.sig");
    crate::plugins::trust::rollback::write_atomic(&out, sig.as_bytes())
        .map_err(|e| Failure::new(FAILURE, format!("{}: {e}", out.display())))?;
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644));
    println!(
        "signed {} {} ({}) → {}",
        m.name,
        m.version,
        m.statement_digest(),
        out.display()
    );
    ok()
}
