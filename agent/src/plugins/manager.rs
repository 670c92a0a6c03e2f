//! Starts one supervisor per configured plugin, answers the admin socket, stops them all.

use super::config::Plugins;
use super::instance::Instance;
use super::ledger::Ledgers;
use super::metrics::PluginMetrics;
use super::sandbox::cgroup::{self, CgroupDriver};
use super::supervisor::{PluginState, PluginStatus, Request, Serving, Slot, Standby, Supervisor};
use crate::bpf::PluginObservers;
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

/// The supervisor that serves a plugin now.
pub(super) struct Active {
    pub(super) status: Arc<Mutex<PluginStatus>>,
    pub(super) last_load: super::supervisor::LastLoad,
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) slot: Slot,
    pub(super) cfg: super::config::PluginConfig,
}

/// One configured plugin: its serving supervisor and, during a hot swap, the new one.
pub(super) struct Entry {
    pub(super) active: Mutex<Active>,
    /// A hot swap's new supervisor until it takes over (stopped with the others at shutdown).
    pub(super) incoming: Mutex<Option<mpsc::Sender<Request>>>,
    /// One swap at a time per plugin.
    pub(super) swapping: tokio::sync::Mutex<()>,
    /// How the last swap went.
    pub(super) last_swap: Mutex<Option<super::swap::SwapRecord>>,
    pub(super) ledger: Arc<super::ledger::Ledger>,
    /// Which of its supervisors serves (shared with them).
    pub(super) serving: Arc<Serving>,
}

