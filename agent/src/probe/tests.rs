//! Probe logic against a fake host (no root needed), plus one consistency test on the real host.

use std::path::{Path, PathBuf};

use super::render::wrap;
use super::*;
use crate::sys::btf::test_blob;
use crate::sys::cgroup::{CgroupMode, CgroupVersion, FileCheck};
use crate::sys::fake::FakeHost;
use crate::sys::{AttachType, Errno, ProgType};

/// A reduced copy of this project's VM mountinfo (cgroup v1 hybrid, no tracefs, no bpffs).
const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// The same machine's /proc/cgroups.
const HYBRID_PROC_CGROUPS: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t43\t1
devices\t5\t1\t1
freezer\t6\t1\t1
net_cls\t0\t1\t1
perf_event\t0\t1\t1
net_prio\t0\t1\t1
hugetlb\t0\t1\t1
pids\t8\t1\t1
";

/// A typical systemd unified (pure v2) host with tracefs, debugfs and bpffs.
const V2_MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 22 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
31 24 0:27 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:5 - bpf bpf rw,mode=700
40 24 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:14 - debugfs debugfs rw
41 24 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:15 - tracefs tracefs rw
";

/// A legacy (pure v1) host.
const V1_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
31 22 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
35 31 0:30 / /mnt/memory-again rw,nosuid - cgroup cgroup rw,memory
36 31 0:32 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
";

const ALL_ACTIONS: &str = "kill_process kill_thread trap errno user_notif trace log allow\n";

/// vmlinux BTF with the names the probes resolve (raw kinds: 1 int, 4 struct, 8 typedef,
/// 12 func, 13 func_proto).
fn btf_blob() -> Vec<u8> {
    test_blob(&[
        ("int", 1, 0, 4),
        ("task_struct", 4, 1, 12),
        ("", 13, 1, 8),
        ("btf_trace_sched_switch", 8, 0, 0),
        ("do_nanosleep", 12, 0, 0),
        ("bpf_lsm_file_open", 12, 0, 0),
    ])
}

/// A privileged host with BTF, the uprobe PMU, all seccomp actions and the given mounts.
fn host(mountinfo: &str) -> FakeHost {
    let h = FakeHost::new();
    h.write("/proc/self/mountinfo", mountinfo)
        .write(
            "/proc/self/status",
            "Name:\tsrediag\nCapEff:\t000001ffffffffff\n",
        )
        .write("/proc/self/cgroup", "0::/\n")
        .write("/proc/cgroups", HYBRID_PROC_CGROUPS)
        .write("/proc/sys/kernel/seccomp/actions_avail", ALL_ACTIONS)
        .write("/sys/kernel/btf/vmlinux", btf_blob())
        .write("/sys/bus/event_source/devices/uprobe/type", "7\n");
    h
}

fn hybrid_host() -> FakeHost {
    let h = host(HYBRID_MOUNTINFO);
    h.write("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")
        .write("/sys/fs/cgroup/unified/cgroup.procs", "1\n");
    h
}

fn v2_host() -> FakeHost {
    let h = host(V2_MOUNTINFO);
    h.write(
        "/sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    )
    .write("/sys/fs/cgroup/cgroup.procs", "")
    .write("/sys/fs/cgroup/init.scope/cgroup.procs", "1\n")
    .write("/sys/fs/cgroup/system.slice/cgroup.procs", "")
    .write("/sys/fs/cgroup/system.slice/cgroup.kill", "")
    .write(
        "/sys/fs/cgroup/system.slice/cgroup.events",
        "populated 1\nfrozen 0\n",
    )
    .write("/proc/self/cgroup", "0::/system.slice\n")
    .write("/sys/kernel/tracing/events/sched/sched_switch/id", "300\n")
    .write("/sys/kernel/tracing/kprobe_events", "");
    h
}

#[track_caller]
fn get<'a>(r: &'a ProbeReport, name: &str) -> &'a ProbeItem {
    r.item(name)
        .unwrap_or_else(|| panic!("no item {name} in {:#?}", r.items))
}

#[track_caller]
fn assert_status(r: &ProbeReport, name: &str, status: Status) {
    let it = get(r, name);
    assert_eq!(it.status, status, "{name}: {it:#?}");
}

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

