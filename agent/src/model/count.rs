//! Item counting: the unit of every pipeline counter.

use super::{Logs, Metrics, metrics::metric::Data};

/// Number of log records in a batch.
pub fn log_record_count(logs: &Logs) -> u64 {
    logs.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

/// Number of data points in a batch (gauge, sum, histogram, exponential histogram and summary
/// points each count once; a metric without data counts zero).
pub fn metric_point_count(metrics: &Metrics) -> u64 {
    metrics
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len() as u64,
            Some(Data::Sum(s)) => s.data_points.len() as u64,
            Some(Data::Histogram(h)) => h.data_points.len() as u64,
            Some(Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
            Some(Data::Summary(s)) => s.data_points.len() as u64,
            None => 0,
        })
        .sum()
}
