//! `vectorhashprocessor`: drops duplicate records by content hash within a time window (seed
//! §1.2, §5), under a bounded memory budget. Capabilities: `processor/vectorhash`,
//! `diag/dedup-stats`.

use srediag_plugin_sdk::component::{Diagnostics, Output, Verb};
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::{
    Context, Plugin, PluginError, PluginInfo, PluginType, Processor, Registry,
};
use srediag_vectorhashprocessor::dedup::{Dedup, Settings, Stats};
use std::sync::{Arc, Mutex};

struct VectorHash {
    stats: Arc<Mutex<Stats>>,
    dedup: Option<Dedup>,
}

struct Proc(Dedup);

impl Processor for Proc {
    fn process(&mut self, records: Records) -> Result<Records, PluginError> {
        Ok(self.0.filter(records))
    }

    /// Deduplication only drops records: answer with flags, not a re-encoded batch.
    fn keep(&mut self, records: &Records) -> Option<Result<Vec<bool>, PluginError>> {
        Some(Ok(self.0.verdicts(records)))
    }

    /// Log batches are hashed in place in the frame: no decoding at all.
    fn keep_logs_view(
        &mut self,
        logs: &srediag_plugin_sdk::wire::view::LogsView<'_>,
    ) -> Option<Result<Vec<bool>, PluginError>> {
        Some(Ok(self.0.verdicts_logs_view(logs)))
    }
}

struct DedupStats(Arc<Mutex<Stats>>);

impl Diagnostics for DedupStats {
    fn verbs(&self) -> Vec<Verb> {
        vec![Verb {
            name: "dedup-stats".into(),
            about: "records seen, duplicates dropped, window entries and evictions".into(),
            args: vec![],
        }]
    }

    fn invoke(
        &mut self,
        verb: &str,
        _args: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Output, PluginError> {
        match verb {
            "dedup-stats" => {
                let s = *self.0.lock().unwrap_or_else(|p| p.into_inner());
                Ok(Output::Json {
                    value: serde_json::to_value(s).map_err(|e| PluginError(e.to_string()))?,
                })
            }
            other => Err(PluginError(format!("unknown verb {other:?}"))),
        }
    }
}

impl Plugin for VectorHash {
    fn init(&mut self, ctx: &Context) -> Result<(), PluginError> {
        let settings: Settings = serde_json::from_value(ctx.config.clone())
            .map_err(|e| PluginError(format!("config: {e}")))?;
        self.dedup = Some(Dedup::new(settings, self.stats.clone()));
        Ok(())
    }

    fn register(&mut self, r: &mut Registry) -> Result<(), PluginError> {
        let d = self
            .dedup
            .take()
            .ok_or_else(|| PluginError("register before init".into()))?;
        r.processor("vectorhash", Proc(d))?;
        r.diagnostics(DedupStats(self.stats.clone()));
        Ok(())
    }

    fn capabilities(&self) -> Vec<String> {
        vec!["processor/vectorhash".into(), "diag/dedup-stats".into()]
    }

    fn shutdown(&mut self, _ctx: &Context) -> Result<(), PluginError> {
        Ok(())
    }
}

fn main() {
    srediag_plugin_sdk::run(
        PluginInfo::new(
            "vectorhashprocessor",
            env!("CARGO_PKG_VERSION"),
            PluginType::Processor,
        ),
        VectorHash {
            stats: Arc::default(),
            dedup: None,
        },
    )
}
