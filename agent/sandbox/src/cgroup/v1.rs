//! cgroup v1 specifics: the freezer hierarchy, used to stop forks while killing when there is
//! no cgroup2 hierarchy (and so no `cgroup.kill`).
//!
//! A v1-frozen task does not die of `SIGKILL` until thawed, so a kill round is freeze, list,
//! signal, thaw: the listed tasks cannot fork in between, and once thawed they die before
//! returning to user space.

use std::path::Path;

use super::fs::CgroupFs;

/// Writes `FROZEN` or `THAWED` to `freezer.state`; false when refused.
pub(super) fn set_frozen(fs: &dyn CgroupFs, dir: &Path, frozen: bool) -> bool {
    let value = if frozen { "FROZEN" } else { "THAWED" };
    fs.write(&dir.join("freezer.state"), value).is_ok()
}

/// Whether `freezer.state` reads `FROZEN` (not `FREEZING`).
pub(super) fn is_frozen(fs: &dyn CgroupFs, dir: &Path) -> bool {
    fs.read(&dir.join("freezer.state"))
        .is_ok_and(|s| s.trim() == "FROZEN")
}
