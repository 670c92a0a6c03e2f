//! `srediag top`: a refreshing per-plugin table from the running agent, with what the kernel
//! observed (eBPF): CPU% (on-CPU time growth between refreshes, 100% = one CPU), RSS, seccomp
//! violations, OOM kills, and IPC latency p50/p99 of sampled batches per direction
//! (`to_plugin/from_plugin`, from the ipc_latency observer's log2 histograms since the agent
//! started; `-` without samples: sampling off or the observer down). `-o json` prints one JSON
//! object per refresh (a line each), for programs.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Output;
use super::args::TopArgs;
use super::exit::{CmdResult, FAILURE, Failure, ok};
use super::output::table;
use super::plugin::{call, cell, human_bytes};
use crate::plugins::admin::AdminRequest;

/// `{to_plugin, from_plugin}` of one IPC quantile (`null` without any sample).
fn ipc(kernel: &Value, q: &str) -> Value {
    let dirs = &kernel["ipc"];
    let to = &dirs["to_plugin"][q];
    let from = &dirs["from_plugin"][q];
    if to.is_null() && from.is_null() {
        return Value::Null;
    }
    json!({ "to_plugin": to, "from_plugin": from })
}

/// `to/from` latency cell: `12.3µs/40.1µs`.
fn ipc_cell(v: &Value) -> String {
    if v.is_null() {
        return "-".into();
    }
    let one = |x: &Value| match x.as_f64() {
        None => "-".to_owned(),
        Some(s) if s >= 1e-3 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{:.1}µs", s * 1e6),
    };
    format!("{}/{}", one(&v["to_plugin"]), one(&v["from_plugin"]))
}

/// One refresh: per plugin, its row values.
fn sample(
    data: &Value,
    prev: &BTreeMap<String, (f64, Instant)>,
    now: Instant,
) -> (Vec<Value>, BTreeMap<String, (f64, Instant)>) {
    let mut rows = Vec::new();
    let mut next = BTreeMap::new();
    for p in data.as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let k = &p["kernel"];
        let cpu = k["cpu_seconds"].as_f64();
        let cpu_pct = match (cpu, prev.get(&name)) {
            (Some(c), Some((pc, pt))) if now > *pt => {
                Some(((c - pc).max(0.0) / (now - *pt).as_secs_f64()) * 100.0)
            }
            _ => None,
        };
        if let Some(c) = cpu {
            next.insert(name.clone(), (c, now));
        }
        rows.push(json!({
            "plugin": name,
            "state": p["state"],
            "pid": p["pid"],
            "cpu_percent": cpu_pct,
            "cpu_seconds": cpu,
            "rss_bytes": k["rss_bytes"],
            "violations": k["violations"],
            "oom_kills": k["oom_kills"],
            "ipc_p50_seconds": ipc(k, "p50_seconds"),
            "ipc_p99_seconds": ipc(k, "p99_seconds"),
        }));
    }
    (rows, next)
}

fn render(rows: &[Value], interval: f64) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                cell(&r["plugin"]),
                cell(&r["state"]),
                cell(&r["pid"]),
                r["cpu_percent"]
                    .as_f64()
                    .map(|c| format!("{c:.1}"))
                    .unwrap_or_else(|| "-".into()),
                human_bytes(&r["rss_bytes"]),
                cell(&r["violations"]),
                cell(&r["oom_kills"]),
                ipc_cell(&r["ipc_p50_seconds"]),
                ipc_cell(&r["ipc_p99_seconds"]),
            ]
        })
        .collect();
    format!(
        "srediag top — every {interval}s, kernel-observed (eBPF); IPC latency to/from the plugin, sampled batches since start\n\n{}",
        table(
            &[
                "PLUGIN",
                "STATE",
                "PID",
                "CPU%",
                "RSS",
                "VIOLATIONS",
                "OOM",
                "IPC_P50",
                "IPC_P99"
            ],
            &body
        )
    )
}

/// Refreshes until interrupted (or `--iterations`).
pub fn execute(args: &TopArgs, out: Output) -> CmdResult {
    if !(args.interval.is_finite() && args.interval >= 0.05) {
        return Err(Failure::new(
            FAILURE,
            "--interval must be at least 0.05 seconds",
        ));
    }
    let tty = std::io::stdout().is_terminal();
    let mut prev = BTreeMap::new();
    let mut n = 0u64;
    loop {
        let data = call(&args.socket.socket, &AdminRequest::PluginList)?;
        let now = Instant::now();
        let (rows, next) = sample(&data, &prev, now);
        prev = next;
        let text = match out {
            Output::Table => {
                let t = render(&rows, args.interval);
                if tty {
                    format!("\x1b[H\x1b[2J{t}")
                } else {
                    format!("{t}\n")
                }
            }
            _ => format!("{}\n", json!({ "plugins": rows })),
        };
        let mut o = std::io::stdout().lock();
        if o.write_all(text.as_bytes())
            .and_then(|_| o.flush())
            .is_err()
        {
            return ok(); // stdout closed
        }
        drop(o);
        n += 1;
        if args.iterations.is_some_and(|max| n >= max) {
            return ok();
        }
        std::thread::sleep(Duration::from_secs_f64(args.interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_two_samples() {
        let t0 = Instant::now();
        let d = json!([{"name": "a", "state": "ready", "pid": 7, "kernel": {"cpu_seconds": 1.0, "rss_bytes": 1048576, "violations": 2}}]);
        let (rows, prev) = sample(&d, &BTreeMap::new(), t0);
        assert!(rows[0]["cpu_percent"].is_null());
        let d2 = json!([{"name": "a", "kernel": {"cpu_seconds": 1.5}}]);
        let (rows, _) = sample(&d2, &prev, t0 + Duration::from_secs(1));
        let pct = rows[0]["cpu_percent"].as_f64().unwrap();
        assert!((pct - 50.0).abs() < 1e-6, "{pct}");
        assert!(render(&rows, 1.0).contains("IPC_P50"));
    }

    #[test]
    fn ipc_columns_from_the_histogram_summary() {
        let d = json!([{"name": "a", "kernel": {"ipc": {
            "to_plugin": {"count": 3, "p50_seconds": 0.000012, "p99_seconds": 0.002},
            "from_plugin": {"count": 3, "p50_seconds": 0.00004, "p99_seconds": null}}}}]);
        let (rows, _) = sample(&d, &BTreeMap::new(), Instant::now());
        assert_eq!(rows[0]["ipc_p50_seconds"]["to_plugin"], json!(0.000012));
        let t = render(&rows, 1.0);
        assert!(t.contains("12.0µs/40.0µs"), "{t}");
        assert!(t.contains("2.0ms/-"), "{t}");
        let (rows, _) = sample(
            &json!([{"name": "b", "kernel": {}}]),
            &BTreeMap::new(),
            Instant::now(),
        );
        assert!(rows[0]["ipc_p50_seconds"].is_null());
    }
}
