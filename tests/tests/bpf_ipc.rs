//! The IPC latency observer against the real agent and the real sandboxed `vectorhashprocessor`:
//! uprobes on the probe sites of both binaries fill `srediag_ipc_latency_seconds{plugin,direction}`
//! with exactly one sample per sampled batch; sampling switched off at run time (same plugin
//! process) stops the histogram while traffic goes on; a restarted plugin gets its uprobes moved
//! to the new process; once the agent stops, none of its uprobes is left. A plugin calling its
//! probe sites with the other plugin's ring ids (`srediag-probe-forger`) adds nothing to that
//! plugin's histograms, and every forged hit is counted for the forger.
//!
//! Privileged (root, kernel BTF, bpftool): without them the tests print why they skip, unless
//! `CI=true`. They share host-global state with the other plugin tests and run one at a time.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use srediag_tests::plugins::*;
use srediag_tests::*;

const PLUGIN: &str = "vectorhashprocessor";

fn bpf_privileged(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no kernel BTF"
        );
        eprintln!("skipping {test}: no kernel BTF (/sys/kernel/btf/vmlinux)");
        return false;
    }
    true
}

/// otlp (HTTP) → plugin/vectorhashprocessor → file; `data_path` is the plugin's YAML flow map.
fn start(data_path: &str) -> DataPath {
    let s = DataPath::start(
        &format!(
            "  {PLUGIN}:\n    path: {}\n    type: processor\n    config: {{window_seconds: 60}}\n    data_path: {data_path}",
            plugin_bin(PLUGIN).display()
        ),
        &format!("plugin/{PLUGIN}"),
    );
    wait_state(&s.admin, PLUGIN, &["ready"], Duration::from_secs(20));
    s
}

/// Records of `run` in the exporter's file.
fn records_of(out: &Path, run: &str) -> usize {
    if !out.exists() {
        return 0;
    }
    log_records(&read_jsonl(out))
        .iter()
        .filter(|r| r.attr_str("test.run") == Some(run))
        .count()
}

/// Sends `requests` requests of 10 unique records each (one batch each), waits until all are
/// exported; returns how many batches crossed to the plugin meanwhile.
fn traffic(s: &DataPath, requests: u64) -> u64 {
    let before = batches(&s.agent);
    let run = run_id();
    let client = http();
    let url = s.url();
    for i in 0..requests {
        let req = logs_request(&run, "ipc", i * 10..i * 10 + 10, 16);
        assert_eq!(post_protobuf(&client, &url, &req), 200);
    }
    let want = (requests * 10) as usize;
    poll_until(Duration::from_secs(20), "every record exported", || {
        (records_of(&s.out, &run) == want).then_some(())
    });
    // Every answer was read (the records are out), so nothing is in flight.
    batches(&s.agent) - before
}

fn batches(agent: &Agent) -> u64 {
    agent.counter(
        "srediag_plugin_ipc_batches_total",
        &[("plugin", PLUGIN), ("direction", "to_plugin")],
    ) as u64
}

/// `_count` of the histogram per direction (0 when the series does not exist).
fn counts(agent: &Agent) -> (u64, u64) {
    let c = |d: &str| {
        agent.counter(
            "srediag_ipc_latency_seconds_count",
            &[("plugin", PLUGIN), ("direction", d)],
        ) as u64
    };
    (c("to_plugin"), c("from_plugin"))
}

fn srediag_ok(args: &[&str]) -> String {
    let out = srediag(args, Duration::from_secs(30));
    out.assert_no_panic();
    assert_eq!(
        out.code(),
        0,
        "srediag {args:?}: {}\n{}",
        out.stderr,
        out.stdout
    );
    out.stdout
}

fn set_sampling(admin: &Path, every: u32) {
    srediag_ok(&[
        "plugin",
        "ipc-sampling",
        PLUGIN,
        &every.to_string(),
        "--socket",
        &admin.display().to_string(),
    ]);
}

/// One uprobe link the agent holds: (link id, prog id, attach target) from `/proc/<pid>/fdinfo`
/// (`link_type: perf`, `event_type: uprobe`; kernels before that fdinfo: from the link's info).
type Uprobe = (u64, u64, String);

