//! The `file` exporter: one OTLP/JSON request object per line, rotated by size.

use crate::model::Batch;
use crate::pipeline::{BoxFuture, BuildContext, BuildError, ExportError, Exporter};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `file` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file to append to; parent directories are created (mode 0750). Required.
    pub path: PathBuf,
    /// Size-based rotation. Default: rotate at 64 MiB, keep 3 old files.
    #[serde(default)]
    pub rotation: Rotation,
}

/// `rotation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Rotate when the file would grow past this many MiB; 0 disables rotation. Default 64.
    pub max_megabytes: u64,
    /// Old files kept as `PATH.1` (newest) … `PATH.N`. Default 3.
    pub max_backups: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_megabytes: 64,
            max_backups: 3,
        }
    }
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err(("path".into(), "must not be empty".into()));
        }
        if self.path.file_name().is_none() {
            return Err((
                "path".into(),
                format!("{} names no file", self.path.display()),
            ));
        }
        Ok(())
    }
}

struct Sink {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    regular: bool,
    max_bytes: u64,
    backups: u32,
}

fn open(path: &Path) -> std::io::Result<(File, u64, bool)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let meta = f.metadata()?;
    Ok((f, meta.len(), meta.file_type().is_file()))
}

impl Sink {
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.backups == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
            let _ = std::fs::remove_file(name(self.backups));
            for i in (1..self.backups).rev() {
                let from = name(i);
                if from.exists() {
                    std::fs::rename(&from, name(i + 1))?;
                }
            }
            std::fs::rename(&self.path, name(1))?;
        }
        let (f, size, regular) = open(&self.path)?;
        self.out = BufWriter::new(f);
        self.size = size;
        self.regular = regular;
        Ok(())
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.regular && self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        // Flushed per batch: what the exporter counts as sent is in the file.
        self.out.flush()?;
        self.size += len;
        Ok(())
    }
}

/// The running exporter.
pub struct FileExporter {
    sink: Arc<Mutex<Sink>>,
}

impl FileExporter {
    /// Creates the parent directory and opens the file now, so a bad path fails the start.
    pub fn open(cfg: &Config, ctx: &BuildContext) -> Result<Self, BuildError> {
        let err = |path: &Path, source| BuildError::Open {
            id: format!("exporters.{}.path", ctx.id),
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| err(dir, e))?;
        }
        let (f, size, regular) = open(&cfg.path).map_err(|e| err(&cfg.path, e))?;
        Ok(FileExporter {
            sink: Arc::new(Mutex::new(Sink {
                path: cfg.path.clone(),
                out: BufWriter::with_capacity(256 * 1024, f),
                size,
                regular,
                max_bytes: cfg.rotation.max_megabytes.saturating_mul(1024 * 1024),
                backups: cfg.rotation.max_backups,
            })),
        })
    }
}

/// Serialises a batch as one OTLP/JSON line.
pub fn to_json_line(batch: &Batch) -> Result<Vec<u8>, serde_json::Error> {
    crate::model::to_json(batch)
}

impl Exporter for FileExporter {
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>> {
        let sink = self.sink.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let line = to_json_line(&batch)
                    .map_err(|e| ExportError(format!("cannot encode batch: {e}")))?;
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.write_line(&line)
                    .map_err(|e| ExportError(format!("cannot write {}: {e}", s.path.display())))
            })
            .await
            .map_err(|e| ExportError(format!("writer task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Logs, logs::*};
    use crate::telemetry::Telemetry;

    fn batch(n: usize) -> Batch {
        Batch::Logs(Logs {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            severity_text: "INFO".into(),
                            ..Default::default()
                        };
                        n
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[tokio::test]
    async fn writes_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let cfg = Config {
            path: path.clone(),
            rotation: Rotation {
                max_megabytes: 0,
                max_backups: 2,
            },
        };
        let ctx = BuildContext {
            id: "file".into(),
            telemetry: Telemetry::new(),
        };
        let mut e = FileExporter::open(&cfg, &ctx).unwrap();
        e.sink.lock().unwrap().max_bytes = 300;
        for _ in 0..6 {
            e.export(batch(3)).await.unwrap();
        }
        let mut lines = 0;
        for p in [
            path.clone(),
            path.with_extension("jsonl.1"),
            path.with_extension("jsonl.2"),
        ] {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(
                    v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                        .as_array()
                        .unwrap()
                        .len(),
                    3
                );
                lines += 1;
            }
        }
        assert!(
            path.with_extension("jsonl.1").exists(),
            "no rotation happened"
        );
        assert!(
            !path.with_extension("jsonl.3").exists(),
            "more backups than configured"
        );
        assert!((3..=6).contains(&lines), "lines kept: {lines}");
    }
}
