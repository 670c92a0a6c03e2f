//! `system.disk.io`, `system.disk.operations` and `system.disk.io_time` from `/proc/diskstats`.
//!
//! Every block device and partition is reported, except RAM disks (`ram*`), loop devices
//! (`loop*`) and devices whose counters are all zero (never used since boot). Lines are parsed
//! one by one: a line that does not parse is skipped (and logged at debug), not the whole file.

use super::{Context, ScrapeError, now_nanos, read, to_i64};
use crate::model::metrics::Metric;
use crate::model::{attr_str, sum_f64, sum_i64};
use procfs::DiskStat;

/// diskstats counts sectors of 512 bytes, whatever the device's own sector size.
const SECTOR_BYTES: u64 = 512;

/// Device name prefixes never reported.
const SKIPPED_PREFIXES: [&str; 2] = ["ram", "loop"];

pub(super) fn scrape(ctx: &Context<'_>) -> Result<Vec<Metric>, ScrapeError> {
    let path = ctx.path("proc/diskstats");
    let text = read(&path)?;
    let time = now_nanos();
    let mut disks = Vec::new();
    let mut first_error = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match DiskStat::from_line(line) {
            Ok(d) => disks.push(d),
            Err(e) => {
                let e = super::parse_error(&path, e);
                tracing::debug!(error = %e, line, "skipping a /proc/diskstats line");
                first_error.get_or_insert(e);
            }
        }
    }
    if disks.is_empty()
        && let Some(e) = first_error
    {
        return Err(e);
    }
    disks.retain(|d| {
        !SKIPPED_PREFIXES.iter().any(|p| d.name.starts_with(p))
            && [
                d.reads,
                d.writes,
                d.sectors_read,
                d.sectors_written,
                d.time_in_progress,
            ]
            .iter()
            .any(|&c| c != 0)
    });

    let mut io = Vec::with_capacity(disks.len() * 2);
    let mut ops = Vec::with_capacity(disks.len() * 2);
    let mut io_time = Vec::with_capacity(disks.len());
    for d in &disks {
        let dir = |direction: &str| {
            vec![
                attr_str("device", d.name.clone()),
                attr_str("direction", direction),
            ]
        };
        io.push((
            dir("read"),
            to_i64(d.sectors_read.saturating_mul(SECTOR_BYTES)),
        ));
        io.push((
            dir("write"),
            to_i64(d.sectors_written.saturating_mul(SECTOR_BYTES)),
        ));
        ops.push((dir("read"), to_i64(d.reads)));
        ops.push((dir("write"), to_i64(d.writes)));
        io_time.push((
            vec![attr_str("device", d.name.clone())],
            d.time_in_progress as f64 / 1000.0,
        ));
    }
    Ok(vec![
        sum_i64(
            "system.disk.io",
            "Bytes read from and written to each disk.",
            "By",
            true,
            ctx.start,
            time,
            io,
        ),
        sum_i64(
            "system.disk.operations",
            "Read and write operations completed on each disk.",
            "{operations}",
            true,
            ctx.start,
            time,
            ops,
        ),
        sum_f64(
            "system.disk.io_time",
            "Time each disk had at least one I/O in progress.",
            "s",
            true,
            ctx.start,
            time,
            io_time,
        ),
    ])
}
