//! Diagnostics verbs: what runs when an operator types `srediag diagnose <plugin> <verb>`.
//!
//! The plugin's manifest declares its verbs in its `cli:` field (arguments with types and
//! defaults, output kinds); the agent checks every invocation against that declaration before
//! anything reaches the plugin. The plugin registers one handler per verb ([`Verbs`]). Each
//! invocation runs on a thread of its own with a [`VerbContext`]: the typed arguments
//! ([`Args`]), writers for the output kind the operator asked for (text, JSON values, or a file
//! of a declared media type — the CLI writes the file, the plugin never sees a host path), and
//! cancellation ([`Cancellation`]: Ctrl-C, the agent's timeout, the output limit).
//!
//! ```no_run
//! use srediag_plugin_sdk::verbs::{VerbContext, Verbs};
//! use srediag_plugin_sdk::{OutputKind, PluginError};
//!
//! fn uptime(ctx: &mut VerbContext) -> Result<(), PluginError> {
//!     let secs: f64 = std::fs::read_to_string("/proc/uptime")
//!         .map_err(|e| PluginError(format!("/proc/uptime: {e}")))?
//!         .split_whitespace()
//!         .next()
//!         .and_then(|s| s.parse().ok())
//!         .unwrap_or(0.0);
//!     match ctx.output() {
//!         OutputKind::Json => ctx.write_json(&serde_json::json!({ "uptime_seconds": secs })),
//!         _ => ctx.write_text(&format!("up {secs:.0} s\n")),
//!     }
//! }
//!
//! fn main() {
//!     srediag_plugin_sdk::serve_diagnostics("hostinfo", env!("CARGO_PKG_VERSION"), |_ctx| {
//!         Ok(Verbs::new().verb("uptime", uptime))
//!     })
//! }
//! ```

use crate::PluginError;
use crate::control::{
    InvokeStatus, MAX_FILE_CHUNK, MAX_MESSAGE, MAX_TEXT_CHUNK, OutputKind, PluginMsg,
};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A verb's handler.
pub type Handler = dyn Fn(&mut VerbContext) -> Result<(), PluginError> + Send + Sync;

/// How the SDK sends a control message (the control socket; a capture in tests).
pub(crate) type SendFn = dyn Fn(&PluginMsg) -> Result<(), String> + Send + Sync;

/// Most invocations a plugin runs at once (the agent bounds them per plugin too).
pub const MAX_RUNNING: usize = 16;

/// Buffered text is sent at the latest this long after the previous send (or at the next
/// write after it), so a verb that prints a line and then works shows the line.
const TEXT_FLUSH_AFTER: Duration = Duration::from_millis(100);

/// The verbs a plugin serves, by name (the names its manifest's `cli:` declares).
#[derive(Clone, Default)]
pub struct Verbs {
    handlers: BTreeMap<String, Arc<Handler>>,
}

impl std::fmt::Debug for Verbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl Verbs {
    /// No verbs yet.
    pub fn new() -> Verbs {
        Verbs::default()
    }

    /// Adds verb `name` (replacing an earlier handler of that name).
    pub fn verb(
        mut self,
        name: &str,
        handler: impl Fn(&mut VerbContext) -> Result<(), PluginError> + Send + Sync + 'static,
    ) -> Verbs {
        self.handlers.insert(name.to_string(), Arc::new(handler));
        self
    }

    /// The verb names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Option<Arc<Handler>> {
        self.handlers.get(name).cloned()
    }
}

/// An invocation's arguments: every argument the manifest declares that has a value (given on
/// the command line or its default), already checked by the agent against its type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(BTreeMap<String, Value>);

impl Args {
    /// Arguments from the agent's `invoke` message.
    pub fn new(args: BTreeMap<String, Value>) -> Args {
        Args(args)
    }

    /// The raw value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A `string` or `enum` argument.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.as_str()
    }

    /// An `int` argument.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name)?.as_i64()
    }

    /// A `bool` argument (false when absent).
    pub fn flag(&self, name: &str) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A `duration` argument (it crosses as integer milliseconds).
    pub fn duration(&self, name: &str) -> Option<Duration> {
        self.0.get(name)?.as_u64().map(Duration::from_millis)
    }

    /// Every argument.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Set when the agent cancels an invocation; cheap to clone, usable from any thread.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<(Mutex<bool>, Condvar)>);

