//! The plugin's scratch directory against a hostile plugin that fills it
//! (`tests/plugins/src/bin/srediag-hostile-plugin.rs`, finals `diskfill` and `inodefill`).
//!
//! Each plugin gets a private tmpfs over its scratch directory, in its own mount namespace, sized
//! from its limits (`limits.scratch_size`: default a quarter of `memory_max`;
//! `limits.scratch_inodes`: default 4096), with `RLIMIT_FSIZE` at the same size; its pages are
//! charged to the plugin's memory cgroup. The host's `/run/srediag/plugins/<name>` is only the
//! mount point and stays empty.
//!
//! Privileged (namespaces, cgroups, uid switch); the tests share host-global state, so they run
//! one at a time.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use srediag_tests::plugins::*;
use srediag_tests::*;

/// Entries of the host's side of plugin `name`'s scratch directory.
fn host_scratch_entries(name: &str) -> Vec<String> {
    match fs::read_dir(Path::new(SCRATCH_ROOT).join(name)) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => panic!("the host's scratch directory of {name}: {e}"),
    }
}

fn final_line(lines: &[Value], target: &str) -> Value {
    lines
        .iter()
        .find(|l| l["attempt"] == "final" && l["target"] == target)
        .cloned()
        .unwrap_or_else(|| panic!("no final {target} line: {lines:?}"))
}

/// Three plugins with the default limits (`memory_max` 64 MiB, so a 16 MiB scratch) attack
/// their scratch directory: many 1 MiB files up to 48 MiB (ENOSPC at 16 MiB), one sparse file
/// written from 15 MiB on (EFBIG at `RLIMIT_FSIZE` = 16 MiB although the tmpfs has room, and the
/// plugin is not killed by SIGXFSZ), 20,000 files (ENOSPC at 4096 inodes, the directory
/// included). Nothing reaches the host's scratch directory, the written pages are charged to the
/// plugin's memory cgroup, and the agent keeps answering.
#[test]
fn scratch_is_a_private_tmpfs_bounded_in_bytes_and_inodes() {
    if !privileged("scratch_is_a_private_tmpfs_bounded_in_bytes_and_inodes") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let h = plugin_bin("srediag-hostile-plugin");
    const MIB: u64 = 1 << 20;
    let plugins = format!(
        r#"  s-files:
    path: {h}
    type: processor
    config: {{final: diskfill, trigger: go, fill_mib: 48, file_mib: 1}}
    limits: {{memory_max: 64MiB}}
  s-bigfile:
    path: {h}
    type: processor
    config: {{final: diskfill, trigger: go, fill_mib: 48, file_mib: 0, seek_mib: 15}}
    limits: {{memory_max: 64MiB}}
  s-inodes:
    path: {h}
    type: processor
    config: {{final: inodefill, trigger: go, fill_files: 20000}}
    limits: {{memory_max: 64MiB}}"#,
        h = h.display(),
    );
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    let names = ["s-files", "s-bigfile", "s-inodes"];
    for name in names {
        wait_state(&admin, name, &["ready"], Duration::from_secs(20));
        assert!(trigger(name, "{}"), "cannot write the trigger of {name}");
    }
    let files = final_line(
        &wait_line(
            &agent,
            "s-files",
            "final",
            "diskfill",
            Duration::from_secs(60),
        ),
        "diskfill",
    );
    let big = final_line(
        &wait_line(
            &agent,
            "s-bigfile",
            "final",
            "diskfill",
            Duration::from_secs(60),
        ),
        "diskfill",
    );
    let inodes = final_line(
        &wait_line(
            &agent,
            "s-inodes",
            "final",
            "inodefill",
            Duration::from_secs(60),
        ),
        "inodefill",
    );
    eprintln!("s-files: {files}\ns-bigfile: {big}\ns-inodes: {inodes}");

    // Bytes: the tmpfs is full at a quarter of memory_max.
    let written = files["written"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        files["errno"],
        libc::ENOSPC as i64,
        "filling the scratch directory should end in ENOSPC: {files}"
    );
    assert!(
        (15 * MIB..=16 * MIB).contains(&written),
        "wrote {written} bytes into a 16 MiB scratch: {files}"
    );
    // One file: RLIMIT_FSIZE, an error (SIGXFSZ is ignored), not a kill.
    assert_eq!(
        big["errno"],
        libc::EFBIG as i64,
        "one big file should stop at RLIMIT_FSIZE: {big}"
    );
    assert_eq!(big["written"], MIB, "from 15 MiB to 16 MiB: {big}");
    assert_eq!(big["rlimit_fsize"], serde_json::json!([16 * MIB, 16 * MIB]));
    // Inodes.
    assert_eq!(
        inodes["errno"],
        libc::ENOSPC as i64,
        "creating files past the inode limit should fail with ENOSPC: {inodes}"
    );
    let created = inodes["created"].as_u64().unwrap_or(u64::MAX);
    assert!(
        (4000..4096).contains(&created),
        "created {created} files with 4096 inodes: {inodes}"
    );

    for name in names {
        // Nothing on the host: its side of the scratch directory is only the mount point.
        assert_eq!(
            host_scratch_entries(name),
            Vec::<String>::new(),
            "{name} wrote into the host's scratch directory"
        );
        // The plugin sees a tmpfs of its own there, with the sizes of its limits.
        let pid = plugin_pids(name)[0];
        let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        let point = format!(" {SCRATCH_ROOT}/{name} ");
        let line = mountinfo
            .lines()
            .find(|l| l.contains(&point) && l.contains(" - tmpfs "))
            .unwrap_or_else(|| panic!("no tmpfs at the scratch directory of {name}:\n{mountinfo}"));
        assert!(
            line.contains("size=16384k") && line.contains("nr_inodes=4096"),
            "{name}: {line}"
        );
        // The attack cost the plugin, not the agent: it is still running, never restarted.
        let st = plugin_status(&admin, name);
        assert_eq!(st["state"], "ready", "{name}: {st}");
        assert_eq!(st["restarts"], 0, "{name}: {st}");
    }
    // The tmpfs pages are charged to the plugin's memory cgroup (what `plugin list` and
    // `srediag_plugin_memory_bytes` show, sampled on the heartbeat).
    poll_until(
        Duration::from_secs(10),
        "s-files's memory charge to include its scratch",
        || {
            let charged = agent
                .metric("srediag_plugin_memory_bytes", &[("name", "s-files")])
                .unwrap_or(0.0);
            (charged >= written as f64).then_some(())
        },
    );
    assert!(agent.healthy(), "agent not healthy after the attack");
    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "agent exit status: {status}");
    for name in names {
        assert!(
            !Path::new(SCRATCH_ROOT).join(name).exists(),
            "scratch directory of {name} left"
        );
    }
}

