//! The default run in a row: `srediag run` with the embedded default configuration (its ports and
//! admin socket moved to private ones, its data directory in the scratch space) and the signed
//! first-party bundles trusted through the development key — what `cargo xtask run` does. The
//! vectorhashprocessor plugin must reach `ready`; its sandbox as the kernel shows it (uid, CapEff,
//! NoNewPrivs, Seccomp, cgroup) is the pass's detail. Then `srediag probe` asks the running agent
//! how it attached each observer, and SIGTERM must stop the agent and leave no plugin process.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::plan::Plan;
use super::runner::{self, Outcome, Record, Sinks};

const DEFAULT_CONFIG: &str = include_str!("../../../agent/src/config/default.yaml");
const PLUGIN: &str = "vectorhashprocessor";

/// The default configuration with its listeners on `ports` (otlp, prometheus, telemetry) and the
/// admin socket at `socket`.
pub fn config(ports: [u16; 3], socket: &Path) -> String {
    let mut c = DEFAULT_CONFIG
        .replace("127.0.0.1:4318", &format!("127.0.0.1:{}", ports[0]))
        .replace("127.0.0.1:9465", &format!("127.0.0.1:{}", ports[1]))
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{}", ports[2]));
    c = c.replacen(
        "\nservice:\n",
        &format!("\nservice:\n  admin:\n    socket: {}\n", socket.display()),
        1,
    );
    c
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `/proc/<pid>/status` fields of the sandbox, and the cgroup line.
fn sandbox_of(pid: u64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| "?".into())
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let cg: Vec<&str> = cgroup
        .lines()
        .filter(|l| l.contains("srediag"))
        .map(|l| l.split_once(':').map_or(l, |x| x.1))
        .collect();
    format!(
        "pid {pid}, uid {}, CapEff {}, NoNewPrivs {}, Seccomp {}, cgroup {}",
        field("Uid:"),
        field("CapEff:"),
        field("NoNewPrivs:"),
        field("Seccomp:"),
        if cg.is_empty() {
            "?".to_string()
        } else {
            cg.join(" ")
        }
    )
}

pub fn run(plan: &Plan, timeout: Duration, sinks: &mut Sinks) -> Result<(Outcome, Option<String>)> {
    let dir = runner::scratch(plan, "default-run")?;
    let socket = dir.join("srediag.sock");
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        config([free_port()?, free_port()?, free_port()?], &socket),
    )?;
    let log = dir.join("agent.log");
    let mut c = runner::command(plan, &plan.bin_dir.join("srediag"), &log)?;
    c.arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--plugin-dir")
        .arg(plan.bundles.join("debug/plugins"))
        .arg("--trust-policy")
        .arg(plan.bundles.join("dev-trust.yaml"))
        .arg("--plugin-state")
        .arg(dir.join("plugin-versions.json"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .env("SREDIAG_DATA_DIR", dir.join("data"));
    let mut agent = c.spawn().context("spawn srediag run")?;
    let t0 = Instant::now();
    let mut last = serde_json::Value::Null;
    let verdict: Result<String, String> = loop {
        if let Some(st) = agent.try_wait()? {
            break Err(format!("the agent exited ({st}) before {PLUGIN} was ready"));
        }
        if t0.elapsed() > timeout {
            break Err(format!(
                "{PLUGIN} not ready within {timeout:?}; last status: {last}"
            ));
        }
        if let Ok(list) = crate::bench_plugin::admin(&socket, r#"{"cmd":"plugin_list"}"#)
            && let Some(p) = list
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == PLUGIN))
        {
            last = p.clone();
            match p["state"].as_str().unwrap_or("") {
                "ready" if p["pid"].is_u64() => {
                    let pid = p["pid"].as_u64().unwrap_or(0);
                    break Ok(format!(
                        "ready after {:.1} s: {}",
                        t0.elapsed().as_secs_f64(),
                        sandbox_of(pid)
                    ));
                }
                s @ ("quarantined" | "rejected" | "stopped" | "degraded") => {
                    break Err(format!(
                        "{PLUGIN} is {s}: last_exit {}, error {}",
                        p["last_exit"], p["error"]
                    ));
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // How the running agent attached each observer.
    if verdict.is_ok() {
        match runner::probe(plan, Some(&socket), Duration::from_secs(120), sinks) {
            Ok((json, _)) => sinks.emit(&Record::Probe { agent: true, json })?,
            Err(e) => writeln!(sinks.console, "probe against the agent failed: {e:#}")?,
        }
    }
    // SIGTERM: the agent stops its plugins and exits.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let stopped = runner::wait_bounded(&mut agent, Duration::from_secs(90))?;
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    sinks.console.write_all(text.as_bytes())?;
    sinks.console.flush()?;
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("SRD-") || l.contains(" ERROR ") || l.contains("level=error"))
        .take(12)
        .collect();
    match (verdict, stopped) {
        (Ok(detail), Some(st)) if st.success() => Ok((Outcome::Passed, Some(detail))),
        (Ok(detail), st) => Ok((
            Outcome::Failed,
            Some(format!(
                "{detail}; but SIGTERM: {}",
                st.map_or("no exit within 90 s (killed)".to_string(), |s| format!(
                    "exit {s}"
                ))
            )),
        )),
        (Err(why), _) => Ok((
            Outcome::Failed,
            Some(format!("{why}\nagent log:\n{}", errors.join("\n"))),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_moves_ports_and_socket() {
        let c = config([1, 2, 3], Path::new("/x/s.sock"));
        assert!(c.contains("127.0.0.1:1\n") && c.contains("127.0.0.1:2\n"));
        assert!(c.contains("127.0.0.1:3\n"));
        assert!(!c.contains("4318") && !c.contains("9464") && !c.contains("9465"));
        assert!(c.contains("service:\n  admin:\n    socket: /x/s.sock\n"));
        assert!(c.contains("bundle: vectorhashprocessor"));
    }
}
