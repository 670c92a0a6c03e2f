//! Diagnostics verbs in a running incarnation: the watch loop's handlers for an invocation
//! request, the plugin's output messages, the verbs' tick (timeouts, clients gone) and room for
//! a frame that waited. The rules live in [`crate::plugins::verbs::session`]; this file sends
//! what it asks for and charges what it reports.

use super::Supervisor;
use super::start::Running;
use super::watch::Watch;
use crate::plugins::ledger::LogSource;
use crate::plugins::verbs::{Frame, InvokeRequest, session::Step};
use srediag_plugin_sdk::control::{AgentMsg, PluginMsg};

impl Supervisor {
    /// Starts an invocation (or the request was refused and answered).
    pub(super) fn on_invoke(&self, run: &Running<'_>, w: &mut Watch, req: InvokeRequest) {
        let Some(msg) = w.verbs.start(req) else {
            return;
        };
        let AgentMsg::Invoke { id, ref verb, .. } = msg else {
            return;
        };
        tracing::info!(plugin = %self.name, verb = %verb, id, "verb invoked");
        if let Err(e) = run.ctl.send(&msg) {
            w.verbs.failed_to_send(id, &e);
        }
    }

    /// Output or the end of an invocation from the plugin.
    pub(super) fn on_verb_message(&self, run: &Running<'_>, w: &mut Watch, msg: PluginMsg) {
        let step = w.verbs.on_message(msg);
        self.apply(run, w, step);
    }

    fn apply(&self, run: &Running<'_>, w: &mut Watch, step: Step) {
        if step.counted {
            self.count_message(w);
        }
        if let Some((kind, detail)) = step.violation {
            self.metrics
                .runtime_errors
                .with_label_values(&[&self.name])
                .inc();
            self.ledger.record(kind, 1, || detail);
        }
        if let Some(cancel) = step.send {
            let _ = run.ctl.send(&cancel);
        }
    }

    /// Timeouts and clients that went away: cancel in the plugin.
    pub(super) fn on_verb_tick(&self, run: &Running<'_>, w: &mut Watch) {
        for (cancel, why) in w.verbs.tick(std::time::Instant::now()) {
            self.ledger
                .log()
                .warn(LogSource::Agent, &format!("{why}: cancelled"));
            let _ = run.ctl.send(&cancel);
        }
    }

    /// The waiting frame's client has room again (or is gone: cancel).
    pub(super) fn on_verb_room(
        &self,
        run: &Running<'_>,
        w: &mut Watch,
        permit: Result<tokio::sync::mpsc::OwnedPermit<Frame>, ()>,
    ) {
        if let Some(cancel) = w.verbs.on_room(permit) {
            let _ = run.ctl.send(&cancel);
        }
    }
}