impl Cancellation {
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `d` for cancellation; true when cancelled (a cancellable sleep).
    pub fn wait_timeout(&self, d: Duration) -> bool {
        let (lock, cv) = &*self.0;
        let deadline = Instant::now() + d;
        let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !*c {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = cv
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Cancels (the SDK does this when the agent says `cancel`).
    pub fn cancel(&self) {
        let (lock, cv) = &*self.0;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }
}

/// What a verb's handler gets: its arguments, the output writers, cancellation.
pub struct VerbContext {
    id: u64,
    verb: String,
    args: Args,
    output: OutputKind,
    cancel: Cancellation,
    send: Arc<SendFn>,
    text: String,
    last_send: Instant,
    summary: String,
}

impl std::fmt::Debug for VerbContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbContext")
            .field("id", &self.id)
            .field("verb", &self.verb)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

fn cancelled_error() -> PluginError {
    PluginError("cancelled".into())
}

impl VerbContext {
    pub(crate) fn new(
        id: u64,
        verb: String,
        args: Args,
        output: OutputKind,
        cancel: Cancellation,
        send: Arc<SendFn>,
    ) -> VerbContext {
        VerbContext {
            id,
            verb,
            args,
            output,
            cancel,
            send,
            text: String::new(),
            last_send: Instant::now(),
            summary: String::new(),
        }
    }

    /// The verb's name.
    pub fn verb(&self) -> &str {
        &self.verb
    }

    /// The arguments.
    pub fn args(&self) -> &Args {
        &self.args
    }

    /// The output kind the operator asked for (one of the verb's declared kinds): write only
    /// that kind.
    pub fn output(&self) -> OutputKind {
        self.output
    }

    /// True once the agent cancelled this invocation; a verb that works for long should look
    /// often and return (any error will do: the invocation is reported as cancelled).
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The invocation's cancellation, for worker threads of the verb.
    pub fn cancellation(&self) -> Cancellation {
        self.cancel.clone()
    }

    /// Sends buffered text, then sleeps `d` unless cancelled first (`Err` then).
    pub fn sleep(&mut self, d: Duration) -> Result<(), PluginError> {
        self.flush()?;
        if self.cancel.wait_timeout(d) {
            return Err(cancelled_error());
        }
        Ok(())
    }

    /// A one-line summary the CLI prints on stderr when the verb ends well (e.g. what a file
    /// output holds).
    pub fn set_summary(&mut self, summary: &str) {
        self.summary = summary.chars().take(512).collect();
    }

    fn expect(&self, kind: OutputKind) -> Result<(), PluginError> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        if self.output != kind {
            return Err(PluginError(format!(
                "verb {} writes {} output, but the operator asked for {}",
                self.verb,
                kind.as_str(),
                self.output.as_str()
            )));
        }
        Ok(())
    }

    fn send(&mut self, msg: &PluginMsg) -> Result<(), PluginError> {
        if self.cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        self.last_send = Instant::now();
        (self.send)(msg).map_err(PluginError)
    }

    /// Appends text (sent in pieces of at most [`MAX_TEXT_CHUNK`] bytes, at the latest about
    /// 100 ms after the previous piece or when the verb returns).
    pub fn write_text(&mut self, text: &str) -> Result<(), PluginError> {
        self.expect(OutputKind::Text)?;
        self.text.push_str(text);
        while self.text.len() >= MAX_TEXT_CHUNK {
            let mut cut = MAX_TEXT_CHUNK;
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = self.text.split_off(cut);
            let piece = std::mem::replace(&mut self.text, rest);
            self.send(&PluginMsg::InvokeText {
                id: self.id,
                text: piece,
            })?;
        }
        if !self.text.is_empty() && self.last_send.elapsed() >= TEXT_FLUSH_AFTER {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends buffered text now.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        if self.text.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.text);
        self.send(&PluginMsg::InvokeText { id: self.id, text })
    }

    /// Writes one JSON value (the CLI prints one per line). One value must fit one control
    /// message (about 64 KiB encoded): write large results as several values.
    pub fn write_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PluginError> {
        self.expect(OutputKind::Json)?;
        let value = serde_json::to_value(value).map_err(|e| PluginError(format!("json: {e}")))?;
        let msg = PluginMsg::InvokeJson { id: self.id, value };
        let n = crate::control::encode(&msg).len();
        if n > MAX_MESSAGE {
            return Err(PluginError(format!(
                "a JSON value of {n} bytes does not fit one control message ({MAX_MESSAGE} bytes): write several values"
            )));
        }
        self.send(&msg)
    }

    /// Writes the next bytes of the file output, of `media_type` (one the manifest declares for
    /// this verb; the same for every call).
    pub fn write_file(&mut self, media_type: &str, bytes: &[u8]) -> Result<(), PluginError> {
        self.expect(OutputKind::File)?;
        for piece in bytes.chunks(MAX_FILE_CHUNK) {
            let data = base64::engine::general_purpose::STANDARD.encode(piece);
            self.send(&PluginMsg::InvokeFile {
                id: self.id,
                media_type: media_type.to_string(),
                data,
            })?;
        }
        Ok(())
    }

    /// After the handler returned: the rest of the text and the end message.
    fn finish(mut self, result: Result<(), PluginError>) {
        let result = result.and_then(|()| {
            if self.output == OutputKind::Text {
                self.flush()
            } else {
                Ok(())
            }
        });
        let (status, message) = match result {
            _ if self.cancel.is_cancelled() => (InvokeStatus::Cancelled, String::new()),
            Ok(()) => (InvokeStatus::Ok, std::mem::take(&mut self.summary)),
            Err(e) => (InvokeStatus::Failed, e.0.chars().take(1024).collect()),
        };
        let _ = (self.send)(&PluginMsg::InvokeEnd {
            id: self.id,
            status,
            message,
        });
    }
}

/// Runs invocations on threads of their own and cancels them (the plugin's end of `invoke` and
/// `cancel`).
pub(crate) struct Dispatcher {
    verbs: Option<Verbs>,
    running: Arc<Mutex<HashMap<u64, Cancellation>>>,
    send: Arc<SendFn>,
}

impl Dispatcher {
    pub(crate) fn new(verbs: Option<Verbs>, send: Arc<SendFn>) -> Dispatcher {
        Dispatcher {
            verbs,
            running: Arc::default(),
            send,
        }
    }

