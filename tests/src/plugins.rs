//! Helpers for the plugin tests (`plugin_lifecycle.rs`, `plugin_sandbox.rs`): root checks,
//! serialisation of tests that share host-global state, plugin binaries, agent configs with
//! plugins, and the admin socket.

use crate::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const SCRATCH_ROOT: &str = "/run/srediag/plugins";

// ---------------------------------------------------------------------------------------------
// Helpers shared by the plugin test files.

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when the test may run: root. Otherwise prints why it skips, or fails under `CI=true`.
pub fn privileged(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root (the plugin sandbox uses namespaces, cgroups and a uid switch); \
         CI=true never skips it"
    );
    eprintln!(
        "skipping {test}: needs root (the plugin sandbox uses namespaces, cgroups and a uid \
         switch); run the tests as root, CI does"
    );
    false
}

/// A binary of the `srediag-test-plugins` crate, next to the `srediag` binary under test.
pub fn plugin_bin(name: &str) -> PathBuf {
    let bin = agent_bin();
    let p = bin.parent().expect("binary has a directory").join(name);
    assert!(
        p.is_file(),
        "{} not found: `cargo build --workspace --bins` builds the test plugins next to {}",
        p.display(),
        bin.display()
    );
    p
}

/// An agent configuration: one quiet metrics pipeline, the admin socket, and `plugins` (YAML
/// mapping entries indented by two spaces).
pub fn agent_config(admin: &Path, tel: u16, plugins: &str) -> String {
    format!(
        r#"receivers:
  hostmetrics:
    collection_interval: 60s
exporters:
  debug: {{}}
plugins:
{plugins}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    metrics:
      receivers: [hostmetrics]
      exporters: [debug]
"#,
        admin = admin.display()
    )
}

/// Starts the agent and waits for `/-/ready` and for its admin socket (`/-/ready` can come first).
pub fn start_agent(dir: &Path, config: &str, tel: u16, admin: &Path) -> Agent {
    let agent = Agent::start_in_default_run_dir(dir, config, tel);
    poll_until(Duration::from_secs(10), "the admin socket", || {
        std::os::unix::net::UnixStream::connect(admin).ok()
    });
    agent
}

/// `srediag plugin list --socket S -o json`.
pub fn plugin_list(admin: &Path) -> Vec<Value> {
    let out = srediag(
        &[
            "plugin",
            "list",
            "--socket",
            &admin.display().to_string(),
            "-o",
            "json",
        ],
        Duration::from_secs(15),
    );
    out.assert_no_panic();
    assert_eq!(out.code(), 0, "srediag plugin list failed:\n{}", out.stderr);
    match serde_json::from_str(&out.stdout) {
        Ok(Value::Array(a)) => a,
        other => panic!(
            "plugin list -o json is not an array: {other:?}\n{}",
            out.stdout
        ),
    }
}

pub fn plugin_status(admin: &Path, name: &str) -> Value {
    plugin_list(admin)
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("plugin {name} missing from `srediag plugin list`"))
}

