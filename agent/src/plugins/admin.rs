//! The admin socket (default `/run/srediag/srediag.sock`): root-only, checked with
//! `SO_PEERCRED`. One JSON request line, one JSON response line.

use super::manager::Manager;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Default admin socket path.
pub const DEFAULT_SOCKET: &str = "/run/srediag/srediag.sock";

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

/// Binds the socket (0600, replacing a stale one) and serves it in the background.
pub fn serve(path: &Path, manager: Arc<Manager>) -> Result<(), AdminError> {
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
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let manager = manager.clone();
            tokio::spawn(async move {
                let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = BufReader::new(rd.take_limited());
                let resp = if uid != 0 {
                    AdminResponse {
                        ok: false,
                        error: Some(format!("permission denied: uid {uid} is not root")),
                        data: serde_json::Value::Null,
                    }
                } else if rd.read_line(&mut line).await.is_err() {
                    return;
                } else if let Ok(AdminRequest::SeccompEvents { follow }) =
                    serde_json::from_str::<AdminRequest>(&line)
                {
                    stream_violations(follow, &mut wr).await;
                    return;
                } else {
                    handle(&line, &manager).await
                };
                let mut out = serde_json::to_vec(&resp).unwrap_or_default();
                out.push(b'\n');
                let _ = wr.write_all(&out).await;
            });
        }
    });
    Ok(())
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
async fn stream_violations(follow: bool, wr: &mut tokio::net::unix::OwnedWriteHalf) {
    let Some(obs) = crate::bpf::observers() else {
        let mut out = serde_json::to_vec(&bpf_unavailable()).unwrap_or_default();
        out.push(b'\n');
        let _ = wr.write_all(&out).await;
        return;
    };
    let mut rx = obs.subscribe();
    let recent = obs.recent_violations();
    drop(obs);
    let mut out = serde_json::to_vec(&ok_data(serde_json::to_value(&recent).unwrap_or_default()))
        .unwrap_or_default();
    out.push(b'\n');
    if wr.write_all(&out).await.is_err() || !follow {
        return;
    }
    loop {
        match rx.recv().await {
            Ok(v) => {
                if recent.contains(&v) {
                    continue; // already in the snapshot
                }
                let mut line = serde_json::to_vec(&v).unwrap_or_default();
                line.push(b'\n');
                if wr.write_all(&line).await.is_err() {
                    return; // the client went away
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let line = format!("{{\"lagged\":{n}}}\n");
                if wr.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

trait TakeLimited: Sized {
    fn take_limited(self) -> tokio::io::Take<Self>;
}

impl<T: tokio::io::AsyncRead> TakeLimited for T {
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, 64 * 1024)
    }
}

async fn handle(line: &str, manager: &Manager) -> AdminResponse {
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
            if let (Some(obs), Some(list)) = (crate::bpf::observers(), data.as_array_mut()) {
                for p in list {
                    let name = p["name"].as_str().unwrap_or_default().to_owned();
                    p["kernel"] = serde_json::to_value(obs.plugin_stats(&name)).unwrap_or_default();
                }
            }
            ok_data(data)
        }
        AdminRequest::BpfStatus => match crate::bpf::observers() {
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
        AdminRequest::BpfStats { seconds } => match crate::bpf::observers() {
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
        AdminRequest::SeccompEvents { .. } => ok_data(serde_json::Value::Null), // streamed above
        AdminRequest::PluginIpcSampling { name, every } => {
            match manager.set_ipc_sampling(&name, every) {
                Ok(()) => ok_data(serde_json::json!({
                    "plugin": name,
                    "probe_sampling": every,
                    "ipc_latency_observer": crate::bpf::observers()
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
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to the agent's admin socket {}: {e} (is `srediag run` running, and are you root?)", path.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
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
