//! `system.memory.usage` and `system.memory.utilization` from `/proc/meminfo`.
//!
//! The six states partition `MemTotal`, so they sum to it exactly:
//!
//! - `free` = `MemFree`, `buffered` = `Buffers`, `cached` = `Cached` (page cache, tmpfs and shmem
//!   included), `slab_reclaimable` = `SReclaimable`, `slab_unreclaimable` = `SUnreclaim`;
//! - `used` = `MemTotal` − all of the above (saturating at 0).
//!
//! The OpenTelemetry Collector (through gopsutil) computes `used` as `MemTotal − MemFree − Buffers
//! − Cached − SReclaimable`, which still contains `SUnreclaim`, so its states overlap and sum to
//! more than `MemTotal`. Here, OTel's `used` is `used + slab_unreclaimable`.

use super::{Context, ScrapeError, now_nanos, read, to_i64};
use crate::model::metrics::Metric;
use crate::model::{attr_str, gauge_f64, sum_i64};
use std::collections::HashMap;

pub(super) fn scrape(ctx: &Context<'_>) -> Result<Vec<Metric>, ScrapeError> {
    let path = ctx.path("proc/meminfo");
    let text = read(&path)?;
    let time = now_nanos();
    let fields = parse_meminfo(&text);
    let field = |k: &str| fields.get(k).copied();
    let missing = |k: &str| ScrapeError::Parse {
        path: path.clone(),
        reason: format!("no {k} line"),
    };
    let total = field("MemTotal").ok_or_else(|| missing("MemTotal"))?;
    let free = field("MemFree").ok_or_else(|| missing("MemFree"))?;
    let others = [
        ("free", free),
        ("buffered", field("Buffers").unwrap_or(0)),
        ("cached", field("Cached").unwrap_or(0)),
        ("slab_reclaimable", field("SReclaimable").unwrap_or(0)),
        ("slab_unreclaimable", field("SUnreclaim").unwrap_or(0)),
    ];
    let not_used = others
        .iter()
        .fold(0u64, |acc, (_, v)| acc.saturating_add(*v));
    let mut states = vec![("used", total.saturating_sub(not_used))];
    states.extend(others);

    let usage = states
        .iter()
        .map(|&(s, v)| (vec![attr_str("state", s)], to_i64(v)))
        .collect();
    let mut metrics = vec![sum_i64(
        "system.memory.usage",
        "Bytes of memory in use, by state; the states sum to the total memory.",
        "By",
        false,
        ctx.start,
        time,
        usage,
    )];
    if total > 0 {
        let utilization = states
            .iter()
            .map(|&(s, v)| (vec![attr_str("state", s)], v as f64 / total as f64))
            .collect();
        metrics.push(gauge_f64(
            "system.memory.utilization",
            "Fraction of memory in each state.",
            "1",
            time,
            utilization,
        ));
    }
    Ok(metrics)
}

/// The fields of `/proc/meminfo`, in bytes (`kB` is KiB, as the kernel means it; values without
/// a unit, as `HugePages_Total`, are kept as they are). Lines that do not parse are skipped.
pub(super) fn parse_meminfo(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            let value = match words.next() {
                None => value,
                Some("kB") => value.checked_mul(1024)?,
                Some(_) => return None,
            };
            Some((key.trim(), value))
        })
        .collect()
}
