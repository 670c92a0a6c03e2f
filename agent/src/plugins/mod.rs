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
pub mod sandbox;
pub mod supervisor;
pub mod swap;
pub mod trust;
