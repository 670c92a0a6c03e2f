//! IPC latency observer: uprobes on the SDK's probe sites (`srediag_probe_publish`,
//! `srediag_probe_consume`, see `plugin-sdk/src/probe.rs`) in the agent's own binary and in each
//! plugin's binary.
//!
//! - The agent's uprobes attach once, at load, to `/proc/self/exe` scoped to the agent's pid.
//! - Each plugin incarnation's uprobes attach, after its handshake and before its data path
//!   starts, to `/proc/<pid>/exe` scoped to the plugin's host pid: the magic link works for a
//!   binary exec'd by path and for one exec'd from a (sealed) memfd, and the pid scope keeps
//!   other processes running the same binary (another agent, another plugin) out. They detach
//!   when the incarnation stops.
//! - The incarnation's two ring ids are registered in `srediag_ipc_ring` (ring → plugin id,
//!   direction, and the tgid allowed at each site: the agent's for its side — publish on
//!   `to_plugin`, consume on `from_plugin` — and the incarnation's for the plugin's side); the
//!   programs ignore any other ring and drop (and count, `srediag_ipc_forged`) a hit from any
//!   other process: a plugin can call its own probe sites with any ring id it likes.
//! - Publishes wait for their consume in `srediag_ipc_pending`, an array with
//!   `SREDIAG_IPC_PENDING_PER_RING` slots per (plugin, direction): a ring only ever replaces its
//!   own entries, so no plugin can flush another's pending samples.
//!
//! The uprobes stay attached while sampling is off: the probe sites are only *called* for
//! sampled batches (`seq % n == 0`, the period lives in the ring header), so with sampling off no
//! uprobe is ever hit and attaching on demand would buy nothing but attach latency and races.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use aya::Ebpf;
use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeLinkId, UProbeScope};
use serde::Serialize;

use super::abi::{self, IpcHist, IpcRing};
use super::load::Loaded;
use super::object::describe;

/// The two programs: (program name, probe site symbol).
const PROGRAMS: [(&str, &str); 2] = [
    ("srediag_ipc_publish", "srediag_probe_publish"),
    ("srediag_ipc_consume", "srediag_probe_consume"),
];

/// The direction label values, indexed by `SREDIAG_IPC_*`.
pub const DIRECTIONS: [&str; 2] = ["to_plugin", "from_plugin"];

