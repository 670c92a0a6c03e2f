//! The srediag plugin SDK: the only API plugin authors see.
//!
//! A plugin is a separate program that the srediag agent starts inside a sandbox. The SDK speaks
//! the control protocol with the agent over an inherited socket (fd 3): a versioned handshake,
//! heartbeats and an orderly shutdown. The seed design's contract maps onto [`Plugin`]:
//! `Init` → [`Plugin::init`], `Register` → [`Plugin::register`], `Capabilities` →
//! [`Plugin::capabilities`], `Shutdown` → [`Plugin::shutdown`].
//!
//! ```no_run
//! use srediag_plugin_sdk::{Context, Plugin, PluginError, PluginInfo, PluginType, Registry};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn init(&mut self, _ctx: &Context) -> Result<(), PluginError> { Ok(()) }
//!     fn register(&mut self, _r: &mut Registry) -> Result<(), PluginError> { Ok(()) }
//!     fn capabilities(&self) -> Vec<String> { vec!["diag/hello".into()] }
//!     fn shutdown(&mut self, _ctx: &Context) -> Result<(), PluginError> { Ok(()) }
//! }
//!
//! fn main() {
//!     srediag_plugin_sdk::run(PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), PluginType::Diagnostics), Hello)
//! }
//! ```

pub mod component;
pub mod control;
pub mod data;
mod datapath;
pub mod probe;
pub mod ring;
mod runtime;
mod sigsys;
pub mod wire;

pub use component::{Diagnostics, Emit, Exporter, Extension, Output, Processor, Receiver, Verb};
pub use control::{AgentMsg, PROTOCOL_VERSION, PluginMsg, PluginType};
pub use runtime::{Context, Plugin, PluginError, PluginInfo, Registry, run, serve_processor};
pub use sigsys::{SigsysError, install_seccomp_errno_handler};
