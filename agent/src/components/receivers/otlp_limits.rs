//! What one OTLP client can make the agent hold, beyond one request's encoded size.
//!
//! * [`Connections`]: at most `max_connections` connections are served at once; a connection
//!   over the limit is closed as soon as it is accepted (and counted).
//! * [`BodyBudget`]: the bytes of request bodies being read, across all connections, are
//!   charged to one budget (`max_inflight_body_bytes`) as they arrive; a request that would go
//!   over it is answered 503 with `Retry-After` and its connection closed, so N slow clients
//!   cannot each hold `max_request_body_size`.
//! * [`decoded_estimate`]: before a body is decoded, a walk over its wire format (protobuf) or
//!   its structure characters (JSON) estimates the memory the decoded request would take; over
//!   `max_decoded_size` the request is refused with 413. An empty protobuf log record is two
//!   bytes on the wire and a few hundred in memory: without this, one 20 MiB request costs
//!   gigabytes.

use crate::model::Signal;
use opentelemetry_proto::tonic::{
    common::v1 as common, logs::v1 as logs, metrics::v1 as metrics, resource::v1 as resource,
};
use std::mem::size_of;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The connections being served; one permit each.
#[derive(Clone)]
pub struct Connections(Arc<Semaphore>);

impl Connections {
    /// Up to `max` connections at once.
    pub fn new(max: usize) -> Self {
        Connections(Arc::new(Semaphore::new(max)))
    }

    /// A permit for one more connection, held until it closes; `None` when at the limit.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// Body bytes being read across every connection, in bytes (one semaphore permit per byte;
/// tokio's semaphore holds up to `usize::MAX >> 3` permits).
#[derive(Clone)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
    total: usize,
}

/// A request's share of the [`BodyBudget`], returned when dropped.
pub struct Held(Option<OwnedSemaphorePermit>);

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            sem: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// An empty share.
    pub fn hold(&self) -> Held {
        Held(None)
    }

    /// Adds `n` bytes to `held`; false when the budget cannot give them now (nothing is taken).
    pub fn charge(&self, held: &mut Held, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        match self.sem.clone().try_acquire_many_owned(n32) {
            Ok(p) => {
                match &mut held.0 {
                    Some(h) => h.merge(p),
                    None => held.0 = Some(p),
                }
                true
            }
            Err(TryAcquireError::NoPermits) | Err(TryAcquireError::Closed) => false,
        }
    }
}

impl Held {
    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }
}

// ---- the decoded size of a protobuf request ------------------------------------------------