#[test]
fn fentry_and_lsm_eperm_degrade_to_tracepoints() {
    let mut h = hybrid_host();
    h.refuse(
        ProgType::Tracing,
        Some(AttachType::TraceFentry),
        Errno::EPERM,
    );
    h.refuse(ProgType::Lsm, Some(AttachType::LsmMac), Errno::EPERM);
    let r = run(&h);
    let fentry = get(&r, "prog_fentry");
    assert_eq!(fentry.status, Status::Degraded);
    assert_eq!(
        fentry.srediag,
        "fentry refused (EPERM): observers use tp_btf/raw_tp instead"
    );
    assert!(
        fentry
            .detail
            .starts_with("load refused: EPERM (operation not permitted)")
    );
    let lsm = get(&r, "prog_lsm");
    assert_eq!(lsm.status, Status::Degraded);
    assert!(
        lsm.srediag
            .contains("falls back to tp_btf/raw_tp/tracepoints")
    );
    assert!(lsm.detail.contains("EPERM"));
    assert_status(&r, "prog_tp_btf", Status::Ok);
    assert_status(&r, "prog_tracepoint", Status::Ok);
}

#[test]
fn attach_btf_ids_come_from_vmlinux_btf() {
    let h = hybrid_host();
    let r = run(&h);
    let loads = h.loads.borrow();
    let find = |t, a| {
        loads
            .iter()
            .find(|l| l.prog_type == t && l.expected_attach_type == a)
            .copied()
    };
    // Ids follow the order of btf_blob(): typedef 4, do_nanosleep 5, bpf_lsm_file_open 6.
    let tp_btf = find(ProgType::Tracing, Some(AttachType::TraceRawTp)).unwrap();
    assert_eq!(tp_btf.attach_btf_id, Some(4));
    assert_eq!(
        find(ProgType::Tracing, Some(AttachType::TraceFentry))
            .unwrap()
            .attach_btf_id,
        Some(5)
    );
    assert_eq!(
        find(ProgType::Lsm, Some(AttachType::LsmMac))
            .unwrap()
            .attach_btf_id,
        Some(6)
    );
    assert_eq!(
        find(ProgType::Tracepoint, None).unwrap().attach_btf_id,
        None
    );
    assert!(
        get(&r, "prog_tp_btf")
            .detail
            .contains("attach_btf_id 4 = btf_trace_sched_switch")
    );
    assert_status(&r, "uprobe", Status::Ok);
    assert_status(&r, "map_ringbuf", Status::Ok);
}

#[test]
fn verifier_log_is_reported() {
    let mut h = hybrid_host();
    h.prog_loads.insert(
        (ProgType::PerfEvent, None),
        crate::sys::LoadError {
            errno: Errno::EINVAL,
            verifier_log: "R0 !read_ok\nprocessed 0 insns".into(),
        },
    );
    let r = run(&h);
    let it = get(&r, "prog_perf_event");
    assert_eq!(it.status, Status::Unavailable);
    assert_eq!(
        it.detail,
        "load refused: EINVAL (invalid argument); verifier: R0 !read_ok processed 0 insns"
    );
}

#[test]
fn no_btf_degrades() {
    let h = hybrid_host();
    std::fs::remove_file(h.root().join("sys/kernel/btf/vmlinux")).unwrap();
    let r = run(&h);
    assert_status(&r, "btf", Status::Degraded);
    assert!(
        get(&r, "btf")
            .srediag
            .contains("fall back to classic tracepoints and raw_tp")
    );
    let tp_btf = get(&r, "prog_tp_btf");
    assert_eq!(tp_btf.status, Status::Degraded);
    assert!(
        tp_btf.detail.contains("no usable kernel BTF"),
        "{}",
        tp_btf.detail
    );
    assert_eq!(
        tp_btf.srediag,
        "tp_btf unavailable: per-plugin CPU via raw_tp sched_switch"
    );
    assert_status(&r, "prog_fentry", Status::Degraded);
    assert!(h.loads.borrow().iter().all(|l| l.attach_btf_id.is_none()));
}

#[test]
fn not_root_is_unavailable_and_loads_nothing() {
    let mut h = hybrid_host();
    h.euid = 1000;
    h.write("/proc/self/status", "CapEff:\t0000000000000000\n");
    let r = run(&h);
    assert_status(&r, "privileges", Status::Unavailable);
    for name in [
        "prog_tracepoint",
        "prog_raw_tp",
        "prog_tp_btf",
        "uprobe",
        "prog_fentry",
        "prog_lsm",
        "prog_perf_event",
        "map_ringbuf",
        "bpf_stats",
    ] {
        let it = get(&r, name);
        assert_eq!(it.status, Status::Unavailable, "{name}");
        assert!(
            it.detail.contains("needs root (CAP_BPF)"),
            "{name}: {}",
            it.detail
        );
    }
    assert!(h.loads.borrow().is_empty());
    // Non-BPF probes still run.
    assert_status(&r, "cgroup_mode", Status::Ok);
    assert_status(&r, "btf", Status::Ok);
}

