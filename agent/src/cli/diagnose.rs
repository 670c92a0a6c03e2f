//! `srediag diagnose seccomp [--follow]` and `srediag diagnose bpf-stats`: diagnostics the
//! running agent's eBPF observers collect, over its admin socket.

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
        print(out, &recent, |r| {
            table(&HEADER, &r.iter().map(row).collect::<Vec<_>>())
        })?;
        return ok();
    }
    // Streaming: table rows or one JSON object per line (NDJSON), flushed as they come.
    let stdout = std::io::stdout();
    let emit = |v: &Value, first: bool| -> std::io::Result<()> {
        let mut o = stdout.lock();
        match out {
            Output::Table => {
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
