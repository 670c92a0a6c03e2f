//! One incarnation's invocations, on the supervisor's side: starting them against the running
//! incarnation's manifest, checking every chunk the plugin sends against what was asked,
//! charging output to the budget, timeouts, cancellation when the client goes away, and the
//! one frame that waits when the client's channel is full.
//!
//! No I/O here: the supervisor sends what these methods return ([`AgentMsg`]s to the plugin)
//! and records the violations they report, so the rules are unit-tested without a plugin.

use super::{EndStatus, FRAMES, Frame, InvokeRequest, Refusal};
use crate::plugins::config::VerbsConfig;
use crate::plugins::ledger::Violation;
use crate::plugins::trust::manifest::CliVerb;
use base64::Engine as _;
use srediag_plugin_sdk::control::{AgentMsg, InvokeStatus, OutputKind, PluginMsg};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Every chunk is charged at least this much of the output budget (so a flood of empty chunks
/// is bounded like a flood of bytes).
pub const MIN_CHUNK_CHARGE: u64 = 1024;

/// Cancelled invocations whose late messages are discarded quietly (older ones are forgotten:
/// their messages are then unexpected).
pub const CANCELLED_KEPT: usize = 64;

/// An invocation in progress.
struct Active {
    verb: Arc<CliVerb>,
    output: OutputKind,
    deadline: Instant,
    used: u64,
    media_type: Option<String>,
    frames: mpsc::Sender<Frame>,
}

/// What the supervisor does after a plugin message about an invocation.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Send this to the plugin (a `cancel`).
    pub send: Option<AgentMsg>,
    /// Count this in the plugin's ledger.
    pub violation: Option<(Violation, String)>,
    /// The message counts towards the control-message cap per heartbeat interval (messages
    /// for a running invocation do not: its output budget bounds them).
    pub counted: bool,
}

/// One incarnation's invocations.
pub struct Invocations {
    plugin: String,
    cfg: VerbsConfig,
    verbs: Vec<Arc<CliVerb>>,
    protocol: u32,
    next_id: u64,
    active: BTreeMap<u64, Active>,
    cancelled: VecDeque<u64>,
    pending: Option<(u64, Frame)>,
}

impl Drop for Invocations {
    /// The incarnation is over: every client still waiting hears so (or sees its channel close).
    fn drop(&mut self) {
        for (_, a) in std::mem::take(&mut self.active) {
            let _ = a.frames.try_send(Frame::End {
                status: EndStatus::PluginStopped,
                message: format!("plugin {} stopped before the verb ended", self.plugin),
            });
        }
    }
}

fn decoded_len(data: &str) -> Option<u64> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .map(|b| b.len() as u64)
}

impl Invocations {
    /// The invocations of an incarnation speaking `protocol` whose verified manifest declares
    /// `verbs` (none for a `path:` plugin).
    pub fn new(plugin: &str, cfg: VerbsConfig, verbs: &[CliVerb], protocol: u32) -> Invocations {
        Invocations {
            plugin: plugin.to_string(),
            cfg,
            verbs: verbs.iter().cloned().map(Arc::new).collect(),
            protocol,
            next_id: 1,
            active: BTreeMap::new(),
            cancelled: VecDeque::new(),
            pending: None,
        }
    }

    /// Any invocation running, or cancelled ones to remember (the supervisor ticks then).
    pub fn busy(&self) -> bool {
        !self.active.is_empty()
    }

    /// A frame waits for room in its client's channel: do not read the control socket.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The channel the waiting frame goes to.
    pub fn pending_sink(&self) -> Option<mpsc::Sender<Frame>> {
        let (id, _) = self.pending.as_ref()?;
        Some(self.active.get(id)?.frames.clone())
    }

