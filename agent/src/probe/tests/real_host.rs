//! The real probe on this machine, checked for internal consistency only.

use std::path::Path;

use super::*;
use crate::sys::cgroup::CgroupMode;

/// Independent reading of mountinfo: (has a cgroup2 mount, has a v1 mount with a controller).
fn mountinfo_cgroups(text: &str) -> (bool, bool) {
    let mut v2 = false;
    let mut v1_controllers = false;
    for line in text.lines() {
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        match fields.first() {
            Some(&"cgroup2") => v2 = true,
            Some(&"cgroup") => {
                let opts = fields.get(2).copied().unwrap_or("");
                v1_controllers |= opts.split(',').any(|o| {
                    !["rw", "ro", "xattr", "clone_children", "noprefix", "none"].contains(&o)
                        && !o.contains('=')
                });
            }
            _ => {}
        }
    }
    (v2, v1_controllers)
}

/// Runs the real probe here and checks it agrees with itself and with the kernel files; never
/// hard-codes this machine's answers. Privileged checks are skipped (with a reason) when not root,
/// unless CI=true.
#[test]
fn real_host_is_internally_consistent() {
    let host = crate::sys::real_host();
    let r = run(&*host);
    println!("{}", r.render_table());

    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_status(&r, "btf", Status::Ok);
    } else {
        assert_status(&r, "btf", Status::Degraded);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let expected = match mountinfo_cgroups(&mountinfo) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V2,
        (false, true) => CgroupMode::V1,
        (false, false) => {
            if mountinfo.contains(" - cgroup ") {
                CgroupMode::V1
            } else {
                CgroupMode::None
            }
        }
    };
    assert_eq!(r.cgroup.as_ref().unwrap().mode, expected);
    assert!(
        get(&r, "cgroup_mode")
            .detail
            .starts_with(&format!("mode {};", expected.as_str()))
    );
    if get(&r, "uprobe").status == Status::Ok {
        assert!(Path::new("/sys/bus/event_source/devices/uprobe/type").exists());
    }

    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = crate::sys::caps::parse_status(&status, "CapEff").unwrap_or_default();
    let privileged = host.euid() == 0
        && (cap_eff.has(crate::sys::caps::CAP_BPF) || cap_eff.has(crate::sys::caps::CAP_SYS_ADMIN));
    if !privileged {
        let reason = "not root with CAP_BPF: privileged bpf() assertions skipped";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason} (CI=true requires a privileged run)");
        }
        println!("skipped: {reason}");
        assert_status(&r, "prog_tracepoint", Status::Unavailable);
        return;
    }
    assert_status(&r, "privileges", Status::Ok);
    assert_status(&r, "prog_tracepoint", Status::Ok);
    assert_status(&r, "prog_raw_tp", Status::Ok);
    // Whatever the kernel answered, a refusal carries an errno in the detail.
    for it in r
        .items
        .iter()
        .filter(|i| i.name.starts_with("prog_") && i.status != Status::Ok)
    {
        assert!(
            it.detail.contains("load refused: E") || it.detail.starts_with("not probed"),
            "{it:?}"
        );
    }
}
