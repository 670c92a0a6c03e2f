//! `srediag plugin inspect BUNDLE [--statement]`: what a bundle says and holds — manifest,
//! statement digest, each file's listed and actual digest, the signatures present. No trust
//! decision (that is `plugin verify`). `--statement` prints the exact signed bytes, for signing
//! with other tools (`cosign sign-blob`, `openssl dgst -sign`).

use super::Output;
use super::exit::{CmdResult, Failure, NO_INPUT, REJECTED, ok};
use super::output::{print, table};
use crate::plugins::trust::{bundle::BundleDir, keys, manifest::Manifest};
use clap::Args;
use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;

/// `srediag plugin inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Print only the signed statement (canonical JSON bytes, no newline).
    #[arg(long)]
    pub statement: bool,
}

/// One file of the bundle.
#[derive(Debug, Serialize)]
pub struct FileReport {
    /// Bundle-relative path.
    pub path: String,
    /// Digest in the manifest (`null` when not listed).
    pub listed: Option<String>,
    /// Digest on disk (`null` when missing).
    pub actual: Option<String>,
    /// `ok`, `differs`, `missing` or `unlisted`.
    pub status: &'static str,
}

/// `-o json` shape.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The parsed manifest (defaults filled in).
    pub manifest: Manifest,
    /// `sha256:<hex>` of the statement.
    pub statement_digest: String,
    /// Files.
    pub files: Vec<FileReport>,
    /// Signatures present: `cosign_signature`, `manifest.sig`, `manifest.sigstore.json`.
    pub signatures: Vec<String>,
}

/// Inspects.
pub fn execute(a: InspectArgs, out: Output) -> CmdResult {
    let (dir, bytes) = BundleDir::open(&a.bundle)
        .map_err(|e| Failure::new(NO_INPUT, format!("bundle {}: {e}", a.bundle.display())))?;
    let m = Manifest::parse(&bytes)
        .map_err(|e| Failure::new(REJECTED, format!("malformed: {}/{e}", a.bundle.display())))?;
    if a.statement {
        std::io::stdout()
            .write_all(&m.statement())
            .map_err(|e| Failure::new(super::exit::FAILURE, format!("stdout: {e}")))?;
        return ok();
    }
    let contents = dir.read(None).map_err(|e| {
        Failure::new(
            REJECTED,
            format!("malformed: bundle {}: {e}", a.bundle.display()),
        )
    })?;
    let mut files = Vec::new();
    for (p, f) in &m.files {
        let actual = contents.digests.get(p).map(|d| keys::hex(d));
        let status = match &actual {
            None => "missing",
            Some(d) if *d == f.sha256 => "ok",
            Some(_) => "differs",
        };
        files.push(FileReport {
            path: p.clone(),
            listed: Some(f.sha256.clone()),
            actual,
            status,
        });
    }
    for (p, d) in &contents.digests {
        if !m.files.contains_key(p) {
            files.push(FileReport {
                path: p.clone(),
                listed: None,
                actual: Some(keys::hex(d)),
                status: "unlisted",
            });
        }
    }
    let mut signatures = Vec::new();
    if m.cosign_signature.is_some() {
        signatures.push("cosign_signature".to_string());
    }
    if contents.detached_sig.is_some() {
        signatures.push("manifest.sig".into());
    }
    if contents.sigstore_bundle.is_some() {
        signatures.push("manifest.sigstore.json".into());
    }
    let report = Report {
        statement_digest: m.statement_digest(),
        manifest: m,
        files,
        signatures,
    };
    print(out, &report, |r| {
        let m = &r.manifest;
        let mut s = format!(
            "name:        {}\ntype:        {}\nversion:     {}\nentrypoint:  {}\nstatement:   {}\nsignatures:  {}\nrequires:    srediag {}, ipc protocol {}, schema {}\nsandbox:     seccomp {}, network {}, read_only {:?}, read_write {:?}\n\n",
            m.name,
            m.plugin_type.as_str(),
            m.version,
            m.entrypoint,
            r.statement_digest,
            if r.signatures.is_empty() {
                "none".to_string()
            } else {
                r.signatures.join(", ")
            },
            m.requires.srediag,
            m.requires.ipc_protocol,
            m.requires.schema_version,
            m.sandbox
                .seccomp_profile
                .as_deref()
                .unwrap_or(m.plugin_type.as_str()),
            m.sandbox.network.ports(),
            m.sandbox.landlock.read_only,
            m.sandbox.landlock.read_write,
        );
        let rows: Vec<Vec<String>> = r
            .files
            .iter()
            .map(|f| {
                vec![
                    f.path.clone(),
                    f.status.to_string(),
                    f.actual.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        s.push_str(&table(&["FILE", "STATUS", "SHA256"], &rows));
        s
    })?;
    ok()
}
