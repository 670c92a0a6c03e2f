//! `srediag probe`: what this host supports for srediag.
//!
//! [`run`] inspects the host through [`crate::sys::Host`] (files under /proc and /sys, `uname`,
//! trial `bpf()` loads, Landlock and seccomp queries) and returns a [`ProbeReport`]: one
//! [`ProbeItem`] per feature with what was found and what srediag will do with it. Nothing here
//! panics on odd kernel files; every failure becomes an item's status and detail.

mod bpf;
mod cgroup;
mod kernel;
mod lsm;
mod mounts;
mod render;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::sys::Host;
use crate::sys::cgroup::CgroupLayout;

/// How well srediag can use a feature on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The feature works; srediag uses it.
    Ok,
    /// The feature is missing or refused, and srediag falls back to something else.
    Degraded,
    /// The feature is missing or refused, and the srediag function built on it is disabled.
    Unavailable,
}

impl Status {
    /// `ok`, `degraded` or `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Unavailable => "unavailable",
        }
    }
}

/// One probed feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeItem {
    /// Stable identifier of the feature, e.g. `btf`, `prog_tp_btf`, `cgroup_memory`.
    pub name: String,
    /// `ok`, `degraded` or `unavailable`.
    pub status: Status,
    /// What was found: a version, a path, a size, or the errno of a refused call.
    pub detail: String,
    /// One sentence: what srediag will use, or what it degrades to.
    pub srediag: String,
}

/// The result of `srediag probe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// The probed features, in display order.
    pub items: Vec<ProbeItem>,
    /// The detected cgroup layout (`null` when `/proc/self/mountinfo` could not be read).
    pub cgroup: Option<CgroupLayout>,
}

impl ProbeReport {
    /// The report as a text table (one row per item, long cells wrapped) with a summary line.
    pub fn render_table(&self) -> String {
        render::table(self)
    }

    /// The number of items whose status is not `ok` (degraded or unavailable).
    pub fn problems(&self) -> usize {
        self.items.iter().filter(|i| i.status != Status::Ok).count()
    }

    /// The item with this name, if probed.
    pub fn item(&self, name: &str) -> Option<&ProbeItem> {
        self.items.iter().find(|i| i.name == name)
    }
}

fn item(
    name: &str,
    status: Status,
    detail: impl Into<String>,
    srediag: impl Into<String>,
) -> ProbeItem {
    ProbeItem {
        name: name.to_owned(),
        status,
        detail: detail.into(),
        srediag: srediag.into(),
    }
}

/// Probes the host.
pub fn run(sys: &dyn Host) -> ProbeReport {
    let facts = kernel::Facts::gather(sys);
    let mut items = Vec::new();
    items.extend(kernel::items(&facts));
    items.extend(mounts::items(sys, &facts));
    items.extend(bpf::items(sys, &facts));
    let (cgroup_items, layout) = cgroup::items(sys, &facts);
    items.extend(cgroup_items);
    items.extend(lsm::items(sys));
    ProbeReport {
        items,
        cgroup: layout,
    }
}
