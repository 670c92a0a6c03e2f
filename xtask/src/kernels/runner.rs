//! Runs a [`Plan`] — in the guest (`xtask kernels-guest`, started by the initramfs's init) or on
//! the host for the reference row — one item at a time, each in its own process group and killed
//! at its timeout. Structured results go to `out` as JSON lines ([`Record`]); every item's full
//! output goes to `console` between `==== item … ====` lines.

use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::plan::{Item, Plan};

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::TimedOut => "timed out",
        }
    }
}

/// One line of the runner's structured output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// The runner started: the kernel it runs on.
    Start { uname: String },
    /// An item finished.
    Result {
        group: String,
        item: String,
        outcome: Outcome,
        secs: f64,
        /// The failure's text, the skip's reason, or what a pass measured.
        detail: Option<String>,
    },
    /// `srediag probe -o json`; `agent`: asked from the running default agent.
    Probe {
        agent: bool,
        json: serde_json::Value,
    },
    /// The plugin start benchmark's numbers (ms).
    Bench { json: serde_json::Value },
    /// Every item ran.
    Done { secs: f64 },
}

/// Where the runner writes.
pub struct Sinks {
    pub out: Box<dyn Write>,
    pub console: Box<dyn Write>,
}

impl Sinks {
    pub fn emit(&mut self, r: &Record) -> Result<()> {
        let line = serde_json::to_string(r)?;
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Runs every item of `plan`.
pub fn run(plan: &Plan, sinks: &mut Sinks) -> Result<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&plan.work)
        .with_context(|| format!("mkdir {}", plan.work.display()))?;
    let uname = std::fs::read_to_string("/proc/version").unwrap_or_default();
    sinks.emit(&Record::Start {
        uname: uname.trim().to_string(),
    })?;
    for g in &plan.groups {
        for item in &g.items {
            let label = item.label();
            writeln!(sinks.console, "\n==== item {} / {label} ====", g.name)?;
            sinks.console.flush()?;
            let t = Instant::now();
            let (outcome, detail) = match run_item(plan, item, sinks) {
                Ok(v) => v,
                Err(e) => (Outcome::Failed, Some(format!("{e:#}"))),
            };
            let secs = t.elapsed().as_secs_f64();
            writeln!(
                sinks.console,
                "==== end {} / {label}: {} in {secs:.1} s ====",
                g.name,
                outcome.as_str()
            )?;
            sinks.console.flush()?;
            sinks.emit(&Record::Result {
                group: g.name.clone(),
                item: label,
                outcome,
                secs,
                detail,
            })?;
        }
    }
    sinks.emit(&Record::Done {
        secs: t0.elapsed().as_secs_f64(),
    })
}

type ItemResult = Result<(Outcome, Option<String>)>;

/// Why an item cannot run on this kernel, if it cannot: without Landlock srediag refuses to
/// start plugins (fail closed: SRD-P008, or SRD-P014 for a bundle that requires it), so every
/// item that needs a running plugin would only show that refusal. The observer tests that load
/// the programs in-process and the cgroup tests still run.
fn cannot_run(item: &Item) -> Option<String> {
    let needs_plugin = match item {
        Item::DefaultRun { .. } | Item::Bench { .. } => true,
        Item::Test { file, .. } => !matches!(file.as_str(), "bpf_observers" | "srediag_sandbox"),
        _ => false,
    };
    if !needs_plugin || landlock_abi().is_some() {
        return None;
    }
    Some(
        "this kernel has no Landlock: srediag refuses to start plugins here (fail closed: SRD-P008, SRD-P014 for bundles requiring it; `sandbox.allow_degraded` runs them without it)"
            .into(),
    )
}

/// The kernel's Landlock ABI version, `None` when Landlock is absent or disabled.
fn landlock_abi() -> Option<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns the ABI version (or an
    // error); it reads no memory and creates no fd.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v)
}

