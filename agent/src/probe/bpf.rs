//! BPF program types and maps that actually load on this kernel, probed with trial `bpf()` calls
//! of a trivial program (`r0 = 0; exit`); plus the uprobe and kprobe PMUs.

use std::path::Path;

use super::kernel::Facts;
use super::mounts::tracefs_dir;
use super::{ProbeItem, Status, item};
use crate::sys::btf::BtfKind;
use crate::sys::{AttachType, Host, LoadError, MapCreate, MapType, ProgLoad, ProgType};

const NEEDS_ROOT: &str = "not probed: needs root (CAP_BPF)";
/// Ring buffer size for the trial map: a power of two and a multiple of 4K, 16K and 64K pages.
const RINGBUF_BYTES: u32 = 256 * 1024;
const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe/type";
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";
const TP_BTF_TYPEDEF: &str = "btf_trace_sched_switch";
const FENTRY_TARGETS: [&str; 3] = ["do_nanosleep", "__x64_sys_getpid", "__arm64_sys_getpid"];
const LSM_HOOK: &str = "bpf_lsm_file_open";
const ACTIVE_LSMS: &str = "/sys/kernel/security/lsm";

/// Why a trial load did not succeed.
enum Failure {
    /// Not attempted: the process lacks CAP_BPF.
    NotPrivileged,
    /// Not attempted: the BTF attach target could not be resolved.
    NoBtfTarget(String),
    /// The kernel refused it.
    Refused(LoadError),
}

type Outcome = Result<String, Failure>;

fn describe(f: &Failure) -> String {
    match f {
        Failure::NotPrivileged => NEEDS_ROOT.to_owned(),
        Failure::NoBtfTarget(why) => format!("not probed: {why}"),
        Failure::Refused(e) => {
            let log = e
                .verifier_log
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if log.is_empty() {
                format!("load refused: {} (verifier log empty)", e.errno)
            } else {
                let short: String = log.chars().take(160).collect();
                format!("load refused: {}; verifier: {short}", e.errno)
            }
        }
    }
}

fn is_eperm(f: &Failure) -> bool {
    matches!(f, Failure::Refused(e) if e.errno.0 == libc::EPERM)
}

/// Resolves `(name, kind)` in vmlinux BTF to an id, or says why not.
fn btf_id(f: &Facts, names: &[&str], kind: BtfKind) -> Result<(u32, String), Failure> {
    let Some(btf) = f.btf() else {
        return Err(Failure::NoBtfTarget("no usable kernel BTF".into()));
    };
    names
        .iter()
        .find_map(|n| btf.id_by_name_kind(n, kind).map(|id| (id, (*n).to_owned())))
        .ok_or_else(|| {
            Failure::NoBtfTarget(format!("{kind:?} {} not in kernel BTF", names.join("/")))
        })
}

fn load(
    host: &dyn Host,
    f: &Facts,
    prog_type: ProgType,
    attach: Option<AttachType>,
    target: Option<(&[&str], BtfKind)>,
) -> Outcome {
    if !f.can_load_bpf {
        return Err(Failure::NotPrivileged);
    }
    let (attach_btf_id, what) = match target {
        Some((names, kind)) => {
            let (id, name) = btf_id(f, names, kind)?;
            (Some(id), format!(" (attach_btf_id {id} = {name})"))
        }
        None => (None, String::new()),
    };
    let req = ProgLoad {
        prog_type,
        expected_attach_type: attach,
        attach_btf_id,
    };
    host.bpf_prog_load(&req).map_err(Failure::Refused)?;
    let attach = attach.map_or(String::new(), |a| format!(" + {}", a.name()));
    Ok(format!("{}{attach} loads{what}", prog_type.name()))
}

/// An item from an outcome: `ok` with `ok_text`, else the failure's status and text.
fn outcome_item(name: &str, outcome: &Outcome, ok_text: &str, failed: (Status, &str)) -> ProbeItem {
    match outcome {
        Ok(detail) => item(name, Status::Ok, detail.clone(), ok_text),
        Err(fail) => {
            let status = if matches!(fail, Failure::NotPrivileged) {
                Status::Unavailable
            } else {
                failed.0
            };
            item(name, status, describe(fail), failed.1)
        }
    }
}

