//! bpffs and tracefs mounts, read from `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

use super::kernel::Facts;
use super::{ProbeItem, Status, item};
use crate::sys::Host;
use crate::sys::mountinfo::Mount;

/// The usual tracefs mount points, preferred in this order.
const TRACEFS_PATHS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Where tracefs is reachable: a tracefs mount (preferring the usual paths), or the automount
/// below a mounted debugfs.
pub(super) fn tracefs_dir(host: &dyn Host, mounts: &[Mount]) -> Option<(PathBuf, &'static str)> {
    let tracefs: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "tracefs").collect();
    for want in TRACEFS_PATHS {
        if tracefs.iter().any(|m| m.mount_point == Path::new(want)) {
            return Some((PathBuf::from(want), "tracefs mount"));
        }
    }
    if let Some(m) = tracefs.first() {
        return Some((m.mount_point.clone(), "tracefs mount"));
    }
    mounts
        .iter()
        .filter(|m| m.fs_type == "debugfs")
        .map(|m| m.mount_point.join("tracing"))
        .find(|dir| host.exists(&dir.join("events")))
        .map(|dir| (dir, "debugfs automount"))
}

fn bpffs_item(mounts: &[Mount]) -> ProbeItem {
    let bpf: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "bpf").collect();
    let chosen = bpf
        .iter()
        .find(|m| m.mount_point == Path::new("/sys/fs/bpf"))
        .or(bpf.first());
    match chosen {
        Some(m) => item(
            "bpffs",
            Status::Ok,
            format!("bpf mounted at {}", m.mount_point.display()),
            "maps can be pinned so observers survive an agent restart",
        ),
        None => item(
            "bpffs",
            Status::Degraded,
            "no bpf file system mounted (expected at /sys/fs/bpf)",
            "no map pinning: observer maps live only as long as the agent \
             (mount -t bpf bpf /sys/fs/bpf to enable)",
        ),
    }
}

fn tracefs_item(host: &dyn Host, mounts: &[Mount]) -> ProbeItem {
    match tracefs_dir(host, mounts) {
        Some((dir, how)) => item(
            "tracefs",
            Status::Ok,
            format!("{} ({how})", dir.display()),
            format!(
                "classic tracepoints (syscalls, sched, signal) resolve their ids from {}/events",
                dir.display()
            ),
        ),
        None => item(
            "tracefs",
            Status::Degraded,
            "not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing",
            "classic tracepoints cannot be attached (ids come from tracefs): observers use \
             tp_btf/raw_tp instead (mount -t tracefs tracefs /sys/kernel/tracing to enable)",
        ),
    }
}

pub(super) fn items(host: &dyn Host, f: &Facts) -> Vec<ProbeItem> {
    match &f.mounts {
        Ok(mounts) => vec![bpffs_item(mounts), tracefs_item(host, mounts)],
        Err(e) => ["bpffs", "tracefs"]
            .into_iter()
            .map(|name| {
                item(
                    name,
                    Status::Unavailable,
                    format!("mounts unknown: {e}"),
                    "cannot tell whether the file system is mounted; features needing it are off",
                )
            })
            .collect(),
    }
}
