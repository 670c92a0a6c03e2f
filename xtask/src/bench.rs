//! `cargo xtask bench pipeline`: the release agent under an OTLP/HTTP load (records/s, CPU-ns per
//! record, request latency; the output file's record count must equal what was sent), then its
//! idle footprint with the embedded default config (RSS and CPU over a window). Prints a table and
//! a Markdown snippet for docs/benchmarks.md (it does not write that file).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::httpc::{self, Conn};
use crate::{cargo, is_root, root, run_cmd};

#[derive(clap::Args)]
pub struct PipelineArgs {
    /// Number of OTLP/HTTP requests.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Log records per request.
    #[arg(long, default_value_t = 100)]
    records: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Filler bytes in each record's body.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Length of the idle-footprint window in seconds (0 skips the idle part).
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
}

/// SIGKILLs the agent on drop unless it already exited.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    fn wait_ready(&mut self, telemetry: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "srediag exited before it was ready ({st}); its log:\n{}",
                    tail(&self.log)
                );
            }
            if matches!(httpc::get(telemetry, "/-/ready"), Ok((200, _))) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "srediag not ready on {telemetry} after 30 s; log:\n{}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn stop(&mut self) -> Result<()> {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait()? {
                ensure!(
                    st.success(),
                    "srediag exited with {st} after SIGTERM; log:\n{}",
                    tail(&self.log)
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "srediag did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn spawn(bin: &Path, args: &[&str], dir: &Path) -> Result<Proc> {
    let log = dir.join("agent.log");
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("agent.stdout"))?)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    Ok(Proc { child, log })
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// utime + stime of `pid` in nanoseconds (all threads, exited ones included).
fn cpu_ns(pid: i32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &s[s.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc_pid_stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Ok(ticks * 1_000_000_000 / hz)
}

fn rss_bytes(pid: i32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?;
    Ok(kb * 1024)
}

/// Sum of the samples of `name` whose label set contains every `k="v"` of `labels`.
fn scrape(telemetry: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let (st, body) = httpc::get(telemetry, "/metrics")?;
    ensure!(st == 200, "GET /metrics: {st}");
    let mut sum = 0.0;
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            sum += rest
                .rsplit(' ')
                .next()
                .unwrap_or("0")
                .parse::<f64>()
                .unwrap_or(0.0);
        }
    }
    Ok(sum)
}

fn request_body(req: usize, records: usize, filler: &str) -> Vec<u8> {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    };
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "bench-{req}-{i} {filler}"
                ))),
            }),
            attributes: vec![
                kv(
                    "bench.seq",
                    any_value::Value::IntValue(i64::try_from(req * records + i).unwrap_or(0)),
                ),
                kv("bench.kind", any_value::Value::StringValue("load".into())),
            ],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("srediag-bench".into()),
                )],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "xtask-bench".into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Log records in every `out*` file of `dir` (the file exporter's output and its rotations).
fn count_output_records(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("out"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", p.display(), n + 1))?;
            for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    total += sl["logRecords"].as_array().map_or(0, Vec::len) as u64;
                }
            }
        }
    }
    Ok(total)
}

struct LoadResult {
    records: u64,
    ingest: Duration,
    end_to_end: Duration,
    cpu_ns: u64,
    p50: Duration,
    p99: Duration,
    max_rss: u64,
}

fn load(bin: &Path, a: &PipelineArgs) -> Result<LoadResult> {
    let tmp = tempfile::TempDir::new()?;
    let (otlp, tel) = (free_port()?, free_port()?);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir)?;
    let config = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    send_batch_size: 8192
    timeout: 200ms
exporters:
  file:
    path: {out}
    rotation: {{ max_megabytes: 100000, max_backups: 1 }}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
    logs: {{ level: warn, format: text }}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
