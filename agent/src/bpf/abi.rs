//! `#[repr(C)]` mirrors of the structs in `ebpf/include/srediag.h`, and its constants.
//!
//! The header is the single source of truth: `agent/build.rs` generates [`c`] from it (every
//! `#define SREDIAG_*` integer, and the size and field offsets clang computes for every
//! `struct srediag_*`). The `const` assertions below fail the *build* when a mirror drifts from the
//! header; a field that exists on one side only fails it too (missing constant or size mismatch).

/// Generated from `ebpf/include/srediag.h` by `agent/build.rs`.
#[allow(missing_docs, clippy::unreadable_literal)]
pub mod c {
    include!(concat!(env!("OUT_DIR"), "/bpf_abi.rs"));
}

/// `struct srediag_cpu_state`: what runs on one CPU now (value of the per-CPU `srediag_cpust`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuState {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the task was switched in.
    pub since_ns: u64,
    /// The task's `se.sum_exec_runtime` when it was switched in.
    pub runtime_ns: u64,
    /// Plugin id of the task on the CPU; 0 for any other task.
    pub plugin_id: u32,
    /// Tid of that task (only its switch-out is charged).
    pub tid: u32,
}

/// `struct srediag_violation_key`: key of the per-CPU `srediag_viol` counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViolationKey {
    /// Plugin id.
    pub plugin_id: u32,
    /// Syscall number (-1 when unknown).
    pub syscall_nr: i32,
    /// `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    /// `SREDIAG_ACTION_*`.
    pub action: u32,
}

/// `struct srediag_event`: one ring buffer record.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event {
    /// `SREDIAG_EVENT_*`.
    pub kind: u32,
    /// `SREDIAG_ACTION_*`.
    pub action: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    /// Host pid of the process.
    pub tgid: u32,
    /// Host tid of the thread.
    pub tid: u32,
    /// Plugin id.
    pub plugin_id: u32,
    /// Syscall number, -1 when unknown.
    pub syscall_nr: i32,
    /// `AUDIT_ARCH_*`.
    pub arch: u32,
    /// `SREDIAG_SOURCE_*`.
    pub source: u32,
    /// The thread's command name, NUL-padded.
    pub comm: [u8; 16],
    /// Violation: the plugin's suppressed-event count ([`EventBudget::suppressed`]) when this
    /// event was sent; OOM: 0.
    pub suppressed: u64,
}

/// `struct srediag_event_budget`: value of `srediag_ev_budget` (an array indexed by plugin id).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventBudget {
    /// `bpf_ktime_get_ns()` when the current window opened (0: never).
    pub window_ns: u64,
    /// Events sent in that window.
    pub sent: u64,
    /// Violation events suppressed since the observers loaded (over the budget).
    pub suppressed: u64,
}

/// `struct srediag_rss`: value of `srediag_mem` (keyed by tgid).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rss {
    /// Resident pages (file + anon + shmem) at the process's last RSS change.
    pub pages: u64,
    /// Plugin id.
    pub plugin_id: u32,
    /// Explicit padding.
    pub pad: u32,
}

// SAFETY: plain `#[repr(C)]` integers without implicit padding (the size assertions below prove
// there is none); every bit pattern is a valid value.
unsafe impl aya::Pod for CpuState {}
// SAFETY: as above.
unsafe impl aya::Pod for ViolationKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Event {}
// SAFETY: as above.
unsafe impl aya::Pod for Rss {}
// SAFETY: as above.
unsafe impl aya::Pod for EventBudget {}

macro_rules! assert_layout {
    ($rust:ty, $c:ident { $($field:ident),* $(,)? }) => {
        const _: () = {
            assert!(std::mem::size_of::<$rust>() == c::$c::SIZE, concat!("size of ", stringify!($rust), " differs from struct ", stringify!($c)));
            $(assert!(
                std::mem::offset_of!($rust, $field) == c::$c::$field,
                concat!(stringify!($rust), "::", stringify!($field), " is not at the C offset")
            );)*
        };
    };
}

