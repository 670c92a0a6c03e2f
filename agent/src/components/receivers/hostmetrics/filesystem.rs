//! `system.filesystem.usage` and `system.filesystem.utilization` from mountinfo and statvfs(2).
//!
//! Mounts come from `<root_path>/proc/self/mountinfo`: the mount namespace of the agent itself,
//! where, in a container, the host's mounts appear below `root_path` (`/hostfs/var`). Only mounts
//! at or below `root_path` are reported, under their host path (`/var`); statvfs(2) is given the
//! path as the agent sees it. When several mounts share a mount point, the last one (the visible
//! one) wins. A mount whose statvfs(2) fails (permission denied, stale NFS handle) or whose size
//! is zero (pseudo file systems) is skipped alone; the scraper fails only if every mount fails.
//!
//! Per mount: `used` = (`f_blocks` − `f_bfree`) × `f_frsize`, `free` = `f_bavail` × `f_frsize`
//! (what unprivileged users can still write), `reserved` = (`f_bfree` − `f_bavail`) × `f_frsize`
//! (kept for root), so the states sum to the size; utilization = used / (used + free), as df(1)'s
//! `Use%` and the OpenTelemetry Collector compute it.

use super::{Context, FsStat, ScrapeError, StatFs, matches_any, now_nanos, read, to_i64};
use crate::model::metrics::Metric;
use crate::model::{attr_str, gauge_f64, sum_i64};
use procfs::process::MountInfo;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A mount to report.
struct Mount {
    /// The path statvfs(2) is given (as the agent sees it).
    path: PathBuf,
    /// The mount point as the host sees it (`root_path` stripped).
    mount_point: String,
    device: String,
    fs_type: String,
    mode: &'static str,
}

pub(super) fn scrape(
    ctx: &Context<'_>,
    statfs: StatFs,
    failing_mounts: &mut HashSet<PathBuf>,
) -> Result<Vec<Metric>, ScrapeError> {
    let path = ctx.path("proc/self/mountinfo");
    let text = read(&path)?;
    let time = now_nanos();
    let mounts = mounts(ctx, &path, &text)?;

    let mut usage = Vec::with_capacity(mounts.len() * 3);
    let mut utilization = Vec::with_capacity(mounts.len());
    let mut first_failure: Option<(PathBuf, io::Error)> = None;
    let mut failed = 0;
    for m in &mounts {
        let st = match statfs(&m.path) {
            Ok(st) => {
                failing_mounts.remove(&m.path);
                st
            }
            Err(e) => {
                if failing_mounts.insert(m.path.clone()) {
                    tracing::warn!(mountpoint = %m.path.display(), error = %e, "statvfs failed, file system skipped");
                } else {
                    tracing::debug!(mountpoint = %m.path.display(), error = %e, "statvfs still failing, file system skipped");
                }
                failed += 1;
                first_failure.get_or_insert((m.path.clone(), e));
                continue;
            }
        };
        if st.blocks == 0 {
            continue;
        }
        let bytes = |blocks: u64| blocks.saturating_mul(st.frsize);
        let used = bytes(st.blocks.saturating_sub(st.bfree));
        let free = bytes(st.bavail);
        let reserved = bytes(st.bfree.saturating_sub(st.bavail));
        let attrs = |state: Option<&str>| {
            let mut a = vec![
                attr_str("device", m.device.clone()),
                attr_str("mode", m.mode),
                attr_str("mountpoint", m.mount_point.clone()),
                attr_str("type", m.fs_type.clone()),
            ];
            a.extend(state.map(|s| attr_str("state", s)));
            a
        };
        for (state, v) in [("used", used), ("free", free), ("reserved", reserved)] {
            usage.push((attrs(Some(state)), to_i64(v)));
        }
        let denominator = used as f64 + free as f64;
        if denominator > 0.0 {
            utilization.push((attrs(None), used as f64 / denominator));
        }
    }
    failing_mounts.retain(|p| mounts.iter().any(|m| &m.path == p));
    if failed == mounts.len()
        && let Some((path, source)) = first_failure
    {
        return Err(ScrapeError::Statvfs {
            count: failed,
            path,
            source,
        });
    }
    Ok(vec![
        sum_i64(
            "system.filesystem.usage",
            "Bytes used, free (for unprivileged users) and reserved (for root) on each file system.",
            "By",
            false,
            ctx.start,
            time,
            usage,
        ),
        gauge_f64(
            "system.filesystem.utilization",
            "Fraction of each file system's usable space that is used.",
            "1",
            time,
            utilization,
        ),
    ])
}