",
        out = out_dir.join("out.jsonl").display()
    );
    let cfg = tmp.path().join("bench.yaml");
    std::fs::write(&cfg, &config)?;
    let telemetry = SocketAddr::from(([127, 0, 0, 1], tel));
    let otlp_addr = SocketAddr::from(([127, 0, 0, 1], otlp));
    let mut agent = spawn(
        bin,
        &["run", "--config", cfg.to_str().context("utf-8 path")?],
        tmp.path(),
    )?;
    agent.wait_ready(telemetry)?;

    println!(
        "bench: encoding {} requests × {} records",
        a.requests, a.records
    );
    let filler = "x".repeat(a.body_bytes);
    let bodies: Vec<Vec<u8>> = (0..a.requests)
        .map(|r| request_body(r, a.records, &filler))
        .collect();
    let total = (a.requests * a.records) as u64;
    let next = AtomicUsize::new(0);
    let pid = agent.pid();
    println!("bench: sending over {} connections", a.connections);
    let cpu0 = cpu_ns(pid)?;
    let t0 = Instant::now();
    let done = AtomicBool::new(false);
    let peak_rss = AtomicU64::new(rss_bytes(pid)?);
    let (per_thread, ingest, drained) = std::thread::scope(|s| {
        // RSS sampler for the whole loaded window (sending and draining).
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Ok(r) = rss_bytes(pid) {
                    peak_rss.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let handles: Vec<_> = (0..a.connections.max(1))
            .map(|_| {
                s.spawn(|| -> Result<Vec<Duration>> {
                    let mut conn = Conn::connect(otlp_addr)?;
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok(lat);
                        };
                        let t = Instant::now();
                        let (st, resp) =
                            conn.request("POST", "/v1/logs", Some("application/x-protobuf"), body)?;
                        lat.push(t.elapsed());
                        ensure!(
                            st == 200,
                            "request {i}: HTTP {st}: {}",
                            String::from_utf8_lossy(&resp)
                        );
                    }
                })
            })
            .collect();
        let results: Vec<Result<Vec<Duration>>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("sender panicked")))
            })
            .collect();
        let ingest = t0.elapsed();
        // End to end: until the exporter reports every record written (polled every 10 ms; the
        // scrapes' own cost is part of the measured CPU, well under 1 %).
        let drained = (|| -> Result<Duration> {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let sent = scrape(
                    telemetry,
                    "srediag_exporter_sent_items_total",
                    &[("exporter", "file"), ("signal", "logs")],
                )?;
                if sent as u64 >= total {
                    return Ok(t0.elapsed());
                }
                ensure!(
                    Instant::now() < deadline,
                    "only {sent} of {total} records exported after 120 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        })();
        done.store(true, Ordering::Relaxed);
        (results, ingest, drained)
    });
    let mut lat = Vec::new();
    for r in per_thread {
        lat.extend(r?);
    }
    let end_to_end = drained?;
    let max_rss = peak_rss.load(Ordering::Relaxed);
    let cpu = cpu_ns(pid)? - cpu0;
    agent.stop()?;
    let written = count_output_records(&out_dir)?;
    ensure!(
        written == total,
        "the output holds {written} records, {total} were sent"
    );
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(LoadResult {
        records: total,
        ingest,
        end_to_end,
        cpu_ns: cpu,
        p50: pct(0.50),
        p99: pct(0.99),
        max_rss,
    })
}

struct IdleResult {
    secs: u64,
    rss_min: u64,
    rss_avg: u64,
    rss_max: u64,
    cpu_pct: f64,
}

