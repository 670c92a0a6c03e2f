//! Probe logic against a fake host (no root needed), plus one consistency test on the real host.

mod bpf;
mod cgroup;
mod real_host;
mod report;
mod sandbox;

use super::*;
use crate::sys::btf::test_blob;
use crate::sys::fake::FakeHost;

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
