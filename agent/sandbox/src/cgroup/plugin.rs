//! [`FsCgroup`]: one plugin's cgroup, a directory in each hierarchy of the plan.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::driver::Roles;
use super::fs::{self, CgroupFs};
use super::{CgroupError, CgroupVersion, Home, PluginCgroup};
use super::{cpu, memory, pids, sys, v1, v2};

/// Kill rounds before [`PluginCgroup::kill_all`] gives up (about 0.8 s with the back-off).
pub const KILL_ROUNDS: u32 = 100;
/// `rmdir` attempts while the kernel answers `EBUSY` (about 0.4 s with the back-off).
pub const RMDIR_ATTEMPTS: u32 = 60;

/// Back-off after round `n`: 200 µs for the first 20 rounds (killed tasks usually exit within
/// a few hundred µs), then 10 ms.
fn backoff(n: u32) -> Duration {
    Duration::from_micros(if n < 20 { 200 } else { 10_000 })
}

/// One plugin's cgroup: a directory per hierarchy (the same relative path in each).
#[derive(Debug)]
pub struct FsCgroup {
    name: String,
    fs: Arc<dyn CgroupFs>,
    dirs: Vec<(PathBuf, CgroupVersion)>,
    roles: Roles,
}

impl FsCgroup {
    pub(super) fn new(
        name: String,
        fs: Arc<dyn CgroupFs>,
        dirs: Vec<(PathBuf, CgroupVersion)>,
        roles: Roles,
    ) -> FsCgroup {
        FsCgroup {
            name,
            fs,
            dirs,
            roles,
        }
    }

    /// The directories, one per hierarchy, in plan order.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(d, _)| d.as_path())
    }

    pub(super) fn home(&self, i: usize) -> Home {
        let (dir, version) = &self.dirs[i];
        Home {
            dir: dir.clone(),
            version: *version,
        }
    }

    fn role(&self, role: Option<usize>) -> Option<Home> {
        role.map(|i| self.home(i))
    }

    /// How many forks `pids.max` refused (`pids.events` `max`).
    pub fn refused_forks(&self) -> Option<u64> {
        pids::refused_forks(&*self.fs, &self.role(self.roles.pids)?)
    }

    /// The union of every directory's `cgroup.procs`. A missing directory or file counts as
    /// empty (it was removed); a membership of the agent itself is an error.
    fn members(&self) -> Result<BTreeSet<u32>, CgroupError> {
        let me = std::process::id();
        let mut all = BTreeSet::new();
        for (dir, _) in &self.dirs {
            let path = dir.join("cgroup.procs");
            let text = match self.fs.read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CgroupError::Read { path, source }),
            };
            for pid in fs::parse_pids(&text) {
                if pid == me {
                    return Err(CgroupError::ContainsSelf { path, pid });
                }
                all.insert(pid);
            }
        }
        Ok(all)
    }

    /// Freezes the cgroup (v2 `cgroup.freeze`, else the v1 freezer) and waits up to ~2 ms for
    /// it to settle. Returns the thaw action, `None` when nothing could be frozen.
    fn freeze(&self) -> Option<Thaw<'_>> {
        let (dir, v2) = if let Some(i) = self.roles.v2 {
            (&self.dirs[i].0, true)
        } else if let Some(i) = self.roles.freezer {
            (&self.dirs[i].0, false)
        } else {
            return None;
        };
        let fs = &*self.fs;
        let ok = if v2 {
            v2::set_frozen(fs, dir, true)
        } else {
            v1::set_frozen(fs, dir, true)
        };
        if !ok {
            return None;
        }
        for n in 0..10 {
            let frozen = if v2 {
                v2::is_frozen(fs, dir)
            } else {
                v1::is_frozen(fs, dir)
            };
            if frozen {
                break;
            }
            std::thread::sleep(backoff(n));
        }
        Some(Thaw { fs, dir, v2 })
    }

    /// Sends `SIGKILL` to `pids` through pidfds: each pid is opened, the membership re-read, and
    /// only processes still listed are signalled, so a pid reused by an outside process after
    /// the first read is never hit. Gone processes are skipped.
    fn signal(&self, pids: &BTreeSet<u32>) -> Result<(), CgroupError> {
        let mut handles = Vec::new();
        let mut plain = Vec::new();
        for &pid in pids {
            match sys::pidfd_open(pid) {
                Ok(fd) => handles.push((pid, fd)),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => plain.push(pid),
                Err(_) => {} // ESRCH: already gone.
            }
        }
        let still = self.members()?;
        let gone = |e: &io::Error| e.raw_os_error() == Some(libc::ESRCH);
        for (pid, fd) in handles.iter().filter(|(p, _)| still.contains(p)) {
            if let Err(source) = sys::pidfd_kill(fd)
                && !gone(&source)
            {
                return Err(self.signal_error(*pid, source));
            }
        }
        for pid in plain.into_iter().filter(|p| still.contains(p)) {
            if let Err(source) = sys::kill(pid)
                && !gone(&source)
            {
                return Err(self.signal_error(pid, source));
            }
        }
        Ok(())
    }

    fn signal_error(&self, pid: u32, source: io::Error) -> CgroupError {
        CgroupError::Signal {
            name: self.name.clone(),
            pid,
            source,
        }
    }

    /// Removes `dir` and any child cgroups below it, retrying while `EBUSY`.
    fn remove_tree(&self, dir: &Path) -> Result<(), CgroupError> {
        match self.fs.subdirs(dir) {
            Ok(children) => {
                for child in children {
                    self.remove_tree(&dir.join(child))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(CgroupError::List {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
        let mut attempt = 0;
        loop {
            match self.fs.rmdir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt + 1 < RMDIR_ATTEMPTS => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: dir.to_owned(),
                        source,
                    });
                }
            }
        }
    }
}

