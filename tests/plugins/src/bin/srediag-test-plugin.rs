//! A well-behaved plugin whose misbehaviour is scripted by its configuration, for lifecycle
//! tests: `{"mode": "serve" | "crash" | "hang" | "oom" | "spin" | "spam" | "ignore_shutdown" |
//! "violate" | "grow", "after_ms": N, "type": "processor"}`.
//!
//! - `violate`: `count` calls of `mkdir` (refused by the processor profile) — or, with
//!   `seconds`, as many as it can make in that time (a violation flood), on `threads` threads
//!   (default 1) — then prints `violations done eperm=<calls that returned EPERM> of <calls>`
//!   and keeps serving.
//! - `grow`: touches `mib` MiB of anonymous memory, prints `grown rss_kib=<VmRSS>` and keeps
//!   serving (holding it).
//!
//! - `start_crash`: aborts in `init`, before it is ready (a hot swap's `aborted_start`).
//! - `never_ready`: sleeps in `init` for ever: no `ready`, no heartbeats (`aborted_ready`).
//!
//! As a processor with `{"pass": "keep" | "process"}`: passes every record on, by keep flags
//! (nothing re-encoded) or by returning the batch (`process`): the hot-swap tests' processor.
//!
//! As a receiver (`srediag-test-plugin receiver`), with `{"emit": N, "batch": B, "run": "id"}`:
//! emits N log records `test.seq=0..N`, `test.run=<id>`, in batches of B (default 100), as fast
//! as the agent takes them, then prints `emitted <N>` and idles.
//!
//! As an exporter (`srediag-test-plugin exporter`), with `{"sink_port": P}`: delivers each batch
//! by writing one line `<test.run> <test.seq>` per record to 127.0.0.1:P (needs a network grant of
//! that port), then acknowledges it; `{"fail_every": K}` reports every K-th batch as failed
//! instead.

use srediag_plugin_sdk::data::{Records, common, logs};
use srediag_plugin_sdk::{Context, Emit, Plugin, PluginError, PluginInfo, PluginType, Registry};
use std::io::Write;
use std::time::Duration;

struct TestPlugin {
    kind: PluginType,
    config: serde_json::Value,
}

fn kv(key: &str, v: common::any_value::Value) -> common::KeyValue {
    common::KeyValue {
        key: key.into(),
        value: Some(common::AnyValue { value: Some(v) }),
    }
}

/// Emits `emit` records with sequence numbers.
struct SeqReceiver {
    total: u64,
    batch: u64,
    run: String,
}

