//! The kernel matrix: which kernels, in which cgroup setup, with how many vCPUs.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

/// A kernel of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// This machine's own kernel, run natively (the reference row).
    Host,
    /// A Debian kernel booted under QEMU.
    Debian(DebianKernel),
}

/// Where a Debian kernel comes from: its suites (archive and security) and the metapackage that
/// names the current image of that suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebianKernel {
    /// `debian-6.1`, …
    pub name: &'static str,
    /// The suites whose indexes are read: the first of the archive, then any of the security
    /// archive (`-security` suffix).
    pub suites: &'static [&'static str],
    /// The metapackage whose `Depends` is the current versioned image.
    pub meta: &'static str,
    /// What the row stands for.
    pub about: &'static str,
}

/// Debian 12's own kernel (bookworm).
pub const DEBIAN_6_1: DebianKernel = DebianKernel {
    name: "debian-6.1",
    suites: &["bookworm", "bookworm-updates", "bookworm-security"],
    meta: "linux-image-cloud-amd64",
    about: "Debian 12 (bookworm) stock kernel",
};
/// Debian 12's backports kernel.
pub const DEBIAN_6_12: DebianKernel = DebianKernel {
    name: "debian-6.12",
    suites: &["bookworm-backports"],
    meta: "linux-image-cloud-amd64",
    about: "Debian 12 bookworm-backports kernel (Debian 13's series)",
};
/// Debian 11's kernel (bullseye; no Landlock, no cgroup.kill).
pub const DEBIAN_5_10: DebianKernel = DebianKernel {
    name: "debian-5.10",
    suites: &["bullseye", "bullseye-updates", "bullseye-security"],
    meta: "linux-image-cloud-amd64",
    about: "Debian 11 (bullseye) stock kernel",
};

pub const DEBIAN: [DebianKernel; 3] = [DEBIAN_5_10, DEBIAN_6_1, DEBIAN_6_12];

impl FromStr for Kernel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Kernel> {
        if s == "host" {
            return Ok(Kernel::Host);
        }
        match DEBIAN.iter().find(|d| d.name == s) {
            Some(d) => Ok(Kernel::Debian(*d)),
            None => bail!(
                "unknown kernel {s:?}: one of host, {}",
                DEBIAN.map(|d| d.name).join(", ")
            ),
        }
    }
}

/// How cgroups are mounted in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupSetup {
    /// `cgroup2` only, at /sys/fs/cgroup, with `+cpu +memory +pids` delegated to children.
    V2,
    /// Like this machine: v1 hierarchies for cpu, cpuacct, cpuset, memory, pids and freezer under
    /// /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified.
    Hybrid,
    /// The host row: whatever the host has (detected).
    Native,
}

impl fmt::Display for CgroupSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupSetup::V2 => "v2",
            CgroupSetup::Hybrid => "hybrid",
            CgroupSetup::Native => "native",
        })
    }
}

/// Which tests run in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Subset {
    /// What CI runs in its guest (a few minutes under TCG): probe, the default run's plugin,
    /// one hostile plugin, the cgroup limits, the observers' core tests.
    Ci,
    /// Every privileged test of the observer and sandbox files, and the start benchmark.
    Full,
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub kernel: Kernel,
    pub cgroup: CgroupSetup,
    pub smp: u32,
}

impl Row {
    /// `debian-6.1-v2-smp1`: the report directory's name.
    pub fn id(&self) -> String {
        match self.kernel {
            Kernel::Host => "host".to_string(),
            Kernel::Debian(d) => format!("{}-{}-smp{}", d.name, self.cgroup, self.smp),
        }
    }
}

/// The rows for `kernels` (all when empty): every guest kernel with cgroup v2 only, plus the
/// hybrid row(s) (`hybrid`: each guest kernel also hybrid; by default only 6.1: Debian's 6.12 is
/// built without `CONFIG_MEMCG_V1`, so its "hybrid" keeps memory on v2), plus the host.
pub fn rows(kernels: &[Kernel], hybrid: bool, smp: u32) -> Vec<Row> {
    let default = kernels.is_empty();
    let selected: Vec<Kernel> = if default {
        let mut v = vec![Kernel::Host];
        v.extend(DEBIAN.iter().map(|d| Kernel::Debian(*d)));
        v
    } else {
        kernels.to_vec()
    };
    let mut out = Vec::new();
    for k in selected {
        match k {
            Kernel::Host => out.push(Row {
                kernel: k,
                cgroup: CgroupSetup::Native,
                smp: 0,
            }),
            Kernel::Debian(d) => {
                out.push(Row {
                    kernel: k,
                    cgroup: CgroupSetup::V2,
                    smp,
                });
                if hybrid || (default && d == DEBIAN_6_1) {
                    out.push(Row {
                        kernel: k,
                        cgroup: CgroupSetup::Hybrid,
                        smp,
                    });
                }
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matrix_has_host_v2_rows_and_one_hybrid() {
        let r = rows(&[], false, 1);
        let ids: Vec<String> = r.iter().map(Row::id).collect();
        assert_eq!(
            ids,
            [
                "host",
                "debian-5.10-v2-smp1",
                "debian-6.1-v2-smp1",
                "debian-6.1-hybrid-smp1",
                "debian-6.12-v2-smp1",
            ]
        );
        let one = rows(&["debian-6.1".parse().unwrap()], true, 2);
        assert_eq!(
            one.iter().map(Row::id).collect::<Vec<_>>(),
            ["debian-6.1-v2-smp2", "debian-6.1-hybrid-smp2"]
        );
        assert!("debian-9".parse::<Kernel>().is_err());
    }
}
