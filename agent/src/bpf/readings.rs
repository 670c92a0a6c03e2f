//! What the kernel saw, read from the maps on demand: per plugin (CPU time, RSS, OOM kills,
//! seccomp violations, suppressed events, IPC latency), the violation events kept and streamed,
//! BPF run-time statistics, the maps' kernel memory, and the scrape-time metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::observers::{Inner, Observers};
use super::{
    BpfError, IpcHistogram, IpcSummary, PluginKernelStats, ProgramStats, Violation, ViolationCount,
    abi, cpu, ipc, memory, metrics, seccomp, stats,
};

impl Inner {
    pub(super) fn cpu_time(&self, plugin_id: u32) -> Option<Duration> {
        self.with(|l| cpu::time(&l.cpu, &l.cpust, plugin_id).ok())
            .flatten()
    }

    pub(super) fn rss_bytes(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| memory::rss_bytes(&l.mem, plugin_id))
    }

    pub(super) fn oom_kills(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| memory::oom_kills(&l.ooms, plugin_id).ok())
            .flatten()
    }

    pub(super) fn ipc_histograms(&self, plugin_id: u32) -> BTreeMap<&'static str, ipc::Histogram> {
        self.with(|l| {
            l.ipc
                .as_ref()
                .map(|i| ipc::histograms(&i.hist, plugin_id))
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// Violation events of `plugin_id` suppressed over its event budget (`None`: not loaded).
    pub(super) fn events_suppressed(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| l.budget.get(&plugin_id, 0).ok().map(|b| b.suppressed))
            .flatten()
    }

    pub(super) fn ipc_forged(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| {
            l.ipc
                .as_ref()
                .and_then(|i| ipc::forged(&i.forged, plugin_id))
        })
        .flatten()
    }

    pub(super) fn program_stats(&self) -> Vec<ProgramStats> {
        self.with(|l| stats::programs(&l._ebpf)).unwrap_or_default()
    }

    /// Whether BPF_ENABLE_STATS is held now (closing it first when its window has passed).
    pub(super) fn stats_on(&self) -> bool {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expire()
    }

    pub(super) fn violations(&self) -> Vec<ViolationCount> {
        self.with(|l| seccomp::counts(&l.viol, &self.syscalls))
            .unwrap_or_default()
    }

    pub(super) fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.with(|l| {
            abi::STATS
                .iter()
                .map(|(i, reason)| {
                    (
                        *reason,
                        l.stats.get(i, 0).map(|v| v.iter().sum()).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }
}

impl Observers {
    /// On-CPU time of `plugin_id` since the observers loaded (including slices still running).
    pub fn cpu_time(&self, plugin_id: u32) -> Option<Duration> {
        self.inner.cpu_time(plugin_id)
    }

    /// Resident memory of `plugin_id`'s processes (bytes), from the kernel's RSS counters.
    pub fn rss_bytes(&self, plugin_id: u32) -> Option<u64> {
        self.inner.rss_bytes(plugin_id)
    }

    /// OOM kills of `plugin_id`'s processes since the observers loaded.
    pub fn oom_kills(&self, plugin_id: u32) -> Option<u64> {
        self.inner.oom_kills(plugin_id)
    }

    /// Every violation counter, summed over CPUs.
    pub fn violations(&self) -> Vec<ViolationCount> {
        self.inner.violations()
    }

    /// What the kernel side could not record, by reason.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.inner.dropped()
    }

    /// What the kernel saw of plugin `name` (`None` when eBPF is not loaded or the name was never
    /// tracked).
    pub fn plugin_stats(&self, name: &str) -> Option<PluginKernelStats> {
        if !self.is_loaded() {
            return None;
        }
        let id = {
            let plugins = self.inner.plugins.lock().unwrap_or_else(|e| e.into_inner());
            plugins
                .iter()
                .find(|(_, n)| n.as_str() == name)
                .map(|(id, _)| *id)?
        };
        Some(PluginKernelStats {
            cpu_seconds: self.cpu_time(id).map(|d| d.as_secs_f64()),
            rss_bytes: self.rss_bytes(id),
            violations: self
                .violations()
                .iter()
                .filter(|v| v.plugin_id == id)
                .map(|v| v.count)
                .sum(),
            events_suppressed: self.events_suppressed(id).unwrap_or(0),
            event_budget_per_second: self.inner.event_budget,
            oom_kills: self.oom_kills(id),
            pids: self.tracked_pids(id),
            ipc: self
                .ipc_histograms(id)
                .into_iter()
                .map(|(d, h)| {
                    (
                        d.to_owned(),
                        IpcSummary {
                            count: h.count,
                            sum_seconds: h.sum_seconds,
                            p50_seconds: h.quantile(0.5),
                            p99_seconds: h.quantile(0.99),
                        },
                    )
                })
                .collect(),
        })
    }

    /// Violation events of `plugin_id` the kernel suppressed because the plugin was over its
    /// event budget, since the observers loaded (`None` when not loaded).
    pub fn events_suppressed(&self, plugin_id: u32) -> Option<u64> {
        self.inner.events_suppressed(plugin_id)
    }

    /// Violation events each plugin may send per second.
    pub fn event_budget(&self) -> u32 {
        self.inner.event_budget
    }

    /// Probe hits by processes of `plugin_id` on rings where they are not the expected publisher
    /// or consumer (dropped), since the observers loaded (`None` when the observer is down).
    pub fn ipc_forged(&self, plugin_id: u32) -> Option<u64> {
        self.inner.ipc_forged(plugin_id)
    }

    /// The IPC latency histograms of `plugin_id`, by direction (empty when the observer is down).
    pub fn ipc_histograms(&self, plugin_id: u32) -> BTreeMap<&'static str, IpcHistogram> {
        self.inner.ipc_histograms(plugin_id)
    }

    /// The last [`super::RECENT_EVENTS`] violation events, oldest first.
    pub fn recent_violations(&self) -> Vec<Violation> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A live stream of violations (empty when the event reader is down).
    pub fn subscribe(&self) -> broadcast::Receiver<Violation> {
        self.inner.events.subscribe()
    }

    /// Ring buffer records read so far.
    pub fn events_received(&self) -> u64 {
        self.inner
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns the kernel's BPF run-time accounting on for `window` (at most
    /// [`STATS_MAX_WINDOW`]; extends a window already open) and returns how long it stays on.
    /// It is closed by the next call to [`program_stats`](Self::program_stats), a scrape, or the
    /// timer task started here (inside a tokio runtime), whichever comes first after the window.
    pub fn enable_stats(&self, window: Duration) -> Result<Duration, BpfError> {
        self.loaded(|_| ())?;
        let left = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open(window)
            .map_err(|reason| BpfError::Stats { reason })?;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&self.inner);
            rt.spawn(async move {
                tokio::time::sleep(left + Duration::from_millis(10)).await;
                if let Some(inner) = weak.upgrade() {
                    inner.stats_on();
                }
            });
        }
        Ok(left)
    }

    /// Whether run-time accounting is on, and for how much longer.
    pub fn stats_window(&self) -> (bool, Duration) {
        let on = self.inner.stats_on();
        let left = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remaining();
        (on, left)
    }

    /// Run time and run count of each loaded program (they grow only while stats are on).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.inner.stats_on();
        self.inner.program_stats()
    }

    /// Kernel memory of each map.
    pub fn map_memory(&self) -> Vec<(&'static str, u64)> {
        self.inner.map_memory.clone()
    }

    /// Kernel ids of the loaded programs (attached or not), e.g. to check they are gone later.
    pub fn program_ids(&self) -> Vec<u32> {
        self.inner
            .with(|l| l.program_ids.clone())
            .unwrap_or_default()
    }

    /// Registers the `srediag_bpf_*` and `srediag_plugin_seccomp_violations_total` metrics,
    /// read from the maps at each scrape. The collector holds a `Weak`: it does not keep the
    /// maps alive, and reports every observer down once `self` is dropped.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        registry.register(Box::new(metrics::BpfCollector::new(Arc::downgrade(
            &self.inner,
        ))))
    }
}