fn fallback_status(any_fallback: bool) -> Status {
    if any_fallback {
        Status::Degraded
    } else {
        Status::Unavailable
    }
}

fn uprobe_item(host: &dyn Host, f: &Facts) -> ProbeItem {
    let outcome = load(host, f, ProgType::Kprobe, None, None);
    let pmu = host.exists(Path::new(UPROBE_PMU));
    let ok_text = "uprobes on plugin SDK entry points (#[no_mangle] extern \"C\" fns)";
    let disabled = "plugin SDK uprobes are disabled";
    match (&outcome, pmu) {
        (Ok(detail), true) => item(
            "uprobe",
            Status::Ok,
            format!("{detail}; {UPROBE_PMU} present"),
            ok_text,
        ),
        (Ok(detail), false) => item(
            "uprobe",
            Status::Unavailable,
            format!("{detail}, but {UPROBE_PMU} is missing (no CONFIG_UPROBE_EVENTS)"),
            disabled,
        ),
        (Err(fail), _) => {
            let pmu = if pmu { "present" } else { "missing" };
            item(
                "uprobe",
                Status::Unavailable,
                format!("{}; uprobe PMU {pmu}", describe(fail)),
                disabled,
            )
        }
    }
}

fn kprobe_item(host: &dyn Host, f: &Facts) -> ProbeItem {
    let pmu = host.exists(Path::new(KPROBE_PMU));
    let events = match &f.mounts {
        Ok(mounts) => tracefs_dir(host, mounts)
            .map(|(dir, _)| dir.join("kprobe_events"))
            .filter(|p| host.exists(p)),
        Err(_) => None,
    };
    let not_needed =
        "srediag does not use kprobes: observers rely on tracepoints, raw_tp and tp_btf";
    match (pmu, events) {
        (true, _) => item(
            "kprobe",
            Status::Ok,
            format!("{KPROBE_PMU} present"),
            not_needed,
        ),
        (false, Some(p)) => item(
            "kprobe",
            Status::Ok,
            format!("{} present", p.display()),
            not_needed,
        ),
        (false, None) => item(
            "kprobe",
            Status::Degraded,
            format!("absent: no {KPROBE_PMU} and no tracefs kprobe_events (CONFIG_KPROBES off?)"),
            not_needed,
        ),
    }
}

fn lsm_item(host: &dyn Host, f: &Facts) -> ProbeItem {
    let outcome = load(
        host,
        f,
        ProgType::Lsm,
        Some(AttachType::LsmMac),
        Some((&[LSM_HOOK], BtfKind::Func)),
    );
    let active = host.read_to_string(Path::new(ACTIVE_LSMS)).ok();
    match outcome {
        Ok(detail) => match active.as_deref().map(str::trim) {
            Some(list) if !list.split(',').any(|l| l == "bpf") => item(
                "prog_lsm",
                Status::Degraded,
                format!("{detail}, but bpf is not in the active LSMs ({list})"),
                "BPF-LSM hooks would never run: srediag falls back to tp_btf/raw_tp/tracepoints",
            ),
            _ => item(
                "prog_lsm",
                Status::Ok,
                detail,
                "BPF-LSM hooks (file_open) can observe plugin file access",
            ),
        },
        Err(fail) => {
            let status = if matches!(fail, Failure::NotPrivileged) {
                Status::Unavailable
            } else {
                Status::Degraded
            };
            let srediag = if is_eperm(&fail) {
                "BPF-LSM refused (EPERM): srediag falls back to tp_btf/raw_tp/tracepoints"
            } else {
                "no BPF-LSM: srediag falls back to tp_btf/raw_tp/tracepoints"
            };
            item("prog_lsm", status, describe(&fail), srediag)
        }
    }
}

