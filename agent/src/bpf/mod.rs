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
//! Wiring ([`start`], [`stop`], [`arm_spawn`], [`plugin_started`], [`plugin_stopped`]): the agent
//! keeps one process-wide instance so the spawner thread needs one call per clone and the
//! supervisor a single call at spawn and one at exit.

pub mod abi;
mod cpu;
mod events;
mod ipc;
mod memory;
mod metrics;
mod object;
pub mod reference;
mod seccomp;
mod stats;
mod tracking;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader};
use serde::Serialize;
use tokio::sync::broadcast;

pub use events::Violation;
pub use ipc::{DIRECTIONS as IPC_DIRECTIONS, Histogram as IpcHistogram};
pub use seccomp::{Action, ViolationCount};
pub use stats::{MAX_WINDOW as STATS_MAX_WINDOW, ProgramStats};

use abi::{CpuState, EventBudget, IpcHist, IpcPending, IpcRing, Rss, ViolationKey};

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

/// Errors of the userspace API.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The BPF object is not loaded (see [`Observers::status`]).
    #[error("eBPF observers are not loaded: {reason}")]
    NotLoaded {
        /// Why loading failed.
        reason: String,
    },
    /// Plugin ids are `1..MAX_PLUGINS`.
    #[error("plugin id {id} is outside 1..{max}")]
    PluginId {
        /// The id given.
        id: u32,
        /// The exclusive upper bound.
        max: u32,
    },
    /// Every plugin id is taken.
    #[error("no free plugin id for {name}: {max} plugins already have one")]
    NoFreeId {
        /// The plugin.
        name: String,
        /// How many ids exist.
        max: u32,
    },
    /// BPF_ENABLE_STATS failed.
    #[error("cannot enable BPF run-time statistics: {reason}")]
    Stats {
        /// Why.
        reason: String,
    },
    /// A map operation failed.
    #[error("bpf map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// What aya reported.
        #[source]
        source: aya::maps::MapError,
    },
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

/// Everything that exists only when the object loaded.
struct Loaded {
    // Field order is drop order: programs and links first, then the maps.
    _ebpf: Ebpf,
    pids: HashMap<MapData, u32, u32>,
    spawners: HashMap<MapData, u32, u32>,
    cpu: PerCpuArray<MapData, u64>,
    cpust: PerCpuArray<MapData, CpuState>,
    viol: PerCpuHashMap<MapData, ViolationKey, u64>,
    mem: HashMap<MapData, u32, Rss>,
    ooms: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    budget: Array<MapData, EventBudget>,
    ring: Option<RingBuf<MapData>>,
    program_ids: Vec<u32>,
    /// The IPC latency observer's maps, when it runs.
    ipc: Option<IpcMaps>,
}

struct IpcMaps {
    rings: HashMap<MapData, u64, IpcRing>,
    hist: PerCpuArray<MapData, IpcHist>,
    pending: Array<MapData, IpcPending>,
    forged: PerCpuArray<MapData, u64>,
    /// The agent's own uprobes (kept for the object's lifetime).
    _agent: ipc::Attachment,
    /// Per plugin name: its current incarnation's uprobes, rings and attach path.
    /// Plugin name → its attached incarnation's uprobes, where they are, and its pid.
    plugins: BTreeMap<String, (ipc::Attachment, String, u32)>,
}

/// Shared by [`Observers`], the metrics collector and the event reader (these two hold `Weak`s).
struct Inner {
    state: Mutex<Option<Loaded>>,
    statuses: Vec<ObserverStatus>,
    map_memory: Vec<(&'static str, u64)>,
    /// Plugin id → name, and name → id; ids are never reused for another name.
    plugins: Mutex<BTreeMap<u32, String>>,
    syscalls: seccomp::Names,
    events: broadcast::Sender<Violation>,
    received: AtomicU64,
    /// Per plugin id: the highest suppressed-event count seen in its events (the growth since
    /// then is the next event's `suppressed_before`).
    suppressed_seen: Mutex<BTreeMap<u32, u64>>,
    /// Violation events per plugin and second (`srediag_event_budget` as loaded).
    event_budget: u32,
    stats: Mutex<stats::Window>,
    recent: Mutex<std::collections::VecDeque<Violation>>,
}

impl Inner {
    fn plugin_name(&self, id: u32) -> String {
        let plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("id-{id}"))
    }

