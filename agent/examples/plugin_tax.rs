//! B3 plugin tax: the same processor (vectorhashprocessor's dedup) linked in-process vs run as a
//! sandboxed plugin behind the shared-memory data path, measured side by side in one run.
//!
//! Both variants process the same pre-built batches of log records (10% duplicates) as fast as
//! they can with nothing dropped; reported: records/s (wall) and CPU-ns per record (in-process:
//! this process; plugin: this process — the agent side, with its encode/decode threads — plus the
//! plugin process). Needs root (the sandbox). Run with `cargo xtask bench tax`.
//!
//! Usage: plugin_tax PLUGIN_BINARY [--records N] [--batch N] [--rounds N] [--ipc-sampling N].
//!
//! B5 tracing tax (`--ipc-sampling N`, also `cargo xtask bench tax --ipc-sampling N`): the eBPF
//! observers are loaded, one sandboxed plugin process serves every round, and each round runs
//! the data path with IPC-latency sampling off and at period N (switched at run time through the
//! link, as `srediag plugin ipc-sampling` does), order alternating; reported: throughput ratio
//! on/off per round and its median, and the histogram counts the uprobes produced.

use srediag::plugins::config::{BundlesConfig, PluginConfig, Plugins};
use srediag::plugins::datapath::{DataPathMetrics, Link, Links, Output};
use srediag::plugins::manager::Manager;
use srediag::plugins::metrics::PluginMetrics;
use srediag_plugin_sdk::data::{Logs, Records, common, logs};
use srediag_vectorhashprocessor::dedup::{Dedup, Settings};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn batches(records: usize, per_batch: usize) -> Vec<Records> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records {
        let n = per_batch.min(records - i);
        let log_records = (i..i + n)
            .map(|k| {
                // Every tenth record repeats an earlier one (a duplicate to drop).
                let id = if k % 10 == 9 { k - 5 } else { k };
                logs::LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000 + k as u64,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(common::AnyValue {
                        value: Some(common::any_value::Value::StringValue(format!(
                            "GET /api/v1/items/{id} 200 {} bytes in {} ms",
                            id * 7 % 9000,
                            id % 97
                        ))),
                    }),
                    attributes: vec![common::KeyValue {
                        key: "http.route".into(),
                        value: Some(common::AnyValue {
                            value: Some(common::any_value::Value::StringValue(
                                "/api/v1/items/{id}".into(),
                            )),
                        }),
                    }],
                    ..Default::default()
                }
            })
            .collect();
        out.push(Records::Logs(Logs {
            resource_logs: vec![logs::ResourceLogs {
                scope_logs: vec![logs::ScopeLogs {
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }));
        i += n;
    }
    out
}

/// CPU time (user + system) of a process from /proc/<pid>/stat, in ns.
fn cpu_ns(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the comm field.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    ticks * 1_000_000_000 / hz.max(1)
}

struct Run {
    out: u64,
    wall: Duration,
    cpu_ns: u64,
}

fn in_process(input: &[Records]) -> Run {
    let mut d = Dedup::new(Settings::default(), Arc::default());
    let (t, c) = (Instant::now(), cpu_ns("self"));
    let mut out = 0;
    for b in input {
        out += d.filter(b.clone()).items();
    }
    Run {
        out,
        wall: t.elapsed(),
        cpu_ns: cpu_ns("self") - c,
    }
}

fn plugin(input: &[Records], bin: &str, expect: u64) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let yaml = format!(
            "path: {bin}\ntype: processor\ndata_path: {{max_in_flight: 32, max_batch_records: 100000}}\nlimits: {{cpu_max: 0}}"
        );
        let cfg: PluginConfig = serde_yaml::from_str(&yaml).expect("plugin config");
        let mut plugins = Plugins::new();
        plugins.insert("vectorhashprocessor".into(), cfg.clone());
        let ledgers = srediag::plugins::ledger::ledgers(
            &plugins,
            &srediag::plugins::ledger::LedgerMetrics::new(None),
        );
        let link = Arc::new(Link::new(
            "vectorhashprocessor",
            srediag::plugins::datapath::Role::Processor,
            cfg.data_path.clone(),
            DataPathMetrics::new(None),
            ledgers["vectorhashprocessor"].clone(),
        ));
        let mut links = Links::new();
        links.insert("vectorhashprocessor".into(), link.clone());
        let registry = prometheus::Registry::new();
        // The plugin runs by path: unsigned development mode, allowed by a policy of its own
        // (a signed bundle adds only its verification at start, outside the measured window).
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("trust.yaml"), "allow_unsigned: true\n").expect("policy");
        let bundles = BundlesConfig {
            directory: dir.path().to_path_buf(),
            trust_policy: dir.path().join("trust.yaml"),
            state_file: dir.path().join("plugin-versions.json"),
        };
        let instance = srediag::plugins::instance::Instance::acquire(&dir.path().join("run"))
            .expect("instance lock");
        let manager = Manager::start(&plugins, PluginMetrics::new(&registry), &bundles, &links, &ledgers, Some(&instance), Arc::new(srediag::bpf::NoObservers))
            .expect("plugin manager (root needed)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            let st = manager.list();
            if let Some(p) = st.first().filter(|s| s.state == srediag::plugins::supervisor::PluginState::Ready).and_then(|s| s.pid) {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "plugin not ready: {:?}",
                st.first().map(|s| (&s.state, &s.error))
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let mut answers = link.take_output().expect("output");
        let (t, c0, p0) = (Instant::now(), cpu_ns("self"), cpu_ns(&pid.to_string()));
        let counter = tokio::spawn(async move {
            let mut n = 0;
            while n < expect {
                match answers.recv().await {
                    Some(Output::Records(r)) => n += r.items(),
                    Some(Output::Dropped { items, reason, .. }) => panic!("{items} dropped: {reason}"),
                    Some(Output::Delivered { .. }) => {}
                    None => break,
                }
            }
            n
        });
        for b in input {
            let slot = link.slot().await;
            link.submit(b.clone(), slot);
        }
        let out = counter.await.expect("counter");
        let wall = t.elapsed();
        let cpu = cpu_ns("self") - c0 + cpu_ns(&pid.to_string()) - p0;
        manager.stop_all().await;
        Run {
            out,
            wall,
            cpu_ns: cpu,
        }
    })
}

