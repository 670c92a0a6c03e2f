//! `cargo xtask bench swap`: hot swap under load, in one run of the release agent (as root).
//! OTLP/HTTP records with sequence numbers flow `otlp → plugin/swp (a pass-through processor) →
//! file` at a paced target rate; after a steady-state window the plugin is swapped N times
//! (`plugin_upgrade` on the admin socket, one every `--gap`). Reports the swap duration p50/p99
//! (the agent's own measure, request → old one stopped), records lost and duplicated (from the
//! sequence numbers in the file), and the throughput dip: records exported per second while a
//! swap runs, and in its worst 100 ms, as ratios to the steady state. Prints a Markdown table
//! for docs/benchmarks.md (it does not write that file).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::httpc::{self, Conn};
use crate::{is_root, root};

#[derive(clap::Args)]
pub struct SwapArgs {
    /// Target load in log records per second.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Swaps measured.
    #[arg(long, default_value_t = 100)]
    swaps: usize,
    /// Log records per OTLP request.
    #[arg(long, default_value_t = 1000)]
    records: u64,
    /// Sending threads (one connection each).
    #[arg(long, default_value_t = 2)]
    connections: u64,
    /// Seconds of steady state measured before the swaps.
    #[arg(long, default_value_t = 10)]
    steady_seconds: u64,
    /// Milliseconds between the end of one swap and the start of the next.
    #[arg(long, default_value_t = 500)]
    gap_ms: u64,
}

/// Kills the agent on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One admin request, waiting up to `patience` for its answer; its `data`.
fn admin(socket: &Path, req: &str, patience: Duration) -> Result<serde_json::Value> {
    let mut s =
        UnixStream::connect(socket).with_context(|| format!("connect {}", socket.display()))?;
    s.set_read_timeout(Some(patience))?;
    s.write_all(req.as_bytes())?;
    s.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line)?;
    if v["ok"] != true {
        bail!("admin request failed: {line}");
    }
    Ok(v["data"].clone())
}

fn exported(telemetry: SocketAddr) -> Result<u64> {
    let (st, body) = httpc::get(telemetry, "/metrics")?;
    ensure!(st == 200, "GET /metrics: {st}");
    let want = "srediag_exporter_sent_items_total{exporter=\"file\",signal=\"logs\"} ";
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(want))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

fn metric(telemetry: SocketAddr, name: &str, label: &str) -> Result<f64> {
    let (_, body) = httpc::get(telemetry, "/metrics")?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn body(first: u64, n: u64) -> Vec<u8> {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    };
    let log_records = (first..first + n)
        .map(|q| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("swap-bench-{q}"))),
            }),
            attributes: vec![kv("test.seq", any_value::Value::IntValue(q as i64))],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Counts of each `test.seq` in the file exporter's output.
fn seq_counts(path: &Path) -> Result<HashMap<u64, u32>> {
    const KEY: &[u8] = br#""key":"test.seq","value":{"intValue":""#;
    let mut counts = HashMap::new();
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    for line in BufReader::with_capacity(1 << 20, f).split(b'\n') {
        let line = line?;
        let mut rest = &line[..];
        while let Some(i) = rest.windows(KEY.len()).position(|w| w == KEY) {
            rest = &rest[i + KEY.len()..];
            let end = rest.iter().position(|b| *b == b'"').unwrap_or(0);
            let q: u64 = std::str::from_utf8(&rest[..end])?.parse()?;
            *counts.entry(q).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// What this machine is (for docs/benchmarks.md).
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb >> 20);
    format!(
        "{cpu}, {cores} vCPUs, {mem_gib} GiB, Linux {}",
        kernel.trim()
    )
}

pub fn swap(a: &SwapArgs) -> Result<()> {
    ensure!(is_root(), "bench swap runs plugins: run it as root");
    let root = root();
    let st = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "srediag",
            "-p",
            "srediag-test-plugins",
        ])
        .current_dir(&root)
        .status()?;
    ensure!(st.success(), "release build failed");
    let bin = root.join("target/release/srediag");
    let plugin = root.join("target/release/srediag-test-plugin");
    let dir = tempfile::TempDir::new()?;
    let (otlp, tel) = (free_port()?, free_port()?);
    let socket = dir.path().join("admin.sock");
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  file:
    path: {out}
    rotation: {{max_megabytes: 100000}}
plugins:
  swp:
    path: {plugin}
    type: processor
    config: {{pass: keep}}
    shutdown_grace: 2s
service:
  admin:
    socket: {socket}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
    logs: {{level: warn}}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [plugin/swp]
      exporters: [file]
