//! What a plugin costs the agent, per plugin: its log budget and its violations.
//!
//! A plugin is untrusted code and the agent is root, so every cost a plugin can make the agent
//! pay is bounded and charged to that plugin (docs/plugins.md, "What a plugin can make the agent
//! pay"). Two kinds of cost meet here:
//!
//! - **Log lines.** Everything a plugin can make the agent log — its stdout and stderr, the errors
//!   it reports on the control socket, the agent's own complaints about it — goes through one
//!   per-plugin [`LogBudget`]: at most [`LOG_LINES_PER_SEC`] lines a second, each cut to
//!   [`MAX_LOG_LINE`] bytes with control characters escaped; what is suppressed is counted
//!   (`srediag_plugin_log_lines_suppressed_total{name}`) and summarised once a second.
//! - **Violations.** Breaking the protocol (malformed frames or control messages, answers to
//!   batches that are not in flight, more output than the budget allows, floods of messages or
//!   wake-ups) is a [`Violation`], counted by kind (`srediag_plugin_violations_total{name,kind}`).
//!   Past the plugin's threshold — or at once for a [`Violation::fatal`] kind — the ledger asks the
//!   supervisor to quarantine the plugin (SRD-P009), exactly as malformed ring frames always did.

use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most log lines a second a plugin can make the agent write (all sources together).
pub const LOG_LINES_PER_SEC: u32 = 100;

/// Longest log line (bytes of the plugin's text) the agent writes for a plugin.
pub const MAX_LOG_LINE: usize = 2048;

/// Most bytes of plugin text a second the agent writes to its log for one plugin.
pub const LOG_BYTES_PER_SEC: usize = 64 * 1024;

/// A rule a plugin broke. Labels (`kind`) are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// A malformed frame, an impossible ring index or an undecodable batch on a ring.
    MalformedFrame,
    /// An answer, keep-flags or failure report for a batch that is not in flight, flags that do
    /// not match the batch, or an answer of the wrong signal.
    UnknownBatch,
    /// More output for one input batch than `data_path.max_output_ratio` allows.
    OutputBudget,
    /// Wake-ups of the agent's ring reader without data (futex spam).
    WakeupFlood,
    /// A control message that does not decode, or is too large.
    ControlMalformed,
    /// More control messages in one heartbeat interval than allowed.
    ControlFlood,
    /// A heartbeat answer the agent did not ask for.
    HeartbeatFlood,
    /// A control message type the agent does not expect at that point.
    UnexpectedMessage,
    /// A diagnostics verb's output over `verbs.max_output`, of a kind or media type that was
    /// not asked for, or undecodable.
    VerbOutput,
}

