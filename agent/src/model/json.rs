//! OTLP/JSON encoding (the OTLP specification's JSON mapping of the protobuf messages).
//!
//! opentelemetry-proto's serde support writes `intValue` and the `*UnixNano` timestamps as strings
//! but other 64-bit integers (`asInt`, `count`, `bucketCounts`, `zeroCount`) as JSON numbers,
//! which the proto3 JSON mapping forbids (readers may lose precision above 2^53). This module
//! normalises both directions: output uses strings for every 64-bit integer; input accepts
//! numbers or strings for each of them, as the mapping requires of parsers.

use super::{Batch, Logs, Metrics};
use serde_json::Value;

/// 64-bit integer fields the crate writes as numbers but OTLP/JSON wants as strings.
const NUMBER_FIELDS: &[&str] = &["asInt", "count", "bucketCounts", "zeroCount"];

/// 64-bit integer fields the crate reads and writes as strings.
fn string_field(key: &str) -> bool {
    key == "intValue" || key.ends_with("UnixNano")
}

fn walk(v: &mut Value, f: &dyn Fn(&str, &mut Value)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                f(k, child);
                walk(child, f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, f)),
        _ => {}
    }
}

fn each_scalar(v: &mut Value, g: &dyn Fn(&mut Value)) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(g),
        other => g(other),
    }
}

/// Encodes a batch as one OTLP/JSON object.
pub fn to_json(batch: &Batch) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = match batch {
        Batch::Logs(l) => serde_json::to_value(l)?,
        Batch::Metrics(m) => serde_json::to_value(m)?,
    };
    walk(&mut v, &|k, child| {
        if NUMBER_FIELDS.contains(&k) {
            each_scalar(child, &|s| {
                if let Value::Number(n) = s {
                    *s = Value::String(n.to_string());
                }
            });
        }
    });
    serde_json::to_vec(&v)
}

fn normalise_input(v: &mut Value) {
    walk(v, &|k, child| {
        if NUMBER_FIELDS.contains(&k) {
            each_scalar(child, &|s| {
                if let Value::String(t) = s {
                    if let Ok(n) = t.parse::<i64>() {
                        *s = Value::from(n);
                    } else if let Ok(n) = t.parse::<u64>() {
                        *s = Value::from(n);
                    }
                }
            });
        } else if string_field(k)
            && let Value::Number(n) = child
        {
            *child = Value::String(n.to_string());
        }
    });
}

/// Decodes an OTLP/JSON logs request.
pub fn logs_from_json(bytes: &[u8]) -> Result<Logs, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    normalise_input(&mut v);
    serde_json::from_value(v)
}

/// Decodes an OTLP/JSON metrics request.
pub fn metrics_from_json(bytes: &[u8]) -> Result<Metrics, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    normalise_input(&mut v);
    serde_json::from_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{gauge_i64, metrics::*};

    #[test]
    fn writes_every_64_bit_integer_as_a_string_and_reads_both_forms() {
        let h = Metric {
            name: "h".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![1.0],
                    time_unix_nano: 17,
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        let m = Metrics {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        gauge_i64("g", "", "1", 5, vec![(vec![], 9_007_199_254_740_993)]),
                        h,
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = to_json(&Batch::Metrics(m.clone())).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let ms = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
        assert_eq!(ms[0]["gauge"]["dataPoints"][0]["asInt"], "9007199254740993");
        assert_eq!(ms[1]["histogram"]["dataPoints"][0]["count"], "3");
        assert_eq!(
            ms[1]["histogram"]["dataPoints"][0]["bucketCounts"],
            serde_json::json!(["1", "2"])
        );
        assert_eq!(metrics_from_json(&bytes).unwrap(), m);
        // Numbers are accepted too, for every 64-bit field.
        let numeric = String::from_utf8(bytes)
            .unwrap()
            .replace("\"9007199254740993\"", "9007199254740993")
            .replace("\"timeUnixNano\":\"17\"", "\"timeUnixNano\":17");
        assert_eq!(metrics_from_json(numeric.as_bytes()).unwrap(), m);
    }
}
