//! The `otlp` receiver: OTLP/HTTP (`POST /v1/logs`, `POST /v1/metrics`) with protobuf or JSON
//! bodies, optionally gzip-compressed, as the OTLP specification describes.
//!
//! What one client can make the agent hold is bounded: a request whose `Content-Length` is over
//! `max_request_body_size` is answered 413 at once and the connection closed (nothing is read);
//! the request line and headers must arrive within `read_header_timeout`, which also bounds how
//! long a kept-alive connection may sit idle (hyper's header timer runs while it waits for the
//! next request); the body must arrive within `read_timeout` (else 408, closed). Connections are
//! served with hyper's HTTP/1 builder directly (`axum::serve` cannot set the header timeout).

use crate::model::{Batch, Logs, Metrics, Signal};
use crate::pipeline::{
    BoxFuture, BuildContext, BuildError, Receiver, ReceiverOutput, Refused, Shutdown,
    shutdown_signalled,
};
use crate::telemetry::ComponentMetrics;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// `otlp` receiver settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Transport protocols. Only `http` exists; it is on by default.
    pub protocols: Protocols,
}

/// `protocols`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/HTTP. Default: enabled on `127.0.0.1:4318`.
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols {
            http: Some(HttpConfig::default()),
        }
    }
}

/// `protocols.http`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Default `127.0.0.1:4318` (the OTLP/HTTP port, on loopback: the agent runs
    /// as root; expose it deliberately).
    pub endpoint: String,
    /// Largest accepted request body in bytes, after decompression; a larger declared
    /// `Content-Length` is refused (413) before anything is read. Default 20 MiB, as in the
    /// OpenTelemetry Collector.
    pub max_request_body_size: usize,
    /// Longest time to receive a request's line and headers, and longest idle time of a
    /// kept-alive connection between requests; then the connection is closed. Default 10s.
    #[serde(with = "humantime_serde")]
    pub read_header_timeout: Duration,
    /// Longest time to receive a request's body once its headers arrived; then 408 and the
    /// connection is closed. Default 30s.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let Some(http) = &self.protocols.http else {
            return Err((
                "protocols".into(),
                "no protocol enabled: add `http: {}`".into(),
            ));
        };
        if let Err(e) = http.endpoint.parse::<std::net::SocketAddr>() {
            return Err((
                "protocols.http.endpoint".into(),
                format!(
                    "invalid listen address {:?}: {e} (expected `ip:port`)",
                    http.endpoint
                ),
            ));
        }
        if http.max_request_body_size == 0 {
            return Err((
                "protocols.http.max_request_body_size".into(),
                "must be at least 1".into(),
            ));
        }
        for (key, d) in [
            ("read_header_timeout", http.read_header_timeout),
            ("read_timeout", http.read_timeout),
        ] {
            if d.is_zero() {
                return Err((
                    format!("protocols.http.{key}"),
                    "must be greater than 0".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A bound, not yet running, receiver.
pub struct OtlpReceiver {
    listener: TcpListener,
    state: Arc<Shared>,
}

struct Shared {
    id: String,
    max_body: usize,
    header_timeout: Duration,
    read_timeout: Duration,
    errors: ComponentMetrics,
    out: std::sync::OnceLock<ReceiverOutput>,
}

impl OtlpReceiver {
    /// Binds the listener now.
    pub async fn bind(cfg: &Config, ctx: &BuildContext) -> Result<Self, BuildError> {
        let http = cfg.protocols.http.clone().unwrap_or_default();
        let listener =
            TcpListener::bind(&http.endpoint)
                .await
                .map_err(|source| BuildError::Bind {
                    id: format!("receivers.{}.protocols.http.endpoint", ctx.id),
                    addr: http.endpoint.clone(),
                    source,
                })?;
        Ok(OtlpReceiver {
            listener,
            state: Arc::new(Shared {
                id: ctx.id.clone(),
                max_body: http.max_request_body_size,
                header_timeout: http.read_header_timeout,
                read_timeout: http.read_timeout,
                errors: ctx.telemetry.component("receiver", &ctx.id),
                out: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

impl Receiver for OtlpReceiver {
    fn run(self: Box<Self>, out: ReceiverOutput, mut shutdown: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.state.out.set(out);
            let app = Router::new()
                .route("/v1/logs", post(logs))
                .route("/v1/metrics", post(metrics))
                .layer(DefaultBodyLimit::max(self.state.max_body))
                .with_state(self.state.clone());
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(self.state.header_timeout);
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            loop {
                let tcp = tokio::select! {
                    r = self.listener.accept() => match r {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // Out of fds and the like: wait instead of spinning.
                            tracing::warn!(receiver = %self.state.id, error = %e, "OTLP/HTTP accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = shutdown_signalled(&mut shutdown) => break,
                };
                let _ = tcp.set_nodelay(true);
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn =
                    graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc));
                tokio::spawn(async move {
                    // Errors here are one client's (reset, parse error, header timeout). A header
                    // timeout is not counted: hyper gives the same error for an idle kept-alive
                    // connection, which is no fault of the client.
                    let _ = conn.await;
                });
            }
            // As axum::serve's graceful shutdown: idle connections close, requests in flight
            // finish (each bounded by the read timeouts).
            drop(self.listener);
            graceful.shutdown().await;
        })
    }
}

/// The OTLP error body (`google.rpc.Status`).
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

fn reply(code: StatusCode, enc: Encoding, message: String) -> Response {
    match enc {
        Encoding::Protobuf => {
            let body = Status {
                code: if code.is_server_error() { 14 } else { 3 },
                message,
            }
            .encode_to_vec();
            (
                code,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response()
        }
        Encoding::Json => {
            let body = serde_json::json!({ "code": if code.is_server_error() { 14 } else { 3 }, "message": message });
            (
                code,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// Decompresses (when asked) and bounds the body.
fn body_bytes(
    headers: &HeaderMap,
    body: Bytes,
    max: usize,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    match enc.as_str() {
        "identity" | "" => Ok(body.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(&body[..]).take(max as u64 + 1);
            d.read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if out.len() > max {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decompressed body exceeds {max} bytes"),
                ));
            }
            Ok(out)
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}: use gzip or none"),
        )),
    }
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(format!(
            "unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"
        )),
    }
}

fn decode(signal: Signal, enc: Encoding, bytes: &[u8]) -> Result<Batch, String> {
    match (signal, enc) {
        (Signal::Logs, Encoding::Protobuf) => Logs::decode(bytes)
            .map(Batch::Logs)
            .map_err(|e| e.to_string()),
        (Signal::Metrics, Encoding::Protobuf) => Metrics::decode(bytes)
            .map(Batch::Metrics)
            .map_err(|e| e.to_string()),
        (Signal::Logs, Encoding::Json) => crate::model::logs_from_json(bytes)
            .map(Batch::Logs)
            .map_err(|e| e.to_string()),
        (Signal::Metrics, Encoding::Json) => crate::model::metrics_from_json(bytes)
            .map(Batch::Metrics)
            .map_err(|e| e.to_string()),
    }
}

fn ok_body(signal: Signal, enc: Encoding) -> Response {
    match enc {
        Encoding::Protobuf => {
            let body = match signal {
                Signal::Logs => opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::default().encode_to_vec(),
                Signal::Metrics => {
                    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::default().encode_to_vec()
                }
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response()
        }
        Encoding::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
    }
}

/// An answer that also closes the connection (the request body is not read).
fn reply_and_close(code: StatusCode, enc: Encoding, message: String) -> Response {
    let mut r = reply(code, enc, message);
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// The declared `Content-Length`, when there is one (a malformed one is left to hyper, which
/// refuses it before the handler runs).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the body within the read timeout and the size limit.
async fn read_body(
    state: &Shared,
    enc: Encoding,
    body: axum::body::Body,
) -> Result<Bytes, Response> {
    match tokio::time::timeout(
        state.read_timeout,
        axum::body::to_bytes(body, state.max_body),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let inner = e.into_inner();
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(reply_and_close(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    enc,
                    format!("body exceeds {} bytes", state.max_body),
                ))
            } else {
                Err(reply_and_close(
                    StatusCode::BAD_REQUEST,
                    enc,
                    format!("cannot read the body: {inner}"),
                ))
            }
        }
        Err(_) => Err(reply_and_close(
            StatusCode::REQUEST_TIMEOUT,
            enc,
            format!(
                "body not received within {} (read_timeout)",
                humantime::format_duration(state.read_timeout)
            ),
        )),
    }
}

async fn handle(state: Arc<Shared>, signal: Signal, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let Some(out) = state.out.get() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Encoding::Protobuf,
            "receiver is starting".into(),
        );
    };
    let enc = match encoding(headers) {
        Ok(e) => e,
        Err(m) => return reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, Encoding::Protobuf, m),
    };
    if let Some(len) = declared_length(headers)
        && len > state.max_body as u64
    {
        // Refused before reading anything: a client declaring 10 GiB and sending 3 bytes must
        // not hold the connection until it gives up.
        state.errors.errors.inc();
        return reply_and_close(
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            format!(
                "declared Content-Length {len} exceeds max_request_body_size {}",
                state.max_body
            ),
        );
    }
    if !out.accepts(signal) {
        return reply(
            StatusCode::NOT_FOUND,
            enc,
            format!("no pipeline takes {signal} from receiver {}", state.id),
        );
    }
    let body = match read_body(&state, enc, body).await {
        Ok(b) => b,
        Err(r) => {
            state.errors.errors.inc();
            return r;
        }
    };
    let bytes = match body_bytes(headers, body, state.max_body) {
        Ok(b) => b,
        Err((code, m)) => {
            state.errors.errors.inc();
            return reply(code, enc, m);
        }
    };
    let batch = match decode(signal, enc, &bytes) {
        Ok(b) => b,
        Err(m) => {
            state.errors.errors.inc();
            tracing::debug!(receiver = %state.id, %signal, error = %m, "malformed OTLP request");
            return reply(
                StatusCode::BAD_REQUEST,
                enc,
                format!("malformed OTLP {signal} request: {m}"),
            );
        }
    };
    match out.send(batch).await {
        Ok(()) => ok_body(signal, enc),
        Err(Refused::NoPipeline) => reply(
            StatusCode::NOT_FOUND,
            enc,
            format!("no pipeline takes {signal}"),
        ),
        Err(Refused::ShuttingDown) => {
            let mut r = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                enc,
                "shutting down; retry later".into(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
    }
}

async fn logs(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle(s, Signal::Logs, req).await
}

async fn metrics(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle(s, Signal::Metrics, req).await
}
