//! FlatBuffers → OTLP records, on a verified private copy of a frame.

use super::WireError;
use super::generated::srediag::wire as w;
use crate::data::{Logs, Metrics, Records, common, logs, metrics, resource};
use flatbuffers::{ForwardsUOffset, Vector};

fn s(x: Option<&str>) -> String {
    x.unwrap_or_default().to_string()
}

fn any_value(v: w::AnyValue<'_>) -> Result<common::AnyValue, WireError> {
    use common::any_value::Value as V;
    let value = match v.kind() {
        w::ValueKind::Empty => None,
        w::ValueKind::String => Some(V::StringValue(s(v.string_value()))),
        w::ValueKind::Bool => Some(V::BoolValue(v.bool_value())),
        w::ValueKind::Int => Some(V::IntValue(v.int_value())),
        w::ValueKind::Double => Some(V::DoubleValue(v.double_value())),
        w::ValueKind::Bytes => Some(V::BytesValue(
            v.bytes_value()
                .map(|b| b.bytes().to_vec())
                .unwrap_or_default(),
        )),
        w::ValueKind::Array => Some(V::ArrayValue(common::ArrayValue {
            values: v
                .array_value()
                .map(|a| a.iter().map(any_value).collect::<Result<Vec<_>, _>>())
                .transpose()?
                .unwrap_or_default(),
        })),
        w::ValueKind::KvList => Some(V::KvlistValue(common::KeyValueList {
            values: key_values(v.kvlist_value())?,
        })),
        other => {
            return Err(WireError::Invalid(format!(
                "unknown value kind {}",
                other.0
            )));
        }
    };
    Ok(common::AnyValue { value })
}

fn key_values(
    kvs: Option<Vector<'_, ForwardsUOffset<w::KeyValue<'_>>>>,
) -> Result<Vec<common::KeyValue>, WireError> {
    let Some(kvs) = kvs else {
        return Ok(Vec::new());
    };
    kvs.iter()
        .map(|kv| {
            Ok(common::KeyValue {
                key: s(kv.key()),
                value: kv.value().map(any_value).transpose()?,
            })
        })
        .collect()
}

fn resource_(r: Option<w::Resource<'_>>) -> Result<Option<resource::Resource>, WireError> {
    r.map(|r| {
        Ok(resource::Resource {
            attributes: key_values(r.attributes())?,
            dropped_attributes_count: r.dropped_attributes_count(),
            entity_refs: Vec::new(),
        })
    })
    .transpose()
}

fn scope(sc: Option<w::Scope<'_>>) -> Result<Option<common::InstrumentationScope>, WireError> {
    sc.map(|sc| {
        Ok(common::InstrumentationScope {
            name: s(sc.name()),
            version: s(sc.version()),
            attributes: key_values(sc.attributes())?,
            dropped_attributes_count: sc.dropped_attributes_count(),
        })
    })
    .transpose()
}

fn log_record(r: w::LogRecord<'_>) -> Result<logs::LogRecord, WireError> {
    Ok(logs::LogRecord {
        time_unix_nano: r.time_unix_nano(),
        observed_time_unix_nano: r.observed_time_unix_nano(),
        severity_number: r.severity_number(),
        severity_text: s(r.severity_text()),
        body: r.body().map(any_value).transpose()?,
        attributes: key_values(r.attributes())?,
        dropped_attributes_count: r.dropped_attributes_count(),
        flags: r.flags(),
        trace_id: r.trace_id().map(|b| b.bytes().to_vec()).unwrap_or_default(),
        span_id: r.span_id().map(|b| b.bytes().to_vec()).unwrap_or_default(),
        event_name: s(r.event_name()),
    })
}