    /// Starts an invocation: `Some(invoke)` to send to the plugin, or the request was refused
    /// (answered already).
    pub fn start(&mut self, req: InvokeRequest) -> Option<AgentMsg> {
        let name = &self.plugin;
        if self.protocol < 2 {
            req.refuse(
                Refusal::OldProtocol,
                format!(
                    "plugin {name} speaks control protocol {}; verbs need 2 (rebuild it with the current srediag-plugin-sdk)",
                    self.protocol
                ),
            );
            return None;
        }
        if self.verbs.is_empty() {
            req.refuse(
                Refusal::NoVerbs,
                format!("plugin {name} declares no verbs (its manifest has no `cli:` entries, or it is an unsigned `path:` plugin without a manifest)"),
            );
            return None;
        }
        let Some(verb) = self.verbs.iter().find(|v| v.name == req.verb).cloned() else {
            let known: Vec<&str> = self.verbs.iter().map(|v| v.name.as_str()).collect();
            let msg = format!(
                "plugin {name} has no verb {:?} (verbs: {})",
                crate::text::escape_truncated(&req.verb, 64),
                known.join(", ")
            );
            req.refuse(Refusal::UnknownVerb, msg);
            return None;
        };
        let args = match verb.check_args(&req.args) {
            Ok(a) => a,
            Err(e) => {
                req.refuse(Refusal::BadArgs, format!("{name} {}: {e}", verb.name));
                return None;
            }
        };
        if !verb.kinds().contains(&req.output) {
            let kinds: Vec<&str> = verb.kinds().iter().map(|k| k.as_str()).collect();
            let msg = format!(
                "{name} {} writes no {} output (it writes: {})",
                verb.name,
                req.output.as_str(),
                kinds.join(", ")
            );
            req.refuse(Refusal::BadOutput, msg);
            return None;
        }
        if self.active.len() >= self.cfg.max_concurrent {
            req.refuse(
                Refusal::Busy,
                format!(
                    "plugin {name} runs {} verbs already (plugins.{name}.verbs.max_concurrent)",
                    self.active.len()
                ),
            );
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        if req.started.send(Ok(id)).is_err() {
            return None; // the client left already
        }
        let msg = AgentMsg::Invoke {
            id,
            verb: verb.name.clone(),
            args,
            output: req.output,
        };
        self.active.insert(
            id,
            Active {
                verb,
                output: req.output,
                deadline: Instant::now() + self.cfg.timeout,
                used: 0,
                media_type: None,
                frames: req.frames,
            },
        );
        Some(msg)
    }

    /// Ends invocation `id` for its client with `status`, and cancels it in the plugin unless
    /// the plugin ended it. Returns the `cancel` to send.
    fn end(
        &mut self,
        id: u64,
        status: EndStatus,
        message: String,
        cancel: bool,
    ) -> Option<AgentMsg> {
        let a = self.active.remove(&id)?;
        if matches!(&self.pending, Some((p, _)) if *p == id) {
            self.pending = None;
        }
        let _ = a.frames.try_send(Frame::End { status, message });
        if !cancel {
            return None;
        }
        self.cancelled.push_back(id);
        while self.cancelled.len() > CANCELLED_KEPT {
            self.cancelled.pop_front();
        }
        Some(AgentMsg::Cancel { id })
    }

    /// The sending of `invoke` to the plugin failed.
    pub fn failed_to_send(&mut self, id: u64, e: &std::io::Error) {
        let _ = self.end(
            id,
            EndStatus::PluginStopped,
            format!("cannot reach plugin {}: {e}", self.plugin),
            false,
        );
    }

    /// A plugin message about an invocation (`invoke_text|json|file|end`).
    pub fn on_message(&mut self, msg: PluginMsg) -> Step {
        let kind = msg.kind();
        let (id, chunk) = match split(msg) {
            Ok(c) => c,
            Err(other) => {
                return Step {
                    violation: Some((
                        Violation::UnexpectedMessage,
                        format!("unexpected control message {}", other.kind()),
                    )),
                    counted: true,
                    ..Step::default()
                };
            }
        };
        let Some(a) = self.active.get_mut(&id) else {
            if let Some(i) = self.cancelled.iter().position(|c| *c == id) {
                // Late output of a cancelled invocation: discarded (the flood cap applies).
                if matches!(chunk, Chunk::End { .. }) {
                    self.cancelled.remove(i);
                }
                return Step {
                    counted: true,
                    ..Step::default()
                };
            }
            return Step {
                violation: Some((
                    Violation::UnexpectedMessage,
                    format!("{kind} for invocation {id}, which is not running"),
                )),
                counted: true,
                ..Step::default()
            };
        };
        let (kind, charge, frame) = match chunk {
            Chunk::End { status, message } => {
                let status = match status {
                    InvokeStatus::Ok => EndStatus::Ok,
                    InvokeStatus::Failed => EndStatus::Failed,
                    InvokeStatus::Cancelled => EndStatus::Cancelled,
                };
                let _ = self.end(id, status, message, false);
                return Step::default();
            }
            Chunk::Text(text) => (OutputKind::Text, text.len() as u64, Frame::Text { text }),
            Chunk::Json(value) => {
                let n = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0) as u64;
                (OutputKind::Json, n, Frame::Json { value })
            }
            Chunk::File { media_type, data } => {
                let declared = a.verb.writes_media_type(&media_type);
                let same = a.media_type.as_ref().is_none_or(|m| *m == media_type);
                let Some(n) = decoded_len(&data).filter(|_| declared && same) else {
                    let why = if !declared {
                        format!(
                            "file of media type {:?}, which verb {} does not declare",
                            crate::text::escape_truncated(&media_type, 64),
                            a.verb.name
                        )
                    } else if !same {
                        "file pieces of two media types".to_string()
                    } else {
                        "file data that is not base64".to_string()
                    };
                    return self.bad_output(id, why);
                };
                a.media_type = Some(media_type.clone());
                (OutputKind::File, n, Frame::File { media_type, data })
            }
        };
        if kind != a.output {
            let why = format!(
                "{} output when {} was asked for",
                kind.as_str(),
                a.output.as_str()
            );
            return self.bad_output(id, why);
        }
        a.used = a.used.saturating_add(charge.max(MIN_CHUNK_CHARGE));
        if a.used > self.cfg.max_output {
            let max = self.cfg.max_output;
            let name = self.plugin.clone();
            let send = self.end(
                id,
                EndStatus::OutputLimit,
                format!(
                    "output over the {max}-byte limit (plugins.{name}.verbs.max_output): cancelled"
                ),
                true,
            );
            return Step {
                send,
                violation: Some((
                    Violation::VerbOutput,
                    format!("invocation {id} wrote more than {max} bytes"),
                )),
                counted: false,
            };
        }
        match a.frames.try_send(frame) {
            Ok(()) => Step::default(),
            Err(TrySendError::Full(frame)) => {
                self.pending = Some((id, frame));
                Step::default()
            }
            Err(TrySendError::Closed(_)) => Step {
                send: self.end(id, EndStatus::Cancelled, String::new(), true),
                ..Step::default()
            },
        }
    }

