//! The dedup window: content hashes seen recently, bounded in time and in memory.

use crate::hash;
use serde::{Deserialize, Serialize};
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::wire::view::LogsView;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `plugins.<name>.config` of this plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A record whose hash was seen less than this long ago is a duplicate. Default 10 s.
    pub window_seconds: f64,
    /// Memory budget: most hashes remembered (about 48 bytes each). Beyond it the oldest are
    /// forgotten early (counted as evictions). Default 100000 (~5 MB).
    pub max_entries: usize,
    /// Include log timestamps in a log record's identity. Default false: the same line logged
    /// again within the window is a duplicate. Metric points always include their timestamps.
    pub log_timestamps: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_seconds: 10.0,
            max_entries: 100_000,
            log_timestamps: false,
        }
    }
}

/// Counters, served by `diag/dedup-stats`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    /// Log records and metric points seen.
    pub records_seen: u64,
    /// Of those, dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Hashes in the window now.
    pub entries: u64,
    /// Hashes forgotten early because of `max_entries`.
    pub evictions: u64,
}

/// The window.
pub struct Dedup {
    window: Duration,
    max_entries: usize,
    log_timestamps: bool,
    seen: HashMap<u64, Instant>,
    order: VecDeque<(Instant, u64)>,
    stats: Arc<Mutex<Stats>>,
    local: Stats,
}

impl Dedup {
    pub fn new(s: Settings, stats: Arc<Mutex<Stats>>) -> Dedup {
        Dedup {
            window: Duration::from_secs_f64(s.window_seconds.clamp(0.0, 86_400.0)),
            max_entries: s.max_entries.max(1),
            log_timestamps: s.log_timestamps,
            seen: HashMap::new(),
            order: VecDeque::new(),
            stats,
            local: Stats::default(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, h)) = self.order.front() {
            if now.duration_since(t) <= self.window && self.seen.len() <= self.max_entries {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&h) == Some(&t) {
                self.seen.remove(&h);
                if now.duration_since(t) <= self.window {
                    self.local.evictions += 1;
                }
            }
        }
    }

    /// True when `h` is new (and remembers it); false for a duplicate within the window.
    fn admit(&mut self, h: u64, now: Instant) -> bool {
        self.local.records_seen += 1;
        if let Some(t) = self.seen.get(&h)
            && now.duration_since(*t) <= self.window
        {
            self.local.duplicates_dropped += 1;
            return false;
        }
        self.seen.insert(h, now);
        self.order.push_back((now, h));
        self.expire(now);
        true
    }

    /// One flag per item of `records` (log records, or metric points, in order): true = new,
    /// false = duplicate within the window.
    pub fn verdicts(&mut self, records: &Records) -> Vec<bool> {
        let now = Instant::now();
        self.expire(now);
        let mut out = Vec::with_capacity(records.items() as usize);
        match records {
            Records::Logs(l) => {
                for rl in &l.resource_logs {
                    for sl in &rl.scope_logs {
                        let base = hash::context(&rl.resource, &sl.scope);
                        for r in &sl.log_records {
                            let h = hash::log_record(base, r, self.log_timestamps);
                            out.push(self.admit(h, now));
                        }
                    }
                }
            }
            Records::Metrics(m) => {
                for rm in &m.resource_metrics {
                    for sm in &rm.scope_metrics {
                        let base = hash::context(&rm.resource, &sm.scope);
                        for metric in &sm.metrics {
                            for i in 0..srediag_plugin_sdk::data::metric_points(metric) {
                                let keep = hash::metric_point(base, metric, i)
                                    .is_none_or(|h| self.admit(h, now));
                                out.push(keep);
                            }
                        }
                    }
                }
            }
        }
        self.local.entries = self.seen.len() as u64;
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.local;
        out
    }

    /// [`Dedup::verdicts`] on a borrowed view of a log batch (the plugin's path: no decoding).
    pub fn verdicts_logs_view(&mut self, logs: &LogsView<'_>) -> Vec<bool> {
        let now = Instant::now();
        self.expire(now);
        let mut out = Vec::with_capacity(logs.items() as usize);
        for rl in logs.resource_logs() {
            let resource: Option<Vec<_>> = rl.resource_attributes().map(|a| a.collect());
            for sl in rl.scope_logs() {
                let scope = sl.scope().map(|(n, v, a)| (n, v, a.collect()));
                let base = hash::context_view(resource.clone(), scope);
                for r in sl.log_records() {
                    let h = hash::log_record_view(base, &r, self.log_timestamps);
                    out.push(self.admit(h, now));
                }
            }
        }
        self.local.entries = self.seen.len() as u64;
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.local;
        out
    }

