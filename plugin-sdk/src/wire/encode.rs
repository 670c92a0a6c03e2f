//! OTLP records → FlatBuffers.

use super::WireError;
use super::generated::srediag::wire as w;
use crate::data::{Records, common, logs, metrics, resource};
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

type Fbb<'a> = FlatBufferBuilder<'a>;
type Vec_<'a, T> = WIPOffset<Vector<'a, ForwardsUOffset<T>>>;

/// Deepest nesting of AnyValue arrays/kvlists the encoder writes (the decoder's verifier allows
/// more, so whatever we write, the peer can read).
pub(super) const MAX_VALUE_DEPTH: u32 = 16;

fn opt_str<'a>(b: &mut Fbb<'a>, s: &str) -> Option<WIPOffset<&'a str>> {
    (!s.is_empty()).then(|| b.create_string(s))
}

fn opt_bytes<'a>(b: &mut Fbb<'a>, s: &[u8]) -> Option<WIPOffset<Vector<'a, u8>>> {
    (!s.is_empty()).then(|| b.create_vector(s))
}

fn opt_vec<'a, T: flatbuffers::Push + Copy>(
    b: &mut Fbb<'a>,
    s: &[T],
) -> Option<WIPOffset<Vector<'a, T::Output>>> {
    (!s.is_empty()).then(|| b.create_vector(s))
}

fn any_value<'a>(
    b: &mut Fbb<'a>,
    v: &common::AnyValue,
    depth: u32,
) -> Result<WIPOffset<w::AnyValue<'a>>, WireError> {
    use common::any_value::Value as V;
    let mut a = w::AnyValueArgs::default();
    match &v.value {
        None => {}
        Some(V::StringValue(s)) => {
            a.kind = w::ValueKind::String;
            a.string_value = Some(b.create_string(s));
        }
        Some(V::BoolValue(x)) => {
            a.kind = w::ValueKind::Bool;
            a.bool_value = *x;
        }
        Some(V::IntValue(x)) => {
            a.kind = w::ValueKind::Int;
            a.int_value = *x;
        }
        Some(V::DoubleValue(x)) => {
            a.kind = w::ValueKind::Double;
            a.double_value = *x;
        }
        Some(V::BytesValue(x)) => {
            a.kind = w::ValueKind::Bytes;
            a.bytes_value = Some(b.create_vector(x.as_slice()));
        }
        Some(V::ArrayValue(arr)) => {
            if depth >= MAX_VALUE_DEPTH {
                return Err(WireError::TooDeep(MAX_VALUE_DEPTH));
            }
            let items = arr
                .values
                .iter()
                .map(|x| any_value(b, x, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            a.kind = w::ValueKind::Array;
            a.array_value = Some(b.create_vector(&items));
        }
        Some(V::KvlistValue(kv)) => {
            if depth >= MAX_VALUE_DEPTH {
                return Err(WireError::TooDeep(MAX_VALUE_DEPTH));
            }
            a.kind = w::ValueKind::KvList;
            a.kvlist_value = Some(key_values(b, &kv.values, depth + 1)?);
        }
    }
    Ok(w::AnyValue::create(b, &a))
}

fn key_values<'a>(
    b: &mut Fbb<'a>,
    kvs: &[common::KeyValue],
    depth: u32,
) -> Result<Vec_<'a, w::KeyValue<'a>>, WireError> {
    let items = kvs
        .iter()
        .map(|kv| {
            let key = b.create_string(&kv.key);
            let value = kv
                .value
                .as_ref()
                .map(|v| any_value(b, v, depth))
                .transpose()?;
            Ok(w::KeyValue::create(
                b,
                &w::KeyValueArgs {
                    key: Some(key),
                    value,
                },
            ))
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(b.create_vector(&items))
}

fn attrs<'a>(
    b: &mut Fbb<'a>,
    kvs: &[common::KeyValue],
) -> Result<Option<Vec_<'a, w::KeyValue<'a>>>, WireError> {
    if kvs.is_empty() {
        return Ok(None);
    }
    key_values(b, kvs, 0).map(Some)
}

fn resource_<'a>(
    b: &mut Fbb<'a>,
    r: &Option<resource::Resource>,
) -> Result<Option<WIPOffset<w::Resource<'a>>>, WireError> {
    let Some(r) = r else { return Ok(None) };
    let attributes = attrs(b, &r.attributes)?;
    Ok(Some(w::Resource::create(
        b,
        &w::ResourceArgs {
            attributes,
            dropped_attributes_count: r.dropped_attributes_count,
        },
    )))
}

fn scope<'a>(
    b: &mut Fbb<'a>,
    s: &Option<common::InstrumentationScope>,
) -> Result<Option<WIPOffset<w::Scope<'a>>>, WireError> {
    let Some(s) = s else { return Ok(None) };
    let a = w::ScopeArgs {
        name: opt_str(b, &s.name),
        version: opt_str(b, &s.version),
        attributes: attrs(b, &s.attributes)?,
        dropped_attributes_count: s.dropped_attributes_count,
    };
    Ok(Some(w::Scope::create(b, &a)))
}

