//! Host facts shared by the probes (uname, privileges, BTF, mounts) and the kernel, arch,
//! privileges and BTF items.

use std::path::Path;

use super::{ProbeItem, Status, item};
use crate::sys::btf::Btf;
use crate::sys::caps::{self, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_RESOURCE, CapSet};
use crate::sys::mountinfo::{self, Mount};
use crate::sys::{Errno, Host, Uname};

/// Kernel BTF location.
pub(super) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The state of the kernel's BTF.
pub(super) enum BtfState {
    /// Read and parsed.
    Parsed { size: u64, btf: Btf },
    /// The file does not exist.
    Missing,
    /// Present but could not be read or parsed.
    Broken { error: String },
}

/// Facts gathered once and used by several probes.
pub(super) struct Facts {
    pub uname: Result<Uname, Errno>,
    /// (major, minor) of the kernel release.
    pub version: Option<(u32, u32)>,
    pub euid: u32,
    /// `CapEff`, or why it could not be read.
    pub cap_eff: Result<CapSet, String>,
    /// Whether trial BPF loads are worth attempting.
    pub can_load_bpf: bool,
    pub btf: BtfState,
    /// Mounts from `/proc/self/mountinfo`, or why they could not be read.
    pub mounts: Result<Vec<Mount>, String>,
}

/// `6.18.44-fc` → `(6, 18)`.
pub(super) fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Facts {
    pub(super) fn gather(host: &dyn Host) -> Facts {
        let uname = host.uname();
        let version = uname.as_ref().ok().and_then(|u| parse_version(&u.release));
        let euid = host.euid();
        let cap_eff = host
            .read_to_string(Path::new("/proc/self/status"))
            .map_err(|e| e.to_string())
            .and_then(|s| {
                caps::parse_status(&s, "CapEff")
                    .ok_or_else(|| "no CapEff line in /proc/self/status".to_owned())
            });
        let can_load_bpf = match &cap_eff {
            Ok(c) => c.has(CAP_SYS_ADMIN) || (c.has(CAP_BPF) && c.has(CAP_PERFMON)),
            Err(_) => euid == 0,
        };
        let btf_path = Path::new(VMLINUX_BTF);
        let btf = if !host.exists(btf_path) {
            BtfState::Missing
        } else {
            match host.read(btf_path) {
                Err(e) => BtfState::Broken {
                    error: e.to_string(),
                },
                Ok(data) => match Btf::parse(&data) {
                    Ok(btf) => BtfState::Parsed {
                        size: host.metadata_len(btf_path).unwrap_or(data.len() as u64),
                        btf,
                    },
                    Err(e) => BtfState::Broken {
                        error: e.to_string(),
                    },
                },
            }
        };
        let mounts = host
            .read_to_string(Path::new("/proc/self/mountinfo"))
            .map(|t| mountinfo::parse(&t))
            .map_err(|e| e.to_string());
        Facts {
            uname,
            version,
            euid,
            cap_eff,
            can_load_bpf,
            btf,
            mounts,
        }
    }

    /// The kernel release is at least `major.minor`.
    pub(super) fn kernel_at_least(&self, major: u32, minor: u32) -> bool {
        self.version.is_some_and(|v| v >= (major, minor))
    }

    /// The kernel release string, or `?`.
    pub(super) fn release(&self) -> &str {
        self.uname.as_ref().map_or("?", |u| u.release.as_str())
    }

    pub(super) fn btf(&self) -> Option<&Btf> {
        match &self.btf {
            BtfState::Parsed { btf, .. } => Some(btf),
            _ => None,
        }
    }
}

fn kernel_item(f: &Facts) -> ProbeItem {
    let u = match &f.uname {
        Ok(u) => u,
        Err(e) => {
            return item(
                "kernel",
                Status::Unavailable,
                format!("uname failed: {e}"),
                "kernel features are probed one by one below",
            );
        }
    };
    let detail = format!("{} {}", u.sysname, u.release);
    match f.version {
        Some(v) if v >= (5, 8) => item(
            "kernel",
            Status::Ok,
            detail,
            "5.8+ baseline for ring buffers, CAP_BPF and tp_btf; each feature is probed below",
        ),
        Some(_) => item(
            "kernel",
            Status::Degraded,
            detail,
            "older than 5.8: ring-buffer based eBPF observers may not load; see the items below",
        ),
        None => item(
            "kernel",
            Status::Degraded,
            format!("{detail} (release not parsable)"),
            "version-based inferences are skipped; each feature is probed below",
        ),
    }
}

fn arch_item(f: &Facts) -> ProbeItem {
    let machine = f.uname.as_ref().map_or("?", |u| u.machine.as_str());
    match machine {
        "x86_64" => item(
            "arch",
            Status::Ok,
            machine,
            "eBPF objects built with -D__TARGET_ARCH_x86; x86_64 syscall numbers",
        ),
        "aarch64" => item(
            "arch",
            Status::Ok,
            machine,
            "eBPF objects built with -D__TARGET_ARCH_arm64; generic (asm-generic) syscall numbers",
        ),
        other => item(
            "arch",
            Status::Degraded,
            other,
            "not a tested architecture: eBPF observers and syscall names may be wrong or missing",
        ),
    }
}

fn yes_no(set: CapSet, cap: u32) -> &'static str {
    if set.has(cap) { "yes" } else { "no" }
}

fn privileges_item(f: &Facts) -> ProbeItem {
    let caps = match &f.cap_eff {
        Ok(c) => format!(
            "CapEff {:016x}: CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {}, CAP_SYS_RESOURCE {}",
            c.0,
            yes_no(*c, CAP_BPF),
            yes_no(*c, CAP_PERFMON),
            yes_no(*c, CAP_SYS_ADMIN),
            yes_no(*c, CAP_SYS_RESOURCE)
        ),
        Err(e) => format!("capabilities unknown ({e})"),
    };
    let root = if f.euid == 0 { "root" } else { "not root" };
    let detail = format!("euid {} ({root}); {caps}", f.euid);
    if f.can_load_bpf {
        item(
            "privileges",
            Status::Ok,
            detail,
            "can load eBPF observers (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN)",
        )
    } else {
        item(
            "privileges",
            Status::Unavailable,
            detail,
            "needs root (CAP_BPF): eBPF observers are disabled",
        )
    }
}

fn btf_item(f: &Facts) -> ProbeItem {
    match &f.btf {
        BtfState::Parsed { size, btf } => item(
            "btf",
            Status::Ok,
            format!(
                "{VMLINUX_BTF} present ({size} bytes, {} types)",
                btf.type_count()
            ),
            "CO-RE relocations and tp_btf/fentry attach ids come from the kernel's BTF",
        ),
        BtfState::Missing => item(
            "btf",
            Status::Degraded,
            format!("{VMLINUX_BTF} missing (kernel without CONFIG_DEBUG_INFO_BTF)"),
            "no CO-RE or tp_btf: observers fall back to classic tracepoints and raw_tp",
        ),
        BtfState::Broken { error } => item(
            "btf",
            Status::Degraded,
            format!("{VMLINUX_BTF} unusable: {error}"),
            "no CO-RE or tp_btf: observers fall back to classic tracepoints and raw_tp",
        ),
    }
}

pub(super) fn items(f: &Facts) -> Vec<ProbeItem> {
    vec![
        kernel_item(f),
        arch_item(f),
        privileges_item(f),
        btf_item(f),
    ]
}