/// Thaws on demand (a kill round thaws so that v1-frozen tasks can die).
struct Thaw<'a> {
    fs: &'a dyn CgroupFs,
    dir: &'a Path,
    v2: bool,
}

impl Thaw<'_> {
    fn thaw(self) {
        if self.v2 {
            v2::set_frozen(self.fs, self.dir, false);
        } else {
            v1::set_frozen(self.fs, self.dir, false);
        }
    }
}

impl PluginCgroup for FsCgroup {
    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(d, _)| d.join("cgroup.procs"))
            .collect()
    }

    fn pids(&self) -> Vec<u32> {
        let mut all = BTreeSet::new();
        for (dir, _) in &self.dirs {
            if let Ok(text) = self.fs.read(&dir.join("cgroup.procs")) {
                all.extend(fs::parse_pids(&text));
            }
        }
        all.into_iter().collect()
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let kill_file = self
            .roles
            .v2
            .and_then(|i| v2::kill_file(&*self.fs, &self.dirs[i].0));
        let mut left = BTreeSet::new();
        for round in 0..KILL_ROUNDS {
            left = self.members()?;
            if left.is_empty() {
                return Ok(());
            }
            match &kill_file {
                Some(path) => {
                    // Atomic against forks; reaches every member of the v2 cgroup. Members of a
                    // v1 directory only (a partial join) are signalled from the third round on.
                    fs::write(&*self.fs, path, "1")?;
                    if round >= 2 {
                        self.signal(&left)?;
                    }
                }
                None => {
                    let thaw = self.freeze();
                    let listed = self.members();
                    let signalled = listed.and_then(|pids| self.signal(&pids));
                    if let Some(thaw) = thaw {
                        thaw.thaw();
                    }
                    signalled?;
                }
            }
            std::thread::sleep(backoff(round));
        }
        Err(CgroupError::KillTimeout {
            name: self.name.clone(),
            pids: left.into_iter().collect(),
            rounds: KILL_ROUNDS,
        })
    }

    fn memory_current(&self) -> Option<u64> {
        memory::current(&*self.fs, &self.role(self.roles.memory)?)
    }

    fn cpu_usage_ns(&self) -> Option<u64> {
        cpu::usage_ns(&*self.fs, &self.role(self.roles.cpuacct)?)
    }

    fn oom_kills(&self) -> Option<u64> {
        memory::oom_kills(&*self.fs, &self.role(self.roles.memory)?)
    }

    fn is_populated(&self) -> bool {
        if let Some(i) = self.roles.v2
            && let Some(p) = v2::populated(&*self.fs, &self.dirs[i].0)
        {
            return p;
        }
        !self.pids().is_empty()
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for (dir, _) in &self.dirs {
            if let Err(e) = self.remove_tree(dir) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