    fn bad_output(&mut self, id: u64, why: String) -> Step {
        let send = self.end(
            id,
            EndStatus::BadOutput,
            format!("the plugin wrote {why}: cancelled"),
            true,
        );
        Step {
            send,
            violation: Some((Violation::VerbOutput, format!("invocation {id}: {why}"))),
            counted: false,
        }
    }

    /// Room in the waiting frame's channel (`Ok`), or its client is gone (`Err`): the frame is
    /// delivered or the invocation cancelled. Returns the `cancel` to send.
    pub fn on_room(&mut self, permit: Result<mpsc::OwnedPermit<Frame>, ()>) -> Option<AgentMsg> {
        let (id, frame) = self.pending.take()?;
        match permit {
            Ok(p) => {
                p.send(frame);
                None
            }
            Err(()) => self.end(id, EndStatus::Cancelled, String::new(), true),
        }
    }

    /// Timeouts and clients that went away: the `cancel`s to send, with what to log.
    pub fn tick(&mut self, now: Instant) -> Vec<(AgentMsg, String)> {
        let mut out = Vec::new();
        let ids: Vec<u64> = self.active.keys().copied().collect();
        for id in ids {
            let Some(a) = self.active.get(&id) else {
                continue;
            };
            let verb = a.verb.name.clone();
            if a.frames.is_closed() {
                if let Some(m) = self.end(id, EndStatus::Cancelled, String::new(), true) {
                    out.push((
                        m,
                        format!("verb {verb} (invocation {id}): the client went away"),
                    ));
                }
            } else if now >= a.deadline {
                let t = self.cfg.timeout;
                let name = self.plugin.clone();
                let msg = format!(
                    "timed out after {} (plugins.{name}.verbs.timeout): cancelled",
                    humantime::format_duration(t)
                );
                if let Some(m) = self.end(id, EndStatus::Timeout, msg, true) {
                    out.push((m, format!("verb {verb} (invocation {id}) timed out")));
                }
            }
        }
        out
    }

    /// How often the supervisor calls [`Invocations::tick`] while invocations run.
    pub const TICK: Duration = Duration::from_millis(50);
}

/// An invocation message's parts.
enum Chunk {
    Text(String),
    Json(serde_json::Value),
    File {
        media_type: String,
        data: String,
    },
    End {
        status: InvokeStatus,
        message: String,
    },
}

fn split(msg: PluginMsg) -> Result<(u64, Chunk), PluginMsg> {
    Ok(match msg {
        PluginMsg::InvokeText { id, text } => (id, Chunk::Text(text)),
        PluginMsg::InvokeJson { id, value } => (id, Chunk::Json(value)),
        PluginMsg::InvokeFile {
            id,
            media_type,
            data,
        } => (id, Chunk::File { media_type, data }),
        PluginMsg::InvokeEnd {
            id,
            status,
            message,
        } => (id, Chunk::End { status, message }),
        other => return Err(other),
    })
}

