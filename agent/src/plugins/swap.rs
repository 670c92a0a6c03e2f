//! Hot swap, make before break (seed §2.2, with its gap fixed: ARCHITECTURE.md).
//!
//! ```text
//! operator: srediag plugin upgrade NAME [--bundle DIR] | srediag reload | SIGHUP
//!   1. verify the new bundle            ── refused → aborted_verify (nothing else happens)
//!   2. start the new incarnation in the other slot (cgroup <name>.b ↔ <name>), handshake
//!                                       ── dies → aborted_start, no ready in time → aborted_ready
//!                                          (the new one is stopped; the old one never noticed)
//!   3. new ready → it takes over the link: new batches go to it from now on
//!   4. drain → old: it answers what it was sent, then drain_ack (protocol 1: its batches answered)
//!                                       ── drain_timeout: old killed, its unanswered batches go to
//!                                          the new one (re-delivered, counted)
//!   5. shutdown → old (grace, SIGTERM, cgroup kill); the new supervisor serves the plugin
//! ```
//! The old incarnation never gets `drain`, `shutdown` or SIGTERM before the new one is ready, and
//! nothing accepted is lost: every batch is answered by one of the two or re-sent.

use super::config::PluginConfig;
use super::manager::Manager;
use super::supervisor::{DrainOutcome, Request};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How a swap ended (`srediag_plugin_swaps_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapResult {
    /// The new incarnation serves; the old one drained and stopped.
    Ok,
    /// The new incarnation serves; the old one did not drain in time and was killed.
    DrainTimeout,
    /// The new bundle did not verify: nothing changed.
    AbortedVerify,
    /// The new incarnation could not start: the old one serves on.
    AbortedStart,
    /// The new incarnation did not become ready in time: the old one serves on.
    AbortedReady,
}

impl SwapResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapResult::Ok => "ok",
            SwapResult::DrainTimeout => "drain_timeout",
            SwapResult::AbortedVerify => "aborted_verify",
            SwapResult::AbortedStart => "aborted_start",
            SwapResult::AbortedReady => "aborted_ready",
        }
    }

    /// True when the new incarnation serves.
    pub fn swapped(self) -> bool {
        matches!(self, SwapResult::Ok | SwapResult::DrainTimeout)
    }
}

/// The last swap of a plugin, as `srediag plugin list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SwapRecord {
    /// How it ended.
    pub result: SwapResult,
    /// Why it was aborted, or what the drain did.
    pub reason: String,
    /// Unix time it ended.
    pub at: u64,
    /// Request → end, in milliseconds.
    pub duration_ms: f64,
}

/// What changes in a swap.
#[derive(Debug, Default)]
pub struct SwapChange {
    /// A new configuration of the plugin (reload); `None`: the current one.
    pub config: Option<PluginConfig>,
    /// Another bundle directory (`plugin upgrade --bundle`); `None`: the configured one, read
    /// again (a new version installed in place).
    pub bundle: Option<PathBuf>,
}

/// A swap could not even begin.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No such plugin.
    #[error("no plugin named {0:?}")]
    Unknown(String),
    /// One swap of a plugin at a time.
    #[error("plugin {0} is being swapped already")]
    Busy(String),
    /// Plugins do not run (not root, no cgroups).
    #[error("plugins are not running in this agent")]
    NoPlugins,
}

