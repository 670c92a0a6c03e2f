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

/// One admin-socket request (a JSON line) and its `data`.
pub fn admin(socket: &Path, req: &str) -> Result<serde_json::Value> {
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

/// Runs the benchmark with `n` restarts (release build).
pub fn plugin(root: &Path, n: usize, network: bool) -> Result<()> {
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
    let dir = tempfile::tempdir()?;
    let r = measure(
        &root.join("target/release/srediag"),
        &root.join("target/release/srediag-test-plugin"),
        dir.path(),
        n,
        network,
        Duration::from_secs(600),
    )?;
    println!("{}", r.table);
    Ok(())
}

/// What [`measure`] found: p50s in ms and the markdown tables.
pub struct Measured {
    pub cold_p50: f64,
    pub restart_p50: f64,
    pub raw_plugin_p50: f64,
    pub table: String,
}

/// Measures `plugin` started by the agent `bin` (scratch files in `dir`): raw spawns, the cold
/// start and `n` restarts, each wait bounded by `timeout`. Used by `cargo xtask bench plugin`
/// (release) and by `cargo xtask kernels` (the debug binaries, in each kernel of the matrix).
pub fn measure(
    bin: &Path,
    plugin: &Path,
    dir: &Path,
    n: usize,
    network: bool,
    timeout: Duration,
) -> Result<Measured> {
    use std::fmt::Write as _;
    // A grant of one port puts the receiver in the host network namespace with its port rules.
    let (ptype, net) = if network {
        ("receiver", "{connect: [443]}")
    } else {
        ("processor", "false")
    };
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
    let mut raw_plugin = raw(plugin)?;

    std::fs::create_dir_all(dir)?;
    let socket = dir.join("admin.sock");
    let config = dir.join("bench.yaml");
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
    let policy = dir.join("trust.yaml");
    std::fs::write(&policy, "allow_unsigned: true\n")?;
    let mut agent = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--trust-policy")
        .arg(&policy)
        .arg("--plugin-state")
        .arg(dir.join("plugin-versions.json"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let guard = scopeguard(&mut agent);
    let wait_ready = |prev: Option<f64>| -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() > deadline {
                bail!("plugin not ready within {timeout:?}");
            }
            if let Ok(s) = status(&socket) {
                let fresh = match prev {
                    None => true,
                    Some(p) => s["last_restart_ms"].as_f64().is_some_and(|v| v != p),
                };
                if s["state"] == "ready" && fresh {
                    return Ok(s);
                }
                // A plugin that cannot start here (e.g. no Landlock) never becomes ready.
                if s["state"] == "quarantined" || s["state"] == "rejected" {
                    bail!(
                        "the plugin is {}: last_exit {}, error {}",
                        s["state"],
                        s["last_exit"],
                        s["error"]
                    );
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
    let mut t = String::new();
    writeln!(
        t,
        "| measure ({} runs) | p50 ms | p99 ms | ratio to raw spawn p50 |",
        n
    )?;
    writeln!(t, "|---|---|---|---|")?;
    writeln!(
        t,
        "| raw spawn+exit `/bin/true` | {rt50:.3} | {:.3} | — |",
        percentile(&mut raw_true, 0.99)
    )?;
    writeln!(
        t,
        "| raw spawn+exit of the plugin binary (baseline) | {rp50:.3} | {:.3} | 1.00× |",
        percentile(&mut raw_plugin, 0.99)
    )?;
    writeln!(
        t,
        "| plugin cold start: spawn → sandbox → handshake → ready | {c50:.3} | {c99:.3} | {:.2}× |",
        c50 / rp50
    )?;
    writeln!(
        t,
        "| restart request → ready (graceful stop + cold start) | {r50:.3} | {r99:.3} | {:.2}× |",
        r50 / rp50
    )?;
    writeln!(
        t,
        "| ratios to `/bin/true` p50 | | | cold {:.2}×, restart {:.2}× |",
        c50 / rt50,
        r50 / rt50
    )?;
    writeln!(
        t,
        "\nWhere a cold start's time goes (p50 of each phase, ms):\n"
    )?;
    writeln!(t, "| phase | p50 ms |\n|---|---|")?;
    for phase in [
        "verify",
        "cgroup",
        "scratch",
        "prepare",
        "spawn",
        "handshake",
    ] {
        let mut v: Vec<f64> = phases.iter().filter_map(|p| p[phase].as_f64()).collect();
        writeln!(t, "| {phase} | {:.3} |", percentile(&mut v, 0.5))?;
    }
    Ok(Measured {
        cold_p50: c50,
        restart_p50: r50,
        raw_plugin_p50: rp50,
        table: t,
    })
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
