//! The agent's eBPF tracker as the sandbox spawner's [`SpawnObserver`]: the sandbox crate knows
//! nothing of eBPF, the agent passes this in with every spawn request.

use srediag_sandbox::spawner::{SpawnGuard, SpawnObserver};

/// Arms the spawner thread in the eBPF tracker (`bpf::arm_spawn`) right before each clone, so the
/// kernel tracks the child as the plugin from its first instruction; the guard disarms it.
#[derive(Debug, Clone, Copy, Default)]
pub struct BpfSpawnObserver;

impl SpawnObserver for BpfSpawnObserver {
    fn before_clone(&self, plugin: &str) -> Option<Box<dyn SpawnGuard>> {
        crate::bpf::arm_spawn(plugin).map(|armed| Box::new(armed) as Box<dyn SpawnGuard>)
    }
}
