//! `srediag diagnose seccomp [--follow]` and `srediag diagnose bpf-stats`: diagnostics the
//! running agent's eBPF observers collect, over its admin socket.
//!
//! Violation *events* are bounded per plugin in the kernel (its event budget, violation events
//! per second); every violation is still counted. So the listing is not mistaken for everything
//! that happened, `diagnose seccomp` says how many events of each plugin were suppressed: after
//! the table (on stderr with `-o json|yaml`, whose stdout stays the array of events), and while
//! following, before the first event after suppressed ones (each event's `suppressed_before`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::Output;
use super::exit::{CmdResult, FAILURE, Failure, UNAVAILABLE, ok};
use super::output::{print, table};
use super::plugin::{call, cell};
use crate::plugins::admin::AdminRequest;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in seconds.
pub(super) fn utc(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

const HEADER: [&str; 7] = ["TIME", "PID", "TID", "PLUGIN", "SYSCALL", "ACTION", "COMM"];

fn row(v: &Value) -> Vec<String> {
    vec![
        v["time"].as_f64().map(utc).unwrap_or_else(|| "-".into()),
        cell(&v["pid"]),
        cell(&v["tid"]),
        cell(&v["plugin"]),
        cell(&v["syscall"]),
        cell(&v["action"]),
        cell(&v["comm"]),
    ]
}

/// A plugin whose violation events the kernel suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Suppressed {
    plugin: String,
    events: u64,
    budget_per_second: u64,
}

