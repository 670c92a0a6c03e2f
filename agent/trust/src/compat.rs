//! Compatibility (seed §2.1/§9): what a manifest `requires` against what this agent and host
//! offer ([`HostInfo`], built by the caller: this crate never probes the host).

use crate::manifest::Manifest;
use srediag_sys::facts::KernelFacts;
use std::collections::BTreeSet;

/// The wire-schema version this agent speaks (defined by the SDK, next to the schema).
pub use srediag_plugin_sdk::wire::WIRE_SCHEMA_VERSION;

/// Kernel features a manifest may name (probed by `srediag_sys::facts`).
pub use srediag_sys::facts::KNOWN_KERNEL_FEATURES;

/// What this agent offers plugins (compared with `requires`).
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// This agent's version.
    pub srediag_version: semver::Version,
    /// Control protocol version.
    pub ipc_protocol: u32,
    /// Wire-schema version.
    pub schema_version: u32,
    /// Running kernel `(major, minor)`.
    pub kernel: Option<(u32, u32)>,
    /// Kernel features present (`landlock`, `btf`, `seccomp`, `cgroup2`).
    pub kernel_features: BTreeSet<String>,
}

impl HostInfo {
    /// This agent (`srediag_version`; the control protocol and wire schema of the SDK it is built
    /// with) on a kernel with `facts` (`srediag_sys::facts::kernel_facts`). The trust crate never
    /// probes the host itself: the agent builds this and passes it in.
    pub fn new(srediag_version: semver::Version, facts: KernelFacts) -> HostInfo {
        HostInfo {
            srediag_version,
            ipc_protocol: srediag_plugin_sdk::control::PROTOCOL_VERSION,
            schema_version: WIRE_SCHEMA_VERSION,
            kernel: facts.kernel,
            kernel_features: facts.features,
        }
    }
}

/// A plugin this agent or host cannot run; each message names both sides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// `requires.srediag` is not a semver requirement.
    #[error("{who}: requires.srediag: {reason}")]
    BadRequirement {
        /// `plugin NAME VERSION`.
        who: String,
        /// The semver parser's message.
        reason: String,
    },
    /// This agent's version is outside `requires.srediag`.
    #[error("{who} requires srediag {need}, this agent is {have}")]
    Agent {
        /// `plugin NAME VERSION`.
        who: String,
        /// The requirement.
        need: String,
        /// This agent's version.
        have: String,
    },
    /// Another control protocol.
    #[error("{who} speaks IPC protocol {need}, this agent speaks {oldest} to {have}")]
    Protocol {
        /// `plugin NAME VERSION`.
        who: String,
        /// The plugin's.
        need: u32,
        /// The oldest this agent speaks.
        oldest: u32,
        /// The newest this agent speaks.
        have: u32,
    },
    /// Another wire schema.
    #[error("{who} uses wire schema {need}, this agent uses {have}")]
    Schema {
        /// `plugin NAME VERSION`.
        who: String,
        /// The plugin's.
        need: u32,
        /// This agent's.
        have: u32,
    },
    /// `requires.min_kernel` is not `major.minor`.
    #[error("{who}: bad min_kernel {min_kernel:?}")]
    BadMinKernel {
        /// `plugin NAME VERSION`.
        who: String,
        /// As written.
        min_kernel: String,
    },
    /// The running kernel is older.
    #[error("{who} requires kernel {}.{} or newer, this host runs {}.{}", need.0, need.1, have.0, have.1)]
    KernelTooOld {
        /// `plugin NAME VERSION`.
        who: String,
        /// `(major, minor)` required.
        need: (u32, u32),
        /// `(major, minor)` running.
        have: (u32, u32),
    },
    /// The running kernel's version is unknown.
    #[error("{who} requires kernel {min_kernel}, this host's kernel version is unknown")]
    KernelUnknown {
        /// `plugin NAME VERSION`.
        who: String,
        /// As written.
        min_kernel: String,
    },
    /// A kernel feature this agent does not know.
    #[error(
        "{who} requires kernel feature {feature:?}, unknown to this agent (knows {KNOWN_KERNEL_FEATURES:?})"
    )]
    UnknownFeature {
        /// `plugin NAME VERSION`.
        who: String,
        /// The feature.
        feature: String,
    },
    /// A kernel feature this host lacks.
    #[error("{who} requires kernel feature {feature}, absent on this host (present: {present:?})")]
    MissingFeature {
        /// `plugin NAME VERSION`.
        who: String,
        /// The feature.
        feature: String,
        /// What the host has.
        present: BTreeSet<String>,
    },
}

