//! Runs the host metrics scraper on its interval and feeds the pipelines.

use super::hostmetrics::{Config, Scraper};
use crate::model::Batch;
use crate::pipeline::{
    BoxFuture, BuildContext, Receiver, ReceiverOutput, Shutdown, shutdown_signalled,
};
use crate::telemetry::ComponentMetrics;
use std::time::Duration;

/// The `hostmetrics` receiver.
pub struct HostMetricsReceiver {
    id: String,
    cfg: Config,
    errors: ComponentMetrics,
}

impl HostMetricsReceiver {
    /// A receiver with these settings.
    pub fn new(cfg: &Config, ctx: &BuildContext) -> Self {
        HostMetricsReceiver {
            id: ctx.id.clone(),
            cfg: cfg.clone(),
            errors: ctx.telemetry.component("receiver", &ctx.id),
        }
    }
}

impl Receiver for HostMetricsReceiver {
    fn run(self: Box<Self>, out: ReceiverOutput, mut shutdown: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut scraper = Scraper::new(&self.cfg);
            let period = self.cfg.collection_interval.max(Duration::from_secs(1));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown_signalled(&mut shutdown) => break,
                }
                // procfs reads are fast and local; keep them off the async workers anyway.
                let (s, res) = match tokio::task::spawn_blocking(move || {
                    let r = scraper.scrape();
                    (scraper, r)
                })
                .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(receiver = %self.id, error = %e, "scrape task failed; receiver stops");
                        self.errors.errors.inc();
                        return;
                    }
                };
                scraper = s;
                match res {
                    Ok(m) => {
                        if out.send(Batch::Metrics(m)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        self.errors.errors.inc();
                        tracing::warn!(receiver = %self.id, error = %e, "scrape failed");
                    }
                }
            }
        })
    }
}
