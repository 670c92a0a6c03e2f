//! `system.cpu.load_average.{1m,5m,15m}` from `/proc/loadavg`.

use super::{Context, ScrapeError, now_nanos, parse_error, read};
use crate::model::gauge_f64;
use crate::model::metrics::Metric;
use procfs::{FromRead, LoadAverage};

pub(super) fn scrape(ctx: &Context<'_>) -> Result<Vec<Metric>, ScrapeError> {
    let path = ctx.path("proc/loadavg");
    let text = read(&path)?;
    let time = now_nanos();
    let load = LoadAverage::from_read(text.as_bytes()).map_err(|e| parse_error(&path, e))?;
    let windows = [("1m", load.one), ("5m", load.five), ("15m", load.fifteen)];
    let mut metrics = Vec::with_capacity(3);
    for (window, value) in windows {
        if !value.is_finite() || value < 0.0 {
            return Err(ScrapeError::Parse {
                path,
                reason: format!("{window} load average is {value}"),
            });
        }
        metrics.push(gauge_f64(
            &format!("system.cpu.load_average.{window}"),
            &format!("Average number of runnable or uninterruptible threads over {window}."),
            "1",
            time,
            vec![(Vec::new(), widen(value))],
        ));
    }
    Ok(metrics)
}

/// procfs parses load averages as f32; `0.52_f32 as f64` is 0.519999980926…, so go through the
/// shortest decimal form, which is what the kernel printed (two decimals).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}
