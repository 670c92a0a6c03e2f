/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The ABI between srediag's BPF programs and the agent: constants, map keys and values, and the
 * events written to the ring buffer. This header is the single source of truth:
 * - agent/build.rs turns every `#define SREDIAG_<NAME> <integer>` into a Rust constant and the
 *   layout clang computes for every `struct srediag_*` (size and top-level field offsets) into
 *   Rust constants;
 * - agent/src/bpf/abi.rs mirrors the structs with #[repr(C)] and asserts at compile time that
 *   sizes and offsets equal those constants.
 * Include vmlinux.h first (the __u32-style types). Keep every struct free of implicit padding
 * (explicit `pad` fields): map keys are hashed byte for byte.
 */
#ifndef __SREDIAG_H__
#define __SREDIAG_H__

/* Plugin ids are small integers chosen by the agent: 1..SREDIAG_MAX_PLUGINS-1 (0 = none). */
#define SREDIAG_MAX_PLUGINS 256
/* Tracked processes (tgid -> plugin id) across all plugins. */
#define SREDIAG_MAX_PIDS 4096
/* Set in a srediag_pids value once the process's last thread passed sched_process_exit: it
 * still runs its exit path (exit_mm, exit_files: charged to the plugin) and is removed at its
 * final switch-out. */
#define SREDIAG_PID_DYING 0x80000000
/* Threads armed to clone a plugin process (srediag_spawners: the agent's spawner thread). */
#define SREDIAG_MAX_SPAWNERS 16
/* Threads of tracked processes with a CPU baseline (LRU: a leaked entry ages out). */
#define SREDIAG_MAX_THREADS 4096
/* Distinct (plugin, syscall, arch, action) violation counters. */
#define SREDIAG_MAX_VIOLATION_KEYS 1024
/* Ring buffer bytes: a power of two and a multiple of the page size. */
#define SREDIAG_EVENTS_BYTES 262144
/* Violation events one plugin may send to the ring buffer per window (the agent's default for
 * the load-time constant srediag_event_budget): a plugin looping on a denied syscall makes
 * ~10^5 violations a second, and the agent would drain and process every event. Beyond the
 * budget a violation is still counted (srediag_viol) but its event is suppressed and counted
 * (srediag_ev_budget.suppressed). */
#define SREDIAG_EVENT_BUDGET 200
#define SREDIAG_EVENT_WINDOW_NS 1000000000

/* srediag_violation_key.action / srediag_event.action */
#define SREDIAG_ACTION_TRAP 1        /* SECCOMP_RET_TRAP: SIGSYS, a handler may continue */
#define SREDIAG_ACTION_KILL 2        /* SECCOMP_RET_KILL_PROCESS, or KILL_THREAD of the last thread */
#define SREDIAG_ACTION_KILL_THREAD 3 /* SECCOMP_RET_KILL_THREAD in a multi-threaded process */
/* The `errno` action as srediag compiles it: SECCOMP_RET_TRAP with the errno in the action's
 * data (the kernel copies it into si_errno); the plugin SDK's SIGSYS handler returns -errno. */
#define SREDIAG_ACTION_ERRNO 4

/* srediag_event.source: which hook saw it */
#define SREDIAG_SOURCE_SIGNAL 1 /* signal_generate: SIGSYS with si_code SYS_SECCOMP */
#define SREDIAG_SOURCE_EXIT 2   /* sched_process_exit: exit by SIGSYS, seccomp mode DEAD, no signal */

/* srediag_event.kind */
#define SREDIAG_EVENT_VIOLATION 1
#define SREDIAG_EVENT_OOM 2 /* the OOM killer chose a plugin process (oom/mark_victim) */

/* mm_struct.rss_stat[] members (enum in linux/mm_types_task.h; stable since 2.6) that make up
 * RSS (VmRSS = file + anon + shmem; swap entries are not resident). */
#define SREDIAG_MM_FILEPAGES 0
#define SREDIAG_MM_ANONPAGES 1
#define SREDIAG_MM_SHMEMPAGES 3

/* Indices of the per-CPU srediag_stats array (things the kernel side could not record). */
#define SREDIAG_STAT_PIDS_FULL 0       /* a fork of a tracked process found srediag_pids full */
#define SREDIAG_STAT_EVENTS_DROPPED 1  /* the ring buffer was full: event lost (counter kept) */
#define SREDIAG_STAT_VIOLATIONS_FULL 2 /* srediag_viol full: violation counted in no key */
#define SREDIAG_STAT_CPU_UNMATCHED 3 /* a switch-out not matching the recorded switch-in */
#define SREDIAG_STAT_IPC_UNMATCHED 4 /* a sampled consume whose publish was not seen (replaced by
                                      * a later publish in its slot, or published before the
                                      * uprobes attached) */
#define SREDIAG_STAT_IPC_FORGED 5    /* a probe hit on a registered ring from a process that is
                                      * not that ring's publisher (publish) or consumer (consume):
                                      * dropped */
#define SREDIAG_STAT_EVENTS_SUPPRESSED 6 /* a violation event over its plugin's event budget: not
                                         * sent (its violation counted) */
#define SREDIAG_STAT_COUNT 7