    fn plugins(&self) -> Vec<(u32, String)> {
        let plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        plugins.iter().map(|(id, n)| (*id, n.clone())).collect()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Loaded) -> T) -> Option<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.as_mut().map(f)
    }

    fn cpu_time(&self, plugin_id: u32) -> Option<Duration> {
        self.with(|l| cpu::time(&l.cpu, &l.cpust, plugin_id).ok())
            .flatten()
    }

    fn rss_bytes(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| memory::rss_bytes(&l.mem, plugin_id))
    }

    fn oom_kills(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| memory::oom_kills(&l.ooms, plugin_id).ok())
            .flatten()
    }

    fn ipc_histograms(&self, plugin_id: u32) -> BTreeMap<&'static str, ipc::Histogram> {
        self.with(|l| {
            l.ipc
                .as_ref()
                .map(|i| ipc::histograms(&i.hist, plugin_id))
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// Violation events of `plugin_id` suppressed over its event budget (`None`: not loaded).
    fn events_suppressed(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| l.budget.get(&plugin_id, 0).ok().map(|b| b.suppressed))
            .flatten()
    }

    fn ipc_forged(&self, plugin_id: u32) -> Option<u64> {
        self.with(|l| {
            l.ipc
                .as_ref()
                .and_then(|i| ipc::forged(&i.forged, plugin_id))
        })
        .flatten()
    }

    fn program_stats(&self) -> Vec<ProgramStats> {
        self.with(|l| stats::programs(&l._ebpf)).unwrap_or_default()
    }

    /// Whether BPF_ENABLE_STATS is held now (closing it first when its window has passed).
    fn stats_on(&self) -> bool {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expire()
    }

    fn violations(&self) -> Vec<ViolationCount> {
        self.with(|l| seccomp::counts(&l.viol, &self.syscalls))
            .unwrap_or_default()
    }

    fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.with(|l| {
            abi::STATS
                .iter()
                .map(|(i, reason)| {
                    (
                        *reason,
                        l.stats.get(i, 0).map(|v| v.iter().sum()).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }
}

/// The loaded observers. Dropping it detaches every program and frees every map.
pub struct Observers {
    inner: Arc<Inner>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Observers {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        // Close programs, links and maps now, even if a collector or the reader still holds a
        // (Weak) reference to `inner`.
        let loaded = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(loaded);
    }
}

/// `memlock` of an fd's `/proc/self/fdinfo` entry: the kernel memory of a BPF map.
fn memlock(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

fn down(name: &'static str, reason: &str) -> ObserverStatus {
    ObserverStatus {
        name,
        up: false,
        attach: Vec::new(),
        reason: Some(reason.to_owned()),
    }
}

macro_rules! take_map {
    ($ebpf:expr, $name:literal) => {
        $ebpf
            .take_map($name)
            .ok_or_else(|| format!("map {} missing from the object", $name))
            .and_then(|m| m.try_into().map_err(|e| format!("map {}: {e}", $name)))
    };
}

impl Observers {
    /// Loads the BPF object and attaches what this kernel allows. Never fails: an observer that
    /// cannot run is reported down with its reason (all of them when the object cannot load,
    /// e.g. without root or without kernel BTF). Starts the event reader when called inside a
    /// tokio runtime.
    pub fn load(opts: Options) -> Observers {
        let (sender, _) = broadcast::channel(events::CHANNEL_CAPACITY);
        let mut inner = Inner {
            state: Mutex::new(None),
            statuses: Vec::new(),
            map_memory: Vec::new(),
            plugins: Mutex::new(BTreeMap::new()),
            syscalls: seccomp::Names::default(),
            events: sender,
            received: AtomicU64::new(0),
            suppressed_seen: Mutex::new(BTreeMap::new()),
            event_budget: opts.event_budget,
            stats: Mutex::new(stats::Window::default()),
            recent: Mutex::new(std::collections::VecDeque::new()),
        };
        let (loaded, mut statuses) = match Self::load_object(opts) {
            Ok((loaded, statuses)) => (Some(loaded), statuses),
            Err(reason) => (None, OBSERVERS.iter().map(|o| down(o, &reason)).collect()),
        };
        let mut reader = None;
        if let Some(l) = &loaded {
            inner.map_memory = Self::memory(l);
            let status = match &l.ring {
                None => down(
                    "events",
                    "the ring buffer map srediag_events could not be opened",
                ),
                Some(ring) => match events::Reader::new(ring.as_fd()) {
                    Ok(r) => {
                        reader = Some(r);
                        ObserverStatus {
                            name: "events",
                            up: true,
                            attach: vec!["ring buffer srediag_events".into()],
                            reason: Some(format!(
                                "at most {} seccomp violation events per plugin and second reach the agent; the rest are suppressed and counted (srediag_bpf_events_suppressed_total), every violation is still counted",
                                opts.event_budget
                            )),
                        }
                    }
                    Err(e) => down(
                        "events",
                        &format!("no event reader (needs a tokio runtime): {e}"),
                    ),
                },
            };
            statuses.push(status);
        }
        inner.statuses = statuses;
        *inner.state.lock().unwrap_or_else(|e| e.into_inner()) = loaded;
        let inner = Arc::new(inner);
        let reader = reader.map(|r| r.spawn(Arc::downgrade(&inner)));
        Observers { inner, reader }
    }

    fn load_object(opts: Options) -> Result<(Loaded, Vec<ObserverStatus>), String> {
        let btf = Btf::from_sys_fs().map_err(|e| {
            format!(
                "no kernel BTF (/sys/kernel/btf/vmlinux: {e}): CO-RE programs cannot be relocated"
            )
        })?;
        let agent_tgid = std::process::id();
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // Only this process's spawner thread is ever armed (see `arm_spawn`).
            .override_global("srediag_agent_tgid", &agent_tgid, true)
            // Violation events per plugin and window that reach the ring buffer.
            .override_global("srediag_event_budget", &opts.event_budget, true)
            .load(object::OBJECT)
            .map_err(|e| {
                let why = object::describe(&e);
                let hint = if !rustix::process::geteuid().is_root() {
                    " (needs root: CAP_BPF, CAP_PERFMON)"
                } else {
                    ""
                };
                format!("cannot load the BPF object: {why}{hint}")
            })?;
        let raw = opts.raw_tp_only;
        let fork = object::attach(&mut ebpf, &btf, object::FORK, raw);
        let exit = object::attach(&mut ebpf, &btf, object::EXIT, raw);
        let switch = object::attach(&mut ebpf, &btf, object::SWITCH, raw);
        let signal = object::attach(&mut ebpf, &btf, object::SIGNAL, raw);
        let rss = object::attach(&mut ebpf, &btf, object::RSS, raw);
        let oom = object::attach(&mut ebpf, &btf, object::OOM, raw);
        drop(btf);
        let exe = std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        let ipc_agent = ipc::load(&mut ebpf).and_then(|()| {
            ipc::attach(
                &mut ebpf,
                std::path::Path::new("/proc/self/exe"),
                std::process::id(),
            )
        });

        let attached = |r: &[&Result<String, String>]| -> Vec<String> {
            r.iter().filter_map(|x| x.as_ref().ok().cloned()).collect()
        };
        let errors = |r: &[&Result<String, String>]| -> Option<String> {
            let e: Vec<String> = r.iter().filter_map(|x| x.as_ref().err().cloned()).collect();
            (!e.is_empty()).then(|| e.join("; "))
        };
        let tracking_ok = fork.is_ok() && exit.is_ok();
        let statuses = vec![
            ObserverStatus {
                name: "process_tracking",
                up: tracking_ok,
                attach: attached(&[&fork, &exit]),
                reason: errors(&[&fork, &exit]).map(|e| {
                    format!("{e} (only the pids the agent registers are tracked: no descendants, no removal at exit)")
                }),
            },
            ObserverStatus {
                name: "cpu",
                up: switch.is_ok(),
                attach: attached(&[&switch]),
                reason: errors(&[&switch]).or_else(|| {
                    (!tracking_ok).then(|| "up, but descendants of the registered pids are not counted".to_owned())
                }),
            },
            ObserverStatus {
                name: "memory",
                up: rss.is_ok() || oom.is_ok(),
                attach: attached(&[&rss, &oom]),
                reason: match (&rss, &oom) {
                    (Err(r), Err(o)) => Some(format!("{r}; {o}")),
                    (Err(r), Ok(_)) => Some(format!("up, but no RSS per plugin: {r}")),
                    (Ok(_), Err(o)) => Some(format!("up, but OOM kills are not counted: {o}")),
                    (Ok(_), Ok(_)) => None,
                },
            },
            ObserverStatus {
                name: "seccomp",
                up: signal.is_ok(),
                attach: attached(&[&signal, &exit]),
                reason: match (&signal, &exit) {
                    (Err(e), _) => Some(format!("{e} (trap and kill violations are not counted)")),
                    (Ok(_), Err(_)) => Some("up, but kill_thread violations of multi-threaded plugins are not counted (no sched_process_exit hook)".into()),
                    (Ok(_), Ok(_)) => Some("errno violations are counted when compiled as trap+errno (the default for plugins); kernel_errno ones are invisible (no signal, no sys_enter)".into()),
                },
            },
            ObserverStatus {
                name: "ipc_latency",
                up: ipc_agent.is_ok(),
                attach: if ipc_agent.is_ok() {
                    vec![
                        format!("uprobe srediag_probe_publish, srediag_probe_consume in /proc/self/exe ({exe}) pid {}", std::process::id()),
                        "uprobe srediag_probe_publish, srediag_probe_consume in /proc/<pid>/exe of each plugin incarnation, scoped to its pid".into(),
                    ]
                } else {
                    Vec::new()
                },
                reason: match &ipc_agent {
                    Err(e) => Some(format!("{e} (no IPC latency histograms)")),
                    Ok(_) => Some("measures sampled batches only: set plugins.<name>.data_path.probe_sampling or srediag plugin ipc-sampling".into()),
                },
            },
        ];

        let mut program_ids: Vec<u32> = ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok().map(|i| i.id()))
            .collect();
        program_ids.sort_unstable();
        let ring: Result<RingBuf<MapData>, String> = take_map!(ebpf, "srediag_events");
        let ipc = match ipc_agent {
            Ok(agent) => {
                let maps = (|| -> Result<_, String> {
                    Ok((
                        take_map!(ebpf, "srediag_ipc_ring")?,
                        take_map!(ebpf, "srediag_ipc_hist")?,
                        take_map!(ebpf, "srediag_ipc_pending")?,
                        take_map!(ebpf, "srediag_ipc_forged")?,
                    ))
                })();
                match maps {
                    Ok((rings, hist, pending, forged)) => Some(IpcMaps {
                        rings,
                        hist,
                        pending,
                        forged,
                        _agent: agent,
                        plugins: BTreeMap::new(),
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "IPC latency observer: maps");
                        None
                    }
                }
            }
            Err(_) => None,
        };
        let loaded = Loaded {
            pids: take_map!(ebpf, "srediag_pids")?,
            spawners: take_map!(ebpf, "srediag_spawners")?,
            cpu: take_map!(ebpf, "srediag_cpu")?,
            cpust: take_map!(ebpf, "srediag_cpust")?,
            viol: take_map!(ebpf, "srediag_viol")?,
            mem: take_map!(ebpf, "srediag_mem")?,
            ooms: take_map!(ebpf, "srediag_ooms")?,
            stats: take_map!(ebpf, "srediag_stats")?,
            budget: take_map!(ebpf, "srediag_ev_budget")?,
            ring: ring.ok(),
            program_ids,
            ipc,
            _ebpf: ebpf,
        };
        Ok((loaded, statuses))
    }

    fn memory(l: &Loaded) -> Vec<(&'static str, u64)> {
        use aya::maps::IterableMap;
        let mut out = vec![
            ("srediag_pids", memlock(l.pids.map().fd().as_fd())),
            ("srediag_spawners", memlock(l.spawners.map().fd().as_fd())),
            ("srediag_cpu", memlock(l.cpu.map().fd().as_fd())),
            ("srediag_cpust", memlock(l.cpust.map().fd().as_fd())),
            ("srediag_viol", memlock(l.viol.map().fd().as_fd())),
            ("srediag_mem", memlock(l.mem.map().fd().as_fd())),
            ("srediag_ooms", memlock(l.ooms.map().fd().as_fd())),
            ("srediag_stats", memlock(l.stats.map().fd().as_fd())),
            ("srediag_ev_budget", memlock(l.budget.map().fd().as_fd())),
        ];
        if let Some(r) = &l.ring {
            // Kernels before 6.4 report `memlock: 0` for a ring buffer (its pages are not
            // charged there): count its data pages, mapped twice, and its two control pages.
            let reported = memlock(r.as_fd()).filter(|b| *b > 0);
            out.push((
                "srediag_events",
                reported.or(Some(2 * abi::c::EVENTS_BYTES + 2 * 4096)),
            ));
        }
        if let Some(i) = &l.ipc {
            out.push(("srediag_ipc_ring", memlock(i.rings.map().fd().as_fd())));
            out.push(("srediag_ipc_hist", memlock(i.hist.map().fd().as_fd())));
            out.push(("srediag_ipc_pending", memlock(i.pending.map().fd().as_fd())));
            out.push(("srediag_ipc_forged", memlock(i.forged.map().fd().as_fd())));
        }
        if let Some(m) = l._ebpf.map("srediag_sigsys")
            && let Ok(h) = HashMap::<&MapData, u32, u32>::try_from(m)
        {
            out.push(("srediag_sigsys", memlock(h.map().fd().as_fd())));
        }
        if let Some(m) = l._ebpf.map("srediag_thr")
            && let Ok(h) = HashMap::<&MapData, u32, u64>::try_from(m)
        {
            out.push(("srediag_thr", memlock(h.map().fd().as_fd())));
        }
        out.into_iter()
            .filter_map(|(n, b)| b.map(|b| (n, b)))
            .collect()
    }

    /// Whether the BPF object is loaded (some observers may still be down).
    pub fn is_loaded(&self) -> bool {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Every observer's status, in [`OBSERVERS`] order.
    pub fn status(&self) -> Vec<ObserverStatus> {
        let mut s = self.inner.statuses.clone();
        s.sort_by_key(|s| OBSERVERS.iter().position(|o| *o == s.name));
        s
    }

    fn loaded<T>(&self, f: impl FnOnce(&mut Loaded) -> T) -> Result<T, BpfError> {
        self.inner.with(f).ok_or_else(|| BpfError::NotLoaded {
            reason: self
                .inner
                .statuses
                .iter()
                .find_map(|s| s.reason.clone())
                .unwrap_or_default(),
        })
    }

    /// The id `name` has, or a new one (`1..MAX_PLUGINS`); stable for the agent's lifetime, so
    /// a restarted plugin continues its counters.
    pub fn plugin_id(&self, name: &str) -> Result<u32, BpfError> {
        let mut plugins = self.inner.plugins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, _)) = plugins.iter().find(|(_, n)| n.as_str() == name) {
            return Ok(*id);
        }
        let id = (1..abi::MAX_PLUGINS)
            .find(|id| !plugins.contains_key(id))
            .ok_or_else(|| BpfError::NoFreeId {
                name: name.to_owned(),
                max: abi::MAX_PLUGINS - 1,
            })?;
        plugins.insert(id, name.to_owned());
        Ok(id)
    }

    /// Tracks `pids` (host pids) as plugin `plugin_id` named `name`; their descendants follow
    /// through fork. Insert the parent-most process first (see `tracking.rs`).
    pub fn register(&self, plugin_id: u32, name: &str, pids: &[u32]) -> Result<(), BpfError> {
        if plugin_id == 0 || plugin_id >= abi::MAX_PLUGINS {
            return Err(BpfError::PluginId {
                id: plugin_id,
                max: abi::MAX_PLUGINS,
            });
        }
        self.inner
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin_id, name.to_owned());
        self.loaded(|l| {
            let r = tracking::insert(&mut l.pids, plugin_id, pids);
            if r.is_ok() {
                memory::seed(&mut l.mem, plugin_id, pids);
            }
            r
        })?
        .map_err(|source| BpfError::Map {
            map: "srediag_pids",
            source,
        })
    }

    /// Arms thread `tid` (host tid): the next process it clones is tracked as plugin
    /// `plugin_id` from its first instruction, and so is everything that process forks. Undo
    /// with [`disarm`](Self::disarm) once the clone returned.
    pub fn arm(&self, plugin_id: u32, name: &str, tid: u32) -> Result<(), BpfError> {
        if plugin_id == 0 || plugin_id >= abi::MAX_PLUGINS {
            return Err(BpfError::PluginId {
                id: plugin_id,
                max: abi::MAX_PLUGINS,
            });
        }
        self.inner
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin_id, name.to_owned());
        self.loaded(|l| l.spawners.insert(tid, plugin_id, 0))?
            .map_err(|source| BpfError::Map {
                map: "srediag_spawners",
                source,
            })
    }

    /// Disarms thread `tid` (see [`arm`](Self::arm)); nothing happens if it was not armed.
    pub fn disarm(&self, tid: u32) {
        let _ = self.loaded(|l| l.spawners.remove(&tid));
    }

    /// Stops tracking every process of `plugin_id` (normally they are gone already: the kernel
    /// removes exiting processes). Its counters and name stay. Returns how many were removed.
    pub fn unregister(&self, plugin_id: u32) -> Result<usize, BpfError> {
        self.loaded(|l| {
            memory::remove_plugin(&mut l.mem, plugin_id);
            tracking::remove_plugin(&mut l.pids, plugin_id)
        })
    }

    /// Like [`Observers::unregister`] for the tracked pids of `plugin_id` whose process is gone
    /// (`/proc/<pid>` absent): another incarnation's live processes stay tracked.
    pub fn unregister_gone(&self, plugin_id: u32) -> Result<usize, BpfError> {
        let gone: Vec<u32> = self
            .tracked_pids(plugin_id)
            .into_iter()
            .filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if gone.len() == self.tracked_pids(plugin_id).len() {
            return self.unregister(plugin_id);
        }
        self.loaded(|l| {
            for p in &gone {
                memory::remove_pid(&mut l.mem, *p);
                let _ = l.pids.remove(p);
            }
            gone.len()
        })
    }

    /// The host pids tracked for `plugin_id`, sorted.
    pub fn tracked_pids(&self, plugin_id: u32) -> Vec<u32> {
        self.inner
            .with(|l| tracking::pids_of(&l.pids, plugin_id))
            .unwrap_or_default()
    }

    /// On-CPU time of `plugin_id` since the observers loaded (including slices still running).
    pub fn cpu_time(&self, plugin_id: u32) -> Option<Duration> {
        self.inner.cpu_time(plugin_id)
    }

    /// Resident memory of `plugin_id`'s processes (bytes), from the kernel's RSS counters.
    pub fn rss_bytes(&self, plugin_id: u32) -> Option<u64> {
        self.inner.rss_bytes(plugin_id)
    }

    /// OOM kills of `plugin_id`'s processes since the observers loaded.
    pub fn oom_kills(&self, plugin_id: u32) -> Option<u64> {
        self.inner.oom_kills(plugin_id)
    }

    /// Every violation counter, summed over CPUs.
    pub fn violations(&self) -> Vec<ViolationCount> {
        self.inner.violations()
    }

    /// What the kernel side could not record, by reason.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.inner.dropped()
    }

    /// What the kernel saw of plugin `name` (`None` when eBPF is not loaded or the name was never
    /// tracked).
    pub fn plugin_stats(&self, name: &str) -> Option<PluginKernelStats> {
        if !self.is_loaded() {
            return None;
        }
        let id = {
            let plugins = self.inner.plugins.lock().unwrap_or_else(|e| e.into_inner());
            plugins
                .iter()
                .find(|(_, n)| n.as_str() == name)
                .map(|(id, _)| *id)?
        };
        Some(PluginKernelStats {
            cpu_seconds: self.cpu_time(id).map(|d| d.as_secs_f64()),
            rss_bytes: self.rss_bytes(id),
            violations: self
                .violations()
                .iter()
                .filter(|v| v.plugin_id == id)
                .map(|v| v.count)
                .sum(),
            events_suppressed: self.events_suppressed(id).unwrap_or(0),
            event_budget_per_second: self.inner.event_budget,
            oom_kills: self.oom_kills(id),
            pids: self.tracked_pids(id),
            ipc: self
                .ipc_histograms(id)
                .into_iter()
                .map(|(d, h)| {
                    (
                        d.to_owned(),
                        IpcSummary {
                            count: h.count,
                            sum_seconds: h.sum_seconds,
                            p50_seconds: h.quantile(0.5),
                            p99_seconds: h.quantile(0.99),
                        },
                    )
                })
                .collect(),
        })
    }

    /// Violation events of `plugin_id` the kernel suppressed because the plugin was over its
    /// event budget, since the observers loaded (`None` when not loaded).
    pub fn events_suppressed(&self, plugin_id: u32) -> Option<u64> {
        self.inner.events_suppressed(plugin_id)
    }

    /// Violation events each plugin may send per second.
    pub fn event_budget(&self) -> u32 {
        self.inner.event_budget
    }

    /// Probe hits by processes of `plugin_id` on rings where they are not the expected publisher
    /// or consumer (dropped), since the observers loaded (`None` when the observer is down).
    pub fn ipc_forged(&self, plugin_id: u32) -> Option<u64> {
        self.inner.ipc_forged(plugin_id)
    }

    /// The IPC latency histograms of `plugin_id`, by direction (empty when the observer is down).
    pub fn ipc_histograms(&self, plugin_id: u32) -> BTreeMap<&'static str, IpcHistogram> {
        self.inner.ipc_histograms(plugin_id)
    }

    /// Attaches the IPC latency uprobes to plugin `name`'s new incarnation (host pid `pid`,
    /// binary `/proc/<pid>/exe`) and registers its rings; replaces a previous incarnation's.
    /// Probe hits on these rings count only from the incarnation (its side) and from this
    /// process, the agent (its side). Returns the attach path.
    pub fn ipc_attach(
        &self,
        name: &str,
        pid: u32,
        to_plugin_ring: u64,
        from_plugin_ring: u64,
    ) -> Result<String, String> {
        let id = self.plugin_id(name).map_err(|e| e.to_string())?;
        self.ipc_detach(name, None);
        let exe = format!("/proc/{pid}/exe");
        self.loaded(|l| {
            let Loaded { _ebpf, ipc, .. } = l;
            let Some(ipc) = ipc.as_mut() else {
                return Err("the ipc_latency observer is down".to_owned());
            };
            let mut a = ipc::attach(_ebpf, std::path::Path::new(&exe), pid)?;
            let peers = ipc::Peers {
                agent: std::process::id(),
                plugin: pid,
            };
            if let Err(e) = ipc::register_rings(
                &mut ipc.rings,
                &mut a,
                id,
                peers,
                to_plugin_ring,
                from_plugin_ring,
            ) {
                ipc::unregister_rings(&mut ipc.rings, &a);
                ipc::detach(_ebpf, a);
                return Err(format!("srediag_ipc_ring: {e}"));
            }
            let target = std::fs::read_link(&exe)
                .map(|p| format!("{exe} ({})", p.display()))
                .unwrap_or(exe);
            ipc.plugins
                .insert(name.to_owned(), (a, target.clone(), pid));
            Ok(target)
        })
        .map_err(|e| e.to_string())?
    }

    /// Detaches plugin `name`'s IPC uprobes and forgets its rings (its histograms stay); with
    /// `Some(pid)`, only when they belong to that incarnation (a hot swap's new incarnation
    /// attached its own since).
    pub fn ipc_detach(&self, name: &str, pid: Option<u32>) {
        let _ = self.loaded(|l| {
            let Loaded { _ebpf, ipc, .. } = l;
            if let Some(ipc) = ipc.as_mut()
                && ipc
                    .plugins
                    .get(name)
                    .is_some_and(|(_, _, p)| pid.is_none_or(|pid| pid == *p))
                && let Some((a, _, _)) = ipc.plugins.remove(name)
            {
                ipc::unregister_rings(&mut ipc.rings, &a);
                ipc::detach(_ebpf, a);
            }
        });
    }

    /// Plugin name → where its IPC uprobes are attached now.
    pub fn ipc_attachments(&self) -> BTreeMap<String, String> {
        self.inner
            .with(|l| {
                l.ipc
                    .as_ref()
                    .map(|i| {
                        i.plugins
                            .iter()
                            .map(|(n, (_, t, _))| (n.clone(), t.clone()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// The last [`RECENT_EVENTS`] violation events, oldest first.
    pub fn recent_violations(&self) -> Vec<Violation> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A live stream of violations (empty when the event reader is down).
    pub fn subscribe(&self) -> broadcast::Receiver<Violation> {
        self.inner.events.subscribe()
    }

    /// Ring buffer records read so far.
    pub fn events_received(&self) -> u64 {
        self.inner
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns the kernel's BPF run-time accounting on for `window` (at most
    /// [`STATS_MAX_WINDOW`]; extends a window already open) and returns how long it stays on.
    /// It is closed by the next call to [`program_stats`](Self::program_stats), a scrape, or the
    /// timer task started here (inside a tokio runtime), whichever comes first after the window.
    pub fn enable_stats(&self, window: Duration) -> Result<Duration, BpfError> {
        self.loaded(|_| ())?;
        let left = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open(window)
            .map_err(|reason| BpfError::Stats { reason })?;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&self.inner);
            rt.spawn(async move {
                tokio::time::sleep(left + Duration::from_millis(10)).await;
                if let Some(inner) = weak.upgrade() {
                    inner.stats_on();
                }
            });
        }
        Ok(left)
    }

    /// Whether run-time accounting is on, and for how much longer.
    pub fn stats_window(&self) -> (bool, Duration) {
        let on = self.inner.stats_on();
        let left = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remaining();
        (on, left)
    }

    /// Run time and run count of each loaded program (they grow only while stats are on).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.inner.stats_on();
        self.inner.program_stats()
    }

    /// Kernel memory of each map.
    pub fn map_memory(&self) -> Vec<(&'static str, u64)> {
        self.inner.map_memory.clone()
    }

    /// Kernel ids of the loaded programs (attached or not), e.g. to check they are gone later.
    pub fn program_ids(&self) -> Vec<u32> {
        self.inner
            .with(|l| l.program_ids.clone())
            .unwrap_or_default()
    }

    /// Registers the `srediag_bpf_*` and `srediag_plugin_seccomp_violations_total` metrics,
    /// read from the maps at each scrape. The collector holds a `Weak`: it does not keep the
    /// maps alive, and reports every observer down once `self` is dropped.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        registry.register(Box::new(metrics::BpfCollector::new(Arc::downgrade(
            &self.inner,
        ))))
    }
}

