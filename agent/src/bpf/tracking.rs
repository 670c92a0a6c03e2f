//! Plugin process tracking: `srediag_pids` (host tgid → plugin id). The agent writes the pids it
//! knows (the sandbox helper, then the members of the plugin's cgroup); the kernel side adds every
//! process forked by a tracked one and removes a process when its last thread exits.
//!
//! Registration order closes the fork race: the helper is inserted first, so everything it forks
//! later is followed by the fork hook; the cgroup members read *after* that cover what was forked
//! before. (Anything forked by a member between the read and its insertion is caught by a second
//! read, which the caller may do; the cgroup stays the authority for membership.)

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
