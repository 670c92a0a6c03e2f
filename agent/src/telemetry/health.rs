//! Health and readiness as the HTTP endpoints report them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tells the truth about the agent: ready only once every pipeline runs, unhealthy as soon as a
/// component has failed.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    failed: Mutex<Vec<String>>,
    delivery: Mutex<Vec<DeliveryCheck>>,
}

/// Says why a pipeline stage cannot deliver right now (`None` when it can).
pub type DeliveryCheck = Box<dyn Fn() -> Option<String> + Send + Sync>;

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("ready", &self.ready)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
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

    /// Adds a check that `/-/ready` runs: a stage that cannot deliver (a stalled or parked
    /// plugin) makes the agent not ready, naming it.
    pub fn add_delivery_check(&self, check: DeliveryCheck) {
        self.delivery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(check);
    }

    /// Why pipelines cannot deliver right now; empty when they can.
    pub fn not_delivering(&self) -> Vec<String> {
        self.delivery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|c| c())
            .collect()
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
