//! The kernel sandbox a plugin runs in: seccomp, Landlock, cgroups, namespaces, credentials.

pub mod cgroup;
pub mod creds;
pub mod exec;
pub mod landlock;
pub mod seccomp;
pub mod spawn;
pub mod spawner;
pub mod spec;
