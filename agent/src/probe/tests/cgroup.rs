//! cgroup detection (v1, hybrid, v2) and mount probes.

use std::path::PathBuf;

use super::*;
use crate::sys::cgroup::{CgroupMode, CgroupVersion, FileCheck};

#[test]
fn hybrid_sample_of_this_vm() {
    let h = hybrid_host();
    let r = run(&h);
    let layout = r.cgroup.as_ref().unwrap();
    assert_eq!(layout.mode, CgroupMode::Hybrid);
    let v2 = layout.v2.as_ref().unwrap();
    assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
    assert_eq!(v2.controllers, ["hugetlb"]);
    assert_eq!(v2.cgroup_kill, FileCheck::NoChildCgroup);
    assert_eq!(layout.v1.len(), 9);
    let systemd = layout
        .v1
        .iter()
        .find(|h| h.name.as_deref() == Some("systemd"))
        .unwrap();
    assert!(systemd.controllers.is_empty());
    for c in ["memory", "cpu", "pids"] {
        let home = layout.home_of(c).unwrap();
        assert_eq!(home.version, CgroupVersion::V1, "{c}");
        assert_eq!(
            home.mount_point,
            PathBuf::from(format!("/sys/fs/cgroup/{c}"))
        );
    }
    assert_eq!(
        layout.home_of("hugetlb").unwrap().version,
        CgroupVersion::V2
    );

    assert_status(&r, "cgroup_mode", Status::Ok);
    assert_eq!(
        get(&r, "cgroup_mode").detail,
        "mode hybrid; cgroup2 at /sys/fs/cgroup/unified (hugetlb); v1: cpu cpuacct cpuset memory \
         devices freezer blkio pids name=systemd under /sys/fs/cgroup"
    );
    assert_eq!(
        get(&r, "cgroup_memory").detail,
        "v1 at /sys/fs/cgroup/memory"
    );
    assert!(
        get(&r, "cgroup_memory")
            .srediag
            .contains("memory.limit_in_bytes")
    );
    // No child cgroup to look in: inferred from the kernel version (6.8 >= 5.14).
    assert_status(&r, "cgroup_kill", Status::Ok);
    assert!(get(&r, "cgroup_kill").detail.contains("no child cgroup"));
    assert_status(&r, "cgroup_events", Status::Ok);
    // Like this VM: no tracefs, no bpffs, no kprobes.
    assert_status(&r, "tracefs", Status::Degraded);
    assert_status(&r, "bpffs", Status::Degraded);
    assert_status(&r, "kprobe", Status::Degraded);
}

#[test]
fn pure_v2_host() {
    let h = v2_host();
    let r = run(&h);
    let layout = r.cgroup.as_ref().unwrap();
    assert_eq!(layout.mode, CgroupMode::V2);
    assert!(layout.v1.is_empty());
    let v2 = layout.v2.as_ref().unwrap();
    let own = PathBuf::from("/sys/fs/cgroup/system.slice");
    assert_eq!(v2.cgroup_kill, FileCheck::Present { dir: own.clone() });
    assert_eq!(v2.cgroup_events, FileCheck::Present { dir: own });
    for c in ["memory", "cpu", "pids"] {
        assert_eq!(layout.home_of(c).unwrap().version, CgroupVersion::V2, "{c}");
    }
    assert_eq!(
        get(&r, "cgroup_cpu").srediag,
        "plugin CPU limit via cpu.max"
    );
    assert_status(&r, "bpffs", Status::Ok);
    assert_eq!(
        get(&r, "tracefs").detail,
        "/sys/kernel/tracing (tracefs mount)"
    );
    assert_status(&r, "kprobe", Status::Ok);
    assert_eq!(r.problems(), 0, "{}", r.render_table());
}