fn logs_(v: Option<Vector<'_, ForwardsUOffset<w::ResourceLogs<'_>>>>) -> Result<Logs, WireError> {
    let mut out = Logs::default();
    for rl in v.iter().flatten() {
        let mut scope_logs = Vec::new();
        for sl in rl.scope_logs().iter().flatten() {
            scope_logs.push(logs::ScopeLogs {
                scope: scope(sl.scope())?,
                log_records: sl
                    .log_records()
                    .iter()
                    .flatten()
                    .map(log_record)
                    .collect::<Result<_, _>>()?,
                schema_url: s(sl.schema_url()),
            });
        }
        out.resource_logs.push(logs::ResourceLogs {
            resource: resource_(rl.resource())?,
            scope_logs,
            schema_url: s(rl.schema_url()),
        });
    }
    Ok(out)
}

fn number_points(
    v: Option<Vector<'_, ForwardsUOffset<w::NumberDataPoint<'_>>>>,
) -> Result<Vec<metrics::NumberDataPoint>, WireError> {
    use metrics::number_data_point::Value;
    v.iter()
        .flatten()
        .map(|p| {
            Ok(metrics::NumberDataPoint {
                attributes: key_values(p.attributes())?,
                start_time_unix_nano: p.start_time_unix_nano(),
                time_unix_nano: p.time_unix_nano(),
                exemplars: Vec::new(),
                flags: p.flags(),
                value: if p.no_value() {
                    None
                } else if p.is_int() {
                    Some(Value::AsInt(p.as_int()))
                } else {
                    Some(Value::AsDouble(p.as_double()))
                },
            })
        })
        .collect()
}

fn opt(has: bool, v: f64) -> Option<f64> {
    has.then_some(v)
}

fn histogram_points(
    v: Option<Vector<'_, ForwardsUOffset<w::HistogramDataPoint<'_>>>>,
) -> Result<Vec<metrics::HistogramDataPoint>, WireError> {
    v.iter()
        .flatten()
        .map(|p| {
            Ok(metrics::HistogramDataPoint {
                attributes: key_values(p.attributes())?,
                start_time_unix_nano: p.start_time_unix_nano(),
                time_unix_nano: p.time_unix_nano(),
                count: p.count(),
                sum: opt(p.has_sum(), p.sum()),
                bucket_counts: p
                    .bucket_counts()
                    .map(|x| x.iter().collect())
                    .unwrap_or_default(),
                explicit_bounds: p
                    .explicit_bounds()
                    .map(|x| x.iter().collect())
                    .unwrap_or_default(),
                exemplars: Vec::new(),
                flags: p.flags(),
                min: opt(p.has_min(), p.min()),
                max: opt(p.has_max(), p.max()),
            })
        })
        .collect()
}

fn exp_histogram_points(
    v: Option<Vector<'_, ForwardsUOffset<w::ExponentialHistogramDataPoint<'_>>>>,
) -> Result<Vec<metrics::ExponentialHistogramDataPoint>, WireError> {
    use metrics::exponential_histogram_data_point::Buckets;
    v.iter()
        .flatten()
        .map(|p| {
            let buckets = |offset: i32, counts: Option<Vector<'_, u64>>| {
                counts.map(|c| Buckets {
                    offset,
                    bucket_counts: c.iter().collect(),
                })
            };
            Ok(metrics::ExponentialHistogramDataPoint {
                attributes: key_values(p.attributes())?,
                start_time_unix_nano: p.start_time_unix_nano(),
                time_unix_nano: p.time_unix_nano(),
                count: p.count(),
                sum: opt(p.has_sum(), p.sum()),
                scale: p.scale(),
                zero_count: p.zero_count(),
                positive: buckets(p.positive_offset(), p.positive_bucket_counts()).or((p
                    .positive_offset()
                    != 0)
                    .then_some(Buckets {
                        offset: p.positive_offset(),
                        bucket_counts: Vec::new(),
                    })),
                negative: buckets(p.negative_offset(), p.negative_bucket_counts()).or((p
                    .negative_offset()
                    != 0)
                    .then_some(Buckets {
                        offset: p.negative_offset(),
                        bucket_counts: Vec::new(),
                    })),
                flags: p.flags(),
                exemplars: Vec::new(),
                min: opt(p.has_min(), p.min()),
                max: opt(p.has_max(), p.max()),
                zero_threshold: p.zero_threshold(),
            })
        })
        .collect()
}

