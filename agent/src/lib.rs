//! srediag: a privileged host diagnostics agent.
//!
//! See ARCHITECTURE.md at the repository root for the bird's eye view and the code map.

pub mod bpf;
pub mod cli;
pub mod components;
pub mod config;
pub mod model;
pub mod pipeline;
pub mod plugins;
pub mod probe;
pub mod telemetry;
pub mod text;

/// The kernel seams (crate `srediag-sys`, `agent/sys/`), under the name the agent's modules use.
pub use srediag_sys as sys;
