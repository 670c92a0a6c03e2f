//! The memory controller: `memory_max` / `memory_high`, usage and OOM kills.
//!
//! | | v2 | v1 |
//! |---|---|---|
//! | hard limit | `memory.max` | `memory.limit_in_bytes` |
//! | throttle | `memory.high` | `memory.soft_limit_in_bytes` (reclaim hint under host pressure only) |
//! | usage | `memory.current` | `memory.usage_in_bytes` |
//! | OOM kills | `memory.events` `oom_kill` | `memory.oom_control` `oom_kill` |

use super::fs::{self, CgroupFs};
use super::{CgroupError, CgroupVersion, Home, Limits};

/// Writes the memory limits that are set.
pub(super) fn apply(fs: &dyn CgroupFs, home: &Home, limits: &Limits) -> Result<(), CgroupError> {
    let (max_file, high_file) = match home.version {
        CgroupVersion::V2 => ("memory.max", "memory.high"),
        CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.soft_limit_in_bytes"),
    };
    if let Some(max) = limits.memory_max {
        fs::write(fs, &home.dir.join(max_file), &max.to_string())?;
    }
    if let Some(high) = limits.memory_high {
        fs::write(fs, &home.dir.join(high_file), &high.to_string())?;
    }
    Ok(())
}

/// Current usage in bytes.
pub(super) fn current(fs: &dyn CgroupFs, home: &Home) -> Option<u64> {
    let file = match home.version {
        CgroupVersion::V2 => "memory.current",
        CgroupVersion::V1 => "memory.usage_in_bytes",
    };
    fs.read(&home.dir.join(file)).ok()?.trim().parse().ok()
}

/// How many processes the OOM killer killed in the cgroup.
pub(super) fn oom_kills(fs: &dyn CgroupFs, home: &Home) -> Option<u64> {
    let file = match home.version {
        CgroupVersion::V2 => "memory.events",
        CgroupVersion::V1 => "memory.oom_control",
    };
    fs::keyed(&fs.read(&home.dir.join(file)).ok()?, "oom_kill")
}