    /// Drops duplicates from `records`; containers left empty are removed.
    pub fn filter(&mut self, records: Records) -> Records {
        let flags = self.verdicts(&records);
        let empty = records.empty_like();
        records.retain_items(&flags).unwrap_or(empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use srediag_plugin_sdk::data::{Logs, common, logs};

    fn log(body: &str, t: u64) -> logs::LogRecord {
        logs::LogRecord {
            time_unix_nano: t,
            body: Some(common::AnyValue {
                value: Some(common::any_value::Value::StringValue(body.into())),
            }),
            ..Default::default()
        }
    }

    fn batch(records: Vec<logs::LogRecord>) -> Records {
        Records::Logs(Logs {
            resource_logs: vec![logs::ResourceLogs {
                scope_logs: vec![logs::ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn bodies(r: &Records) -> Vec<String> {
        let Records::Logs(l) = r else { panic!() };
        l.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|r| format!("{:?}", r.body.as_ref().unwrap().value.as_ref().unwrap()))
            .collect()
    }

    #[test]
    fn drops_repeats_within_the_window_and_keeps_everything_else_in_order() {
        let stats = Arc::default();
        let mut d = Dedup::new(Settings::default(), stats);
        let out = d.filter(batch(vec![
            log("a", 1),
            log("b", 2),
            log("a", 3),
            log("c", 4),
        ]));
        assert_eq!(bodies(&out).len(), 3);
        assert!(bodies(&out)[2].contains("\"c\""));
        let out = d.filter(batch(vec![log("b", 9), log("d", 9)]));
        assert_eq!(bodies(&out).len(), 1);
        assert_eq!(d.local.duplicates_dropped, 2);
        assert_eq!(d.local.records_seen, 6);
        // Everything dropped: the containers go too.
        let Records::Logs(l) = d.filter(batch(vec![log("a", 10)])) else {
            panic!()
        };
        assert!(l.resource_logs.is_empty());
    }

    #[test]
    fn window_expiry_and_memory_budget() {
        let s = Settings {
            window_seconds: 0.05,
            max_entries: 3,
            log_timestamps: false,
        };
        let mut d = Dedup::new(s, Arc::default());
        d.filter(batch(vec![log("a", 1)]));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            bodies(&d.filter(batch(vec![log("a", 2)]))).len(),
            1,
            "expired"
        );
        let out = d.filter(batch((0..10).map(|i| log(&i.to_string(), 0)).collect()));
        assert_eq!(bodies(&out).len(), 10);
        assert!(d.seen.len() <= 3, "{}", d.seen.len());
        assert!(d.local.evictions >= 7);
    }

    #[test]
    fn view_hashes_equal_owned_hashes() {
        use srediag_plugin_sdk::data::{common, resource};
        let mut records = vec![log("a", 1), log("b", 2), log("a", 3)];
        records[1].attributes = vec![
            common::KeyValue {
                key: "k".into(),
                value: Some(common::AnyValue {
                    value: Some(common::any_value::Value::KvlistValue(
                        common::KeyValueList {
                            values: vec![common::KeyValue {
                                key: "n".into(),
                                value: Some(common::AnyValue {
                                    value: Some(common::any_value::Value::ArrayValue(
                                        common::ArrayValue {
                                            values: vec![common::AnyValue {
                                                value: Some(common::any_value::Value::DoubleValue(
                                                    1.5,
                                                )),
                                            }],
                                        },
                                    )),
                                }),
                            }],
                        },
                    )),
                }),
            },
            common::KeyValue {
                key: "empty".into(),
                value: None,
            },
        ];
        records[1].trace_id = vec![9; 16];
        let Records::Logs(mut l) = batch(records) else {
            panic!()
        };
        l.resource_logs[0].resource = Some(resource::Resource {
            attributes: vec![common::KeyValue {
                key: "host".into(),
                value: Some(common::AnyValue {
                    value: Some(common::any_value::Value::StringValue("h".into())),
                }),
            }],
            ..Default::default()
        });
        l.resource_logs[0].scope_logs[0].scope = Some(common::InstrumentationScope {
            name: "s".into(),
            version: "1".into(),
            ..Default::default()
        });
        let owned = Records::Logs(l);
        for with_time in [false, true] {
            let s = Settings {
                log_timestamps: with_time,
                ..Settings::default()
            };
            let mut a = Dedup::new(s.clone(), Arc::default());
            let mut b = Dedup::new(s, Arc::default());
            let mut enc = srediag_plugin_sdk::wire::Encoder::new();
            let bytes = enc.encode(1, &owned).unwrap().to_vec();
            let verified = srediag_plugin_sdk::wire::verify(&bytes).unwrap();
            let view = verified.logs_view().unwrap();
            assert_eq!(a.verdicts(&owned), b.verdicts_logs_view(&view));
            let mut ha: Vec<u64> = a.seen.keys().copied().collect();
            let mut hb: Vec<u64> = b.seen.keys().copied().collect();
            ha.sort();
            hb.sort();
            assert_eq!(ha, hb, "same identities with log_timestamps={with_time}");
        }
    }

    #[test]
    fn timestamps_count_only_when_asked() {
        let s = Settings {
            log_timestamps: true,
            ..Settings::default()
        };
        let mut d = Dedup::new(s, Arc::default());
        assert_eq!(
            bodies(&d.filter(batch(vec![log("a", 1), log("a", 2), log("a", 1)]))).len(),
            2
        );
    }
}