fn run_item(plan: &Plan, item: &Item, sinks: &mut Sinks) -> ItemResult {
    let timeout = Duration::from_secs(item.timeout_s());
    if let Some(why) = cannot_run(item) {
        return Ok((Outcome::Skipped, Some(why)));
    }
    match item {
        Item::Probe { .. } => {
            let (json, _) = probe(plan, None, timeout, sinks)?;
            let detail = summary_of_probe(&json);
            sinks.emit(&Record::Probe { agent: false, json })?;
            Ok((Outcome::Passed, Some(detail)))
        }
        Item::DefaultRun { .. } => super::default_run::run(plan, timeout, sinks),
        Item::Test { binary, name, .. } => test(plan, binary, name, timeout, sinks),
        Item::NotRun { reason, .. } => Ok((Outcome::Skipped, Some(reason.clone()))),
        Item::Bench { runs, .. } => {
            let dir = plan.work.join("bench");
            let res = crate::bench_plugin::measure(
                &plan.bin_dir.join("srediag"),
                &plan.bin_dir.join("srediag-test-plugin"),
                &dir,
                *runs,
                false,
                timeout,
            )?;
            writeln!(sinks.console, "{}", res.table)?;
            let detail = format!(
                "cold start p50 {:.1} ms, restart p50 {:.1} ms, raw spawn p50 {:.2} ms",
                res.cold_p50, res.restart_p50, res.raw_plugin_p50
            );
            sinks.emit(&Record::Bench {
                json: serde_json::json!({
                    "runs": runs,
                    "cold_p50_ms": res.cold_p50,
                    "restart_p50_ms": res.restart_p50,
                    "raw_spawn_p50_ms": res.raw_plugin_p50,
                }),
            })?;
            Ok((Outcome::Passed, Some(detail)))
        }
    }
}

/// A process of the plan's environment, in its own process group, output into `log`.
pub fn command(plan: &Plan, program: &Path, log: &Path) -> Result<Command> {
    let f = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut c = Command::new(program);
    c.envs(&plan.env)
        .current_dir(&plan.work)
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .process_group(0);
    Ok(c)
}

/// Kills the process group of `child` (SIGKILL) and reaps the child.
pub fn kill_group(child: &mut Child) {
    // SAFETY: signalling the process group we created for this child (`process_group(0)`).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `child` at most `timeout`; `None` when it was killed at the timeout.
pub fn wait_bounded(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            kill_group(child);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies `log` to the console.
fn echo(sinks: &mut Sinks, log: &Path) -> Result<String> {
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    sinks.console.write_all(text.as_bytes())?;
    sinks.console.flush()?;
    Ok(text)
}

fn test(
    plan: &Plan,
    binary: &Path,
    name: &str,
    timeout: Duration,
    sinks: &mut Sinks,
) -> ItemResult {
    let log = plan.work.join("test.log");
    let mut c = command(plan, binary, &log)?;
    c.args(["--exact", name, "--test-threads", "1", "--nocapture"]);
    let mut child = c
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let st = wait_bounded(&mut child, timeout)?;
    let text = echo(sinks, &log)?;
    Ok(classify(&text, st, timeout))
}

/// Passed, failed (with the panic's text), skipped (with the reason the test printed), or
/// timed out, from a libtest run of one test with `--nocapture`.
pub fn classify(
    text: &str,
    status: Option<std::process::ExitStatus>,
    timeout: Duration,
) -> (Outcome, Option<String>) {
    let Some(st) = status else {
        return (
            Outcome::TimedOut,
            Some(format!(
                "killed after {timeout:?}; last output:\n{}",
                tail(text, 15)
            )),
        );
    };
    if !st.success() {
        return (Outcome::Failed, Some(failure_text(text, st)));
    }
    if !text.contains("running 1 test") {
        return (
            Outcome::Failed,
            Some(format!(
                "the test binary ran no test (name filter matched nothing):\n{}",
                tail(text, 10)
            )),
        );
    }
    if text.contains("0 passed; 0 failed; 1 ignored") {
        return (Outcome::Skipped, Some("#[ignore]d".into()));
    }
    let skip = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("skipped") || l.starts_with("skipping"));
    match skip {
        Some(l) => {
            let reason = l.split_once(": ").map_or(l, |(_, r)| r);
            (Outcome::Skipped, Some(reason.to_string()))
        }
        None => (Outcome::Passed, None),
    }
}

/// The panic message (from `panicked at` to the backtrace note), else the output's tail.
fn failure_text(text: &str, st: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.contains("panicked at")) else {
        return format!("exit {st}; last output:\n{}", tail(text, 20));
    };
    let mut out = String::new();
    for l in &lines[start..] {
        if l.starts_with("note: run with `RUST_BACKTRACE")
            || l.starts_with("stack backtrace:")
            || *l == "failures:"
        {
            break;
        }
        out.push_str(l);
        out.push('\n');
        if out.len() > 4000 {
            out.push_str("… (cut; the full text is in the row's console.log)\n");
            break;
        }
    }
    out.trim_end().to_string()
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `srediag probe -o json` (against the agent at `socket` when given): (JSON, raw output).
pub fn probe(
    plan: &Plan,
    socket: Option<&Path>,
    timeout: Duration,
    sinks: &mut Sinks,
) -> Result<(serde_json::Value, String)> {
    let log = plan.work.join("probe.log");
    let json_out = plan.work.join("probe.json");
    let f = std::fs::File::create(&json_out)?;
    let mut c = command(plan, &plan.bin_dir.join("srediag"), &log)?;
    c.args(["probe", "-o", "json"]).stdout(f);
    // Without an agent: a socket path nobody listens on, so the probe does its own trial loads.
    let sock = match socket {
        Some(s) => s.to_path_buf(),
        None => plan.work.join("no-agent.sock"),
    };
    c.arg("--socket").arg(&sock);
    let mut child = c.spawn().context("spawn srediag probe")?;
    let st = wait_bounded(&mut child, timeout)?;
    let stderr = echo(sinks, &log)?;
    let text = std::fs::read_to_string(&json_out).unwrap_or_default();
    match st {
        None => bail!("srediag probe did not finish within {timeout:?}"),
        Some(st) if !st.success() => bail!("srediag probe failed ({st}): {}", tail(&stderr, 10)),
        Some(_) => {}
    }
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("srediag probe -o json printed no JSON: {}", tail(&text, 5)))?;
    Ok((json, text))
}

