//! `srediag plugin list|restart|ipc-sampling`: talks to the running agent over its admin socket.

use super::Output;
use super::exit::{CmdResult, FAILURE, Failure, UNAVAILABLE, ok};
use super::output::{print, table};
use crate::plugins::admin::{AdminRequest, request};
use std::path::Path;

pub(super) fn call(socket: &Path, req: &AdminRequest) -> Result<serde_json::Value, Failure> {
    let resp = request(socket, req).map_err(|e| Failure::new(UNAVAILABLE, e))?;
    if !resp.ok {
        return Err(Failure::new(
            FAILURE,
            resp.error
                .unwrap_or_else(|| "the agent refused the request".into()),
        ));
    }
    Ok(resp.data)
}

pub(super) fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn human_bytes(v: &serde_json::Value) -> String {
    match v.as_u64() {
        Some(b) if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.1}KiB", b as f64 / 1024.0),
        None => "-".into(),
    }
}

/// Lists plugins: name, version, type, state, pid, uptime, restarts, memory and CPU (cgroup), then
/// what the kernel observed through eBPF: on-CPU time (KCPU), resident memory (KRSS) and seccomp
/// violations (VIOL); `-` when the eBPF observers are not running.
pub fn list(socket: &Path, out: Output) -> CmdResult {
    let data = call(socket, &AdminRequest::PluginList)?;
    print(out, &data, |d| {
        let rows: Vec<Vec<String>> = d
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        vec![
                            cell(&p["name"]),
                            cell(&p["version"]),
                            cell(&p["type"]),
                            cell(&p["state"]),
                            cell(&p["pid"]),
                            p["uptime_seconds"]
                                .as_u64()
                                .map(|s| format!("{s}s"))
                                .unwrap_or_else(|| "-".into()),
                            cell(&p["restarts"]),
                            human_bytes(&p["memory_bytes"]),
                            p["cpu_seconds"]
                                .as_f64()
                                .map(|s| format!("{s:.2}s"))
                                .unwrap_or_else(|| "-".into()),
                            p["kernel"]["cpu_seconds"]
                                .as_f64()
                                .map(|s| format!("{s:.2}s"))
                                .unwrap_or_else(|| "-".into()),
                            human_bytes(&p["kernel"]["rss_bytes"]),
                            cell(&p["kernel"]["violations"]),
                            cell(&p["error"]),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(
            &[
                "NAME", "VERSION", "TYPE", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU",
                "KCPU", "KRSS", "VIOL", "ERROR",
            ],
            &rows,
        )
    })?;
    ok()
}

/// Sets a plugin's IPC latency sampling period (0 = off) in the running agent.
pub fn ipc_sampling(socket: &Path, name: &str, every: u32, out: Output) -> CmdResult {
    let data = call(
        socket,
        &AdminRequest::PluginIpcSampling {
            name: name.to_string(),
            every,
        },
    )?;
    print(out, &data, |_| {
        if every == 0 {
            format!("IPC latency sampling of plugin {name}: off\n")
        } else {
            format!("IPC latency sampling of plugin {name}: every {every} batches\n")
        }
    })?;
    ok()
}

/// Restarts a plugin (also takes it out of quarantine).
pub fn restart(socket: &Path, name: &str) -> CmdResult {
    call(
        socket,
        &AdminRequest::PluginRestart {
            name: name.to_string(),
        },
    )?;
    println!("restart of plugin {name} requested");
    ok()
}
