//! [`FsDriver`]: plans which hierarchy each controller is driven on (from the detected
//! [`CgroupLayout`]), creates `<hierarchy>/<root_name>/<plugin>` directories only there, writes
//! the limits, and cleans up stale plugin cgroups.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use srediag_sys::cgroup::CgroupLayout;

use super::fs::CgroupFs;
use super::plugin::FsCgroup;
use super::{CgroupDriver, CgroupError, CgroupVersion, Limits, PluginCgroup};
use super::{cpu, memory, pids, v2};

/// One hierarchy srediag creates directories in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// v2 only: the controllers to enable in `cgroup.subtree_control` on the way down.
    pub enable: Vec<&'static str>,
}

/// Which [`Hierarchy`] (index into the plan) plays which role. Each controller sits on exactly
/// one hierarchy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Roles {
    /// The memory controller.
    pub memory: Option<usize>,
    /// The cpu controller.
    pub cpu: Option<usize>,
    /// CPU usage accounting: the cpu hierarchy on v2, the cpuacct hierarchy on v1, else the
    /// cgroup2 hierarchy (its core `cpu.stat`).
    pub cpuacct: Option<usize>,
    /// The pids controller.
    pub pids: Option<usize>,
    /// The cgroup2 hierarchy, with or without controllers: `cgroup.kill`, `cgroup.events`.
    pub v2: Option<usize>,
    /// The v1 freezer, only when there is no cgroup2 hierarchy at all.
    pub freezer: Option<usize>,
}

/// The plan: hierarchies and roles, from a layout.
pub(super) fn plan(layout: &CgroupLayout) -> (Vec<Hierarchy>, Roles) {
    let mut hs: Vec<Hierarchy> = Vec::new();
    let mut index = |version: CgroupVersion, mount: &Path| -> usize {
        if let Some(i) = hs.iter().position(|h| h.mount == mount) {
            return i;
        }
        hs.push(Hierarchy {
            version,
            mount: mount.to_owned(),
            enable: Vec::new(),
        });
        hs.len() - 1
    };
    let mut roles = Roles::default();
    let mut homes: Vec<(&'static str, usize, CgroupVersion)> = Vec::new();
    for controller in ["memory", "cpu", "pids"] {
        let Some(home) = layout.home_of(controller) else {
            continue;
        };
        let i = index(home.version, &home.mount_point);
        homes.push((controller, i, home.version));
        match controller {
            "memory" => roles.memory = Some(i),
            "cpu" => roles.cpu = Some(i),
            _ => roles.pids = Some(i),
        }
        if controller == "cpu" {
            roles.cpuacct = match home.version {
                CgroupVersion::V2 => Some(i),
                CgroupVersion::V1 => layout
                    .v1
                    .iter()
                    .find(|h| h.controllers.iter().any(|c| c == "cpuacct"))
                    .map(|h| index(CgroupVersion::V1, &h.mount_point)),
            };
        }
    }
    if let Some(v2h) = &layout.v2 {
        let i = index(CgroupVersion::V2, &v2h.mount_point);
        roles.v2 = Some(i);
        roles.cpuacct = roles.cpuacct.or(Some(i));
    } else {
        roles.freezer = layout
            .v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == "freezer"))
            .map(|h| index(CgroupVersion::V1, &h.mount_point));
    }
    for (controller, i, version) in homes {
        if version == CgroupVersion::V2 {
            hs[i].enable.push(controller);
        }
    }
    (hs, roles)
}

