//! The plugin manager: configuration, sandbox, supervisor, control channel, admin socket
//! (see ARCHITECTURE.md); `loader` verifies signed bundles (`trust`) before anything is spawned.

pub mod admin;
pub mod config;
pub mod control;
pub mod datapath;
pub mod instance;
pub mod ledger;
pub mod loader;
pub mod manager;
pub mod metrics;
pub mod reload;
pub mod supervisor;
pub mod swap;
pub mod verbs;

/// The plugin sandbox (crate `srediag-sandbox`, `agent/sandbox/`).
pub use srediag_sandbox as sandbox;
/// Bundle verification (crate `srediag-trust`, `agent/trust/`).
pub use srediag_trust as trust;
