//! The fuzz target `wire_frame`'s entry point (`wire::fuzz_one`) over deterministic mutations of
//! real encoded batches, run as a plain test so CI exercises the frame decoder on stable without
//! libFuzzer: bit flips, truncations, overwritten offsets and lengths, spliced tables. A panic
//! fails the test; each input must also finish quickly (no decoding blow-up).

use srediag_plugin_sdk::data::{Logs, Metrics, Records, common, logs, metrics};
use srediag_plugin_sdk::wire::{self, Encoder};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn s(v: &str) -> Option<common::AnyValue> {
    Some(common::AnyValue {
        value: Some(common::any_value::Value::StringValue(v.into())),
    })
}

fn seeds() -> Vec<Vec<u8>> {
    let attrs = vec![common::KeyValue {
        key: "k".into(),
        value: Some(common::AnyValue {
            value: Some(common::any_value::Value::ArrayValue(common::ArrayValue {
                values: vec![s("a").unwrap(), s("b").unwrap()],
            })),
        }),
    }];
    let l = Logs {
        resource_logs: vec![logs::ResourceLogs {
            scope_logs: vec![logs::ScopeLogs {
                log_records: (0..5)
                    .map(|i| logs::LogRecord {
                        body: s(&format!("line {i}")),
                        attributes: attrs.clone(),
                        trace_id: vec![1; 16],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let m = Metrics {
        resource_metrics: vec![metrics::ResourceMetrics {
            scope_metrics: vec![metrics::ScopeMetrics {
                metrics: vec![metrics::Metric {
                    name: "m".into(),
                    data: Some(metrics::metric::Data::Histogram(metrics::Histogram {
                        data_points: vec![metrics::HistogramDataPoint {
                            attributes: attrs,
                            bucket_counts: vec![1, 2, 3],
                            explicit_bounds: vec![1.0, 2.0],
                            sum: Some(3.0),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut e = Encoder::new();
    vec![
        e.encode(1, &Records::Logs(l)).unwrap().to_vec(),
        e.encode(2, &Records::Metrics(m)).unwrap().to_vec(),
    ]
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if v.len() >= 4 => {
                // An offset, length or vtable entry replaced by a random or extreme value.
                let i = rng.below(v.len() - 3) & !3;
                let x = match rng.below(4) {
                    0 => u32::MAX,
                    1 => 0x7fff_ffff,
                    2 => rng.below(v.len()) as u32,
                    _ => rng.next() as u32,
                };
                v[i..i + 4].copy_from_slice(&x.to_le_bytes());
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                let n = rng.below(other.len() - from + 1);
                v.splice(at..at, other[from..from + n].iter().copied());
            }
            4 if v.len() >= 2 => {
                let i = rng.below(v.len() - 1) & !1;
                v[i..i + 2].copy_from_slice(&(rng.next() as u16).to_le_bytes());
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

#[test]
fn frame_decoder_survives_mutated_frames() {
    let seeds = seeds();
    for s in &seeds {
        assert!(wire::decode(s).is_ok(), "seeds decode");
    }
    let mut rng = Rng(0x5eed_f00d);
    let (mut ok, mut rejected) = (0u32, 0u32);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..60_000 {
        let input = mutate(&mut rng, &seeds);
        let t = Instant::now();
        match wire::decode(&input) {
            Ok(_) => ok += 1,
            Err(_) => rejected += 1,
        }
        wire::fuzz_one(&input);
        slowest = slowest.max(t.elapsed());
    }
    eprintln!(
        "wire fuzz: {ok} decoded, {rejected} rejected, slowest {slowest:?}, total {:?}",
        started.elapsed()
    );
    assert!(
        rejected > 1000 && ok > 100,
        "mutations too weak or too strong: {ok}/{rejected}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "an input took {slowest:?}"
    );
}
