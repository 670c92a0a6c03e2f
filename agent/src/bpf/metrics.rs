//! Prometheus surface of the observers, read from the BPF maps at scrape time (so counters are
//! as exact as the maps): a [`Collector`] holding only a `Weak` to the observers.
//!
//! - `srediag_bpf_observer_up{observer}`: 1 when the observer's programs are attached;
//! - `srediag_bpf_map_memory_bytes{map}`: kernel memory of each map (fdinfo `memlock`);
//! - `srediag_bpf_plugin_cpu_seconds_total{plugin}`: on-CPU time from `sched_switch`;
//! - `srediag_bpf_plugin_rss_bytes{plugin}`: resident memory from `rss_stat`;
//! - `srediag_bpf_plugin_oom_kills_total{plugin}`: OOM-killer victims from `mark_victim`;
//! - `srediag_plugin_seccomp_violations_total{plugin,syscall,action}`;
//! - `srediag_bpf_dropped_total{reason}`: what the kernel side could not record (or refused:
//!   `ipc_forged_probe`, `event_budget`);
//! - `srediag_bpf_events_received_total`: ring buffer records the agent read;
//! - `srediag_bpf_events_suppressed_total{plugin}`: the plugin's violation events the kernel did
//!   not send because it was over its event budget (violations still counted);
//! - `srediag_bpf_ipc_forged_probes_total{plugin}`: probe-site hits by the plugin's processes on
//!   rings where they are not the expected publisher or consumer, dropped;
//! - `srediag_ipc_latency_seconds{plugin,direction}`: histogram of sampled data-path batches,
//!   publish → consume; the BPF log2 buckets (`[2^b, 2^(b+1))` ns) become `le` buckets of
//!   2^(b+1) ns in seconds, cumulative; `_sum` is exact (summed in BPF), `_count` the samples;
//! - `srediag_bpf_program_run_seconds_total{program}`, `srediag_bpf_program_runs_total{program}`:
//!   the kernel's run-time accounting, which grows only while `BPF_ENABLE_STATS` is held (on
//!   demand, see `stats.rs`); `srediag_bpf_stats_enabled` says whether it is now.

use std::collections::BTreeMap;
use std::sync::Weak;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily};
use prometheus::{CounterVec, IntCounterVec, IntGaugeVec, Opts};

use super::OBSERVERS;
use super::observers::Inner;

pub(super) struct BpfCollector {
    inner: Weak<Inner>,
    up: IntGaugeVec,
    memory: IntGaugeVec,
    cpu: CounterVec,
    rss: IntGaugeVec,
    ooms: IntCounterVec,
    violations: IntCounterVec,
    dropped: IntCounterVec,
    forged: IntCounterVec,
    received: prometheus::IntCounter,
    suppressed: IntCounterVec,
    run_seconds: CounterVec,
    runs: IntCounterVec,
    stats_on: prometheus::IntGauge,
    ipc_desc: Desc,
}

const IPC_METRIC: &str = "srediag_ipc_latency_seconds";
const IPC_HELP: &str = "Time from publish to consume of sampled data-path batches (plugins.<name>.data_path.probe_sampling), per plugin and direction, measured by uprobes on the probe sites; buckets are powers of two nanoseconds.";

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

/// The `srediag_ipc_latency_seconds` family (`None` without any plugin histogram).
fn ipc_family(inner: &Inner) -> Option<MetricFamily> {
    let mut metrics = Vec::new();
    for (id, name) in inner.plugins() {
        for (direction, h) in inner.ipc_histograms(id) {
            let mut ph = proto::Histogram::default();
            ph.set_sample_count(h.count);
            ph.set_sample_sum(h.sum_seconds);
            ph.set_bucket(
                h.cumulative()
                    .into_iter()
                    .map(|(le, n)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(le);
                        b.set_cumulative_count(n);
                        b
                    })
                    .collect(),
            );
            let mut m = proto::Metric::from_label(vec![
                label("direction", direction),
                label("plugin", &name),
            ]);
            m.set_histogram(ph);
            metrics.push(m);
        }
    }
    if metrics.is_empty() {
        return None;
    }
    let mut f = MetricFamily::default();
    f.set_name(IPC_METRIC.to_owned());
    f.set_help(IPC_HELP.to_owned());
    f.set_field_type(proto::MetricType::HISTOGRAM);
    f.set_metric(metrics);
    Some(f)
}

