//! Content hashes of log records and metric data points.
//!
//! A record's identity is everything that makes it the same event: for a log record its body,
//! severity, attributes, trace context and event name, plus its resource and scope; timestamps are
//! left out by default (the same line logged again within the window is a duplicate — that is what
//! deduplication of log floods means). A metric point's identity includes its timestamps (two
//! samples of the same series at different times are different data) and value.

use srediag_plugin_sdk::data::{common, logs, metrics};
use std::hash::{Hash, Hasher};

/// A 64-bit hasher with fixed keys (stable across restarts of the plugin, so the window could be
/// persisted; collisions are as unlikely as with SipHash, which it is).
pub fn hasher() -> std::hash::DefaultHasher {
    std::hash::DefaultHasher::new()
}

pub fn any_value(h: &mut impl Hasher, v: Option<&common::AnyValue>) {
    use common::any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => 0u8.hash(h),
        Some(V::StringValue(s)) => (1u8, s).hash(h),
        Some(V::BoolValue(b)) => (2u8, b).hash(h),
        Some(V::IntValue(i)) => (3u8, i).hash(h),
        Some(V::DoubleValue(d)) => (4u8, d.to_bits()).hash(h),
        Some(V::BytesValue(b)) => (5u8, b).hash(h),
        Some(V::ArrayValue(a)) => {
            (6u8, a.values.len()).hash(h);
            for x in &a.values {
                any_value(h, Some(x));
            }
        }
        Some(V::KvlistValue(kv)) => {
            7u8.hash(h);
            attributes(h, &kv.values);
        }
    }
}

/// Attributes hashed as a set (order-independent: `a=1,b=2` equals `b=2,a=1`).
pub fn attributes(h: &mut impl Hasher, kvs: &[common::KeyValue]) {
    let mut acc = 0u64;
    for kv in kvs {
        let mut e = hasher();
        kv.key.hash(&mut e);
        any_value(&mut e, kv.value.as_ref());
        acc = acc.wrapping_add(e.finish());
    }
    (kvs.len(), acc).hash(h);
}

pub fn log_record(base: u64, r: &logs::LogRecord, with_time: bool) -> u64 {
    let mut h = hasher();
    base.hash(&mut h);
    any_value(&mut h, r.body.as_ref());
    (r.severity_number, &r.severity_text, &r.event_name).hash(&mut h);
    attributes(&mut h, &r.attributes);
    (&r.trace_id, &r.span_id, r.flags).hash(&mut h);
    if with_time {
        (r.time_unix_nano, r.observed_time_unix_nano).hash(&mut h);
    }
    h.finish()
}

/// Hash of what a record inherits: resource and scope.
pub fn context(
    resource: &Option<srediag_plugin_sdk::data::resource::Resource>,
    scope: &Option<common::InstrumentationScope>,
) -> u64 {
    let mut h = hasher();
    if let Some(r) = resource {
        attributes(&mut h, &r.attributes);
    }
    if let Some(s) = scope {
        (&s.name, &s.version).hash(&mut h);
        attributes(&mut h, &s.attributes);
    }
    h.finish()
}

