//! Loading the BPF object: CO-RE against the kernel's BTF, every hook attached in the best
//! variant that works (`object.rs`), each observer's status and reason, the maps taken out of
//! the object, their kernel memory; [`Observers::start`] for the agent (load, metrics, log).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader};
use tokio::sync::broadcast;

use super::abi::{self, CpuState, EventBudget, IpcHist, IpcPending, IpcRing, Rss, ViolationKey};
use super::observers::{Inner, Observers};
use super::{OBSERVERS, ObserverStatus, Options, events, ipc, object, seccomp, stats};

/// Everything that exists only when the object loaded.
pub(super) struct Loaded {
    // Field order is drop order: programs and links first, then the maps.
    pub(super) _ebpf: Ebpf,
    pub(super) pids: HashMap<MapData, u32, u32>,
    pub(super) spawners: HashMap<MapData, u32, u32>,
    pub(super) cpu: PerCpuArray<MapData, u64>,
    pub(super) cpust: PerCpuArray<MapData, CpuState>,
    pub(super) viol: PerCpuHashMap<MapData, ViolationKey, u64>,
    pub(super) mem: HashMap<MapData, u32, Rss>,
    pub(super) ooms: PerCpuArray<MapData, u64>,
    pub(super) stats: PerCpuArray<MapData, u64>,
    pub(super) budget: Array<MapData, EventBudget>,
    pub(super) ring: Option<RingBuf<MapData>>,
    pub(super) program_ids: Vec<u32>,
    /// The IPC latency observer's maps, when it runs.
    pub(super) ipc: Option<IpcMaps>,
}

pub(super) struct IpcMaps {
    pub(super) rings: HashMap<MapData, u64, IpcRing>,
    pub(super) hist: PerCpuArray<MapData, IpcHist>,
    pub(super) pending: Array<MapData, IpcPending>,
    pub(super) forged: PerCpuArray<MapData, u64>,
    /// The agent's own uprobes (kept for the object's lifetime).
    pub(super) _agent: ipc::Attachment,
    /// Per plugin name: its current incarnation's uprobes, rings and attach path.
    /// Plugin name → its attached incarnation's uprobes, where they are, and its pid.
    pub(super) plugins: BTreeMap<String, (ipc::Attachment, String, u32)>,
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

    /// Loads the observers for `srediag run`, registers their metrics in `registry` and logs
    /// what runs and why not. Call inside the tokio runtime (the event reader runs on it). Never
    /// fails: missing eBPF is logged and reported by `srediag_bpf_observer_up`.
    pub fn start(registry: &prometheus::Registry) -> Observers {
        let started = std::time::Instant::now();
        let obs = Observers::load(Options::default());
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
        obs
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
            // Only this process's spawner thread is ever armed (see `hooks.rs`).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::Options;

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
}
