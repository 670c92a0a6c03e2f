//! The vectorhashprocessor's logic as a library: the plugin binary (`main.rs`) serves it over the
//! data path, and the plugin-tax benchmark (`cargo xtask bench tax`) links the very same code
//! in-process to measure what the sandbox and the shared-memory hop cost.

pub mod dedup;
pub mod hash;
