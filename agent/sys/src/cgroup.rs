//! cgroup layout detection: which hierarchies are mounted (v1, v2 or both), which controllers
//! each one has, and where a controller should be driven from. Shared by `srediag probe` and the
//! plugin sandbox.
//!
//! Sources: `/proc/self/mountinfo` (cgroup2 mounts; cgroup v1 mounts whose super options name
//! their controllers), `cgroup.controllers` at the v2 mount root, and `/proc/cgroups` (controllers
//! the kernel has and the v1 hierarchy each is bound to).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mountinfo::{self, Mount};
use super::{FsError, Host};

/// Where the mountinfo is read from.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// The kernel's controller table.
pub const PROC_CGROUPS: &str = "/proc/cgroups";
/// The calling process's cgroup membership.
pub const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// A cgroup2 mount and v1 hierarchies that hold resource controllers.
    Hybrid,
    /// A cgroup2 mount and no v1 resource controllers (named v1 hierarchies may exist).
    V2,
    /// No cgroup file system is mounted in this mount namespace.
    None,
}

impl CgroupMode {
    /// `v1`, `hybrid`, `v2` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
            CgroupMode::None => "none",
        }
    }
}

/// A cgroup API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// cgroup v1.
    V1,
    /// cgroup v2.
    V2,
}

/// Whether an interface file of non-root cgroups exists, and where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileCheck {
    /// The file exists in `dir`.
    Present {
        /// The cgroup directory that was checked.
        dir: PathBuf,
    },
    /// The file does not exist in `dir`.
    Absent {
        /// The cgroup directory that was checked.
        dir: PathBuf,
    },
    /// Not checked: the file exists only in non-root cgroups and none was found to look in.
    NoChildCgroup,
}

/// The cgroup2 (unified) hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V2Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`.
    pub mount_point: PathBuf,
    /// The cgroup mounted there (`/` unless only a sub-tree is visible).
    pub root: String,
    /// Controllers listed in `cgroup.controllers` at the mount root.
    pub controllers: Vec<String>,
    /// `cgroup.kill` (kernel 5.14+), checked in a non-root cgroup.
    pub cgroup_kill: FileCheck,
    /// `cgroup.events` (`populated`/`frozen`), checked in a non-root cgroup.
    pub cgroup_events: FileCheck,
}

/// One cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V1Hierarchy {
    /// Where it is mounted (the first mount of the hierarchy in mountinfo).
    pub mount_point: PathBuf,
    /// The cgroup mounted there (`/` unless only a sub-tree is visible).
    pub root: String,
    /// Controllers bound to it (from the super options), e.g. `["cpu", "cpuacct"]`.
    pub controllers: Vec<String>,
    /// The `name=` of a named hierarchy (e.g. `systemd`).
    pub name: Option<String>,
}

/// A row of `/proc/cgroups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelController {
    /// Controller name.
    pub name: String,
    /// The v1 hierarchy id it is bound to (0: on v2, or not mounted).
    pub hierarchy: u32,
    /// Whether it is enabled (`cgroup_disable=` turns it off).
    pub enabled: bool,
}

/// Where srediag drives a controller from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerHome {
    /// Controller name.
    pub controller: String,
    /// The hierarchy's version.
    pub version: CgroupVersion,
    /// The hierarchy's mount point.
    pub mount_point: PathBuf,
}

/// The cgroup layout of the host as seen from this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLayout {
    /// v1, hybrid, v2 or none.
    pub mode: CgroupMode,
    /// The cgroup2 hierarchy, when mounted.
    pub v2: Option<V2Hierarchy>,
    /// The mounted v1 hierarchies, one entry per hierarchy.
    pub v1: Vec<V1Hierarchy>,
    /// The rows of `/proc/cgroups` (empty when unreadable).
    pub kernel_controllers: Vec<KernelController>,
    /// Secondary sources that could not be read.
    pub warnings: Vec<String>,
}

