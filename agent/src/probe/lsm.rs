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

/// What plugins get from Landlock ABI `abi`: each plugin needs what its namespaces do not
/// already isolate (`plugins::sandbox::landlock::needs`), and fails closed without it.
fn landlock_effect(abi: i32) -> String {
    use crate::plugins::sandbox::landlock::{missing, needs};
    let own_ns = match missing(abi, &needs(false)) {
        None => "plugins without network: files by Landlock, network, signals and abstract \
                 sockets by their own namespaces"
            .to_owned(),
        Some(why) => format!("plugins without network refused ({why})"),
    };
    let granted = match missing(abi, &needs(true)) {
        None => "plugins granted TCP ports: only those ports, abstract unix sockets and signals \
                 scoped"
            .to_owned(),
        Some(why) => format!(
            "plugins granted TCP ports refused unless sandbox.allow_degraded ({})",
            why.split_once(": ").map_or(why.as_str(), |(_, w)| w)
        ),
    };
    format!("{own_ns}; {granted}")
}

fn landlock_item(host: &dyn Host) -> ProbeItem {
    use crate::plugins::sandbox::landlock::required_abi;
    let refused = "no plugin starts unless sandbox.allow_degraded (then namespaces and seccomp \
                   only)";
    match host.landlock_abi() {
        Ok(abi) if abi >= 1 => {
            let detail = format!("ABI {abi}: {}", landlock_features(abi).join(", "));
            let status = if abi >= required_abi(true) {
                Status::Ok
            } else {
                Status::Degraded
            };
            item("landlock", status, detail, landlock_effect(abi))
        }
        Ok(abi) => item(
            "landlock",
            Status::Unavailable,
            format!("unexpected ABI version {abi}"),
            refused,
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
                refused,
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
