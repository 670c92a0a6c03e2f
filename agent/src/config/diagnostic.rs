//! Configuration problems, printed as `FILE:LINE:COL: error: PATH: message`.

use super::position::Pos;
use serde::Serialize;
use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Worth fixing; the configuration still runs.
    Warning,
}

/// One problem at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or `<embedded default>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key path, e.g. `service.pipelines.metrics.exporters[1]`.
    pub path: String,
    /// What is wrong, and the remedy where one is known.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(
        severity: Severity,
        file: &str,
        pos: Pos,
        path: &str,
        message: String,
    ) -> Self {
        Diagnostic {
            severity,
            file: file.to_string(),
            line: pos.line,
            column: pos.col,
            path: path.to_string(),
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {sev}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}
