//! What a row runs: groups of items (the probe, the default run's plugin, test binaries with exact
//! test names, the start benchmark), with paths as the runner sees them (in the guest or on the
//! host) and bounded timeouts. Serialised as JSON into the guest; the same runner executes it on
//! the host for the reference row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::matrix::Subset;
use crate::{cargo, show};

/// A row's plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The row (`debian-6.1-v2-smp1`).
    pub row: String,
    /// `srediag` and the test plugins (the tests find them next to `SREDIAG_BIN`).
    pub bin_dir: PathBuf,
    /// `target/bundles` (its `debug/plugins/` and `dev-trust.yaml`, never the private key).
    pub bundles: PathBuf,
    /// Scratch space (configs, logs of the default run, the benchmark's files).
    pub work: PathBuf,
    /// Environment of every item (`SREDIAG_BIN`, `CI`, …).
    pub env: BTreeMap<String, String>,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub items: Vec<Item>,
}

/// One thing to run; each reports one result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// `srediag probe -o json` with no agent (trial loads).
    Probe { timeout_s: u64 },
    /// The embedded default configuration (ports and socket moved to private ones) with the
    /// signed first-party bundles: vectorhashprocessor must reach `ready`; then `srediag probe`
    /// asks the running agent how it attached each observer.
    DefaultRun { timeout_s: u64 },
    /// One test of a test binary, run alone (`--exact NAME --test-threads 1 --nocapture`).
    Test {
        /// The test file (`plugin_sandbox`) or `srediag_sandbox` for the sandbox crate's cgroup tests.
        file: String,
        binary: PathBuf,
        name: String,
        timeout_s: u64,
    },
    /// `cargo xtask bench plugin` with the debug binaries and `runs` restarts.
    Bench { runs: usize, timeout_s: u64 },
    /// A test this row cannot run (reported as skipped with the reason).
    NotRun { label: String, reason: String },
}

impl Item {
    pub fn label(&self) -> String {
        match self {
            Item::Probe { .. } => "srediag probe".into(),
            Item::DefaultRun { .. } => "default run: vectorhashprocessor bundle ready".into(),
            Item::Test { file, name, .. } => {
                let short = name.rsplit("::").next().unwrap_or(name);
                format!("{file}::{short}")
            }
            Item::Bench { runs, .. } => format!("bench plugin ({runs} restarts)"),
            Item::NotRun { label, .. } => label.clone(),
        }
    }

    pub fn timeout_s(&self) -> u64 {
        match self {
            Item::Probe { timeout_s }
            | Item::DefaultRun { timeout_s }
            | Item::Test { timeout_s, .. }
            | Item::Bench { timeout_s, .. } => *timeout_s,
            Item::NotRun { .. } => 0,
        }
    }
}

/// The test binaries the kernels run: `(file, cargo target selection)`.
const FILES: [&str; 5] = [
    "bpf_observers",
    "bpf_plugins",
    "bpf_ipc",
    "plugin_sandbox",
    "plugin_lifecycle",
];
/// The lib test binary holding the cgroup tests on the real cgroupfs (crate `srediag-sandbox`).
const SANDBOX_LIB: &str = "srediag_sandbox";
/// Those tests' path in it.
const CGROUP_TESTS: &str = "cgroup::privileged_tests::";

/// Per group, the tests of each file a subset runs; `None`: every test of the file (ignored
/// ones and the helper-process entry point excluded).
type Selection = [(&'static str, &'static str, Option<&'static [&'static str]>)];

/// What CI's guest runs: a few minutes under TCG. Each test here is what its group needs most.
const CI: &Selection = &[
    (
        "observers",
        "bpf_observers",
        Some(&[
            "loads_and_attaches_every_observer",
            "seccomp_violations_are_counted_exactly",
            "nothing_is_left_after_drop",
        ]),
    ),
    (
        "observers",
        "bpf_plugins",
        Some(&[
            "rss_per_plugin_matches_procfs",
            "oom_kill_of_a_plugin_is_counted_once",
        ]),
    ),
    (
        "observers",
        "bpf_ipc",
        Some(&["ipc_latency_follows_sampling_switched_at_run_time_and_leaves_nothing"]),
    ),
    (
        "sandbox",
        "plugin_sandbox",
        Some(&["hostile_plugin_attempts_all_fail"]),
    ),
    (
        "sandbox",
        SANDBOX_LIB,
        Some(&[
            "memory_hog_is_oom_killed_inside_its_cgroup",
            "pids_max_refuses_forks_beyond_the_limit",
            "cpu_max_caps_a_busy_loop",
            "kill_all_kills_a_daemonising_tree",
        ]),
    ),
    (
        "sandbox",
        "plugin_lifecycle",
        Some(&["agent_sigkill_leaves_no_plugin_process"]),
    ),
];