assert_layout!(
    CpuState,
    srediag_cpu_state {
        since_ns,
        runtime_ns,
        plugin_id,
        tid
    }
);
assert_layout!(
    Rss,
    srediag_rss {
        pages,
        plugin_id,
        pad
    }
);
assert_layout!(
    ViolationKey,
    srediag_violation_key {
        plugin_id,
        syscall_nr,
        arch,
        action
    }
);
assert_layout!(
    Event,
    srediag_event {
        kind,
        action,
        ktime_ns,
        tgid,
        tid,
        plugin_id,
        syscall_nr,
        arch,
        source,
        comm,
        suppressed
    }
);
assert_layout!(
    EventBudget,
    srediag_event_budget {
        window_ns,
        sent,
        suppressed
    }
);

/// Plugin ids are `1..MAX_PLUGINS` (0 means "not a plugin").
pub const MAX_PLUGINS: u32 = c::MAX_PLUGINS as u32;
/// `SREDIAG_ACTION_TRAP`.
pub const ACTION_TRAP: u32 = c::ACTION_TRAP as u32;
/// `SREDIAG_ACTION_KILL`.
pub const ACTION_KILL: u32 = c::ACTION_KILL as u32;
/// `SREDIAG_ACTION_KILL_THREAD`.
pub const ACTION_KILL_THREAD: u32 = c::ACTION_KILL_THREAD as u32;
/// `SREDIAG_ACTION_ERRNO`.
pub const ACTION_ERRNO: u32 = c::ACTION_ERRNO as u32;
/// `SREDIAG_EVENT_VIOLATION`.
pub const EVENT_VIOLATION: u32 = c::EVENT_VIOLATION as u32;
/// `SREDIAG_EVENT_OOM`.
pub const EVENT_OOM: u32 = c::EVENT_OOM as u32;
/// `SREDIAG_SOURCE_SIGNAL`.
pub const SOURCE_SIGNAL: u32 = c::SOURCE_SIGNAL as u32;
/// `SREDIAG_SOURCE_EXIT`.
pub const SOURCE_EXIT: u32 = c::SOURCE_EXIT as u32;

/// `SREDIAG_EVENT_BUDGET`: violation events per plugin and window, the agent's default.
pub const EVENT_BUDGET: u32 = c::EVENT_BUDGET as u32;
/// `SREDIAG_EVENT_WINDOW_NS`: the event budget's window.
pub const EVENT_WINDOW: std::time::Duration = std::time::Duration::from_nanos(c::EVENT_WINDOW_NS);

/// What the per-CPU `srediag_stats` slots count: (index, `reason` label).
pub const STATS: [(u32, &str); 7] = [
    (c::STAT_PIDS_FULL as u32, "pids_map_full"),
    (c::STAT_EVENTS_DROPPED as u32, "ring_buffer_full"),
    (c::STAT_VIOLATIONS_FULL as u32, "violation_map_full"),
    (c::STAT_CPU_UNMATCHED as u32, "cpu_switch_unmatched"),
    (c::STAT_IPC_UNMATCHED as u32, "ipc_consume_unmatched"),
    (c::STAT_IPC_FORGED as u32, "ipc_forged_probe"),
    (c::STAT_EVENTS_SUPPRESSED as u32, "event_budget"),
];

/// `SREDIAG_IPC_BUCKETS`: log2 buckets of an IPC latency histogram.
pub const IPC_BUCKETS: usize = c::IPC_BUCKETS as usize;
/// `SREDIAG_IPC_TO_PLUGIN`.
pub const IPC_TO_PLUGIN: u32 = c::IPC_TO_PLUGIN as u32;
/// `SREDIAG_IPC_FROM_PLUGIN`.
pub const IPC_FROM_PLUGIN: u32 = c::IPC_FROM_PLUGIN as u32;
/// `SREDIAG_IPC_PENDING_PER_RING`: pending-publish slots of each ring.
pub const IPC_PENDING_PER_RING: u32 = c::IPC_PENDING_PER_RING as u32;