impl BpfCollector {
    pub(super) fn new(inner: Weak<Inner>) -> BpfCollector {
        let o = Opts::new;
        BpfCollector {
            inner,
            up: IntGaugeVec::new(
                o("srediag_bpf_observer_up", "1 when the eBPF observer's programs are attached, 0 when it is degraded away (see the log or srediag probe for why)."),
                &["observer"],
            )
            .expect("static metric"),
            memory: IntGaugeVec::new(o("srediag_bpf_map_memory_bytes", "Kernel memory of each srediag BPF map."), &["map"]).expect("static metric"),
            cpu: CounterVec::new(
                o("srediag_bpf_plugin_cpu_seconds_total", "On-CPU time of the plugin's processes, measured by the sched_switch BPF program."),
                &["plugin"],
            )
            .expect("static metric"),
            rss: IntGaugeVec::new(
                o("srediag_bpf_plugin_rss_bytes", "Resident memory (file + anon + shmem pages, as VmRSS) of the plugin's processes, from the kernel's rss_stat tracepoint. The memory cgroup's charge is srediag_plugin_memory_bytes."),
                &["plugin"],
            )
            .expect("static metric"),
            ooms: IntCounterVec::new(
                o("srediag_bpf_plugin_oom_kills_total", "Plugin processes chosen by the OOM killer (global or memory cgroup), from the kernel's oom/mark_victim tracepoint."),
                &["plugin"],
            )
            .expect("static metric"),
            violations: IntCounterVec::new(
                o("srediag_plugin_seccomp_violations_total", "Syscalls the plugin's seccomp profile refused, seen from the kernel (errno, trap and kill actions)."),
                &["plugin", "syscall", "action"],
            )
            .expect("static metric"),
            run_seconds: CounterVec::new(
                o("srediag_bpf_program_run_seconds_total", "Time srediag's BPF programs ran, accounted by the kernel only while run-time statistics are on (srediag diagnose bpf-stats)."),
                &["program"],
            )
            .expect("static metric"),
            runs: IntCounterVec::new(
                o("srediag_bpf_program_runs_total", "Runs of srediag's BPF programs, counted by the kernel only while run-time statistics are on."),
                &["program"],
            )
            .expect("static metric"),
            ipc_desc: Desc::new(
                IPC_METRIC.to_owned(),
                IPC_HELP.to_owned(),
                vec!["plugin".to_owned(), "direction".to_owned()],
                std::collections::HashMap::new(),
            )
            .expect("static metric"),
            stats_on: prometheus::IntGauge::new("srediag_bpf_stats_enabled", "1 while the kernel's BPF run-time statistics (BPF_ENABLE_STATS, ~35-55 ns per program run) are on at srediag's request.").expect("static metric"),
            dropped: IntCounterVec::new(
                o("srediag_bpf_dropped_total", "Records the BPF programs could not keep or refused: pids_map_full (a fork not followed), ring_buffer_full (an event lost; its counter kept), violation_map_full (a violation not counted), cpu_switch_unmatched, ipc_consume_unmatched (a sampled consume without its publish), ipc_forged_probe (a probe-site hit from a process that is not the ring's publisher or consumer), event_budget (a violation event over its plugin's event budget, not sent; the violation counted)."),
                &["reason"],
            )
            .expect("static metric"),
            received: prometheus::IntCounter::new("srediag_bpf_events_received_total", "Ring buffer records (seccomp violation and OOM events) the agent read.").expect("static metric"),
            suppressed: IntCounterVec::new(
                o("srediag_bpf_events_suppressed_total", "Seccomp violation events of the plugin the kernel did not send to the agent because the plugin was over its event budget (violation events per second); every violation is still counted in srediag_plugin_seccomp_violations_total."),
                &["plugin"],
            )
            .expect("static metric"),
            forged: IntCounterVec::new(
                o("srediag_bpf_ipc_forged_probes_total", "Probe-site hits (srediag_probe_publish/consume) by the plugin's processes on data-path rings where they are not the expected publisher or consumer, e.g. with another plugin's ring ids: dropped, never in a latency histogram."),
                &["plugin"],
            )
            .expect("static metric"),
        }
    }