/// The OTLP message types whose instances the decoder allocates. Fields of other types
/// (numbers, strings, bytes) are accounted by their encoded length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    Resource,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Msg {
    /// The message type of field `field` of `self`, when it is a message.
    fn child(self, field: u64) -> Option<Msg> {
        use Msg::*;
        Some(match (self, field) {
            (LogsRequest, 1) => ResourceLogs,
            (ResourceLogs, 1) => Resource,
            (ResourceLogs, 2) => ScopeLogs,
            (ScopeLogs, 1) => Scope,
            (ScopeLogs, 2) => LogRecord,
            (LogRecord, 5) => AnyValue,
            (LogRecord, 6) => KeyValue,
            (MetricsRequest, 1) => ResourceMetrics,
            (ResourceMetrics, 1) => Resource,
            (ResourceMetrics, 2) => ScopeMetrics,
            (ScopeMetrics, 1) => Scope,
            (ScopeMetrics, 2) => Metric,
            (Metric, 5) => Gauge,
            (Metric, 7) => Sum,
            (Metric, 9) => Histogram,
            (Metric, 10) => ExpHistogram,
            (Metric, 11) => Summary,
            (Metric, 12) => KeyValue,
            (Gauge | Sum, 1) => NumberPoint,
            (Histogram, 1) => HistogramPoint,
            (ExpHistogram, 1) => ExpHistogramPoint,
            (Summary, 1) => SummaryPoint,
            (NumberPoint, 7) => KeyValue,
            (NumberPoint, 5) => Exemplar,
            (HistogramPoint, 9) => KeyValue,
            (HistogramPoint, 8) => Exemplar,
            (ExpHistogramPoint, 1) => KeyValue,
            (ExpHistogramPoint, 8 | 9) => Buckets,
            (ExpHistogramPoint, 11) => Exemplar,
            (SummaryPoint, 7) => KeyValue,
            (SummaryPoint, 6) => Quantile,
            (Exemplar, 7) => KeyValue,
            (Resource, 1) => KeyValue,
            (Scope, 3) => KeyValue,
            (KeyValue, 2) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            (ArrayValue, 1) => AnyValue,
            (KeyValueList, 1) => KeyValue,
            _ => return None,
        })
    }

    /// Bytes one decoded instance takes (its struct; its strings and vectors are counted by
    /// their contents).
    fn size(self) -> usize {
        use Msg::*;
        match self {
            LogsRequest | MetricsRequest => 24,
            ResourceLogs => size_of::<logs::ResourceLogs>(),
            ScopeLogs => size_of::<logs::ScopeLogs>(),
            LogRecord => size_of::<logs::LogRecord>(),
            ResourceMetrics => size_of::<metrics::ResourceMetrics>(),
            ScopeMetrics => size_of::<metrics::ScopeMetrics>(),
            Metric => size_of::<metrics::Metric>(),
            Gauge => size_of::<metrics::Gauge>(),
            Sum => size_of::<metrics::Sum>(),
            Histogram => size_of::<metrics::Histogram>(),
            ExpHistogram => size_of::<metrics::ExponentialHistogram>(),
            Summary => size_of::<metrics::Summary>(),
            NumberPoint => size_of::<metrics::NumberDataPoint>(),
            HistogramPoint => size_of::<metrics::HistogramDataPoint>(),
            ExpHistogramPoint => size_of::<metrics::ExponentialHistogramDataPoint>(),
            Buckets => size_of::<metrics::exponential_histogram_data_point::Buckets>(),
            SummaryPoint => size_of::<metrics::SummaryDataPoint>(),
            Quantile => size_of::<metrics::summary_data_point::ValueAtQuantile>(),
            Exemplar => size_of::<metrics::Exemplar>(),
            Resource => size_of::<resource::Resource>(),
            Scope => size_of::<common::InstrumentationScope>(),
            KeyValue => size_of::<common::KeyValue>(),
            AnyValue => size_of::<common::AnyValue>(),
            ArrayValue => size_of::<common::ArrayValue>(),
            KeyValueList => size_of::<common::KeyValueList>(),
        }
    }

    /// How many decoded bytes one encoded byte of a packed scalar field becomes: a packed
    /// varint (`Buckets.bucket_counts`) may be 1 byte on the wire and 8 in memory.
    fn packed_factor(self, field: u64) -> usize {
        match (self, field) {
            (Msg::Buckets, 2) => 8,
            _ => 1,
        }
    }
}

/// The estimated memory of the decoded request, or `None` when the wire format is broken (the
/// decoder then reports the error). Stops counting once over `limit`.
pub fn decoded_estimate(signal: Signal, json: bool, bytes: &[u8], limit: usize) -> Option<usize> {
    if json {
        return Some(json_estimate(bytes));
    }
    let root = match signal {
        Signal::Logs => Msg::LogsRequest,
        Signal::Metrics => Msg::MetricsRequest,
    };
    let mut total = root.size();
    walk(root, bytes, &mut total, limit, 0).then_some(total)
}

/// Protobuf nesting deeper than this is refused by prost (its recursion limit is 100).
const MAX_DEPTH: usize = 100;

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Adds the decoded size of the message `t` encoded in `b` to `total`; false on a broken wire
/// format. Returns early (true) once `total > limit`.
fn walk(t: Msg, b: &[u8], total: &mut usize, limit: usize, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let mut at = 0;
    while at < b.len() {
        if *total > limit {
            return true;
        }
        let Some(key) = varint(b, &mut at) else {
            return false;
        };
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                if varint(b, &mut at).is_none() {
                    return false;
                }
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let Some(len) = varint(b, &mut at) else {
                    return false;
                };
                let Some(end) = usize::try_from(len).ok().and_then(|l| at.checked_add(l)) else {
                    return false;
                };
                let Some(inner) = b.get(at..end) else {
                    return false;
                };
                match t.child(field) {
                    Some(c) => {
                        *total = total.saturating_add(c.size());
                        if !walk(c, inner, total, limit, depth + 1) {
                            return false;
                        }
                    }
                    None => {
                        *total = total.saturating_add(inner.len() * t.packed_factor(field));
                    }
                }
                at = end;
            }
            _ => return false,
        }
    }
    at == b.len()
}

