//! Health and readiness as the HTTP endpoints report them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tells the truth about the agent: ready only once every pipeline runs, unhealthy as soon as a
/// component has failed.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    failed: Mutex<Vec<String>>,
}

impl Health {
    /// Marks the pipelines as running (or not, during shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// True once the pipelines run and until shutdown starts.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Records a failed component (e.g. `exporter/file: permission denied`).
    pub fn component_failed(&self, what: String) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// The failed components; empty when healthy.
    pub fn failures(&self) -> Vec<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
