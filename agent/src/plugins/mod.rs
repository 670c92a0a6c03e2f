//! The plugin manager: trust, sandbox, supervisor, IPC (see ARCHITECTURE.md).

pub mod sandbox;
