//! The matrix's results: one line per row and group on the terminal, `target/kernels/report/`
//! (per row: `results.jsonl`, `console.log`, `probe.json`, `probe-agent.json`; `table.md`), and
//! the generated part of docs/kernels.md (rows of other kernels are kept: a run of one kernel
//! updates its own rows only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::matrix::Row;
use super::qemu;
use super::runner::{self, Outcome, Record};

/// One item's result.
#[derive(Debug, Clone)]
pub struct ItemResult {
    pub group: String,
    pub item: String,
    pub outcome: Outcome,
    pub secs: f64,
    pub detail: Option<String>,
}

/// Everything a row produced.
#[derive(Debug, Clone)]
pub struct RowReport {
    pub id: String,
    /// The kernel package and version (or the host's release).
    pub kernel: String,
    /// `v2`, `hybrid` (from the probe when it ran).
    pub cgroup: String,
    pub results: Vec<ItemResult>,
    pub probe: Option<serde_json::Value>,
    pub probe_agent: Option<serde_json::Value>,
    pub wall: Duration,
    /// The runner wrote its last record.
    pub done: bool,
    /// The guest was killed at the row timeout.
    pub killed: bool,
    /// Soft lockups / RCU stalls in the console.
    pub lockups: usize,
}

impl RowReport {
    /// Failed and timed-out items, plus one when the runner did not finish.
    pub fn failures(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::TimedOut))
            .count()
            + usize::from(!self.done)
    }

    fn groups(&self) -> Vec<&str> {
        let mut g: Vec<&str> = Vec::new();
        for r in &self.results {
            if !g.contains(&r.group.as_str()) {
                g.push(&r.group);
            }
        }
        g
    }

    /// `3 passed, 1 failed, 1 skipped` for a group.
    fn counts(&self, group: &str) -> String {
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for r in self.results.iter().filter(|r| r.group == group) {
            *n.entry(r.outcome.as_str()).or_default() += 1;
        }
        ["passed", "failed", "timed out", "skipped"]
            .iter()
            .filter_map(|k| n.get(k).map(|c| format!("{c} {k}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads a row's results and console from `dir`, saves the probes as files.
pub fn collect(
    row: &Row,
    dir: &Path,
    kernel: String,
    wall: Duration,
    killed: bool,
) -> Result<RowReport> {
    let records = runner::read_records(&dir.join("results.jsonl"));
    let mut rep = RowReport {
        id: row.id(),
        kernel,
        cgroup: row.cgroup.to_string(),
        results: Vec::new(),
        probe: None,
        probe_agent: None,
        wall,
        done: false,
        killed,
        lockups: 0,
    };
    for r in records {
        match r {
            Record::Result {
                group,
                item,
                outcome,
                secs,
                detail,
            } => rep.results.push(ItemResult {
                group,
                item,
                outcome,
                secs,
                detail,
            }),
            Record::Probe { agent, json } => {
                let name = if agent {
                    "probe-agent.json"
                } else {
                    "probe.json"
                };
                std::fs::write(dir.join(name), serde_json::to_string_pretty(&json)?)?;
                if let Some(m) = json["cgroup"]["mode"].as_str() {
                    rep.cgroup = m.to_string();
                }
                if agent {
                    rep.probe_agent = Some(json);
                } else {
                    rep.probe = Some(json);
                }
            }
            Record::Done { .. } => rep.done = true,
            Record::Start { .. } | Record::Bench { .. } => {}
        }
    }
    let console = std::fs::read(dir.join("console.log")).unwrap_or_default();
    rep.lockups = qemu::lockups(&String::from_utf8_lossy(&console));
    Ok(rep)
}

/// A result as it arrives.
pub fn print_progress(r: &Record) {
    match r {
        Record::Start { uname } => println!("  runner on: {uname}"),
        Record::Result {
            group,
            item,
            outcome,
            secs,
            detail,
        } => {
            println!(
                "  {group:<12} {:<9} {secs:>7.1} s  {item}",
                outcome.as_str()
            );
            if let Some(d) = detail.as_deref().filter(|_| *outcome != Outcome::Passed) {
                for l in d.lines().take(6) {
                    println!("               | {l}");
                }
            }
        }
        Record::Done { secs } => println!("  runner done in {secs:.0} s"),
        Record::Probe { .. } | Record::Bench { .. } => {}
    }
}

/// One line per group of a row, then the failures with their text.
pub fn print_row(rep: &RowReport) {
    println!(
        "\n{} ({}, cgroup {}): {:.0} s{}{}",
        rep.id,
        rep.kernel,
        rep.cgroup,
        rep.wall.as_secs_f64(),
        if rep.killed {
            ", KILLED at the row timeout"
        } else {
            ""
        },
        if rep.lockups > 0 {
            format!(", {} soft lockup/stall reports", rep.lockups)
        } else {
            String::new()
        }
    );
    for g in rep.groups() {
        println!("  {g:<12} {}", rep.counts(g));
    }
    if !rep.done {
        println!("  the runner did not finish (see console.log)");
    }
    for r in &rep.results {
        if r.outcome != Outcome::Passed {
            println!(
                "  {} {}: {}",
                r.outcome.as_str(),
                r.item,
                first_line(&r.detail)
            );
        }
    }
}

fn first_line(d: &Option<String>) -> String {
    let d = d.as_deref().unwrap_or("");
    let mut l: String = d
        .lines()
        .find(|l| !l.contains("panicked at"))
        .unwrap_or(d)
        .chars()
        .take(200)
        .collect();
    if l.is_empty() {
        l = "-".into();
    }
    l
}

const OBSERVERS: [&str; 5] = [
    "process_tracking",
    "cpu",
    "memory",
    "seccomp",
    "ipc_latency",
];

/// `tp_btf sched_switch` · `kprobe …`: how an observer attached (the agent's view, else the
/// probe's trial load), or why it is down.
fn attach(rep: &RowReport, name: &str) -> String {
    let Some(j) = rep.probe_agent.as_ref().or(rep.probe.as_ref()) else {
        return "?".into();
    };
    let Some(o) = j["observers"]["list"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == name))
    else {
        return "?".into();
    };
    if o["up"] != true {
        let why: String = o["reason"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(90)
            .collect();
        return format!("**down**: {}", why.replace('|', "/"));
    }
    // Group the programs by attach type: `tp_btf rss_stat, mark_victim`; uprobes by kind only
    // (their targets are per-process paths).
    const KINDS: [&str; 12] = [
        "tp_btf",
        "raw_tp",
        "tracepoint",
        "kprobe",
        "kretprobe",
        "fentry",
        "fexit",
        "uprobe",
        "uretprobe",
        "lsm",
        "iter",
        "perf_event",
    ];
    let mut by: Vec<(String, Vec<String>)> = Vec::new();
    for a in o["attach"].as_array().into_iter().flatten() {
        let s = a.as_str().unwrap_or("");
        let (kind, what) = s.split_once(' ').unwrap_or((s, ""));
        if !KINDS.contains(&kind) {
            continue;
        }
        let what = if kind.starts_with("uprobe") || kind.starts_with("uretprobe") {
            None
        } else {
            Some(what.to_string())
        };
        match by.iter_mut().find(|(k, _)| k == kind) {
            Some((_, v)) => v.extend(what),
            None => by.push((kind.to_string(), what.into_iter().collect())),
        }
    }
    if by.is_empty() {
        return "up".into();
    }
    by.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k} {}", v.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn landlock(rep: &RowReport) -> String {
    let Some(j) = rep.probe.as_ref().or(rep.probe_agent.as_ref()) else {
        return "?".into();
    };
    j["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "landlock"))
        .map(|i| {
            let d = i["detail"].as_str().unwrap_or("");
            if i["status"] == "ok" {
                d.split(':').next().unwrap_or(d).to_string()
            } else {
                format!(
                    "{}: {}",
                    i["status"].as_str().unwrap_or("?"),
                    d.chars().take(60).collect::<String>()
                )
            }
        })
        .unwrap_or_else(|| "?".into())
}

fn cell(rep: &RowReport, group: &str) -> String {
    if !rep.results.iter().any(|r| r.group == group) {
        return if rep.done {
            "—".into()
        } else {
            "not reached".into()
        };
    }
    let c = rep.counts(group);
    if rep
        .results
        .iter()
        .any(|r| r.group == group && matches!(r.outcome, Outcome::Failed | Outcome::TimedOut))
    {
        format!("**{c}**")
    } else {
        c
    }
}

const HEADER: &str = "| row | kernel | cgroup | process_tracking | cpu | memory | seccomp | ipc_latency | landlock | probe | default run | observers | sandbox | bench | lockups | wall |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn table_line(rep: &RowReport) -> String {
    let mut s = format!("| {} | {} | {} |", rep.id, rep.kernel, rep.cgroup);
    for o in OBSERVERS {
        let _ = write!(s, " {} |", attach(rep, o));
    }
    let bench = rep
        .results
        .iter()
        .find(|r| r.group == "bench")
        .map(|r| match r.outcome {
            Outcome::Passed => r.detail.clone().unwrap_or_default(),
            o => format!("**{}**", o.as_str()),
        })
        .unwrap_or_else(|| "—".into());
    let _ = write!(
        s,
        " {} | {} | {} | {} | {} | {} | {} | {:.0} s{} |",
        landlock(rep),
        cell(rep, "probe"),
        cell(rep, "default-run"),
        cell(rep, "observers"),
        cell(rep, "sandbox"),
        bench,
        rep.lockups,
        rep.wall.as_secs_f64(),
        if rep.killed { " (killed)" } else { "" }
    );
    s
}

/// Lines of a failure's text in the table's details (the rest is in the row's console.log).
const DETAIL_LINES: usize = 8;

/// Failures and skips of a row, with their text.
fn details(rep: &RowReport) -> String {
    let mut s = String::new();
    for r in &rep.results {
        if r.outcome == Outcome::Passed {
            continue;
        }
        let d = r.detail.as_deref().unwrap_or("");
        let _ = writeln!(
            s,
            "- {} `{}` ({}, {:.0} s):\n\n  ```text\n{}\n  ```",
            r.outcome.as_str(),
            r.item,
            r.group,
            r.secs,
            d.lines()
                .take(DETAIL_LINES)
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if !rep.done {
        let _ = writeln!(
            s,
            "- the runner did not finish (row killed: {})",
            rep.killed
        );
    }
    if let Some(r) = rep
        .results
        .iter()
        .find(|r| r.group == "default-run" && r.outcome == Outcome::Passed)
    {
        let _ = writeln!(s, "- default run: {}", r.detail.as_deref().unwrap_or(""));
    }
    s
}

/// The table of `reports` (markdown), with each row's failures and skips below.
pub fn table(reports: &[RowReport]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in reports {
        s.push_str(&table_line(r));
        s.push('\n');
    }
    for r in reports {
        let d = details(r);
        if !d.is_empty() {
            let _ = write!(s, "\n#### {}\n\n{d}", r.id);
        }
    }
    s
}

const BEGIN: &str =
    "<!-- kernels:begin (generated by `cargo xtask kernels`; rows of kernels not run are kept) -->";
const END: &str = "<!-- kernels:end -->";

/// Replaces this run's rows in the generated part of `doc` (kept: other rows).
pub fn update_docs(doc: &Path, reports: &[RowReport]) -> Result<()> {
    let text = std::fs::read_to_string(doc).with_context(|| format!("read {}", doc.display()))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        anyhow::bail!("{}: no generated section ({BEGIN} … {END})", doc.display());
    };
    let old = &text[b + BEGIN.len()..e];
    // Old rows and details, by row id.
    let mut rows: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for l in old
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| row "))
    {
        let id = l[2..].split(" |").next().unwrap_or("").trim().to_string();
        order.push(id.clone());
        rows.insert(id, (l.to_string(), String::new()));
    }
    for chunk in old.split("\n#### ").skip(1) {
        let (id, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
        if let Some(r) = rows.get_mut(id.trim()) {
            r.1 = body.trim().to_string() + "\n";
        }
    }
    for r in reports {
        if !order.contains(&r.id) {
            order.push(r.id.clone());
        }
        rows.insert(r.id.clone(), (table_line(r), details(r)));
    }
    order.sort_by_key(|id| rank(id));
    let mut s = format!("{BEGIN}\n{HEADER}\n");
    for id in &order {
        s.push_str(&rows[id].0);
        s.push('\n');
    }
    for id in &order {
        let d = &rows[id].1;
        if !d.trim().is_empty() {
            let _ = write!(s, "\n#### {id}\n\n{}", d.trim_end());
            s.push('\n');
        }
    }
    let new = format!("{}{s}{}", &text[..b], &text[e..]);
    std::fs::write(doc, new).with_context(|| format!("write {}", doc.display()))?;
    println!("kernels: updated {}", doc.display());
    Ok(())
}

/// Host first, then by kernel version, v2 before hybrid, then smp.
fn rank(id: &str) -> (u8, Vec<u32>, u8, String) {
    if id == "host" {
        return (0, Vec::new(), 0, String::new());
    }
    // `debian-6.1-v2-smp1`
    let mut parts = id.trim_start_matches("debian-").split('-');
    let ver: Vec<u32> = parts
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    let mode = match parts.next() {
        Some("v2") => 0,
        Some("hybrid") => 1,
        _ => 2,
    };
    (1, ver, mode, parts.collect::<Vec<_>>().join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(id: &str, outcome: Outcome) -> RowReport {
        RowReport {
            id: id.into(),
            kernel: "k 1".into(),
            cgroup: "v2".into(),
            results: vec![ItemResult {
                group: "sandbox".into(),
                item: "plugin_sandbox::x".into(),
                outcome,
                secs: 1.0,
                detail: Some("boom\nline two".into()),
            }],
            probe: Some(serde_json::json!({"observers": {"list": [
                {"name": "memory", "up": true, "attach": ["tp_btf rss_stat", "tp_btf mark_victim"]},
                {"name": "ipc_latency", "up": false, "reason": "verifier: a | b"},
                {"name": "cpu", "up": true, "attach": ["uprobe a, b in /proc/self/exe", "plugin x: /proc/1/exe"]}
            ]}})),
            probe_agent: None,
            wall: Duration::from_secs(5),
            done: true,
            killed: false,
            lockups: 0,
        }
    }

    #[test]
    fn docs_keep_other_rows_and_replace_this_runs() {
        let r = rep("debian-6.1-v2-smp1", Outcome::Failed);
        assert_eq!(attach(&r, "memory"), "tp_btf rss_stat, mark_victim");
        assert!(attach(&r, "ipc_latency").starts_with("**down**: verifier: a / b"));
        assert_eq!(attach(&r, "cpu"), "uprobe");
        assert_eq!(r.failures(), 1);
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("kernels.md");
        std::fs::write(&doc, format!("# t\n\n{BEGIN}\n{END}\n\nafter\n")).unwrap();
        update_docs(&doc, &[r, rep("host", Outcome::Passed)]).unwrap();
        let t = std::fs::read_to_string(&doc).unwrap();
        assert!(
            t.contains("#### debian-6.1-v2-smp1") && t.contains("boom"),
            "{t}"
        );
        update_docs(&doc, &[rep("debian-6.1-v2-smp1", Outcome::Passed)]).unwrap();
        let t = std::fs::read_to_string(&doc).unwrap();
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| row"))
            .collect();
        assert_eq!(rows.len(), 2, "{t}");
        assert!(rows[0].starts_with("| host |") && rows[1].starts_with("| debian-6.1-v2-smp1 |"));
        // The 6.1 row passed now: its old failure text is gone.
        assert!(!t.contains("**1 failed**") && !t.contains("boom"), "{t}");
        assert!(t.ends_with("\n\nafter\n") && t.starts_with("# t\n"));
        assert!(rank("debian-5.10-v2-smp1") < rank("debian-6.1-v2-smp1"));
        assert!(rank("debian-6.1-v2-smp1") < rank("debian-6.12-v2-smp1"));
        assert!(rank("debian-6.1-v2-smp2") < rank("debian-6.1-hybrid-smp1"));
        assert!(rank("debian-6.1-v2-smp1") < rank("debian-6.1-v2-smp2"));
    }
}