/// Three plugins (more than the agent's async worker threads on a 2-vCPU host) with 60,000
/// files each in their scratch directories are restarted at once while `/-/healthy` is polled:
/// no answer takes longer than 500 ms. Tearing the trees down is the kernel's, when each dying
/// plugin's mount namespace goes; whatever cleanup is left runs off the async runtime.
#[test]
fn restarting_plugins_with_huge_scratch_trees_keeps_health_fast() {
    if !privileged("restarting_plugins_with_huge_scratch_trees_keeps_health_fast") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().expect("tempdir");
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let h = plugin_bin("srediag-hostile-plugin");
    const FILES: u64 = 60_000;
    let names = ["s-tree-0", "s-tree-1", "s-tree-2"];
    let plugins: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "  {n}:\n    path: {h}\n    type: processor\n    config: {{final: inodefill, trigger: go, fill_files: {FILES}}}\n    limits: {{memory_max: 512MiB, scratch_inodes: 100000}}",
                h = h.display()
            )
        })
        .collect();
    let mut agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins.join("\n")),
        tel,
        &admin,
    );
    let mut first = Vec::new();
    for n in names {
        first.push(wait_state(&admin, n, &["ready"], Duration::from_secs(20))["pid"].clone());
        assert!(trigger(n, "{}"), "cannot write the trigger of {n}");
    }
    for n in names {
        let fill = final_line(
            &wait_line(&agent, n, "final", "inodefill", Duration::from_secs(120)),
            "inodefill",
        );
        assert_eq!(fill["created"], FILES, "{n}: {fill}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let url = format!("http://{}/-/healthy", agent.telemetry);
        std::thread::spawn(move || {
            let client = http();
            let (mut worst, mut n, mut failed) = (Duration::ZERO, 0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let ok = client
                    .get(&url)
                    .send()
                    .is_ok_and(|r| r.status().as_u16() == 200);
                worst = worst.max(t.elapsed());
                n += 1;
                failed += u32::from(!ok);
                std::thread::sleep(Duration::from_millis(10));
            }
            (worst, n, failed)
        })
    };
    let t0 = Instant::now();
    let restarts: Vec<_> = names
        .iter()
        .map(|n| {
            let (n, sock) = (n.to_string(), admin.display().to_string());
            std::thread::spawn(move || {
                srediag(
                    &["plugin", "restart", &n, "--socket", &sock],
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    for (n, r) in names.iter().zip(restarts) {
        let out = r.join().expect("restart thread");
        assert_eq!(out.code(), 0, "plugin restart {n}: {}", out.stderr);
    }
    for (n, old) in names.iter().zip(&first) {
        poll_until(Duration::from_secs(60), &format!("{n} ready again"), || {
            let s = plugin_status(&admin, n);
            (s["state"] == "ready" && s["pid"].is_u64() && s["pid"] != *old).then_some(())
        });
    }
    let restart = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (worst, polls, failed) = poller.join().expect("poller");
    eprintln!(
        "restarting {} plugins with {FILES} scratch files each took {:.0} ms; /-/healthy worst {:.1} ms over {polls} polls",
        names.len(),
        restart.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    assert_eq!(
        failed, 0,
        "/-/healthy failed {failed} times during the restarts"
    );
    assert!(polls >= 3, "only {polls} health polls during the restarts");
    assert!(
        worst < Duration::from_millis(500),
        "/-/healthy took {worst:?} while plugins with {FILES} scratch files each were restarted"
    );
    for n in names {
        assert_eq!(host_scratch_entries(n), Vec::<String>::new(), "{n}");
    }
    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "agent exit status: {status}");
}