fn log_record<'a>(
    b: &mut Fbb<'a>,
    r: &logs::LogRecord,
) -> Result<WIPOffset<w::LogRecord<'a>>, WireError> {
    let a = w::LogRecordArgs {
        time_unix_nano: r.time_unix_nano,
        observed_time_unix_nano: r.observed_time_unix_nano,
        severity_number: r.severity_number,
        severity_text: opt_str(b, &r.severity_text),
        body: r.body.as_ref().map(|v| any_value(b, v, 0)).transpose()?,
        attributes: attrs(b, &r.attributes)?,
        dropped_attributes_count: r.dropped_attributes_count,
        flags: r.flags,
        trace_id: opt_bytes(b, &r.trace_id),
        span_id: opt_bytes(b, &r.span_id),
        event_name: opt_str(b, &r.event_name),
    };
    Ok(w::LogRecord::create(b, &a))
}

fn resource_logs<'a>(
    b: &mut Fbb<'a>,
    rl: &logs::ResourceLogs,
) -> Result<WIPOffset<w::ResourceLogs<'a>>, WireError> {
    let mut scopes = Vec::with_capacity(rl.scope_logs.len());
    for sl in &rl.scope_logs {
        let records = sl
            .log_records
            .iter()
            .map(|r| log_record(b, r))
            .collect::<Result<Vec<_>, _>>()?;
        let a = w::ScopeLogsArgs {
            scope: scope(b, &sl.scope)?,
            log_records: Some(b.create_vector(&records)),
            schema_url: opt_str(b, &sl.schema_url),
        };
        scopes.push(w::ScopeLogs::create(b, &a));
    }
    let a = w::ResourceLogsArgs {
        resource: resource_(b, &rl.resource)?,
        scope_logs: Some(b.create_vector(&scopes)),
        schema_url: opt_str(b, &rl.schema_url),
    };
    Ok(w::ResourceLogs::create(b, &a))
}