// ---- process-wide instance: the hooks the agent calls ---------------------------------------

static GLOBAL: Mutex<Option<Arc<Observers>>> = Mutex::new(None);

fn global() -> Option<Arc<Observers>> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Loads the observers, registers their metrics in `registry`, logs what runs and why not, and
/// keeps them as the process-wide instance the plugin hooks use (until [`stop`]). Call inside the
/// tokio runtime (the event reader runs on it). Never fails: missing eBPF is logged and reported
/// by `srediag_bpf_observer_up`.
pub fn start(registry: &prometheus::Registry) {
    let started = std::time::Instant::now();
    let obs = Arc::new(Observers::load(Options::default()));
    if let Err(e) = obs.register_metrics(registry) {
        tracing::warn!(error = %e, "cannot register the eBPF observer metrics");
    }
    for s in obs.status() {
        if s.up {
            tracing::info!(observer = s.name, attach = ?s.attach, note = s.reason.as_deref().unwrap_or(""), "eBPF observer up");
        } else {
            tracing::warn!(
                observer = s.name,
                reason = s.reason.as_deref().unwrap_or(""),
                "eBPF observer down"
            );
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), "eBPF observers loaded");
    *GLOBAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(obs);
}

/// The process-wide instance, when [`start`] ran (e.g. for CLI surfaces).
pub fn observers() -> Option<Arc<Observers>> {
    global()
}

