//! `plugins.<name>` settings: what to run, how it is confined, how it is supervised.

use super::sandbox::seccomp::SeccompAction;
use super::trust::manifest::Network;
use serde::{Deserialize, Deserializer, Serialize};
use srediag_plugin_sdk::PluginType;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default admin socket path.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/srediag/srediag.sock";

/// Default directory of installed bundles (relative `bundle:` values resolve against it).
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/srediag/plugins";

/// One plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin's signed bundle: a directory holding `manifest.yaml`, its signature and the
    /// entrypoint (docs/bundles.md). A relative path resolves against the plugin directory
    /// (`--plugin-dir`, `SREDIAG_PLUGIN_DIR`, `service.bundles.directory`; default
    /// `/var/lib/srediag/plugins`). Verified before anything is spawned; exactly one of `bundle`
    /// and `path` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// Unsigned development mode: absolute path of a plugin executable. Loads only when the trust
    /// policy has `allow_unsigned: true`; every load is logged loudly and counted
    /// (`srediag_plugin_verification_total{result="unsigned"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The plugin type; the handshake must agree.
    #[serde(rename = "type")]
    pub plugin_type: PluginType,
    /// Settings passed to the plugin in the handshake. Default `{}`.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Command-line arguments. Default none.
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of agent environment variables copied into the plugin's otherwise empty
    /// environment. Default none.
    #[serde(default)]
    pub env: Vec<String>,
    /// uid the plugin runs as; default a dedicated id `60578 + (hash(name) % 606)` with no
    /// passwd entry, so plugins cannot signal or read each other's files: systemd's unused range
    /// 60578–61183, clear of its `DynamicUser=` ids (61184–65519) and of `/etc/subuid` ranges.
    #[serde(default)]
    pub user: Option<u32>,
    /// gid; default equal to the uid.
    #[serde(default)]
    pub group: Option<u32>,
    /// The TCP ports the plugin may use: `{connect: [443], bind: [4317]}` (any address: Landlock
    /// restricts ports, not addresses; needs Landlock ABI 4, and 6 for abstract-socket scoping,
    /// since such a plugin shares the host's network namespace). Default: what a signed manifest
    /// grants (`sandbox.network`), none for `path:` plugins (where this is the grant). For a
    /// bundle it may only narrow the manifest's lists (a port it does not grant is SRD-P016);
    /// `false` takes the grant away. `true` (every port) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Resource limits (cgroups, rlimits, scratch). Default 256 MiB memory (no `memory.high`), cpu
    /// weight 100, cpu max one core, 64 pids, 1024 open files, a 64 MiB scratch tmpfs with 4096
    /// inodes.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Sandbox policy.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartConfig,
    /// Liveness checks.
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    /// The shared-memory data path, used when a pipeline lists `plugin/<name>`.
    #[serde(default)]
    pub data_path: DataPathConfig,
    /// Time between the shutdown request and SIGKILL of the plugin's cgroup. Default 5s.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Hot swap (`srediag plugin upgrade`, `srediag reload`): how long the old incarnation may
    /// take to answer what it was sent and acknowledge the drain before it is killed (its
    /// unanswered batches then go to the new one). Default 30s.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Diagnostics verbs (`srediag diagnose <plugin> <verb>`, declared in the manifest's `cli:`):
    /// how long one may run and how much it may write.
    #[serde(default)]
    pub verbs: VerbsConfig,
}

/// `verbs`: bounds of one plugin's diagnostics verbs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerbsConfig {
    /// Longest run of one invocation; past it the agent cancels it in the plugin and tells the
    /// CLI (exit 75). Default 5m (a 10 s CPU profile and its rendering fit with room); 1s–24h.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most output of one invocation (text bytes, encoded JSON, file bytes; every chunk counts
    /// at least 1 KiB). Past it the invocation is cancelled, the CLI told, and the plugin charged
    /// a `verb_output` violation. Default 64MiB; 4KiB–1GiB.
    #[serde(deserialize_with = "bytes")]
    pub max_output: u64,
    /// Most invocations of this plugin at once; more are refused (exit 69, busy). Default 4;
    /// 1–16.
    pub max_concurrent: usize,
}

