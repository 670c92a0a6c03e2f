//! The `otlp` receiver: OTLP/HTTP (`POST /v1/logs`, `POST /v1/metrics`) with protobuf or JSON
//! bodies, optionally gzip-compressed, as the OTLP specification describes.
//!
//! What one client can make the agent hold is bounded: a request whose `Content-Length` is over
//! `max_request_body_size` is answered 413 at once and the connection closed (nothing is read);
//! the request line and headers must arrive within `read_header_timeout`, which also bounds how
//! long a kept-alive connection may sit idle (hyper's header timer runs while it waits for the
//! next request); the body must arrive within `read_timeout` (else 408, closed). Connections are
//! served with hyper's HTTP/1 builder directly (`axum::serve` cannot set the header timeout).
//! What all clients together can make it hold is bounded too (`max_connections`,
//! `max_inflight_body_size`, `max_decoded_size`: see [`super::otlp_limits`]).

use super::otlp_limits::{BodyBudget, Connections, Held, decoded_estimate};
use crate::model::{Batch, Logs, Metrics, Signal};
use crate::pipeline::{
    BoxFuture, BuildContext, BuildError, Receiver, ReceiverOutput, Refused, Shutdown,
    shutdown_signalled,
};
use crate::telemetry::ComponentMetrics;
use axum::Router;
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
    /// Most connections served at once; one over it is closed as soon as it is accepted (and
    /// counted as a receiver error). Default 256.
    pub max_connections: usize,
    /// Bytes of request bodies (compressed as received, then decompressed) the receiver holds
    /// across all connections at once; a request that would go over it is answered 503 with
    /// `Retry-After: 1` and its connection closed. At least `max_request_body_size`. Default
    /// 64 MiB.
    pub max_inflight_body_size: usize,
    /// Largest estimated memory of one decoded request (its structs, strings and the JSON
    /// tree), checked on the wire format before decoding; over it the request is answered 413.
    /// Ordinary protobuf requests decode to 1–4× their size, JSON to more. Default 128 MiB.
    pub max_decoded_size: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_inflight_body_size: 64 * 1024 * 1024,
            max_decoded_size: 128 * 1024 * 1024,
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
        for (key, v) in [
            ("max_request_body_size", http.max_request_body_size),
            ("max_connections", http.max_connections),
            ("max_decoded_size", http.max_decoded_size),
        ] {
            if v == 0 {
                return Err((format!("protocols.http.{key}"), "must be at least 1".into()));
            }
        }
        if http.max_inflight_body_size < http.max_request_body_size {
            return Err((
                "protocols.http.max_inflight_body_size".into(),
                format!(
                    "{} is below max_request_body_size {}: no request of the largest size could be read",
                    http.max_inflight_body_size, http.max_request_body_size
                ),
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
    max_decoded: usize,
    connections: Connections,
    budget: BodyBudget,
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
                max_decoded: http.max_decoded_size,
                connections: Connections::new(http.max_connections),
                budget: BodyBudget::new(http.max_inflight_body_size),
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
                let Some(permit) = self.state.connections.admit() else {
                    // Over max_connections: closed at once (the client sees a reset or EOF).
                    self.state.errors.errors.inc();
                    drop(tcp);
                    continue;
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
                    drop(permit);
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

/// Why a body was not taken.
enum BodyError {
    /// Answered with this status and message (the connection stays open).
    Reply(StatusCode, String),
    /// The in-flight budget is spent: 503, `Retry-After`, connection closed.
    Busy,
}

/// Decompresses (when asked) and bounds the body; the decompressed bytes are charged to the
/// in-flight budget as they are produced.
fn body_bytes(
    headers: &HeaderMap,
    body: Vec<u8>,
    max: usize,
    budget: &BodyBudget,
    held: &mut Held,
) -> Result<Vec<u8>, BodyError> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    match enc.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(&body[..]).take(max as u64 + 1);
            let mut chunk = [0u8; 64 * 1024];
            loop {
                let n = d.read(&mut chunk).map_err(|e| {
                    BodyError::Reply(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"))
                })?;
                if n == 0 {
                    break;
                }
                if out.len() + n > max {
                    return Err(BodyError::Reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("decompressed body exceeds {max} bytes"),
                    ));
                }
                grow(&mut out, n, max, budget, held)?;
                out.extend_from_slice(&chunk[..n]);
            }
            Ok(out)
        }
        other => Err(BodyError::Reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}: use gzip or none"),
        )),
    }
}

