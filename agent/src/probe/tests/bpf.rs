//! Trial BPF loads: fallbacks, BTF ids, privileges.

use super::*;
use crate::sys::{AttachType, Errno, ProgType};

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
