//! Plugin metrics (seed §8, Prometheus names).

use super::supervisor::PluginState;
use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// `srediag_plugin_verification_total{result}` values: `ok` (trusted by a signature or the
/// digest allowlist), `unsigned` (loaded only because the policy allows unsigned plugins), the
/// rejection codes of docs/bundles.md, and `failed` (state file, executable or configuration).
pub const VERIFICATION_RESULTS: [&str; 9] = [
    "ok",
    "unsigned",
    "rejected_digest",
    "rejected_signature",
    "rejected_policy",
    "rejected_rollback",
    "rejected_compat",
    "malformed",
    "failed",
];

/// Every plugin metric.
#[derive(Clone)]
pub struct PluginMetrics {
    /// `srediag_plugin_load_total{name,status}`.
    pub load: IntCounterVec,
    /// `srediag_plugin_runtime_errors_total{name}`.
    pub runtime_errors: IntCounterVec,
    /// `srediag_plugin_memory_bytes{name}`.
    pub memory: IntGaugeVec,
    /// `srediag_plugin_cpu_seconds_total{name}`.
    pub cpu: CounterVec,
    /// `srediag_plugin_restarts_total{name,reason}`.
    pub restarts: IntCounterVec,
    /// `srediag_plugin_state{name,state}`.
    pub state: IntGaugeVec,
    /// `srediag_plugin_oom_kills_total{name}`.
    pub oom_kills: IntCounterVec,
    /// `srediag_plugin_sandbox_degraded_total{name}`.
    pub degraded: IntCounterVec,
    /// `srediag_plugin_startup_seconds{name}`: spawn → sandbox → handshake → ready.
    pub startup: HistogramVec,
    /// `srediag_plugin_verification_total{result}`.
    pub verification: IntCounterVec,
    /// `srediag_plugin_health{name,status}`: 1 for the status the plugin last reported.
    pub health: IntGaugeVec,
    /// `srediag_plugin_swaps_total{name,result}`.
    pub swaps: IntCounterVec,
    /// `srediag_plugin_swap_duration_seconds{name}`: request → old incarnation stopped.
    pub swap_duration: HistogramVec,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("plugin metric registered once");
    c
}

impl PluginMetrics {
    /// Registers the metrics.
    pub fn new(r: &Registry) -> Self {
        let o = Opts::new;
        let verification = reg(
            r,
            IntCounterVec::new(
                o(
                    "srediag_plugin_verification_total",
                    "Plugin verifications (bundle signature, digests, policy, compatibility, rollback) by result.",
                ),
                &["result"],
            )
            .expect("static"),
        );
        for res in VERIFICATION_RESULTS {
            verification.with_label_values(&[res]);
        }
        PluginMetrics {
            verification,
            swaps: reg(
                r,
                IntCounterVec::new(
                    o(
                        "srediag_plugin_swaps_total",
                        "Hot swaps by result: ok, drain_timeout, aborted_verify, aborted_start, aborted_ready.",
                    ),
                    &["name", "result"],
                )
                .expect("static"),
            ),
            swap_duration: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "srediag_plugin_swap_duration_seconds",
                        "Hot swap duration: request → the new incarnation serving and the old one stopped.",
                    )
                    .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
                    &["name"],
                )
                .expect("static"),
            ),
            health: reg(
                r,
                IntGaugeVec::new(
                    o(
                        "srediag_plugin_health",
                        "1 for the health status the plugin last reported itself (ok, degraded, unhealthy).",
                    ),
                    &["name", "status"],
                )
                .expect("static"),
            ),
            load: reg(
                r,
                IntCounterVec::new(
                    o(
                        "srediag_plugin_load_total",
                        "Plugin load attempts by outcome.",
                    ),
                    &["name", "status"],
                )
                .expect("static"),
            ),
            runtime_errors: reg(
                r,
                IntCounterVec::new(
                    o(
                        "srediag_plugin_runtime_errors_total",
                        "Errors a running plugin reported or caused (malformed control messages).",
                    ),
                    &["name"],
                )
                .expect("static"),
            ),
            memory: reg(
                r,
                IntGaugeVec::new(
                    o(
                        "srediag_plugin_memory_bytes",
                        "Memory charged to the plugin's cgroup.",
                    ),
                    &["name"],
                )
                .expect("static"),
            ),
            cpu: reg(
                r,
                CounterVec::new(
                    o(
                        "srediag_plugin_cpu_seconds_total",
                        "CPU time used by the plugin's cgroup.",
                    ),
                    &["name"],
                )
                .expect("static"),
            ),
            restarts: reg(
                r,
                IntCounterVec::new(
                    o(
                        "srediag_plugin_restarts_total",
                        "Plugin restarts by reason.",
                    ),
                    &["name", "reason"],
                )
                .expect("static"),
            ),
            state: reg(
                r,
                IntGaugeVec::new(
                    o(
                        "srediag_plugin_state",
                        "1 for the plugin's current state, 0 for the others.",
                    ),
                    &["name", "state"],
                )
                .expect("static"),
            ),
            oom_kills: reg(
                r,
                IntCounterVec::new(
                    o(
                        "srediag_plugin_oom_kills_total",
                        "OOM kills inside the plugin's cgroup.",
                    ),
                    &["name"],
                )
                .expect("static"),
            ),
            degraded: reg(
                r,
                IntCounterVec::new(
                    o(
                        "srediag_plugin_sandbox_degraded_total",
                        "Plugin starts whose sandbox could not be fully enforced.",
                    ),
                    &["name"],
                )
                .expect("static"),
            ),
            startup: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "srediag_plugin_startup_seconds",
                        "Time from spawn to ready (sandbox, exec, handshake).",
                    )
                    .buckets(vec![
                        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                    &["name"],
                )
                .expect("static"),
            ),
        }
    }

    /// Counts one verification with `result` (a [`VERIFICATION_RESULTS`] value; a rejection
    /// status such as `rejected_malformed` counts as its code, `malformed`).
    pub fn verification(&self, result: &str) {
        let r = match result {
            "rejected_malformed" => "malformed",
            r => r,
        };
        self.verification.with_label_values(&[r]).inc();
    }

    /// Sets the state gauge of `name` to `state`.
    pub fn set_state(&self, name: &str, state: PluginState) {
        for s in PluginState::ALL {
            self.state
                .with_label_values(&[name, s.as_str()])
                .set(i64::from(s == state));
        }
    }
}
