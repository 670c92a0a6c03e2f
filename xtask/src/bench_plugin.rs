//! `cargo xtask bench plugin`: plugin cold start (spawn → sandbox → handshake → ready) and
//! restart-to-ready, against a raw spawn of the same binary measured in the same run.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn admin(socket: &Path, req: &str) -> Result<serde_json::Value> {
    let mut s =
        UnixStream::connect(socket).with_context(|| format!("connect {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
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

fn status(socket: &Path) -> Result<serde_json::Value> {
    Ok(admin(socket, r#"{"cmd":"plugin_list"}"#)?[0].clone())
}

/// Runs the benchmark with `n` restarts.
pub fn plugin(root: &Path, n: usize, network: bool) -> Result<()> {
    // A grant of one port puts the receiver in the host network namespace with its port rules.
    let (ptype, net) = if network {
        ("receiver", "{connect: [443]}")
    } else {
        ("processor", "false")
    };
    let st = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "srediag",
            "-p",
            "srediag-test-plugins",
        ])
        .current_dir(root)
        .status()?;
    if !st.success() {
        bail!("release build failed");
    }
    let bin = root.join("target/release/srediag");
    let plugin = root.join("target/release/srediag-test-plugin");
    // Raw baseline: spawn + exec + exit of the same plugin binary (it exits at once without its
    // control socket) and of /bin/true.
    let raw = |prog: &Path| -> Result<Vec<f64>> {
        let mut v = Vec::new();
        for _ in 0..n.max(50) * 2 {
            let t = Instant::now();
            Command::new(prog)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(v)
    };
    let mut raw_true = raw(Path::new("/bin/true"))?;
    let mut raw_plugin = raw(&plugin)?;

    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("admin.sock");
    let config = dir.path().join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\nexporters:\n  debug: {{}}\nplugins:\n  bench:\n    path: {}\n    type: {ptype}\n    args: [{ptype}]\n    network: {net}\n    shutdown_grace: 2s\nservice:\n  admin:\n    socket: {}\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n    logs:\n      level: warn\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n",
            plugin.display(),
            socket.display(),
        ),
    )?;
    // The benchmark runs the plugin by path: unsigned development mode, allowed by a policy of
    // its own (a signed bundle adds the verification, logged as `verify_ms`).
    let policy = dir.path().join("trust.yaml");
    std::fs::write(&policy, "allow_unsigned: true\n")?;
    let mut agent = Command::new(&bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--trust-policy")
        .arg(&policy)
        .arg("--plugin-state")
        .arg(dir.path().join("plugin-versions.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let guard = scopeguard(&mut agent);
    let deadline = Instant::now() + Duration::from_secs(20);
    let wait_ready = |prev: Option<f64>| -> Result<serde_json::Value> {
        loop {
            if Instant::now() > deadline + Duration::from_secs(600) {
                bail!("plugin never became ready");
            }
            if let Ok(s) = status(&socket) {
                let fresh = match prev {
                    None => true,
                    Some(p) => s["last_restart_ms"].as_f64().is_some_and(|v| v != p),
                };
                if s["state"] == "ready" && fresh {
                    return Ok(s);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let first = wait_ready(None)?;
    let mut cold = vec![first["last_startup_ms"].as_f64().unwrap_or(f64::NAN)];
    let mut phases = vec![first["last_startup_phases_ms"].clone()];
    let mut restart = Vec::new();
    let mut prev = Some(f64::NAN);
    for _ in 0..n {
        admin(&socket, r#"{"cmd":"plugin_restart","name":"bench"}"#)?;
        let s = wait_ready(prev)?;
        prev = s["last_restart_ms"].as_f64();
        cold.push(s["last_startup_ms"].as_f64().unwrap_or(f64::NAN));
        phases.push(s["last_startup_phases_ms"].clone());
        restart.push(prev.unwrap_or(f64::NAN));
    }
    drop(guard);
    let rt50 = percentile(&mut raw_true, 0.5);
    let rp50 = percentile(&mut raw_plugin, 0.5);
    let c50 = percentile(&mut cold, 0.5);
    let c99 = percentile(&mut cold, 0.99);
    let r50 = percentile(&mut restart, 0.5);
    let r99 = percentile(&mut restart, 0.99);
    println!(
        "| measure ({} runs) | p50 ms | p99 ms | ratio to raw spawn p50 |",
        n
    );
    println!("|---|---|---|---|");
    println!(
        "| raw spawn+exit `/bin/true` | {rt50:.3} | {:.3} | — |",
        percentile(&mut raw_true, 0.99)
    );
    println!(
        "| raw spawn+exit of the plugin binary (baseline) | {rp50:.3} | {:.3} | 1.00× |",
        percentile(&mut raw_plugin, 0.99)
    );
    println!(
        "| plugin cold start: spawn → sandbox → handshake → ready | {c50:.3} | {c99:.3} | {:.2}× |",
        c50 / rp50
    );
    println!(
        "| restart request → ready (graceful stop + cold start) | {r50:.3} | {r99:.3} | {:.2}× |",
        r50 / rp50
    );
    println!(
        "| ratios to `/bin/true` p50 | | | cold {:.2}×, restart {:.2}× |",
        c50 / rt50,
        r50 / rt50
    );
    println!("\nWhere a cold start's time goes (p50 of each phase, ms):\n");
    println!("| phase | p50 ms |\n|---|---|");
    for phase in [
        "verify",
        "cgroup",
        "scratch",
        "prepare",
        "spawn",
        "handshake",
    ] {
        let mut v: Vec<f64> = phases.iter().filter_map(|p| p[phase].as_f64()).collect();
        println!("| {phase} | {:.3} |", percentile(&mut v, 0.5));
    }
    Ok(())
}

struct Guard<'a>(&'a mut std::process::Child);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn scopeguard(c: &mut std::process::Child) -> Guard<'_> {
    Guard(c)
}