impl Default for VerbsConfig {
    fn default() -> Self {
        VerbsConfig {
            // Several profiles of the default 10 s, with rendering.
            timeout: Duration::from_secs(300),
            // A large SVG flame graph is a few MiB; a pprof profile less.
            max_output: 64 << 20,
            // A few operators at once; each may buffer up to 16 chunks in the agent.
            max_concurrent: 4,
        }
    }
}

fn default_drain() -> Duration {
    Duration::from_secs(30)
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn default_grace() -> Duration {
    Duration::from_secs(5)
}

/// `limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Hard memory limit (`memory.max`), e.g. `256MiB`. The plugin is OOM-killed inside its
    /// cgroup beyond it.
    #[serde(deserialize_with = "bytes")]
    pub memory_max: u64,
    /// Throttling threshold (`memory.high`); default unset. On cgroup v2 a plugin over
    /// `memory.high` is throttled (its threads sleep in reclaim) rather than killed: a runaway
    /// plugin then crawls for tens of seconds before `memory_max` OOM-kills it (measured on
    /// Debian 12's 6.1: ~25 s, docs/kernels.md). Set it for plugins that should slow down under
    /// memory pressure instead of dying; on cgroup v1 it is the soft limit.
    #[serde(deserialize_with = "opt_bytes")]
    pub memory_high: Option<u64>,
    /// Relative CPU share (`cpu.weight`, 1–10000, 100 = normal).
    pub cpu_weight: u32,
    /// Hard CPU cap in cores (`cpu.max`), e.g. `0.5`; 0 means no cap.
    pub cpu_max: f64,
    /// Most processes/threads (`pids.max`).
    pub pids_max: u64,
    /// Most open files (`RLIMIT_NOFILE`, soft and hard; the agent's own limit is not inherited).
    pub nofile: u64,
    /// Size of the plugin's scratch directory, e.g. `16MiB`: a tmpfs of its own mounted over
    /// `/run/srediag/plugins/<name>` in its mount namespace (the host's directory stays empty),
    /// whose pages are charged to its memory cgroup; also its `RLIMIT_FSIZE` (largest file it
    /// may write anywhere). A write past it fails with ENOSPC (EFBIG past `RLIMIT_FSIZE`).
    /// Default a quarter of `memory_max`; 64KiB up to `memory_max`.
    #[serde(deserialize_with = "opt_bytes")]
    pub scratch_size: Option<u64>,
    /// Most files and directories in the scratch tmpfs (its `nr_inodes`; the directory itself
    /// is one). Creating more fails with ENOSPC. Default 4096; 16 to 1048576.
    pub scratch_inodes: u64,
}

/// Smallest `limits.scratch_size` (tmpfs treats `size=0` as unlimited: never pass it).
pub const MIN_SCRATCH_SIZE: u64 = 64 << 10;
/// `limits.scratch_inodes` bounds (tmpfs treats `nr_inodes=0` as unlimited).
pub const SCRATCH_INODES: std::ops::RangeInclusive<u64> = 16..=1 << 20;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_max: 256 * 1024 * 1024,
            memory_high: None,
            cpu_weight: 100,
            cpu_max: 1.0,
            pids_max: 64,
            nofile: 1024,
            // A quarter of memory_max (`scratch_bytes`): its pages count against memory_max
            // too, so more would only move the OOM kill earlier.
            scratch_size: None,
            // Enough for caches and spool files; a plugin's inodes cost kernel memory (charged
            // to it) and each must be freed when it stops.
            scratch_inodes: 4096,
        }
    }
}

impl LimitsConfig {
    /// The scratch tmpfs size: `scratch_size`, or a quarter of `memory_max`; never below
    /// [`MIN_SCRATCH_SIZE`] nor above `memory_max`.
    pub fn scratch_bytes(&self) -> u64 {
        self.scratch_size
            .unwrap_or(self.memory_max / 4)
            .min(self.memory_max)
            .max(MIN_SCRATCH_SIZE)
    }
}

/// Parses `256MiB`, `1GiB`, `512KiB`, `1000000` (bytes): one parser for the configuration and
/// the manifest checks (`srediag_sys::units`).
pub use srediag_sys::units::parse_bytes;

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    N(u64),
    S(String),
}

