//! The observers' handle: the state shared with the metrics collector and the event reader,
//! its lifetime (dropping [`Observers`] detaches every program and frees every map), plugin ids,
//! and the pids tracked per plugin.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::load::Loaded;
use super::{
    BpfError, OBSERVERS, ObserverStatus, Violation, abi, memory, seccomp, stats, tracking,
};

/// Shared by [`Observers`], the metrics collector and the event reader (these two hold `Weak`s).
pub(super) struct Inner {
    pub(super) state: Mutex<Option<Loaded>>,
    pub(super) statuses: Vec<ObserverStatus>,
    pub(super) map_memory: Vec<(&'static str, u64)>,
    /// Plugin id → name, and name → id; ids are never reused for another name.
    pub(super) plugins: Mutex<BTreeMap<u32, String>>,
    pub(super) syscalls: seccomp::Names,
    pub(super) events: broadcast::Sender<Violation>,
    pub(super) received: AtomicU64,
    /// Per plugin id: the highest suppressed-event count seen in its events (the growth since
    /// then is the next event's `suppressed_before`).
    pub(super) suppressed_seen: Mutex<BTreeMap<u32, u64>>,
    /// Violation events per plugin and second (`srediag_event_budget` as loaded).
    pub(super) event_budget: u32,
    pub(super) stats: Mutex<stats::Window>,
    pub(super) recent: Mutex<std::collections::VecDeque<Violation>>,
}

impl Inner {
    pub(super) fn plugin_name(&self, id: u32) -> String {
        let plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("id-{id}"))
    }

    pub(super) fn plugins(&self) -> Vec<(u32, String)> {
        let plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins.iter().map(|(id, n)| (*id, n.clone())).collect()
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Loaded) -> T) -> Option<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.as_mut().map(f)
    }
}

/// The loaded observers. Dropping it detaches every program and frees every map.
pub struct Observers {
    pub(super) inner: Arc<Inner>,
    pub(super) reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Observers {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        // Close programs, links and maps now, even if a collector or the reader still holds a
        // (Weak) reference to `inner`.
        let loaded = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(loaded);
    }
}

impl Observers {
    /// Whether the BPF object is loaded (some observers may still be down).
    pub fn is_loaded(&self) -> bool {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Every observer's status, in [`OBSERVERS`] order.
    pub fn status(&self) -> Vec<ObserverStatus> {
        let mut s = self.inner.statuses.clone();
        s.sort_by_key(|s| OBSERVERS.iter().position(|o| *o == s.name));
        s
    }

    pub(super) fn loaded<T>(&self, f: impl FnOnce(&mut Loaded) -> T) -> Result<T, BpfError> {
        self.inner.with(f).ok_or_else(|| BpfError::NotLoaded {
            reason: self
                .inner
                .statuses
                .iter()
                .find_map(|s| s.reason.clone())
                .unwrap_or_default(),
        })
    }

    /// The id `name` has, or a new one (`1..MAX_PLUGINS`); stable for the agent's lifetime, so
    /// a restarted plugin continues its counters.
    pub fn plugin_id(&self, name: &str) -> Result<u32, BpfError> {
        let mut plugins = self.inner.plugins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, _)) = plugins.iter().find(|(_, n)| n.as_str() == name) {
            return Ok(*id);
        }
        let id = (1..abi::MAX_PLUGINS)
            .find(|id| !plugins.contains_key(id))
            .ok_or_else(|| BpfError::NoFreeId {
                name: name.to_owned(),
                max: abi::MAX_PLUGINS - 1,
            })?;
        plugins.insert(id, name.to_owned());
        Ok(id)
    }

    /// Tracks `pids` (host pids) as plugin `plugin_id` named `name`; their descendants follow
    /// through fork. Insert the parent-most process first (see `tracking.rs`).
    pub fn register(&self, plugin_id: u32, name: &str, pids: &[u32]) -> Result<(), BpfError> {
        if plugin_id == 0 || plugin_id >= abi::MAX_PLUGINS {
            return Err(BpfError::PluginId {
                id: plugin_id,
                max: abi::MAX_PLUGINS,
            });
        }
        self.inner
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin_id, name.to_owned());
        self.loaded(|l| {
            let r = tracking::insert(&mut l.pids, plugin_id, pids);
            if r.is_ok() {
                memory::seed(&mut l.mem, plugin_id, pids);
            }
            r
        })?
        .map_err(|source| BpfError::Map {
            map: "srediag_pids",
            source,
        })
    }

    /// Arms thread `tid` (host tid): the next process it clones is tracked as plugin
    /// `plugin_id` from its first instruction, and so is everything that process forks. Undo
    /// with [`disarm`](Self::disarm) once the clone returned.
    pub fn arm(&self, plugin_id: u32, name: &str, tid: u32) -> Result<(), BpfError> {
        if plugin_id == 0 || plugin_id >= abi::MAX_PLUGINS {
            return Err(BpfError::PluginId {
                id: plugin_id,
                max: abi::MAX_PLUGINS,
            });
        }
        self.inner
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin_id, name.to_owned());
        self.loaded(|l| l.spawners.insert(tid, plugin_id, 0))?
            .map_err(|source| BpfError::Map {
                map: "srediag_spawners",
                source,
            })
    }

    /// Disarms thread `tid` (see [`arm`](Self::arm)); nothing happens if it was not armed.
    pub fn disarm(&self, tid: u32) {
        let _ = self.loaded(|l| l.spawners.remove(&tid));
    }

    /// Stops tracking every process of `plugin_id` (normally they are gone already: the kernel
    /// removes exiting processes). Its counters and name stay. Returns how many were removed.
    pub fn unregister(&self, plugin_id: u32) -> Result<usize, BpfError> {
        self.loaded(|l| {
            memory::remove_plugin(&mut l.mem, plugin_id);
            tracking::remove_plugin(&mut l.pids, plugin_id)
        })
    }

    /// Like [`Observers::unregister`] for the tracked pids of `plugin_id` whose process is gone
    /// (`/proc/<pid>` absent): another incarnation's live processes stay tracked.
    pub fn unregister_gone(&self, plugin_id: u32) -> Result<usize, BpfError> {
        let gone: Vec<u32> = self
            .tracked_pids(plugin_id)
            .into_iter()
            .filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if gone.len() == self.tracked_pids(plugin_id).len() {
            return self.unregister(plugin_id);
        }
        self.loaded(|l| {
            for p in &gone {
                memory::remove_pid(&mut l.mem, *p);
                let _ = l.pids.remove(p);
            }
            gone.len()
        })
    }

    /// The host pids tracked for `plugin_id`, sorted.
    pub fn tracked_pids(&self, plugin_id: u32) -> Vec<u32> {
        self.inner
            .with(|l| tracking::pids_of(&l.pids, plugin_id))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::Options;

    #[test]
    fn plugin_ids_are_stable_and_bounded() {
        let obs = Observers::load(Options::default());
        let a = obs.plugin_id("a").unwrap();
        let b = obs.plugin_id("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(obs.plugin_id("a").unwrap(), a);
        assert!(matches!(
            obs.register(0, "x", &[1]),
            Err(BpfError::PluginId { .. })
        ));
        assert!(matches!(
            obs.register(abi::MAX_PLUGINS, "x", &[1]),
            Err(BpfError::PluginId { .. })
        ));
        for i in 0..abi::MAX_PLUGINS {
            let _ = obs.plugin_id(&format!("p{i}"));
        }
        assert!(matches!(
            obs.plugin_id("one-too-many"),
            Err(BpfError::NoFreeId { .. })
        ));
    }
}
