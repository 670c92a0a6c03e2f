//! The latest value of every series, and the text exposition format.

use super::Config;
use super::naming::{escape_help, escape_label, label, metric_name};
use crate::model::Metrics;
use crate::model::common::{KeyValue, any_value::Value};
use crate::model::metrics::{
    AggregationTemporality, NumberDataPoint, metric::Data, number_data_point,
};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Sample {
    Number(f64),
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

struct Family {
    kind: Type,
    help: String,
    series: BTreeMap<String, (Sample, Instant)>,
}

/// What the endpoint serves.
pub struct Store {
    families: BTreeMap<String, Family>,
    expiration: Duration,
    resource_labels: bool,
    namespace: String,
}

fn value_string(v: &Option<crate::model::common::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Renders `{a="1",b="2"}` from resource and point attributes (point attributes win).
fn label_set(resource: &[KeyValue], attrs: &[KeyValue], extra: Option<(&str, String)>) -> String {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    for kv in resource.iter().chain(attrs) {
        m.insert(label(&kv.key), value_string(&kv.value));
    }
    if let Some((k, v)) = extra {
        m.insert(k.to_string(), v);
    }
    let mut s = String::new();
    for (i, (k, v)) in m.iter().enumerate() {
        let _ = write!(
            s,
            "{}{k}=\"{}\"",
            if i == 0 { "" } else { "," },
            escape_label(v)
        );
    }
    s
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}

impl Store {
    /// An empty store.
    pub fn new(cfg: &Config) -> Self {
        Store {
            families: BTreeMap::new(),
            expiration: cfg.metric_expiration,
            resource_labels: cfg.resource_to_telemetry_conversion,
            namespace: cfg.namespace.clone(),
        }
    }

    fn family(&mut self, name: String, kind: Type, help: &str) -> Option<&mut Family> {
        let f = self.families.entry(name).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        // Two OTLP metrics mapping to one name with different types: keep the first.
        (f.kind == kind).then_some(f)
    }

    /// Applies a batch: cumulative points replace, delta points add.
    pub fn update(&mut self, metrics: &Metrics) {
        let now = Instant::now();
        for rm in &metrics.resource_metrics {
            let res: &[KeyValue] = match (&rm.resource, self.resource_labels) {
                (Some(r), true) => &r.attributes,
                _ => &[],
            };
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let help = if m.description.is_empty() {
                    m.name.clone()
                } else {
                    m.description.clone()
                };
                match &m.data {
                    Some(Data::Gauge(g)) => {
                        let name = metric_name(&self.namespace, &m.name, &m.unit, false);
                        self.numbers(name, Type::Gauge, &help, res, &g.data_points, false, now);
                    }
                    Some(Data::Sum(s)) => {
                        let kind = if s.is_monotonic {
                            Type::Counter
                        } else {
                            Type::Gauge
                        };
                        let name = metric_name(&self.namespace, &m.name, &m.unit, s.is_monotonic);
                        let delta =
                            s.aggregation_temporality == AggregationTemporality::Delta as i32;
                        self.numbers(name, kind, &help, res, &s.data_points, delta, now);
                    }
                    Some(Data::Histogram(h)) => {
                        let name = metric_name(&self.namespace, &m.name, &m.unit, false);
                        let delta =
                            h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        let Some(f) = self.family(name, Type::Histogram, &help) else {
                            continue;
                        };
                        for p in &h.data_points {
                            if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                                continue; // malformed point: nothing sensible to show
                            }
                            let key = label_set(res, &p.attributes, None);
                            let new = Sample::Histogram {
                                bounds: p.explicit_bounds.clone(),
                                counts: p.bucket_counts.clone(),
                                sum: p.sum.unwrap_or(0.0),
                                count: p.count,
                            };
                            let merged = match (delta, f.series.get(&key)) {
                                (
                                    true,
                                    Some((
                                        Sample::Histogram {
                                            bounds,
                                            counts,
                                            sum,
                                            count,
                                        },
                                        _,
                                    )),
                                ) if *bounds == p.explicit_bounds => Sample::Histogram {
                                    bounds: bounds.clone(),
                                    counts: counts
                                        .iter()
                                        .zip(&p.bucket_counts)
                                        .map(|(a, b)| a + b)
                                        .collect(),
                                    sum: sum + p.sum.unwrap_or(0.0),
                                    count: count + p.count,
                                },
                                _ => new,
                            };
                            f.series.insert(key, (merged, now));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn numbers(
        &mut self,
        name: String,
        kind: Type,
        help: &str,
        res: &[KeyValue],
        points: &[NumberDataPoint],
        delta: bool,
        now: Instant,
    ) {
        let Some(f) = self.family(name, kind, help) else {
            return;
        };
        for p in points {
            let key = label_set(res, &p.attributes, None);
            let mut v = number(p);
            if delta && let Some((Sample::Number(old), _)) = f.series.get(&key) {
                v += old;
            }
            f.series.insert(key, (Sample::Number(v), now));
        }
    }

    /// The text exposition format; expired series are removed first.
    pub fn render(&mut self) -> String {
        let exp = self.expiration;
        self.families.retain(|_, f| {
            f.series.retain(|_, (_, t)| t.elapsed() < exp);
            !f.series.is_empty()
        });
        let mut out = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            for (labels, (sample, _)) in &f.series {
                match sample {
                    Sample::Number(v) => {
                        let l = if labels.is_empty() {
                            String::new()
                        } else {
                            format!("{{{labels}}}")
                        };
                        let _ = writeln!(out, "{name}{l} {}", fmt_f64(*v));
                    }
                    Sample::Histogram {
                        bounds,
                        counts,
                        sum,
                        count,
                    } => {
                        let sep = if labels.is_empty() { "" } else { "," };
                        let mut cum = 0u64;
                        for (b, c) in bounds.iter().zip(counts) {
                            cum += c;
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cum}",
                                fmt_f64(*b)
                            );
                        }
                        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
                        let l = if labels.is_empty() {
                            String::new()
                        } else {
                            format!("{{{labels}}}")
                        };
                        let _ = writeln!(out, "{name}_sum{l} {}", fmt_f64(*sum));
                        let _ = writeln!(out, "{name}_count{l} {count}");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::{
        Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    };
    use crate::model::{attr_str, gauge_f64, sum_i64};

    fn batch(metrics: Vec<Metric>) -> Metrics {
        Metrics {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn renders_gauges_counters_and_histograms() {
        let mut s = Store::new(&Config::default());
        let hist = Metric {
            name: "req.latency".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![attr_str("route", "/a")],
                    count: 5,
                    sum: Some(1.5),
                    bucket_counts: vec![1, 3, 1],
                    explicit_bounds: vec![0.1, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        s.update(&batch(vec![
            gauge_f64(
                "system.memory.usage",
                "Memory in use.",
                "By",
                1,
                vec![(vec![attr_str("state", "used")], 42.0)],
            ),
            sum_i64(
                "system.cpu.time",
                "",
                "s",
                true,
                0,
                1,
                vec![(vec![attr_str("cpu", "cpu0")], 7)],
            ),
            hist,
        ]));
        let text = s.render();
        assert!(text.contains("# TYPE system_memory_usage_bytes gauge\nsystem_memory_usage_bytes{state=\"used\"} 42\n"), "{text}");
        assert!(
            text.contains("# HELP system_cpu_time_seconds_total system.cpu.time\n"),
            "{text}"
        );
        assert!(
            text.contains("system_cpu_time_seconds_total{cpu=\"cpu0\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("req_latency_seconds_bucket{route=\"/a\",le=\"1\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("req_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("req_latency_seconds_count{route=\"/a\"} 5\n"),
            "{text}"
        );
    }

    #[test]
    fn expires_stale_series() {
        let mut s = Store::new(&Config {
            metric_expiration: Duration::from_millis(1),
            ..Config::default()
        });
        s.update(&batch(vec![gauge_f64("g", "", "", 1, vec![(vec![], 1.0)])]));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.render(), "");
    }
}