impl CgroupLayout {
    /// Where `controller` should be driven from: the v2 hierarchy when it has the controller,
    /// else the v1 hierarchy bound to it, else `None`.
    pub fn home_of(&self, controller: &str) -> Option<ControllerHome> {
        if let Some(v2) = &self.v2
            && v2.controllers.iter().any(|c| c == controller)
        {
            return Some(ControllerHome {
                controller: controller.to_owned(),
                version: CgroupVersion::V2,
                mount_point: v2.mount_point.clone(),
            });
        }
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| ControllerHome {
                controller: controller.to_owned(),
                version: CgroupVersion::V1,
                mount_point: h.mount_point.clone(),
            })
    }
}

/// Parses `/proc/cgroups` (header and malformed lines are skipped).
pub fn parse_proc_cgroups(text: &str) -> Vec<KernelController> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let name = f.next()?.to_owned();
            let hierarchy = f.next()?.parse().ok()?;
            let _num_cgroups = f.next()?;
            let enabled = f.next()? == "1";
            Some(KernelController {
                name,
                hierarchy,
                enabled,
            })
        })
        .collect()
}

fn v1_hierarchy(m: &Mount) -> V1Hierarchy {
    let mut controllers = Vec::new();
    let mut name = None;
    for opt in m.super_option_list() {
        if let Some(n) = opt.strip_prefix("name=") {
            name = Some(n.to_owned());
        } else if !matches!(
            opt,
            "rw" | "ro" | "none" | "noprefix" | "clone_children" | "xattr"
        ) && !opt.contains('=')
        {
            controllers.push(opt.to_owned());
        }
    }
    V1Hierarchy {
        mount_point: m.mount_point.clone(),
        root: m.root.clone(),
        controllers,
        name,
    }
}

/// The directory of a non-root v2 cgroup to look for `cgroup.kill` / `cgroup.events` in: our own
/// cgroup when it is not the root, else the first child cgroup of the mount root.
fn child_cgroup_dir(host: &dyn Host, mount_point: &Path, root: &str) -> Option<PathBuf> {
    if let Ok(text) = host.read_to_string(Path::new(PROC_SELF_CGROUP)) {
        let own = text.lines().find_map(|l| l.strip_prefix("0::"));
        if let Some(own) = own {
            let rel = own
                .strip_prefix(root)
                .unwrap_or(own)
                .trim_start_matches('/');
            if !rel.is_empty() {
                let dir = mount_point.join(rel);
                if host.exists(&dir.join("cgroup.procs")) {
                    return Some(dir);
                }
            }
        }
    }
    let names = host.read_dir_names(mount_point).ok()?;
    names
        .iter()
        .map(|n| mount_point.join(n))
        .find(|dir| host.exists(&dir.join("cgroup.procs")))
}

fn check_file(host: &dyn Host, dir: Option<&Path>, file: &str) -> FileCheck {
    match dir {
        Some(dir) if host.exists(&dir.join(file)) => FileCheck::Present {
            dir: dir.to_owned(),
        },
        Some(dir) => FileCheck::Absent {
            dir: dir.to_owned(),
        },
        None => FileCheck::NoChildCgroup,
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_owned).collect()
}

