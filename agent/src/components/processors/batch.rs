//! The `batch` processor: groups items into batches by size and timeout, so exporters make
//! fewer, larger writes.

use crate::model::Batch;
use crate::pipeline::Processor;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// `batch` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Items (log records or data points) that trigger sending a batch. Default 8192, as in the
    /// OpenTelemetry Collector.
    pub send_batch_size: u64,
    /// Upper bound of a sent batch in items; 0 means no bound. Default 0. A larger incoming
    /// batch is passed on whole (batches are split at resource boundaries only).
    pub send_batch_max_size: u64,
    /// How long a partial batch may wait before it is sent anyway. Default 200ms.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.send_batch_size == 0 {
            return Err(("send_batch_size".into(), "must be at least 1".into()));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            return Err((
                "send_batch_max_size".into(),
                format!(
                    "must be 0 (unbounded) or at least send_batch_size ({})",
                    self.send_batch_size
                ),
            ));
        }
        if self.timeout.is_zero() {
            return Err((
                "timeout".into(),
                "must be greater than 0 (e.g. 200ms)".into(),
            ));
        }
        Ok(())
    }
}

/// Pending items of one signal.
struct Pending {
    batch: Batch,
    items: u64,
    since: Instant,
}

/// The running processor (one per pipeline, so one signal).
pub struct BatchProcessor {
    cfg: Config,
    pending: Option<Pending>,
}

impl BatchProcessor {
    /// A processor with these settings.
    pub fn new(cfg: &Config) -> Self {
        BatchProcessor {
            cfg: cfg.clone(),
            pending: None,
        }
    }

    fn take(&mut self) -> Vec<Batch> {
        self.pending.take().map(|p| p.batch).into_iter().collect()
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch) -> Vec<Batch> {
        let items = batch.items();
        let mut out = Vec::new();
        let max = self.cfg.send_batch_max_size;
        if max != 0 && self.pending.as_ref().is_some_and(|p| p.items + items > max) {
            out.extend(self.take());
        }
        match &mut self.pending {
            Some(p) => match p.batch.merge(batch) {
                Ok(()) => p.items += items,
                Err(other) => {
                    // A pipeline carries one signal; keep going rather than lose data.
                    out.push(other);
                }
            },
            None => {
                self.pending = Some(Pending {
                    batch,
                    items,
                    since: Instant::now(),
                })
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.items >= self.cfg.send_batch_size)
        {
            out.extend(self.take());
        }
        out
    }

    fn timer(&self) -> Option<Duration> {
        Some((self.cfg.timeout / 2).max(Duration::from_millis(1)))
    }

    fn on_timer(&mut self) -> Vec<Batch> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.since.elapsed() >= self.cfg.timeout)
        {
            self.take()
        } else {
            Vec::new()
        }
    }

    fn flush(&mut self) -> Vec<Batch> {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Logs, logs::*};

    fn logs(n: usize) -> Batch {
        Batch::Logs(Logs {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn sends_when_size_reached_and_keeps_every_item() {
        let mut p = BatchProcessor::new(&Config {
            send_batch_size: 10,
            ..Default::default()
        });
        assert!(p.process(logs(4)).is_empty());
        assert!(p.process(logs(5)).is_empty());
        let out = p.process(logs(3));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items(), 12);
        assert!(p.flush().is_empty());
    }

    #[test]
    fn max_size_sends_pending_first() {
        let mut p = BatchProcessor::new(&Config {
            send_batch_size: 10,
            send_batch_max_size: 12,
            ..Default::default()
        });
        assert!(p.process(logs(8)).is_empty());
        let out = p.process(logs(8));
        assert_eq!(
            out.iter().map(Batch::items).collect::<Vec<_>>(),
            [8],
            "8 + 8 would pass the max: the pending 8 go first"
        );
        assert_eq!(p.flush().iter().map(Batch::items).collect::<Vec<_>>(), [8]);
    }

    #[test]
    fn timeout_and_flush_release_partial_batches() {
        let mut p = BatchProcessor::new(&Config {
            timeout: Duration::from_millis(1),
            ..Default::default()
        });
        p.process(logs(2));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(p.on_timer().iter().map(Batch::items).sum::<u64>(), 2);
        p.process(logs(3));
        assert_eq!(p.flush().iter().map(Batch::items).sum::<u64>(), 3);
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = Config {
            send_batch_size: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "send_batch_size");
    }
}
