//! `srediag components [--config FILE]`.

use super::exit::{CmdResult, ok};
use super::output::{print, table};
use super::{Output, load_config};
use crate::components::specs;
use serde::Serialize;
use std::path::PathBuf;

/// One row: a built-in component type, or a plugin component of the configuration.
#[derive(Serialize)]
struct Row {
    kind: String,
    #[serde(rename = "type")]
    type_name: String,
    stability: String,
    signals: Vec<String>,
    description: String,
}

/// Lists the built-in component types and the plugins of the configuration (the embedded
/// default, or `--config`), which pipelines reference as `plugin/<name>`.
pub fn execute(path: Option<PathBuf>, out: Output) -> CmdResult {
    let mut list: Vec<Row> = specs()
        .iter()
        .map(|s| Row {
            kind: s.kind.as_str().to_string(),
            type_name: s.type_name.to_string(),
            stability: serde_json::to_value(s.stability)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            signals: s.signals.iter().map(|x| x.as_str().to_string()).collect(),
            description: s.description.to_string(),
        })
        .collect();
    let (config, _) = load_config(path).map_err(|e| e.report())?;
    for (name, p) in &config.plugins {
        let kind = p.plugin_type.as_str();
        list.push(Row {
            kind: if kind == "processor" {
                "processor"
            } else {
                kind
            }
            .to_string(),
            type_name: format!("plugin/{name}"),
            stability: "plugin".into(),
            signals: if p.plugin_type == srediag_plugin_sdk::PluginType::Processor {
                vec!["logs".into(), "metrics".into()]
            } else {
                vec![]
            },
            description: match (&p.bundle, &p.path) {
                (Some(b), _) => format!("sandboxed plugin, signed bundle {}", b.display()),
                (None, Some(path)) => format!("sandboxed plugin, unsigned {}", path.display()),
                (None, None) => "sandboxed plugin".into(),
            },
        });
    }
    print(out, &list, |l| {
        let rows: Vec<Vec<String>> = l
            .iter()
            .map(|s| {
                vec![
                    s.kind.clone(),
                    s.type_name.clone(),
                    s.stability.clone(),
                    s.signals.join(","),
                    s.description.clone(),
                ]
            })
            .collect();
        table(
            &["KIND", "TYPE", "STABILITY", "SIGNALS", "DESCRIPTION"],
            &rows,
        )
    })?;
    ok()
}
