//! Docker's default profile (peer test data, read at test time, never copied into the repository):
//! every x86_64 syscall it does not allow unconditionally must be denied by every srediag profile.

use std::collections::BTreeSet;
use std::path::PathBuf;

use libseccomp::{ScmpArch, ScmpSyscall};

use super::super::{policy, profile};
use super::profiles_with_widest_options;

/// Syscalls Docker allows only with argument filters, and which srediag profiles may allow with
/// (stricter) argument filters of their own; the kernel tests call them with arguments Docker denies.
pub(crate) const ARG_RESTRICTED: &[&str] = &["clone", "socket", "personality"];

fn docker_profile_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/seccomp/docker-default.json")
}

/// The syscalls of Docker's profile that x86_64 does not allow unconditionally, or `None` (with the
/// reason printed) when the peer test data is absent outside CI.
pub(crate) fn docker_denied() -> Option<BTreeSet<String>> {
    let path = docker_profile_path();
    let dir = path.parent().unwrap();
    if !dir.exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{} is missing; CI must provide the peer test data",
                dir.display()
            );
        }
        eprintln!(
            "skipped: {} is absent (peer test data; set CI=true to fail)",
            dir.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json["defaultAction"],
        "SCMP_ACT_ERRNO",
        "{}",
        path.display()
    );
    let mut unconditional = BTreeSet::new();
    for rule in json["syscalls"].as_array().unwrap() {
        let empty = |k: &str| {
            rule.get(k).is_none_or(|v| {
                v.is_null()
                    || v.as_array().is_some_and(|a| a.is_empty())
                    || v.as_object().is_some_and(|o| o.is_empty())
            })
        };
        let includes_ok = rule
            .get("includes")
            .and_then(|v| v.as_object())
            .is_none_or(|inc| {
                inc.iter().all(|(k, v)| match k.as_str() {
                    // This kernel (6.x) is newer than any minKernel in the profile.
                    "minKernel" => true,
                    "arches" => v.as_array().unwrap().iter().any(|a| a == "amd64"),
                    _ => false,
                })
            });
        if rule["action"] == "SCMP_ACT_ALLOW" && empty("args") && empty("excludes") && includes_ok {
            for n in rule["names"].as_array().unwrap() {
                unconditional.insert(n.as_str().unwrap().to_string());
            }
        }
    }
    Some(
        x86_64_syscalls()
            .difference(&unconditional)
            .cloned()
            .collect(),
    )
}

/// Every syscall name libseccomp knows on x86_64.
pub(crate) fn x86_64_syscalls() -> BTreeSet<String> {
    (0..1024)
        .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(ScmpArch::X8664).ok())
        .collect()
}

#[test]
fn docker_denied_syscalls_are_hard_denied_or_argument_restricted() {
    let Some(denied) = docker_denied() else {
        return;
    };
    assert!(denied.len() > 40, "{denied:?}");
    let uncovered: Vec<_> = denied
        .iter()
        .filter(|n| !policy::is_hard_denied(n) && !ARG_RESTRICTED.contains(&n.as_str()))
        .collect();
    assert!(
        uncovered.is_empty(),
        "Docker denies these, policy::HARD_DENY does not: {uncovered:?}"
    );
}

#[test]
fn no_profile_allows_a_docker_denied_syscall_unconditionally() {
    let Some(denied) = docker_denied() else {
        return;
    };
    for (name, opts) in profiles_with_widest_options() {
        for r in profile::resolve(name).unwrap().rules {
            if !denied.contains(&r.syscall) || (r.network && !opts.network) {
                continue;
            }
            assert!(
                ARG_RESTRICTED.contains(&r.syscall.as_str()) && !r.cmps.is_empty(),
                "{name}: {} ({} rule {}) is denied by Docker's default profile",
                r.syscall,
                r.file,
                r.rule
            );
        }
    }
}
