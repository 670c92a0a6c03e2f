//! The self-telemetry HTTP endpoint: `/metrics`, `/-/healthy`, `/-/ready`.

use super::Telemetry;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Binding the telemetry endpoint failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct ServerError {
    /// The address asked for.
    pub addr: String,
    /// What the listener is for, with the config key.
    pub what: String,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` now (so a port in use is reported at start) and returns the listener.
pub async fn bind(addr: &str, what: &str) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError {
        addr: addr.to_string(),
        what: what.to_string(),
        source,
    };
    let sock: SocketAddr = addr.parse().map_err(|e| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{e}"),
        ))
    })?;
    TcpListener::bind(sock).await.map_err(err)
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render(),
    )
}

async fn healthy(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    let failed = t.health.failures();
    if failed.is_empty() {
        (StatusCode::OK, "healthy\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", failed.join("; ")),
        )
    }
}

async fn ready(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    if !t.health.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    let stuck = t.health.not_delivering();
    if stuck.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", stuck.join("; ")),
        )
    }
}

/// Serves the endpoint on an already bound listener until the process ends.
pub async fn serve(listener: TcpListener, telemetry: Arc<Telemetry>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(telemetry);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "telemetry server stopped");
    }
}
