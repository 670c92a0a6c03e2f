//! The admin socket's side of an invocation: start it at the plugin's supervisor, answer one
//! line (`{"ok":true,"data":{"id":N}}` or the refusal), then stream one JSON line per
//! [`Frame`](super::Frame) until the end frame. The client closing its end (Ctrl-C, `kill`)
//! drops the frame channel, which the supervisor notices and turns into a `cancel` to the
//! plugin; so does a client too slow to take a line within the admin socket's write timeout.

use super::{EndStatus, Frame, InvokeRequest, Refusal, Refused, session};
use crate::plugins::admin::{AdminMetrics, AdminResponse, write_line};
use crate::plugins::manager::Manager;
use serde_json::Value;
use srediag_plugin_sdk::control::OutputKind;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::oneshot;

/// How long the supervisor may take to accept an invocation (it is busy only while a hot swap
/// drains the old incarnation, or a restart is under way).
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client asked for.
pub struct Invoke {
    /// Plugin name.
    pub plugin: String,
    /// Verb.
    pub verb: String,
    /// Typed arguments.
    pub args: BTreeMap<String, Value>,
    /// Output kind.
    pub output: OutputKind,
}

fn refused(r: Refused) -> AdminResponse {
    AdminResponse {
        ok: false,
        error: Some(r.message),
        data: serde_json::json!({ "refusal": r.reason }),
    }
}

/// Serves one `plugin_invoke` request on an admin connection.
pub async fn serve(
    manager: &Manager,
    req: Invoke,
    mut rd: impl AsyncRead + Unpin,
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    metrics: &AdminMetrics,
) {
    let (frames, mut rx) = session::channel();
    let (started_tx, started) = oneshot::channel();
    let request = InvokeRequest {
        verb: req.verb,
        args: req.args,
        output: req.output,
        frames,
        started: started_tx,
    };
    let id = match manager.invoke(&req.plugin, request) {
        Err(r) => {
            write_line(wr, &refused(r), metrics).await;
            return;
        }
        Ok(()) => match tokio::time::timeout(START_TIMEOUT, started).await {
            Ok(Ok(Ok(id))) => id,
            Ok(Ok(Err(r))) => {
                write_line(wr, &refused(r), metrics).await;
                return;
            }
            Ok(Err(_)) => {
                let r = Refused::new(
                    Refusal::NotRunning,
                    format!("plugin {} stopped before the verb started", req.plugin),
                );
                write_line(wr, &refused(r), metrics).await;
                return;
            }
            Err(_) => {
                let r = Refused::new(
                    Refusal::Busy,
                    format!(
                        "plugin {} did not take the verb within {START_TIMEOUT:?} (it is being swapped or restarted); try again",
                        req.plugin
                    ),
                );
                write_line(wr, &refused(r), metrics).await;
                return;
            }
        },
    };
    let ok = AdminResponse {
        ok: true,
        error: None,
        data: serde_json::json!({ "id": id }),
    };
    if !write_line(wr, &ok, metrics).await {
        return;
    }
    let mut scratch = [0u8; 512];
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            // Anything after the request is ignored; EOF or an error means the client is gone:
            // dropping `rx` cancels the invocation.
            n = tokio::io::AsyncReadExt::read(&mut rd, &mut scratch) => match n {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        let frame = frame.unwrap_or_else(|| Frame::End {
            status: EndStatus::PluginStopped,
            message: format!("plugin {} stopped before the verb ended", req.plugin),
        });
        let end = matches!(frame, Frame::End { .. });
        if !write_line(wr, &frame, metrics).await || end {
            return;
        }
    }
}
