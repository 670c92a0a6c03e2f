//! **The configuration may only narrow what a signed manifest grants**: the manifest's sandbox
//! combined with a plugin's configuration ([`effective_sandbox`]).

use crate::plugins::config::{LimitsConfig, PluginConfig};
use crate::plugins::sandbox::landlock::TcpPorts;
use crate::plugins::sandbox::seccomp::SeccompAction;
use crate::plugins::trust::manifest::{Manifest, Network};
use std::path::{Path, PathBuf};

/// What the sandbox gets, after the manifest and the configuration were combined.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveSandbox {
    /// Built-in seccomp profile name.
    pub seccomp_profile: String,
    /// `errno`, `kernel_errno`, `trap`, `kill` (or `log` for unsigned `path:` plugins only).
    pub seccomp_action: SeccompAction,
    /// The TCP ports granted; any: the host network namespace, TCP on those ports only.
    pub network: TcpPorts,
    /// Read+execute paths beyond the shared libraries (the directory of a `path:` plugin).
    pub read_exec: Vec<PathBuf>,
    /// Read-only host paths.
    pub read_only: Vec<PathBuf>,
    /// Read-write host paths (besides the scratch directory and /dev/null).
    pub read_write: Vec<PathBuf>,
    /// Resource limits.
    pub limits: LimitsConfig,
}

/// The ports `configured` keeps of the manifest's `granted` (all of them when not configured,
/// none for `false`); a port the manifest does not grant is an error naming it.
fn narrow_ports(
    configured: Option<&Network>,
    granted: &TcpPorts,
) -> Result<TcpPorts, (String, String)> {
    let wanted = match configured {
        None => return Ok(granted.clone()),
        Some(Network::Flag(false)) => return Ok(TcpPorts::default()),
        Some(n @ Network::Flag(true)) => {
            let (_, msg) = n.problems().remove(0);
            return Err(("network".into(), msg));
        }
        Some(Network::Ports(p)) => p,
    };
    for (list, asked, allowed) in [
        ("connect", &wanted.connect, &granted.connect),
        ("bind", &wanted.bind, &granted.bind),
    ] {
        for (i, port) in asked.iter().enumerate() {
            if !allowed.contains(port) {
                return Err((
                    format!("network.{list}[{i}]"),
                    format!(
                        "port {port} is not granted: the manifest's network grant is {granted}"
                    ),
                ));
            }
        }
    }
    Ok(wanted.clone())
}

fn beneath(p: &Path, grants: &[String]) -> bool {
    grants.iter().any(|g| p.starts_with(g))
}

/// `data_path.on_unavailable: bypass` passes batches on unprocessed while the plugin is down: a
/// bundle allows it only when its signed manifest says that is harmless (`bypass_harmless`).
/// Errors are `(field, message)`.
pub fn check_bypass(cfg: &PluginConfig, m: &Manifest) -> Result<(), (String, String)> {
    if cfg.data_path.on_unavailable == crate::plugins::config::Unavailable::Bypass
        && !m.bypass_harmless
    {
        return Err((
            "data_path.on_unavailable".into(),
            "bypass would pass data on unprocessed while the plugin is down, and its manifest does not declare bypass_harmless: true (use block, the default)".into(),
        ));
    }
    Ok(())
}