/// The uprobe links process `pid` holds now.
fn agent_uprobes(pid: u64) -> Vec<Uprobe> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
        };
        let (Some(link), Some(prog)) = (field("link_id:"), field("prog_id:")) else {
            continue;
        };
        if field("link_type:").as_deref() != Some("perf") {
            continue;
        }
        let target = match (field("event_type:"), field("name:")) {
            // The perf link's own fdinfo (Linux 6.17+).
            (Some(t), Some(name)) => (t == "uprobe").then_some(name),
            // Older kernels: BPF_OBJ_GET_INFO_BY_FD on a copy of the agent's fd (Linux 6.6+
            // reports the uprobe's file); a kernel that reports nothing shows as `?`.
            _ => {
                let fd: i32 = e
                    .file_name()
                    .to_str()
                    .and_then(|f| f.parse().ok())
                    .unwrap_or(-1);
                match perf_link_target(pid, fd) {
                    Some(PerfTarget::Uprobe(name)) => Some(name),
                    Some(PerfTarget::Other) => None,
                    None => Some("?".to_string()),
                }
            }
        };
        if let Some(name) = target {
            out.push((link.parse().unwrap(), prog.parse().unwrap(), name));
        }
    }
    out.sort();
    out
}

/// What a perf-event link is attached to, per the kernel's link info.
enum PerfTarget {
    Uprobe(String),
    Other,
}

