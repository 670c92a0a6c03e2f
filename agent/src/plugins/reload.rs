//! `srediag reload` and SIGHUP: read the configuration again and hot-swap the plugins whose
//! settings or bundle changed (make before break, `swap.rs`). An invalid configuration is refused
//! with its FILE:LINE:COL errors and nothing changes; changes a running agent cannot apply
//! (pipelines, built-in components, plugins added or removed, a plugin's type) are reported as
//! needing a restart and left alone.

use super::manager::Manager;
use super::swap::{SwapChange, SwapRecord};
use crate::config::{self, Config, ProcessEnv, Source};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Re-reads a configuration and applies what changed in its plugins.
pub struct Reloader {
    source: Source,
    /// `--plugin-dir`, `--trust-policy`, `--plugin-state` (they win over the file, as at start).
    bundles: Box<
        dyn Fn(&crate::plugins::config::BundlesConfig) -> crate::plugins::config::BundlesConfig
            + Send
            + Sync,
    >,
    current: Mutex<Config>,
    manager: Arc<Manager>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

/// The configuration could not be used: nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// It does not validate: one line per error, FILE:LINE:COL first.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// It could not be read.
    #[error("{0}")]
    Read(String),
}

/// What a reload did.
#[derive(Debug, Default, Serialize)]
pub struct ReloadReport {
    /// Plugins swapped (or whose swap was aborted: the record says), by name.
    pub swapped: BTreeMap<String, SwapRecord>,
    /// Plugins left as they were (unchanged).
    pub unchanged: Vec<String>,
    /// Changes that need an agent restart; not applied.
    pub needs_restart: Vec<String>,
}

impl Reloader {
    /// A reloader of `source`, whose running configuration is `current`.
    pub fn new(
        source: Source,
        bundles: Box<
            dyn Fn(&crate::plugins::config::BundlesConfig) -> crate::plugins::config::BundlesConfig
                + Send
                + Sync,
        >,
        current: Config,
        manager: Arc<Manager>,
    ) -> Reloader {
        Reloader {
            source,
            bundles,
            current: Mutex::new(current),
            manager,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the configuration again and applies it (see the module doc).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one = self.running.lock().await;
        let (mut next, _warnings) =
            config::load(&self.source, &ProcessEnv).map_err(|e| match e {
                config::LoadError::Invalid { diagnostics, .. } => ReloadError::Invalid(
                    diagnostics
                        .iter()
                        .filter(|d| d.severity == config::Severity::Error)
                        .map(|d| crate::text::escape_control(&d.to_string()).into_owned())
                        .collect(),
                ),
                e => ReloadError::Read(e.to_string()),
            })?;
        next.service.bundles = (self.bundles)(&next.service.bundles);
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut report = ReloadReport::default();
        let same = |a: &dyn erased::Ser, b: &dyn erased::Ser| a.json() == b.json();
        for (what, a, b) in [
            (
                "receivers",
                &old.receivers as &dyn erased::Ser,
                &next.receivers as &dyn erased::Ser,
            ),
            ("processors", &old.processors, &next.processors),
            ("exporters", &old.exporters, &next.exporters),
            ("extensions", &old.extensions, &next.extensions),
            ("service", &old.service, &next.service),
        ] {
            if !same(a, b) {
                report
                    .needs_restart
                    .push(format!("{what} changed: restart the agent to apply"));
            }
        }
        for name in old
            .plugins
            .keys()
            .filter(|n| !next.plugins.contains_key(*n))
        {
            report
                .needs_restart
                .push(format!("plugin {name} removed: restart the agent to apply"));
        }
        for (name, cfg) in &next.plugins {
            let Some(before) = old.plugins.get(name) else {
                report
                    .needs_restart
                    .push(format!("plugin {name} added: restart the agent to apply"));
                continue;
            };
            if before.plugin_type != cfg.plugin_type {
                report.needs_restart.push(format!(
                    "plugin {name} changed type ({} → {}): restart the agent to apply",
                    before.plugin_type.as_str(),
                    cfg.plugin_type.as_str()
                ));
                continue;
            }
            // The link (ring sizes, window, timeouts) belongs to the pipeline stage, built at
            // start: a swap does not change it, so say so rather than claim it applied.
            let mut cfg = cfg.clone();
            if before.data_path != cfg.data_path {
                report.needs_restart.push(format!(
                    "plugin {name}: data_path changed: restart the agent to apply"
                ));
                cfg.data_path = before.data_path.clone();
            }
            if *before == cfg && !self.manager.bundle_changed(name) {
                report.unchanged.push(name.clone());
                continue;
            }
            match self
                .manager
                .swap(
                    name,
                    SwapChange {
                        config: Some(cfg.clone()),
                        bundle: None,
                    },
                )
                .await
            {
                Ok(r) => {
                    report.swapped.insert(name.clone(), r);
                }
                Err(e) => report.needs_restart.push(format!("plugin {name}: {e}")),
            }
        }
        // What was applied is what runs now; the rest stays as it was until a restart.
        let mut now = old;
        for (name, r) in &report.swapped {
            if r.result.swapped()
                && let Some(c) = next.plugins.get(name)
            {
                let mut c = c.clone();
                if let Some(before) = now.plugins.get(name) {
                    c.data_path = before.data_path.clone();
                }
                now.plugins.insert(name.clone(), c);
            }
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(report)
    }
}

/// Serialisation behind a trait object, to compare configuration sections of different types.
mod erased {
    /// A section that can be compared through its JSON form.
    pub trait Ser {
        /// Its JSON form.
        fn json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or_default()
        }
    }
}