    fn refresh(&self) {
        let Some(inner) = self.inner.upgrade() else {
            for o in OBSERVERS {
                self.up.with_label_values(&[o]).set(0);
            }
            return;
        };
        for s in &inner.statuses {
            self.up.with_label_values(&[s.name]).set(i64::from(s.up));
        }
        for (map, bytes) in &inner.map_memory {
            self.memory.with_label_values(&[map]).set(*bytes as i64);
        }
        for (id, name) in inner.plugins() {
            if let Some(t) = inner.cpu_time(id) {
                let c = self.cpu.with_label_values(&[&name]);
                let delta = t.as_secs_f64() - c.get();
                if delta > 0.0 {
                    c.inc_by(delta);
                }
            }
        }
        for (id, name) in inner.plugins() {
            if let Some(b) = inner.rss_bytes(id) {
                self.rss.with_label_values(&[&name]).set(b as i64);
            }
            if let Some(n) = inner.oom_kills(id) {
                let c = self.ooms.with_label_values(&[&name]);
                if n > c.get() {
                    c.inc_by(n - c.get());
                }
            }
            if let Some(n) = inner.events_suppressed(id).filter(|n| *n > 0) {
                let c = self.suppressed.with_label_values(&[&name]);
                if n > c.get() {
                    c.inc_by(n - c.get());
                }
            }
            if let Some(n) = inner.ipc_forged(id).filter(|n| *n > 0) {
                let c = self.forged.with_label_values(&[&name]);
                if n > c.get() {
                    c.inc_by(n - c.get());
                }
            }
        }
        let mut by_labels: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
        for v in inner.violations() {
            *by_labels
                .entry((inner.plugin_name(v.plugin_id), v.syscall, v.action.as_str()))
                .or_default() += v.count;
        }
        for ((plugin, syscall, action), n) in by_labels {
            let c = self
                .violations
                .with_label_values(&[&plugin, &syscall, action]);
            if n > c.get() {
                c.inc_by(n - c.get());
            }
        }
        let received = inner.received.load(std::sync::atomic::Ordering::Relaxed);
        if received > self.received.get() {
            self.received.inc_by(received - self.received.get());
        }
        self.stats_on.set(i64::from(inner.stats_on()));
        for p in inner.program_stats() {
            let c = self.run_seconds.with_label_values(&[&p.program]);
            let delta = p.run_seconds - c.get();
            if delta > 0.0 {
                c.inc_by(delta);
            }
            let c = self.runs.with_label_values(&[&p.program]);
            if p.runs > c.get() {
                c.inc_by(p.runs - c.get());
            }
        }
        for (reason, n) in inner.dropped() {
            let c = self.dropped.with_label_values(&[reason]);
            if n > c.get() {
                c.inc_by(n - c.get());
            }
        }
    }
}

impl Collector for BpfCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.up.desc();
        d.extend(self.memory.desc());
        d.extend(self.cpu.desc());
        d.extend(self.rss.desc());
        d.extend(self.ooms.desc());
        d.extend(self.violations.desc());
        d.extend(self.dropped.desc());
        d.extend(self.forged.desc());
        d.extend(self.received.desc());
        d.extend(self.suppressed.desc());
        d.extend(self.run_seconds.desc());
        d.extend(self.runs.desc());
        d.extend(self.stats_on.desc());
        d.push(&self.ipc_desc);
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut m = self.up.collect();
        m.extend(self.memory.collect());
        m.extend(self.cpu.collect());
        m.extend(self.rss.collect());
        m.extend(self.ooms.collect());
        m.extend(self.violations.collect());
        m.extend(self.dropped.collect());
        m.extend(self.forged.collect());
        m.extend(self.received.collect());
        m.extend(self.suppressed.collect());
        m.extend(self.run_seconds.collect());
        m.extend(self.runs.collect());
        m.extend(self.stats_on.collect());
        if let Some(f) = self.inner.upgrade().and_then(|i| ipc_family(&i)) {
            m.push(f);
        }
        m
    }
}
