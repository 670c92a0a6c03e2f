//! The `hostmetrics` receiver: CPU, memory, load, disk, network and filesystem metrics from procfs.
//!
//! [`Scraper`] reads the host's `/proc` files (under [`Config::root_path`], so the agent can run in
//! a container with the host's root mounted at `/hostfs`) and statvfs(2) results, and turns them
//! into one OTLP [`Metrics`] batch per scrape: one resource (`host.name`, `os.type`) and one scope
//! (`srediag/hostmetrics`). Metric names, units and attributes follow the OpenTelemetry Collector's
//! `hostmetrics` receiver. Cumulative sums start at the boot time (`btime` in `/proc/stat`).
//!
//! Each scraper family (`cpu`, `memory`, `load`, `disk`, `network`, `filesystem`) is independent:
//! one that fails (a file unreadable or malformed) is logged and skipped, the others' metrics are
//! still returned. [`Scraper::scrape`] fails only when nothing at all could be collected.
//!
//! Parsing uses the `procfs` crate's parsers on the text read from `root_path` (`/proc/stat`,
//! `/proc/loadavg`, `/proc/diskstats`, `/proc/net/dev`, `/proc/self/mountinfo`); `/proc/meminfo`
//! has a plain parser of its own (procfs's requires ~20 fields we do not use and can overflow on
//! odd values), as do the CPU names of `/proc/stat` and mountinfo's octal escapes.
//!
//! `scrape` does blocking file I/O and statvfs(2) calls (which can stall on a dead network file
//! system): run it on a blocking thread.

mod cpu;
mod disk;
mod filesystem;
mod load;
mod memory;
mod network;

#[cfg(test)]
mod tests;

use crate::model::Metrics;
use crate::model::common::{InstrumentationScope, KeyValue};
use crate::model::metrics::{Metric, ResourceMetrics, ScopeMetrics};
use crate::model::{attr_str, resource};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The instrumentation scope name of every metric this receiver produces.
pub const SCOPE_NAME: &str = "srediag/hostmetrics";

/// Configuration of the `hostmetrics` receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Time between two scrapes (`10s`, `1m`). At least 1s.
    #[serde(with = "humantime_serde")]
    pub collection_interval: Duration,
    /// The scraper families to run, each at most once.
    pub scrapers: Vec<ScraperKind>,
    /// Where the host's root file system is mounted, as the OpenTelemetry Collector's `root_path`:
    /// `/` on the host, `/hostfs` in a container started with `-v /:/hostfs:ro`. `/proc` files
    /// are read under it; mounts are taken from `<root_path>/proc/self/mountinfo` and only those
    /// at or below `root_path` are reported, with `root_path` stripped from their mount point.
    pub root_path: PathBuf,
    /// Settings of the `filesystem` scraper.
    pub filesystem: FilesystemConfig,
    /// Settings of the `network` scraper.
    pub network: NetworkConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // The OpenTelemetry Collector's scraper default.
            collection_interval: Duration::from_secs(10),
            // Every family: a host overview out of the box.
            scrapers: ScraperKind::ALL.to_vec(),
            // The agent runs on the host itself unless told otherwise.
            root_path: PathBuf::from("/"),
            // Pseudo and read-only image file systems excluded, see `FilesystemConfig`.
            filesystem: FilesystemConfig::default(),
            // The loopback interface excluded, see `NetworkConfig`.
            network: NetworkConfig::default(),
        }
    }
}

/// Settings of the `filesystem` scraper.
///
/// Every entry is a pattern where `*` matches any run of characters (`/` included) and anything
/// else matches itself: `fuse.*`, `/var/lib/docker/*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// File system types (mountinfo's type field, as `ext4` or `fuse.sshfs`) not reported.
    pub exclude_fs_types: Vec<String>,
    /// Mount points not reported, as seen by the host (without `root_path`).
    pub exclude_mount_points: Vec<String>,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            // Kernel pseudo file systems (no storage behind them, mostly zero-sized) and squashfs
            // (read-only images such as snaps, always 100% full). tmpfs and overlay are kept:
            // they hold real data (RAM, container root file systems) and can fill up.
            exclude_fs_types: [
                "proc",
                "sysfs",
                "cgroup",
                "cgroup2",
                "devtmpfs",
                "devpts",
                "mqueue",
                "debugfs",
                "tracefs",
                "securityfs",
                "pstore",
                "bpf",
                "autofs",
                "configfs",
                "fusectl",
                "hugetlbfs",
                "binfmt_misc",
                "nsfs",
                "squashfs",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            // Every mount point of a kept type is reported.
            exclude_mount_points: Vec::new(),
        }
    }
}

/// Settings of the `network` scraper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Interfaces not reported: names, or patterns where `*` matches any run of characters
    /// (`veth*`).
    pub exclude_interfaces: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            // Loopback traffic never leaves the host and would double count local clients.
            exclude_interfaces: vec!["lo".to_string()],
        }
    }
}

