//! `srediag plugin upgrade NAME [--bundle DIR]` and `srediag reload`: hot swaps through the running
//! agent (make before break; docs/plugins.md, "Hot swap").

use super::Output;
use super::exit::{CONFIG, CmdResult, FAILURE, Failure, UNAVAILABLE, ok};
use super::output::print;
use crate::plugins::admin::{AdminRequest, request_within};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the CLI waits for a swap: the agent bounds it by the plugin's start, drain and
/// shutdown timeouts.
const PATIENCE: Duration = Duration::from_secs(180);

fn cell(v: &serde_json::Value) -> String {
    super::plugin::cell(v)
}

/// Swaps one plugin; exit 0 when the new incarnation serves, 1 when the swap was aborted (the old
/// one serves on; the reason is printed), 69 when no agent answers.
pub fn upgrade(socket: &Path, name: &str, bundle: Option<PathBuf>, out: Output) -> CmdResult {
    let req = AdminRequest::PluginUpgrade {
        name: name.to_string(),
        bundle,
    };
    let resp = request_within(socket, &req, PATIENCE).map_err(|e| Failure::new(UNAVAILABLE, e))?;
    if !resp.ok {
        return Err(Failure::new(
            FAILURE,
            resp.error
                .unwrap_or_else(|| "the agent refused the swap".into()),
        ));
    }
    let r = resp.data;
    let swapped = matches!(r["result"].as_str(), Some("ok" | "drain_timeout"));
    print(out, &r, |r| {
        format!(
            "plugin {name}: {} in {:.0} ms: {}\n",
            cell(&r["result"]),
            r["duration_ms"].as_f64().unwrap_or(0.0),
            cell(&r["reason"])
        )
    })?;
    if swapped {
        ok()
    } else {
        Err(Failure::new(
            FAILURE,
            format!(
                "swap of plugin {name} aborted ({}): the running incarnation serves on",
                cell(&r["result"])
            ),
        ))
    }
}

/// Reloads the configuration; exit 78 (with the configuration's errors) when it is invalid and
/// nothing changed, 1 when a swap was aborted, 0 otherwise (changes that need a restart are
/// listed).
pub fn reload(socket: &Path, out: Output) -> CmdResult {
    let resp = request_within(socket, &AdminRequest::Reload, PATIENCE)
        .map_err(|e| Failure::new(UNAVAILABLE, e))?;
    if !resp.ok {
        let error = resp
            .error
            .unwrap_or_else(|| "the agent refused the reload".into());
        if resp.data["invalid"] == true {
            for line in error.lines() {
                eprintln!("{line}");
            }
            return Err(Failure::new(
                CONFIG,
                "configuration is invalid: nothing was changed, everything runs as before",
            ));
        }
        return Err(Failure::new(FAILURE, error));
    }
    let r = resp.data;
    print(out, &r, |r| {
        let mut t = String::new();
        if let Some(m) = r["swapped"].as_object() {
            for (name, s) in m {
                t.push_str(&format!(
                    "plugin {name}: {}: {}\n",
                    cell(&s["result"]),
                    cell(&s["reason"])
                ));
            }
        }
        if let Some(u) = r["unchanged"].as_array()
            && !u.is_empty()
        {
            let names: Vec<String> = u.iter().map(cell).collect();
            t.push_str(&format!("unchanged: {}\n", names.join(", ")));
        }
        if let Some(n) = r["needs_restart"].as_array() {
            for line in n {
                t.push_str(&format!("not applied: {}\n", cell(line)));
            }
        }
        if t.is_empty() {
            t.push_str("nothing changed\n");
        }
        t
    })?;
    let aborted = r["swapped"].as_object().is_some_and(|m| {
        m.values()
            .any(|s| !matches!(s["result"].as_str(), Some("ok" | "drain_timeout")))
    });
    if aborted {
        return Err(Failure::new(
            FAILURE,
            "a swap was aborted: that plugin's running incarnation serves on",
        ));
    }
    ok()
}
