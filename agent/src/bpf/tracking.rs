//! Plugin process tracking: `srediag_pids` (host tgid → plugin id).
//!
//! From the first instruction: before each plugin clone the spawner thread is armed
//! (`srediag_spawners`: its tid → plugin id, `hooks.rs`), and the fork hook adds the
//! process that thread clones, before that process first runs — so a plugin that dies at its very
//! first syscall after exec is tracked as surely as one that runs for hours. The alternatives:
//! registering the pid once the spawner's answer reached the supervisor (the old way) misses a
//! plugin that dies before (12 deaths by SIGSYS, 7 counted, in the test); keying on the plugin's
//! cgroup works only where the plugin has a v2 cgroup (`bpf_get_current_cgroup_id` reads the
//! default hierarchy: the controller-less unified hierarchy of a hybrid host like ours, absent on
//! a pure v1 host, where the id would have to come from a v1 controller's `task->cgroups` entry)
//! and needs a cgroup → plugin map next to the pid map; arming the one thread every plugin is
//! cloned from works the same on v1, hybrid and v2, with one map entry per clone.
//!
//! The kernel side then adds every process forked by a tracked one, marks a process dying when
//! its last thread exits and removes it at its final switch-out. The agent also writes the pids
//! it knows after the spawn (the plugin, then the members of its cgroup): on a kernel where the
//! fork hook did not attach, that is the tracking; otherwise it rewrites what the kernel wrote
//! (for a plugin already dead, one stale entry until the supervisor's `plugin_stopped`).
//!
//! Registration order closes the fork race there: the plugin is inserted first, so everything it
//! forks later is followed by the fork hook; the cgroup members read *after* that cover what was
//! forked before. (Anything forked by a member between the read and its insertion is caught by a
//! second read, which the caller may do; the cgroup stays the authority for membership.)

use aya::maps::{HashMap, MapData, MapError};

use super::abi::c;

/// The value bit of a process whose last thread is exiting (removed at its final switch-out).
const DYING: u32 = c::PID_DYING as u32;

/// Inserts `pids` for `plugin_id` (replacing any previous owner).
pub(super) fn insert(
    map: &mut HashMap<MapData, u32, u32>,
    plugin_id: u32,
    pids: &[u32],
) -> Result<(), MapError> {
    for &pid in pids {
        if pid == 0 {
            continue;
        }
        map.insert(pid, plugin_id, 0)?;
    }
    Ok(())
}

/// The tracked pids of `plugin_id`.
pub(super) fn pids_of(map: &HashMap<MapData, u32, u32>, plugin_id: u32) -> Vec<u32> {
    let mut out: Vec<u32> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, id)| id & !DYING == plugin_id)
        .map(|(pid, _)| pid)
        .collect();
    out.sort_unstable();
    out
}

/// Removes every pid of `plugin_id`; returns how many were removed.
pub(super) fn remove_plugin(map: &mut HashMap<MapData, u32, u32>, plugin_id: u32) -> usize {
    let pids = pids_of(map, plugin_id);
    pids.iter().filter(|pid| map.remove(pid).is_ok()).count()
}
