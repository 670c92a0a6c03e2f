//! A receiver plugin (`receivers: [plugin/<name>]`): what the plugin emits on its ring enters every
//! pipeline that lists it, with the pipelines' backpressure. The link's reader hands emissions
//! over a bounded queue and stops reading the ring while the pipelines do not take them, so a
//! plugin whose pipelines are full waits in its own `emit` (or gives up, per the SDK) — what the
//! agent read is delivered or counted by the queues, never lost silently.

use super::{BoxFuture, Receiver, ReceiverOutput, Shutdown, shutdown_signalled};
use crate::model::Batch;
use crate::plugins::datapath::{Link, Output};
use srediag_plugin_sdk::data::Records;
use std::sync::Arc;

/// The pipelines' side of a receiver plugin.
pub struct PluginReceiver {
    link: Arc<Link>,
}

impl PluginReceiver {
    /// A receiver fed by `link` (a receiver plugin's).
    pub fn new(link: Arc<Link>) -> PluginReceiver {
        PluginReceiver { link }
    }
}

impl Receiver for PluginReceiver {
    fn run(self: Box<Self>, out: ReceiverOutput, mut shutdown: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Some(mut emitted) = self.link.take_output() else {
                tracing::error!(plugin = %self.link.name, "a plugin's data path can serve one receiver only");
                return;
            };
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown_signalled(&mut shutdown) => break,
                    o = emitted.recv() => match o {
                        Some(Output::Records(r)) => {
                            let b = match r {
                                Records::Logs(l) => Batch::Logs(l),
                                Records::Metrics(m) => Batch::Metrics(m),
                            };
                            let (signal, items) = (b.signal(), b.items());
                            if out.send(b).await.is_err() {
                                self.link.dropped_no_pipeline(signal, items);
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        })
    }
}