/// Drops the process-wide instance: programs detach, maps are freed (once no other `Arc` is held).
pub fn stop() {
    let obs = GLOBAL.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(obs);
}

/// The spawner thread armed for one plugin clone (see [`arm_spawn`]); dropping it disarms.
#[must_use = "the thread is disarmed when this is dropped"]
pub struct SpawnArm {
    obs: Arc<Observers>,
    tid: u32,
}

impl Drop for SpawnArm {
    fn drop(&mut self) {
        self.obs.disarm(self.tid);
    }
}

/// Spawner hook, on the spawner thread right before it clones plugin `name`: arms the calling
/// thread so that the kernel tracks the process it clones next as the plugin from its first
/// instruction (before it builds its sandbox and execs), whatever happens to it before the
/// supervisor hears back. Keep the guard until the clone returned. `None` (logged) when eBPF is
/// unavailable.
pub fn arm_spawn(name: &str) -> Option<SpawnArm> {
    let obs = global()?;
    if !obs.is_loaded() {
        return None;
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    match obs.plugin_id(name).and_then(|id| obs.arm(id, name, tid)) {
        Ok(()) => Some(SpawnArm { obs, tid }),
        Err(e) => {
            tracing::warn!(plugin = %name, error = %e, "eBPF: cannot track the plugin from its first instruction; it is tracked once the supervisor registers it");
            None
        }
    }
}

/// Supervisor hook, right after the spawn returned: tracks the plugin process and the current
/// members of its cgroup (`members` is called after the process is tracked, so nothing forked in
/// between is missed). The kernel normally tracks them already (the spawner thread was armed, see
/// [`arm_spawn`]); this covers a kernel without the fork hook. Logs and carries on when eBPF is
/// unavailable.
pub fn plugin_started(name: &str, pid: u32, members: impl FnOnce() -> Vec<u32>) {
    let Some(obs) = global() else { return };
    if !obs.is_loaded() {
        return;
    }
    let result = obs.plugin_id(name).and_then(|id| {
        obs.register(id, name, &[pid])?;
        obs.register(id, name, &members())
    });
    if let Err(e) = result {
        tracing::warn!(plugin = %name, error = %e, "eBPF: cannot track the plugin's processes");
    }
}

/// Supervisor hook, after the handshake and before the data path starts: attaches the IPC
/// latency uprobes to the incarnation (`pid`: the plugin's host pid) and registers its rings.
/// Logs and carries on when eBPF is unavailable.
pub fn ipc_started(name: &str, pid: u32, to_plugin_ring: u64, from_plugin_ring: u64) {
    let Some(obs) = global() else { return };
    if !obs.is_loaded() || !obs.status().iter().any(|s| s.name == "ipc_latency" && s.up) {
        return;
    }
    match obs.ipc_attach(name, pid, to_plugin_ring, from_plugin_ring) {
        Ok(target) => {
            tracing::debug!(plugin = %name, %target, "eBPF: IPC latency uprobes attached")
        }
        Err(e) => {
            tracing::warn!(plugin = %name, error = %e, "eBPF: no IPC latency for this plugin incarnation")
        }
    }
}

/// Supervisor hook, after an incarnation's processes were reaped (its cgroup emptied): detaches
/// its IPC uprobes and forgets the plugin's tracked pids that are gone. Pids still alive belong
/// to another incarnation of the same plugin (a hot swap's new one) and stay tracked.
pub fn plugin_stopped(name: &str, pid: u32) {
    let Some(obs) = global() else { return };
    if !obs.is_loaded() {
        return;
    }
    obs.ipc_detach(name, Some(pid));
    if let Ok(id) = obs.plugin_id(name) {
        match obs.unregister_gone(id) {
            Ok(n) if n > 0 => {
                tracing::debug!(plugin = %name, pids = n, "eBPF: untracked leftover pids")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(plugin = %name, error = %e, "eBPF: cannot untrack the plugin"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &prometheus::Registry) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&r.gather())
            .unwrap()
    }

    /// Runs with or without privileges: unprivileged, every observer is down with a reason.
    #[test]
    fn metrics_say_which_observers_run_and_outlive_them() {
        let registry = prometheus::Registry::new();
        let obs = Observers::load(Options::default());
        obs.register_metrics(&registry).unwrap();
        let status = obs.status();
        println!("{status:#?}");
        assert_eq!(status.iter().map(|s| s.name).collect::<Vec<_>>(), OBSERVERS);
        // Outside a tokio runtime there is no event reader.
        let events = status.iter().find(|s| s.name == "events").unwrap();
        assert!(!events.up && events.reason.is_some(), "{events:?}");
        let text = render(&registry);
        for o in OBSERVERS {
            assert!(
                text.contains(&format!("srediag_bpf_observer_up{{observer=\"{o}\"}}")),
                "{text}"
            );
        }
        if obs.is_loaded() {
            assert!(
                text.contains("srediag_bpf_map_memory_bytes{map=\"srediag_pids\"}"),
                "{text}"
            );
        } else {
            assert!(
                status.iter().all(|s| !s.up && s.reason.is_some()),
                "{status:?}"
            );
        }
        drop(obs);
        let text = render(&registry);
        assert!(
            text.contains("srediag_bpf_observer_up{observer=\"cpu\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn plugin_ids_are_stable_and_bounded() {
        let obs = Observers::load(Options::default());
        let a = obs.plugin_id("a").unwrap();
        let b = obs.plugin_id("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(obs.plugin_id("a").unwrap(), a);
        assert!(matches!(
            obs.register(0, "x", &[1]),
            Err(BpfError::PluginId { .. })
        ));
        assert!(matches!(
            obs.register(abi::MAX_PLUGINS, "x", &[1]),
            Err(BpfError::PluginId { .. })
        ));
        for i in 0..abi::MAX_PLUGINS {
            let _ = obs.plugin_id(&format!("p{i}"));
        }
        assert!(matches!(
            obs.plugin_id("one-too-many"),
            Err(BpfError::NoFreeId { .. })
        ));
    }
}
