//! `system.network.{io,packets,errors,dropped}` from `/proc/net/dev`.
//!
//! `/proc/net/dev` lists the interfaces of the reader's network namespace: in a container,
//! reading the host's needs the host network namespace, not only `root_path`.

use super::{Context, ScrapeError, matches_any, now_nanos, parse_error, read, to_i64};
use crate::model::metrics::Metric;
use crate::model::{attr_str, sum_i64};
use procfs::FromRead;
use procfs::net::{DeviceStatus, InterfaceDeviceStatus};

pub(super) fn scrape(ctx: &Context<'_>) -> Result<Vec<Metric>, ScrapeError> {
    let path = ctx.path("proc/net/dev");
    let text = read(&path)?;
    let time = now_nanos();
    let InterfaceDeviceStatus(map) =
        InterfaceDeviceStatus::from_read(text.as_bytes()).map_err(|e| parse_error(&path, e))?;
    let mut devs: Vec<&DeviceStatus> = map
        .values()
        .filter(|d| !matches_any(&ctx.cfg.network.exclude_interfaces, &d.name))
        .collect();
    devs.sort_by(|a, b| a.name.cmp(&b.name));

    type Pick = fn(&DeviceStatus) -> (u64, u64);
    let families: [(&str, &str, &str, Pick); 4] = [
        (
            "system.network.io",
            "Bytes received and transmitted by each interface.",
            "By",
            |d| (d.recv_bytes, d.sent_bytes),
        ),
        (
            "system.network.packets",
            "Packets received and transmitted by each interface.",
            "{packets}",
            |d| (d.recv_packets, d.sent_packets),
        ),
        (
            "system.network.errors",
            "Receive and transmit errors of each interface.",
            "{errors}",
            |d| (d.recv_errs, d.sent_errs),
        ),
        (
            "system.network.dropped",
            "Packets dropped on receive and transmit by each interface.",
            "{packets}",
            |d| (d.recv_drop, d.sent_drop),
        ),
    ];
    Ok(families
        .iter()
        .map(|&(name, description, unit, pick)| {
            let mut points = Vec::with_capacity(devs.len() * 2);
            for d in &devs {
                let (receive, transmit) = pick(d);
                for (direction, v) in [("receive", receive), ("transmit", transmit)] {
                    let attrs = vec![
                        attr_str("device", d.name.clone()),
                        attr_str("direction", direction),
                    ];
                    points.push((attrs, to_i64(v)));
                }
            }
            sum_i64(name, description, unit, true, ctx.start, time, points)
        })
        .collect())
}