/// Detects the cgroup layout. Fails only when mountinfo cannot be read; other unreadable
/// sources are listed in [`CgroupLayout::warnings`].
pub fn detect(host: &dyn Host) -> Result<CgroupLayout, FsError> {
    let mounts = mountinfo::parse(&host.read_to_string(Path::new(MOUNTINFO))?);
    let mut warnings = Vec::new();
    let kernel_controllers = match host.read_to_string(Path::new(PROC_CGROUPS)) {
        Ok(text) => parse_proc_cgroups(&text),
        Err(e) => {
            warnings.push(e.to_string());
            Vec::new()
        }
    };

    let mut v1 = Vec::<V1Hierarchy>::new();
    let mut v1_devices = Vec::<&str>::new();
    for m in mounts.iter().filter(|m| m.fs_type == "cgroup") {
        if !v1_devices.contains(&m.device.as_str()) {
            v1_devices.push(&m.device);
            v1.push(v1_hierarchy(m));
        }
    }

    let v2_mounts: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "cgroup2").collect();
    let v2_mount = v2_mounts
        .iter()
        .find(|m| m.root == "/")
        .or(v2_mounts.first())
        .copied();
    let v2 = v2_mount.map(|m| {
        let controllers_path = m.mount_point.join("cgroup.controllers");
        let controllers = match host.read_to_string(&controllers_path) {
            Ok(text) => words(&text),
            Err(e) => {
                warnings.push(e.to_string());
                // Fallback: enabled controllers not bound to any v1 hierarchy.
                kernel_controllers
                    .iter()
                    .filter(|k| k.enabled && k.hierarchy == 0)
                    .map(|k| k.name.clone())
                    .collect()
            }
        };
        let child = child_cgroup_dir(host, &m.mount_point, &m.root);
        V2Hierarchy {
            mount_point: m.mount_point.clone(),
            root: m.root.clone(),
            controllers,
            cgroup_kill: check_file(host, child.as_deref(), "cgroup.kill"),
            cgroup_events: check_file(host, child.as_deref(), "cgroup.events"),
        }
    });

    let v1_has_controllers = v1.iter().any(|h| !h.controllers.is_empty());
    let mode = match (&v2, v1.is_empty()) {
        (Some(_), _) if v1_has_controllers => CgroupMode::Hybrid,
        (Some(_), _) => CgroupMode::V2,
        (None, false) => CgroupMode::V1,
        (None, true) => CgroupMode::None,
    };
    Ok(CgroupLayout {
        mode,
        v2,
        v1,
        kernel_controllers,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    #[test]
    fn proc_cgroups_rows() {
        let rows = parse_proc_cgroups(
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t43\t1\ncpu\t0\t1\t0\nbad\n",
        );
        assert_eq!(
            rows,
            [
                KernelController {
                    name: "memory".into(),
                    hierarchy: 4,
                    enabled: true
                },
                KernelController {
                    name: "cpu".into(),
                    hierarchy: 0,
                    enabled: false
                },
            ]
        );
    }

    #[test]
    fn v1_super_options() {
        let m = &mountinfo::parse(
            "1 0 0:9 / /cg rw - cgroup cgroup rw,nosuid,cpu,cpuacct,release_agent=/x,name=foo\n",
        )[0];
        let h = v1_hierarchy(m);
        assert_eq!(h.name.as_deref(), Some("foo"));
        // "nosuid" is not a cgroup super option in practice, but unknown bare words are kept.
        assert_eq!(h.controllers, ["nosuid", "cpu", "cpuacct"]);
    }

    #[test]
    fn own_cgroup_inside_a_bind_mounted_subtree() {
        // A container that sees only /kubepods/pod1 of the host's v2 tree at /sys/fs/cgroup.
        let h = FakeHost::new();
        h.write(
            MOUNTINFO,
            "9 1 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .write(PROC_SELF_CGROUP, "0::/kubepods/pod1/app\n")
        .write("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n")
        .write("/sys/fs/cgroup/app/cgroup.procs", "1\n")
        .write("/sys/fs/cgroup/app/cgroup.kill", "");
        let layout = detect(&h).unwrap();
        assert_eq!(layout.mode, CgroupMode::V2);
        let v2 = layout.v2.unwrap();
        assert_eq!(v2.root, "/kubepods/pod1");
        let dir = PathBuf::from("/sys/fs/cgroup/app");
        assert_eq!(v2.cgroup_kill, FileCheck::Present { dir: dir.clone() });
        assert_eq!(v2.cgroup_events, FileCheck::Absent { dir });
        // /proc/cgroups missing: a warning, not an error.
        assert_eq!(layout.warnings.len(), 1);
        assert!(layout.warnings[0].contains("/proc/cgroups"));
    }

    #[test]
    fn unreadable_controllers_fall_back_to_proc_cgroups() {
        let h = FakeHost::new();
        h.write(
            MOUNTINFO,
            "9 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .write(
            PROC_CGROUPS,
            "#h\nmemory\t0\t1\t1\ncpu\t3\t1\t1\npids\t0\t1\t0\n",
        );
        let layout = detect(&h).unwrap();
        assert_eq!(layout.v2.unwrap().controllers, ["memory"]);
        assert!(detect(&FakeHost::new()).is_err());
    }
}
