//! The agent's own BPF cost, on demand: `BPF_ENABLE_STATS` (bpf command 32) makes the kernel
//! account `run_time_ns` and `run_cnt` of every BPF program for as long as the returned fd is
//! open. That accounting costs ~35–55 ns per program run (platform facts), so it is never on by
//! default: an operator asks for a window (`srediag diagnose bpf-stats --seconds N`, admin request
//! `bpf_stats`), the agent holds the fd for that long and closes it. The counters the kernel keeps
//! are cumulative (they stop growing, they do not reset, when stats are off), so
//! `srediag_bpf_program_run_seconds_total{program}` stays a proper counter.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The longest window one request may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// The open stats fd and until when it is kept.
#[derive(Default)]
pub(super) struct Window {
    fd: Option<OwnedFd>,
    until: Option<Instant>,
}

impl Window {
    /// Opens (or extends) the window to at least `now + d`; returns the remaining time.
    pub(super) fn open(&mut self, d: Duration) -> Result<Duration, String> {
        let until = Instant::now() + d.min(MAX_WINDOW);
        if self.fd.is_none() {
            let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|e| format!("BPF_ENABLE_STATS: {e}"))?;
            self.fd = Some(fd);
        }
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
        Ok(self.remaining())
    }

    /// Closes the fd once the window has passed; returns whether stats are still on.
    pub(super) fn expire(&mut self) -> bool {
        if self.until.is_some_and(|u| Instant::now() >= u) {
            self.fd = None; // closing the fd turns the kernel's accounting off
            self.until = None;
        }
        self.fd.is_some()
    }

    /// Time left (zero when off).
    pub(super) fn remaining(&self) -> Duration {
        self.until
            .map(|u| u.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

/// Run-time statistics of one of srediag's programs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramStats {
    /// Kernel program name (cut to 15 characters).
    pub program: String,
    /// Kernel program id.
    pub id: u32,
    /// Accumulated run time while stats were on.
    pub run_seconds: f64,
    /// Runs counted while stats were on.
    pub runs: u64,
}

impl ProgramStats {
    /// Average ns per run (0 without runs).
    pub fn ns_per_run(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_seconds * 1e9 / self.runs as f64
        }
    }
}

/// Statistics of every loaded program of `ebpf`.
pub(super) fn programs(ebpf: &aya::Ebpf) -> Vec<ProgramStats> {
    let mut out: Vec<ProgramStats> = ebpf
        .programs()
        .filter_map(|(name, p)| {
            let info = p.info().ok()?;
            Some(ProgramStats {
                program: info.name_as_str().unwrap_or(name).to_owned(),
                id: info.id(),
                run_seconds: info.run_time().as_secs_f64(),
                runs: info.run_count(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.program.cmp(&b.program));
    out
}