/// A scraper family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScraperKind {
    /// `system.cpu.time` and `system.cpu.logical.count`, from `/proc/stat`.
    Cpu,
    /// `system.memory.usage` and `system.memory.utilization`, from `/proc/meminfo`.
    Memory,
    /// `system.cpu.load_average.{1m,5m,15m}`, from `/proc/loadavg`.
    Load,
    /// `system.disk.io`, `system.disk.operations` and `system.disk.io_time`, from
    /// `/proc/diskstats`.
    Disk,
    /// `system.network.{io,packets,errors,dropped}`, from `/proc/net/dev`.
    Network,
    /// `system.filesystem.usage` and `system.filesystem.utilization`, from mountinfo and
    /// statvfs(2).
    Filesystem,
}

impl ScraperKind {
    /// Every scraper family, in the order they run by default.
    pub const ALL: [ScraperKind; 6] = [
        ScraperKind::Cpu,
        ScraperKind::Memory,
        ScraperKind::Load,
        ScraperKind::Disk,
        ScraperKind::Network,
        ScraperKind::Filesystem,
    ];

    /// The lowercase name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ScraperKind::Cpu => "cpu",
            ScraperKind::Memory => "memory",
            ScraperKind::Load => "load",
            ScraperKind::Disk => "disk",
            ScraperKind::Network => "network",
            ScraperKind::Filesystem => "filesystem",
        }
    }
}

impl fmt::Display for ScraperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Config {
    /// Checks what serde cannot: the interval, the scraper list, the root path and the patterns.
    pub fn validate(&self) -> Result<(), String> {
        if self.collection_interval < Duration::from_secs(1) {
            return Err(format!(
                "collection_interval must be at least 1s, got {}",
                humantime::format_duration(self.collection_interval)
            ));
        }
        if self.scrapers.is_empty() {
            return Err(
                "scrapers must list at least one of cpu, memory, load, disk, network, filesystem"
                    .into(),
            );
        }
        let mut seen = HashSet::new();
        for kind in &self.scrapers {
            if !seen.insert(*kind) {
                return Err(format!("scrapers lists {kind} more than once"));
            }
        }
        if !self.root_path.is_absolute() {
            return Err(format!(
                "root_path must be an absolute path, got {:?}",
                self.root_path.display().to_string()
            ));
        }
        let lists = [
            (
                "filesystem.exclude_fs_types",
                &self.filesystem.exclude_fs_types,
            ),
            (
                "filesystem.exclude_mount_points",
                &self.filesystem.exclude_mount_points,
            ),
            (
                "network.exclude_interfaces",
                &self.network.exclude_interfaces,
            ),
        ];
        for (name, list) in lists {
            if list.iter().any(|p| p.is_empty()) {
                return Err(format!("{name} contains an empty pattern"));
            }
        }
        Ok(())
    }
}

/// Why a scraper, or a whole scrape, failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file's content is not in the expected format.
    #[error("cannot parse {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// statvfs(2) failed on every mount the filesystem scraper should report.
    #[error("statvfs failed on all {count} mounts, first {}: {source}", path.display())]
    Statvfs {
        /// Mounts attempted.
        count: usize,
        /// The first mount point that failed (as statvfs(2) was given it).
        path: PathBuf,
        /// Its error.
        #[source]
        source: io::Error,
    },
    /// Every scraper that ran failed: nothing was collected.
    #[error("no host metrics collected: {}", join_failures(.0))]
    NothingCollected(Vec<(ScraperKind, ScrapeError)>),
}

fn join_failures(failures: &[(ScraperKind, ScrapeError)]) -> String {
    failures
        .iter()
        .map(|(kind, e)| format!("{kind}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// File system figures from statvfs(2), in blocks of `frsize` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsStat {
    /// Size of the file system (`f_blocks`).
    pub blocks: u64,
    /// Free blocks, including those reserved for root (`f_bfree`).
    pub bfree: u64,
    /// Free blocks available to unprivileged users (`f_bavail`).
    pub bavail: u64,
    /// Fragment size: the unit of the block counts (`f_frsize`).
    pub frsize: u64,
}

/// The statvfs(2) seam: tests replace it to get exact figures for fixture mounts.
type StatFs = fn(&Path) -> io::Result<FsStat>;

/// What every scraper family needs from its caller.
struct Context<'a> {
    cfg: &'a Config,
    /// Boot time in Unix nanoseconds: the start of every cumulative sum (0 when unknown).
    start: u64,
    /// USER_HZ: the unit of the CPU times in `/proc/stat`.
    clk_tck: u64,
}

impl Context<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        self.cfg.root_path.join(rel)
    }
}

/// Scrapes host metrics. Keeps what must survive between scrapes: the boot time, and which
/// failures were already logged (a failure is logged at `warn` when it starts or changes, at
/// `debug` while it repeats, and its end at `info`).
pub struct Scraper {
    cfg: Config,
    host_name: String,
    clk_tck: u64,
    /// Boot time in Unix seconds, read from `/proc/stat` at the first scrape that can.
    boot_time: Option<u64>,
    statfs: StatFs,
    /// The error last logged for each failing family.
    failing: HashMap<ScraperKind, String>,
    /// Mount points whose statvfs(2) failure was already logged at `warn`.
    failing_mounts: HashSet<PathBuf>,
}

