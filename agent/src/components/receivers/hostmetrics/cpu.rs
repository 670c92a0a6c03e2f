//! `system.cpu.time` and `system.cpu.logical.count` from `/proc/stat`.

use super::{Context, ScrapeError, now_nanos, parse_error, read, to_i64};
use crate::model::metrics::Metric;
use crate::model::{attr_str, gauge_i64, sum_f64};
use procfs::{CpuTime, ExplicitSystemInfo, FromReadSI, KernelStats};

pub(super) fn scrape(ctx: &Context<'_>) -> Result<Vec<Metric>, ScrapeError> {
    let path = ctx.path("proc/stat");
    let text = read(&path)?;
    let time = now_nanos();
    // Only the tick rate matters to the parser; times are converted below, not by procfs.
    let info = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: ctx.clk_tck,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    let stats =
        KernelStats::from_read(text.as_bytes(), &info).map_err(|e| parse_error(&path, e))?;
    // procfs keeps per-CPU lines in order but drops their names, which matter: offline CPUs
    // leave gaps (cpu0, cpu2). Its own test selects the same lines.
    let names: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| l.split_whitespace().next().unwrap_or("cpu"))
        .collect();
    if names.is_empty() || names.len() != stats.cpu_time.len() {
        let reason = format!(
            "{} per-cpu lines named, {} parsed",
            names.len(),
            stats.cpu_time.len()
        );
        return Err(ScrapeError::Parse { path, reason });
    }

    let tck = ctx.clk_tck as f64;
    let mut points = Vec::with_capacity(names.len() * 8);
    for (name, t) in names.iter().zip(&stats.cpu_time) {
        for (state, ticks) in states(t) {
            let attrs = vec![attr_str("cpu", *name), attr_str("state", state)];
            points.push((attrs, ticks as f64 / tck));
        }
    }
    Ok(vec![
        sum_f64(
            "system.cpu.time",
            "Seconds each logical CPU spent in each mode.",
            "s",
            true,
            ctx.start,
            time,
            points,
        ),
        gauge_i64(
            "system.cpu.logical.count",
            "Number of online logical CPUs.",
            "{cpu}",
            time,
            vec![(Vec::new(), to_i64(names.len() as u64))],
        ),
    ])
}

/// The ticks of each state the kernel reports (older kernels lack the later ones).
fn states(t: &CpuTime) -> Vec<(&'static str, u64)> {
    let mut v = vec![
        ("user", t.user),
        ("nice", t.nice),
        ("system", t.system),
        ("idle", t.idle),
    ];
    let optional = [
        ("iowait", t.iowait),
        ("irq", t.irq),
        ("softirq", t.softirq),
        ("steal", t.steal),
    ];
    v.extend(optional.into_iter().filter_map(|(s, x)| x.map(|x| (s, x))));
    v
}

/// The boot time (Unix seconds) from the `btime` line of `/proc/stat`.
pub(super) fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&t| t > 0)
}