fn map_item(host: &dyn Host, f: &Facts) -> ProbeItem {
    let ok_text = "observer events stream through BPF ring buffers";
    let off = "no ring buffer (kernel 5.8+): eBPF event streams are disabled";
    if !f.can_load_bpf {
        return item("map_ringbuf", Status::Unavailable, NEEDS_ROOT, off);
    }
    let req = MapCreate {
        map_type: MapType::Ringbuf,
        key_size: 0,
        value_size: 0,
        max_entries: RINGBUF_BYTES,
    };
    match host.bpf_map_create(&req) {
        Ok(()) => item(
            "map_ringbuf",
            Status::Ok,
            format!("BPF_MAP_TYPE_RINGBUF of {RINGBUF_BYTES} bytes created"),
            ok_text,
        ),
        Err(e) => item(
            "map_ringbuf",
            Status::Unavailable,
            format!("map create refused: {e}"),
            off,
        ),
    }
}

fn stats_item(host: &dyn Host, f: &Facts) -> ProbeItem {
    let off = "observer overhead cannot be self-measured (no per-program run time)";
    if !f.can_load_bpf {
        return item("bpf_stats", Status::Unavailable, NEEDS_ROOT, off);
    }
    match host.bpf_enable_stats() {
        Ok(()) => item(
            "bpf_stats",
            Status::Ok,
            "BPF_ENABLE_STATS(BPF_STATS_RUN_TIME) accepted (and turned off again)",
            "per-program run time is switched on on demand only (it costs ~35-55 ns per run)",
        ),
        Err(e) => item(
            "bpf_stats",
            Status::Unavailable,
            format!("BPF_ENABLE_STATS refused: {e}"),
            off,
        ),
    }
}

pub(super) fn items(host: &dyn Host, f: &Facts) -> Vec<ProbeItem> {
    let tp = load(host, f, ProgType::Tracepoint, None, None);
    let raw = load(host, f, ProgType::RawTracepoint, None, None);
    let tp_btf = load(
        host,
        f,
        ProgType::Tracing,
        Some(AttachType::TraceRawTp),
        Some((&[TP_BTF_TYPEDEF], BtfKind::Typedef)),
    );
    let fentry = load(
        host,
        f,
        ProgType::Tracing,
        Some(AttachType::TraceFentry),
        Some((&FENTRY_TARGETS, BtfKind::Func)),
    );
    let perf = load(host, f, ProgType::PerfEvent, None, None);

    let fentry_text = match &fentry {
        Err(fail) if is_eperm(fail) => {
            "fentry refused (EPERM): observers use tp_btf/raw_tp instead"
        }
        _ => "no fentry/fexit: observers use tp_btf/raw_tp instead",
    };
    vec![
        outcome_item(
            "prog_tracepoint",
            &tp,
            "syscall, sched and signal observers via classic tracepoints",
            (
                fallback_status(raw.is_ok()),
                "classic tracepoints refused: syscall observers use raw_tp",
            ),
        ),
        outcome_item(
            "prog_raw_tp",
            &raw,
            "raw_tp hooks (sys_enter/sys_exit) without tracefs",
            (
                fallback_status(tp.is_ok()),
                "raw_tp refused: observers use classic tracepoints",
            ),
        ),
        outcome_item(
            "prog_tp_btf",
            &tp_btf,
            "per-plugin CPU via tp_btf sched_switch (typed task_struct access)",
            (
                fallback_status(raw.is_ok()),
                "tp_btf unavailable: per-plugin CPU via raw_tp sched_switch",
            ),
        ),
        uprobe_item(host, f),
        kprobe_item(host, f),
        outcome_item(
            "prog_fentry",
            &fentry,
            "fentry/fexit available for low-overhead kernel function hooks",
            (fallback_status(tp_btf.is_ok() || raw.is_ok()), fentry_text),
        ),
        lsm_item(host, f),
        outcome_item(
            "prog_perf_event",
            &perf,
            "perf_event programs for CPU sampling",
            (
                Status::Unavailable,
                "perf-event sampling programs are disabled",
            ),
        ),
        map_item(host, f),
        stats_item(host, f),
    ]
}