/// True for the messages [`Invocations::on_message`] handles.
pub fn is_invocation_message(msg: &PluginMsg) -> bool {
    matches!(
        msg,
        PluginMsg::InvokeText { .. }
            | PluginMsg::InvokeJson { .. }
            | PluginMsg::InvokeFile { .. }
            | PluginMsg::InvokeEnd { .. }
    )
}

/// A bounded channel for one invocation's frames.
pub fn channel() -> (mpsc::Sender<Frame>, mpsc::Receiver<Frame>) {
    mpsc::channel(FRAMES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn verb() -> CliVerb {
        serde_yaml::from_str(
            r#"
name: prof
summary: profile
args:
  - {name: seconds, type: int, default: 1}
output:
  - {kind: text}
  - {kind: file, media_type: image/svg+xml}
"#,
        )
        .unwrap()
    }

    fn cfg(max_output: u64) -> VerbsConfig {
        VerbsConfig {
            timeout: Duration::from_secs(60),
            max_output,
            max_concurrent: 2,
        }
    }

    fn request(
        verb: &str,
        output: OutputKind,
    ) -> (
        InvokeRequest,
        mpsc::Receiver<Frame>,
        oneshot::Receiver<Result<u64, super::super::Refused>>,
    ) {
        let (tx, rx) = channel();
        let (s, r) = oneshot::channel();
        (
            InvokeRequest {
                verb: verb.into(),
                args: BTreeMap::new(),
                output,
                frames: tx,
                started: s,
            },
            rx,
            r,
        )
    }

    fn text(id: u64, t: &str) -> PluginMsg {
        PluginMsg::InvokeText { id, text: t.into() }
    }

    #[test]
    fn starts_with_defaults_and_refuses_what_the_manifest_does_not_declare() {
        let mut inv = Invocations::new("p", cfg(1 << 20), &[verb()], 2);
        let (req, _rx, mut started) = request("prof", OutputKind::Text);
        let Some(AgentMsg::Invoke { id, args, .. }) = inv.start(req) else {
            panic!("not started")
        };
        assert_eq!(started.try_recv().unwrap().unwrap(), id);
        assert_eq!(args["seconds"], 1, "default filled in");
        for (verb, output, reason) in [
            ("nope", OutputKind::Text, Refusal::UnknownVerb),
            ("prof", OutputKind::Json, Refusal::BadOutput),
        ] {
            let (req, _rx, mut started) = request(verb, output);
            assert!(inv.start(req).is_none());
            assert_eq!(started.try_recv().unwrap().unwrap_err().reason, reason);
        }
        let (mut req, _rx, mut started) = request("prof", OutputKind::Text);
        req.args.insert("seconds".into(), "x".into());
        assert!(inv.start(req).is_none());
        let e = started.try_recv().unwrap().unwrap_err();
        assert_eq!(e.reason, Refusal::BadArgs);
        assert!(e.message.contains("--seconds"), "{}", e.message);
        let (req, _rx2, _s) = request("prof", OutputKind::Text);
        assert!(inv.start(req).is_some());
        let (req, _rx3, mut started) = request("prof", OutputKind::Text);
        assert!(inv.start(req).is_none(), "over max_concurrent");
        assert_eq!(
            started.try_recv().unwrap().unwrap_err().reason,
            Refusal::Busy
        );
        let mut old = Invocations::new("p", cfg(1 << 20), &[verb()], 1);
        let (req, _rx, mut started) = request("prof", OutputKind::Text);
        assert!(old.start(req).is_none());
        assert_eq!(
            started.try_recv().unwrap().unwrap_err().reason,
            Refusal::OldProtocol
        );
    }

    #[test]
    fn output_is_checked_charged_and_bounded() {
        let mut inv = Invocations::new("p", cfg(8 * 1024), &[verb()], 2);
        let (req, mut rx, _s) = request("prof", OutputKind::Text);
        let Some(AgentMsg::Invoke { id, .. }) = inv.start(req) else {
            panic!()
        };
        assert_eq!(inv.on_message(text(id, "hello\n")), Step::default());
        assert_eq!(
            rx.try_recv().unwrap(),
            Frame::Text {
                text: "hello\n".into()
            }
        );
        // Empty chunks are charged too: a flood of them ends at the budget.
        let mut steps = 0;
        let step = loop {
            let s = inv.on_message(text(id, ""));
            steps += 1;
            if s != Step::default() {
                break s;
            }
            assert_eq!(
                rx.try_recv().unwrap(),
                Frame::Text {
                    text: String::new()
                }
            );
        };
        // 8 KiB at 1 KiB a chunk, one used: seven fill it exactly, the eighth is over.
        assert_eq!(steps, 8);
        assert_eq!(step.send, Some(AgentMsg::Cancel { id }));
        assert_eq!(step.violation.map(|v| v.0), Some(Violation::VerbOutput));
        assert!(matches!(
            rx.try_recv().unwrap(),
            Frame::End {
                status: EndStatus::OutputLimit,
                ..
            }
        ));
        // Late output of the cancelled invocation: dropped quietly, counted against the cap.
        let s = inv.on_message(text(id, "late"));
        assert_eq!((s.violation, s.counted), (None, true));
        // An invocation that never existed.
        let s = inv.on_message(text(99, "x"));
        assert_eq!(s.violation.map(|v| v.0), Some(Violation::UnexpectedMessage));
    }

    #[test]
    fn wrong_kind_media_type_or_base64_is_a_violation() {
        for (msg, what) in [
            (
                PluginMsg::InvokeJson {
                    id: 1,
                    value: serde_json::json!(1),
                },
                "json output",
            ),
            (
                PluginMsg::InvokeFile {
                    id: 1,
                    media_type: "image/png".into(),
                    data: "AAAA".into(),
                },
                "does not declare",
            ),
            (
                PluginMsg::InvokeFile {
                    id: 1,
                    media_type: "image/svg+xml".into(),
                    data: "!!".into(),
                },
                "not base64",
            ),
        ] {
            let output = if what == "json output" {
                OutputKind::Text
            } else {
                OutputKind::File
            };
            let mut inv = Invocations::new("p", cfg(1 << 20), &[verb()], 2);
            let (req, mut rx, _s) = request("prof", output);
            assert!(inv.start(req).is_some());
            let s = inv.on_message(msg);
            let (kind, detail) = s.violation.expect("violation");
            assert_eq!(kind, Violation::VerbOutput);
            assert!(detail.contains(what), "{detail}");
            assert_eq!(s.send, Some(AgentMsg::Cancel { id: 1 }));
            assert!(matches!(
                rx.try_recv().unwrap(),
                Frame::End {
                    status: EndStatus::BadOutput,
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_full_channel_holds_one_frame_and_a_closed_one_cancels() {
        let mut inv = Invocations::new("p", cfg(1 << 30), &[verb()], 2);
        let (req, mut rx, _s) = request("prof", OutputKind::Text);
        let Some(AgentMsg::Invoke { id, .. }) = inv.start(req) else {
            panic!()
        };
        for i in 0..FRAMES {
            inv.on_message(text(id, &i.to_string()));
        }
        assert!(!inv.has_pending());
        inv.on_message(text(id, "waits"));
        assert!(inv.has_pending(), "the 17th frame waits");
        let sink = inv.pending_sink().unwrap();
        assert_eq!(rx.try_recv().unwrap(), Frame::Text { text: "0".into() });
        let permit = sink.try_reserve_owned().map_err(|_| ());
        assert_eq!(inv.on_room(permit), None);
        assert!(!inv.has_pending());
        // The client goes away: the next tick cancels in the plugin.
        drop(rx);
        let cancels = inv.tick(Instant::now());
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].0, AgentMsg::Cancel { id });
        assert!(!inv.busy());
    }

    #[test]
    fn timeouts_cancel_and_tell_the_client() {
        let mut c = cfg(1 << 20);
        c.timeout = Duration::from_secs(1);
        let mut inv = Invocations::new("p", c, &[verb()], 2);
        let (req, mut rx, _s) = request("prof", OutputKind::Text);
        let Some(AgentMsg::Invoke { id, .. }) = inv.start(req) else {
            panic!()
        };
        assert!(inv.tick(Instant::now()).is_empty());
        let out = inv.tick(Instant::now() + Duration::from_secs(2));
        assert_eq!(out[0].0, AgentMsg::Cancel { id });
        assert!(matches!(
            rx.try_recv().unwrap(),
            Frame::End {
                status: EndStatus::Timeout,
                ..
            }
        ));
        // The plugin's own end arrives later: discarded quietly.
        let s = inv.on_message(PluginMsg::InvokeEnd {
            id,
            status: InvokeStatus::Cancelled,
            message: String::new(),
        });
        assert_eq!(s.violation, None);
    }

    #[test]
    fn a_stopped_incarnation_tells_waiting_clients() {
        let mut inv = Invocations::new("p", cfg(1 << 20), &[verb()], 2);
        let (req, mut rx, _s) = request("prof", OutputKind::Text);
        assert!(inv.start(req).is_some());
        drop(inv);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Frame::End {
                status: EndStatus::PluginStopped,
                ..
            }
        ));
    }
}
