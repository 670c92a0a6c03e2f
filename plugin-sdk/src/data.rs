//! The records plugins handle: the OTLP data model the agent's pipelines carry.
//!
//! Plugins see the same types as the agent's engine (the OTLP protobuf messages, as the
//! OpenTelemetry Collector's `pdata`), so nothing is lost or renamed on the way. On the wire they
//! travel as FlatBuffers (module [`crate::wire`]); plugin code never sees that encoding.

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest as Logs;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest as Metrics;
pub use opentelemetry_proto::tonic::common::v1 as common;
pub use opentelemetry_proto::tonic::logs::v1 as logs;
pub use opentelemetry_proto::tonic::metrics::v1 as metrics;
pub use opentelemetry_proto::tonic::resource::v1 as resource;

/// One batch of telemetry: log records or metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Records {
    /// Log records grouped by resource and scope.
    Logs(Logs),
    /// Metrics grouped by resource and scope.
    Metrics(Metrics),
}

impl Records {
    /// Log records or metric data points in the batch.
    pub fn items(&self) -> u64 {
        match self {
            Records::Logs(l) => l
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len() as u64)
                .sum(),
            Records::Metrics(m) => m
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| metric_points(m) as u64)
                .sum(),
        }
    }

    /// True when the batch holds no item.
    pub fn is_empty(&self) -> bool {
        self.items() == 0
    }

    /// An empty batch of the same signal.
    pub fn empty_like(&self) -> Records {
        match self {
            Records::Logs(_) => Records::Logs(Logs::default()),
            Records::Metrics(_) => Records::Metrics(Metrics::default()),
        }
    }

    /// Splits the batch into batches of at most `max_items` log records or metrics each (a
    /// metric is never split; a metric with more points than `max_items` travels alone).
    /// Resource and scope are repeated in every piece.
    pub fn split(self, max_items: usize) -> Vec<Records> {
        let max_items = max_items.max(1);
        match self {
            Records::Logs(l) => split_logs(l, max_items)
                .into_iter()
                .map(Records::Logs)
                .collect(),
            Records::Metrics(m) => split_metrics(m, max_items)
                .into_iter()
                .map(Records::Metrics)
                .collect(),
        }
    }
}

/// Data points of one metric.
pub fn metric_points(m: &metrics::Metric) -> usize {
    use metrics::metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn split_logs(l: Logs, max: usize) -> Vec<Logs> {
    let mut out = Vec::new();
    let mut cur = Logs::default();
    let mut n = 0;
    for rl in l.resource_logs {
        for sl in rl.scope_logs {
            let mut records = sl.log_records.into_iter().peekable();
            while records.peek().is_some() {
                if n == max {
                    out.push(std::mem::take(&mut cur));
                    n = 0;
                }
                let take: Vec<_> = records.by_ref().take(max - n).collect();
                n += take.len();
                let scope = logs::ScopeLogs {
                    scope: sl.scope.clone(),
                    log_records: take,
                    schema_url: sl.schema_url.clone(),
                };
                match cur.resource_logs.last_mut() {
                    Some(last)
                        if last.resource == rl.resource && last.schema_url == rl.schema_url =>
                    {
                        last.scope_logs.push(scope)
                    }
                    _ => cur.resource_logs.push(logs::ResourceLogs {
                        resource: rl.resource.clone(),
                        scope_logs: vec![scope],
                        schema_url: rl.schema_url.clone(),
                    }),
                }
            }
        }
    }
    if n > 0 {
        out.push(cur);
    }
    out
}

fn split_metrics(m: Metrics, max: usize) -> Vec<Metrics> {
    let mut out = Vec::new();
    let mut cur = Metrics::default();
    let mut n = 0;
    for rm in m.resource_metrics {
        for sm in rm.scope_metrics {
            for metric in sm.metrics {
                if n >= max {
                    out.push(std::mem::take(&mut cur));
                    n = 0;
                }
                n += 1;
                let same_resource = cur.resource_metrics.last().is_some_and(|last| {
                    last.resource == rm.resource && last.schema_url == rm.schema_url
                });
                if !same_resource {
                    cur.resource_metrics.push(metrics::ResourceMetrics {
                        resource: rm.resource.clone(),
                        scope_metrics: Vec::new(),
                        schema_url: rm.schema_url.clone(),
                    });
                }
                let last = cur.resource_metrics.last_mut().expect("pushed above");
                match last.scope_metrics.last_mut() {
                    Some(s) if s.scope == sm.scope && s.schema_url == sm.schema_url => {
                        s.metrics.push(metric)
                    }
                    _ => last.scope_metrics.push(metrics::ScopeMetrics {
                        scope: sm.scope.clone(),
                        metrics: vec![metric],
                        schema_url: sm.schema_url.clone(),
                    }),
                }
            }
        }
    }
    if n > 0 {
        out.push(cur);
    }
    out
}

impl Records {
    /// Keeps the items (log records, or metric data points, in the order of [`Records::items`])
    /// whose flag in `keep` is true; containers left empty are removed. `None` when `keep` does
    /// not have exactly one flag per item.
    pub fn retain_items(mut self, keep: &[bool]) -> Option<Records> {
        if keep.len() as u64 != self.items() {
            return None;
        }
        let mut i = 0usize;
        let mut next = || {
            i += 1;
            keep[i - 1]
        };
        match &mut self {
            Records::Logs(l) => {
                for rl in &mut l.resource_logs {
                    for sl in &mut rl.scope_logs {
                        sl.log_records.retain(|_| next());
                    }
                    rl.scope_logs.retain(|s| !s.log_records.is_empty());
                }
                l.resource_logs.retain(|r| !r.scope_logs.is_empty());
            }
            Records::Metrics(m) => {
                use metrics::metric::Data;
                for rm in &mut m.resource_metrics {
                    for sm in &mut rm.scope_metrics {
                        for metric in &mut sm.metrics {
                            match &mut metric.data {
                                Some(Data::Gauge(g)) => g.data_points.retain(|_| next()),
                                Some(Data::Sum(s)) => s.data_points.retain(|_| next()),
                                Some(Data::Histogram(h)) => h.data_points.retain(|_| next()),
                                Some(Data::ExponentialHistogram(h)) => {
                                    h.data_points.retain(|_| next())
                                }
                                Some(Data::Summary(s)) => s.data_points.retain(|_| next()),
                                None => {}
                            }
                        }
                        sm.metrics.retain(|x| metric_points(x) > 0);
                    }
                    rm.scope_metrics.retain(|s| !s.metrics.is_empty());
                }
                m.resource_metrics.retain(|r| !r.scope_metrics.is_empty());
            }
        }
        Some(self)
    }
}