/// Deserialises a byte size: a number of bytes or a string such as `256MiB`.
pub(crate) fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

/// Like `bytes`, and `null` (what `print-config` writes for an unset value) is `None`.
fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::N(n)) => Ok(Some(n)),
        Some(Size::S(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// `data_path`: the two shared-memory rings between the agent and the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataPathConfig {
    /// Size of each ring's data area (a power of two, 4KiB–1GiB). Default 4MiB.
    #[serde(deserialize_with = "bytes")]
    pub ring_capacity: u64,
    /// Largest frame (one encoded batch); at most half the ring. Default 1MiB. A batch that does
    /// not fit is split; a single record that does not fit is dropped and counted (`oversize`).
    #[serde(deserialize_with = "bytes")]
    pub max_frame: u64,
    /// Pipeline batches are cut into batches of at most this many log records or metrics before
    /// they cross. Default 1024.
    pub max_batch_records: usize,
    /// Most batches sent and not yet answered (the in-flight window). A plugin that stops
    /// answering holds at most this many; beyond it the pipeline's queue policy (block or drop)
    /// applies. It also bounds the duplicates a crash can cause. Default 32.
    pub max_in_flight: usize,
    /// Spin this long before sleeping when waiting on a ring (spin-then-block); `0s` (default)
    /// sleeps at once.
    #[serde(with = "humantime_serde")]
    pub spin: Duration,
    /// Violations by the plugin before it is quarantined (SRD-P009): malformed frames or
    /// impossible ring indices, answers to batches not in flight, malformed or flooding control
    /// messages, unrequested heartbeat answers, wake-up floods. Default 16. Exceeding
    /// `max_output_ratio` quarantines at once.
    pub quarantine_after_malformed: u64,
    /// How long the oldest batch sent to the plugin may stay unanswered (time the agent itself
    /// could not take answers — its pipeline downstream was full — does not count). Past it the
    /// incarnation ends as `hang` (SRD-P006): killed, restarted, its unanswered batches
    /// re-delivered, `on_unavailable` applying while it is down. Default 10s.
    #[serde(with = "humantime_serde")]
    pub answer_timeout: Duration,
    /// Output budget: the answers to one batch may hold at most this many times its records
    /// (plus 256) and this many times its encoded bytes (plus 64 KiB and 1 KiB per input record).
    /// The excess is dropped and counted (`srediag_plugin_ipc_dropped_records_total{reason=
    /// "output_budget"}`) and is a violation (towards `quarantine_after_malformed`): a plugin must
    /// not turn a trickle of input into a flood the agent pays for. Default 16.
    pub max_output_ratio: u32,
    /// Probe-site sampling for the IPC latency observer: batches whose sequence number is a
    /// multiple of this fire the SDK's probe sites; 0 = off. Default 64 (B5: throughput on/off
    /// 0.99, within noise; every batch, 0.79). Changeable at run time
    /// (`srediag plugin ipc-sampling NAME N`).
    pub probe_sampling: u32,
    /// The queue in front of the plugin's pipeline stage (as `processors.<id>.queue`): what
    /// happens when the plugin falls behind and the in-flight window is full. Default 64
    /// batches, `block`.
    pub queue: crate::pipeline::QueueConfig,
    /// While the plugin is not running (starting, restarting after a crash, failed,
    /// quarantined): `block` (default) holds new batches until it is back (backpressure, nothing
    /// skips the plugin); `bypass` passes them on unprocessed and counts them
    /// (`srediag_plugin_ipc_bypassed_records_total`) — fail open, for processors whose absence
    /// is better than a stalled pipeline (e.g. deduplication). Batches already sent stay in
    /// flight and go to the plugin when it is back.
    pub on_unavailable: Unavailable,
}

/// `data_path.on_unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unavailable {
    /// Hold batches until the plugin is back.
    Block,
    /// Pass batches on unprocessed, counted.
    Bypass,
}

impl Default for DataPathConfig {
    fn default() -> Self {
        DataPathConfig {
            ring_capacity: 4 << 20,
            max_frame: 1 << 20,
            max_batch_records: 1024,
            max_in_flight: 32,
            spin: Duration::ZERO,
            quarantine_after_malformed: 16,
            answer_timeout: Duration::from_secs(10),
            max_output_ratio: 16,
            probe_sampling: 64,
            queue: crate::pipeline::QueueConfig::default(),
            on_unavailable: Unavailable::Block,
        }
    }
}