impl Violation {
    /// Every kind (metric labels are created up front).
    pub const ALL: [Violation; 9] = [
        Violation::MalformedFrame,
        Violation::UnknownBatch,
        Violation::OutputBudget,
        Violation::WakeupFlood,
        Violation::ControlMalformed,
        Violation::ControlFlood,
        Violation::HeartbeatFlood,
        Violation::UnexpectedMessage,
        Violation::VerbOutput,
    ];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::MalformedFrame => "malformed_frame",
            Violation::UnknownBatch => "unknown_batch",
            Violation::OutputBudget => "output_budget",
            Violation::WakeupFlood => "wakeup_flood",
            Violation::ControlMalformed => "control_malformed",
            Violation::ControlFlood => "control_flood",
            Violation::HeartbeatFlood => "heartbeat_flood",
            Violation::UnexpectedMessage => "unexpected_message",
            Violation::VerbOutput => "verb_output",
        }
    }

    /// Kinds that quarantine at the first occurrence (none today: every bound already refuses
    /// the excess, so a kind counts towards the threshold like the others).
    pub fn fatal(self) -> bool {
        false
    }

    /// Kinds that concern the data path's rings (also counted as
    /// `srediag_plugin_ipc_malformed_frames_total`, the data path's historical counter).
    pub fn on_ring(self) -> bool {
        matches!(
            self,
            Violation::MalformedFrame
                | Violation::UnknownBatch
                | Violation::OutputBudget
                | Violation::WakeupFlood
        )
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ledger metrics, shared by every plugin.
#[derive(Clone)]
pub struct LedgerMetrics {
    /// `srediag_plugin_violations_total{name,kind}`.
    pub violations: IntCounterVec,
    /// `srediag_plugin_log_lines_suppressed_total{name}`.
    pub suppressed: IntCounterVec,
    /// `srediag_plugin_ipc_malformed_frames_total{plugin}` (ring violations).
    pub ring: IntCounterVec,
}

impl LedgerMetrics {
    /// Registers the metrics (unregistered with `None`, for tests).
    pub fn new(r: Option<&Registry>) -> LedgerMetrics {
        let c = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            if let Some(r) = r {
                let _ = r.register(Box::new(v.clone()));
            }
            v
        };
        LedgerMetrics {
            violations: c(
                "srediag_plugin_violations_total",
                "Protocol and budget violations by a plugin, by kind; past the plugin's threshold it is quarantined.",
                &["name", "kind"],
            ),
            suppressed: c(
                "srediag_plugin_log_lines_suppressed_total",
                "Log lines a plugin caused that were not written (over its log budget).",
                &["name"],
            ),
            ring: c(
                "srediag_plugin_ipc_malformed_frames_total",
                "Malformed frames, impossible ring indices, answers to unknown batches and budget violations on a plugin's data path.",
                &["plugin"],
            ),
        }
    }
}

/// Where a plugin log line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The plugin's standard output.
    Stdout,
    /// The plugin's standard error.
    Stderr,
    /// A control message (an error the plugin reported).
    Control,
    /// The agent's own complaint about the plugin (a violation).
    Agent,
}

impl LogSource {
    /// The `stream` field of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Control => "control",
            LogSource::Agent => "agent",
        }
    }
}

struct Window {
    start: Instant,
    lines: u32,
    bytes: usize,
    suppressed: u64,
}

/// One plugin's log budget: [`LOG_LINES_PER_SEC`] lines a second over all sources.
pub struct LogBudget {
    name: String,
    window: Mutex<Window>,
    suppressed: prometheus::IntCounter,
}

impl LogBudget {
    fn new(name: &str, m: &LedgerMetrics) -> LogBudget {
        LogBudget {
            name: name.to_string(),
            window: Mutex::new(Window {
                start: Instant::now(),
                lines: 0,
                bytes: 0,
                suppressed: 0,
            }),
            suppressed: m.suppressed.with_label_values(&[name]),
        }
    }

    /// True when one more short line may be written now; else it is counted as suppressed.
    pub fn admit(&self) -> bool {
        self.admit_bytes(0)
    }

    /// True when one more line of `bytes` bytes may be written now (at most
    /// [`LOG_LINES_PER_SEC`] lines and [`LOG_BYTES_PER_SEC`] bytes a second); else the line is
    /// counted as suppressed. A new one-second window first reports what the previous one
    /// suppressed.
    pub fn admit_bytes(&self, bytes: usize) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.elapsed() >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                tracing::warn!(plugin = %self.name, suppressed = w.suppressed, "plugin log lines suppressed (more than {LOG_LINES_PER_SEC} a second)");
            }
            *w = Window {
                start: Instant::now(),
                lines: 0,
                bytes: 0,
                suppressed: 0,
            };
        }
        if w.lines < LOG_LINES_PER_SEC && w.bytes + bytes <= LOG_BYTES_PER_SEC {
            w.lines += 1;
            w.bytes += bytes;
            true
        } else {
            w.suppressed += 1;
            self.suppressed.inc();
            false
        }
    }

    /// Writes one line of plugin-supplied text (cut and escaped) at info level, if admitted.
    pub fn info(&self, source: LogSource, text: &[u8]) {
        let line = clean(text);
        if self.admit_bytes(line.len()) {
            tracing::info!(plugin = %self.name, stream = source.as_str(), "{line}");
        }
    }

    /// Writes one warning about the plugin (`text` may hold plugin-supplied parts: it is cut and
    /// escaped), if admitted.
    pub fn warn(&self, source: LogSource, text: &str) {
        let line = clean(text.as_bytes());
        if self.admit_bytes(line.len()) {
            tracing::warn!(plugin = %self.name, stream = source.as_str(), "{line}");
        }
    }
}

