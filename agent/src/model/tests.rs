use super::*;
use logs::{LogRecord, ResourceLogs, ScopeLogs};
use metrics::{ResourceMetrics, ScopeMetrics};

fn logs_batch(n: usize) -> Batch {
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

fn metrics_batch(points: usize) -> Batch {
    let pts = (0..points)
        .map(|i| (vec![attr_i64("i", i as i64)], i as f64))
        .collect();
    Batch::Metrics(Metrics {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge_f64("g", "", "1", 1, pts),
                    sum_i64("s", "", "1", true, 0, 1, vec![(vec![], 3)]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

#[test]
fn counts_log_records_and_points() {
    assert_eq!(logs_batch(7).items(), 7);
    assert_eq!(metrics_batch(5).items(), 6);
    assert!(logs_batch(0).is_empty());
}

#[test]
fn merge_keeps_every_item_and_refuses_mixed_signals() {
    let mut a = logs_batch(3);
    a.merge(logs_batch(4)).unwrap();
    assert_eq!(a.items(), 7);
    let back = a.merge(metrics_batch(2)).unwrap_err();
    assert_eq!(back.signal(), Signal::Metrics);
    assert_eq!(a.items(), 7);
}
