//! Sandbox building blocks: Landlock ABI and seccomp filter support.

use std::path::Path;

use super::{ProbeItem, Status, item};
use crate::sys::{Errno, Host};

/// Where the kernel lists the seccomp filter actions it supports.
const ACTIONS_AVAIL: &str = "/proc/sys/kernel/seccomp/actions_avail";
/// Filter actions the plugin sandbox relies on.
const FILTER_ACTIONS: [&str; 4] = ["errno", "trap", "kill_process", "log"];

/// What each Landlock ABI version adds.
const LANDLOCK_FEATURES: [&str; 7] = [
    "fs",
    "fs refer",
    "fs truncate",
    "net tcp bind/connect",
    "ioctl on devices",
    "scoping (signals, abstract unix sockets)",
    "audit log flags",
];

/// The features of Landlock ABI `abi`, oldest first.
pub(super) fn landlock_features(abi: i32) -> Vec<&'static str> {
    let n = usize::try_from(abi)
        .unwrap_or(0)
        .min(LANDLOCK_FEATURES.len());
    LANDLOCK_FEATURES[..n].to_vec()
}

fn landlock_item(host: &dyn Host) -> ProbeItem {
    match host.landlock_abi() {
        Ok(abi) if abi >= 1 => {
            let detail = format!("ABI {abi}: {}", landlock_features(abi).join(", "));
            if abi >= 6 {
                item(
                    "landlock",
                    Status::Ok,
                    detail,
                    "plugin sandbox restricts files, TCP bind/connect, signals and abstract \
                     unix sockets",
                )
            } else if abi >= 4 {
                item(
                    "landlock",
                    Status::Degraded,
                    detail,
                    "plugin sandbox restricts files and TCP; no signal/abstract-socket scoping \
                     before ABI 6",
                )
            } else {
                item(
                    "landlock",
                    Status::Degraded,
                    detail,
                    "plugin sandbox restricts files only; network is left to namespaces before \
                     ABI 4",
                )
            }
        }
        Ok(abi) => item(
            "landlock",
            Status::Unavailable,
            format!("unexpected ABI version {abi}"),
            "plugins are sandboxed by namespaces and seccomp only",
        ),
        Err(e) => {
            let why = if e == Errno::ENOSYS {
                "kernel built without Landlock"
            } else if e == Errno::EOPNOTSUPP {
                "Landlock disabled at boot (add landlock to lsm=)"
            } else {
                "landlock_create_ruleset failed"
            };
            item(
                "landlock",
                Status::Unavailable,
                format!("{why}: {e}"),
                "plugins are sandboxed by namespaces and seccomp only",
            )
        }
    }
}

fn seccomp_items(host: &dyn Host) -> Vec<ProbeItem> {
    let mode = match host.prctl_get_seccomp() {
        Ok(mode) => mode,
        Err(e) => {
            let detail =
                format!("prctl(PR_GET_SECCOMP) failed: {e} (kernel without CONFIG_SECCOMP?)");
            return vec![
                item(
                    "seccomp_filter",
                    Status::Unavailable,
                    detail.clone(),
                    "plugins run without a syscall filter",
                ),
                item(
                    "seccomp_user_notif",
                    Status::Unavailable,
                    detail,
                    "no syscall brokering for plugins",
                ),
            ];
        }
    };
    let own = match mode {
        0 => "srediag itself unfiltered".to_owned(),
        1 => "srediag itself in strict mode".to_owned(),
        2 => "srediag itself already filtered".to_owned(),
        m => format!("srediag itself in mode {m}"),
    };
    let actions = match host.read_to_string(Path::new(ACTIONS_AVAIL)) {
        Ok(text) => text
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        Err(e) => {
            let detail = format!("prctl works ({own}), but {e}");
            return vec![
                item(
                    "seccomp_filter",
                    Status::Degraded,
                    detail.clone(),
                    "filters are installed without knowing which actions the kernel has; \
                     unsupported actions fail at load",
                ),
                item(
                    "seccomp_user_notif",
                    Status::Unavailable,
                    detail,
                    "no syscall brokering for plugins",
                ),
            ];
        }
    };
    let has = |a: &str| actions.iter().any(|x| x == a);
    let missing: Vec<&str> = FILTER_ACTIONS.into_iter().filter(|a| !has(a)).collect();
    let detail = format!(
        "filter mode supported ({own}); actions: {}",
        actions.join(" ")
    );
    let filter = if missing.is_empty() {
        item(
            "seccomp_filter",
            Status::Ok,
            detail.clone(),
            "plugin syscall filters use errno, trap, kill_process and log actions",
        )
    } else {
        item(
            "seccomp_filter",
            Status::Degraded,
            format!("{detail}; missing: {}", missing.join(" ")),
            "plugin filters use only the available actions (missing ones become errno)",
        )
    };
    let notif = if has("user_notif") {
        item(
            "seccomp_user_notif",
            Status::Ok,
            "user_notif in actions_avail",
            "a supervisor can answer plugin syscalls (SECCOMP_RET_USER_NOTIF)",
        )
    } else {
        item(
            "seccomp_user_notif",
            Status::Unavailable,
            "user_notif not in actions_avail",
            "no syscall brokering: plugin syscalls are only allowed or denied",
        )
    };
    vec![filter, notif]
}

pub(super) fn items(host: &dyn Host) -> Vec<ProbeItem> {
    let mut items = vec![landlock_item(host)];
    items.extend(seccomp_items(host));
    items
}