impl Manager {
    /// Swaps plugin `name` to `change`, make before break; returns how it went (an aborted swap
    /// is an answer, not an error: the old incarnation serves on).
    pub async fn swap(&self, name: &str, change: SwapChange) -> Result<SwapRecord, SwapError> {
        let started = Instant::now();
        let entry = self
            .plugins
            .get(name)
            .ok_or_else(|| SwapError::Unknown(name.to_string()))?;
        let _one = entry
            .swapping
            .try_lock()
            .map_err(|_| SwapError::Busy(name.to_string()))?;
        let shared = self.shared.as_ref().ok_or(SwapError::NoPlugins)?;
        let (old_tx, old_slot, old_status, mut cfg) = {
            let a = entry.active();
            (a.tx.clone(), a.slot, a.status.clone(), a.cfg.clone())
        };
        if let Some(c) = change.config {
            cfg = c;
        }
        if let Some(b) = change.bundle {
            cfg.bundle = Some(b);
            cfg.path = None;
        }
        let finish = |result: SwapResult, reason: String| {
            let record = SwapRecord {
                result,
                reason,
                at: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                duration_ms: started.elapsed().as_secs_f64() * 1e3,
            };
            shared
                .metrics
                .swaps
                .with_label_values(&[name, result.as_str()])
                .inc();
            if result.swapped() {
                shared
                    .metrics
                    .swap_duration
                    .with_label_values(&[name])
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(plugin = %name, result = result.as_str(), duration_ms = record.duration_ms, "{}", record.reason);
            } else {
                tracing::error!(plugin = %name, result = result.as_str(), "swap aborted: {}; the running incarnation serves on", record.reason);
            }
            *entry.last_swap.lock().unwrap_or_else(|p| p.into_inner()) = Some(record.clone());
            record
        };
        // 1. Verify first: a bundle that does not verify changes nothing.
        let fingerprint = shared.trust.fingerprint(&cfg);
        // The rollback mark is raised only once the new incarnation serves (below).
        let loaded = match shared.trust.load_for_swap(name, &cfg, &shared.metrics) {
            Ok(l) => Arc::new(l),
            Err(e) => return Ok(finish(SwapResult::AbortedVerify, e.to_string())),
        };
        // 2. Start the new incarnation beside the old one.
        let (standby, ready) = oneshot::channel();
        let preloaded = fingerprint.map(|fp| (fp, loaded.clone()));
        let Some((active, task)) = self.supervise(
            name,
            &cfg,
            old_slot.other(),
            entry.ledger.clone(),
            entry.serving.clone(),
            Some(standby),
            preloaded,
        ) else {
            return Err(SwapError::NoPlugins);
        };
        *entry.incoming.lock().unwrap_or_else(|p| p.into_inner()) = Some(active.tx.clone());
        let patience = cfg.heartbeat.startup_timeout + Duration::from_secs(5);
        let outcome = tokio::time::timeout(patience, ready).await;
        let pid = match outcome {
            Ok(Ok(Ok(pid))) => pid,
            Ok(Ok(Err(why))) => {
                entry
                    .incoming
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
                let result = if why.contains(super::supervisor::codes::HANG) {
                    SwapResult::AbortedReady
                } else {
                    SwapResult::AbortedStart
                };
                return Ok(finish(result, why));
            }
            Ok(Err(_)) | Err(_) => {
                // No word from the new incarnation: stop it and wait until it is gone.
                entry
                    .incoming
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let (done, stopped) = oneshot::channel();
                let _ = active.tx.send(Request::Stop(done)).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
                return Ok(finish(
                    SwapResult::AbortedReady,
                    format!("the new incarnation was not ready within {patience:?}"),
                ));
            }
        };
        // 3. It took over the link when it became ready: the old one drains. The new bundle is
        // accepted now (an aborted swap leaves the rollback mark where it was).
        tracing::info!(plugin = %name, pid, "swap: new incarnation ready and serving; draining the old one");
        if let Err(e) = shared.trust.record(&loaded) {
            tracing::warn!(plugin = %name, error = %e, "swap: the new version serves, but its rollback mark was not raised");
        }
        let restarts = old_status.lock().map(|s| s.restarts).unwrap_or_default();
        let (done, drained) = oneshot::channel();
        let timeout = cfg.drain_timeout;
        let outcome = if old_tx.send(Request::Drain { timeout, done }).await.is_ok() {
            let bound = timeout + cfg.shutdown_grace + Duration::from_secs(5);
            match tokio::time::timeout(bound, drained).await {
                Ok(Ok(o)) => o,
                // The supervisor ended without answering: it was swapped out while restarting
                // its incarnation (which never served), so nothing was left to drain.
                Ok(Err(_)) => DrainOutcome::NotRunning,
                Err(_) => DrainOutcome::TimedOut,
            }
        } else {
            DrainOutcome::NotRunning
        };
        // 5. The new supervisor serves the plugin.
        if let Ok(mut s) = active.status.lock() {
            s.restarts = restarts;
        }
        entry
            .incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        *entry.active.lock().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(match outcome {
            DrainOutcome::Acked => finish(
                SwapResult::Ok,
                format!("swapped to pid {pid}; the old incarnation drained and stopped"),
            ),
            DrainOutcome::NotRunning => finish(
                SwapResult::Ok,
                format!("swapped to pid {pid}; the old incarnation was not running"),
            ),
            DrainOutcome::Died => finish(
                SwapResult::Ok,
                format!(
                    "swapped to pid {pid}; the old incarnation died while draining (its unanswered batches went to the new one)"
                ),
            ),
            DrainOutcome::TimedOut => finish(
                SwapResult::DrainTimeout,
                format!(
                    "swapped to pid {pid}; the old incarnation did not drain within {timeout:?} and was killed (its unanswered batches went to the new one)"
                ),
            ),
        })
    }
}
