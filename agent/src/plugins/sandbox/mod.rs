//! The kernel sandbox a plugin runs in: seccomp, Landlock, cgroups, namespaces, credentials.

pub mod cgroup;
pub mod seccomp;