/// `sandbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Seccomp profile; default the plugin type's (`processor`, `receiver`, …).
    pub seccomp_profile: Option<String>,
    /// What a denied syscall does: `errno` (EPERM, default; compiled as a trap that the plugin
    /// SDK's SIGSYS handler turns into EPERM, so every violation is counted by the eBPF observer
    /// at no cost to other processes; a plugin without the SDK handler is killed by SIGSYS),
    /// `kernel_errno` (plain SECCOMP_RET_ERRNO: for plugins not built with the SDK; violations
    /// are not counted), `trap` (SIGSYS: the SDK handler returns EPERM, a plugin without it
    /// dies), `kill`, or `log` (monitor only: allowed and logged by the kernel). Any other word
    /// is refused where the configuration is read, naming the five.
    pub seccomp_action: SeccompAction,
    /// Extra read-only paths (beyond the plugin's directory and the shared libraries).
    pub read_only: Vec<PathBuf>,
    /// Run when Landlock cannot enforce every rule (logged loudly, counted in
    /// `srediag_plugin_sandbox_degraded_total`). Default false: fail closed.
    pub allow_degraded: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seccomp_profile: None,
            seccomp_action: SeccompAction::Errno,
            read_only: Vec::new(),
            allow_degraded: false,
        }
    }
}

/// `restart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// First wait before a restart; doubles per consecutive crash, with ±20% jitter. Default 200ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait. Default 30s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Crashes within `window` that quarantine the plugin (no more restarts until
    /// `srediag plugin restart`). Default 5.
    pub quarantine_after: u32,
    /// The crash-counting window. Default 60s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            quarantine_after: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// `heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Period. Default 1s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A plugin silent for this long is hung: killed and restarted. Default 5s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest time from start to `ready`. Default 10s.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(10),
        }
    }
}

impl PluginConfig {
    /// Semantic checks: `(path inside the plugin, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        match (&self.bundle, &self.path) {
            (Some(_), Some(_)) => e.push((
                "path".into(),
                "set either `bundle` (a signed bundle) or `path` (unsigned development mode), not both".into(),
            )),
            (None, None) => e.push((
                "bundle".into(),
                "missing: set `bundle` (a signed bundle directory) or, for unsigned development, `path`".into(),
            )),
            (None, Some(p)) if !p.is_absolute() => e.push((
                "path".into(),
                format!("{} must be an absolute path", p.display()),
            )),
            (Some(b), None) if b.as_os_str().is_empty() => {
                e.push(("bundle".into(), "must not be empty".into()))
            }
            _ => {}
        }
        if let Some(n) = &self.network {
            for (field, msg) in n.problems() {
                e.push((format!("network{field}"), msg));
            }
        }
        if self.network.as_ref().is_some_and(Network::granted)
            && !matches!(
                self.plugin_type,
                PluginType::Receiver | PluginType::Exporter | PluginType::Extension
            )
        {
            e.push((
                "network".into(),
                format!(
                    "a {} plugin cannot have network access (only receivers, exporters and extensions)",
                    self.plugin_type.as_str()
                ),
            ));
        }
        if self.user == Some(0) || self.group == Some(0) {
            e.push((
                "user".into(),
                "plugins never run as root (uid/gid 0)".into(),
            ));
        }
        if !(1..=10000).contains(&self.limits.cpu_weight) {
            e.push(("limits.cpu_weight".into(), "must be 1..10000".into()));
        }
        if self.limits.memory_max < 8 * 1024 * 1024 {
            e.push(("limits.memory_max".into(), "must be at least 8MiB".into()));
        }
        if !(16..=1 << 20).contains(&self.limits.nofile) {
            e.push(("limits.nofile".into(), "must be 16..1048576".into()));
        }
        if self.limits.pids_max == 0 {
            e.push(("limits.pids_max".into(), "must be at least 1".into()));
        }
        if let Some(s) = self.limits.scratch_size
            && !(MIN_SCRATCH_SIZE..=self.limits.memory_max).contains(&s)
        {
            e.push((
                "limits.scratch_size".into(),
                "must be 64KiB up to limits.memory_max (its pages are charged to the plugin's memory)".into(),
            ));
        }
        if !SCRATCH_INODES.contains(&self.limits.scratch_inodes) {
            e.push(("limits.scratch_inodes".into(), "must be 16..1048576".into()));
        }
        if self.heartbeat.interval.is_zero() || self.heartbeat.timeout < self.heartbeat.interval {
            e.push((
                "heartbeat".into(),
                "interval must be > 0 and timeout ≥ interval".into(),
            ));
        }
        if self.restart.quarantine_after == 0 {
            e.push((
                "restart.quarantine_after".into(),
                "must be at least 1".into(),
            ));
        }
        if self.data_path.answer_timeout < Duration::from_millis(100) {
            e.push((
                "data_path.answer_timeout".into(),
                "must be at least 100ms".into(),
            ));
        }
        if self.data_path.max_output_ratio == 0 {
            e.push((
                "data_path.max_output_ratio".into(),
                "must be at least 1".into(),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&self.verbs.timeout)
        {
            e.push(("verbs.timeout".into(), "must be 1s..24h".into()));
        }
        if !(4 << 10..=1 << 30).contains(&self.verbs.max_output) {
            e.push(("verbs.max_output".into(), "must be 4KiB..1GiB".into()));
        }
        if !(1..=16).contains(&self.verbs.max_concurrent) {
            e.push(("verbs.max_concurrent".into(), "must be 1..16".into()));
        }
        if self.data_path.quarantine_after_malformed == 0 {
            e.push((
                "data_path.quarantine_after_malformed".into(),
                "must be at least 1".into(),
            ));
        }
        e
    }

    /// The uid, defaulting to the dedicated per-plugin id.
    pub fn uid(&self, name: &str) -> u32 {
        self.user.unwrap_or_else(|| default_id(name))
    }

    /// The gid, defaulting to the uid.
    pub fn gid(&self, name: &str) -> u32 {
        self.group.unwrap_or_else(|| self.uid(name))
    }
}

