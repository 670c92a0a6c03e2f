//! `srediag-sandbox`: the kernel sandbox a plugin runs in — seccomp, Landlock, cgroups,
//! namespaces, credentials — and the one `clone` that creates a plugin process.
//!
//! Raw syscalls live here and in `srediag-sys`, nowhere else in the agent's plugin code: the
//! child's side of a spawn (`exec.rs`, between `clone` and `execveat`, sharing the agent's
//! memory) may only make raw syscalls, and what it needs is prepared by `spawn.rs` before the
//! clone. The crate knows nothing of the agent: what the spawner tells the agent's eBPF tracker
//! goes through [`spawner::SpawnObserver`], which the agent implements and passes in.

pub mod cgroup;
pub mod creds;
pub mod exec;
pub mod landlock;
pub mod seccomp;
pub mod spawn;
pub mod spawner;
pub mod spec;