impl srediag_plugin_sdk::Receiver for SeqReceiver {
    fn run(&mut self, emitter: &mut dyn Emit) -> Result<(), PluginError> {
        let mut next = 0;
        while next < self.total && !emitter.stopping() {
            let n = self.batch.min(self.total - next);
            let records = (next..next + n)
                .map(|i| logs::LogRecord {
                    body: Some(common::AnyValue {
                        value: Some(common::any_value::Value::StringValue(format!("r-{i}"))),
                    }),
                    attributes: vec![
                        kv("test.seq", common::any_value::Value::IntValue(i as i64)),
                        kv(
                            "test.run",
                            common::any_value::Value::StringValue(self.run.clone()),
                        ),
                    ],
                    ..Default::default()
                })
                .collect();
            emitter.emit(Records::Logs(srediag_plugin_sdk::data::Logs {
                resource_logs: vec![logs::ResourceLogs {
                    scope_logs: vec![logs::ScopeLogs {
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }))?;
            next += n;
        }
        println!("emitted {next}");
        while !emitter.stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Passes every record on (`pass`).
struct Pass {
    keep: bool,
}

impl srediag_plugin_sdk::Processor for Pass {
    fn process(&mut self, records: Records) -> Result<Records, PluginError> {
        Ok(records)
    }

    fn keep_logs_view(
        &mut self,
        logs: &srediag_plugin_sdk::wire::view::LogsView<'_>,
    ) -> Option<Result<Vec<bool>, PluginError>> {
        self.keep.then(|| Ok(vec![true; logs.items() as usize]))
    }
}

/// Delivers records as lines to a TCP sink.
struct SinkExporter {
    port: u16,
    fail_every: u64,
    batches: u64,
}

impl srediag_plugin_sdk::Exporter for SinkExporter {
    fn export(&mut self, records: Records) -> Result<(), PluginError> {
        self.batches += 1;
        if self.fail_every > 0 && self.batches.is_multiple_of(self.fail_every) {
            return Err(PluginError(format!(
                "batch {} refused on purpose",
                self.batches
            )));
        }
        let Records::Logs(l) = records else {
            return Ok(());
        };
        let mut out = String::new();
        for r in l
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
        {
            let attr = |k: &str| {
                r.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.as_ref()?.value.clone())
            };
            let run = match attr("test.run") {
                Some(common::any_value::Value::StringValue(s)) => s,
                _ => "-".into(),
            };
            let seq = match attr("test.seq") {
                Some(common::any_value::Value::IntValue(i)) => i,
                _ => -1,
            };
            out.push_str(&format!("{run} {seq}\n"));
        }
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| PluginError(format!("sink: {e}")))?;
        c.write_all(out.as_bytes())
            .map_err(|e| PluginError(format!("sink: {e}")))?;
        Ok(())
    }
}

/// Calls `mkdir` (refused by the processor profile) `n` times, or until `until`; returns
/// (calls, calls that returned EPERM).
fn violate(n: u64, until: Option<std::time::Instant>) -> (u64, u64) {
    let (mut calls, mut eperm) = (0u64, 0u64);
    loop {
        let more = match until {
            Some(t) => calls % 256 != 0 || std::time::Instant::now() < t,
            None => calls < n,
        };
        if !more {
            return (calls, eperm);
        }
        calls += 1;
        // SAFETY: mkdir of a static NUL-terminated path; the profile refuses it.
        let rc = unsafe { libc::syscall(libc::SYS_mkdir, c"/srediag-violation".as_ptr(), 0o700) };
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            eperm += 1;
        }
    }
}

fn after(ctx: &Context) -> Duration {
    Duration::from_millis(ctx.config["after_ms"].as_u64().unwrap_or(0))
}

impl Plugin for TestPlugin {
    fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
        self.config = ctx.config.clone();
        let mode = ctx.config["mode"].as_str().unwrap_or("serve").to_string();
        let wait = after(ctx);
        let cfg = ctx.config.clone();
        println!("test plugin starting in mode {mode}");
        match mode.as_str() {
            "start_crash" => std::process::abort(),
            "never_ready" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            _ => {}
        }
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            match mode.as_str() {
                "crash" => std::process::abort(),
                "hang" => {
                    // Stop the whole process (heartbeats included) without exiting.
                    // SAFETY: raising SIGSTOP on ourselves.
                    unsafe { libc::raise(libc::SIGSTOP) };
                }
                "oom" => {
                    let mut v: Vec<Vec<u8>> = Vec::new();
                    loop {
                        v.push(vec![1u8; 8 << 20]);
                    }
                }
                "spin" => loop {
                    std::hint::spin_loop();
                },
                "violate" => {
                    // `seconds`: as many calls as fit in that time; else `count` calls; on
                    // `threads` threads at once (each makes `count` calls).
                    let until = cfg["seconds"]
                        .as_f64()
                        .map(|s| std::time::Instant::now() + Duration::from_secs_f64(s));
                    let n = cfg["count"].as_u64().unwrap_or(1);
                    let threads = cfg["threads"].as_u64().unwrap_or(1).max(1);
                    let workers: Vec<_> = (0..threads)
                        .map(|_| std::thread::spawn(move || violate(n, until)))
                        .collect();
                    let (mut calls, mut eperm) = (0u64, 0u64);
                    for w in workers {
                        let (c, e) = w.join().unwrap_or_default();
                        calls += c;
                        eperm += e;
                    }
                    println!("violations done eperm={eperm} of {calls}");
                }
                "grow" => {
                    let mib = cfg["mib"].as_u64().unwrap_or(64) as usize;
                    let mut v = vec![0u8; mib << 20];
                    for i in (0..v.len()).step_by(4096) {
                        v[i] = 1;
                    }
                    std::hint::black_box(&v);
                    let rss = std::fs::read_to_string("/proc/self/status")
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("VmRSS:"))
                                .and_then(|v| {
                                    v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                                })
                        })
                        .unwrap_or(0);
                    println!("grown rss_kib={rss}");
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                        std::hint::black_box(&v);
                    }
                }
                "spam" => loop {
                    println!("{}", "x".repeat(10_000));
                },
                _ => {}
            }
        });
        Ok(())
    }

    fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
        match self.kind {
            PluginType::Receiver if self.config["emit"].is_u64() => r.receiver(
                "seq",
                SeqReceiver {
                    total: self.config["emit"].as_u64().unwrap_or(0),
                    batch: self.config["batch"].as_u64().unwrap_or(100).max(1),
                    run: self.config["run"].as_str().unwrap_or("run").to_string(),
                },
            ),
            PluginType::Exporter if self.config["sink_port"].is_u64() => r.exporter(
                "sink",
                SinkExporter {
                    port: self.config["sink_port"].as_u64().unwrap_or(0) as u16,
                    fail_every: self.config["fail_every"].as_u64().unwrap_or(0),
                    batches: 0,
                },
            ),
            PluginType::Processor if self.config["pass"].is_string() => r.processor(
                "pass",
                Pass {
                    keep: self.config["pass"] != "process",
                },
            ),
            _ => {
                r.component("processor/test");
                Ok(())
            }
        }
    }

    fn capabilities(&self) -> Vec<String> {
        vec![format!("{}/test", self.kind.as_str())]
    }

    fn shutdown(&mut self, ctx: &Context) -> Result<(), PluginError> {
        if ctx.config["mode"].as_str() == Some("ignore_shutdown") {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(())
    }
}

fn main() {
    let kind = match std::env::args().nth(1).as_deref() {
        Some("receiver") => PluginType::Receiver,
        Some("exporter") => PluginType::Exporter,
        Some("diagnostics") => PluginType::Diagnostics,
        _ => PluginType::Processor,
    };
    srediag_plugin_sdk::run(
        PluginInfo::new("srediag-test-plugin", env!("CARGO_PKG_VERSION"), kind),
        TestPlugin {
            kind,
            config: serde_json::Value::Null,
        },
    )
}
