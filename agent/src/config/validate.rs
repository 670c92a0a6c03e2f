//! Cross-reference checks: pipelines name defined components of the right signal.

use super::Config;
use super::id::ComponentId;
use super::load::Ctx;
use crate::components::{self, Kind};
use crate::model::Signal;
use std::collections::BTreeSet;

pub(super) fn validate(config: &Config, ctx: &mut Ctx) {
    let mut used: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut plugin_users: std::collections::BTreeMap<String, String> = Default::default();
    if config.service.pipelines.is_empty() {
        ctx.error_at_value("service.pipelines", "no pipeline defined: add one, e.g. `metrics: {receivers: [hostmetrics], exporters: [debug]}`".into());
    }
    for (name, pipeline) in &config.service.pipelines {
        let base = format!("service.pipelines.{name}");
        let signal = check_pipeline_id(ctx, name, &base);
        for (kind, list, field) in [
            (Kind::Receiver, &pipeline.receivers, "receivers"),
            (Kind::Processor, &pipeline.processors, "processors"),
            (Kind::Exporter, &pipeline.exporters, "exporters"),
        ] {
            let lpath = format!("{base}.{field}");
            if list.is_empty() && kind != Kind::Processor {
                ctx.error_at_value(
                    &lpath,
                    format!("a pipeline needs at least one {}", kind.as_str()),
                );
            }
            let mut seen = BTreeSet::new();
            for (i, id) in list.iter().enumerate() {
                let path = format!("{lpath}[{i}]");
                if !seen.insert(id.as_str()) {
                    ctx.error_at_value(&path, format!("`{id}` is listed twice in this pipeline"));
                    continue;
                }
                if let Some(plugin) = id.strip_prefix(crate::plugins::datapath::PLUGIN_PREFIX) {
                    check_plugin_entry(config, ctx, kind, plugin, &path, name, &mut plugin_users);
                    continue;
                }
                if ctx.broken.contains(&(kind, id.clone())) {
                    used.insert((kind, id.clone()));
                    continue;
                }
                let Some(component) = config.component(kind, id) else {
                    let defined: Vec<String> = defined_ids(config, kind);
                    ctx.error_at_value(
                        &path,
                        format!(
                            "{} `{id}` is not defined under `{}` (defined: {})",
                            kind.as_str(),
                            kind.section(),
                            if defined.is_empty() {
                                "none".to_string()
                            } else {
                                defined.join(", ")
                            }
                        ),
                    );
                    continue;
                };
                used.insert((kind, id.clone()));
                if let Some(signal) = signal {
                    let spec = components::find(kind, component.config.type_name());
                    if let Some(spec) = spec
                        && !spec.signals.contains(&signal)
                    {
                        ctx.error_at_value(
                            &path,
                            format!(
                                "{} `{id}` does not support {signal} (it handles: {})",
                                kind.as_str(),
                                spec.signals
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    for (i, ext) in config.service.extensions.iter().enumerate() {
        let path = format!("service.extensions[{i}]");
        if config.component(Kind::Extension, ext).is_none() {
            ctx.error_at_value(
                &path,
                format!("extension `{ext}` is not defined under `extensions`"),
            );
        } else {
            used.insert((Kind::Extension, ext.clone()));
        }
    }
    for kind in [
        Kind::Receiver,
        Kind::Processor,
        Kind::Exporter,
        Kind::Extension,
    ] {
        for id in defined_ids(config, kind) {
            if !used.contains(&(kind, id.clone())) {
                let where_ = if kind == Kind::Extension {
                    "service.extensions"
                } else {
                    "any pipeline"
                };
                ctx.warn_at_key(
                    &format!("{}.{id}", kind.section()),
                    format!(
                        "{} `{id}` is defined but not used by {where_}; it will not run",
                        kind.as_str()
                    ),
                );
            }
        }
    }
    if let Err(e) = config
        .service
        .telemetry
        .metrics
        .address
        .parse::<std::net::SocketAddr>()
    {
        ctx.error_at_value(
            "service.telemetry.metrics.address",
            format!(
                "invalid listen address {:?}: {e} (expected `ip:port`, e.g. 127.0.0.1:9464)",
                config.service.telemetry.metrics.address
            ),
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.service.telemetry.logs.level) {
        ctx.error_at_value(
            "service.telemetry.logs.level",
            format!("invalid log level: {e}"),
        );
    }
}

/// `plugin/<name>` in a pipeline: a configured plugin of the right type, in one pipeline only.
fn check_plugin_entry(
    config: &Config,
    ctx: &mut Ctx,
    kind: Kind,
    plugin: &str,
    path: &str,
    pipeline: &str,
    users: &mut std::collections::BTreeMap<String, String>,
) {
    let Some(pc) = config.plugins.get(plugin) else {
        let defined: Vec<&str> = config.plugins.keys().map(String::as_str).collect();
        ctx.error_at_value(
            path,
            format!(
                "plugin `{plugin}` is not defined under `plugins` (defined: {})",
                if defined.is_empty() {
                    "none".to_string()
                } else {
                    defined.join(", ")
                }
            ),
        );
        return;
    };
    let wanted = match kind {
        Kind::Receiver => srediag_plugin_sdk::PluginType::Receiver,
        Kind::Processor => srediag_plugin_sdk::PluginType::Processor,
        Kind::Exporter => srediag_plugin_sdk::PluginType::Exporter,
        Kind::Extension => srediag_plugin_sdk::PluginType::Extension,
    };
    if pc.plugin_type != wanted {
        let place = match pc.plugin_type {
            srediag_plugin_sdk::PluginType::Receiver => "it can only be listed under receivers",
            srediag_plugin_sdk::PluginType::Processor => "it can only be listed under processors",
            srediag_plugin_sdk::PluginType::Exporter => "it can only be listed under exporters",
            srediag_plugin_sdk::PluginType::Extension => {
                "extension plugins run outside pipelines (they start with the agent)"
            }
            srediag_plugin_sdk::PluginType::Diagnostics => {
                "diagnostics plugins run outside pipelines (their verbs are under `srediag diagnose`)"
            }
        };
        ctx.error_at_value(
            path,
            format!(
                "plugin `{plugin}` is a {} plugin and cannot be listed under {}s: {place}",
                pc.plugin_type.as_str(),
                kind.as_str()
            ),
        );
        return;
    }
    // A processor runs per pipeline, and a plugin's data path serves one stage; receivers and
    // exporters are one instance shared by every pipeline that lists them.
    if kind == Kind::Processor
        && let Some(first) = users.insert(plugin.to_string(), pipeline.to_string())
    {
        ctx.error_at_value(
            path,
            format!(
                "plugin `{plugin}` is already used by pipeline `{first}`; a processor plugin serves one pipeline (configure a second plugin entry with the same path for another pipeline)"
            ),
        );
    }
}

fn check_pipeline_id(ctx: &mut Ctx, name: &str, base: &str) -> Option<Signal> {
    let (signal, rest) = match name.split_once('/') {
        Some((s, n)) => (s, Some(n)),
        None => (name, None),
    };
    if let Some(n) = rest
        && ComponentId::parse(&format!("x/{n}")).is_err()
    {
        ctx.error_at_key(
            base,
            format!("invalid pipeline id `{name}`: expected `signal[/name]`"),
        );
        return None;
    }
    match Signal::parse(signal) {
        Some(s) => Some(s),
        None => {
            let hint = if signal == "traces" {
                " (traces are not supported yet)"
            } else {
                ""
            };
            ctx.error_at_key(
                base,
                format!("pipeline `{name}` has unknown signal `{signal}`{hint}: a pipeline id is `logs[/name]` or `metrics[/name]`"),
            );
            None
        }
    }
}

fn defined_ids(config: &Config, kind: Kind) -> Vec<String> {
    let map = match kind {
        Kind::Receiver => &config.receivers,
        Kind::Processor => &config.processors,
        Kind::Exporter => &config.exporters,
        Kind::Extension => &config.extensions,
    };
    map.keys().map(|k| k.to_string()).collect()
}
