//! The pids controller: `pids.max` (same file in v1 and v2) and the count of refused forks.

use super::fs::{self, CgroupFs};
use super::{CgroupError, Home, Limits};

/// Writes `pids.max` when set.
pub(super) fn apply(fs: &dyn CgroupFs, home: &Home, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(max) = limits.pids_max {
        fs::write(fs, &home.dir.join("pids.max"), &max.to_string())?;
    }
    Ok(())
}

/// How many forks were refused because of `pids.max` (`pids.events` `max`).
pub(super) fn refused_forks(fs: &dyn CgroupFs, home: &Home) -> Option<u64> {
    fs::keyed(&fs.read(&home.dir.join("pids.events")).ok()?, "max")
}