fn summary_points(
    v: Option<Vector<'_, ForwardsUOffset<w::SummaryDataPoint<'_>>>>,
) -> Result<Vec<metrics::SummaryDataPoint>, WireError> {
    use metrics::summary_data_point::ValueAtQuantile;
    v.iter()
        .flatten()
        .map(|p| {
            Ok(metrics::SummaryDataPoint {
                attributes: key_values(p.attributes())?,
                start_time_unix_nano: p.start_time_unix_nano(),
                time_unix_nano: p.time_unix_nano(),
                count: p.count(),
                sum: p.sum(),
                quantile_values: p
                    .quantile_values()
                    .iter()
                    .flatten()
                    .map(|q| ValueAtQuantile {
                        quantile: q.quantile(),
                        value: q.value(),
                    })
                    .collect(),
                flags: p.flags(),
            })
        })
        .collect()
}

fn metric(m: w::Metric<'_>) -> Result<metrics::Metric, WireError> {
    use metrics::metric::Data;
    let data = match m.kind() {
        w::MetricKind::Empty => None,
        w::MetricKind::Gauge => Some(Data::Gauge(metrics::Gauge {
            data_points: number_points(m.number_points())?,
        })),
        w::MetricKind::Sum => Some(Data::Sum(metrics::Sum {
            data_points: number_points(m.number_points())?,
            aggregation_temporality: m.aggregation_temporality(),
            is_monotonic: m.is_monotonic(),
        })),
        w::MetricKind::Histogram => Some(Data::Histogram(metrics::Histogram {
            data_points: histogram_points(m.histogram_points())?,
            aggregation_temporality: m.aggregation_temporality(),
        })),
        w::MetricKind::ExponentialHistogram => {
            Some(Data::ExponentialHistogram(metrics::ExponentialHistogram {
                data_points: exp_histogram_points(m.exponential_histogram_points())?,
                aggregation_temporality: m.aggregation_temporality(),
            }))
        }
        w::MetricKind::Summary => Some(Data::Summary(metrics::Summary {
            data_points: summary_points(m.summary_points())?,
        })),
        other => {
            return Err(WireError::Invalid(format!(
                "unknown metric kind {}",
                other.0
            )));
        }
    };
    Ok(metrics::Metric {
        name: s(m.name()),
        description: s(m.description()),
        unit: s(m.unit()),
        metadata: key_values(m.metadata())?,
        data,
    })
}

fn metrics_(
    v: Option<Vector<'_, ForwardsUOffset<w::ResourceMetrics<'_>>>>,
) -> Result<Metrics, WireError> {
    let mut out = Metrics::default();
    for rm in v.iter().flatten() {
        let mut scope_metrics = Vec::new();
        for sm in rm.scope_metrics().iter().flatten() {
            scope_metrics.push(metrics::ScopeMetrics {
                scope: scope(sm.scope())?,
                metrics: sm
                    .metrics()
                    .iter()
                    .flatten()
                    .map(metric)
                    .collect::<Result<_, _>>()?,
                schema_url: s(sm.schema_url()),
            });
        }
        out.resource_metrics.push(metrics::ResourceMetrics {
            resource: resource_(rm.resource())?,
            scope_metrics,
            schema_url: s(rm.schema_url()),
        });
    }
    Ok(out)
}

/// Converts a verified `Batch` table.
pub(super) fn batch(b: w::Batch<'_>) -> Result<(u64, Records), WireError> {
    let records = match b.signal() {
        w::Signal::Logs => {
            if b.metrics().is_some() {
                return Err(WireError::Invalid("a logs batch carries metrics".into()));
            }
            Records::Logs(logs_(b.logs())?)
        }
        w::Signal::Metrics => {
            if b.logs().is_some() {
                return Err(WireError::Invalid("a metrics batch carries logs".into()));
            }
            Records::Metrics(metrics_(b.metrics())?)
        }
        other => return Err(WireError::Invalid(format!("unknown signal {}", other.0))),
    };
    Ok((b.seq(), records))
}
