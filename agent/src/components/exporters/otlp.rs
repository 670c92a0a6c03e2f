//! The `otlp` exporter: OTLP/HTTP to a collector, protobuf or JSON, optional gzip, with retries
//! on the responses the OTLP specification calls retryable.

use crate::model::{Batch, Signal};
use crate::pipeline::{BoxFuture, BuildContext, BuildError, ExportError, Exporter};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf`.
    #[default]
    Proto,
    /// `application/json` (OTLP/JSON).
    Json,
}

/// Body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (`Content-Encoding: gzip`).
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// `retry_on_failure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Retry retryable failures (connection errors, 429, 502, 503, 504). Default true.
    pub enabled: bool,
    /// First wait. Default 1s.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest wait between attempts. Default 30s.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up (count the items as failed) after this long. Default 5m.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// `otlp` exporter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL; `/v1/logs` and `/v1/metrics` are appended (e.g. `http://collector:4318`).
    /// Required. Only `http://` (TLS termination belongs to a local collector or proxy for now).
    pub endpoint: String,
    /// Body encoding. Default `proto`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Compression. Default `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Per-request timeout. Default 10s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers (e.g. an auth token from `${env:TOKEN}`). Default none. The values
    /// are secrets: never printed or logged (`print-config` shows `${env:…}` as written, else
    /// `<redacted>`).
    #[serde(default)]
    pub headers: BTreeMap<String, crate::config::Secret>,
    /// Retries. Default: on, 1s doubling to 30s, for at most 5m.
    #[serde(default)]
    pub retry_on_failure: Retry,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let url = reqwest::Url::parse(&self.endpoint).map_err(|e| {
            (
                "endpoint".to_string(),
                format!("invalid URL {:?}: {e}", self.endpoint),
            )
        })?;
        if url.scheme() != "http" {
            return Err((
                "endpoint".into(),
                format!("scheme {:?} is not supported: use http://", url.scheme()),
            ));
        }
        for k in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err((format!("headers.{k}"), "invalid header name".into()));
            }
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be greater than 0".into()));
        }
        Ok(())
    }
}

/// The running exporter.
pub struct OtlpExporter {
    client: reqwest::Client,
    cfg: Config,
    base: String,
    id: String,
}

impl OtlpExporter {
    /// Builds the HTTP client.
    pub fn new(cfg: &Config, ctx: &BuildContext) -> Result<Self, BuildError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                BuildError::Invalid {
                    id: ctx.id.clone(),
                    message: format!("header {k:?}: {e}"),
                }
            })?;
            let value = reqwest::header::HeaderValue::from_str(v.expose()).map_err(|e| {
                BuildError::Invalid {
                    id: ctx.id.clone(),
                    message: format!("header {k:?} value: {e}"),
                }
            })?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout)
            .user_agent(concat!("srediag/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Invalid {
                id: ctx.id.clone(),
                message: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(OtlpExporter {
            client,
            base: cfg.endpoint.trim_end_matches('/').to_string(),
            cfg: cfg.clone(),
            id: ctx.id.clone(),
        })
    }

    fn body(&self, batch: &Batch) -> Result<Vec<u8>, ExportError> {
        let raw = match (self.cfg.encoding, batch) {
            (Encoding::Proto, Batch::Logs(l)) => l.encode_to_vec(),
            (Encoding::Proto, Batch::Metrics(m)) => m.encode_to_vec(),
            (Encoding::Json, b) => super::file::to_json_line(b)
                .map_err(|e| ExportError(format!("cannot encode: {e}")))?,
        };
        match self.cfg.compression {
            Compression::None => Ok(raw),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&raw)
                    .and_then(|_| gz.finish())
                    .map_err(|e| ExportError(format!("gzip: {e}")))
            }
        }
    }
}

/// Retryable per the OTLP/HTTP specification.
fn retryable(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

impl Exporter for OtlpExporter {
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            let url = format!(
                "{}/v1/{}",
                self.base,
                match batch.signal() {
                    Signal::Logs => "logs",
                    Signal::Metrics => "metrics",
                }
            );
            let body = self.body(&batch)?;
            let ctype = match self.cfg.encoding {
                Encoding::Proto => "application/x-protobuf",
                Encoding::Json => "application/json",
            };
            let started = Instant::now();
            let mut wait = self.cfg.retry_on_failure.initial_interval;
            loop {
                let mut req = self
                    .client
                    .post(&url)
                    .header("content-type", ctype)
                    .body(body.clone());
                if self.cfg.compression == Compression::Gzip {
                    req = req.header("content-encoding", "gzip");
                }
                let (err, retry_after) = match req.send().await {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) => {
                        let status = r.status();
                        let after = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .map(Duration::from_secs);
                        if !retryable(status) {
                            return Err(ExportError(format!(
                                "{url} answered {status} (not retryable)"
                            )));
                        }
                        (format!("{url} answered {status}"), after)
                    }
                    Err(e) => (format!("{url}: {e}"), None),
                };
                let retry = &self.cfg.retry_on_failure;
                let pause = retry_after.unwrap_or(wait).min(retry.max_interval);
                if !retry.enabled || started.elapsed() + pause > retry.max_elapsed_time {
                    return Err(ExportError(format!(
                        "{err}; giving up after {:?}",
                        started.elapsed()
                    )));
                }
                tracing::warn!(exporter = %self.id, error = %err, retry_in = ?pause, "export failed; retrying");
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(retry.max_interval);
            }
        })
    }
}
