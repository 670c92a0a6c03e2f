//! The agent's side of the shared-memory data path (seed §4).
//!
//! A [`Link`] connects one pipeline stage (`processors: [plugin/<name>]`) to one plugin across its
//! restarts. The stage submits batches; the link numbers them (`seq`), keeps each one until the
//! plugin answers it (the in-flight window, `data_path.max_in_flight`) and hands it to the
//! current incarnation of the plugin. Each incarnation gets two fresh rings (agent→plugin and
//! plugin→agent, memfds sealed against resizing) and two I/O threads ([`io`]): a writer that
//! encodes and publishes, a reader that copies frames out, verifies and decodes them. When the
//! plugin dies, the reader first drains what it had published, then every batch still in flight
//! is re-sent to the next incarnation: no accepted record is lost, and duplicates (only the
//! leading parts of a split result) are bounded by the window and counted.
//!
//! Everything the plugin writes is hostile: malformed frames, impossible indices, answers to a
//! `seq` that is not in flight, more output than `max_output_ratio` allows and wake-up floods are
//! violations charged to the plugin's ledger, which asks the supervisor to quarantine it past
//! `quarantine_after_malformed` (at once for the output budget). What the plugin can make the
//! agent hold is bounded: the window (`max_in_flight` batches), [`OUTPUT_QUEUE`] decoded answers,
//! and the budget per answer. A batch unanswered for `answer_timeout` (or an I/O thread the plugin
//! broke) ends the incarnation as `hang`.

mod io;
mod link;
mod metrics;

pub use link::{AttachError, Link, OUTPUT_QUEUE, Output, Prepared, Role, Stall, signal_of};
pub use metrics::DataPathMetrics;

use std::collections::BTreeMap;
use std::sync::Arc;

/// The links of every plugin a pipeline uses, by plugin name.
pub type Links = BTreeMap<String, Arc<Link>>;

/// Creates a link for each plugin that a pipeline references as `plugin/<name>`, charging it to
/// the plugin's ledger.
pub fn links(
    config: &crate::config::Config,
    metrics: &DataPathMetrics,
    ledgers: &crate::plugins::ledger::Ledgers,
) -> Links {
    let mut out = Links::new();
    for p in config.service.pipelines.values() {
        for id in p.receivers.iter().chain(&p.processors).chain(&p.exporters) {
            if let Some(name) = id.strip_prefix(PLUGIN_PREFIX)
                && let Some(pc) = config.plugins.get(name)
                && let Some(ledger) = ledgers.get(name)
                && let Some(role) = Role::of(pc.plugin_type)
            {
                out.entry(name.to_string()).or_insert_with(|| {
                    Arc::new(Link::new(
                        name,
                        role,
                        pc.data_path.clone(),
                        metrics.clone(),
                        ledger.clone(),
                    ))
                });
            }
        }
    }
    out
}

/// Pipeline entries naming a plugin start with this.
pub const PLUGIN_PREFIX: &str = "plugin/";