/// `bpf_link_info` of fd `fd` of process `pid` (copied with `pidfd_getfd`): the uprobe's file
/// (`perf_event.uprobe.file_name`, Linux 6.6+); `None` when the kernel does not say.
fn perf_link_target(pid: u64, fd: i32) -> Option<PerfTarget> {
    // struct bpf_link_info: type, id, prog_id (u32 each), then the union at offset 16:
    // perf_event { u32 type; u32 pad; uprobe { u64 file_name; u32 name_len; u32 offset; … } }.
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const PERF_EVENT_UPROBE: u32 = 1;
    const PERF_EVENT_URETPROBE: u32 = 2;
    // SAFETY: pidfd_open with a pid and no flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if pidfd < 0 {
        return None;
    }
    // SAFETY: pidfd_getfd copies fd `fd` of the process into ours; the result is checked.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) } as i32;
    // SAFETY: closing the pidfd opened above.
    unsafe { libc::close(pidfd) };
    if copy < 0 {
        return None;
    }
    let mut name = [0u8; 4096];
    let mut info = [0u64; 32];
    info[3] = name.as_mut_ptr() as u64; // perf_event.uprobe.file_name (offset 24)
    info[4] = name.len() as u64; // name_len (offset 32), offset 0
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = [0u64; 16];
    let a = InfoByFd {
        bpf_fd: copy as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` is larger than InfoByFd and 8-byte aligned.
    unsafe { std::ptr::write(attr.as_mut_ptr().cast::<InfoByFd>(), a) };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD with a zeroed attr holding the fd, the buffer and its
    // length; the kernel writes at most info_len bytes into `info` and name_len into `name`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    // SAFETY: closing the copy made above.
    unsafe { libc::close(copy) };
    if rc != 0 {
        return None;
    }
    let perf_type = info[2] as u32; // perf_event.type (offset 16)
    match perf_type {
        0 => None,
        PERF_EVENT_UPROBE | PERF_EVENT_URETPROBE => {
            let end = name.iter().position(|&b| b == 0).unwrap_or(0);
            Some(PerfTarget::Uprobe(
                String::from_utf8_lossy(&name[..end]).into_owned(),
            ))
        }
        _ => Some(PerfTarget::Other),
    }
}

/// Ids of every BPF `what` (`link`, `prog`) on the host, per `bpftool -j <what> show`.
fn bpf_ids(what: &str) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", what, "show"])
        .output()
        .expect("bpftool (Debian: apt install bpftool)");
    assert!(
        out.status.success(),
        "bpftool {what} show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_default()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_u64())
        .collect()
}

#[test]
fn ipc_latency_follows_sampling_switched_at_run_time_and_leaves_nothing() {
    if !bpf_privileged("ipc_latency_follows_sampling_switched_at_run_time_and_leaves_nothing") {
        return;
    }
    let _g = serial();
    let mut s = start("{probe_sampling: 1}");
    let sock = s.admin.display().to_string();
    let agent_pid = s.agent.pid() as u64;
    let pid = plugin_status(&s.admin, PLUGIN)["pid"].as_u64().unwrap();

    // The observer runs and `srediag probe` says where it is attached.
    let probe: Value =
        serde_json::from_str(&srediag_ok(&["probe", "-o", "json", "--socket", &sock])).unwrap();
    let text = probe.to_string();
    assert!(
        text.contains(&format!("plugin {PLUGIN}: /proc/{pid}/exe")),
        "{probe:#}"
    );
    // Two uprobes in the agent's binary, two in the plugin's: all held by the agent.
    let ups = agent_uprobes(agent_pid);
    let targets: Vec<&str> = ups.iter().map(|u| u.2.as_str()).collect();
    let named = !targets.iter().all(|t| *t == "?");
    let first_links: Vec<u64> = ups.iter().map(|u| u.0).collect();
    if targets.len() == 4 && !named {
        // Before Linux 6.6 a perf link's info does not name the uprobe's file: the four links
        // are there, where they point cannot be read back.
        println!(
            "uprobe targets not reported by this kernel (BPF link info names them from 6.6): checked that the agent holds 4 uprobe links: {ups:?}"
        );
    } else {
        assert_eq!(
            targets,
            [
                "/proc/self/exe",
                "/proc/self/exe",
                &format!("/proc/{pid}/exe"),
                &format!("/proc/{pid}/exe")
            ],
            "{ups:?}"
        );
    }

    // Sampling every batch: one sample per batch and direction, exactly.
    let b1 = traffic(&s, 25);
    assert!(b1 >= 25, "{b1} batches");
    let (to1, from1) = counts(&s.agent);
    println!("sampling 1: {b1} batches, histogram counts to_plugin {to1}, from_plugin {from1}");
    assert_eq!((to1, from1), (b1, b1));
    let text = s.agent.metrics_text();
    let inf = |d: &str| {
        s.agent.counter(
            "srediag_ipc_latency_seconds_bucket",
            &[("plugin", PLUGIN), ("direction", d), ("le", "+Inf")],
        ) as u64
    };
    assert_eq!(
        (inf("to_plugin"), inf("from_plugin")),
        (to1, from1),
        "{text}"
    );
    let sum = s.agent.counter(
        "srediag_ipc_latency_seconds_sum",
        &[("plugin", PLUGIN), ("direction", "to_plugin")],
    );
    // Each sample is > 0 and far below a second on any host that passes the traffic above.
    assert!(sum > 0.0 && sum < b1 as f64, "sum {sum}");
    assert_eq!(
        s.agent.counter(
            "srediag_bpf_dropped_total",
            &[("reason", "ipc_consume_unmatched")]
        ),
        0.0
    );
    // `srediag top` fills its IPC columns from the histogram.
    let top: Value = serde_json::from_str(
        srediag_ok(&["top", "-n", "1", "-o", "json", "--socket", &sock])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let row = &top["plugins"][0];
    for d in ["to_plugin", "from_plugin"] {
        let p50 = row["ipc_p50_seconds"][d].as_f64().expect("p50");
        let p99 = row["ipc_p99_seconds"][d].as_f64().expect("p99");
        assert!(0.0 < p50 && p50 <= p99 && p99 < 10.0, "{row}");
    }

    // Off at run time: the same plugin process, traffic on, the histogram stands still.
    set_sampling(&s.admin, 0);
    let b2 = traffic(&s, 25);
    assert!(b2 >= 25);
    assert_eq!(counts(&s.agent), (to1, from1), "sampling off, {b2} batches");
    assert_eq!(plugin_status(&s.admin, PLUGIN)["pid"].as_u64(), Some(pid));

    // Every second batch: consecutive sequence numbers, half of them (rounded either way).
    set_sampling(&s.admin, 2);
    let b3 = traffic(&s, 25);
    let (to3, from3) = counts(&s.agent);
    println!(
        "sampling 2: {b3} batches, +{} / +{}",
        to3 - to1,
        from3 - from1
    );
    for grown in [to3 - to1, from3 - from1] {
        assert!(
            grown == b3 / 2 || grown == b3.div_ceil(2),
            "{grown} samples of {b3} batches at period 2"
        );
    }
    assert_eq!(plugin_status(&s.admin, PLUGIN)["pid"].as_u64(), Some(pid));

    // A restarted plugin: its uprobes move to the new process (still four in all).
    srediag_ok(&["plugin", "restart", PLUGIN, "--socket", &sock]);
    let new_pid = poll_until(Duration::from_secs(20), "a new plugin process", || {
        let st = plugin_status(&s.admin, PLUGIN);
        st["pid"]
            .as_u64()
            .filter(|p| *p != pid && st["state"] == "ready")
    });
    let ups = poll_until(Duration::from_secs(5), "the uprobes moved", || {
        let u = agent_uprobes(agent_pid);
        // Where the kernel names targets: two point at the new process. Elsewhere: two of the
        // four links are new (the plugin's were detached and attached again).
        let moved = if named {
            u.iter()
                .filter(|x| x.2 == format!("/proc/{new_pid}/exe"))
                .count()
        } else {
            u.iter().filter(|x| !first_links.contains(&x.0)).count()
        };
        (u.len() == 4 && moved == 2).then_some(u)
    });
    let b4 = traffic(&s, 10);
    let (to4, from4) = counts(&s.agent);
    assert!(
        to4 > to3 && from4 > from3 && to4 - to3 <= b4.div_ceil(2),
        "after restart (pid {new_pid}): {to3}->{to4}, {from3}->{from4}, {b4} batches; {ups:?}"
    );

    // Agent stopped: none of its uprobe links or programs is left.
    let (links, progs): (Vec<u64>, Vec<u64>) = ups.iter().map(|u| (u.0, u.1)).unzip();
    s.agent.sigterm();
    assert!(s.agent.wait_exit(Duration::from_secs(20)).success());
    poll_until(
        Duration::from_secs(5),
        "the uprobe links and programs gone",
        || {
            let left_links: Vec<u64> = bpf_ids("link")
                .into_iter()
                .filter(|l| links.contains(l))
                .collect();
            let left_progs: Vec<u64> = bpf_ids("prog")
                .into_iter()
                .filter(|p| progs.contains(p))
                .collect();
            (left_links.is_empty() && left_progs.is_empty()).then_some(())
        },
    );
}

/// The agent's log lines about plugin `name` that contain `needle`.
fn log_lines(agent: &Agent, name: &str, needle: &str) -> Vec<String> {
    let tag = format!("plugin={name}");
    agent
        .stderr()
        .lines()
        .filter(|l| l.contains(needle) && l.contains(&tag))
        .map(str::to_owned)
        .collect()
}

/// Issue 11, point 17: a plugin calls its own probe sites (where the agent attached uprobes for
/// it) with the ring ids of the other plugin of the same agent — publish, 50 ms, consume: a
/// forged 50 ms sample per seq and direction in the victim's histogram — then publishes on every
/// ring id without consuming (trying to evict the victim's pending publishes). The victim's
/// histograms count exactly its own sampled batches; every forged hit is counted for the forger.
#[test]
fn forged_probe_hits_are_dropped_and_counted() {
    if !bpf_privileged("forged_probe_hits_are_dropped_and_counted") {
        return;
    }
    let _g = serial();
    // Ring ids are handed out 1, 2, 3, … per incarnation (two each): with two plugins that
    // never restart, ids 1..=4 are the four rings and 5..=8 are registered to nobody.
    let (rings, seqs, flood) = (8u64, 16u64, 1024u64);
    let s = DataPath::start(
        &format!(
            "  {PLUGIN}:\n    path: {}\n    type: processor\n    config: {{window_seconds: 60}}\n    data_path: {{probe_sampling: 1}}\n  forger:\n    path: {}\n    type: processor\n    config: {{rings: {rings}, seqs: {seqs}, hold_ms: 50, flood: {flood}}}\n    data_path: {{probe_sampling: 0}}\n",
            plugin_bin(PLUGIN).display(),
            plugin_bin("srediag-probe-forger").display(),
        ),
        &format!("plugin/{PLUGIN}, plugin/forger"),
    );
    wait_state(&s.admin, PLUGIN, &["ready"], Duration::from_secs(20));
    wait_state(&s.admin, "forger", &["ready"], Duration::from_secs(20));

    // The first batch reaches the forger after the honest plugin: it forges, then floods.
    let b1 = traffic(&s, 10);
    let done = poll_until(Duration::from_secs(20), "the forger's report", || {
        log_lines(&s.agent, "forger", "FORGER done")
            .into_iter()
            .next()
    });
    println!("{done}");
    // Batches sent while the honest plugin's table was flooded are still measured.
    let b2 = traffic(&s, 15);
    let b = b1 + b2;
    let (to, from) = counts(&s.agent);
    let sum = |d: &str| {
        s.agent.counter(
            "srediag_ipc_latency_seconds_sum",
            &[("plugin", PLUGIN), ("direction", d)],
        )
    };
    println!(
        "{b} honest batches: histogram counts to_plugin {to} (sum {:.6} s), from_plugin {from} (sum {:.6} s)",
        sum("to_plugin"),
        sum("from_plugin")
    );
    assert_eq!((to, from), (b, b), "{}", s.agent.metrics_text());
    let forged = s.agent.counter(
        "srediag_bpf_ipc_forged_probes_total",
        &[("plugin", "forger")],
    );
    // Per forged seq: both sites on both of the honest plugin's rings are wrong for the forger,
    // and one site of each of its own rings (it consumes its agent→plugin ring and publishes its
    // plugin→agent ring legitimately). The flood (publishes only): both honest rings and its own
    // agent→plugin ring. Ids registered to nobody are ignored.
    println!("forged probe hits counted for the forger: {forged}");
    assert_eq!(
        forged,
        (6 * seqs + 3 * flood) as f64,
        "{}",
        s.agent.metrics_text()
    );
    assert_eq!(
        s.agent
            .counter("srediag_bpf_ipc_forged_probes_total", &[("plugin", PLUGIN)]),
        0.0
    );
    for name in [PLUGIN, "forger"] {
        assert_eq!(
            plugin_status(&s.admin, name)["restarts"],
            Value::from(0),
            "ring ids assume no restart"
        );
    }
}
