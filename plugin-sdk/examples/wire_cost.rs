//! Per-record cost of the wire encoding: encode, verify+decode and clone of a 1024-record batch
//! of log records (the numbers behind the plugin-tax benchmark). `cargo run --release -p
//! srediag-plugin-sdk --example wire_cost`.

use srediag_plugin_sdk::data::{Logs, Records, common, logs};
use srediag_plugin_sdk::wire::{self, Encoder};
use std::time::Instant;

fn main() {
    let n = 1024;
    let log_records = (0..n)
        .map(|k| logs::LogRecord {
            time_unix_nano: k,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(common::AnyValue {
                value: Some(common::any_value::Value::StringValue(format!(
                    "GET /api/v1/items/{k} 200 {} bytes in {} ms",
                    k * 7 % 9000,
                    k % 97
                ))),
            }),
            attributes: vec![common::KeyValue {
                key: "http.route".into(),
                value: Some(common::AnyValue {
                    value: Some(common::any_value::Value::StringValue(
                        "/api/v1/items/{id}".into(),
                    )),
                }),
            }],
            ..Default::default()
        })
        .collect();
    let r = Records::Logs(Logs {
        resource_logs: vec![logs::ResourceLogs {
            scope_logs: vec![logs::ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    let rounds = 300;
    let mut e = Encoder::new();
    let t = Instant::now();
    let mut len = 0;
    for i in 0..rounds {
        len = e.encode(i, &r).unwrap().len();
    }
    let enc = t.elapsed().as_nanos() as f64 / (rounds * n) as f64;
    let bytes = e.encode(1, &r).unwrap().to_vec();
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(wire::decode(&bytes).unwrap());
    }
    let dec = t.elapsed().as_nanos() as f64 / (rounds * n) as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(r.clone());
    }
    let clone = t.elapsed().as_nanos() as f64 / (rounds * n) as f64;
    println!(
        "{n} records, {len} bytes encoded: encode {enc:.0} ns/record, verify+decode {dec:.0} ns/record, clone {clone:.0} ns/record"
    );
}
