//! Facts about the running kernel that a plugin's manifest may require (`requires.min_kernel`,
//! `requires.kernel_features`), probed through a [`Host`] so the probe is unit-tested against a
//! fake host. The agent puts them into the trust crate's `HostInfo`; the trust crate never probes
//! the host itself.

use std::collections::BTreeSet;
use std::path::Path;

use super::Host;

/// Kernel features a manifest may name.
pub const KNOWN_KERNEL_FEATURES: [&str; 4] = ["btf", "cgroup2", "landlock", "seccomp"];

/// What the running kernel is and has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// Running kernel `(major, minor)`, when `uname` answered with a parseable release.
    pub kernel: Option<(u32, u32)>,
    /// The [`KNOWN_KERNEL_FEATURES`] present.
    pub features: BTreeSet<String>,
}

/// Probes `host`: the release from `uname`, and each of [`KNOWN_KERNEL_FEATURES`].
pub fn kernel_facts(host: &dyn Host) -> KernelFacts {
    let release = host.uname().map(|u| u.release).unwrap_or_default();
    let lsm = host
        .read_to_string(Path::new("/sys/kernel/security/lsm"))
        .unwrap_or_default();
    let probes = [
        ("btf", host.exists(Path::new("/sys/kernel/btf/vmlinux"))),
        (
            "cgroup2",
            host.exists(Path::new("/sys/fs/cgroup/cgroup.controllers"))
                || host.exists(Path::new("/sys/fs/cgroup/unified/cgroup.controllers")),
        ),
        // Asked of the kernel (landlock_create_ruleset's ABI query): securityfs, where
        // /sys/kernel/security/lsm lives, is often not mounted (it is not on the reference VM).
        (
            "landlock",
            host.landlock_abi().is_ok() || lsm.split(',').any(|l| l.trim() == "landlock"),
        ),
        (
            "seccomp",
            host.exists(Path::new("/proc/sys/kernel/seccomp/actions_avail")),
        ),
    ];
    KernelFacts {
        kernel: parse_kernel(&release),
        features: probes
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(f, _)| f.to_string())
            .collect(),
    }
}

/// `major.minor[.patch]` of a kernel release (`6.18.0-foo` → (6, 18)).
pub fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    #[test]
    fn facts_come_from_the_host() {
        let mut h = FakeHost::new();
        h.write("/sys/kernel/btf/vmlinux", "x");
        h.write("/sys/fs/cgroup/unified/cgroup.controllers", "cpu memory");
        h.landlock = Err(crate::Errno::EOPNOTSUPP);
        let f = kernel_facts(&h);
        assert_eq!(f.kernel, Some((6, 8)));
        assert_eq!(
            f.features.iter().map(String::as_str).collect::<Vec<_>>(),
            ["btf", "cgroup2"]
        );
        // Landlock named by securityfs counts even when the ABI query fails.
        h.write(
            "/sys/kernel/security/lsm",
            "lockdown,capability,landlock,yama",
        );
        h.write("/proc/sys/kernel/seccomp/actions_avail", "kill_process");
        assert_eq!(kernel_facts(&h).features.len(), 4);
        h.uname = Err(crate::Errno::EPERM);
        assert_eq!(kernel_facts(&h).kernel, None);
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_kernel("6.18.0-foo"), Some((6, 18)));
        assert_eq!(parse_kernel("5.15+"), Some((5, 15)));
        assert_eq!(parse_kernel("6"), None);
        assert_eq!(parse_kernel("x.y"), None);
    }
}