/// Combines the signed manifest's `sandbox` with the configuration, which may only narrow it.
/// Errors are `(field, message)`.
pub fn effective_sandbox(
    cfg: &PluginConfig,
    m: &Manifest,
) -> Result<EffectiveSandbox, (String, String)> {
    let s = &m.sandbox;
    let profile = s
        .seccomp_profile
        .clone()
        .unwrap_or_else(|| m.plugin_type.as_str().to_string());
    if let Some(p) = &cfg.sandbox.seccomp_profile
        && *p != profile
    {
        return Err((
            "sandbox.seccomp_profile".into(),
            format!("{p:?} differs from the manifest's profile {profile:?}"),
        ));
    }
    if cfg.sandbox.seccomp_action == SeccompAction::Log {
        return Err((
            "sandbox.seccomp_action".into(),
            "`log` (monitor only) would let every syscall through".into(),
        ));
    }
    let network = narrow_ports(cfg.network.as_ref(), &s.network.ports())?;
    let grants: Vec<String> = s
        .landlock
        .read_only
        .iter()
        .chain(&s.landlock.read_write)
        .cloned()
        .collect();
    for (i, p) in cfg.sandbox.read_only.iter().enumerate() {
        if !beneath(p, &grants) {
            return Err((
                format!("sandbox.read_only[{i}]"),
                format!(
                    "{} is not beneath a path the manifest grants ({grants:?})",
                    p.display()
                ),
            ));
        }
    }
    let mut limits = cfg.limits.clone();
    if let Some(mm) = &s.limits.memory_max
        && let Ok(b) = crate::sys::units::parse_bytes(mm)
        && b < limits.memory_max
    {
        limits.memory_max = b;
        limits.memory_high = limits.memory_high.map(|h| h.min(b));
    }
    if let Some(c) = &s.limits.cpu_max
        && let Ok(c) = c.parse::<f64>()
        && (limits.cpu_max == 0.0 || c < limits.cpu_max)
    {
        limits.cpu_max = c;
    }
    if let Some(p) = s.limits.pids_max {
        limits.pids_max = limits.pids_max.min(p);
    }
    Ok(EffectiveSandbox {
        seccomp_profile: profile,
        seccomp_action: cfg.sandbox.seccomp_action,
        network,
        read_exec: Vec::new(),
        read_only: s
            .landlock
            .read_only
            .iter()
            .map(PathBuf::from)
            .chain(cfg.sandbox.read_only.iter().cloned())
            .collect(),
        read_write: s.landlock.read_write.iter().map(PathBuf::from).collect(),
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::loader::resolve_bundle;

    fn manifest(sandbox: &str) -> Manifest {
        let h = "0".repeat(64);
        let text = format!(
            "api_version: srediag.io/plugin/v1\nname: dedup\ntype: exporter\nversion: 1.0.0\nentrypoint: bin/d\nsha256: {h}\nrequires: {{srediag: \">=0.1\", ipc_protocol: 1, schema_version: 1}}\nsandbox: {sandbox}\nfiles: {{bin/d: {{sha256: {h}}}}}\n"
        );
        Manifest::parse(text.as_bytes()).unwrap()
    }

    fn cfg(extra: &str) -> PluginConfig {
        serde_yaml::from_str(&format!("bundle: dedup\ntype: exporter\n{extra}")).unwrap()
    }

    #[test]
    fn bypass_needs_the_manifests_word() {
        let text = |extra: &str| {
            let h = "0".repeat(64);
            format!(
                "api_version: srediag.io/plugin/v1\nname: dedup\ntype: processor\nversion: 1.0.0\nentrypoint: bin/d\nsha256: {h}\nrequires: {{srediag: \">=0.1\", ipc_protocol: 1, schema_version: 1}}\n{extra}files: {{bin/d: {{sha256: {h}}}}}\n"
            )
        };
        let plain = Manifest::parse(text("").as_bytes()).unwrap();
        let harmless = Manifest::parse(text("bypass_harmless: true\n").as_bytes()).unwrap();
        let cfg = |extra: &str| -> PluginConfig {
            serde_yaml::from_str(&format!("bundle: dedup\ntype: processor\n{extra}")).unwrap()
        };
        let bypass = cfg("data_path: {on_unavailable: bypass}");
        let (field, msg) = check_bypass(&bypass, &plain).unwrap_err();
        assert_eq!(field, "data_path.on_unavailable");
        assert!(msg.contains("bypass_harmless"), "{msg}");
        assert_eq!(check_bypass(&bypass, &harmless), Ok(()));
        assert_eq!(
            check_bypass(&cfg(""), &plain),
            Ok(()),
            "block is the default"
        );
        // Only processors may declare it.
        let e = Manifest::parse(
            text("bypass_harmless: true\n")
                .replace("type: processor", "type: exporter")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bypass_harmless"), "{e}");
    }

    #[test]
    fn config_narrows_never_widens() {
        let m = manifest(
            "{network: {connect: [443, 8123], bind: [13133]}, landlock: {read_only: [/etc/ssl]}, limits: {memory_max: 64MiB, cpu_max: \"0.5\", pids_max: 8}}",
        );
        let e = effective_sandbox(&cfg(""), &m).unwrap();
        assert_eq!(
            e.network,
            TcpPorts {
                connect: vec![443, 8123],
                bind: vec![13133]
            },
            "the manifest's grant applies by default"
        );
        assert_eq!(e.seccomp_profile, "exporter");
        assert_eq!(e.limits.memory_max, 64 << 20);
        assert_eq!(e.limits.cpu_max, 0.5);
        assert_eq!(e.limits.pids_max, 8);
        assert_eq!(e.read_only, [PathBuf::from("/etc/ssl")]);
        // Narrowing is fine.
        let e = effective_sandbox(
            &cfg("network: false\nlimits: {memory_max: 16MiB, pids_max: 4}\nsandbox: {read_only: [/etc/ssl/certs]}"),
            &m,
        )
        .unwrap();
        assert!(e.network.is_empty());
        assert_eq!((e.limits.memory_max, e.limits.pids_max), (16 << 20, 4));
        let e = effective_sandbox(&cfg("network: {connect: [8123]}"), &m).unwrap();
        assert_eq!(
            e.network,
            TcpPorts {
                connect: vec![8123],
                bind: vec![]
            }
        );
        // A port the manifest does not grant is refused, naming it (the agent's OTLP port, say).
        for (extra, field, port) in [
            (
                "network: {connect: [443, 4318]}",
                "network.connect[1]",
                "port 4318",
            ),
            ("network: {bind: [443]}", "network.bind[0]", "port 443"),
        ] {
            let (f, msg) = effective_sandbox(&cfg(extra), &m).unwrap_err();
            assert_eq!(f, field, "{extra}");
            assert!(
                msg.contains(port) && msg.contains("connect [443, 8123]"),
                "{msg}"
            );
        }
        // Widening is refused, naming the field.
        let m2 = manifest("{}");
        for (extra, field) in [
            ("network: true", "network"),
            ("network: {connect: [443]}", "network.connect[0]"),
            (
                "sandbox: {seccomp_profile: network}",
                "sandbox.seccomp_profile",
            ),
            ("sandbox: {seccomp_action: log}", "sandbox.seccomp_action"),
            ("sandbox: {read_only: [/home]}", "sandbox.read_only[0]"),
        ] {
            let (f, _) = effective_sandbox(&cfg(extra), &m2).unwrap_err();
            assert_eq!(f, field, "{extra}");
        }
        // Larger limits than the manifest's are capped at the manifest's.
        let e = effective_sandbox(&cfg("limits: {memory_max: 1GiB, pids_max: 1000}"), &m).unwrap();
        assert_eq!((e.limits.memory_max, e.limits.pids_max), (64 << 20, 8));
    }

    #[test]
    fn relative_bundles_resolve_beneath_the_plugin_dir() {
        let d = Path::new("/var/lib/srediag/plugins");
        assert_eq!(resolve_bundle(d, Path::new("x")), d.join("x"));
        assert_eq!(
            resolve_bundle(d, Path::new("/opt/x")),
            PathBuf::from("/opt/x")
        );
    }
}
