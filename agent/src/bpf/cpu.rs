//! Per-plugin on-CPU time from `sched_switch`: `srediag_cpu[plugin id]` (per-CPU, ns) holds the
//! finished slices, measured with the kernel's own `se.sum_exec_runtime` against a per-thread
//! baseline (`srediag_thr`), so they agree with rusage and the cgroup's accounting (steal time
//! excluded); a slice still running is in `srediag_cpust` (per-CPU: plugin id and since when) and
//! is added here by wall time, so a plugin spinning alone on a CPU (no context switch for
//! seconds) is still up to date.

use std::time::Duration;

use aya::maps::{MapData, MapError, PerCpuArray};

use super::abi::CpuState;

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns()`.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// On-CPU time of `plugin_id`: finished slices, then slices in progress. Read in this order so
/// a slice finishing between the two reads is missed by this call rather than counted twice: the
/// result never exceeds the truth (the metrics collector keeps the exported counter monotonic).
pub(super) fn time(
    cpu: &PerCpuArray<MapData, u64>,
    cpust: &PerCpuArray<MapData, CpuState>,
    plugin_id: u32,
) -> Result<Duration, MapError> {
    let finished: u64 = cpu.get(&plugin_id, 0)?.iter().sum();
    let states = cpust.get(&0, 0)?;
    let now = monotonic_ns();
    let running: u64 = states
        .iter()
        .filter(|s| s.plugin_id == plugin_id && now > s.since_ns)
        .map(|s| now - s.since_ns)
        .sum();
    Ok(Duration::from_nanos(finished.saturating_add(running)))
}
