//! Unit tests on a fake cgroupfs tree ([`TreeFs`]): no root needed.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::driver::{Roles, plan};
use super::fs::TreeFs;
use super::test_join::join_raw;
use super::*;
use srediag_sys::cgroup::{CgroupMode, FileCheck, V1Hierarchy, V2Hierarchy};

fn v1(mount: &str, controllers: &[&str]) -> V1Hierarchy {
    V1Hierarchy {
        mount_point: mount.into(),
        root: "/".into(),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        name: None,
    }
}

fn v2h(mount: &str, controllers: &[&str]) -> V2Hierarchy {
    V2Hierarchy {
        mount_point: mount.into(),
        root: "/".into(),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        cgroup_kill: FileCheck::NoChildCgroup,
        cgroup_events: FileCheck::NoChildCgroup,
    }
}

fn layout(mode: CgroupMode, v2: Option<V2Hierarchy>, v1: Vec<V1Hierarchy>) -> CgroupLayout {
    CgroupLayout {
        mode,
        v2,
        v1,
        kernel_controllers: Vec::new(),
        warnings: Vec::new(),
    }
}

/// This machine: every resource controller on its own v1 hierarchy, cgroup2 without
/// controllers at /sys/fs/cgroup/unified.
fn hybrid() -> CgroupLayout {
    let c = "/sys/fs/cgroup";
    let mut named = v1(&format!("{c}/systemd"), &[]);
    named.name = Some("systemd".into());
    layout(
        CgroupMode::Hybrid,
        Some(v2h(&format!("{c}/unified"), &[])),
        vec![
            v1(&format!("{c}/cpu"), &["cpu"]),
            v1(&format!("{c}/cpuacct"), &["cpuacct"]),
            v1(&format!("{c}/cpuset"), &["cpuset"]),
            v1(&format!("{c}/memory"), &["memory"]),
            v1(&format!("{c}/devices"), &["devices"]),
            v1(&format!("{c}/freezer"), &["freezer"]),
            v1(&format!("{c}/blkio"), &["blkio"]),
            v1(&format!("{c}/pids"), &["pids"]),
            named,
        ],
    )
}

fn pure_v2() -> CgroupLayout {
    layout(
        CgroupMode::V2,
        Some(v2h(
            "/sys/fs/cgroup",
            &["cpuset", "cpu", "io", "memory", "pids"],
        )),
        Vec::new(),
    )
}