/// Seed §2.1/§9: the plugin's declared needs against this agent; the error names both sides.
pub fn check_compat(m: &Manifest, h: &HostInfo) -> Result<(), CompatError> {
    let who = || format!("plugin {} {}", m.name, m.version);
    let req = semver::VersionReq::parse(&m.requires.srediag).map_err(|e| {
        CompatError::BadRequirement {
            who: who(),
            reason: e.to_string(),
        }
    })?;
    if !req.matches(&h.srediag_version) {
        return Err(CompatError::Agent {
            who: who(),
            need: req.to_string(),
            have: h.srediag_version.to_string(),
        });
    }
    let oldest = srediag_plugin_sdk::control::MIN_PROTOCOL_VERSION;
    if !(oldest..=h.ipc_protocol).contains(&m.requires.ipc_protocol) {
        return Err(CompatError::Protocol {
            who: who(),
            need: m.requires.ipc_protocol,
            oldest,
            have: h.ipc_protocol,
        });
    }
    if m.requires.schema_version != h.schema_version {
        return Err(CompatError::Schema {
            who: who(),
            need: m.requires.schema_version,
            have: h.schema_version,
        });
    }
    if let Some(k) = &m.requires.min_kernel {
        let need =
            srediag_sys::facts::parse_kernel(k).ok_or_else(|| CompatError::BadMinKernel {
                who: who(),
                min_kernel: k.clone(),
            })?;
        match h.kernel {
            Some(have) if have >= need => {}
            Some(have) => {
                return Err(CompatError::KernelTooOld {
                    who: who(),
                    need,
                    have,
                });
            }
            None => {
                return Err(CompatError::KernelUnknown {
                    who: who(),
                    min_kernel: k.clone(),
                });
            }
        }
    }
    for f in &m.requires.kernel_features {
        if !KNOWN_KERNEL_FEATURES.contains(&f.as_str()) {
            return Err(CompatError::UnknownFeature {
                who: who(),
                feature: f.clone(),
            });
        }
        if !h.kernel_features.contains(f) {
            return Err(CompatError::MissingFeature {
                who: who(),
                feature: f.clone(),
                present: h.kernel_features.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(requires: &str) -> Manifest {
        let h = "a".repeat(64);
        Manifest::parse(
            format!(
                "api_version: srediag.io/plugin/v1\nname: p\ntype: processor\nversion: 1.0.0\nentrypoint: bin/p\nsha256: {h}\nrequires: {{{requires}}}\nfiles:\n  bin/p:\n    sha256: {h}\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn host(kernel: Option<(u32, u32)>, features: &[&str]) -> HostInfo {
        HostInfo::new(
            semver::Version::new(0, 1, 0),
            KernelFacts {
                kernel,
                features: features.iter().map(|f| f.to_string()).collect(),
            },
        )
    }

    /// Each mismatch is its own variant, naming both sides.
    #[test]
    fn each_mismatch_is_a_variant() {
        let base = "srediag: '>=0.1', ipc_protocol: 1, schema_version: 1";
        let h = host(Some((6, 1)), &["btf"]);
        assert_eq!(check_compat(&manifest(base), &h), Ok(()));
        let err = |extra: &str, h: &HostInfo| check_compat(&manifest(extra), h).unwrap_err();
        assert!(matches!(
            err("srediag: '>=9.0', ipc_protocol: 1, schema_version: 1", &h),
            CompatError::Agent { ref need, ref have, .. } if need == ">=9.0" && have == "0.1.0"
        ));
        assert!(matches!(
            err("srediag: '>=0.1', ipc_protocol: 7, schema_version: 1", &h),
            CompatError::Protocol {
                need: 7,
                oldest: 1,
                have: srediag_plugin_sdk::control::PROTOCOL_VERSION,
                ..
            }
        ));
        assert!(matches!(
            err("srediag: '>=0.1', ipc_protocol: 1, schema_version: 9", &h),
            CompatError::Schema {
                need: 9,
                have: 1,
                ..
            }
        ));
        let e = err(&format!("{base}, min_kernel: '6.8'"), &h);
        assert_eq!(
            e,
            CompatError::KernelTooOld {
                who: "plugin p 1.0.0".into(),
                need: (6, 8),
                have: (6, 1)
            }
        );
        assert_eq!(
            e.to_string(),
            "plugin p 1.0.0 requires kernel 6.8 or newer, this host runs 6.1"
        );
        assert!(matches!(
            err(&format!("{base}, min_kernel: '6.8'"), &host(None, &[])),
            CompatError::KernelUnknown { .. }
        ));
        assert!(matches!(
            err(&format!("{base}, kernel_features: [landlock]"), &h),
            CompatError::MissingFeature { ref feature, .. } if feature == "landlock"
        ));
    }
}
