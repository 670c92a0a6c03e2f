//! The `prometheus` exporter: keeps the latest value of every series that flows through the
//! pipeline and serves them at `/metrics` for Prometheus to scrape.

mod naming;
mod store;

use crate::model::Batch;
use crate::pipeline::{BoxFuture, BuildContext, BuildError, ExportError, Exporter};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;

/// `prometheus` exporter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address of the scrape endpoint. Default `127.0.0.1:9465`, next to the agent's own
    /// telemetry on 9464.
    pub endpoint: String,
    /// Series not updated for this long disappear. Default 5m.
    #[serde(with = "humantime_serde")]
    pub metric_expiration: Duration,
    /// Copy resource attributes (e.g. `host.name`) onto every series as labels. Default false.
    pub resource_to_telemetry_conversion: bool,
    /// Prefix for every metric name (e.g. `node`); empty for none. Default empty.
    pub namespace: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "127.0.0.1:9465".into(),
            metric_expiration: Duration::from_secs(300),
            resource_to_telemetry_conversion: false,
            namespace: String::new(),
        }
    }
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Err(e) = self.endpoint.parse::<std::net::SocketAddr>() {
            return Err((
                "endpoint".into(),
                format!("invalid listen address {:?}: {e}", self.endpoint),
            ));
        }
        if !self.namespace.is_empty() && naming::sanitize(&self.namespace) != self.namespace {
            return Err((
                "namespace".into(),
                "use only letters, digits and `_`, not starting with a digit".into(),
            ));
        }
        Ok(())
    }
}

/// The running exporter.
pub struct PrometheusExporter {
    store: Arc<Mutex<Store>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

async fn scrape(State(store): State<Arc<Mutex<Store>>>) -> impl IntoResponse {
    let body = store.lock().unwrap_or_else(|e| e.into_inner()).render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

impl PrometheusExporter {
    /// Binds the scrape endpoint now and serves it.
    pub async fn bind(cfg: &Config, ctx: &BuildContext) -> Result<Self, BuildError> {
        let listener = tokio::net::TcpListener::bind(&cfg.endpoint)
            .await
            .map_err(|source| BuildError::Bind {
                id: format!("exporters.{}.endpoint", ctx.id),
                addr: cfg.endpoint.clone(),
                source,
            })?;
        let store = Arc::new(Mutex::new(Store::new(cfg)));
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state(store.clone());
        let id = ctx.id.clone();
        let telemetry = ctx.telemetry.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(exporter = %id, error = %e, "scrape endpoint failed");
                telemetry
                    .health
                    .component_failed(format!("exporter/{id}: scrape endpoint failed: {e}"));
            }
        });
        Ok(PrometheusExporter {
            store,
            server: Some(server),
        })
    }
}

impl Exporter for PrometheusExporter {
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>> {
        if let Batch::Metrics(m) = &batch {
            self.store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(m);
        }
        Box::pin(async { Ok(()) })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExportError>> {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        Box::pin(async { Ok(()) })
    }
}