#[test]
fn cap_bpf_without_root_may_load() {
    let mut h = hybrid_host();
    h.euid = 1000;
    h.write("/proc/self/status", "CapEff:\t000000c000000000\n"); // CAP_PERFMON + CAP_BPF
    let r = run(&h);
    assert_status(&r, "privileges", Status::Ok);
    assert_status(&r, "prog_tracepoint", Status::Ok);
}

#[test]
fn landlock_versions() {
    let mut h = hybrid_host();
    h.landlock = Ok(7);
    let r = run(&h);
    assert_status(&r, "landlock", Status::Ok);
    assert!(
        get(&r, "landlock")
            .detail
            .starts_with("ABI 7: fs, fs refer")
    );
    assert!(get(&r, "landlock").detail.contains("net tcp bind/connect"));

    h.landlock = Ok(4);
    assert_status(&run(&h), "landlock", Status::Degraded);
    h.landlock = Ok(2);
    assert!(get(&run(&h), "landlock").srediag.contains("files only"));
    h.landlock = Err(Errno::ENOSYS);
    let r = run(&h);
    assert_status(&r, "landlock", Status::Unavailable);
    assert!(
        get(&r, "landlock")
            .detail
            .starts_with("kernel built without Landlock: ENOSYS")
    );
    h.landlock = Err(Errno::EOPNOTSUPP);
    assert!(
        get(&run(&h), "landlock")
            .detail
            .contains("disabled at boot")
    );
    assert_eq!(lsm::landlock_features(99).len(), 7);
    assert!(lsm::landlock_features(-1).is_empty());
}

#[test]
fn seccomp_variants() {
    let mut h = hybrid_host();
    let r = run(&h);
    assert_status(&r, "seccomp_filter", Status::Ok);
    assert_status(&r, "seccomp_user_notif", Status::Ok);

    h.write(
        "/proc/sys/kernel/seccomp/actions_avail",
        "kill_process errno allow\n",
    );
    let r = run(&h);
    assert_status(&r, "seccomp_filter", Status::Degraded);
    assert!(
        get(&r, "seccomp_filter")
            .detail
            .ends_with("missing: trap log")
    );
    assert_status(&r, "seccomp_user_notif", Status::Unavailable);

    h.seccomp = Err(Errno::EINVAL);
    let r = run(&h);
    assert_status(&r, "seccomp_filter", Status::Unavailable);
    assert_status(&r, "seccomp_user_notif", Status::Unavailable);
}

#[test]
fn garbage_kernel_files_do_not_panic() {
    let h = FakeHost::new();
    h.write(
        "/proc/self/mountinfo",
        "\0\0 garbage\n- - -\n1 2\n\\\\\\ \u{fffd}\n",
    )
    .write("/proc/self/status", "CapEff:\tnot-hex\n")
    .write("/proc/cgroups", "#\nmemory x y z\n\n")
    .write("/proc/sys/kernel/seccomp/actions_avail", "")
    .write(
        "/sys/kernel/btf/vmlinux",
        [0x9f, 0xeb, 1, 0, 0xff, 0xff, 0xff, 0xff],
    );
    let r = run(&h);
    assert_status(&r, "btf", Status::Degraded);
    assert!(get(&r, "btf").detail.contains("unusable"));
    assert_eq!(r.cgroup.as_ref().unwrap().mode, CgroupMode::None);
    assert!(r.render_table().contains("btf"));
}

#[test]
fn json_uses_stable_snake_case_names() {
    let r = run(&v2_host());
    let json = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["cgroup", "items"]);
    let first = &json["items"][0];
    let mut item_keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    item_keys.sort();
    assert_eq!(item_keys, ["detail", "name", "srediag", "status"]);
    assert_eq!(first["status"], "ok");
    assert_eq!(json["cgroup"]["mode"], "v2");
    assert_eq!(json["cgroup"]["v2"]["cgroup_kill"]["state"], "present");
    let statuses: Vec<String> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| ["ok", "degraded", "unavailable"].contains(&s.as_str()))
    );
}