/// The plugins with suppressed violation events, from `plugin list`'s kernel numbers (none when
/// the agent does not report them).
fn suppressed(plugins: &Value) -> Vec<Suppressed> {
    plugins
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let events = p["kernel"]["events_suppressed"].as_u64().unwrap_or(0);
                    (events > 0).then(|| Suppressed {
                        plugin: cell(&p["name"]),
                        events,
                        budget_per_second: p["kernel"]["event_budget_per_second"]
                            .as_u64()
                            .unwrap_or(0),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn suppressed_line(s: &Suppressed) -> String {
    format!(
        "{}: {} violation events suppressed (over its budget of {} events/s); every violation is counted: srediag_plugin_seccomp_violations_total, `srediag plugin list` VIOL",
        s.plugin, s.events, s.budget_per_second
    )
}

/// The line shown while following before an event whose plugin had events suppressed since its
/// previous one (`None` when it had none).
fn suppressed_before_line(v: &Value) -> Option<String> {
    let n = v["suppressed_before"].as_u64().filter(|n| *n > 0)?;
    Some(format!(
        "{}: {n} violation events suppressed before this one (over its event budget; all counted)",
        cell(&v["plugin"])
    ))
}

/// Prints the recent violations, then (with `follow`) each new one as it arrives.
pub fn seccomp(socket: &Path, follow: bool, out: Output) -> CmdResult {
    let unavailable = |e: String| Failure::new(UNAVAILABLE, e);
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        unavailable(format!(
            "cannot connect to the agent's admin socket {}: {e} (is `srediag run` running, and are you root?)",
            socket.display()
        ))
    })?;
    let mut req = serde_json::to_vec(&AdminRequest::SeccompEvents { follow })
        .map_err(|e| Failure::new(FAILURE, e.to_string()))?;
    req.push(b'\n');
    s.write_all(&req)
        .map_err(|e| unavailable(format!("admin socket write: {e}")))?;
    if !follow {
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    }
    let mut rd = BufReader::new(s);
    let mut line = String::new();
    rd.read_line(&mut line)
        .map_err(|e| unavailable(format!("admin socket read: {e}")))?;
    let resp: Value = serde_json::from_str(&line)
        .map_err(|e| unavailable(format!("bad answer from the agent: {e}")))?;
    if resp["ok"] != true {
        return Err(Failure::new(
            FAILURE,
            resp["error"]
                .as_str()
                .unwrap_or("the agent refused the request")
                .to_owned(),
        ));
    }
    let recent = resp["data"].as_array().cloned().unwrap_or_default();
    if !follow {
        // The totals come from `plugin list` (an agent without it: no totals, not an error).
        let totals = call(socket, &AdminRequest::PluginList)
            .map(|d| suppressed(&d))
            .unwrap_or_default();
        print(out, &recent, |r| {
            let mut t = table(&HEADER, &r.iter().map(row).collect::<Vec<_>>());
            for s in &totals {
                t.push_str(&suppressed_line(s));
                t.push('\n');
            }
            t
        })?;
        if !matches!(out, Output::Table) {
            for s in &totals {
                eprintln!("srediag: {}", suppressed_line(s));
            }
        }
        return ok();
    }
    // Streaming: table rows or one JSON object per line (NDJSON), flushed as they come.
    let stdout = std::io::stdout();
    let emit = |v: &Value, first: bool| -> std::io::Result<()> {
        let mut o = stdout.lock();
        match out {
            Output::Table => {
                if let Some(l) = suppressed_before_line(v) {
                    writeln!(o, "{l}")?;
                }
                let t = table(&HEADER, &[row(v)]);
                let mut lines = t.lines();
                let header = lines.next().unwrap_or_default();
                if first {
                    writeln!(o, "{header}")?;
                }
                for l in lines {
                    writeln!(o, "{l}")?;
                }
            }
            _ => writeln!(o, "{v}")?,
        }
        o.flush()
    };
    let mut first = true;
    if matches!(out, Output::Table) {
        println!("{}", HEADER.join("  "));
        first = false;
    }
    for v in &recent {
        emit(v, first).map_err(|e| Failure::new(FAILURE, e.to_string()))?;
    }
    loop {
        line.clear();
        match rd.read_line(&mut line) {
            Ok(0) => return Err(unavailable("the agent closed the stream".into())),
            Ok(_) => {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(n) = v["lagged"].as_u64() {
                    eprintln!("srediag: {n} events were lost (this client fell behind)");
                    continue;
                }
                if emit(&v, first).is_err() {
                    return ok(); // stdout closed (e.g. `| head`)
                }
            }
            Err(e) => return Err(unavailable(format!("admin socket read: {e}"))),
        }
    }
}

/// Turns BPF run-time accounting on for `seconds` and reports each program's run time.
pub fn bpf_stats(socket: &Path, seconds: u64, wait: bool, out: Output) -> CmdResult {
    let mut data = call(socket, &AdminRequest::BpfStats { seconds })?;
    if wait && seconds > 0 {
        std::thread::sleep(Duration::from_secs(seconds) + Duration::from_millis(200));
        data = call(socket, &AdminRequest::BpfStats { seconds: 0 })?;
    }
    print(out, &data, |d| {
        let rows: Vec<Vec<String>> = d["programs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let runs = p["runs"].as_u64().unwrap_or(0);
                        let secs = p["run_seconds"].as_f64().unwrap_or(0.0);
                        vec![
                            cell(&p["program"]),
                            cell(&p["id"]),
                            runs.to_string(),
                            format!("{secs:.6}s"),
                            if runs > 0 {
                                format!("{:.0}", secs * 1e9 / runs as f64)
                            } else {
                                "-".into()
                            },
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        let state = if d["stats_enabled"] == true {
            format!(
                "run-time statistics on for another {:.0}s",
                d["stats_remaining_seconds"].as_f64().unwrap_or(0.0)
            )
        } else {
            "run-time statistics off (counters keep their totals)".to_owned()
        };
        format!(
            "{}{state}\n",
            table(&["PROGRAM", "ID", "RUNS", "RUN_TIME", "NS/RUN"], &rows)
        )
    })?;
    ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_plugins_with_suppressed_events() {
        let list = serde_json::json!([
            {"name": "flood", "kernel": {"events_suppressed": 12345, "event_budget_per_second": 200}},
            {"name": "quiet", "kernel": {"events_suppressed": 0, "event_budget_per_second": 200}},
            {"name": "no-ebpf", "kernel": null},
            {"name": "old-agent", "kernel": {"violations": 3}},
        ]);
        let s = suppressed(&list);
        assert_eq!(
            s,
            [Suppressed {
                plugin: "flood".into(),
                events: 12345,
                budget_per_second: 200
            }]
        );
        assert!(
            suppressed_line(&s[0]).starts_with(
                "flood: 12345 violation events suppressed (over its budget of 200 events/s)"
            ),
            "{}",
            suppressed_line(&s[0])
        );
        assert!(suppressed(&Value::Null).is_empty());
    }

    #[test]
    fn follow_says_when_events_were_suppressed_before_one() {
        let v = serde_json::json!({"plugin": "flood", "suppressed_before": 99});
        assert_eq!(
            suppressed_before_line(&v).as_deref(),
            Some(
                "flood: 99 violation events suppressed before this one (over its event budget; all counted)"
            )
        );
        assert_eq!(
            suppressed_before_line(&serde_json::json!({"plugin": "a", "suppressed_before": 0})),
            None
        );
        assert_eq!(
            suppressed_before_line(&serde_json::json!({"plugin": "a"})),
            None
        );
    }
}
