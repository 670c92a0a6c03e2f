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

// Under `--cfg loom` (the ring's model checks) only the ring is built: the rest needs real
// memfds and OS threads.
pub mod ring;

#[cfg(not(loom))]
pub mod component;
#[cfg(not(loom))]
pub mod control;
#[cfg(not(loom))]
pub mod data;
#[cfg(not(loom))]
mod datapath;
#[cfg(not(loom))]
pub mod probe;
#[cfg(not(loom))]
mod runtime;
#[cfg(not(loom))]
mod sigsys;
#[cfg(not(loom))]
pub mod verbs;
#[cfg(not(loom))]
pub mod wire;

#[cfg(not(loom))]
pub use component::{Emit, Exporter, Extension, Processor, Receiver};
#[cfg(not(loom))]
pub use control::{AgentMsg, HealthStatus, OutputKind, PROTOCOL_VERSION, PluginMsg, PluginType};
#[cfg(not(loom))]
pub use runtime::{
    Context, HealthReporter, Plugin, PluginError, PluginInfo, Registry, run, serve_diagnostics,
    serve_processor,
};
#[cfg(not(loom))]
pub use sigsys::{SigsysError, install_seccomp_errno_handler};
#[cfg(not(loom))]
pub use verbs::{Args, Cancellation, VerbContext, Verbs};
