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
    print(out, &data, render_list)?;
    ok()
}

/// The `plugin list` table of the agent's answer (cells escaped by [`table`]).
fn render_list(d: &serde_json::Value) -> String {
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
    let mut t = table(
        &[
            "NAME", "VERSION", "TYPE", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU",
            "KCPU", "KRSS", "VIOL", "ERROR",
        ],
        &rows,
    );
    // The last hot swap of each plugin that had one, a line each after the table (escaped: the
    // reason can quote what a plugin did).
    for p in d.as_array().into_iter().flatten() {
        let s = &p["last_swap"];
        if s.is_object() {
            t.push_str(&crate::text::escape_control(&format!(
                "last swap of {}: {} in {:.0} ms: {}",
                cell(&p["name"]),
                cell(&s["result"]),
                s["duration_ms"].as_f64().unwrap_or(0.0),
                cell(&s["reason"])
            )));
            t.push('\n');
        }
    }
    t
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::render;

    /// What a hostile plugin can put into the agent's status: its handshake version, its error
    /// message, and (through a forged name in a bundle) its name.
    fn hostile_status() -> serde_json::Value {
        serde_json::json!([{
            "name": "evil\u{1b}]0;owned\u{7}",
            "version": "1.0\u{1b}[1;31mRED\u{1b}[0m",
            "type": "processor",
            "state": "failed",
            "pid": 7,
            "restarts": 1,
            "error": "boom\r\u{1b}[2K\u{9b}2Jfake line\nsecond",
            "kernel": {"violations": 0}
        }])
    }

    #[test]
    fn table_renders_hostile_strings_inert() {
        let t = render(Output::Table, &hostile_status(), render_list).unwrap();
        for bad in ['\u{1b}', '\r', '\u{7}', '\u{9b}'] {
            assert!(!t.contains(bad), "raw {bad:?} in the table:\n{t:?}");
        }
        // One header line and one row: the plugin's newline did not forge a row.
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t.contains("1.0\\x1b[1;31mRED"), "{t}");
        assert!(t.contains("evil\\x1b]0;owned\\x07"), "{t}");
        assert!(
            t.contains("boom\\r\\x1b[2K\\u{009b}2Jfake line\\nsecond"),
            "{t}"
        );
    }

    #[test]
    fn the_last_swap_follows_the_table_on_one_escaped_line() {
        let mut v = hostile_status();
        v[0]["last_swap"] = serde_json::json!({
            "result": "aborted_start",
            "reason": "crash: SRD-P005: exit status: 1\n\u{1b}[2Jforged",
            "at": 1,
            "duration_ms": 12.4
        });
        let t = render(Output::Table, &v, render_list).unwrap();
        let last = t.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(
                "last swap of evil\\x1b]0;owned\\x07: aborted_start in 12 ms: crash: SRD-P005"
            ),
            "{t}"
        );
        assert!(last.ends_with("\\n\\x1b[2Jforged"), "{t}");
        assert_eq!(t.lines().count(), 3, "{t}");
    }

    #[test]
    fn json_output_stays_exact() {
        let v = hostile_status();
        let j = render(Output::Json, &v, render_list).unwrap();
        let back: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back, v, "JSON must carry the exact strings");
        assert!(
            !j.contains('\u{1b}') && !j.contains('\r'),
            "JSON escapes controls itself"
        );
        let y = render(Output::Yaml, &v, render_list).unwrap();
        let back: serde_json::Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(back, v, "YAML must carry the exact strings");
        assert!(
            !y.contains('\u{1b}') && !y.contains('\r'),
            "YAML escapes controls:\n{y}"
        );
    }
}
