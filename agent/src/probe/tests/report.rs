//! Robustness, JSON shape and table rendering.

use super::*;
use crate::probe::render::wrap;
use crate::sys::cgroup::CgroupMode;

#[test]
fn garbage_kernel_files_do_not_panic() {
    let h = FakeHost::new();
    h.write(
        "/proc/self/mountinfo",
        "\0\0 garbage\n- - -\n1 2\n\\\\\\ \u{fffd}\n",
    )
    .write("/proc/self/status", "CapEff:\tnot-hex\n")
    .write("/proc/cgroups", "#\nmemory x y z\n\n")
    .write("/proc/sys/kernel/seccomp/actions_avail", "")
    .write(
        "/sys/kernel/btf/vmlinux",
        [0x9f, 0xeb, 1, 0, 0xff, 0xff, 0xff, 0xff],
    );
    let r = run(&h);
    assert_status(&r, "btf", Status::Degraded);
    assert!(get(&r, "btf").detail.contains("unusable"));
    assert_eq!(r.cgroup.as_ref().unwrap().mode, CgroupMode::None);
    assert!(r.render_table().contains("btf"));
}

#[test]
fn json_uses_stable_snake_case_names() {
    let r = run(&v2_host());
    let json = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["cgroup", "items"]);
    let first = &json["items"][0];
    let mut item_keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    item_keys.sort();
    assert_eq!(item_keys, ["detail", "name", "srediag", "status"]);
    assert_eq!(first["status"], "ok");
    assert_eq!(json["cgroup"]["mode"], "v2");
    assert_eq!(json["cgroup"]["v2"]["cgroup_kill"]["state"], "present");
    let statuses: Vec<String> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| ["ok", "degraded", "unavailable"].contains(&s.as_str()))
    );
}

#[test]
fn every_item_is_named_once_and_filled_in() {
    let r = run(&hybrid_host());
    let mut names: Vec<&str> = r.items.iter().map(|i| i.name.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate item names");
    for it in &r.items {
        assert!(!it.detail.is_empty() && !it.srediag.is_empty(), "{it:?}");
    }
    for expected in [
        "kernel",
        "arch",
        "privileges",
        "btf",
        "bpffs",
        "tracefs",
        "prog_tracepoint",
        "prog_raw_tp",
        "prog_tp_btf",
        "uprobe",
        "kprobe",
        "prog_fentry",
        "prog_lsm",
        "prog_perf_event",
        "map_ringbuf",
        "bpf_stats",
        "cgroup_mode",
        "cgroup_memory",
        "cgroup_cpu",
        "cgroup_pids",
        "cgroup_kill",
        "cgroup_events",
        "landlock",
        "seccomp_filter",
        "seccomp_user_notif",
    ] {
        assert!(r.item(expected).is_some(), "missing {expected}");
    }
}

#[test]
fn table_rendering() {
    let r = run(&hybrid_host());
    let table = r.render_table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("STATUS")
            && lines[0].ends_with("SREDIAG")
    );
    for it in &r.items {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{} ", it.name))),
            "{}",
            it.name
        );
    }
    assert!(table.ends_with(&format!(
        "{} ok, {} degraded, {} unavailable\n",
        r.items.iter().filter(|i| i.status == Status::Ok).count(),
        r.items.iter().filter(|i| i.status == Status::Degraded).count(),
        r.items.iter().filter(|i| i.status == Status::Unavailable).count()
    )));
    assert_eq!(
        r.problems(),
        r.items.iter().filter(|i| i.status != Status::Ok).count()
    );
}

#[test]
fn wrapping() {
    assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
    assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    assert_eq!(wrap("", 4), [""]);
    assert_eq!(wrap("x  y", 0), ["x", "y"]);
}
