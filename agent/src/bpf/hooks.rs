//! What the plugin manager tells the eBPF observers, and what its admin socket reads from them:
//! [`PluginObservers`], passed in as an `Arc<dyn PluginObservers>` (created by `srediag run`,
//! handed to the manager, each supervisor, the spawner with every clone, and the admin socket).
//! [`Observers`] implements it; [`NoObservers`] does nothing (an agent without plugins, tests,
//! benchmarks). There is no process-wide instance: whoever holds the last clone frees the
//! programs and maps by dropping it, and two sets of observers can run side by side.
//!
//! Every hook logs and carries on: missing eBPF never stops a plugin.

use std::sync::Arc;

use srediag_sandbox::spawner::{SpawnGuard, SpawnObserver};

use super::Observers;
use super::observers::Inner;

/// The eBPF side of the plugin lifecycle. As a [`SpawnObserver`] it arms the spawner thread
/// right before each clone, so the kernel tracks the child as the plugin from its first
/// instruction (before it builds its sandbox and execs), whatever happens to it before the
/// supervisor hears back.
pub trait PluginObservers: SpawnObserver {
    /// Right after the spawn returned: tracks the plugin process `pid` and the current members
    /// of its cgroup (`members` is called after the process is tracked, so nothing forked in
    /// between is missed). The kernel normally tracks them already (the spawner thread was
    /// armed); this covers a kernel without the fork hook.
    fn plugin_started(&self, name: &str, pid: u32, members: &dyn Fn() -> Vec<u32>);

    /// After the handshake and before the data path starts: attaches the IPC latency uprobes to
    /// the incarnation (`pid`: the plugin's host pid) and registers its rings.
    fn ipc_started(&self, name: &str, pid: u32, to_plugin_ring: u64, from_plugin_ring: u64);

    /// After an incarnation's processes were reaped (its cgroup emptied): detaches its IPC
    /// uprobes and forgets the plugin's tracked pids that are gone. Pids still alive belong to
    /// another incarnation of the same plugin (a hot swap's new one) and stay tracked.
    fn plugin_stopped(&self, name: &str, pid: u32);

    /// The observers behind the hooks, for the admin socket's `plugin list` (kernel columns),
    /// `bpf status`, `bpf stats` and `seccomp events` (`None`: no eBPF observers in this agent).
    fn bpf(&self) -> Option<&Observers>;
}

/// Hooks that observe nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObservers;

impl SpawnObserver for NoObservers {
    fn before_clone(&self, _plugin: &str) -> Option<Box<dyn SpawnGuard>> {
        None
    }
}

impl PluginObservers for NoObservers {
    fn plugin_started(&self, _name: &str, _pid: u32, _members: &dyn Fn() -> Vec<u32>) {}

    fn ipc_started(&self, _name: &str, _pid: u32, _to_plugin_ring: u64, _from_plugin_ring: u64) {}

    fn plugin_stopped(&self, _name: &str, _pid: u32) {}

    fn bpf(&self) -> Option<&Observers> {
        None
    }
}

/// The spawner thread armed for one plugin clone; dropping it disarms (nothing when the
/// observers were dropped in between: their maps are gone).
#[must_use = "the thread is disarmed when this is dropped"]
struct SpawnArm {
    inner: Arc<Inner>,
    tid: u32,
}

impl Drop for SpawnArm {
    fn drop(&mut self) {
        let _ = self.inner.with(|l| l.spawners.remove(&self.tid));
    }
}

impl SpawnObserver for Observers {
    fn before_clone(&self, plugin: &str) -> Option<Box<dyn SpawnGuard>> {
        if !self.is_loaded() {
            return None;
        }
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        match self
            .plugin_id(plugin)
            .and_then(|id| self.arm(id, plugin, tid))
        {
            Ok(()) => Some(Box::new(SpawnArm {
                inner: self.inner.clone(),
                tid,
            })),
            Err(e) => {
                tracing::warn!(plugin = %plugin, error = %e, "eBPF: cannot track the plugin from its first instruction; it is tracked once the supervisor registers it");
                None
            }
        }
    }
}

impl PluginObservers for Observers {
    fn plugin_started(&self, name: &str, pid: u32, members: &dyn Fn() -> Vec<u32>) {
        if !self.is_loaded() {
            return;
        }
        let result = self.plugin_id(name).and_then(|id| {
            self.register(id, name, &[pid])?;
            self.register(id, name, &members())
        });
        if let Err(e) = result {
            tracing::warn!(plugin = %name, error = %e, "eBPF: cannot track the plugin's processes");
        }
    }

    fn ipc_started(&self, name: &str, pid: u32, to_plugin_ring: u64, from_plugin_ring: u64) {
        if !self.is_loaded()
            || !self
                .status()
                .iter()
                .any(|s| s.name == "ipc_latency" && s.up)
        {
            return;
        }
        match self.ipc_attach(name, pid, to_plugin_ring, from_plugin_ring) {
            Ok(target) => {
                tracing::debug!(plugin = %name, %target, "eBPF: IPC latency uprobes attached")
            }
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "eBPF: no IPC latency for this plugin incarnation")
            }
        }
    }

    fn plugin_stopped(&self, name: &str, pid: u32) {
        if !self.is_loaded() {
            return;
        }
        self.ipc_detach(name, Some(pid));
        if let Ok(id) = self.plugin_id(name) {
            match self.unregister_gone(id) {
                Ok(n) if n > 0 => {
                    tracing::debug!(plugin = %name, pids = n, "eBPF: untracked leftover pids")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "eBPF: cannot untrack the plugin")
                }
            }
        }
    }

    fn bpf(&self) -> Option<&Observers> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::Options;

    /// An agent without plugins passes `NoObservers`: every hook is a no-op (the members of a
    /// cgroup are not even read) and the admin socket sees no observers.
    #[test]
    fn no_observers_observe_nothing() {
        let o: Arc<dyn PluginObservers> = Arc::new(NoObservers);
        assert!(o.before_clone("p").is_none());
        o.plugin_started("p", 1, &|| panic!("cgroup members read without observers"));
        o.ipc_started("p", 1, 1, 2);
        o.plugin_stopped("p", 1);
        assert!(o.bpf().is_none());
    }

    /// Two sets of observers in one process keep their own plugin ids, and one outlives the
    /// other (the privileged half, with programs and maps, is `observers_run_side_by_side_and_
    /// free_on_drop` in tests/tests/bpf_observers.rs).
    #[test]
    fn two_sets_side_by_side_keep_their_own_plugin_ids() {
        let a: Arc<dyn PluginObservers> = Arc::new(Observers::load(Options::default()));
        let b: Arc<dyn PluginObservers> = Arc::new(Observers::load(Options::default()));
        let (oa, ob) = (a.bpf().unwrap(), b.bpf().unwrap());
        assert_eq!(oa.plugin_id("first").unwrap(), 1);
        assert_eq!(ob.plugin_id("other").unwrap(), 1);
        assert_eq!(oa.plugin_id("other").unwrap(), 2);
        drop(a);
        assert_eq!(b.bpf().unwrap().plugin_id("other").unwrap(), 1);
        assert_eq!(b.bpf().unwrap().plugin_id("first").unwrap(), 2);
    }
}