/// One sandboxed plugin kept for every round (B5).
struct Served {
    _instance: srediag::plugins::instance::Instance,
    _dir: tempfile::TempDir,
    manager: Manager,
    link: Arc<Link>,
    answers: tokio::sync::mpsc::Receiver<Output>,
}

async fn serve(bin: &str, observers: Arc<dyn srediag::bpf::PluginObservers>) -> Served {
    let yaml = format!(
        "path: {bin}\ntype: processor\ndata_path: {{max_in_flight: 32, max_batch_records: 100000}}\nlimits: {{cpu_max: 0}}"
    );
    let cfg: PluginConfig = serde_yaml::from_str(&yaml).expect("plugin config");
    let mut plugins = Plugins::new();
    plugins.insert("vectorhashprocessor".into(), cfg.clone());
    let ledgers = srediag::plugins::ledger::ledgers(
        &plugins,
        &srediag::plugins::ledger::LedgerMetrics::new(None),
    );
    let link = Arc::new(Link::new(
        "vectorhashprocessor",
        srediag::plugins::datapath::Role::Processor,
        cfg.data_path.clone(),
        DataPathMetrics::new(None),
        ledgers["vectorhashprocessor"].clone(),
    ));
    let mut links = Links::new();
    links.insert("vectorhashprocessor".into(), link.clone());
    let registry = prometheus::Registry::new();
    // As in `plugin()`: a path-configured plugin under a policy that allows unsigned ones.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("trust.yaml"), "allow_unsigned: true\n").expect("policy");
    let bundles = BundlesConfig {
        directory: dir.path().to_path_buf(),
        trust_policy: dir.path().join("trust.yaml"),
        state_file: dir.path().join("plugin-versions.json"),
    };
    let instance = srediag::plugins::instance::Instance::acquire(&dir.path().join("run"))
        .expect("instance lock");
    let manager = Manager::start(
        &plugins,
        PluginMetrics::new(&registry),
        &bundles,
        &links,
        &ledgers,
        Some(&instance),
        observers,
    )
    .expect("plugin manager (root needed)");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = manager.list();
        if st.first().is_some_and(|s| {
            s.state == srediag::plugins::supervisor::PluginState::Ready && s.pid.is_some()
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plugin not ready: {:?}",
            st.first().map(|s| (&s.state, &s.error))
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answers = link.take_output().expect("output");
    Served {
        _instance: instance,
        _dir: dir,
        manager,
        link,
        answers,
    }
}

async fn pass(s: &mut Served, input: &[Records], expect: u64) -> Duration {
    let t = Instant::now();
    let mut n = 0;
    let mut it = input.iter();
    let mut pending = true;
    while n < expect {
        tokio::select! {
            slot = s.link.slot(), if pending => match it.next() {
                Some(b) => s.link.submit(b.clone(), slot),
                None => pending = false,
            },
            a = s.answers.recv() => match a {
                Some(Output::Records(r)) => n += r.items(),
                Some(Output::Dropped { items, reason, .. }) => panic!("{items} dropped: {reason}"),
                    Some(Output::Delivered { .. }) => {}
                None => break,
            },
        }
    }
    assert_eq!(n, expect);
    t.elapsed()
}

fn ipc_tax(input: &[Records], bin: &str, expect: u64, every: u32, rounds: usize, records: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let obs = Arc::new(srediag::bpf::Observers::start(&prometheus::Registry::new()));
        let up = obs.status().into_iter().find(|s| s.name == "ipc_latency").expect("status");
        assert!(up.up, "ipc_latency observer down: {:?}", up.reason);
        let mut s = serve(bin, obs.clone()).await;
        // Warm-up (page faults, dedup tables), not measured.
        s.link.set_probe_sampling(0);
        pass(&mut s, input, expect).await;
        println!(
            "B5 tracing tax: {records} log records in batches of {}, IPC-latency sampling off vs every {every} batches; {rounds} alternated rounds",
            records.div_ceil(input.len().max(1))
        );
        println!("{:<8} {:<6} {:>14} {:>12}", "round", "ipc", "records/s", "wall ms");
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let order: [(&str, u32); 2] = if round % 2 == 1 { [("off", 0), ("on", every)] } else { [("on", every), ("off", 0)] };
            let (mut on, mut off) = (Duration::ZERO, Duration::ZERO);
            for (name, e) in order {
                s.link.set_probe_sampling(e);
                let wall = pass(&mut s, input, expect).await;
                println!("{round:<8} {name:<6} {:>14.0} {:>12.1}", records as f64 / wall.as_secs_f64(), wall.as_secs_f64() * 1e3);
                if e == 0 { off = wall } else { on = wall }
            }
            ratios.push(off.as_secs_f64() / on.as_secs_f64());
        }
        let id = obs.plugin_id("vectorhashprocessor").expect("id");
        for (d, h) in obs.ipc_histograms(id) {
            println!(
                "histogram {d}: {} samples, p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs",
                h.count,
                h.quantile(0.5).unwrap_or(0.0) * 1e6,
                h.quantile(0.99).unwrap_or(0.0) * 1e6,
                if h.count > 0 { h.sum_seconds / h.count as f64 * 1e6 } else { 0.0 }
            );
        }
        ratios.sort_by(|a, b| a.total_cmp(b));
        println!(
            "throughput ratio on/off per round (sorted): {:?}; median {:.3} (goal >= 0.90)",
            ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            ratios[ratios.len() / 2]
        );
        s.manager.stop_all().await;
        drop(s);
        drop(obs);
    });
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .and_then(|p| std::fs::canonicalize(p).ok())
        .expect("usage: plugin_tax PLUGIN_BINARY [--records N] [--batch N] [--rounds N]")
        .display()
        .to_string();
    let opt = |name: &str, d: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (records, per_batch, rounds) = (
        opt("--records", 400_000),
        opt("--batch", 1024),
        opt("--rounds", 5),
    );
    let input = batches(records, per_batch);
    let expect = in_process(&input).out;
    let every = opt("--ipc-sampling", 0);
    if every > 0 {
        ipc_tax(&input, &bin, expect, every as u32, rounds, records);
        return;
    }
    println!(
        "B3 plugin tax: {records} log records in batches of {per_batch}, {expect} unique; {rounds} alternated rounds"
    );
    println!(
        "{:<8} {:<10} {:>14} {:>12} {:>16}",
        "round", "variant", "records/s", "wall ms", "cpu ns/record"
    );
    let mut ratios = Vec::new();
    let (mut cpu_in, mut cpu_pl) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = in_process(&input);
        let b = plugin(&input, &bin, expect);
        assert_eq!(a.out, b.out, "both variants must keep the same records");
        for (name, r) in [("in-proc", &a), ("plugin", &b)] {
            println!(
                "{round:<8} {name:<10} {:>14.0} {:>12.1} {:>16.0}",
                records as f64 / r.wall.as_secs_f64(),
                r.wall.as_secs_f64() * 1e3,
                r.cpu_ns as f64 / records as f64
            );
        }
        ratios.push(a.wall.as_secs_f64() / b.wall.as_secs_f64());
        cpu_in.push(a.cpu_ns as f64 / records as f64);
        cpu_pl.push(b.cpu_ns as f64 / records as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "median throughput ratio plugin/in-process: {:.2} (goal >= 0.70); median CPU ns/record: in-process {:.0}, plugin {:.0}",
        median(&mut ratios),
        median(&mut cpu_in),
        median(&mut cpu_pl)
    );
}
