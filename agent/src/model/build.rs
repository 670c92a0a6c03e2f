//! Small builders for the OTLP types, used by receivers that create telemetry themselves.

use super::common::{AnyValue, KeyValue, any_value::Value};
use super::metrics::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric::Data, number_data_point,
};
use super::resource_v1::Resource;

/// A string attribute.
pub fn attr_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
    }
}

/// An integer attribute.
pub fn attr_i64(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
    }
}

/// A floating point attribute.
pub fn attr_f64(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::DoubleValue(value)),
        }),
    }
}

/// A resource with the given attributes.
pub fn resource(attributes: Vec<KeyValue>) -> Resource {
    Resource {
        attributes,
        ..Default::default()
    }
}

fn point(
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    }
}

fn metric(name: &str, description: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.to_string(),
        description: description.to_string(),
        unit: unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

/// A gauge metric of floating point points `(attributes, value)` observed at `time`.
pub fn gauge_f64(
    name: &str,
    description: &str,
    unit: &str,
    time: u64,
    points: Vec<(Vec<KeyValue>, f64)>,
) -> Metric {
    let data_points = points
        .into_iter()
        .map(|(a, v)| point(a, 0, time, number_data_point::Value::AsDouble(v)))
        .collect();
    metric(name, description, unit, Data::Gauge(Gauge { data_points }))
}

/// A gauge metric of integer points.
pub fn gauge_i64(
    name: &str,
    description: &str,
    unit: &str,
    time: u64,
    points: Vec<(Vec<KeyValue>, i64)>,
) -> Metric {
    let data_points = points
        .into_iter()
        .map(|(a, v)| point(a, 0, time, number_data_point::Value::AsInt(v)))
        .collect();
    metric(name, description, unit, Data::Gauge(Gauge { data_points }))
}

fn sum(
    name: &str,
    description: &str,
    unit: &str,
    monotonic: bool,
    pts: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        description,
        unit,
        Data::Sum(Sum {
            data_points: pts,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        }),
    )
}

/// A cumulative sum of floating point points, counted since `start`.
pub fn sum_f64(
    name: &str,
    description: &str,
    unit: &str,
    monotonic: bool,
    start: u64,
    time: u64,
    points: Vec<(Vec<KeyValue>, f64)>,
) -> Metric {
    let pts = points
        .into_iter()
        .map(|(a, v)| point(a, start, time, number_data_point::Value::AsDouble(v)))
        .collect();
    sum(name, description, unit, monotonic, pts)
}

/// A cumulative sum of integer points, counted since `start`.
pub fn sum_i64(
    name: &str,
    description: &str,
    unit: &str,
    monotonic: bool,
    start: u64,
    time: u64,
    points: Vec<(Vec<KeyValue>, i64)>,
) -> Metric {
    let pts = points
        .into_iter()
        .map(|(a, v)| point(a, start, time, number_data_point::Value::AsInt(v)))
        .collect();
    sum(name, description, unit, monotonic, pts)
}