/// Plugin-supplied text as one safe log line: invalid UTF-8 replaced, control characters escaped
/// (no terminal sequences, no `\r`, no fake lines), then cut to [`MAX_LOG_LINE`] bytes — what is
/// written, escapes included, is what the log budget counts.
pub fn clean(text: &[u8]) -> String {
    let cut = &text[..text.len().min(MAX_LOG_LINE)];
    let mut line = crate::text::escape_control(&String::from_utf8_lossy(cut)).into_owned();
    if line.len() > MAX_LOG_LINE {
        let mut end = MAX_LOG_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// One plugin's ledger: its log budget and its violations, shared by its supervisor, its control
/// channel and its data path.
pub struct Ledger {
    name: String,
    log: LogBudget,
    metrics: LedgerMetrics,
    threshold: AtomicU64,
    total: AtomicU64,
    quarantined: AtomicBool,
    reason: Mutex<Option<(Violation, String)>>,
    notify: Notify,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("name", &self.name)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger for plugin `name`: quarantine once `threshold` violations were counted since the
    /// last reset.
    pub fn new(name: &str, threshold: u64, metrics: &LedgerMetrics) -> Ledger {
        for v in Violation::ALL {
            metrics.violations.with_label_values(&[name, v.as_str()]);
        }
        metrics.suppressed.with_label_values(&[name]);
        Ledger {
            name: name.to_string(),
            log: LogBudget::new(name, metrics),
            metrics: metrics.clone(),
            threshold: AtomicU64::new(threshold.max(1)),
            total: AtomicU64::new(0),
            quarantined: AtomicBool::new(false),
            reason: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's log budget.
    pub fn log(&self) -> &LogBudget {
        &self.log
    }

    /// Counts `n` violations of `kind`; `detail` (built only when the line is admitted by the log
    /// budget or the plugin is quarantined) says what happened. May request quarantine.
    pub fn record(&self, kind: Violation, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.metrics
            .violations
            .with_label_values(&[&self.name, kind.as_str()])
            .inc_by(n);
        if kind.on_ring() {
            self.metrics.ring.with_label_values(&[&self.name]).inc_by(n);
        }
        let total = self.total.fetch_add(n, Ordering::SeqCst) + n;
        let over = kind.fatal() || total >= self.threshold.load(Ordering::Relaxed);
        let mut detail = Some(detail);
        if over && !self.quarantined.swap(true, Ordering::SeqCst) {
            let d = detail.take().map(|f| f()).unwrap_or_default();
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((kind, clean(d.as_bytes())));
            self.notify.notify_waiters();
        }
        if self.log.admit() {
            let d = match detail {
                Some(f) => clean(f().as_bytes()),
                None => self.reason().map(|(_, d)| d).unwrap_or_default(),
            };
            tracing::warn!(plugin = %self.name, kind = kind.as_str(), total, "plugin violation: {d}");
        }
    }

    /// Violations counted since the last reset.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    /// True once quarantine was requested (until [`clear`](Self::clear)).
    pub fn quarantined(&self) -> bool {
        self.quarantined.load(Ordering::SeqCst)
    }

    /// The violation that requested quarantine, with what happened.
    pub fn reason(&self) -> Option<(Violation, String)> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves when the ledger requested quarantine.
    pub async fn quarantine_requested(&self) -> (Violation, String) {
        loop {
            let n = self.notify.notified();
            if self.quarantined() {
                return self
                    .reason()
                    .unwrap_or((Violation::MalformedFrame, String::new()));
            }
            n.await;
        }
    }

    /// Starts over (an operator restarted the plugin).
    pub fn clear(&self) {
        self.total.store(0, Ordering::SeqCst);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.quarantined.store(false, Ordering::SeqCst);
    }
}

/// The ledger of every configured plugin, by name.
pub type Ledgers = std::collections::BTreeMap<String, std::sync::Arc<Ledger>>;

/// One ledger per configured plugin (threshold `data_path.quarantine_after_malformed`).
pub fn ledgers(plugins: &crate::plugins::config::Plugins, metrics: &LedgerMetrics) -> Ledgers {
    plugins
        .iter()
        .map(|(name, cfg)| {
            (
                name.clone(),
                std::sync::Arc::new(Ledger::new(
                    name,
                    cfg.data_path.quarantine_after_malformed,
                    metrics,
                )),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(threshold: u64) -> Ledger {
        Ledger::new("p", threshold, &LedgerMetrics::new(None))
    }

    #[test]
    fn quarantine_at_threshold() {
        let l = ledger(3);
        l.record(Violation::MalformedFrame, 2, || "two".into());
        assert!(!l.quarantined());
        l.record(Violation::ControlMalformed, 1, || "third".into());
        assert!(l.quarantined());
        assert_eq!(l.reason().map(|r| r.0), Some(Violation::ControlMalformed));
        l.clear();
        assert!(!l.quarantined());
        assert_eq!(l.total(), 0);
        l.record(Violation::OutputBudget, 1, || "10x".into());
        assert!(
            !l.quarantined(),
            "the excess was refused: counted, not fatal"
        );
    }

    #[test]
    fn counts_by_kind_and_ring_kinds_twice() {
        let m = LedgerMetrics::new(None);
        let l = Ledger::new("p", 100, &m);
        l.record(Violation::UnknownBatch, 5, String::new);
        l.record(Violation::HeartbeatFlood, 2, String::new);
        assert_eq!(
            m.violations
                .with_label_values(&["p", "unknown_batch"])
                .get(),
            5
        );
        assert_eq!(m.ring.with_label_values(&["p"]).get(), 5);
        assert_eq!(l.total(), 7);
    }

    #[test]
    fn log_budget_admits_a_bounded_number_of_lines_a_second() {
        let m = LedgerMetrics::new(None);
        let l = Ledger::new("p", 100, &m);
        let admitted = (0..10_000).filter(|_| l.log().admit()).count();
        assert_eq!(admitted, LOG_LINES_PER_SEC as usize);
        let l = Ledger::new("q", 100, &m);
        let admitted = (0..100).filter(|_| l.log().admit_bytes(2048)).count();
        assert_eq!(
            admitted,
            LOG_BYTES_PER_SEC / 2048,
            "bytes bound the lines too"
        );
        assert_eq!(
            m.suppressed.with_label_values(&["p"]).get(),
            10_000 - u64::from(LOG_LINES_PER_SEC)
        );
    }

    #[test]
    fn clean_cuts_and_escapes_terminal_sequences() {
        let evil = b"ok\x1b[1;31mRED\x1b]0;title\x07\rfake line\nnext\xc2\x9bC1";
        let c = clean(evil);
        assert!(!c.chars().any(|c| c.is_control()), "{c:?}");
        assert!(c.contains("\\x1b[1;31mRED"));
        assert!(c.contains("\\r") && c.contains("\\n"));
        let long = vec![b'a'; 100_000];
        assert_eq!(clean(&long).len(), MAX_LOG_LINE);
        // Escapes count: a line of control bytes is cut after escaping.
        let controls = vec![0x01u8; 2000];
        assert!(clean(&controls).len() <= MAX_LOG_LINE);
        assert_eq!(clean(b"plain"), "plain");
    }
}