/* Kernel values used by the programs (uapi, stable). */
#define SREDIAG_SIGSYS 31
#define SREDIAG_SYS_SECCOMP 1         /* si_code of a seccomp SIGSYS */
#define SREDIAG_SECCOMP_MODE_DEAD 3   /* task->seccomp.mode after a KILL action */
#define SREDIAG_THREAD_SIZE 16384   /* x86_64 kernel stack size (THREAD_SIZE, no KASAN) */
#define SREDIAG_TASK_DEAD 0x80        /* sched_switch prev_state of a task's final switch */
#define SREDIAG_AUDIT_ARCH_X86_64 0xC000003E

/* srediag_cpust value: the tracked task on this CPU now (per-CPU array, one entry). */
struct srediag_cpu_state {
	__u64 since_ns;   /* bpf_ktime_get_ns() when it was switched in */
	__u64 runtime_ns; /* its se.sum_exec_runtime then (the kernel's own CPU accounting) */
	__u32 plugin_id;  /* 0: not a tracked process */
	__u32 tid;        /* the task switched in: only its switch-out is charged */
};

/* srediag_mem value (LRU hash keyed by tgid): the process's resident pages as the kernel's
 * rss_stat counters said at its last change (kmem/rss_stat). */
struct srediag_rss {
	__u64 pages;     /* file + anon + shmem pages */
	__u32 plugin_id;
	__u32 pad;
};

/* srediag_viol key (per-CPU hash; value: __u64 count). */
struct srediag_violation_key {
	__u32 plugin_id;
	__s32 syscall_nr;
	__u32 arch;      /* AUDIT_ARCH_* of the call */
	__u32 action;    /* SREDIAG_ACTION_* */
};

/* A ring buffer record. */
struct srediag_event {
	__u32 kind;       /* SREDIAG_EVENT_* */
	__u32 action;     /* SREDIAG_ACTION_* */
	__u64 ktime_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 tgid;       /* host pid of the process */
	__u32 tid;        /* host tid of the thread */
	__u32 plugin_id;
	__s32 syscall_nr; /* -1 when unknown */
	__u32 arch;       /* AUDIT_ARCH_* */
	__u32 source;     /* SREDIAG_SOURCE_* */
	char comm[16];
	__u64 suppressed; /* violation: the plugin's srediag_ev_budget.suppressed when this event was
	                   * sent (the agent shows the growth since its previous event); OOM: 0 */
};

/* srediag_ev_budget value (array indexed by plugin id): the plugin's violation-event budget. A
 * window opens at the first violation at least SREDIAG_EVENT_WINDOW_NS after the previous one
 * opened; within it the first srediag_event_budget violations send an event. Concurrent CPUs
 * may let a few more through at a window's start (no lock: tracing programs cannot take
 * bpf_spin_lock); `suppressed` is exact (atomic adds). */
struct srediag_event_budget {
	__u64 window_ns;  /* bpf_ktime_get_ns() when the current window opened (0: never) */
	__u64 sent;       /* events sent in it */
	__u64 suppressed; /* events suppressed since the observers loaded */
};

/* ---- IPC latency (uprobes on the SDK's probe sites srediag_probe_publish/_consume) ---------- */

/* srediag_ipc_ring value .direction (and the second half of a srediag_ipc_hist index). */
#define SREDIAG_IPC_TO_PLUGIN 0   /* agent publish -> plugin consume */
#define SREDIAG_IPC_FROM_PLUGIN 1 /* plugin publish -> agent consume */
/* Rings the agent registered (two per plugin incarnation). */
#define SREDIAG_IPC_MAX_RINGS 1024
/* Pending-publish slots per ring: a publish of `seq` takes slot `seq % PER_RING` of its ring's
 * own slots (a power of two), so one ring can never displace another's. Any data_path window
 * (max_in_flight) up to PER_RING consecutive sequence numbers never shares a slot. */
#define SREDIAG_IPC_PENDING_PER_RING 64
/* log2 buckets: bucket b counts deltas d with 2^b <= d < 2^(b+1) ns (bucket 0 also d = 0);
 * the last one also everything larger (2^39 ns = 550 s). */
#define SREDIAG_IPC_BUCKETS 40
/* srediag_ipc_hist entries: index plugin_id * 2 + direction (also the ring's slot group in
 * srediag_ipc_pending). */
#define SREDIAG_IPC_HISTS 512

/* srediag_ipc_ring value (hash keyed by the __u64 ring id of DataPathInfo). A probe hit counts
 * only from the process expected at that site: the agent's tgid for the agent's side (publish on
 * to_plugin, consume on from_plugin), the plugin incarnation's tgid for the plugin's side. */
struct srediag_ipc_ring {
	__u32 plugin_id;
	__u32 direction;      /* SREDIAG_IPC_* */
	__u32 publisher_tgid; /* the only process whose srediag_probe_publish counts */
	__u32 consumer_tgid;  /* the only process whose srediag_probe_consume counts */
};

/* srediag_ipc_pending value (array of SREDIAG_IPC_HISTS * SREDIAG_IPC_PENDING_PER_RING slots,
 * index (plugin_id * 2 + direction) * PER_RING + seq % PER_RING): a publish waiting for its
 * consume. ts_ns = 0: free. The low 32 bits of ring id and seq tell whose it is. */
struct srediag_ipc_pending {
	__u64 ts_ns; /* bpf_ktime_get_ns() at publish */
	__u32 ring;
	__u32 seq;
};

/* srediag_ipc_hist value (per-CPU array): one histogram per (plugin, direction). */
struct srediag_ipc_hist {
	__u64 count;
	__u64 sum_ns; /* exact sum of the deltas */
	__u64 buckets[SREDIAG_IPC_BUCKETS];
};

#endif /* __SREDIAG_H__ */