/// Default plugin uids/gids: the range systemd leaves unused (its `docs/UIDS-GIDS.md`: below
/// 60578 are regular, homed and `--bind-user` users; 61184–65519 are `DynamicUser=` services),
/// far below the subordinate ranges `/etc/subuid` usually hands out (100000 and up). None has a
/// passwd entry.
pub const DEFAULT_IDS: std::ops::RangeInclusive<u32> = 60578..=61183;

/// `60578 + (fnv1a(name) % 606)`: one of [`DEFAULT_IDS`]. Two names can share an id (set
/// `user:` to keep them apart); plugins are in separate pid and mount namespaces anyway.
pub fn default_id(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let n = DEFAULT_IDS.end() - DEFAULT_IDS.start() + 1;
    DEFAULT_IDS.start() + h % n
}

/// `service.bundles`: where signed bundles, the trust policy and the rollback marks live. The
/// `run` flags `--plugin-dir`, `--trust-policy`, `--plugin-state` (and their `SREDIAG_*`
/// environment variables) override these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundlesConfig {
    /// Directory of installed bundles; relative `bundle:` values resolve against it, and
    /// `srediag plugin install` copies into it. Default `/var/lib/srediag/plugins`.
    pub directory: PathBuf,
    /// The trust policy (docs/bundles.md). Default `/etc/srediag/trust.yaml`.
    pub trust_policy: PathBuf,
    /// The rollback high-water marks (root-owned). Default
    /// `/var/lib/srediag/plugin-versions.json`.
    pub state_file: PathBuf,
}

impl Default for BundlesConfig {
    fn default() -> Self {
        BundlesConfig {
            // Where `srediag plugin install` puts bundles.
            directory: DEFAULT_PLUGIN_DIR.into(),
            // The operator's policy, next to the other configuration.
            trust_policy: super::trust::policy::DEFAULT_POLICY_PATH.into(),
            // Agent state, root-owned.
            state_file: super::trust::rollback::DEFAULT_STATE_PATH.into(),
        }
    }
}

/// All plugins by name.
pub type Plugins = BTreeMap<String, PluginConfig>;

#[cfg(test)]
mod tests;