/// Makes room for `n` more bytes in `out` (doubling, up to `max`), charging the growth of its
/// capacity to the budget.
fn grow(
    out: &mut Vec<u8>,
    n: usize,
    max: usize,
    budget: &BodyBudget,
    held: &mut Held,
) -> Result<(), BodyError> {
    let need = out.len() + n;
    if need <= out.capacity() {
        return Ok(());
    }
    let cap = need.max(out.capacity() * 2).max(4096).min(max.max(need));
    if !budget.charge(held, cap - out.capacity()) {
        return Err(BodyError::Busy);
    }
    out.reserve_exact(cap - out.len());
    Ok(())
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

/// Reads the body as it arrives, charging its bytes to the in-flight budget.
async fn collect(
    state: &Shared,
    mut body: axum::body::Body,
    held: &mut Held,
) -> Result<Vec<u8>, ReadError> {
    use http_body_util::BodyExt as _;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if out.len() + data.len() > state.max_body {
            return Err(ReadError::TooLarge);
        }
        grow(&mut out, data.len(), state.max_body, &state.budget, held)
            .map_err(|_| ReadError::Busy)?;
        out.extend_from_slice(&data);
    }
    Ok(out)
}

enum ReadError {
    TooLarge,
    Busy,
    Read(String),
}

/// 503 with `Retry-After: 1`, connection closed: the receiver holds `max_inflight_body_size`.
fn busy(state: &Shared, enc: Encoding) -> Response {
    let mut r = reply_and_close(
        StatusCode::SERVICE_UNAVAILABLE,
        enc,
        format!(
            "the receiver holds its max_inflight_body_size ({} bytes) of request bodies; retry later",
            state.budget.total()
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Reads the body within the read timeout, the size limit and the in-flight budget.
async fn read_body(
    state: &Shared,
    enc: Encoding,
    body: axum::body::Body,
    held: &mut Held,
) -> Result<Vec<u8>, Response> {
    match tokio::time::timeout(state.read_timeout, collect(state, body, held)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(ReadError::TooLarge)) => Err(reply_and_close(
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            format!("body exceeds {} bytes", state.max_body),
        )),
        Ok(Err(ReadError::Busy)) => Err(busy(state, enc)),
        Ok(Err(ReadError::Read(e))) => Err(reply_and_close(
            StatusCode::BAD_REQUEST,
            enc,
            format!("cannot read the body: {e}"),
        )),
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
    // Everything this request holds is charged here and returned when the handler ends (after
    // the batch was handed to the pipelines, whose queues are bounded on their own).
    let mut held = state.budget.hold();
    let body = match read_body(&state, enc, body, &mut held).await {
        Ok(b) => b,
        Err(r) => {
            state.errors.errors.inc();
            return r;
        }
    };
    let bytes = match body_bytes(headers, body, state.max_body, &state.budget, &mut held) {
        Ok(b) => b,
        Err(BodyError::Reply(code, m)) => {
            state.errors.errors.inc();
            return reply(code, enc, m);
        }
        Err(BodyError::Busy) => {
            state.errors.errors.inc();
            return busy(&state, enc);
        }
    };
    if let Some(est) = decoded_estimate(signal, enc == Encoding::Json, &bytes, state.max_decoded)
        && est > state.max_decoded
    {
        state.errors.errors.inc();
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            format!(
                "the request would take more than max_decoded_size ({} bytes) once decoded",
                state.max_decoded
            ),
        );
    }
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