/// Waits until plugin `name` is in one of `states` (with a pid when `ready`); returns its status.
pub fn wait_state(admin: &Path, name: &str, states: &[&str], timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = plugin_status(admin, name);
        if states.iter().any(|st| s["state"] == *st) && (s["state"] != "ready" || s["pid"].is_u64())
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "plugin {name} not in {states:?} within {timeout:?}; last status: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The open fds of `pid` and what they point to.
pub fn proc_fds(pid: u64) -> BTreeMap<i32, String> {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            Some((fd, target))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The data path: an agent with `otlp → processors → file` and plugins (`plugin_datapath.rs`,
// `bpf_ipc.rs`).

/// A running agent with an OTLP/HTTP receiver, a `file` exporter and plugins.
pub struct DataPath {
    /// The admin socket.
    pub admin: PathBuf,
    /// The file exporter's output (rotation far away, queue of 8 batches).
    pub out: PathBuf,
    /// The OTLP/HTTP port.
    pub otlp: u16,
    /// First to drop: a failing test prints the agent's log from the directory.
    pub agent: Agent,
    _dir: tempfile::TempDir,
}

impl DataPath {
    /// otlp (HTTP) → `processors` (a `batch` processor is defined: 200 items, 50 ms) → file, with
    /// `plugins` (YAML mapping entries indented by two spaces).
    pub fn start(plugins: &str, processors: &str) -> DataPath {
        DataPath::start_in(tempfile::tempdir().expect("tempdir"), plugins, processors)
    }

    /// Like [`DataPath::start`] in `dir`, where the test may have put its own trust policy
    /// (`trust.yaml`) and bundles (`plugins/`) first.
    pub fn start_in(dir: tempfile::TempDir, plugins: &str, processors: &str) -> DataPath {
        let admin = dir.path().join("admin.sock");
        let out = dir.path().join("out.jsonl");
        let (tel, otlp) = (free_port(), free_port());
        let config = format!(
            r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    send_batch_size: 200
    timeout: 50ms
exporters:
  file:
    path: {out}
    rotation:
      max_megabytes: 4096
    queue:
      capacity: 8
plugins:
{plugins}
service:
  admin:
    socket: {admin}
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [{processors}]
      exporters: [file]
"#,
            out = out.display(),
            admin = admin.display()
        );
        let agent = start_agent(dir.path(), &config, tel, &admin);
        DataPath {
            _dir: dir,
            admin,
            out,
            otlp,
            agent,
        }
    }

    /// The directory of the agent's configuration, trust policy, bundles and output.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The OTLP/HTTP logs URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/logs", self.otlp)
    }

    /// Sequence numbers (`test.seq`) of run `run` in the exporter's file, with their counts.
    pub fn seqs(&self, run: &str) -> BTreeMap<i64, usize> {
        let mut m = BTreeMap::new();
        if !self.out.exists() {
            return m;
        }
        for r in log_records(&read_jsonl(&self.out)) {
            if r.attr_str("test.run") == Some(run)
                && let Some(s) = r.attr_int("test.seq")
            {
                *m.entry(s).or_default() += 1;
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------------------------
// The hostile plugin (`tests/plugins/src/bin/srediag-hostile-plugin.rs`): its report lines, its
// trigger file, its cgroups.

/// The JSON objects of the `HOSTILE {...}` lines plugin `name` printed (from the agent's log).
pub fn hostile_lines(agent_stderr: &str, name: &str) -> Vec<Value> {
    let tag = format!(" plugin={name} stream=\"stdout\"");
    agent_stderr
        .lines()
        .filter_map(|l| {
            let body = l.strip_suffix(&tag)?;
            let json = &body[body.find("HOSTILE ")? + "HOSTILE ".len()..];
            Some(
                serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("bad HOSTILE line ({e}): {l}")),
            )
        })
        .collect()
}

/// Waits until plugin `name` printed a line with `attempt`/`target`; returns all its lines.
pub fn wait_line(
    agent: &Agent,
    name: &str,
    attempt: &str,
    target: &str,
    timeout: Duration,
) -> Vec<Value> {
    poll_until(
        timeout,
        &format!("{name}: HOSTILE {attempt}/{target}"),
        || {
            let lines = hostile_lines(&agent.stderr(), name);
            lines
                .iter()
                .any(|l| l["attempt"] == attempt && l["target"] == target)
                .then_some(lines)
        },
    )
}

/// The mount points of the cgroup hierarchies (v1 and v2) in a mountinfo text: the layout as it
/// is (`/sys/fs/cgroup` itself with cgroup v2 only; `/sys/fs/cgroup/<controller>` and
/// `/sys/fs/cgroup/unified` on a hybrid host), never assumed.
pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let unescape = |s: &str| {
        // mountinfo escapes space, tab, newline and backslash as \ooo.
        let mut out = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\\' {
                let oct: String = (0..3).filter_map(|_| it.next()).collect();
                match u8::from_str_radix(&oct, 8) {
                    Ok(b) => out.push(b as char),
                    Err(_) => {
                        out.push(c);
                        out.push_str(&oct);
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(PathBuf::from(unescape(left.split_whitespace().nth(4)?)))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The cgroup hierarchies mounted in this mount namespace (from `/proc/self/mountinfo`).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    parse_cgroup_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The directories of cgroup `root` (e.g. `srediag`) that exist, one per hierarchy.
pub fn cgroup_roots(root: &str) -> Vec<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(root))
        .filter(|p| p.is_dir())
        .collect()
}

/// The cgroup directories of plugin `name` of the default run directory's agent (cgroup root
/// `srediag`) that exist, one per hierarchy.
pub fn plugin_cgroups(name: &str) -> Vec<PathBuf> {
    cgroup_roots("srediag")
        .into_iter()
        .map(|r| r.join(name))
        .filter(|p| p.is_dir())
        .collect()
}

/// The pids in plugin `name`'s cgroup (from the first hierarchy that lists any).
pub fn plugin_pids(name: &str) -> Vec<u32> {
    plugin_cgroups(name)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .find(|p| !p.is_empty())
        .unwrap_or_default()
}

/// The working directory of plugin `name` as the plugin sees it (its scratch directory: a tmpfs
/// of its own mount namespace, which the host's `/run/srediag/plugins/<name>` does not show),
/// reached through `/proc/<pid>/cwd` of one of its processes. `None` until a process of the
/// plugin is there: one that just joined its cgroup still has the agent's working directory.
pub fn plugin_cwd(name: &str) -> Option<PathBuf> {
    let scratch = Path::new(SCRATCH_ROOT).join(name);
    plugin_pids(name)
        .into_iter()
        .map(|pid| PathBuf::from(format!("/proc/{pid}/cwd")))
        .find(|cwd| std::fs::read_link(cwd).is_ok_and(|target| target == scratch))
}

/// Writes the trigger file `go` (with `content`) into the scratch directory of plugin `name`,
/// atomically (the plugin must never read half of it). False when the plugin is not running.
pub fn trigger(name: &str, content: &str) -> bool {
    let Some(dir) = plugin_cwd(name) else {
        return false;
    };
    let tmp = dir.join(".go.tmp");
    std::fs::write(&tmp, content).is_ok() && std::fs::rename(&tmp, dir.join("go")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_follow_the_layout() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
                  31 23 0:27 / /sys/fs/bpf rw - bpf bpf rw\n";
        assert_eq!(parse_cgroup_mounts(v2), [PathBuf::from("/sys/fs/cgroup")]);
        let hybrid = "25 23 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                      29 25 0:26 / /sys/fs/cgroup/odd\\040name rw - cgroup cgroup rw,pids\n";
        assert_eq!(
            parse_cgroup_mounts(hybrid),
            [
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/odd name",
                "/sys/fs/cgroup/unified"
            ]
            .map(PathBuf::from)
        );
    }
}
