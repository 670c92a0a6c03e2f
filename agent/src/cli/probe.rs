//! `srediag probe`: the host's features, then each eBPF observer — how it is attached or why it
//! is down. The observers are asked from the running agent over its admin socket; without a
//! reachable agent this command loads them itself for a moment (needs root) and reports that.

use std::path::Path;

use serde::Serialize;

use super::Output;
use super::exit::{CmdResult, ok};
use super::output::{print, table};
use crate::bpf::ObserverStatus;
use crate::plugins::admin::{AdminRequest, request};
use crate::probe::ProbeReport;

/// What `srediag probe -o json` prints.
#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    host: ProbeReport,
    observers: Observers,
}

#[derive(Serialize)]
struct Observers {
    /// `agent` (asked the running agent) or `trial_load` (loaded by this command).
    source: &'static str,
    list: Vec<ObserverStatus>,
}

#[derive(serde::Deserialize)]
struct StatusOnly {
    observers: Vec<ObserverView>,
    #[serde(default)]
    ipc_attachments: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ObserverView {
    name: String,
    up: bool,
    attach: Vec<String>,
    reason: Option<String>,
}

fn from_agent(socket: &Path) -> Option<Vec<ObserverStatus>> {
    let resp = request(socket, &AdminRequest::BpfStatus).ok()?;
    if !resp.ok {
        return None;
    }
    let s: StatusOnly = serde_json::from_value(resp.data).ok()?;
    let ipc = s.ipc_attachments;
    Some(
        s.observers
            .into_iter()
            .map(|mut o| {
                if o.name == "ipc_latency" {
                    // Where each running plugin's uprobes are attached now.
                    o.attach
                        .extend(ipc.iter().map(|(p, t)| format!("plugin {p}: {t}")));
                }
                o
            })
            .map(|o| ObserverStatus {
                name: crate::bpf::OBSERVERS
                    .iter()
                    .find(|n| **n == o.name)
                    .copied()
                    .unwrap_or("unknown"),
                up: o.up,
                attach: o.attach,
                reason: o.reason,
            })
            .collect(),
    )
}

fn trial_load() -> Vec<ObserverStatus> {
    // The event reader needs a runtime; the load is dropped (detached, freed) right after.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => {
            let _g = rt.enter();
            crate::bpf::Observers::load(crate::bpf::Options::default()).status()
        }
        Err(_) => crate::bpf::Observers::load(crate::bpf::Options::default()).status(),
    }
}

fn observers_table(o: &Observers) -> String {
    let rows: Vec<Vec<String>> = o
        .list
        .iter()
        .map(|s| {
            vec![
                s.name.to_owned(),
                if s.up { "up" } else { "down" }.to_owned(),
                if s.attach.is_empty() {
                    "-".to_owned()
                } else {
                    s.attach.join(", ")
                },
                s.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let source = match o.source {
        "agent" => "as running in the agent",
        _ => "trial load by this command; no agent answered on the admin socket",
    };
    format!(
        "\neBPF observers ({source}):\n{}",
        table(&["OBSERVER", "STATE", "ATTACHED", "NOTE / WHY DOWN"], &rows)
    )
}

/// Reports what this host supports for srediag, and the eBPF observers.
pub fn execute(socket: &Path, out: Output) -> CmdResult {
    let host = crate::sys::real_host();
    let report = crate::probe::run(&*host);
    let observers = match from_agent(socket) {
        Some(list) => Observers {
            source: "agent",
            list,
        },
        None => Observers {
            source: "trial_load",
            list: trial_load(),
        },
    };
    let full = Report {
        host: report,
        observers,
    };
    print(out, &full, |r| {
        format!("{}{}", r.host.render_table(), observers_table(&r.observers))
    })?;
    ok()
}