/// One line: kernel, cgroup mode, Landlock, and the observers that are down.
pub fn summary_of_probe(j: &serde_json::Value) -> String {
    let item = |name: &str| {
        j["items"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .map(|i| i["detail"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let down: Vec<String> = j["observers"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["up"] != true)
        .map(|o| format!("{} down", o["name"].as_str().unwrap_or("?")))
        .collect();
    let mut s = format!(
        "{}; cgroup {}; landlock {}",
        item("kernel"),
        j["cgroup"]["mode"].as_str().unwrap_or("?"),
        item("landlock").split(':').next().unwrap_or("")
    );
    if !down.is_empty() {
        s.push_str("; ");
        s.push_str(&down.join(", "));
    }
    s
}

/// The guest's entry point: reads the plan, writes records to `out` (the second serial port).
pub fn guest_main(plan: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(plan).with_context(|| format!("read {}", plan.display()))?;
    let plan: Plan = serde_json::from_str(&text).context("parse the plan")?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(out)
        .with_context(|| format!("open {}", out.display()))?;
    let mut sinks = Sinks {
        out: Box::new(out),
        console: Box::new(std::io::stdout()),
    };
    run(&plan, &mut sinks)
}

/// Reads the records of a results file (lines that do not parse are skipped: the serial line
/// may carry a partial last line when the guest was killed).
pub fn read_records(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

/// A fresh scratch directory for an item.
pub fn scratch(plan: &Plan, name: &str) -> Result<PathBuf> {
    let d = plan.work.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("mkdir {}", d.display()))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    fn ok() -> Option<std::process::ExitStatus> {
        Some(std::process::ExitStatus::from_raw(0))
    }

    #[test]
    fn libtest_output_is_classified() {
        let t = Duration::from_secs(1);
        let pass = "running 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed";
        assert_eq!(classify(pass, ok(), t).0, Outcome::Passed);
        let skip =
            "running 1 test\nskipped x: no kernel BTF (/sys/kernel/btf/vmlinux)\ntest x ... ok";
        assert_eq!(
            classify(skip, ok(), t),
            (
                Outcome::Skipped,
                Some("no kernel BTF (/sys/kernel/btf/vmlinux)".into())
            )
        );
        let none = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored";
        assert_eq!(classify(none, ok(), t).0, Outcome::Failed);
        let fail = "running 1 test\nthread 'x' panicked at tests/a.rs:1:2:\nboom\nnote: run with `RUST_BACKTRACE=1`\ntest x ... FAILED";
        let (o, d) = classify(fail, Some(std::process::ExitStatus::from_raw(101 << 8)), t);
        assert_eq!(o, Outcome::Failed);
        assert_eq!(d.unwrap(), "thread 'x' panicked at tests/a.rs:1:2:\nboom");
        assert_eq!(classify("running 1 test\n", None, t).0, Outcome::TimedOut);
    }
}