fn pure_v1() -> CgroupLayout {
    layout(
        CgroupMode::V1,
        None,
        vec![
            v1("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            v1("/sys/fs/cgroup/memory", &["memory"]),
            v1("/sys/fs/cgroup/freezer", &["freezer"]),
        ],
    )
}

/// cgroup2 at /sys/fs/cgroup/unified with only the memory controller; cpu and pids on v1.
fn mixed() -> CgroupLayout {
    layout(
        CgroupMode::Hybrid,
        Some(v2h("/sys/fs/cgroup/unified", &["memory"])),
        vec![
            v1("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            v1("/sys/fs/cgroup/pids", &["pids"]),
        ],
    )
}

fn full_limits() -> Limits {
    Limits {
        memory_max: Some(64 << 20),
        memory_high: Some(48 << 20),
        cpu_weight: Some(200),
        cpu_max: Some((50_000, 100_000)),
        pids_max: Some(8),
    }
}

/// A fake tree with the layout's mount points.
fn tree(layout: &CgroupLayout) -> Arc<TreeFs> {
    let fs = Arc::new(TreeFs::new());
    for h in &layout.v1 {
        fs.put_dir(&h.mount_point);
    }
    if let Some(h) = &layout.v2 {
        fs.put_dir(&h.mount_point);
    }
    fs
}

fn setup(layout: &CgroupLayout) -> (Arc<TreeFs>, Box<dyn CgroupDriver>) {
    let fs = tree(layout);
    let d = driver_with_fs(layout, DEFAULT_ROOT, fs.clone()).unwrap();
    (fs, d)
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn written(fs: &TreeFs) -> Vec<(String, String)> {
    fs.writes()
        .into_iter()
        .map(|(p, v)| (p.display().to_string(), v))
        .collect()
}

#[test]
fn pure_v2_enables_controllers_and_writes_v2_files() {
    let (fs, d) = setup(&pure_v2());
    let cg = d.create("p1", &full_limits()).unwrap();
    let dir = "/sys/fs/cgroup/srediag/p1";
    let expect = [
        (
            "/sys/fs/cgroup/cgroup.subtree_control",
            "+memory +cpu +pids",
        ),
        (
            "/sys/fs/cgroup/srediag/cgroup.subtree_control",
            "+memory +cpu +pids",
        ),
        (&format!("{dir}/memory.max"), "67108864"),
        (&format!("{dir}/memory.high"), "50331648"),
        (&format!("{dir}/cpu.weight"), "200"),
        (&format!("{dir}/cpu.max"), "50000 100000"),
        (&format!("{dir}/pids.max"), "8"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(written(&fs), expect);
    assert_eq!(cg.procs_files(), [p(&format!("{dir}/cgroup.procs"))]);
    assert_eq!(cg.name(), "p1");
}

#[test]
fn hybrid_creates_dirs_only_where_needed_and_writes_v1_files() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p1", &full_limits()).unwrap();
    let c = "/sys/fs/cgroup";
    for used in ["memory", "cpu", "cpuacct", "pids", "unified"] {
        assert!(fs.is_dir(format!("{c}/{used}/srediag/p1")), "{used}");
    }
    for unused in ["cpuset", "devices", "freezer", "blkio", "systemd"] {
        assert!(!fs.is_dir(format!("{c}/{unused}/srediag")), "{unused}");
    }
    assert_eq!(
        written(&fs),
        [
            (
                "/sys/fs/cgroup/memory/srediag/p1/memory.limit_in_bytes",
                "67108864"
            ),
            (
                "/sys/fs/cgroup/memory/srediag/p1/memory.soft_limit_in_bytes",
                "50331648"
            ),
            // weight 200 -> 200 * 1024 / 100
            ("/sys/fs/cgroup/cpu/srediag/p1/cpu.shares", "2048"),
            ("/sys/fs/cgroup/cpu/srediag/p1/cpu.cfs_period_us", "100000"),
            ("/sys/fs/cgroup/cpu/srediag/p1/cpu.cfs_quota_us", "50000"),
            ("/sys/fs/cgroup/pids/srediag/p1/pids.max", "8"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // No controller on the cgroup2 hierarchy: nothing to enable.
    assert!(
        fs.get(format!("{c}/unified/cgroup.subtree_control"))
            .is_none()
    );
    assert_eq!(
        cg.procs_files(),
        ["memory", "cpu", "cpuacct", "pids", "unified"]
            .map(|h| p(&format!("{c}/{h}/srediag/p1/cgroup.procs")))
    );
}

#[test]
fn pure_v1_shares_combined_mounts_and_uses_the_freezer() {
    let (h, roles) = plan(&pure_v1());
    assert_eq!(h.len(), 3);
    assert_eq!(
        roles,
        Roles {
            memory: Some(0),
            cpu: Some(1),
            cpuacct: Some(1),
            pids: None,
            v2: None,
            freezer: Some(2),
        }
    );
    let (fs, d) = setup(&pure_v1());
    let cg = d
        .create(
            "p",
            &Limits {
                cpu_weight: Some(1),
                ..Limits::default()
            },
        )
        .unwrap();
    assert_eq!(cg.procs_files().len(), 3);
    assert_eq!(
        fs.get("/sys/fs/cgroup/cpu,cpuacct/srediag/p/cpu.shares")
            .as_deref(),
        Some("10")
    );
    // The freezer is only planned without a cgroup2 hierarchy.
    assert_eq!(plan(&hybrid()).1.freezer, None);
}

#[test]
fn mixed_layout_drives_each_controller_on_its_own_hierarchy() {
    let (fs, d) = setup(&mixed());
    d.create("p", &full_limits()).unwrap();
    let u = "/sys/fs/cgroup/unified";
    assert_eq!(
        fs.get(format!("{u}/cgroup.subtree_control")).as_deref(),
        Some("+memory")
    );
    assert_eq!(
        fs.get(format!("{u}/srediag/cgroup.subtree_control"))
            .as_deref(),
        Some("+memory")
    );
    assert_eq!(
        fs.get(format!("{u}/srediag/p/memory.max")).as_deref(),
        Some("67108864")
    );
    assert_eq!(
        fs.get("/sys/fs/cgroup/cpu,cpuacct/srediag/p/cpu.cfs_quota_us")
            .as_deref(),
        Some("50000")
    );
    assert_eq!(
        fs.get("/sys/fs/cgroup/pids/srediag/p/pids.max").as_deref(),
        Some("8")
    );
    let (_, roles) = plan(&mixed());
    assert_eq!(roles.memory, roles.v2);
}

#[test]
fn nested_root_enables_controllers_at_each_level() {
    let fs = tree(&pure_v2());
    let d = driver_with_fs(
        &pure_v2(),
        "system.slice/srediag.service/plugins",
        fs.clone(),
    )
    .unwrap();
    d.create("p", &Limits::default()).unwrap();
    let controls: Vec<String> = written(&fs).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        controls,
        [
            "/sys/fs/cgroup/cgroup.subtree_control",
            "/sys/fs/cgroup/system.slice/cgroup.subtree_control",
            "/sys/fs/cgroup/system.slice/srediag.service/cgroup.subtree_control",
            "/sys/fs/cgroup/system.slice/srediag.service/plugins/cgroup.subtree_control",
        ]
    );
    assert!(fs.is_dir("/sys/fs/cgroup/system.slice/srediag.service/plugins/p"));
}

#[test]
fn stats_v1_and_v2() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p", &Limits::default()).unwrap();
    let c = "/sys/fs/cgroup";
    assert_eq!(cg.memory_current(), None);
    fs.put(
        format!("{c}/memory/srediag/p/memory.usage_in_bytes"),
        "4096\n",
    )
    .put(
        format!("{c}/memory/srediag/p/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    )
    .put(
        format!("{c}/cpuacct/srediag/p/cpuacct.usage"),
        "123456789\n",
    )
    .put(
        format!("{c}/unified/srediag/p/cgroup.events"),
        "populated 1\nfrozen 0\n",
    );
    assert_eq!(cg.memory_current(), Some(4096));
    assert_eq!(cg.oom_kills(), Some(3));
    assert_eq!(cg.cpu_usage_ns(), Some(123_456_789));
    assert!(cg.is_populated());
    fs.put(
        format!("{c}/unified/srediag/p/cgroup.events"),
        "populated 0\nfrozen 0\n",
    );
    assert!(!cg.is_populated());

    let (fs, d) = setup(&pure_v2());
    let cg = d.create("q", &Limits::default()).unwrap();
    let dir = "/sys/fs/cgroup/srediag/q";
    fs.put(format!("{dir}/memory.current"), "8192\n")
        .put(
            format!("{dir}/memory.events"),
            "low 0\nhigh 2\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .put(
            format!("{dir}/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .put(format!("{dir}/cgroup.procs"), "12\n7\n");
    assert_eq!(cg.memory_current(), Some(8192));
    assert_eq!(cg.oom_kills(), Some(1));
    assert_eq!(cg.cpu_usage_ns(), Some(1_500_000));
    // No cgroup.events: falls back to cgroup.procs.
    assert!(cg.is_populated());
    assert_eq!(cg.pids(), [7, 12]);
}

#[test]
fn hybrid_without_cpuacct_accounts_cpu_on_cgroup2() {
    let mut l = hybrid();
    l.v1.retain(|h| h.controllers != ["cpuacct"]);
    let (fs, d) = setup(&l);
    let cg = d.create("p", &Limits::default()).unwrap();
    fs.put(
        "/sys/fs/cgroup/unified/srediag/p/cpu.stat",
        "usage_usec 7\n",
    );
    assert_eq!(cg.cpu_usage_ns(), Some(7_000));
}

#[test]
fn pids_union_over_hierarchies() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p", &Limits::default()).unwrap();
    fs.put("/sys/fs/cgroup/memory/srediag/p/cgroup.procs", "10\n11\n")
        .put("/sys/fs/cgroup/pids/srediag/p/cgroup.procs", "11\n12\n");
    assert_eq!(cg.pids(), [10, 11, 12]);
}

#[test]
fn existing_cgroup_is_refused_and_left_alone() {
    let (fs, d) = setup(&hybrid());
    d.create("p", &full_limits()).unwrap();
    let before = fs.writes().len();
    let e = d.create("p", &full_limits()).err().unwrap();
    assert!(
        matches!(&e, CgroupError::Exists { path } if path == Path::new("/sys/fs/cgroup/memory/srediag/p")),
        "{e}"
    );
    assert_eq!(fs.writes().len(), before);
    assert!(fs.is_dir("/sys/fs/cgroup/pids/srediag/p"));
}

#[test]
fn failure_midway_rolls_back_what_was_created() {
    let (fs, d) = setup(&hybrid());
    // The pids hierarchy's root is a file: mkdir of srediag/p fails there (ENOTDIR).
    fs.put("/sys/fs/cgroup/pids/srediag", "");
    let e = d.create("p", &full_limits()).err().unwrap();
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot create cgroup /sys/fs/cgroup/pids/srediag/p: "),
        "{msg}"
    );
    for h in ["memory", "cpu", "cpuacct", "unified"] {
        assert!(!fs.is_dir(format!("/sys/fs/cgroup/{h}/srediag/p")), "{h}");
        assert!(fs.is_dir(format!("/sys/fs/cgroup/{h}/srediag")), "{h}");
    }
}

#[test]
fn missing_controller_fails_closed() {
    let (_, d) = setup(&pure_v1());
    let e = d
        .create(
            "p",
            &Limits {
                pids_max: Some(8),
                ..Limits::default()
            },
        )
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "the pids controller is not mounted on any cgroup hierarchy, so pids_max cannot be enforced"
    );
    d.create("p", &Limits::default()).unwrap();
    // Invalid limits are refused before anything is created.
    let e = d
        .create(
            "q",
            &Limits {
                cpu_weight: Some(0),
                ..Limits::default()
            },
        )
        .err()
        .unwrap();
    assert!(matches!(e, CgroupError::InvalidLimits { .. }), "{e}");
}

#[test]
fn names_are_single_safe_components() {
    let (fs, d) = setup(&pure_v2());
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        ".hidden",
        "p\u{fc}",
        "a b",
        &"x".repeat(129),
    ] {
        let e = d.create(bad, &Limits::default()).err().unwrap();
        assert!(matches!(e, CgroupError::InvalidName { .. }), "{bad:?}: {e}");
    }
    assert!(fs.writes().is_empty());
    d.create("ok_name-1.2", &Limits::default()).unwrap();
    for bad_root in ["", "/srediag", "srediag/", "a/../b", "a//b"] {
        let e = driver_with_fs(&pure_v2(), bad_root, Arc::new(TreeFs::new()))
            .err()
            .unwrap();
        assert!(
            matches!(e, CgroupError::InvalidName { .. }),
            "{bad_root:?}: {e}"
        );
    }
    let none = layout(CgroupMode::None, None, Vec::new());
    assert!(matches!(
        driver_with_fs(&none, DEFAULT_ROOT, Arc::new(TreeFs::new())).err(),
        Some(CgroupError::NoCgroupFs)
    ));
}

#[test]
fn procs_files_are_what_a_joining_child_writes_to() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p", &Limits::default()).unwrap();
    let fds: Vec<_> = cg
        .procs_files()
        .iter()
        .map(|f| fs.open_write(f).unwrap())
        .collect();
    assert_eq!(fds.len(), 5);
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    join_raw(&raw).unwrap();
    for f in cg.procs_files() {
        assert_eq!(fs.get(&f).as_deref(), Some("0"), "{}", f.display());
    }
    // O_CLOEXEC: the plugin does not inherit them.
    for fd in &raw {
        // SAFETY: F_GETFD on an fd we own.
        let flags = unsafe { libc::fcntl(*fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}

#[test]
fn cleanup_stale_removes_every_leftover_and_names_it() {
    let (fs, d) = setup(&hybrid());
    let c = "/sys/fs/cgroup";
    fs.put(format!("{c}/memory/srediag/old1/cgroup.procs"), "")
        .put(format!("{c}/memory/srediag/old1/nested/cgroup.procs"), "")
        .put(format!("{c}/pids/srediag/old1/cgroup.procs"), "")
        .put(format!("{c}/unified/srediag/old2/cgroup.procs"), "")
        .put(format!("{c}/unified/srediag/old2/cgroup.kill"), "")
        // Not a hierarchy srediag uses: left alone.
        .put(format!("{c}/cpuset/srediag/old3/cgroup.procs"), "");
    assert_eq!(d.cleanup_stale().unwrap(), ["old1", "old2"]);
    for h in ["memory", "pids", "unified"] {
        assert_eq!(
            fs.subdirs_of(format!("{c}/{h}/srediag")),
            Vec::<String>::new(),
            "{h}"
        );
    }
    assert!(fs.is_dir(format!("{c}/cpuset/srediag/old3")));
    // Empty: nothing was killed.
    assert!(fs.writes().is_empty());
    assert!(d.cleanup_stale().unwrap().is_empty());
    d.remove_root().unwrap();
    assert!(!fs.is_dir(format!("{c}/memory/srediag")));
    d.remove_root().unwrap();
}

#[test]
fn kill_all_refuses_to_kill_the_agent() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p", &Limits::default()).unwrap();
    let procs = "/sys/fs/cgroup/pids/srediag/p/cgroup.procs";
    fs.put(procs, &format!("{}\n", std::process::id()))
        .put("/sys/fs/cgroup/unified/srediag/p/cgroup.kill", "");
    let e = cg.kill_all().unwrap_err();
    assert!(
        matches!(&e, CgroupError::ContainsSelf { path, .. } if path == Path::new(procs)),
        "{e}"
    );
    assert!(fs.writes().iter().all(|(p, _)| !p.ends_with("cgroup.kill")));
    // And so does cleanup_stale, naming what it could not clean.
    let e = d.cleanup_stale().unwrap_err();
    let CgroupError::CleanupIncomplete {
        cleaned, failed, ..
    } = &e
    else {
        panic!("{e}")
    };
    assert!(cleaned.is_empty());
    assert_eq!(failed, &["p"]);
    assert!(
        e.to_string()
            .starts_with("stale cgroup cleanup incomplete: "),
        "{e}"
    );
}

#[test]
fn kill_all_uses_cgroup_kill_and_times_out_on_survivors() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p", &Limits::default()).unwrap();
    let kill = "/sys/fs/cgroup/unified/srediag/p/cgroup.kill";
    // A pid that never exists (above PID_MAX_LIMIT): the fake tree keeps listing it.
    fs.put(
        "/sys/fs/cgroup/unified/srediag/p/cgroup.procs",
        "999999999\n",
    )
    .put(kill, "");
    let t = std::time::Instant::now();
    let e = cg.kill_all().unwrap_err();
    assert!(
        matches!(&e, CgroupError::KillTimeout { pids, rounds: KILL_ROUNDS, .. } if pids == &[999_999_999]),
        "{e}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    let kills = fs
        .writes()
        .iter()
        .filter(|(p, v)| p == Path::new(kill) && v == "1")
        .count();
    assert_eq!(kills, KILL_ROUNDS as usize);
    // Nothing listed: returns at once without writing.
    let (fs, d) = setup(&hybrid());
    d.create("p", &Limits::default())
        .unwrap()
        .kill_all()
        .unwrap();
    assert!(fs.writes().is_empty());
}

#[test]
fn remove_is_idempotent() {
    let (fs, d) = setup(&hybrid());
    let cg = d.create("p", &Limits::default()).unwrap();
    cg.remove().unwrap();
    assert!(!fs.is_dir("/sys/fs/cgroup/memory/srediag/p"));
    cg.remove().unwrap();
}
