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
pub mod sys;
pub mod telemetry;
pub mod text;