/// The full matrix: every privileged test of the observer and sandbox files.
const FULL: &Selection = &[
    ("observers", "bpf_observers", None),
    ("observers", "bpf_plugins", None),
    ("observers", "bpf_ipc", None),
    ("sandbox", "plugin_sandbox", None),
    ("sandbox", SANDBOX_LIB, None),
    (
        "sandbox",
        "plugin_lifecycle",
        Some(&[
            "agent_sigkill_leaves_no_plugin_process",
            "next_agent_without_plugins_still_cleans_stale_cgroups",
            "sigterm_stops_plugins_and_leaves_nothing",
            "crash_loop_reaches_quarantine_with_backoff",
        ]),
    ),
];

/// Tests a guest cannot run: (file, test, why).
const NOT_IN_GUESTS: [(&str, &str, &str); 1] = [(
    "bpf_observers",
    "agrees_with_bpftrace",
    "not run in guests: bpftrace and its LLVM libraries are not in the initramfs",
)];

/// Test binaries built by cargo: file → executable.
pub type Binaries = BTreeMap<String, PathBuf>;

/// `cargo test --no-run` for the files and the agent's lib tests; their executables.
pub fn build_test_binaries() -> Result<Binaries> {
    let mut c = cargo();
    c.args([
        "test",
        "--no-run",
        "--message-format",
        "json-render-diagnostics",
        "-p",
        "srediag-sandbox",
        "--lib",
        "-p",
        "srediag-tests",
    ]);
    for f in FILES {
        c.args(["--test", f]);
    }
    println!("$ {}", show(&c));
    let out = c
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{}`", show(&c)))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", show(&c), out.status);
    }
    let mut bins = Binaries::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str())
        else {
            continue;
        };
        let is_lib = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|x| x == "lib"));
        if (is_lib && name == SANDBOX_LIB) || (!is_lib && FILES.contains(&name)) {
            bins.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    for f in FILES.iter().chain(&[SANDBOX_LIB]) {
        if !bins.contains_key(*f) {
            bail!("cargo built no test binary for {f}");
        }
    }
    Ok(bins)
}

/// The tests of `binary` (`--list`), without the `#[ignore]`d ones.
fn list(binary: &Path) -> Result<Vec<String>> {
    let names = |ignored: bool| -> Result<Vec<String>> {
        let mut c = Command::new(binary);
        c.args(["--list", "--format", "terse"]);
        if ignored {
            c.arg("--ignored");
        }
        let out = c.output().with_context(|| show(&c))?;
        if !out.status.success() {
            bail!("`{}` failed: {}", show(&c), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect())
    };
    let ignored = names(true)?;
    Ok(names(false)?
        .into_iter()
        .filter(|n| !ignored.contains(n))
        .collect())
}

/// Where a file's binary is in the runner's view.
pub type PathMap<'a> = &'a dyn Fn(&str, &Path) -> PathBuf;

/// The groups of `subset`, with binaries at `path_of(file, host path)` and each item's timeout;
/// in a `guest`, the tests of [`NOT_IN_GUESTS`] are reported as not run.
pub fn groups(
    subset: Subset,
    bins: &Binaries,
    path_of: PathMap<'_>,
    test_timeout_s: u64,
    guest: bool,
) -> Result<Vec<Group>> {
    let mut groups: Vec<Group> = vec![
        Group {
            name: "probe".into(),
            items: vec![Item::Probe { timeout_s: 300 }],
        },
        Group {
            name: "default-run".into(),
            items: vec![Item::DefaultRun {
                timeout_s: test_timeout_s,
            }],
        },
    ];
    let selection = match subset {
        Subset::Ci => CI,
        Subset::Full => FULL,
    };
    for (group, file, only) in selection {
        let binary = &bins[*file];
        let mut all = list(binary)?;
        if *file == SANDBOX_LIB {
            all.retain(|n| n.starts_with(CGROUP_TESTS));
        }
        all.retain(|n| n != "helper_process");
        let chosen: Vec<String> = match only {
            None => all,
            Some(names) => {
                let mut v = Vec::new();
                for n in *names {
                    let full = if *file == SANDBOX_LIB {
                        format!("{CGROUP_TESTS}{n}")
                    } else {
                        n.to_string()
                    };
                    if !all.contains(&full) {
                        bail!(
                            "the kernels subset names {file}::{n}, which the test binary does not \
                             list (renamed? update xtask/src/kernels/plan.rs)"
                        );
                    }
                    v.push(full);
                }
                v
            }
        };
        let items = chosen.into_iter().map(|name| {
            let test = Item::Test {
                file: file.to_string(),
                binary: path_of(file, binary),
                name: name.clone(),
                timeout_s: test_timeout_s,
            };
            match NOT_IN_GUESTS
                .iter()
                .find(|(f, n, _)| guest && f == file && *n == name)
            {
                Some((_, _, why)) => Item::NotRun {
                    label: test.label(),
                    reason: why.to_string(),
                },
                None => test,
            }
        });
        match groups.iter_mut().find(|g| g.name == *group) {
            Some(g) => g.items.extend(items),
            None => groups.push(Group {
                name: group.to_string(),
                items: items.collect(),
            }),
        }
    }
    if subset == Subset::Full {
        groups.push(Group {
            name: "bench".into(),
            items: vec![Item::Bench {
                runs: 5,
                timeout_s: test_timeout_s,
            }],
        });
    }
    Ok(groups)
}