    fn refuse(&self, id: u64, message: String) {
        let _ = (self.send)(&PluginMsg::InvokeEnd {
            id,
            status: InvokeStatus::Failed,
            message,
        });
    }

    /// Starts invocation `id` (or answers at once why it cannot run).
    pub(crate) fn invoke(
        &self,
        id: u64,
        verb: String,
        args: BTreeMap<String, Value>,
        output: OutputKind,
    ) {
        let Some(handler) = self.verbs.as_ref().and_then(|v| v.get(&verb)) else {
            return self.refuse(id, format!("this plugin has no handler for verb {verb:?}"));
        };
        let cancel = Cancellation::default();
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.len() >= MAX_RUNNING || running.contains_key(&id) {
                drop(running);
                return self.refuse(id, format!("busy: {MAX_RUNNING} invocations running"));
            }
            running.insert(id, cancel.clone());
        }
        let running = self.running.clone();
        let ctx = VerbContext::new(id, verb, Args::new(args), output, cancel, self.send.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("srediag-verb-{id}"))
            .spawn(move || {
                let mut ctx = ctx;
                let result = handler(&mut ctx);
                ctx.finish(result);
                running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            });
        if let Err(e) = spawned {
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            self.refuse(id, format!("cannot start a thread for the verb: {e}"));
        }
    }

