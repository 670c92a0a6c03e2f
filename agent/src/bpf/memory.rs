//! Per-plugin memory from the kernel: resident pages per tracked process in `srediag_mem`
//! (written at each `kmem/rss_stat`, i.e. at every change of the process's RSS counters, and
//! seeded from `/proc/<pid>/statm` when the agent registers a pid), and OOM kills per plugin in
//! `srediag_ooms` (`oom/mark_victim`: the OOM killer chose the process, globally or in its memory
//! cgroup).
//!
//! RSS here is what `VmRSS` shows (file + anon + shmem pages), not what the memory cgroup charges
//! (which adds page cache the process does not map and kernel memory): the cgroup's figure stays
//! `srediag_plugin_memory_bytes{name}`.

use aya::maps::{HashMap, MapData, MapError, PerCpuArray};

use super::abi::Rss;

/// The page size (bytes).
pub(super) fn page_size() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// Resident bytes of `plugin_id`: the sum over its processes.
pub(super) fn rss_bytes(map: &HashMap<MapData, u32, Rss>, plugin_id: u32) -> u64 {
    let pages: u64 = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.plugin_id == plugin_id)
        .map(|(_, v)| v.pages)
        .sum();
    pages.saturating_mul(page_size())
}

/// OOM kills of `plugin_id`, summed over CPUs.
pub(super) fn oom_kills(map: &PerCpuArray<MapData, u64>, plugin_id: u32) -> Result<u64, MapError> {
    Ok(map.get(&plugin_id, 0)?.iter().sum())
}

/// Resident pages of `pid` from `/proc/<pid>/statm` (second field), to seed a process that
/// does not change its RSS after registration.
fn statm_resident(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Seeds `pids` of `plugin_id` (only those the kernel side has not written yet).
pub(super) fn seed(map: &mut HashMap<MapData, u32, Rss>, plugin_id: u32, pids: &[u32]) {
    for &pid in pids {
        if pid == 0 || map.get(&pid, 0).is_ok() {
            continue;
        }
        if let Some(pages) = statm_resident(pid) {
            let _ = map.insert(
                pid,
                Rss {
                    pages,
                    plugin_id,
                    pad: 0,
                },
                1, // BPF_NOEXIST: never overwrite what the kernel wrote meanwhile
            );
        }
    }
}

/// Forgets every process of `plugin_id`.
pub(super) fn remove_plugin(map: &mut HashMap<MapData, u32, Rss>, plugin_id: u32) {
    let pids: Vec<u32> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.plugin_id == plugin_id)
        .map(|(k, _)| k)
        .collect();
    for pid in pids {
        let _ = map.remove(&pid);
    }
}

/// Forgets process `pid`.
pub(super) fn remove_pid(map: &mut HashMap<MapData, u32, Rss>, pid: u32) {
    let _ = map.remove(&pid);
}
