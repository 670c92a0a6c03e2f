//! eBPF observers: srediag watches its own plugins from the kernel.
//!
//! One BPF object (`ebpf/observers.bpf.c`, compiled by `agent/build.rs`, embedded here) carries
//! every program and map; [`Observers::load`] loads it with CO-RE against the running kernel's BTF
//! and attaches, per kernel hook, the best variant that works (`tp_btf`, else `raw_tp`; see
//! `object.rs`). Each observer degrades on its own and says why ([`Observers::status`], the log,
//! `srediag_bpf_observer_up`); nothing here can stop the agent.
//!
//! | observer           | hooks                                        | maps                           |
//! |--------------------|----------------------------------------------|--------------------------------|
//! | `process_tracking` | `sched_process_fork`, `sched_process_exit`   | `srediag_pids` (tgid → plugin), `srediag_spawners` (armed spawner tid → plugin) |
//! | `cpu`              | `sched_switch`                               | `srediag_cpu`, `srediag_cpust`, `srediag_thr` |
//! | `memory`           | `rss_stat`, `mark_victim`                    | `srediag_mem`, `srediag_ooms`  |
//! | `seccomp`          | `signal_generate`, `sched_process_exit`      | `srediag_viol`, `srediag_sigsys` |
//! | `events`           | (userspace reader of the ring buffer)        | `srediag_events`, `srediag_ev_budget` (violation events per plugin and second) |
//! | `ipc_latency`      | uprobes `srediag_probe_publish`/`_consume` (agent + each plugin) | `srediag_ipc_ring`, `srediag_ipc_pending`, `srediag_ipc_hist`, `srediag_ipc_forged` |
//!
//! Lifetime: nothing is pinned. Dropping [`Observers`] detaches every program and closes every
//! map (the kernel frees maps once the programs using them are gone, after an RCU grace period).
//!
//! Wiring: `srediag run` creates the observers (`Observers::start`) and hands them, as an
//! `Arc<dyn` [`PluginObservers`]`>`, to the plugin manager, every supervisor, the spawner (one
//! call per clone) and the admin socket; without plugins it passes [`NoObservers`]. There is no
//! process-wide instance: two sets of observers can run side by side (tests), and dropping the
//! last clone frees everything.
//!
//! Files: `load.rs` (loading, attaching, statuses), `observers.rs` (the handle, plugin ids,
//! tracked pids), `readings.rs` (what the kernel saw, read from the maps), `hooks.rs` (what the
//! plugin manager calls), one file per observer (`tracking.rs`, `cpu.rs`, `memory.rs`,
//! `seccomp.rs`, `ipc.rs`), `events.rs` (the ring buffer reader), `stats.rs`, `metrics.rs`,
//! `abi.rs` and `object.rs`.

pub mod abi;
mod cpu;
mod error;
mod events;
mod hooks;
mod ipc;
mod load;
mod memory;
mod metrics;
mod object;
mod observers;
mod readings;
pub mod reference;
mod seccomp;
mod stats;
mod tracking;

use std::collections::BTreeMap;

use serde::Serialize;

pub use error::BpfError;
pub use events::Violation;
pub use hooks::{NoObservers, PluginObservers};
pub use ipc::{DIRECTIONS as IPC_DIRECTIONS, Histogram as IpcHistogram};
pub use observers::Observers;
pub use seccomp::{Action, ViolationCount};
pub use stats::{MAX_WINDOW as STATS_MAX_WINDOW, ProgramStats};

/// The observers, in display order (`observer` label values).
pub const OBSERVERS: [&str; 6] = [
    "process_tracking",
    "cpu",
    "memory",
    "seccomp",
    "ipc_latency",
    "events",
];

/// Whether one observer runs, how, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObserverStatus {
    /// One of [`OBSERVERS`].
    pub name: &'static str,
    /// Its programs are attached (for `events`: the ring buffer reader runs).
    pub up: bool,
    /// How its hooks are attached (`tp_btf sched_switch`), when up.
    pub attach: Vec<String>,
    /// Why it is down, or what is missing while up (e.g. descendants not followed).
    pub reason: Option<String>,
}

/// Loader options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Skip `tp_btf` and attach the `raw_tp` variants (tests of the fallback path).
    pub raw_tp_only: bool,
    /// Seccomp violation events each plugin may send to the agent per second (the kernel's
    /// `srediag_event_budget`); further ones are suppressed and counted, their violations still
    /// counted exactly. Default [`abi::EVENT_BUDGET`].
    pub event_budget: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            raw_tp_only: false,
            event_budget: abi::EVENT_BUDGET,
        }
    }
}

/// What the kernel saw of one plugin (for `srediag plugin list` and `srediag top`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PluginKernelStats {
    /// On-CPU seconds (`sched_switch`).
    pub cpu_seconds: Option<f64>,
    /// Resident bytes (`rss_stat`).
    pub rss_bytes: Option<u64>,
    /// Seccomp violations, every syscall and action.
    pub violations: u64,
    /// Violation events the kernel did not send because the plugin was over its event budget
    /// (its violations are counted all the same).
    #[serde(default)]
    pub events_suppressed: u64,
    /// The event budget: violation events per second that reach the agent.
    #[serde(default)]
    pub event_budget_per_second: u32,
    /// OOM-killer victims (`mark_victim`).
    pub oom_kills: Option<u64>,
    /// Host pids tracked now.
    pub pids: Vec<u32>,
    /// IPC latency histograms by direction (`to_plugin`, `from_plugin`), when the observer runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ipc: BTreeMap<String, IpcSummary>,
}

/// One direction's IPC latency, for the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct IpcSummary {
    /// Sampled batches measured.
    pub count: u64,
    /// Exact sum of their latencies (seconds).
    pub sum_seconds: f64,
    /// Median (seconds; inside its log2 bucket, interpolated).
    pub p50_seconds: Option<f64>,
    /// 99th percentile (seconds; as above).
    pub p99_seconds: Option<f64>,
}

/// The SDK's probe sites (publish, consume), for binaries that load the observers without
/// calling them (tests, benchmarks): a `#[used] static` holding this keeps the linker from
/// dropping them, so the `ipc_latency` observer finds them in `/proc/self/exe`.
pub const PROBE_SITES: [extern "C" fn(u64, u64, u64); 2] = [
    srediag_plugin_sdk::probe::srediag_probe_publish,
    srediag_plugin_sdk::probe::srediag_probe_consume,
];

/// How many recent violation events the agent keeps for `srediag diagnose seccomp`.
pub const RECENT_EVENTS: usize = 256;
