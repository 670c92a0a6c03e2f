//! Why a plugin may not be loaded: one kind ([`LoadFailure`]) gives the stable code and the
//! metric label.

use crate::plugins::trust::Status;

/// Why a plugin may not be loaded: each kind has one stable code (seed §9; the table is in
/// docs/plugins.md) and one `srediag_plugin_load_total{status}` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadFailure {
    /// A bundle file differs from, is missing from, or is not listed in the manifest.
    Digest,
    /// A signature is present but none verifies with a trusted key or identity.
    Signature,
    /// The policy does not allow it: unsigned, or an untrusted signer.
    Policy,
    /// Older than (or the same version as, but different from) what was loaded before.
    Rollback,
    /// The plugin needs another agent, protocol, schema, kernel — or another type than configured.
    Compat,
    /// The bundle cannot be read or has a forbidden shape.
    Malformed,
    /// Neither `bundle` nor `path` is set.
    NoSource,
    /// The configuration asks for more than the signed manifest grants.
    Widens,
    /// The trust policy cannot be used.
    PolicyUnusable,
    /// The rollback state file cannot be used.
    StateUnusable,
    /// The executable could not be read or sealed.
    Executable,
}

impl LoadFailure {
    /// The stable code (`SRD-P0xx`).
    pub fn code(self) -> &'static str {
        match self {
            LoadFailure::Digest => "SRD-P010",
            LoadFailure::Signature => "SRD-P011",
            LoadFailure::Policy => "SRD-P012",
            LoadFailure::Rollback => "SRD-P013",
            LoadFailure::Compat => "SRD-P014",
            LoadFailure::Malformed | LoadFailure::NoSource => "SRD-P015",
            LoadFailure::Widens => "SRD-P016",
            LoadFailure::PolicyUnusable | LoadFailure::StateUnusable => "SRD-P017",
            LoadFailure::Executable => "SRD-P018",
        }
    }

    /// The `srediag_plugin_load_total{status}` value.
    pub fn status(self) -> &'static str {
        match self {
            LoadFailure::Digest => "rejected_digest",
            LoadFailure::Signature => "rejected_signature",
            LoadFailure::Policy | LoadFailure::PolicyUnusable => "rejected_policy",
            LoadFailure::Rollback => "rejected_rollback",
            LoadFailure::Compat => "rejected_compat",
            LoadFailure::Malformed => "rejected_malformed",
            LoadFailure::NoSource
            | LoadFailure::Widens
            | LoadFailure::StateUnusable
            | LoadFailure::Executable => "failed",
        }
    }

    /// An I/O failure (state file, memfd, a missing source) that a later start may not meet again:
    /// retried like any failed start. Trust decisions and a configuration wider than the manifest
    /// stand until an operator acts.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            LoadFailure::NoSource | LoadFailure::StateUnusable | LoadFailure::Executable
        )
    }

    /// The kind of a trust rejection.
    pub(super) fn of(status: Status) -> LoadFailure {
        match status {
            Status::RejectedDigest => LoadFailure::Digest,
            Status::RejectedSignature => LoadFailure::Signature,
            Status::RejectedPolicy => LoadFailure::Policy,
            Status::RejectedRollback => LoadFailure::Rollback,
            Status::RejectedCompat => LoadFailure::Compat,
            Status::Malformed | Status::Ok => LoadFailure::Malformed,
        }
    }
}

/// A plugin that may not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: plugin {plugin}: {message}", failure.code())]
pub struct LoadError {
    /// Why.
    pub failure: LoadFailure,
    /// The plugin's name in the configuration.
    pub plugin: String,
    /// What, naming the field or file, with the remedy.
    pub message: String,
}

impl LoadError {
    /// The stable code (`SRD-P0xx`).
    pub fn code(&self) -> &'static str {
        self.failure.code()
    }

    /// The `srediag_plugin_load_total{status}` value.
    pub fn status(&self) -> &'static str {
        self.failure.status()
    }

    /// See [`LoadFailure::is_transient`].
    pub fn is_transient(&self) -> bool {
        self.failure.is_transient()
    }
}