/// The mounts to report from mountinfo `text`: below `root_path`, not excluded, one per mount
/// point. Lines that do not parse are skipped; the file fails only if none parses.
fn mounts(ctx: &Context<'_>, path: &Path, text: &str) -> Result<Vec<Mount>, ScrapeError> {
    let root = ctx.cfg.root_path.as_path();
    let fs_cfg = &ctx.cfg.filesystem;
    let mut out: Vec<Mount> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut parsed = 0;
    let mut first_error = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let info = match MountInfo::from_line(line) {
            Ok(i) => i,
            Err(e) => {
                let e = super::parse_error(path, e);
                tracing::debug!(error = %e, line, "skipping a mountinfo line");
                first_error.get_or_insert(e);
                continue;
            }
        };
        parsed += 1;
        let actual = unescape(&info.mount_point.to_string_lossy());
        let Some(mount_point) = host_path(root, &actual) else {
            continue;
        };
        let fs_type = String::from_utf8_lossy(&unescape_bytes(&info.fs_type)).into_owned();
        if matches_any(&fs_cfg.exclude_fs_types, &fs_type)
            || matches_any(&fs_cfg.exclude_mount_points, &mount_point)
        {
            continue;
        }
        let device = match &info.mount_source {
            Some(s) => String::from_utf8_lossy(&unescape_bytes(s)).into_owned(),
            None => "none".to_string(),
        };
        let mode = if info.mount_options.contains_key("rw") {
            "rw"
        } else if info.mount_options.contains_key("ro") {
            "ro"
        } else {
            "unknown"
        };
        let mount = Mount {
            path: actual,
            mount_point: mount_point.clone(),
            device,
            fs_type,
            mode,
        };
        match index.get(&mount_point) {
            Some(&i) => out[i] = mount,
            None => {
                index.insert(mount_point, out.len());
                out.push(mount);
            }
        }
    }
    match first_error {
        Some(e) if parsed == 0 => Err(e),
        _ => Ok(out),
    }
}

/// The host's view of `path`: `path` itself when `root` is `/`, else `path` with `root` stripped
/// (`/hostfs/var` → `/var`, `/hostfs` → `/`), or `None` when `path` is not below `root`.
fn host_path(root: &Path, path: &Path) -> Option<String> {
    if root == Path::new("/") {
        return Some(path.to_string_lossy().into_owned());
    }
    let rest = path.strip_prefix(root).ok()?;
    Some(Path::new("/").join(rest).to_string_lossy().into_owned())
}

/// Undoes mountinfo's octal escapes (`\040` for a space, also tab, newline and backslash).
fn unescape(s: &str) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&unescape_bytes(s)))
}

fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, &c| acc * 8 + u32::from(c - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// statvfs(2) on `path`.
pub(super) fn statvfs(path: &Path) -> io::Result<FsStat> {
    let st = rustix::fs::statvfs(path)?;
    Ok(FsStat {
        blocks: st.f_blocks,
        bfree: st.f_bfree,
        bavail: st.f_bavail,
        frsize: if st.f_frsize > 0 {
            st.f_frsize
        } else {
            st.f_bsize
        },
    })
}

/// The reported mount points of mountinfo `text`, for tests.
#[cfg(test)]
pub(super) fn mount_points_for_test(ctx: &Context<'_>, text: &str) -> Vec<String> {
    mounts(ctx, Path::new("mountinfo"), text)
        .map(|v| v.into_iter().map(|m| m.mount_point).collect())
        .unwrap_or_default()
}

/// [`unescape`], for tests.
#[cfg(test)]
pub(super) fn unescape_for_test(s: &str) -> String {
    unescape(s).to_string_lossy().into_owned()
}