#[test]
fn every_item_is_named_once_and_filled_in() {
    let r = run(&hybrid_host());
    let mut names: Vec<&str> = r.items.iter().map(|i| i.name.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate item names");
    for it in &r.items {
        assert!(!it.detail.is_empty() && !it.srediag.is_empty(), "{it:?}");
    }
    for expected in [
        "kernel",
        "arch",
        "privileges",
        "btf",
        "bpffs",
        "tracefs",
        "prog_tracepoint",
        "prog_raw_tp",
        "prog_tp_btf",
        "uprobe",
        "kprobe",
        "prog_fentry",
        "prog_lsm",
        "prog_perf_event",
        "map_ringbuf",
        "bpf_stats",
        "cgroup_mode",
        "cgroup_memory",
        "cgroup_cpu",
        "cgroup_pids",
        "cgroup_kill",
        "cgroup_events",
        "landlock",
        "seccomp_filter",
        "seccomp_user_notif",
    ] {
        assert!(r.item(expected).is_some(), "missing {expected}");
    }
}

#[test]
fn table_rendering() {
    let r = run(&hybrid_host());
    let table = r.render_table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("STATUS")
            && lines[0].ends_with("SREDIAG")
    );
    for it in &r.items {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{} ", it.name))),
            "{}",
            it.name
        );
    }
    assert!(table.ends_with(&format!(
        "{} ok, {} degraded, {} unavailable\n",
        r.items.iter().filter(|i| i.status == Status::Ok).count(),
        r.items.iter().filter(|i| i.status == Status::Degraded).count(),
        r.items.iter().filter(|i| i.status == Status::Unavailable).count()
    )));
    assert_eq!(
        r.problems(),
        r.items.iter().filter(|i| i.status != Status::Ok).count()
    );
}

#[test]
fn wrapping() {
    assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
    assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    assert_eq!(wrap("", 4), [""]);
    assert_eq!(wrap("x  y", 0), ["x", "y"]);
}

/// Independent reading of mountinfo: (has a cgroup2 mount, has a v1 mount with a controller).
fn mountinfo_cgroups(text: &str) -> (bool, bool) {
    let mut v2 = false;
    let mut v1_controllers = false;
    for line in text.lines() {
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        match fields.first() {
            Some(&"cgroup2") => v2 = true,
            Some(&"cgroup") => {
                let opts = fields.get(2).copied().unwrap_or("");
                v1_controllers |= opts.split(',').any(|o| {
                    !["rw", "ro", "xattr", "clone_children", "noprefix", "none"].contains(&o)
                        && !o.contains('=')
                });
            }
            _ => {}
        }
    }
    (v2, v1_controllers)
}

/// Runs the real probe here and checks it agrees with itself and with the kernel files; never
/// hard-codes this machine's answers. Privileged checks are skipped (with a reason) when not root,
/// unless CI=true.
#[test]
fn real_host_is_internally_consistent() {
    let host = crate::sys::real_host();
    let r = run(&*host);
    println!("{}", r.render_table());

    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_status(&r, "btf", Status::Ok);
    } else {
        assert_status(&r, "btf", Status::Degraded);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let expected = match mountinfo_cgroups(&mountinfo) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V2,
        (false, true) => CgroupMode::V1,
        (false, false) => {
            if mountinfo.contains(" - cgroup ") {
                CgroupMode::V1
            } else {
                CgroupMode::None
            }
        }
    };
    assert_eq!(r.cgroup.as_ref().unwrap().mode, expected);
    assert!(
        get(&r, "cgroup_mode")
            .detail
            .starts_with(&format!("mode {};", expected.as_str()))
    );
    if get(&r, "uprobe").status == Status::Ok {
        assert!(Path::new("/sys/bus/event_source/devices/uprobe/type").exists());
    }

    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = crate::sys::caps::parse_status(&status, "CapEff").unwrap_or_default();
    let privileged = host.euid() == 0
        && (cap_eff.has(crate::sys::caps::CAP_BPF) || cap_eff.has(crate::sys::caps::CAP_SYS_ADMIN));
    if !privileged {
        let reason = "not root with CAP_BPF: privileged bpf() assertions skipped";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason} (CI=true requires a privileged run)");
        }
        println!("skipped: {reason}");
        assert_status(&r, "prog_tracepoint", Status::Unavailable);
        return;
    }
    assert_status(&r, "privileges", Status::Ok);
    assert_status(&r, "prog_tracepoint", Status::Ok);
    assert_status(&r, "prog_raw_tp", Status::Ok);
    // Whatever the kernel answered, a refusal carries an errno in the detail.
    for it in r
        .items
        .iter()
        .filter(|i| i.name.starts_with("prog_") && i.status != Status::Ok)
    {
        assert!(
            it.detail.contains("load refused: E") || it.detail.starts_with("not probed"),
            "{it:?}"
        );
    }
}
