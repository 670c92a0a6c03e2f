//! Starts one supervisor per configured plugin, answers the admin socket, stops them all.

use super::config::Plugins;
use super::instance::Instance;
use super::ledger::Ledgers;
use super::metrics::PluginMetrics;
use super::sandbox::cgroup::{self, CgroupDriver};
use super::supervisor::{PluginState, PluginStatus, Request, Supervisor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The plugin manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Plugins need root (namespaces, cgroups, credentials).
    #[error(
        "plugins need root: srediag runs as uid {0} (run it as root, or remove the `plugins` section)"
    )]
    NotRoot(u32),
    /// cgroups could not be set up.
    #[error("cgroups: {0}")]
    Cgroup(String),
}

struct Entry {
    status: Arc<Mutex<PluginStatus>>,
    tx: mpsc::Sender<Request>,
}

/// The running plugins.
pub struct Manager {
    plugins: BTreeMap<String, Entry>,
    cgroups: Option<Arc<dyn CgroupDriver>>,
    links: crate::plugins::datapath::Links,
    scratch_root: PathBuf,
}

impl Manager {
    /// Cleans what a previous agent left (cgroups, scratch directories; says so), then starts a
    /// supervisor per plugin.
    /// Bundles are verified by each supervisor (trust policy and rollback marks from `bundles`)
    /// before anything of the plugin is created.
    pub fn start(
        plugins: &Plugins,
        metrics: PluginMetrics,
        bundles: &super::config::BundlesConfig,
        links: &crate::plugins::datapath::Links,
        ledgers: &Ledgers,
        instance: Option<&Instance>,
    ) -> Result<Manager, ManagerError> {
        let euid = rustix::process::geteuid().as_raw();
        let Some(instance) = instance.filter(|_| euid == 0) else {
            if plugins.is_empty() {
                return Ok(Manager {
                    plugins: BTreeMap::new(),
                    cgroups: None,
                    links: Default::default(),
                    scratch_root: PathBuf::new(),
                });
            }
            return Err(ManagerError::NotRoot(euid));
        };
        let host = crate::sys::real_host();
        let driver: Option<Arc<dyn CgroupDriver>> = match crate::sys::cgroup::detect(&*host)
            .map_err(|e| e.to_string())
            .and_then(|layout| {
                cgroup::driver(&layout, instance.cgroup_root()).map_err(|e| e.to_string())
            }) {
            Ok(d) => Some(Arc::from(d)),
            Err(e) if plugins.is_empty() => {
                tracing::debug!(error = %e, "no cgroup driver (no plugins configured)");
                None
            }
            Err(e) => return Err(ManagerError::Cgroup(e)),
        };
        // Whatever a previous holder of this instance's lock left (killed with SIGKILL, say) goes
        // now, plugins or not: this agent holds the lock, so nothing here belongs to a live one.
        if let Some(driver) = &driver {
            match driver.cleanup_stale() {
                Ok(cleaned) if !cleaned.is_empty() => {
                    tracing::warn!(cgroups = ?cleaned, "removed plugin cgroups left by a previous agent (its plugins were killed)")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot clean stale plugin cgroups"),
            }
        }
        let scratch_root = instance.scratch_root();
        if let Ok(entries) = std::fs::read_dir(&scratch_root) {
            for e in entries.flatten() {
                tracing::warn!(dir = %e.path().display(), "removing scratch directory left by a previous agent");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let Some(driver) = driver else {
            return Ok(Manager {
                plugins: BTreeMap::new(),
                cgroups: None,
                links: Default::default(),
                scratch_root,
            });
        };
        if plugins.is_empty() {
            let _ = driver.remove_root();
            let _ = std::fs::remove_dir(&scratch_root);
            return Ok(Manager {
                plugins: BTreeMap::new(),
                cgroups: None,
                links: Default::default(),
                scratch_root,
            });
        }
        let trust = Arc::new(super::loader::TrustContext::new(bundles.clone()));
        let mut out = BTreeMap::new();
        for (name, cfg) in plugins {
            let status = Arc::new(Mutex::new(PluginStatus {
                name: name.clone(),
                plugin_type: cfg.plugin_type.as_str().to_string(),
                state: PluginState::Starting,
                ..Default::default()
            }));
            let (tx, rx) = mpsc::channel(8);
            let sup = Supervisor {
                name: name.clone(),
                cfg: cfg.clone(),
                status: status.clone(),
                metrics: metrics.clone(),
                cgroups: driver.clone(),
                scratch_root: scratch_root.clone(),
                trust: trust.clone(),
                link: links.get(name).cloned(),
                ledger: match ledgers.get(name) {
                    Some(l) => l.clone(),
                    None => Arc::new(super::ledger::Ledger::new(
                        name,
                        cfg.data_path.quarantine_after_malformed,
                        &super::ledger::LedgerMetrics::new(None),
                    )),
                },
                last_load: Mutex::new(None),
            };
            tokio::spawn(sup.run(rx));
            out.insert(name.clone(), Entry { status, tx });
        }
        Ok(Manager {
            plugins: out,
            cgroups: Some(driver),
            links: links.clone(),
            scratch_root,
        })
    }

    /// Sets plugin `name`'s probe sampling period (IPC latency) on its current and future rings;
    /// the plugin reads it from the ring header, so it needs no restart. 0 = off.
    pub fn set_ipc_sampling(&self, name: &str, every: u32) -> Result<(), String> {
        if !self.plugins.contains_key(name) {
            return Err(format!("no plugin named {name:?}"));
        }
        let link = self.links.get(name).ok_or_else(|| {
            format!("plugin {name} has no data path (no pipeline uses plugin/{name})")
        })?;
        link.set_probe_sampling(every);
        tracing::info!(plugin = %name, every, "IPC latency sampling set");
        Ok(())
    }

    /// Status of every plugin.
    pub fn list(&self) -> Vec<PluginStatus> {
        self.plugins
            .values()
            .map(|e| e.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Asks a plugin to restart (also leaves quarantine).
    pub async fn restart(&self, name: &str) -> Result<(), String> {
        let e = self
            .plugins
            .get(name)
            .ok_or_else(|| format!("no plugin named {name:?}"))?;
        e.tx.send(Request::Restart)
            .await
            .map_err(|_| format!("plugin {name} is not supervised any more"))
    }

    /// Stops every plugin (graceful, then cgroup kill) and waits for their supervisors.
    pub async fn stop_all(&self) {
        let mut waits = Vec::new();
        for (name, e) in &self.plugins {
            let (done, rx) = oneshot::channel();
            if e.tx.send(Request::Stop(done)).await.is_ok() {
                waits.push((name, rx));
            }
        }
        for (name, rx) in waits {
            let _ = rx.await;
            tracing::info!(plugin = %name, "plugin stopped");
        }
        if let Some(d) = &self.cgroups
            && let Err(e) = d.remove_root()
        {
            tracing::warn!(error = %e, "cannot remove the srediag cgroup directories");
        }
        if !self.scratch_root.as_os_str().is_empty() {
            let _ = std::fs::remove_dir(&self.scratch_root);
        }
    }
}
