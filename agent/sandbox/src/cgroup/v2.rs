//! cgroup v2 core files (no controller needed): `cgroup.subtree_control`, `cgroup.kill`,
//! `cgroup.freeze` and `cgroup.events`.

use std::path::Path;

use super::CgroupError;
use super::fs::{self, CgroupFs};

/// Enables `controllers` for the children of `dir`: one write of `"+memory +cpu +pids"` to its
/// `cgroup.subtree_control` (idempotent). Fails with `EBUSY` when `dir` is not the hierarchy root
/// and has processes of its own (the v2 "no internal processes" rule).
pub(super) fn enable_controllers(
    fs: &dyn CgroupFs,
    dir: &Path,
    controllers: &[&str],
) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let value = controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    fs::write(fs, &dir.join("cgroup.subtree_control"), &value)
}

/// `cgroup.kill` of `dir`, when the kernel has it (5.14+).
pub(super) fn kill_file(fs: &dyn CgroupFs, dir: &Path) -> Option<std::path::PathBuf> {
    let p = dir.join("cgroup.kill");
    fs.exists(&p).then_some(p)
}

/// `populated` of `cgroup.events` (any live process in the cgroup or below).
pub(super) fn populated(fs: &dyn CgroupFs, dir: &Path) -> Option<bool> {
    let text = fs.read(&dir.join("cgroup.events")).ok()?;
    fs::keyed(&text, "populated").map(|v| v != 0)
}

/// Freezes or thaws via `cgroup.freeze` (5.2+); false when the file is missing or refused.
pub(super) fn set_frozen(fs: &dyn CgroupFs, dir: &Path, frozen: bool) -> bool {
    let p = dir.join("cgroup.freeze");
    fs.exists(&p) && fs.write(&p, if frozen { "1" } else { "0" }).is_ok()
}

/// `frozen` of `cgroup.events`.
pub(super) fn is_frozen(fs: &dyn CgroupFs, dir: &Path) -> bool {
    fs.read(&dir.join("cgroup.events"))
        .ok()
        .and_then(|t| fs::keyed(&t, "frozen"))
        == Some(1)
}
