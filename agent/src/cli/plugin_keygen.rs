//! `srediag plugin keygen`: an ECDSA P-256 key pair for signing bundles.
//!
//! Writes `cosign.key` (PEM PKCS#8 `PRIVATE KEY`, mode 0600, unencrypted) and `cosign.pub`
//! (PEM `PUBLIC KEY`). The public key is what `cosign verify-blob --key` and a trust policy's
//! `keys[].path` read. cosign's own *encrypted* key format (`ENCRYPTED SIGSTORE PRIVATE KEY`) is
//! not written; `cosign import-key-pair --key cosign.key` converts this one for cosign, and
//! `openssl dgst -sha256 -sign cosign.key` uses it as it is.
//!
//! Each file is written as a **new** file: a temporary name created `O_CREAT | O_EXCL |
//! O_NOFOLLOW` with its final mode (0600 for the private key, 0644 for the public key; `fchmod`ed
//! so the umask cannot loosen or tighten it), written, fsynced, then renamed over the target
//! (`--force`) or renamed only if the target does not exist (`RENAME_NOREPLACE`). An existing
//! file is never opened for writing, so a key never lands in a file someone else owns, made
//! world-readable, or linked elsewhere; whoever held the old file open keeps the old content.
//! The output directory must pass the safe-path rule (`crate::sys::safe_path`: owned by root or
//! the caller, not writable by others unless sticky and root-owned, like /tmp).

use super::exit::{CmdResult, FAILURE, Failure, NO_INPUT, ok};
use crate::plugins::trust::keys;
use crate::sys::safe_path::{self, LastDir, SafeDir};
use clap::Args;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use std::io::Write as _;
use std::path::PathBuf;

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

/// Writes `data` as a fresh file `name` in `dir` with `mode` (see the module doc).
fn write_new(
    dir: &SafeDir,
    name: &str,
    data: &[u8],
    mode: u32,
    force: bool,
) -> Result<(), Failure> {
    let path = dir.path().join(name);
    let io = |e: std::io::Error| Failure::new(FAILURE, format!("{}: {e}", path.display()));
    let tmp = format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        keys::hex(
            &random_bytes().map_err(|e| Failure::new(FAILURE, format!("/dev/urandom: {e}")))?
        )
    );
    let fd = rustix::fs::openat(
        dir.fd(),
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| io(e.into()))?;
    let mut f = std::fs::File::from(fd);
    let written = rustix::fs::fchmod(&f, Mode::from_raw_mode(mode))
        .map_err(std::io::Error::from)
        .and_then(|()| f.write_all(data))
        .and_then(|()| f.sync_all());
    drop(f);
    let renamed = written.and_then(|()| {
        rustix::fs::renameat_with(
            dir.fd(),
            tmp.as_str(),
            dir.fd(),
            name,
            if force {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            },
        )
        .map_err(std::io::Error::from)
    });
    if let Err(e) = renamed {
        let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_str(), AtFlags::empty());
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(Failure::new(
                FAILURE,
                format!("{}: {e} (use --force to overwrite)", path.display()),
            ));
        }
        return Err(io(e));
    }
    Ok(())
}

fn random_bytes() -> std::io::Result<[u8; 8]> {
    let mut b = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b)
}

/// Generates and writes the pair.
pub fn execute(a: KeygenArgs) -> CmdResult {
    std::fs::create_dir_all(&a.output_dir)
        .map_err(|e| Failure::new(NO_INPUT, format!("{}: {e}", a.output_dir.display())))?;
    let dir = safe_path::open_dir(&a.output_dir, LastDir::StickyRootOk).map_err(|e| {
        Failure::new(
            FAILURE,
            format!("--output-dir: {e} (another user could replace the keys)"),
        )
    })?;
    let key = keys::generate_signing_key()
        .map_err(|e| Failure::new(FAILURE, format!("/dev/urandom: {e}")))?;
    let private = keys::private_pem(&key).map_err(|e| Failure::new(FAILURE, e.to_string()))?;
    let public = keys::public_pem(&key);
    let (kp, pp) = (
        a.output_dir.join("cosign.key"),
        a.output_dir.join("cosign.pub"),
    );
    if !a.force {
        // Refuse before writing either file (the renames below refuse again, atomically).
        for (name, p) in [("cosign.key", &kp), ("cosign.pub", &pp)] {
            if rustix::fs::statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                return Err(Failure::new(
                    FAILURE,
                    format!("{}: exists (use --force to overwrite)", p.display()),
                ));
            }
        }
    }
    write_new(&dir, "cosign.key", private.as_bytes(), 0o600, a.force)?;
    write_new(&dir, "cosign.pub", public.as_bytes(), 0o644, a.force)?;
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