",
            out = out.display(),
            plugin = plugin.display(),
            socket = socket.display(),
        ),
    )?;
    let policy = dir.path().join("trust.yaml");
    std::fs::write(&policy, "allow_unsigned: true\n")?;
    let agent = Agent(
        Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--trust-policy")
            .arg(&policy)
            .arg("--plugin-state")
            .arg(dir.path().join("plugin-versions.json"))
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log"))?)
            .spawn()
            .context("spawn the release agent")?,
    );
    let telemetry = SocketAddr::from(([127, 0, 0, 1], tel));
    let otlp_addr = SocketAddr::from(([127, 0, 0, 1], otlp));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = admin(&socket, r#"{"cmd":"plugin_list"}"#, Duration::from_secs(5))
            .ok()
            .is_some_and(|l| l[0]["state"] == "ready");
        if ready {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the plugin is not ready after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The load: paced sending threads; refused requests (backpressure) are sent again.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..a.connections)
        .map(|t| {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            let (rate, per, threads) = (a.rate, a.records, a.connections);
            std::thread::spawn(move || -> Result<Vec<(u64, u64)>> {
                let mut conn = Conn::connect(otlp_addr)?;
                let mut blocks = Vec::new();
                let mut k = t;
                while !stop.load(Ordering::Relaxed) {
                    let due = started + Duration::from_secs_f64((k * per) as f64 / rate as f64);
                    if let Some(w) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(w);
                    }
                    let b = body(k * per, per);
                    let (st, _) =
                        conn.request("POST", "/v1/logs", Some("application/x-protobuf"), &b)?;
                    match st {
                        200 => {
                            accepted.fetch_add(per, Ordering::Relaxed);
                            blocks.push((k * per, per));
                            k += threads;
                        }
                        429 | 503 => std::thread::sleep(Duration::from_millis(5)),
                        other => bail!("the receiver answered {other}"),
                    }
                }
                Ok(blocks)
            })
        })
        .collect();
    // Exported records sampled every 20 ms: the throughput timeline.
    let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let sampler = {
        let (stop, samples) = (stop.clone(), samples.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = exported(telemetry) {
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((started.elapsed().as_secs_f64(), n));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    println!(
        "bench swap: {} records/s target; 3 s warm-up, {} s steady state",
        a.rate, a.steady_seconds
    );
    std::thread::sleep(Duration::from_secs(3));
    let steady = (started.elapsed().as_secs_f64(), exported(telemetry)?);
    std::thread::sleep(Duration::from_secs(a.steady_seconds));
    let steady_end = (started.elapsed().as_secs_f64(), exported(telemetry)?);
    let steady_rate = (steady_end.1 - steady.1) as f64 / (steady_end.0 - steady.0);
    println!(
        "bench swap: steady state {steady_rate:.0} records/s; {} swaps",
        a.swaps
    );
    let mut durations = Vec::new();
    let mut windows = Vec::new();
    for n in 0..a.swaps {
        let t0 = started.elapsed().as_secs_f64();
        let r = admin(
            &socket,
            r#"{"cmd":"plugin_upgrade","name":"swp"}"#,
            Duration::from_secs(120),
        )?;
        let t1 = started.elapsed().as_secs_f64();
        ensure!(r["result"] == "ok", "swap {n}: {r}");
        durations.push(r["duration_ms"].as_f64().unwrap_or(f64::NAN));
        windows.push((t0, t1));
        std::thread::sleep(Duration::from_millis(a.gap_ms));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let mut blocks = Vec::new();
    for s in senders {
        blocks.extend(
            s.join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))??,
        );
    }
    let sent = accepted.load(Ordering::Relaxed);
    let ran = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while exported(telemetry)? < sent {
        ensure!(
            Instant::now() < deadline,
            "only {} of {sent} records exported after 120 s",
            exported(telemetry)?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let counted_dup = metric(
        telemetry,
        "srediag_plugin_ipc_duplicate_records_total",
        "plugin=\"swp\"",
    )?;
    let redelivered = metric(
        telemetry,
        "srediag_plugin_ipc_redelivered_batches_total",
        "plugin=\"swp\"",
    )?;
    drop(agent);
    let counts = seq_counts(&out)?;
    let lost = blocks
        .iter()
        .flat_map(|(first, n)| *first..first + n)
        .filter(|q| !counts.contains_key(q))
        .count();
    let in_file: u64 = counts.values().map(|c| u64::from(*c)).sum();
    let duplicates = in_file.saturating_sub(counts.len() as u64);

    // The dip: exported records per second inside the swap windows, and the worst 100 ms bucket
    // of any swap, against the steady state.
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let at =
        |t: f64| -> Option<(f64, u64)> { samples.iter().rev().find(|(s, _)| *s <= t).copied() };
    let (mut in_swaps, mut swap_time) = (0u64, 0.0);
    let mut worst = f64::INFINITY;
    for (t0, t1) in &windows {
        if let (Some(a0), Some(a1)) = (at(*t0), at(*t1))
            && a1.0 > a0.0
        {
            in_swaps += a1.1 - a0.1;
            swap_time += a1.0 - a0.0;
        }
        let mut t = *t0;
        while t + 0.1 <= *t1 + 0.1 {
            if let (Some(b0), Some(b1)) = (at(t), at(t + 0.1))
                && b1.0 > b0.0
            {
                worst = worst.min((b1.1 - b0.1) as f64 / (b1.0 - b0.0));
            }
            t += 0.1;
        }
    }
    let swap_rate = in_swaps as f64 / swap_time.max(1e-9);
    let (p50, p99) = (
        percentile(&mut durations, 0.5),
        percentile(&mut durations, 0.99),
    );
    let max = percentile(&mut durations, 1.0);
    println!("\nMachine: {}", machine());
    println!(
        "Load: {} records/s target in requests of {} over {} connections; {sent} records accepted in {ran:.1} s ({:.0}/s)\n",
        a.rate,
        a.records,
        a.connections,
        sent as f64 / ran
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| swap duration p50 / p99 / max ({} swaps, request → old incarnation stopped) | {p50:.0} ms / {p99:.0} ms / {max:.0} ms |",
        a.swaps
    );
    println!("| records lost | {lost} of {sent} |");
    println!(
        "| duplicates per swap (in the file; counted by the agent) | {:.2} ({duplicates} in all; counted {counted_dup}) |",
        duplicates as f64 / a.swaps as f64
    );
    println!("| batches re-delivered | {redelivered} |");
    println!("| steady-state throughput (exported) | {steady_rate:.0} records/s |");
    println!(
        "| throughput while a swap runs / steady state | {:.2} ({swap_rate:.0} records/s) |",
        swap_rate / steady_rate
    );
    println!(
        "| worst 100 ms during a swap / steady state | {:.2} |",
        worst / steady_rate
    );
    ensure!(lost == 0, "{lost} records lost");
    Ok(())
}