fn number_points<'a>(
    b: &mut Fbb<'a>,
    points: &[metrics::NumberDataPoint],
) -> Result<Vec_<'a, w::NumberDataPoint<'a>>, WireError> {
    use metrics::number_data_point::Value;
    let items = points
        .iter()
        .map(|p| {
            let (is_int, as_int, as_double) = match p.value {
                Some(Value::AsInt(i)) => (true, i, 0.0),
                Some(Value::AsDouble(d)) => (false, 0, d),
                None => (false, 0, 0.0),
            };
            let a = w::NumberDataPointArgs {
                attributes: attrs(b, &p.attributes)?,
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                is_int,
                as_double,
                as_int,
                flags: p.flags,
                no_value: p.value.is_none(),
            };
            Ok(w::NumberDataPoint::create(b, &a))
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(b.create_vector(&items))
}

fn histogram_points<'a>(
    b: &mut Fbb<'a>,
    points: &[metrics::HistogramDataPoint],
) -> Result<Vec_<'a, w::HistogramDataPoint<'a>>, WireError> {
    let items = points
        .iter()
        .map(|p| {
            let a = w::HistogramDataPointArgs {
                attributes: attrs(b, &p.attributes)?,
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                count: p.count,
                has_sum: p.sum.is_some(),
                sum: p.sum.unwrap_or(0.0),
                bucket_counts: opt_vec(b, &p.bucket_counts),
                explicit_bounds: opt_vec(b, &p.explicit_bounds),
                flags: p.flags,
                has_min: p.min.is_some(),
                min: p.min.unwrap_or(0.0),
                has_max: p.max.is_some(),
                max: p.max.unwrap_or(0.0),
            };
            Ok(w::HistogramDataPoint::create(b, &a))
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(b.create_vector(&items))
}

fn exp_histogram_points<'a>(
    b: &mut Fbb<'a>,
    points: &[metrics::ExponentialHistogramDataPoint],
) -> Result<Vec_<'a, w::ExponentialHistogramDataPoint<'a>>, WireError> {
    let items = points
        .iter()
        .map(|p| {
            let (po, pc) = p
                .positive
                .as_ref()
                .map(|x| (x.offset, x.bucket_counts.as_slice()))
                .unwrap_or((0, &[]));
            let (no, nc) = p
                .negative
                .as_ref()
                .map(|x| (x.offset, x.bucket_counts.as_slice()))
                .unwrap_or((0, &[]));
            let a = w::ExponentialHistogramDataPointArgs {
                attributes: attrs(b, &p.attributes)?,
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                count: p.count,
                has_sum: p.sum.is_some(),
                sum: p.sum.unwrap_or(0.0),
                scale: p.scale,
                zero_count: p.zero_count,
                positive_offset: po,
                positive_bucket_counts: opt_vec(b, pc),
                negative_offset: no,
                negative_bucket_counts: opt_vec(b, nc),
                flags: p.flags,
                has_min: p.min.is_some(),
                min: p.min.unwrap_or(0.0),
                has_max: p.max.is_some(),
                max: p.max.unwrap_or(0.0),
                zero_threshold: p.zero_threshold,
            };
            Ok(w::ExponentialHistogramDataPoint::create(b, &a))
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(b.create_vector(&items))
}

fn summary_points<'a>(
    b: &mut Fbb<'a>,
    points: &[metrics::SummaryDataPoint],
) -> Result<Vec_<'a, w::SummaryDataPoint<'a>>, WireError> {
    let items = points
        .iter()
        .map(|p| {
            let q: Vec<w::ValueAtQuantile> = p
                .quantile_values
                .iter()
                .map(|q| w::ValueAtQuantile::new(q.quantile, q.value))
                .collect();
            let a = w::SummaryDataPointArgs {
                attributes: attrs(b, &p.attributes)?,
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                count: p.count,
                sum: p.sum,
                quantile_values: (!q.is_empty()).then(|| b.create_vector(&q)),
                flags: p.flags,
            };
            Ok(w::SummaryDataPoint::create(b, &a))
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(b.create_vector(&items))
}

fn metric<'a>(b: &mut Fbb<'a>, m: &metrics::Metric) -> Result<WIPOffset<w::Metric<'a>>, WireError> {
    use metrics::metric::Data;
    let mut a = w::MetricArgs {
        name: opt_str(b, &m.name),
        description: opt_str(b, &m.description),
        unit: opt_str(b, &m.unit),
        metadata: attrs(b, &m.metadata)?,
        ..Default::default()
    };
    match &m.data {
        None => {}
        Some(Data::Gauge(g)) => {
            a.kind = w::MetricKind::Gauge;
            a.number_points = Some(number_points(b, &g.data_points)?);
        }
        Some(Data::Sum(s)) => {
            a.kind = w::MetricKind::Sum;
            a.aggregation_temporality = s.aggregation_temporality;
            a.is_monotonic = s.is_monotonic;
            a.number_points = Some(number_points(b, &s.data_points)?);
        }
        Some(Data::Histogram(h)) => {
            a.kind = w::MetricKind::Histogram;
            a.aggregation_temporality = h.aggregation_temporality;
            a.histogram_points = Some(histogram_points(b, &h.data_points)?);
        }
        Some(Data::ExponentialHistogram(h)) => {
            a.kind = w::MetricKind::ExponentialHistogram;
            a.aggregation_temporality = h.aggregation_temporality;
            a.exponential_histogram_points = Some(exp_histogram_points(b, &h.data_points)?);
        }
        Some(Data::Summary(s)) => {
            a.kind = w::MetricKind::Summary;
            a.summary_points = Some(summary_points(b, &s.data_points)?);
        }
    }
    Ok(w::Metric::create(b, &a))
}

fn resource_metrics<'a>(
    b: &mut Fbb<'a>,
    rm: &metrics::ResourceMetrics,
) -> Result<WIPOffset<w::ResourceMetrics<'a>>, WireError> {
    let mut scopes = Vec::with_capacity(rm.scope_metrics.len());
    for sm in &rm.scope_metrics {
        let ms = sm
            .metrics
            .iter()
            .map(|m| metric(b, m))
            .collect::<Result<Vec<_>, _>>()?;
        let a = w::ScopeMetricsArgs {
            scope: scope(b, &sm.scope)?,
            metrics: Some(b.create_vector(&ms)),
            schema_url: opt_str(b, &sm.schema_url),
        };
        scopes.push(w::ScopeMetrics::create(b, &a));
    }
    let a = w::ResourceMetricsArgs {
        resource: resource_(b, &rm.resource)?,
        scope_metrics: Some(b.create_vector(&scopes)),
        schema_url: opt_str(b, &rm.schema_url),
    };
    Ok(w::ResourceMetrics::create(b, &a))
}

/// Builds the `Batch` table for `records` into `b` (reset first) and finishes the buffer.
pub(super) fn batch(b: &mut Fbb<'_>, seq: u64, records: &Records) -> Result<(), WireError> {
    b.reset();
    let mut a = w::BatchArgs {
        seq,
        ..Default::default()
    };
    match records {
        Records::Logs(l) => {
            a.signal = w::Signal::Logs;
            let items = l
                .resource_logs
                .iter()
                .map(|rl| resource_logs(b, rl))
                .collect::<Result<Vec<_>, _>>()?;
            a.logs = Some(b.create_vector(&items));
        }
        Records::Metrics(m) => {
            a.signal = w::Signal::Metrics;
            let items = m
                .resource_metrics
                .iter()
                .map(|rm| resource_metrics(b, rm))
                .collect::<Result<Vec<_>, _>>()?;
            a.metrics = Some(b.create_vector(&items));
        }
    }
    let root = w::Batch::create(b, &a);
    w::finish_batch_buffer(b, root);
    Ok(())
}
