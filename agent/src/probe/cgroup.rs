//! cgroup items: the mode, where memory/cpu/pids are driven from, and the cgroup2 interface files
//! (`cgroup.kill`, `cgroup.events`) the plugin supervisor uses.

use super::kernel::Facts;
use super::{ProbeItem, Status, item};
use crate::sys::Host;
use crate::sys::cgroup::{self, CgroupLayout, CgroupMode, CgroupVersion, FileCheck, V1Hierarchy};

/// `cpu,cpuacct` or `name=systemd`: what a v1 hierarchy holds.
fn v1_label(h: &V1Hierarchy) -> String {
    let mut parts = h.controllers.clone();
    if let Some(name) = &h.name {
        parts.push(format!("name={name}"));
    }
    parts.join(",")
}

/// The v1 hierarchies, compact when they are all mounted as `<parent>/<label>`.
fn v1_summary(layout: &CgroupLayout) -> String {
    let parent = layout.v1.first().and_then(|h| h.mount_point.parent());
    let conventional = parent.is_some_and(|p| {
        layout.v1.iter().all(|h| {
            h.mount_point.parent() == Some(p)
                && h.mount_point.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n == v1_label(h) || h.name.as_deref() == Some(&*n)
                })
        })
    });
    let labels: Vec<String> = layout.v1.iter().map(v1_label).collect();
    match parent {
        Some(p) if conventional => format!("{} under {}", labels.join(" "), p.display()),
        _ => layout
            .v1
            .iter()
            .zip(&labels)
            .map(|(h, l)| format!("{l} at {}", h.mount_point.display()))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn mode_item(layout: &CgroupLayout) -> ProbeItem {
    let mut parts = Vec::new();
    if let Some(v2) = &layout.v2 {
        let ctl = if v2.controllers.is_empty() {
            "no controllers".to_owned()
        } else {
            v2.controllers.join(" ")
        };
        parts.push(format!("cgroup2 at {} ({ctl})", v2.mount_point.display()));
    }
    if !layout.v1.is_empty() {
        parts.push(format!("v1: {}", v1_summary(layout)));
    }
    for w in &layout.warnings {
        parts.push(format!("warning: {w}"));
    }
    let detail = if parts.is_empty() {
        format!(
            "mode {}; no cgroup file system mounted",
            layout.mode.as_str()
        )
    } else {
        format!("mode {}; {}", layout.mode.as_str(), parts.join("; "))
    };
    let (status, srediag) = match layout.mode {
        CgroupMode::V2 => (Status::Ok, "plugin cgroups live on the cgroup2 hierarchy"),
        CgroupMode::Hybrid => (
            Status::Ok,
            "plugin cgroups use v1 hierarchies for controllers missing from cgroup2, and cgroup2 \
             for cgroup.kill/cgroup.events",
        ),
        CgroupMode::V1 => (
            Status::Ok,
            "plugin cgroups live on the v1 hierarchies (one directory per controller)",
        ),
        CgroupMode::None => (
            Status::Unavailable,
            "no cgroups: plugins run without resource limits or cgroup accounting",
        ),
    };
    item("cgroup_mode", status, detail, srediag)
}

fn controller_item(
    layout: &CgroupLayout,
    controller: &str,
    v1_use: &str,
    v2_use: &str,
) -> ProbeItem {
    let name = format!("cgroup_{controller}");
    if let Some(home) = layout.home_of(controller) {
        let (version, usage) = match home.version {
            CgroupVersion::V1 => ("v1", v1_use),
            CgroupVersion::V2 => ("v2", v2_use),
        };
        return item(
            &name,
            Status::Ok,
            format!("{version} at {}", home.mount_point.display()),
            usage,
        );
    }
    let known = layout
        .kernel_controllers
        .iter()
        .find(|k| k.name == controller);
    let why = match known {
        Some(k) if !k.enabled => "disabled on the kernel command line".to_owned(),
        Some(k) if k.hierarchy != 0 => {
            format!(
                "bound to v1 hierarchy {} that is not mounted here",
                k.hierarchy
            )
        }
        Some(_) => "in the kernel but on no mounted hierarchy".to_owned(),
        None => "not in /proc/cgroups or on any mounted hierarchy".to_owned(),
    };
    item(
        &name,
        Status::Unavailable,
        format!("no {controller} controller: {why}"),
        format!("plugins run without {controller} limits"),
    )
}

/// An item for a cgroup2 interface file that exists only in non-root cgroups.
fn v2_file_item(
    f: &Facts,
    layout: &CgroupLayout,
    file: &str,
    since: (u32, u32),
    ok_text: &str,
    fallback: &str,
) -> ProbeItem {
    let name = format!("cgroup_{}", file.trim_start_matches("cgroup."));
    let Some(v2) = &layout.v2 else {
        return item(&name, Status::Degraded, "no cgroup2 mount", fallback);
    };
    let check = if file == "cgroup.kill" {
        &v2.cgroup_kill
    } else {
        &v2.cgroup_events
    };
    match check {
        FileCheck::Present { dir } => item(
            &name,
            Status::Ok,
            format!("{file} present in {}", dir.display()),
            ok_text,
        ),
        FileCheck::Absent { dir } => item(
            &name,
            Status::Degraded,
            format!("{file} missing in {}", dir.display()),
            fallback,
        ),
        FileCheck::NoChildCgroup if f.kernel_at_least(since.0, since.1) => item(
            &name,
            Status::Ok,
            format!(
                "no child cgroup under {} to look in; kernel {} >= {}.{} provides {file}",
                v2.mount_point.display(),
                f.release(),
                since.0,
                since.1
            ),
            ok_text,
        ),
        FileCheck::NoChildCgroup => item(
            &name,
            Status::Degraded,
            format!(
                "no child cgroup under {} to look in, and kernel {} is older than {}.{} or unknown",
                v2.mount_point.display(),
                f.release(),
                since.0,
                since.1
            ),
            fallback,
        ),
    }
}

pub(super) fn items(host: &dyn Host, f: &Facts) -> (Vec<ProbeItem>, Option<CgroupLayout>) {
    let layout = match cgroup::detect(host) {
        Ok(layout) => layout,
        Err(e) => {
            let items = [
                "cgroup_mode",
                "cgroup_memory",
                "cgroup_cpu",
                "cgroup_pids",
                "cgroup_kill",
                "cgroup_events",
            ]
            .into_iter()
            .map(|name| {
                item(
                    name,
                    Status::Unavailable,
                    format!("cgroup layout unknown: {e}"),
                    "plugins run without cgroup limits",
                )
            })
            .collect();
            return (items, None);
        }
    };
    let items = vec![
        mode_item(&layout),
        controller_item(
            &layout,
            "memory",
            "plugin memory limit via memory.limit_in_bytes; OOM kills counted by memory.oom_control",
            "plugin memory limit via memory.max; OOM kills counted by memory.events",
        ),
        controller_item(
            &layout,
            "cpu",
            "plugin CPU limit via cpu.cfs_quota_us/cpu.cfs_period_us",
            "plugin CPU limit via cpu.max",
        ),
        controller_item(
            &layout,
            "pids",
            "plugin fork limit via v1 pids.max",
            "plugin fork limit via pids.max",
        ),
        v2_file_item(
            f,
            &layout,
            "cgroup.kill",
            (5, 14),
            "plugins are killed with cgroup.kill (the whole cgroup at once)",
            "no cgroup.kill: plugins are killed by SIGKILL to each pid in cgroup.procs",
        ),
        v2_file_item(
            f,
            &layout,
            "cgroup.events",
            (4, 5),
            "plugin exit is detected via cgroup.events (populated 0)",
            "no cgroup.events: srediag polls cgroup.procs to see a plugin cgroup empty",
        ),
    ];
    (items, Some(layout))
}