impl Entry {
    pub(super) fn active(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every supervisor of this agent shares.
pub(super) struct Shared {
    pub(super) metrics: PluginMetrics,
    pub(super) cgroups: Arc<dyn CgroupDriver>,
    pub(super) scratch_root: PathBuf,
    pub(super) trust: Arc<super::loader::TrustContext>,
    /// The eBPF observers' hooks (spawn, start, stop of each incarnation).
    pub(super) observers: Arc<dyn PluginObservers>,
}

/// The running plugins.
pub struct Manager {
    pub(super) plugins: BTreeMap<String, Entry>,
    cgroups: Option<Arc<dyn CgroupDriver>>,
    pub(super) links: crate::plugins::datapath::Links,
    scratch_root: PathBuf,
    pub(super) shared: Option<Shared>,
}

impl Manager {
    /// Starts a supervisor of plugin `name` in `slot` (`standby`: a hot swap's new one).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn supervise(
        &self,
        name: &str,
        cfg: &super::config::PluginConfig,
        slot: Slot,
        ledger: Arc<super::ledger::Ledger>,
        serving: Arc<Serving>,
        standby: Option<Standby>,
        preloaded: Option<(Vec<u64>, Arc<super::loader::Loaded>)>,
    ) -> Option<(Active, tokio::task::JoinHandle<()>)> {
        let shared = self.shared.as_ref()?;
        let status = Arc::new(Mutex::new(PluginStatus {
            name: name.to_string(),
            plugin_type: cfg.plugin_type.as_str().to_string(),
            state: PluginState::Starting,
            ..Default::default()
        }));
        let (tx, rx) = mpsc::channel(8);
        let mut sup = Supervisor::new(
            name,
            cfg.clone(),
            status.clone(),
            shared.metrics.clone(),
            shared.cgroups.clone(),
            shared.scratch_root.clone(),
            self.links.get(name).cloned(),
            ledger,
            shared.trust.clone(),
            shared.observers.clone(),
            slot,
            standby,
        );
        sup.serving = serving;
        if let Some(l) = preloaded {
            *sup.last_load.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
        }
        let last_load = sup.last_load.clone();
        let task = tokio::spawn(sup.run(rx));
        Some((
            Active {
                status,
                last_load,
                tx,
                slot,
                cfg: cfg.clone(),
            },
            task,
        ))
    }

    /// Cleans what a previous agent left (cgroups, scratch directories; says so), then starts a
    /// supervisor per plugin.
    /// Bundles are verified by each supervisor (trust policy and rollback marks from `bundles`)
    /// before anything of the plugin is created. `observers` get every incarnation's spawn,
    /// start and stop ([`crate::bpf::NoObservers`] for none).
    pub fn start(
        plugins: &Plugins,
        metrics: PluginMetrics,
        bundles: &super::config::BundlesConfig,
        links: &crate::plugins::datapath::Links,
        ledgers: &Ledgers,
        instance: Option<&Instance>,
        observers: Arc<dyn PluginObservers>,
    ) -> Result<Manager, ManagerError> {
        let euid = rustix::process::geteuid().as_raw();
        let Some(instance) = instance.filter(|_| euid == 0) else {
            if plugins.is_empty() {
                return Ok(Manager {
                    plugins: BTreeMap::new(),
                    cgroups: None,
                    links: Default::default(),
                    scratch_root: PathBuf::new(),
                    shared: None,
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
                shared: None,
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
                shared: None,
            });
        }
        let trust = Arc::new(super::loader::TrustContext::new(bundles.clone()));
        let mut manager = Manager {
            plugins: BTreeMap::new(),
            cgroups: Some(driver.clone()),
            links: links.clone(),
            scratch_root: scratch_root.clone(),
            shared: Some(Shared {
                metrics,
                cgroups: driver,
                scratch_root,
                trust,
                observers,
            }),
        };
        for (name, cfg) in plugins {
            let ledger = match ledgers.get(name) {
                Some(l) => l.clone(),
                None => Arc::new(super::ledger::Ledger::new(
                    name,
                    cfg.data_path.quarantine_after_malformed,
                    &super::ledger::LedgerMetrics::new(None),
                )),
            };
            let serving = Arc::new(Serving::default());
            let Some((active, _task)) = manager.supervise(
                name,
                cfg,
                Slot::A,
                ledger.clone(),
                serving.clone(),
                None,
                None,
            ) else {
                continue;
            };
            manager.plugins.insert(
                name.clone(),
                Entry {
                    active: Mutex::new(active),
                    incoming: Mutex::new(None),
                    swapping: tokio::sync::Mutex::new(()),
                    last_swap: Mutex::new(None),
                    ledger,
                    serving,
                },
            );
        }
        Ok(manager)
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

    /// Every plugin's verbs, from the manifest its last verified load had, and its state.
    pub fn verbs(&self) -> Vec<super::verbs::PluginVerbs> {
        self.plugins
            .iter()
            .map(|(name, e)| {
                let (status, last) = {
                    let a = e.active();
                    (a.status.clone(), a.last_load.clone())
                };
                let (plugin_type, state) = {
                    let s = status.lock().unwrap_or_else(|p| p.into_inner());
                    (s.plugin_type.clone(), s.state.as_str().to_string())
                };
                let manifest = last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|(_, l)| l.manifest.as_ref().map(|m| m.cli.clone()));
                let (verbs, note) = match manifest {
                    Some(Some(v)) if !v.is_empty() => (v, None),
                    Some(Some(_)) => (Vec::new(), Some("its manifest declares no verbs".into())),
                    Some(None) => (
                        Vec::new(),
                        Some("unsigned `path:` plugin: no manifest, no verbs".into()),
                    ),
                    None => (
                        Vec::new(),
                        Some("not loaded yet (no verified manifest)".into()),
                    ),
                };
                super::verbs::PluginVerbs {
                    plugin: name.clone(),
                    plugin_type,
                    state,
                    verbs,
                    note,
                }
            })
            .collect()
    }

    /// Hands an invocation to plugin `name`'s serving supervisor (which checks it against the
    /// running incarnation's manifest and answers `req.started`), or says why not at once.
    pub fn invoke(
        &self,
        name: &str,
        req: super::verbs::InvokeRequest,
    ) -> Result<(), super::verbs::Refused> {
        use super::verbs::{Refusal, Refused};
        let Some(e) = self.plugins.get(name) else {
            let known: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
            return Err(Refused::new(
                Refusal::UnknownPlugin,
                format!(
                    "no plugin named {:?} (plugins: {})",
                    crate::text::escape_truncated(name, 64),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let (tx, status) = {
            let a = e.active();
            (a.tx.clone(), a.status.clone())
        };
        let (state, error) = {
            let s = status.lock().unwrap_or_else(|p| p.into_inner());
            (s.state, s.error.clone())
        };
        if !matches!(state, PluginState::Ready | PluginState::Degraded) {
            let why = error.map(|e| format!(": {e}")).unwrap_or_default();
            return Err(Refused::new(
                Refusal::NotRunning,
                format!("plugin {name} is not running ({}{why})", state.as_str()),
            ));
        }
        tx.try_send(Request::Invoke(req)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Refused::new(
                Refusal::Busy,
                format!("plugin {name}'s supervisor is busy; try again"),
            ),
            mpsc::error::TrySendError::Closed(_) => Refused::new(
                Refusal::NotRunning,
                format!("plugin {name} is not supervised any more"),
            ),
        })
    }

    /// Status of every plugin (with how its last hot swap went).
    pub fn list(&self) -> Vec<PluginStatus> {
        self.plugins
            .values()
            .map(|e| {
                let status = e.active().status.clone();
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                st.last_swap = e
                    .last_swap
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                st
            })
            .collect()
    }

    /// True when plugin `name`'s bundle files or trust policy changed on disk since its running
    /// incarnation verified them (a reload swaps it then).
    pub fn bundle_changed(&self, name: &str) -> bool {
        let (Some(e), Some(shared)) = (self.plugins.get(name), &self.shared) else {
            return false;
        };
        let (cfg, last) = {
            let a = e.active();
            (a.cfg.clone(), a.last_load.clone())
        };
        let now = shared.trust.fingerprint(&cfg);
        let then = last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(fp, _)| fp.clone());
        now.is_some() && then.is_some() && now != then
    }

    /// Asks a plugin to restart (also leaves quarantine).
    pub async fn restart(&self, name: &str) -> Result<(), String> {
        let e = self
            .plugins
            .get(name)
            .ok_or_else(|| format!("no plugin named {name:?}"))?;
        let tx = e.active().tx.clone();
        tx.send(Request::Restart)
            .await
            .map_err(|_| format!("plugin {name} is not supervised any more"))
    }

    /// Stops every plugin (graceful, then cgroup kill) and waits for their supervisors.
    pub async fn stop_all(&self) {
        let mut waits = Vec::new();
        for (name, e) in &self.plugins {
            let incoming = e.incoming.lock().unwrap_or_else(|p| p.into_inner()).take();
            let active = e.active().tx.clone();
            for tx in incoming.into_iter().chain([active]) {
                let (done, rx) = oneshot::channel();
                if tx.send(Request::Stop(done)).await.is_ok() {
                    waits.push((name, rx));
                }
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