/// Uprobe links of one attach target.
#[derive(Debug, Default)]
pub(super) struct Attachment {
    links: Vec<(&'static str, UProbeLinkId)>,
    rings: Vec<u64>,
}

/// Loads both programs (once).
pub(super) fn load(ebpf: &mut Ebpf) -> Result<(), String> {
    for (prog, _) in PROGRAMS {
        let p: &mut UProbe = ebpf
            .program_mut(prog)
            .ok_or_else(|| format!("program {prog} missing from the object"))?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        p.load()
            .map_err(|e| format!("load {prog}: {}", describe(&e)))?;
    }
    Ok(())
}

/// Both probe sites must be distinct addresses in `exe` (identical functions can be folded into
/// one by the linker, which would make publish and consume one uprobe).
fn check_sites(exe: &Path) -> Result<(), String> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(exe).map_err(|e| format!("read {}: {e}", exe.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", exe.display()))?;
    let addr = |name: &str| {
        file.symbols()
            .chain(file.dynamic_symbols())
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    };
    match (addr(PROGRAMS[0].1), addr(PROGRAMS[1].1)) {
        (Some(a), Some(b)) if a != b => Ok(()),
        (Some(_), Some(_)) => Err(format!(
            "{}: srediag_probe_publish and srediag_probe_consume share one address (folded by the linker)",
            exe.display()
        )),
        _ => Err(format!(
            "{}: no srediag_probe_publish/srediag_probe_consume symbols (stripped, or not built with the SDK)",
            exe.display()
        )),
    }
}

/// Attaches both programs to the probe sites of `exe`, firing only in process `pid`.
pub(super) fn attach(ebpf: &mut Ebpf, exe: &Path, pid: u32) -> Result<Attachment, String> {
    check_sites(exe)?;
    let pid = NonZeroU32::new(pid).ok_or("pid 0")?;
    let mut out = Attachment::default();
    for (prog, symbol) in PROGRAMS {
        let p: Result<&mut UProbe, String> = ebpf
            .program_mut(prog)
            .ok_or_else(|| format!("program {prog} missing from the object"))
            .and_then(|p| p.try_into().map_err(|e| format!("{e}")));
        let r = p.and_then(|p| {
            p.attach(symbol, exe, UProbeScope::OneProcess(pid))
                .map_err(|e| format!("uprobe {symbol} in {}: {}", exe.display(), describe(&e)))
        });
        match r {
            Ok(id) => out.links.push((prog, id)),
            Err(e) => {
                detach(ebpf, out);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Detaches what [`attach`] attached (a link whose process is gone detaches fine).
pub(super) fn detach(ebpf: &mut Ebpf, a: Attachment) {
    for (prog, id) in a.links {
        if let Some(p) = ebpf.program_mut(prog)
            && let Ok(p) = <&mut UProbe>::try_from(p)
            && let Err(e) = p.detach(id)
        {
            tracing::debug!(program = prog, error = %e, "uprobe detach");
        }
    }
}

/// The processes allowed at an incarnation's probe sites: the agent (host tgid) and the plugin
/// incarnation (host pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Peers {
    /// The agent's tgid: publishes `to_plugin`, consumes `from_plugin`.
    pub agent: u32,
    /// The plugin incarnation's pid: consumes `to_plugin`, publishes `from_plugin`.
    pub plugin: u32,
}

impl Peers {
    /// The ring value of `direction` for `plugin_id`.
    fn ring(self, plugin_id: u32, direction: u32) -> IpcRing {
        let (publisher_tgid, consumer_tgid) = if direction == abi::IPC_TO_PLUGIN {
            (self.agent, self.plugin)
        } else {
            (self.plugin, self.agent)
        };
        IpcRing {
            plugin_id,
            direction,
            publisher_tgid,
            consumer_tgid,
        }
    }
}

/// Registers an incarnation's rings (to_plugin, from_plugin) for `plugin_id`, accepting probe
/// hits only from `peers`.
pub(super) fn register_rings(
    map: &mut HashMap<MapData, u64, IpcRing>,
    a: &mut Attachment,
    plugin_id: u32,
    peers: Peers,
    to_plugin: u64,
    from_plugin: u64,
) -> Result<(), aya::maps::MapError> {
    for (ring, direction) in [
        (to_plugin, abi::IPC_TO_PLUGIN),
        (from_plugin, abi::IPC_FROM_PLUGIN),
    ] {
        map.insert(ring, peers.ring(plugin_id, direction), 0)?;
        a.rings.push(ring);
    }
    Ok(())
}

/// Forgets an incarnation's rings.
pub(super) fn unregister_rings(map: &mut HashMap<MapData, u64, IpcRing>, a: &Attachment) {
    for ring in &a.rings {
        let _ = map.remove(ring);
    }
}

/// One (plugin, direction) histogram summed over CPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Samples.
    pub count: u64,
    /// Exact sum of the latencies, seconds (tracked in BPF, not estimated from buckets).
    pub sum_seconds: f64,
    /// Bucket `b`: latencies in `[2^b, 2^(b+1))` ns (bucket 0 includes 0, the last is
    /// open-ended).
    pub log2_ns: Vec<u64>,
}

impl Histogram {
    fn from_percpu(values: impl IntoIterator<Item = IpcHist>) -> Histogram {
        let mut h = Histogram {
            count: 0,
            sum_seconds: 0.0,
            log2_ns: vec![0; abi::IPC_BUCKETS],
        };
        let mut sum_ns = 0u64;
        for v in values {
            h.count += v.count;
            sum_ns = sum_ns.wrapping_add(v.sum_ns);
            for (b, n) in h.log2_ns.iter_mut().zip(v.buckets) {
                *b += n;
            }
        }
        h.sum_seconds = sum_ns as f64 / 1e9;
        h
    }

    /// The upper bound (`le`, seconds) of bucket `b`: 2^(b+1) ns.
    pub fn upper_bound(b: usize) -> f64 {
        (1u64 << (b + 1)) as f64 / 1e9
    }

    /// Prometheus buckets: (`le` seconds, cumulative count) for every bucket but the last
    /// (open-ended: it is `+Inf`, i.e. `count`).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.log2_ns[..self.log2_ns.len() - 1]
            .iter()
            .enumerate()
            .map(|(b, n)| {
                acc += n;
                (Self::upper_bound(b), acc)
            })
            .collect()
    }

    /// The `q` quantile (seconds), interpolated linearly inside its log2 bucket (the bucket
    /// itself is exact, the position inside it an estimate; at most a factor 2 off). `None`
    /// without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.log2_ns.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut acc = 0u64;
        for (b, n) in self.log2_ns.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            if (acc + n) as f64 >= rank {
                let lo = if b == 0 { 0.0 } else { (1u64 << b) as f64 };
                let hi = (1u64 << (b + 1)) as f64;
                let frac = (rank - acc as f64) / *n as f64;
                return Some((lo + (hi - lo) * frac) / 1e9);
            }
            acc += n;
        }
        None
    }
}

/// The histogram of (`plugin_id`, `direction`).
pub(super) fn histogram(
    map: &PerCpuArray<MapData, IpcHist>,
    plugin_id: u32,
    direction: u32,
) -> Option<Histogram> {
    let v = map.get(&(plugin_id * 2 + (direction & 1)), 0).ok()?;
    Some(Histogram::from_percpu(v.iter().copied()))
}

/// Forged probe hits made by processes of `plugin_id`, summed over CPUs.
pub(super) fn forged(map: &PerCpuArray<MapData, u64>, plugin_id: u32) -> Option<u64> {
    map.get(&plugin_id, 0).ok().map(|v| v.iter().sum())
}

/// Per direction label, the histogram of `plugin_id` (directions without samples included).
pub(super) fn histograms(
    map: &PerCpuArray<MapData, IpcHist>,
    plugin_id: u32,
) -> BTreeMap<&'static str, Histogram> {
    let mut out = BTreeMap::new();
    for (d, name) in DIRECTIONS.iter().enumerate() {
        if let Some(h) = histogram(map, plugin_id, d as u32) {
            out.insert(*name, h);
        }
    }
    out
}