/// `struct srediag_ipc_ring`: value of `srediag_ipc_ring` (keyed by ring id).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcRing {
    /// Plugin id.
    pub plugin_id: u32,
    /// [`IPC_TO_PLUGIN`] or [`IPC_FROM_PLUGIN`].
    pub direction: u32,
    /// The only process (host tgid) whose `srediag_probe_publish` hits count on this ring.
    pub publisher_tgid: u32,
    /// The only process (host tgid) whose `srediag_probe_consume` hits count on this ring.
    pub consumer_tgid: u32,
}

/// `struct srediag_ipc_hist`: one (plugin, direction) histogram, per CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcHist {
    /// Samples.
    pub count: u64,
    /// Exact sum of the deltas (ns).
    pub sum_ns: u64,
    /// Bucket `b`: deltas in `[2^b, 2^(b+1))` ns (bucket 0 includes 0; the last is open-ended).
    pub buckets: [u64; IPC_BUCKETS],
}

impl Default for IpcHist {
    fn default() -> Self {
        IpcHist {
            count: 0,
            sum_ns: 0,
            buckets: [0; IPC_BUCKETS],
        }
    }
}

// SAFETY: plain `#[repr(C)]` integers without implicit padding (asserted below).
unsafe impl aya::Pod for IpcRing {}
// SAFETY: as above.
unsafe impl aya::Pod for IpcHist {}

assert_layout!(
    IpcRing,
    srediag_ipc_ring {
        plugin_id,
        direction,
        publisher_tgid,
        consumer_tgid
    }
);
assert_layout!(
    IpcHist,
    srediag_ipc_hist {
        count,
        sum_ns,
        buckets
    }
);

/// `struct srediag_ipc_pending`: one slot of `srediag_ipc_pending` (a publish waiting for its
/// consume; `ts_ns == 0`: free).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcPending {
    /// `bpf_ktime_get_ns()` at publish.
    pub ts_ns: u64,
    /// Low 32 bits of the ring id.
    pub ring: u32,
    /// Low 32 bits of the batch sequence number.
    pub seq: u32,
}

// SAFETY: as above.
unsafe impl aya::Pod for IpcPending {}

assert_layout!(IpcPending, srediag_ipc_pending { ts_ns, ring, seq });

impl Event {
    /// Decodes a ring buffer record (`None` when it is too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        if bytes.len() < std::mem::size_of::<Event>() {
            return None;
        }
        // SAFETY: the slice holds at least size_of::<Event>() bytes, read_unaligned has no
        // alignment requirement, and every bit pattern is a valid Event (Pod, see above).
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
    }

    /// The command name up to its first NUL.
    pub fn comm(&self) -> String {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_match_the_c_header() {
        // The const assertions above already hold at compile time; this restates the generated
        // layout so a failure names the numbers.
        assert_eq!(std::mem::size_of::<Event>(), c::srediag_event::SIZE);
        assert_eq!(std::mem::offset_of!(Event, comm), c::srediag_event::comm);
        assert_eq!(
            std::mem::size_of::<ViolationKey>(),
            c::srediag_violation_key::SIZE
        );
        assert_eq!(std::mem::size_of::<CpuState>(), c::srediag_cpu_state::SIZE);
        assert_eq!(c::srediag_event::SIZE, 64);
        assert_eq!(c::srediag_event_budget::SIZE, 24);
        assert_eq!(STATS.len(), c::STAT_COUNT as usize);
        assert_eq!(c::SIGSYS, 31);
        assert_eq!(c::AUDIT_ARCH_X86_64, 0xC000_003E);
    }

    #[test]
    fn decodes_an_event() {
        let ev = Event {
            kind: EVENT_VIOLATION,
            action: ACTION_TRAP,
            ktime_ns: 7,
            tgid: 10,
            tid: 11,
            plugin_id: 3,
            syscall_nr: 83,
            arch: 0xC000_003E,
            source: SOURCE_SIGNAL,
            comm: *b"plugin\0\0\0\0\0\0\0\0\0\0",
            suppressed: 5,
        };
        // SAFETY: Event is Pod and the slice covers exactly one value.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const ev).cast::<u8>(), std::mem::size_of::<Event>())
        };
        assert_eq!(Event::from_bytes(bytes), Some(ev));
        assert_eq!(ev.comm(), "plugin");
        assert_eq!(Event::from_bytes(&bytes[..10]), None);
    }
}