// ---- the decoded size of a JSON request ------------------------------------------------------

/// The JSON decoder builds a `serde_json::Value` tree and then the OTLP structs: each object or
/// array (outside strings) is charged one `Value` with its map or vector and the largest OTLP
/// struct; other bytes are charged once more (strings are copied).
fn json_estimate(bytes: &[u8]) -> usize {
    let per_container = size_of::<serde_json::Value>() + 48 + largest_struct();
    let (mut in_string, mut escaped, mut containers) = (false, false, 0usize);
    for &c in bytes {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => containers += 1,
                _ => {}
            }
        }
    }
    containers
        .saturating_mul(per_container)
        .saturating_add(bytes.len())
}

fn largest_struct() -> usize {
    use Msg::*;
    [
        LogRecord,
        Metric,
        NumberPoint,
        HistogramPoint,
        ExpHistogramPoint,
        SummaryPoint,
        Exemplar,
    ]
    .iter()
    .map(|m| m.size())
    .max()
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{AnyValue, KeyValue};
    use logs::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    #[test]
    fn empty_records_are_charged_their_decoded_size() {
        // ResourceLogs { ScopeLogs { log_records: [{}; n] } }.
        let n = 1000;
        let req = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        let est = decoded_estimate(Signal::Logs, false, &bytes, usize::MAX).unwrap();
        assert!(est >= n * size_of::<logs::LogRecord>(), "{est}");
        assert!(est > 50 * bytes.len(), "{est} for {} bytes", bytes.len());
    }

    #[test]
    fn ordinary_records_estimate_near_their_size() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let rec = LogRecord {
            time_unix_nano: 1,
            body: Some(AnyValue {
                value: Some(Value::StringValue("x".repeat(200))),
            }),
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue("checkout".into())),
                }),
            }],
            ..Default::default()
        };
        let req = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![rec; 1000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        let est = decoded_estimate(Signal::Logs, false, &bytes, usize::MAX).unwrap();
        let ratio = est as f64 / bytes.len() as f64;
        assert!((1.0..6.0).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn broken_wire_formats_are_left_to_the_decoder() {
        assert_eq!(
            decoded_estimate(Signal::Logs, false, &[0x0a, 0x05, 0x00], usize::MAX),
            None
        );
        assert_eq!(
            decoded_estimate(Signal::Metrics, false, &[0xff; 11], usize::MAX),
            None
        );
    }

    #[test]
    fn the_walk_stops_past_the_limit() {
        let body: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 100_000)
            .flatten()
            .collect();
        let est = decoded_estimate(Signal::Logs, false, &body, 10_000).unwrap();
        assert!(est > 10_000 && est < 20_000, "{est}");
    }

    #[test]
    fn json_counts_containers_outside_strings() {
        let plain = br#"{"a":"{{{{[[[["}"#;
        let one = json_estimate(plain);
        let many = json_estimate(br#"{"a":[{},{},{},{}]}"#);
        assert!(one < 2 * largest_struct() + 200, "{one}");
        assert!(many >= 6 * largest_struct(), "{many}");
        let escaped = json_estimate(br#"{"a":"\"{{{{"}"#);
        assert!(escaped < 2 * largest_struct() + 200, "{escaped}");
    }

    #[test]
    fn the_body_budget_is_shared_and_returned() {
        let b = BodyBudget::new(100);
        let mut h1 = b.hold();
        let mut h2 = b.hold();
        assert!(b.charge(&mut h1, 60));
        assert!(!b.charge(&mut h2, 50));
        assert!(b.charge(&mut h2, 40));
        assert_eq!(h1.bytes() + h2.bytes(), 100);
        drop(h1);
        assert!(b.charge(&mut h2, 60));
        let c = Connections::new(1);
        let p = c.admit();
        assert!(p.is_some() && c.admit().is_none());
        drop(p);
        assert!(c.admit().is_some());
    }
}