/// Hash of one data point (index `i`) of a metric, or `None` when the metric has no point `i`.
pub fn metric_point(base: u64, m: &metrics::Metric, i: usize) -> Option<u64> {
    use metrics::metric::Data;
    let mut h = hasher();
    (base, &m.name, &m.unit).hash(&mut h);
    let number = |h: &mut std::hash::DefaultHasher, p: &metrics::NumberDataPoint| {
        attributes(h, &p.attributes);
        (p.start_time_unix_nano, p.time_unix_nano, p.flags).hash(h);
        match p.value {
            Some(metrics::number_data_point::Value::AsInt(v)) => (1u8, v).hash(h),
            Some(metrics::number_data_point::Value::AsDouble(v)) => (2u8, v.to_bits()).hash(h),
            None => 0u8.hash(h),
        }
    };
    match &m.data {
        Some(Data::Gauge(g)) => number(&mut h, g.data_points.get(i)?),
        Some(Data::Sum(s)) => {
            (s.aggregation_temporality, s.is_monotonic).hash(&mut h);
            number(&mut h, s.data_points.get(i)?)
        }
        Some(Data::Histogram(x)) => {
            let p = x.data_points.get(i)?;
            attributes(&mut h, &p.attributes);
            (
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.count,
                &p.bucket_counts,
            )
                .hash(&mut h);
            p.sum.map(f64::to_bits).hash(&mut h);
            p.explicit_bounds
                .iter()
                .map(|b| b.to_bits())
                .for_each(|b| b.hash(&mut h));
        }
        Some(Data::ExponentialHistogram(x)) => {
            let p = x.data_points.get(i)?;
            attributes(&mut h, &p.attributes);
            (
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.count,
                p.scale,
                p.zero_count,
            )
                .hash(&mut h);
            p.positive
                .as_ref()
                .map(|b| (b.offset, &b.bucket_counts))
                .hash(&mut h);
            p.negative
                .as_ref()
                .map(|b| (b.offset, &b.bucket_counts))
                .hash(&mut h);
        }
        Some(Data::Summary(x)) => {
            let p = x.data_points.get(i)?;
            attributes(&mut h, &p.attributes);
            (
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.count,
                p.sum.to_bits(),
            )
                .hash(&mut h);
        }
        None => return None,
    }
    Some(h.finish())
}

// The same hashes computed on borrowed views of a frame (the plugin's fast path): every function
// below feeds the hasher exactly what its owned counterpart above feeds it, so a record has one
// identity whichever way it arrives (checked by `view_hashes_equal_owned_hashes`).

use srediag_plugin_sdk::wire::view::{KeyValueView, LogRecordView, ValueView};

pub fn any_value_view(h: &mut impl Hasher, v: Option<ValueView<'_>>) {
    match v {
        None | Some(ValueView::Empty) => 0u8.hash(h),
        Some(ValueView::String(s)) => (1u8, s).hash(h),
        Some(ValueView::Bool(b)) => (2u8, b).hash(h),
        Some(ValueView::Int(i)) => (3u8, i).hash(h),
        Some(ValueView::Double(d)) => (4u8, d.to_bits()).hash(h),
        Some(ValueView::Bytes(b)) => (5u8, b).hash(h),
        Some(ValueView::Array(a)) => {
            (6u8, a.len()).hash(h);
            for x in a.iter() {
                any_value_view(h, Some(x));
            }
        }
        Some(ValueView::KvList(kv)) => {
            7u8.hash(h);
            attributes_view(h, kv.len(), kv.iter());
        }
    }
}

pub fn attributes_view<'a>(
    h: &mut impl Hasher,
    len: usize,
    kvs: impl Iterator<Item = KeyValueView<'a>>,
) {
    let mut acc = 0u64;
    for kv in kvs {
        let mut e = hasher();
        kv.key().hash(&mut e);
        any_value_view(&mut e, kv.value());
        acc = acc.wrapping_add(e.finish());
    }
    (len, acc).hash(h);
}

pub fn log_record_view(base: u64, r: &LogRecordView<'_>, with_time: bool) -> u64 {
    let mut h = hasher();
    base.hash(&mut h);
    any_value_view(&mut h, r.body());
    (r.severity_number(), r.severity_text(), r.event_name()).hash(&mut h);
    attributes_view(&mut h, r.attributes_len(), r.attributes());
    (r.trace_id(), r.span_id(), r.flags()).hash(&mut h);
    if with_time {
        (r.time_unix_nano(), r.observed_time_unix_nano()).hash(&mut h);
    }
    h.finish()
}

/// [`context`] on views: resource attributes and scope (name, version, attributes).
pub fn context_view<'a>(
    resource: Option<Vec<KeyValueView<'a>>>,
    scope: Option<(&'a str, &'a str, Vec<KeyValueView<'a>>)>,
) -> u64 {
    let mut h = hasher();
    if let Some(r) = resource {
        attributes_view(&mut h, r.len(), r.into_iter());
    }
    if let Some((name, version, attrs)) = scope {
        (name, version).hash(&mut h);
        attributes_view(&mut h, attrs.len(), attrs.into_iter());
    }
    h.finish()
}
