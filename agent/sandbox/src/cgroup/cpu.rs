//! The cpu controller (`cpu_weight`, `cpu_max`) and CPU usage accounting.
//!
//! | | v2 | v1 |
//! |---|---|---|
//! | share | `cpu.weight` (1..10000) | `cpu.shares` = weight × 1024 / 100 |
//! | cap | `cpu.max` `"quota period"` | `cpu.cfs_period_us`, then `cpu.cfs_quota_us` |
//! | usage | `cpu.stat` `usage_usec` (core file: present without the controller) | `cpuacct.usage` (ns) |

use super::fs::{self, CgroupFs};
use super::limits::shares_from_weight;
use super::{CgroupError, CgroupVersion, Home, Limits};

/// Writes the CPU limits that are set.
pub(super) fn apply(fs: &dyn CgroupFs, home: &Home, limits: &Limits) -> Result<(), CgroupError> {
    let dir = &home.dir;
    match home.version {
        CgroupVersion::V2 => {
            if let Some(w) = limits.cpu_weight {
                fs::write(fs, &dir.join("cpu.weight"), &w.to_string())?;
            }
            if let Some((quota, period)) = limits.cpu_max {
                fs::write(fs, &dir.join("cpu.max"), &format!("{quota} {period}"))?;
            }
        }
        CgroupVersion::V1 => {
            if let Some(w) = limits.cpu_weight {
                let shares = shares_from_weight(w).to_string();
                fs::write(fs, &dir.join("cpu.shares"), &shares)?;
            }
            if let Some((quota, period)) = limits.cpu_max {
                // Period first: the quota is checked against the period in force.
                fs::write(fs, &dir.join("cpu.cfs_period_us"), &period.to_string())?;
                fs::write(fs, &dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
    }
    Ok(())
}

/// CPU time used by the cgroup's tasks, in ns. `home` is the accounting directory: a v2 cgroup
/// (`cpu.stat`) or a v1 cpuacct cgroup (`cpuacct.usage`).
pub(super) fn usage_ns(fs: &dyn CgroupFs, home: &Home) -> Option<u64> {
    match home.version {
        CgroupVersion::V2 => {
            let text = fs.read(&home.dir.join("cpu.stat")).ok()?;
            fs::keyed(&text, "usage_usec")?.checked_mul(1_000)
        }
        CgroupVersion::V1 => fs
            .read(&home.dir.join("cpuacct.usage"))
            .ok()?
            .trim()
            .parse()
            .ok(),
    }
}