/// Checks one path component of a cgroup name.
fn check_component(full: &str, part: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: full.to_owned(),
            reason,
        })
    };
    if part.is_empty() {
        return bad("empty name or path component");
    }
    if part.len() > 128 {
        return bad("longer than 128 bytes");
    }
    if part.starts_with('.') {
        return bad("starts with a dot");
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

/// Validates a plugin name: one path component.
pub(super) fn check_name(name: &str) -> Result<(), CgroupError> {
    check_component(name, name)
}

/// Drives per-plugin cgroups with plain cgroupfs reads and writes, v1 or v2 per controller.
#[derive(Debug, Clone)]
pub struct FsDriver {
    fs: Arc<dyn CgroupFs>,
    root: PathBuf,
    hierarchies: Vec<Hierarchy>,
    roles: Roles,
}

impl FsDriver {
    /// A driver for `layout` creating plugin cgroups under `<mount>/<root_name>/` of each
    /// hierarchy it needs. `root_name` is one or more `/`-separated components (`srediag`, or a
    /// delegated sub-tree such as `system.slice/srediag.service/plugins`).
    pub fn new(
        layout: &CgroupLayout,
        root_name: &str,
        fs: Arc<dyn CgroupFs>,
    ) -> Result<FsDriver, CgroupError> {
        for part in root_name.split('/') {
            check_component(root_name, part)?;
        }
        let (hierarchies, roles) = plan(layout);
        if hierarchies.is_empty() {
            return Err(CgroupError::NoCgroupFs);
        }
        Ok(FsDriver {
            fs,
            root: PathBuf::from(root_name),
            hierarchies,
            roles,
        })
    }

    /// `<mount>/<root_name>` of every hierarchy used, in plan order.
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.mount.join(&self.root))
            .collect()
    }

    /// A handle on the (possibly partly existing) cgroup `name`, without creating anything.
    fn handle(&self, name: &str) -> FsCgroup {
        let dirs = self
            .hierarchies
            .iter()
            .map(|h| (h.mount.join(&self.root).join(name), h.version))
            .collect();
        FsCgroup::new(name.to_owned(), self.fs.clone(), dirs, self.roles)
    }

    /// Creates `<mount>/<root_name>` in every hierarchy (each level, `EEXIST` is fine), enabling
    /// the v2 controllers in `cgroup.subtree_control` from the mount root down.
    fn ensure_root(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let mut dir = h.mount.clone();
            for part in self.root.components() {
                v2::enable_controllers(&*self.fs, &dir, &h.enable)?;
                dir.push(part);
                mkdir(&*self.fs, &dir, true)?;
            }
            v2::enable_controllers(&*self.fs, &dir, &h.enable)?;
        }
        Ok(())
    }

    fn create_dirs(&self, cg: &FsCgroup, limits: &Limits) -> Result<(), CgroupError> {
        let mut created: Vec<&Path> = Vec::new();
        for dir in cg.dirs() {
            if let Err(e) = mkdir(&*self.fs, dir, false) {
                // Roll back only what this call created: an existing directory is not ours.
                for d in created.into_iter().rev() {
                    let _ = self.fs.rmdir(d);
                }
                return Err(e);
            }
            created.push(dir);
        }
        let home = |i: Option<usize>| i.map(|i| cg.home(i));
        let applied = (|| {
            if let Some(h) = home(self.roles.memory) {
                memory::apply(&*self.fs, &h, limits)?;
            }
            if let Some(h) = home(self.roles.cpu) {
                cpu::apply(&*self.fs, &h, limits)?;
            }
            if let Some(h) = home(self.roles.pids) {
                pids::apply(&*self.fs, &h, limits)?;
            }
            Ok(())
        })();
        if applied.is_err() {
            for d in created.into_iter().rev() {
                let _ = self.fs.rmdir(d);
            }
        }
        applied
    }
}

/// `mkdir`; with `exist_ok`, an existing directory is fine, else it is [`CgroupError::Exists`].
fn mkdir(fs: &dyn CgroupFs, dir: &Path, exist_ok: bool) -> Result<(), CgroupError> {
    match fs.mkdir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if exist_ok {
                Ok(())
            } else {
                Err(CgroupError::Exists {
                    path: dir.to_owned(),
                })
            }
        }
        Err(source) => Err(CgroupError::Create {
            path: dir.to_owned(),
            source,
        }),
    }
}

impl CgroupDriver for FsDriver {
    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn PluginCgroup>, CgroupError> {
        check_name(name)?;
        limits.validate()?;
        let need = |role: Option<usize>, controller, limit| match role {
            Some(_) => Ok(()),
            None => Err(CgroupError::ControllerUnavailable { controller, limit }),
        };
        if limits.memory_max.is_some() {
            need(self.roles.memory, "memory", "memory_max")?;
        }
        if limits.memory_high.is_some() {
            need(self.roles.memory, "memory", "memory_high")?;
        }
        if limits.cpu_weight.is_some() {
            need(self.roles.cpu, "cpu", "cpu_weight")?;
        }
        if limits.cpu_max.is_some() {
            need(self.roles.cpu, "cpu", "cpu_max")?;
        }
        if limits.pids_max.is_some() {
            need(self.roles.pids, "pids", "pids_max")?;
        }
        self.ensure_root()?;
        let cg = self.handle(name);
        self.create_dirs(&cg, limits)?;
        Ok(Box::new(cg))
    }

    fn cleanup_stale(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = BTreeSet::new();
        for root in self.root_dirs() {
            match self.fs.subdirs(&root) {
                Ok(found) => names.extend(found),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::List { path: root, source }),
            }
        }
        let mut cleaned = Vec::new();
        let mut failed = Vec::new();
        let mut first = None;
        for name in names {
            let cg = self.handle(&name);
            match cg.kill_all().and_then(|()| cg.remove()) {
                Ok(()) => cleaned.push(name),
                Err(e) => {
                    failed.push(name);
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(cleaned),
            Some(first) => Err(CgroupError::CleanupIncomplete {
                cleaned,
                failed,
                first: Box::new(first),
            }),
        }
    }

    fn remove_root(&self) -> Result<(), CgroupError> {
        for root in self.root_dirs() {
            match self.fs.rmdir(&root) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Remove { path: root, source }),
            }
        }
        Ok(())
    }
}
