//! The plugin manager: configuration, sandbox, supervisor, control channel, admin socket
//! (see ARCHITECTURE.md). Trust (signed bundles) and the shared-memory data path plug in here.

pub mod admin;
pub mod config;
pub mod control;
pub mod datapath;
pub mod manager;
pub mod metrics;
pub mod sandbox;
pub mod supervisor;
pub mod trust;