impl Scraper {
    /// A scraper for `cfg` (assumed validated). Reads the host name; touches nothing else yet.
    pub fn new(cfg: &Config) -> Self {
        Scraper {
            cfg: cfg.clone(),
            host_name: host_name(&cfg.root_path),
            clk_tck: clock_ticks(),
            boot_time: None,
            statfs: filesystem::statvfs,
            failing: HashMap::new(),
            failing_mounts: HashSet::new(),
        }
    }

    /// Runs every configured scraper family once. Families that fail are logged and left out;
    /// the error is returned only when no data point at all was collected.
    pub fn scrape(&mut self) -> Result<Metrics, ScrapeError> {
        let start = self.boot_time_nanos();
        let ctx = Context {
            cfg: &self.cfg,
            start,
            clk_tck: self.clk_tck,
        };
        let mut metrics: Vec<Metric> = Vec::new();
        let mut failures = Vec::new();
        for &kind in &self.cfg.scrapers {
            let result = match kind {
                ScraperKind::Cpu => cpu::scrape(&ctx),
                ScraperKind::Memory => memory::scrape(&ctx),
                ScraperKind::Load => load::scrape(&ctx),
                ScraperKind::Disk => disk::scrape(&ctx),
                ScraperKind::Network => network::scrape(&ctx),
                ScraperKind::Filesystem => {
                    filesystem::scrape(&ctx, self.statfs, &mut self.failing_mounts)
                }
            };
            match result {
                Ok(m) => {
                    if let Some(previous) = self.failing.remove(&kind) {
                        tracing::info!(scraper = %kind, previous_error = %previous, "hostmetrics scraper recovered");
                    }
                    metrics.extend(m);
                }
                Err(e) => {
                    let message = e.to_string();
                    if self.failing.get(&kind) == Some(&message) {
                        tracing::debug!(scraper = %kind, error = %message, "hostmetrics scraper still failing");
                    } else {
                        tracing::warn!(scraper = %kind, error = %message, "hostmetrics scraper failed, its metrics are left out");
                        self.failing.insert(kind, message);
                    }
                    failures.push((kind, e));
                }
            }
        }
        metrics.retain(|m| point_count(m) > 0);
        if !failures.is_empty() && metrics.is_empty() {
            return Err(ScrapeError::NothingCollected(failures));
        }
        Ok(self.wrap(metrics))
    }

    fn wrap(&self, metrics: Vec<Metric>) -> Metrics {
        let attributes: Vec<KeyValue> = vec![
            attr_str("host.name", self.host_name.clone()),
            attr_str("os.type", "linux"),
        ];
        Metrics {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource(attributes)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// The boot time in Unix nanoseconds, 0 (unknown) while `/proc/stat` cannot be read.
    fn boot_time_nanos(&mut self) -> u64 {
        if self.boot_time.is_none() {
            let path = self.cfg.root_path.join("proc/stat");
            match read(&path).and_then(|text| {
                cpu::boot_time(&text).ok_or_else(|| ScrapeError::Parse {
                    path: path.clone(),
                    reason: "no btime line".to_string(),
                })
            }) {
                Ok(t) => self.boot_time = Some(t),
                Err(e) => {
                    tracing::debug!(error = %e, "boot time unknown, cumulative sums get no start time")
                }
            }
        }
        self.boot_time
            .map_or(0, |s| s.saturating_mul(1_000_000_000))
    }
}

fn point_count(m: &Metric) -> usize {
    use crate::model::metrics::metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        _ => 0,
    }
}

/// The current time in Unix nanoseconds.
fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Reads a whole file; bytes that are not UTF-8 become U+FFFD.
fn read(path: &Path) -> Result<String, ScrapeError> {
    let bytes = std::fs::read(path).map_err(|source| ScrapeError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A parse error for `path` from a procfs parser's error.
fn parse_error(path: &Path, e: procfs::ProcError) -> ScrapeError {
    let reason = match e {
        procfs::ProcError::InternalError(ie) => ie
            .msg
            .trim_start_matches("Internal Unwrap Error: ")
            .replace("NoneError", "missing value"),
        procfs::ProcError::Other(s) => s,
        other => other.to_string(),
    };
    ScrapeError::Parse {
        path: path.to_owned(),
        reason: reason.replace('\n', " "),
    }
}

/// A counter as an OTLP integer (counters beyond i64::MAX are clamped).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for the end of.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ti = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// True when `text` matches one of `patterns`.
fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

/// USER_HZ, the unit of `/proc/stat` CPU times (100 on every mainstream architecture).
fn clock_ticks() -> u64 {
    Some(rustix::param::clock_ticks_per_second())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The host name: with a `root_path` other than `/`, the host's `/etc/hostname` (the agent's own
/// UTS namespace may be a container's); else, or when that is missing, the kernel's host name of
/// the agent's UTS namespace.
fn host_name(root: &Path) -> String {
    let mut candidates = Vec::new();
    if root != Path::new("/") {
        candidates.push(root.join("etc/hostname"));
    }
    candidates.push(PathBuf::from("/proc/sys/kernel/hostname"));
    candidates
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| s.lines().next().map(|l| l.trim().to_string()))
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
