//! `srediag plugin verify BUNDLE [--policy FILE] [-o json]`: the agent's own load-time check —
//! trust policy, every file's digest, compatibility with this agent, and (with `--plugin-state`)
//! the rollback marks — without loading anything. Exit 0 when trusted; 65 (`REJECTED`) with the
//! reason code otherwise (docs/bundles.md, "Verification result").

use super::Output;
use super::exit::{CONFIG, CmdResult, Failure, REJECTED, ok};
use super::output::print;
use crate::plugins::trust::policy::{DEFAULT_POLICY_PATH, TrustPolicy};
use crate::plugins::trust::rollback::RollbackStore;
use crate::plugins::trust::{Status, Verdict, verify_bundle_dir};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `srediag plugin verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The trust policy.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_POLICY_PATH, env = "SREDIAG_TRUST_POLICY")]
    pub policy: PathBuf,
    /// Also check the rollback marks in this state file (read only; nothing is recorded).
    #[arg(long, value_name = "FILE", env = "SREDIAG_PLUGIN_STATE")]
    pub plugin_state: Option<PathBuf>,
}

/// Loads a policy for a command (exit 78 when unusable).
pub fn load_policy(path: &Path) -> Result<TrustPolicy, Failure> {
    TrustPolicy::load(path).map_err(|e| {
        Failure::new(
            CONFIG,
            format!("SRD-P017: trust policy: {e} (see profiles/trust/trust.yaml; --policy FILE)"),
        )
    })
}

/// Opens a rollback state for a read-only check.
pub fn load_state(path: Option<&Path>) -> Result<Option<RollbackStore>, Failure> {
    path.map(|p| {
        RollbackStore::open(p)
            .map_err(|e| Failure::new(CONFIG, format!("SRD-P017: rollback state: {e}")))
    })
    .transpose()
}

/// Verifies `bundle`; the verdict and the verified bundle (when trusted).
pub fn verdict(
    bundle: &Path,
    policy: &TrustPolicy,
    state: Option<&RollbackStore>,
) -> (Verdict, Option<crate::plugins::trust::VerifiedBundle>) {
    let (r, partial) =
        verify_bundle_dir(bundle, policy, &crate::plugins::loader::host_info(), state);
    let v = Verdict::new(&r, partial.as_ref());
    (v, r.ok())
}

/// Verifies and reports.
pub fn execute(a: VerifyArgs, out: Output) -> CmdResult {
    let policy = load_policy(&a.policy)?;
    let state = load_state(a.plugin_state.as_deref())?;
    let (v, _) = verdict(&a.bundle, &policy, state.as_ref());
    print(out, &v, |v| {
        if v.status == Status::Ok {
            format!(
                "trusted: {} {} {} ({})\n",
                v.name.as_deref().unwrap_or("?"),
                v.version.as_deref().unwrap_or("?"),
                v.digest.as_deref().unwrap_or("?"),
                v.trusted_by
                    .as_ref()
                    .map(|t| serde_json::to_string(t).unwrap_or_default())
                    .unwrap_or_default()
            )
        } else {
            format!("{}: {}\n", v.status.as_str(), v.detail)
        }
    })?;
    if v.status == Status::Ok {
        return ok();
    }
    if out == Output::Table {
        // The table already said why; keep stderr to one line too.
        eprintln!(
            "srediag: error: bundle {} is not trusted: {}",
            a.bundle.display(),
            v.status.as_str()
        );
    } else {
        eprintln!(
            "srediag: error: bundle {} is not trusted: {}: {}",
            a.bundle.display(),
            v.status.as_str(),
            crate::text::escape_control(&v.detail)
        );
    }
    Ok(ExitCode::from(REJECTED))
}