#[test]
fn v2_child_cgroup_without_kill_is_degraded() {
    let h = host(V2_MOUNTINFO);
    h.write("/sys/fs/cgroup/cgroup.controllers", "memory pids\n")
        .write("/sys/fs/cgroup/a/cgroup.procs", "")
        .write("/sys/fs/cgroup/a/cgroup.events", "populated 0\n");
    let r = run(&h);
    assert_status(&r, "cgroup_kill", Status::Degraded);
    assert_eq!(
        get(&r, "cgroup_kill").detail,
        "cgroup.kill missing in /sys/fs/cgroup/a"
    );
    assert_status(&r, "cgroup_events", Status::Ok);
    // cpu is on no hierarchy: /proc/cgroups says hierarchy 1, which is not mounted here.
    assert_status(&r, "cgroup_cpu", Status::Unavailable);
    assert!(get(&r, "cgroup_cpu").detail.contains("hierarchy 1"));
}

#[test]
fn pure_v1_host() {
    let h = host(V1_MOUNTINFO);
    let r = run(&h);
    let layout = r.cgroup.as_ref().unwrap();
    assert_eq!(layout.mode, CgroupMode::V1);
    // The second mount of the memory hierarchy (same device) is not a new hierarchy.
    assert_eq!(layout.v1.len(), 4);
    assert_eq!(layout.v1[0].controllers, ["cpu", "cpuacct"]);
    assert_eq!(
        layout.home_of("cpu").unwrap().mount_point,
        PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
    );
    assert_status(&r, "cgroup_kill", Status::Degraded);
    assert_eq!(get(&r, "cgroup_kill").detail, "no cgroup2 mount");
    assert_status(&r, "cgroup_memory", Status::Ok);
    assert_eq!(
        get(&r, "cgroup_mode").detail,
        "mode v1; v1: cpu,cpuacct memory pids name=systemd under /sys/fs/cgroup"
    );
    // Unconventional mount points are listed one by one.
    h.write(
        "/proc/self/mountinfo",
        V1_MOUNTINFO.replace("/sys/fs/cgroup/memory", "/mnt/mem"),
    );
    let r = run(&h);
    assert!(
        get(&r, "cgroup_mode")
            .detail
            .contains("cpu,cpuacct at /sys/fs/cgroup/cpu,cpuacct; memory at /mnt/mem; pids at")
    );
}

#[test]
fn no_cgroups_and_unreadable_mountinfo() {
    let h = host("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
    let r = run(&h);
    assert_eq!(r.cgroup.as_ref().unwrap().mode, CgroupMode::None);
    assert_status(&r, "cgroup_mode", Status::Unavailable);
    assert_status(&r, "cgroup_memory", Status::Unavailable);

    let h = FakeHost::new();
    let r = run(&h);
    assert!(r.cgroup.is_none());
    let mode = get(&r, "cgroup_mode");
    assert_eq!(mode.status, Status::Unavailable);
    assert!(
        mode.detail.contains("cannot read /proc/self/mountinfo"),
        "{}",
        mode.detail
    );
    assert_status(&r, "tracefs", Status::Unavailable);
}

#[test]
fn tracefs_at_the_debugfs_path() {
    let mounts = format!(
        "{HYBRID_MOUNTINFO}50 23 0:7 / /sys/kernel/debug rw - debugfs debugfs rw\n\
         51 50 0:12 / /sys/kernel/debug/tracing rw - tracefs tracefs rw\n"
    );
    let h = hybrid_host();
    h.write("/proc/self/mountinfo", &mounts);
    let r = run(&h);
    assert_status(&r, "tracefs", Status::Ok);
    assert_eq!(
        get(&r, "tracefs").detail,
        "/sys/kernel/debug/tracing (tracefs mount)"
    );
    assert!(
        get(&r, "tracefs")
            .srediag
            .contains("/sys/kernel/debug/tracing/events")
    );

    // Only debugfs in mountinfo: tracefs is automounted below it on access.
    let mounts =
        format!("{HYBRID_MOUNTINFO}50 23 0:7 / /sys/kernel/debug rw - debugfs debugfs rw\n");
    h.write("/proc/self/mountinfo", &mounts)
        .mkdir("/sys/kernel/debug/tracing/events");
    let r = run(&h);
    assert_eq!(
        get(&r, "tracefs").detail,
        "/sys/kernel/debug/tracing (debugfs automount)"
    );
}