/// Per-incarnation attachment, on the observers' handle (the supervisor's `ipc_started` and
/// `plugin_stopped` hooks, the admin socket's `bpf status`).
impl super::Observers {
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
            let mut a = attach(_ebpf, std::path::Path::new(&exe), pid)?;
            let peers = Peers {
                agent: std::process::id(),
                plugin: pid,
            };
            if let Err(e) = register_rings(
                &mut ipc.rings,
                &mut a,
                id,
                peers,
                to_plugin_ring,
                from_plugin_ring,
            ) {
                unregister_rings(&mut ipc.rings, &a);
                detach(_ebpf, a);
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
                unregister_rings(&mut ipc.rings, &a);
                detach(_ebpf, a);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(buckets: &[(usize, u64)]) -> Histogram {
        let mut v = IpcHist::default();
        for (b, n) in buckets {
            v.buckets[*b] = *n;
            v.count += n;
        }
        v.sum_ns = 1_500;
        Histogram::from_percpu([v, IpcHist::default()])
    }

    #[test]
    fn each_site_accepts_only_its_own_side() {
        let p = Peers {
            agent: 10,
            plugin: 20,
        };
        let to = p.ring(3, abi::IPC_TO_PLUGIN);
        assert_eq!((to.publisher_tgid, to.consumer_tgid), (10, 20));
        let from = p.ring(3, abi::IPC_FROM_PLUGIN);
        assert_eq!((from.publisher_tgid, from.consumer_tgid), (20, 10));
        assert_eq!((from.plugin_id, from.direction), (3, abi::IPC_FROM_PLUGIN));
    }

    #[test]
    fn buckets_are_cumulative_in_seconds() {
        let h = hist(&[(10, 3), (12, 1)]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_seconds, 1.5e-6);
        let c = h.cumulative();
        assert_eq!(c.len(), abi::IPC_BUCKETS - 1);
        assert_eq!(c[9], (1024e-9, 0));
        assert_eq!(c[10], (2048e-9, 3));
        assert_eq!(c[11], (4096e-9, 3));
        assert_eq!(c[12], (8192e-9, 4));
        assert_eq!(c.last().unwrap().1, 4);
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        assert_eq!(hist(&[]).quantile(0.5), None);
        let h = hist(&[(10, 98), (20, 2)]);
        let p50 = h.quantile(0.5).unwrap();
        assert!((1024e-9..2048e-9).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((1_048_576e-9..=2_097_152e-9).contains(&p99), "{p99}");
        let p0 = h.quantile(0.0).unwrap();
        assert!(p0 >= 1024e-9, "{p0}");
    }
}
