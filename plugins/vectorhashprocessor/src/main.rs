//! `vectorhashprocessor`: drops duplicate records by content hash within a time window (seed
//! §1.2, §5), under a bounded memory budget. Capabilities: `processor/vectorhash`,
//! `diag/dedup-stats`.

use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::{
    Context, OutputKind, Plugin, PluginError, PluginInfo, PluginType, Processor, Registry,
    VerbContext, Verbs,
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

/// `srediag diagnose vectorhashprocessor dedup-stats [-o json]` (declared in the manifest's
/// `cli:`): records seen, duplicates dropped, window entries, evictions.
fn dedup_stats(stats: &Mutex<Stats>, ctx: &mut VerbContext) -> Result<(), PluginError> {
    let s = *stats.lock().unwrap_or_else(|p| p.into_inner());
    let value = serde_json::to_value(s).map_err(|e| PluginError(e.to_string()))?;
    match ctx.output() {
        OutputKind::Json => ctx.write_json(&value),
        _ => {
            let mut text = String::new();
            if let Some(m) = value.as_object() {
                for (k, v) in m {
                    text.push_str(&format!("{k}: {v}\n"));
                }
            }
            ctx.write_text(&text)
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
        let stats = self.stats.clone();
        r.diagnostics(
            Verbs::new().verb("dedup-stats", move |ctx: &mut VerbContext| {
                dedup_stats(&stats, ctx)
            }),
        );
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