    /// Cancels invocation `id` (nothing when it already ended).
    pub(crate) fn cancel(&self, id: u64) {
        if let Some(c) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            c.cancel();
        }
    }

    /// Cancels every running invocation (shutdown).
    pub(crate) fn cancel_all(&self) {
        for c in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            c.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Arc<Mutex<Vec<PluginMsg>>>;

    fn capture() -> (Arc<SendFn>, Sent) {
        let sent: Sent = Arc::default();
        let s = sent.clone();
        let f: Arc<SendFn> = Arc::new(move |m: &PluginMsg| {
            s.lock().unwrap().push(m.clone());
            Ok(())
        });
        (f, sent)
    }

    fn ctx(output: OutputKind) -> (VerbContext, Sent, Cancellation) {
        let (send, sent) = capture();
        let cancel = Cancellation::default();
        let c = VerbContext::new(7, "v".into(), Args::default(), output, cancel.clone(), send);
        (c, sent, cancel)
    }

    #[test]
    fn text_is_cut_into_pieces_that_fit_a_message_at_char_boundaries() {
        let (mut c, sent, _) = ctx(OutputKind::Text);
        // Worst case for JSON escaping: control characters (6 bytes each when escaped).
        let evil = "\u{1}é".repeat(20_000);
        c.write_text(&evil).unwrap();
        c.finish(Ok(()));
        let sent = sent.lock().unwrap();
        let mut joined = String::new();
        for m in sent.iter() {
            assert!(crate::control::encode(m).len() <= MAX_MESSAGE);
            if let PluginMsg::InvokeText { id: 7, text } = m {
                assert!(text.len() <= MAX_TEXT_CHUNK);
                joined.push_str(text);
            }
        }
        assert_eq!(joined, evil);
        assert!(matches!(
            sent.last(),
            Some(PluginMsg::InvokeEnd {
                status: InvokeStatus::Ok,
                ..
            })
        ));
    }

    #[test]
    fn files_cross_in_base64_pieces_and_json_must_fit_one_message() {
        let (mut c, sent, _) = ctx(OutputKind::File);
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.write_file("application/octet-stream", &bytes).unwrap();
        assert!(
            c.write_text("no").is_err(),
            "text when a file was asked for"
        );
        let mut back = Vec::new();
        for m in sent.lock().unwrap().iter() {
            assert!(crate::control::encode(m).len() <= MAX_MESSAGE);
            if let PluginMsg::InvokeFile { data, .. } = m {
                back.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .unwrap(),
                );
            }
        }
        assert_eq!(back, bytes);
        let (mut j, _, _) = ctx(OutputKind::Json);
        assert!(j.write_json(&"x".repeat(70_000)).is_err());
        j.write_json(&serde_json::json!({"a": 1})).unwrap();
    }

    #[test]
    fn cancellation_stops_writes_and_sleeps_and_is_reported() {
        let (mut c, sent, cancel) = ctx(OutputKind::Text);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            cancel.cancel();
        });
        let started = Instant::now();
        assert!(c.sleep(Duration::from_secs(30)).is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        assert!(c.write_text("late").is_err());
        c.finish(Err(PluginError("stopped".into())));
        assert!(matches!(
            sent.lock().unwrap().last(),
            Some(PluginMsg::InvokeEnd {
                status: InvokeStatus::Cancelled,
                ..
            })
        ));
    }

    #[test]
    fn dispatcher_runs_refuses_and_cancels() {
        let (send, sent) = capture();
        let verbs = Verbs::new().verb("wait", |ctx: &mut VerbContext| {
            while !ctx.cancellation().wait_timeout(Duration::from_secs(10)) {}
            Err(PluginError("saw cancel".into()))
        });
        let d = Dispatcher::new(Some(verbs), send);
        d.invoke(1, "nope".into(), BTreeMap::new(), OutputKind::Text);
        d.invoke(2, "wait".into(), BTreeMap::new(), OutputKind::Text);
        d.cancel(2);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = sent.lock().unwrap();
            let ends: Vec<_> = s
                .iter()
                .filter_map(|m| match m {
                    PluginMsg::InvokeEnd { id, status, .. } => Some((*id, *status)),
                    _ => None,
                })
                .collect();
            if ends.len() == 2 {
                assert!(ends.contains(&(1, InvokeStatus::Failed)));
                assert!(ends.contains(&(2, InvokeStatus::Cancelled)));
                break;
            }
            drop(s);
            assert!(Instant::now() < deadline, "no end for the cancelled verb");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