fn idle(bin: &Path, secs: u64) -> Result<IdleResult> {
    ensure!(
        is_root(),
        "the idle footprint runs the embedded default config, which needs root"
    );
    let tmp = tempfile::TempDir::new()?;
    let mut agent = spawn(bin, &["run"], tmp.path())?;
    // The embedded default's self-telemetry address.
    agent.wait_ready(SocketAddr::from(([127, 0, 0, 1], 9464)))?;
    let pid = agent.pid();
    println!("bench: idle: 5 s warm-up, then {secs} s of samples");
    std::thread::sleep(Duration::from_secs(5));
    let cpu0 = cpu_ns(pid)?;
    let t0 = Instant::now();
    let mut rss = Vec::new();
    for i in 1..=secs {
        rss.push(rss_bytes(pid)?);
        if let Some(st) = agent.child.try_wait()? {
            bail!(
                "srediag exited during the idle window ({st}); log:\n{}",
                tail(&agent.log)
            );
        }
        // Sample once a second, on schedule.
        let next = t0 + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let cpu = cpu_ns(pid)? - cpu0;
    let wall = t0.elapsed();
    agent.stop()?;
    let n = rss.len().max(1) as u64;
    Ok(IdleResult {
        secs,
        rss_min: rss.iter().copied().min().unwrap_or(0),
        rss_avg: rss.iter().sum::<u64>() / n,
        rss_max: rss.iter().copied().max().unwrap_or(0),
        cpu_pct: cpu as f64 / wall.as_nanos() as f64 * 100.0,
    })
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = read("/proc/meminfo");
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "Linux {kernel}, {cpus} CPUs ({model}), {:.1} GiB RAM",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

fn stdout_of(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(String::new, |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

pub fn pipeline(a: &PipelineArgs) -> Result<()> {
    ensure!(
        a.requests > 0 && a.records > 0,
        "--requests and --records must be positive"
    );
    run_cmd(cargo().args(["build", "--release", "-p", "srediag"]))?;
    let bin = root().join("target/release/srediag");
    let l = load(&bin, a)?;
    let idle = if a.idle_seconds > 0 {
        Some(idle(&bin, a.idle_seconds)?)
    } else {
        None
    };

    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    let rate = |d: Duration| l.records as f64 / d.as_secs_f64();
    let mut rows = vec![
        (
            "load".to_string(),
            format!(
                "{} requests × {} records ({} B filler), {} connections",
                a.requests, a.records, a.body_bytes, a.connections
            ),
        ),
        ("records sent = written".into(), l.records.to_string()),
        (
            "ingest rate (until the last 200)".into(),
            format!("{:.0} records/s", rate(l.ingest)),
        ),
        (
            "end-to-end rate (until all written)".into(),
            format!("{:.0} records/s", rate(l.end_to_end)),
        ),
        (
            "agent CPU per record".into(),
            format!("{:.0} ns", l.cpu_ns as f64 / l.records as f64),
        ),
        (
            "request latency p50 / p99".into(),
            format!(
                "{:.2} ms / {:.2} ms",
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3
            ),
        ),
        (
            "peak RSS under load".into(),
            format!("{:.1} MiB", mib(l.max_rss)),
        ),
    ];
    if let Some(i) = &idle {
        rows.push((
            format!("idle RSS min / avg / max ({} s)", i.secs),
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                mib(i.rss_min),
                mib(i.rss_avg),
                mib(i.rss_max)
            ),
        ));
        rows.push((
            format!("idle CPU ({} s)", i.secs),
            format!("{:.2} % of one core", i.cpu_pct),
        ));
    }
    println!();
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in &rows {
        println!("{k:<w$}  {v}");
    }
    let date = stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d"]));
    let mut commit =
        stdout_of(
            Command::new("git")
                .arg("-C")
                .arg(root())
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let dirty = !stdout_of(Command::new("git").arg("-C").arg(root()).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_empty();
    if dirty && !commit.is_empty() {
        commit.push_str("-dirty");
    }
    println!("\n---- Markdown for docs/benchmarks.md ----");
    println!(
        "### Pipeline: OTLP/HTTP → batch → file ({date}, commit {})\n",
        if commit.is_empty() { "?" } else { &commit }
    );
    println!(
        "Machine: {}. Release build, `cargo xtask bench pipeline`.\n",
        machine()
    );
    println!("| measure | value |\n|---|---|");
    for (k, v) in &rows {
        println!("| {k} | {v} |");
    }
    println!("---- end ----");
    Ok(())
}
