//! The admin socket (default `/run/srediag/srediag.sock`): root-only, checked with
//! `SO_PEERCRED`. One JSON request line, one JSON response line.
//!
//! What a client can make the agent hold is bounded:
//! - the request line: at most 64 KiB, within [`REQUEST_TIMEOUT`] of the connect (else the
//!   connection is closed, `reason="timeout"`);
//! - connections: at most [`MAX_CONNECTIONS`] at once. A connection over the limit evicts the
//!   oldest one still waiting for its request line (`reason="evicted"`), so idle connections
//!   cannot lock the operator out; when every slot is busy answering or streaming, it is closed
//!   at once (`reason="limit"`);
//! - each write of an answer or of a streamed event: [`WRITE_TIMEOUT`] (a client that stops
//!   reading is dropped).
//!
//! Counted in `srediag_admin_connections_closed_total{reason}`; `srediag_admin_connections` is
//! the number open.

use super::manager::Manager;
use super::reload::Reloader;
use crate::bpf::PluginObservers;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

/// Default admin socket path.
pub const DEFAULT_SOCKET: &str = "/run/srediag/srediag.sock";

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest wait for the request line after the connect.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one write of an answer or streamed event.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request line.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Why the agent closed an admin connection (`srediag_admin_connections_closed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Over the limit while every slot was busy.
    Limit,
    /// Evicted (the oldest connection still waiting for its request line) for a new one.
    Evicted,
    /// No complete request line within [`REQUEST_TIMEOUT`].
    Timeout,
    /// A write took longer than [`WRITE_TIMEOUT`].
    WriteTimeout,
}

impl CloseReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Limit => "limit",
            CloseReason::Evicted => "evicted",
            CloseReason::Timeout => "timeout",
            CloseReason::WriteTimeout => "write_timeout",
        }
    }
}

/// The admin socket's metrics.
#[derive(Clone)]
pub struct AdminMetrics {
    /// `srediag_admin_connections`.
    pub open: IntGauge,
    /// `srediag_admin_connections_closed_total{reason}`.
    pub closed: IntCounterVec,
}

impl AdminMetrics {
    /// Registers the metrics (every reason starts at 0).
    pub fn new(r: Option<&Registry>) -> AdminMetrics {
        let open = IntGauge::new(
            "srediag_admin_connections",
            "Connections open on the admin socket.",
        )
        .expect("static");
        let closed = IntCounterVec::new(
            Opts::new(
                "srediag_admin_connections_closed_total",
                "Admin socket connections the agent closed, by reason (limit, evicted, timeout, write_timeout).",
            ),
            &["reason"],
        )
        .expect("static");
        for reason in [
            CloseReason::Limit,
            CloseReason::Evicted,
            CloseReason::Timeout,
            CloseReason::WriteTimeout,
        ] {
            closed.with_label_values(&[reason.as_str()]);
        }
        if let Some(r) = r {
            let _ = r.register(Box::new(open.clone()));
            let _ = r.register(Box::new(closed.clone()));
        }
        AdminMetrics { open, closed }
    }

    fn close(&self, reason: CloseReason) {
        self.closed.with_label_values(&[reason.as_str()]).inc();
    }
}

/// The open connections: how many, and which still wait for their request line (oldest first).
struct Conns {
    max: usize,
    metrics: AdminMetrics,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    next: u64,
    open: usize,
    /// Connections waiting for their request line, by id (ids grow: oldest first).
    idle: BTreeMap<u64, oneshot::Sender<()>>,
    /// Evicted connections whose slot was already handed on.
    released: BTreeSet<u64>,
}

/// One admitted connection; dropping it frees its slot.
struct ConnGuard {
    conns: Arc<Conns>,
    id: u64,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection (evicting the oldest idle one when full), or refuses it.
    fn admit(self: &Arc<Self>) -> Option<(ConnGuard, oneshot::Receiver<()>)> {
        let mut s = self.lock();
        if s.open >= self.max {
            let Some((old, tx)) = s.idle.pop_first() else {
                self.metrics.close(CloseReason::Limit);
                return None;
            };
            let _ = tx.send(());
            s.released.insert(old);
            s.open -= 1;
            self.metrics.close(CloseReason::Evicted);
        }
        let id = s.next;
        s.next += 1;
        s.open += 1;
        let (tx, rx) = oneshot::channel();
        s.idle.insert(id, tx);
        self.metrics.open.set(s.open as i64);
        Some((
            ConnGuard {
                conns: self.clone(),
                id,
            },
            rx,
        ))
    }
}

impl ConnGuard {
    /// The request line arrived: no longer evictable.
    fn busy(&self) {
        self.conns.lock().idle.remove(&self.id);
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut s = self.conns.lock();
        s.idle.remove(&self.id);
        if !s.released.remove(&self.id) {
            s.open -= 1;
        }
        self.conns.metrics.open.set(s.open as i64);
    }
}

/// A request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Status of every plugin.
    PluginList,
    /// Restart one plugin (also leaves quarantine).
    PluginRestart {
        /// Plugin name.
        name: String,
    },
    /// Set a plugin's probe sampling period (IPC latency observer) on its current rings and
    /// future ones, without restarting it; 0 = off.
    PluginIpcSampling {
        /// Plugin name.
        name: String,
        /// Batches whose `seq` is a multiple of this are sampled (0 = none).
        every: u32,
    },
    /// The eBPF observers: which run, how they are attached, why any is down.
    BpfStatus,
    /// Turn the kernel's BPF run-time statistics on for `seconds` (0: only report), and report
    /// each program's accumulated run time.
    BpfStats {
        /// How long to keep BPF_ENABLE_STATS on (at most an hour).
        #[serde(default)]
        seconds: u64,
    },
    /// Recent seccomp violation events; with `follow`, the connection then streams every new
    /// event as one JSON line until the client closes it.
    SeccompEvents {
        /// Keep streaming.
        #[serde(default)]
        follow: bool,
    },
    /// Hot swap of one plugin, make before break: verify, start the new incarnation, drain the
    /// old one (`srediag plugin upgrade`).
    PluginUpgrade {
        /// Plugin name.
        name: String,
        /// Another bundle directory (default: the configured one, read again).
        #[serde(default)]
        bundle: Option<std::path::PathBuf>,
    },
    /// Read the configuration again and swap the plugins that changed (`srediag reload`).
    Reload,
    /// Every plugin's diagnostics verbs (from its verified manifest's `cli:`) and its state.
    PluginVerbs,
    /// Run a plugin's verb: the answer line, then one line per frame until the `end` frame
    /// (`plugins/verbs/stream.rs`, docs/ipc.md). Closing the connection cancels it.
    PluginInvoke {
        /// Plugin name.
        plugin: String,
        /// Verb name.
        verb: String,
        /// Typed arguments (checked against the manifest by the plugin's supervisor).
        #[serde(default)]
        args: BTreeMap<String, serde_json::Value>,
        /// The output kind asked for.
        output: srediag_plugin_sdk::control::OutputKind,
    },
}

/// A response.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminResponse {
    /// True on success.
    pub ok: bool,
    /// The error, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The data, when ok.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// Binding the admin socket failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on admin socket {path}: {source}")]
pub struct AdminError {
    /// The socket path.
    pub path: String,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// What the admin socket acts on.
pub struct AdminContext {
    /// The plugins.
    pub manager: Arc<Manager>,
    /// `srediag reload` (absent in agents that cannot reload, e.g. tests).
    pub reloader: Option<Arc<Reloader>>,
    /// The eBPF observers (`plugin list`'s kernel columns, `bpf status`, `bpf stats`,
    /// `seccomp events`).
    pub observers: Arc<dyn PluginObservers>,
}

/// Binds the socket (0600, replacing a stale one) and serves it in the background.
pub fn serve(path: &Path, ctx: Arc<AdminContext>, metrics: AdminMetrics) -> Result<(), AdminError> {
    let err = |source| AdminError {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        // A live agent answers on it; a stale file from a killed agent does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another srediag is running",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let conns = Arc::new(Conns {
        max: MAX_CONNECTIONS,
        metrics,
        state: Mutex::new(ConnState::default()),
    });
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of fds (EMFILE) and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some((guard, evicted)) = conns.admit() else {
                drop(stream); // over the limit, every slot busy: closed at once (counted)
                continue;
            };
            tokio::spawn(serve_one(stream, guard, evicted, ctx.clone()));
        }
    });
    Ok(())
}

/// Writes `v` as one JSON line within [`WRITE_TIMEOUT`]; false when the client is gone or too
/// slow.
pub(crate) async fn write_line<T: Serialize>(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    v: &T,
    metrics: &AdminMetrics,
) -> bool {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    write_bounded(wr, &out, metrics).await
}

/// Writes `bytes` within [`WRITE_TIMEOUT`]; false when the client is gone or too slow.
async fn write_bounded(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    bytes: &[u8],
    metrics: &AdminMetrics,
) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            metrics.close(CloseReason::WriteTimeout);
            false
        }
    }
}

async fn serve_one(
    stream: tokio::net::UnixStream,
    guard: ConnGuard,
    evicted: oneshot::Receiver<()>,
    ctx: Arc<AdminContext>,
) {
    let metrics = guard.conns.metrics.clone();
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let (rd, mut wr) = stream.into_split();
    let resp = if uid != 0 {
        guard.busy();
        AdminResponse {
            ok: false,
            error: Some(format!("permission denied: uid {uid} is not root")),
            data: serde_json::Value::Null,
        }
    } else {
        let mut line = String::new();
        let mut rd = BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_REQUEST_BYTES));
        tokio::select! {
            r = tokio::time::timeout(REQUEST_TIMEOUT, rd.read_line(&mut line)) => match r {
                Err(_) => {
                    metrics.close(CloseReason::Timeout);
                    return;
                }
                Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
            },
            _ = evicted => return, // counted by the admitting side
        }
        guard.busy();
        match serde_json::from_str::<AdminRequest>(&line) {
            Ok(AdminRequest::SeccompEvents { follow }) => {
                stream_violations(ctx.observers.bpf(), follow, rd, &mut wr, &metrics).await;
                return;
            }
            Ok(AdminRequest::PluginInvoke {
                plugin,
                verb,
                args,
                output,
            }) => {
                let req = super::verbs::stream::Invoke {
                    plugin,
                    verb,
                    args,
                    output,
                };
                super::verbs::stream::serve(&ctx.manager, req, rd, &mut wr, &metrics).await;
                return;
            }
            _ => {}
        }
        handle(&line, &ctx).await
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    write_bounded(&mut wr, &out, &metrics).await;
}

fn bpf_unavailable() -> AdminResponse {
    AdminResponse {
        ok: false,
        error: Some("the eBPF observers are not running in this agent".into()),
        data: serde_json::Value::Null,
    }
}

fn ok_data(data: serde_json::Value) -> AdminResponse {
    AdminResponse {
        ok: true,
        error: None,
        data,
    }
}

/// Writes the recent violations as the response, then (with `follow`) every new one as a line.
/// A follower whose client went away is noticed at once (its read side ends), not only at the
/// next event, so dead followers do not hold connection slots.
async fn stream_violations(
    observers: Option<&crate::bpf::Observers>,
    follow: bool,
    mut rd: impl tokio::io::AsyncRead + Unpin,
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    metrics: &AdminMetrics,
) {
    let Some(obs) = observers else {
        let mut out = serde_json::to_vec(&bpf_unavailable()).unwrap_or_default();
        out.push(b'\n');
        write_bounded(wr, &out, metrics).await;
        return;
    };
    let mut rx = obs.subscribe();
    let recent = obs.recent_violations();
    let mut out = serde_json::to_vec(&ok_data(serde_json::to_value(&recent).unwrap_or_default()))
        .unwrap_or_default();
    out.push(b'\n');
    if !write_bounded(wr, &out, metrics).await || !follow {
        return;
    }
    let mut scratch = [0u8; 512];
    loop {
        let event = tokio::select! {
            ev = rx.recv() => ev,
            // Bytes after the request are ignored; EOF, an error, or the 64 KiB request budget
            // used up ends the stream.
            n = tokio::io::AsyncReadExt::read(&mut rd, &mut scratch) => match n {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        match event {
            Ok(v) => {
                if recent.contains(&v) {
                    continue; // already in the snapshot
                }
                let mut line = serde_json::to_vec(&v).unwrap_or_default();
                line.push(b'\n');
                if !write_bounded(wr, &line, metrics).await {
                    return; // the client went away or stopped reading
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let line = format!("{{\"lagged\":{n}}}\n");
                if !write_bounded(wr, line.as_bytes(), metrics).await {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn handle(line: &str, ctx: &AdminContext) -> AdminResponse {
    let manager = &ctx.manager;
    let observers = ctx.observers.bpf();
    let req: AdminRequest = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            return AdminResponse {
                ok: false,
                error: Some(format!("bad request: {e}")),
                data: serde_json::Value::Null,
            };
        }
    };
    match req {
        AdminRequest::PluginList => {
            let mut data = serde_json::to_value(manager.list()).unwrap_or_default();
            if let (Some(obs), Some(list)) = (observers, data.as_array_mut()) {
                for p in list {
                    let name = p["name"].as_str().unwrap_or_default().to_owned();
                    p["kernel"] = serde_json::to_value(obs.plugin_stats(&name)).unwrap_or_default();
                }
            }
            ok_data(data)
        }
        AdminRequest::BpfStatus => match observers {
            None => bpf_unavailable(),
            Some(obs) => {
                let (on, left) = obs.stats_window();
                ok_data(serde_json::json!({
                    "loaded": obs.is_loaded(),
                    "observers": obs.status(),
                    "ipc_attachments": obs.ipc_attachments(),
                    "map_memory": obs.map_memory().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                    "stats_enabled": on,
                    "stats_remaining_seconds": left.as_secs_f64(),
                }))
            }
        },
        AdminRequest::BpfStats { seconds } => match observers {
            None => bpf_unavailable(),
            Some(obs) => {
                if seconds > 0
                    && let Err(e) = obs.enable_stats(std::time::Duration::from_secs(seconds))
                {
                    return AdminResponse {
                        ok: false,
                        error: Some(e.to_string()),
                        data: serde_json::Value::Null,
                    };
                }
                let (on, left) = obs.stats_window();
                ok_data(serde_json::json!({
                    "stats_enabled": on,
                    "stats_remaining_seconds": left.as_secs_f64(),
                    "programs": obs.program_stats(),
                }))
            }
        },
        AdminRequest::SeccompEvents { .. } | AdminRequest::PluginInvoke { .. } => {
            ok_data(serde_json::Value::Null) // streamed above
        }
        AdminRequest::PluginVerbs => {
            ok_data(serde_json::to_value(manager.verbs()).unwrap_or_default())
        }
        AdminRequest::PluginIpcSampling { name, every } => {
            match manager.set_ipc_sampling(&name, every) {
                Ok(()) => ok_data(serde_json::json!({
                    "plugin": name,
                    "probe_sampling": every,
                    "ipc_latency_observer": observers
                        .map(|o| o.status().iter().any(|s| s.name == "ipc_latency" && s.up))
                        .unwrap_or(false),
                })),
                Err(e) => AdminResponse {
                    ok: false,
                    error: Some(e),
                    data: serde_json::Value::Null,
                },
            }
        }
        AdminRequest::PluginUpgrade { name, bundle } => {
            match manager
                .swap(
                    &name,
                    super::swap::SwapChange {
                        config: None,
                        bundle,
                    },
                )
                .await
            {
                Ok(r) => ok_data(serde_json::to_value(r).unwrap_or_default()),
                Err(e) => AdminResponse {
                    ok: false,
                    error: Some(e.to_string()),
                    data: serde_json::Value::Null,
                },
            }
        }
        AdminRequest::Reload => match &ctx.reloader {
            None => AdminResponse {
                ok: false,
                error: Some("this agent cannot reload its configuration".into()),
                data: serde_json::Value::Null,
            },
            Some(r) => match r.reload().await {
                Ok(report) => ok_data(serde_json::to_value(report).unwrap_or_default()),
                Err(e) => AdminResponse {
                    ok: false,
                    error: Some(e.to_string()),
                    data: serde_json::json!({"invalid": matches!(e, super::reload::ReloadError::Invalid(_))}),
                },
            },
        },
        AdminRequest::PluginRestart { name } => match manager.restart(&name).await {
            Ok(()) => AdminResponse {
                ok: true,
                error: None,
                data: serde_json::Value::Null,
            },
            Err(e) => AdminResponse {
                ok: false,
                error: Some(e),
                data: serde_json::Value::Null,
            },
        },
    }
}

/// Sends one request to a running agent (the CLI side).
pub fn request(path: &Path, req: &AdminRequest) -> Result<AdminResponse, String> {
    request_within(path, req, std::time::Duration::from_secs(10))
}

/// Like [`request`], waiting up to `patience` for the answer (a hot swap drains for up to its
/// drain timeout).
pub fn request_within(
    path: &Path,
    req: &AdminRequest,
    patience: std::time::Duration,
) -> Result<AdminResponse, String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to the agent's admin socket {}: {e} (is `srediag run` running, and are you root?)", path.display()))?;
    s.set_read_timeout(Some(patience)).ok();
    let mut body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    body.push(b'\n');
    s.write_all(&body)
        .map_err(|e| format!("admin socket write: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("admin socket read: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("bad answer from the agent: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(m: &AdminMetrics, r: CloseReason) -> u64 {
        m.closed.with_label_values(&[r.as_str()]).get()
    }

    #[test]
    fn admission_evicts_the_oldest_idle_connection_then_refuses() {
        let metrics = AdminMetrics::new(None);
        let conns = Arc::new(Conns {
            max: 2,
            metrics: metrics.clone(),
            state: Mutex::new(ConnState::default()),
        });
        let (a, mut evicted_a) = conns.admit().unwrap();
        let (b, mut evicted_b) = conns.admit().unwrap();
        b.busy();
        // Full: the oldest connection still waiting for its request (a) makes room.
        let (c, _evicted_c) = conns.admit().unwrap();
        assert!(evicted_a.try_recv().is_ok(), "a was not told to close");
        assert!(
            evicted_b.try_recv().is_err(),
            "a busy connection was evicted"
        );
        assert_eq!(metrics.open.get(), 2);
        c.busy();
        // Every slot busy: refused at once.
        assert!(conns.admit().is_none());
        // The evicted one closing does not free a second slot.
        drop(a);
        assert!(conns.admit().is_none());
        assert_eq!(metrics.open.get(), 2);
        drop(b);
        assert!(conns.admit().is_some());
        assert_eq!(closed(&metrics, CloseReason::Evicted), 1);
        assert_eq!(closed(&metrics, CloseReason::Limit), 2);
        drop(c);
    }
}
