//! Data-path metrics, per plugin.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Counters of every link.
#[derive(Clone)]
pub struct DataPathMetrics {
    /// `srediag_plugin_ipc_batches_total{plugin,direction}`: frames published (`to_plugin`) and
    /// answers read (`from_plugin`).
    pub batches: IntCounterVec,
    /// `srediag_plugin_ipc_redelivered_batches_total{plugin}`: batches re-sent to a restarted
    /// plugin.
    pub redelivered: IntCounterVec,
    /// `srediag_plugin_ipc_duplicate_records_total{plugin}`: records forwarded twice because a
    /// plugin died between parts of a split answer.
    pub duplicates: IntCounterVec,
    /// `srediag_plugin_ipc_dropped_records_total{plugin,reason}`: `failed` (the plugin refused
    /// the batch), `oversize` (one record larger than a frame) or `unavailable` (the plugin is
    /// quarantined or rejected and its stage does not wait for it).
    pub dropped: IntCounterVec,
    /// `srediag_plugin_ipc_in_flight_batches{plugin}`.
    pub in_flight: IntGaugeVec,
    /// `srediag_plugin_ipc_oldest_in_flight_seconds{plugin}`: how long the oldest batch has
    /// waited for the plugin's answer (updated every heartbeat interval).
    pub oldest: GaugeVec,
    /// `srediag_plugin_ipc_bypassed_records_total{plugin}`: passed on unprocessed while the
    /// plugin was unavailable (`on_unavailable: bypass`).
    pub bypassed: IntCounterVec,
}

impl DataPathMetrics {
    /// Registers the metrics (unregistered when `r` is `None`, for tests).
    pub fn new(r: Option<&Registry>) -> DataPathMetrics {
        let c = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            if let Some(r) = r {
                let _ = r.register(Box::new(v.clone()));
            }
            v
        };
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "srediag_plugin_ipc_in_flight_batches",
                "Batches sent to a plugin and not yet answered.",
            ),
            &["plugin"],
        )
        .expect("valid metric");
        if let Some(r) = r {
            let _ = r.register(Box::new(in_flight.clone()));
        }
        let oldest = GaugeVec::new(
            Opts::new(
                "srediag_plugin_ipc_oldest_in_flight_seconds",
                "How long the oldest batch sent to a plugin has waited for its answer.",
            ),
            &["plugin"],
        )
        .expect("valid metric");
        if let Some(r) = r {
            let _ = r.register(Box::new(oldest.clone()));
        }
        DataPathMetrics {
            oldest,
            batches: c(
                "srediag_plugin_ipc_batches_total",
                "Batches crossing the shared-memory data path, by direction.",
                &["plugin", "direction"],
            ),
            redelivered: c(
                "srediag_plugin_ipc_redelivered_batches_total",
                "Unanswered batches re-sent to a restarted plugin.",
                &["plugin"],
            ),
            duplicates: c(
                "srediag_plugin_ipc_duplicate_records_total",
                "Records forwarded twice because a plugin died between parts of a split answer.",
                &["plugin"],
            ),
            dropped: c(
                "srediag_plugin_ipc_dropped_records_total",
                "Records dropped on the data path, by reason (failed, oversize, unavailable).",
                &["plugin", "reason"],
            ),
            in_flight,
            bypassed: c(
                "srediag_plugin_ipc_bypassed_records_total",
                "Records passed on unprocessed while the plugin was unavailable (on_unavailable: bypass).",
                &["plugin"],
            ),
        }
    }
}
