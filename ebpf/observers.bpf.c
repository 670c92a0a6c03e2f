// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * srediag's plugin observers, one object so every program shares the maps:
 *
 *   tracking   sched_process_fork / sched_process_exit keep srediag_pids (tgid -> plugin id):
 *              the agent arms its spawner thread (srediag_spawners: tid -> plugin id) before
 *              each plugin clone, so the kernel tracks the plugin from its first instruction;
 *              it adds every descendant of a tracked process at fork, marks a process dying
 *              when its last thread exits and removes it at that thread's final switch-out
 *              (sched_switch).
 *   cpu        sched_switch charges the growth of a tracked task's se.sum_exec_runtime since
 *              it was last charged (srediag_thr; at first since its switch-in, remembered per
 *              CPU in srediag_cpust) to its plugin id, in srediag_cpu.
 *   memory     rss_stat keeps each tracked process's resident pages (srediag_mem); mark_victim
 *              counts OOM kills per plugin (srediag_ooms) and sends an event.
 *   seccomp    signal_generate (SIGSYS, si_code SYS_SECCOMP) for TRAP (and srediag's `errno`,
 *              a TRAP with the errno in si_errno) and KILL actions, and
 *              sched_process_exit (exit by SIGSYS with seccomp mode DEAD and no such signal) for
 *              KILL_THREAD in a multi-threaded process: a per-CPU counter per (plugin, syscall,
 *              arch, action) plus an event in srediag_events, at most srediag_event_budget
 *              events per plugin and second (srediag_ev_budget; the rest suppressed and counted).
 *
 * Every hook exists twice: tp_btf (typed arguments, direct loads; preferred) and raw_tp
 * (arguments read with bpf_probe_read_kernel; kernels or setups without tp_btf). The agent
 * loads one of each pair. Neither needs tracefs. The cost every other task on the host pays:
 * sched_switch one per-CPU array lookup, one field load and one hash lookup (none when
 * switching to idle);
 * fork and exit one hash lookup (a fork by the agent itself a second one: is its thread armed?);
 * signal_generate one compare (SIGSYS).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "srediag.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SREDIAG_MAX_PIDS);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* plugin id */
} srediag_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SREDIAG_MAX_PLUGINS);
	__type(key, __u32);   /* plugin id */
	__type(value, __u64); /* on-CPU ns */
} srediag_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct srediag_cpu_state);
} srediag_cpust SEC(".maps");

/* Per tracked thread: its se.sum_exec_runtime when last charged. Charging from here (not from
 * the switch-in value) also catches runtime the scheduler adds while the task is off-CPU or
 * during a slice whose switch-in was not seen, at the thread's next charged switch-out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SREDIAG_MAX_THREADS);
	__type(key, __u32);   /* tid */
	__type(value, __u64); /* ns */
} srediag_thr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SREDIAG_MAX_VIOLATION_KEYS);
	__type(key, struct srediag_violation_key);
	__type(value, __u64);
} srediag_viol SEC(".maps");

/* Threads whose seccomp SIGSYS was counted by signal_generate (KILL actions), so their exit is
 * not counted a second time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);   /* tid */
	__type(value, __u32);
} srediag_sigsys SEC(".maps");

/* Per tracked process: its resident pages at the last rss_stat (LRU: a leaked entry ages out). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SREDIAG_MAX_PIDS);
	__type(key, __u32); /* tgid */
	__type(value, struct srediag_rss);
} srediag_mem SEC(".maps");

/* OOM kills per plugin (oom/mark_victim). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SREDIAG_MAX_PLUGINS);
	__type(key, __u32);   /* plugin id */
	__type(value, __u64); /* victims */
} srediag_ooms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SREDIAG_EVENTS_BYTES);
} srediag_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SREDIAG_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} srediag_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&srediag_stats, &idx);
	if (v)
		*v += 1;
}

/* ---- cpu ---------------------------------------------------------------------------------- */

/* A task field: a direct (CO-RE relocated) load from a tp_btf argument, a probe read from a
 * raw_tp one. `btf` is a constant in every caller, so only one branch is compiled in. */
#define TASK_FIELD(btf, t, field) ((btf) ? (t)->field : BPF_CORE_READ(t, field))

/* At sched_switch, prev's se.sum_exec_runtime is up to date (pick_next_task ran update_curr).
 * Charging its growth since the switch-in, rather than wall time, gives exactly what the kernel
 * accounts (rusage, cgroup cpuacct): it excludes time stolen by the hypervisor and, with
 * IRQ_TIME_ACCOUNTING, interrupts. Fields are read only when needed: a switch between two
 * untracked tasks costs one per-CPU array lookup, one load and one hash lookup. */
/* The state of a task switched out: `__state` (5.14+) or `state`. Read from the task rather than
 * taken from sched_switch's fourth argument, which only exists since 5.18 (a program reading it
 * is refused by older kernels). At the final switch-out it is TASK_DEAD. */
static __always_inline __u32 task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	struct task_struct___pre514 *old = (void *)t;
	return (__u32)BPF_CORE_READ(old, state);
}

static __always_inline void on_switch(struct task_struct *prev, struct task_struct *next, bool btf)
{
	__u32 zero = 0;
	struct srediag_cpu_state *st = bpf_map_lookup_elem(&srediag_cpust, &zero);
	if (!st)
		return;
	__u32 next_tgid = TASK_FIELD(btf, next, tgid);
	__u32 *next_id = 0;
	if (next_tgid) /* not the idle task */
		next_id = bpf_map_lookup_elem(&srediag_pids, &next_tgid);
	__u32 prev_id = st->plugin_id;
	if (!prev_id && !next_id)
		return;
	if (prev_id) {
		__u32 prev_state = task_state(prev);
		/* Charge only the task that was switched in: if a switch was ever missed (a program
		 * skipped for recursion), nothing else is charged to a plugin that left the CPU. */
		__u32 prev_tid = TASK_FIELD(btf, prev, pid);
		if (st->tid == prev_tid) {
			__u64 runtime = TASK_FIELD(btf, prev, se.sum_exec_runtime);
			__u64 *base = bpf_map_lookup_elem(&srediag_thr, &prev_tid);
			__u64 from = base ? *base : st->runtime_ns;
			__u64 *acc = bpf_map_lookup_elem(&srediag_cpu, &prev_id);
			if (acc && runtime > from)
				*acc += runtime - from;
			if (prev_state & SREDIAG_TASK_DEAD)
				bpf_map_delete_elem(&srediag_thr, &prev_tid);
			else if (base)
				*base = runtime;
			else
				bpf_map_update_elem(&srediag_thr, &prev_tid, &runtime, BPF_ANY);
		} else {
			stat_inc(SREDIAG_STAT_CPU_UNMATCHED);
		}
		if (prev_state & SREDIAG_TASK_DEAD) {
			/* The final switch-out of a tracked task: forget a process whose last thread
			 * is gone (marked dying by sched_process_exit). */
			__u32 prev_tgid = TASK_FIELD(btf, prev, tgid);
			__u32 *v = bpf_map_lookup_elem(&srediag_pids, &prev_tgid);
			if (v && (*v & SREDIAG_PID_DYING)) {
				bpf_map_delete_elem(&srediag_pids, &prev_tgid);
				bpf_map_delete_elem(&srediag_mem, &prev_tgid);
			}
		}
	}
	if (next_id) {
		st->plugin_id = *next_id & ~SREDIAG_PID_DYING;
		st->tid = TASK_FIELD(btf, next, pid);
		st->since_ns = bpf_ktime_get_ns();
		st->runtime_ns = TASK_FIELD(btf, next, se.sum_exec_runtime);
	} else {
		st->plugin_id = 0;
	}
}

/* sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next[,
 * unsigned int prev_state (5.18+)]): only the first three are read. */
SEC("tp_btf/sched_switch")
int srediag_switch(__u64 *ctx)
{
	on_switch((struct task_struct *)ctx[1], (struct task_struct *)ctx[2], true);
	return 0;
}

SEC("raw_tp/sched_switch")
int srediag_rswitch(__u64 *ctx)
{
	on_switch((struct task_struct *)ctx[1], (struct task_struct *)ctx[2], false);
	return 0;
}

/* ---- tracking ----------------------------------------------------------------------------- */

/* Threads armed to clone a plugin: the agent's spawner thread (tid) -> the plugin id of the
 * process it clones next. The agent sets it before each spawn and removes it after, so the child
 * is tracked from its first instruction, before it builds its sandbox and execs: a plugin that
 * dies at its first syscall is seen as surely as one that runs for hours. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SREDIAG_MAX_SPAWNERS);
	__type(key, __u32);   /* tid */
	__type(value, __u32); /* plugin id */
} srediag_spawners SEC(".maps");

/* The agent's tgid, set at load: only its (spawner) thread is ever armed, so a fork by any other
 * untracked process costs one compare here instead of a second hash lookup. */
const volatile __u32 srediag_agent_tgid = 0;

/* sched_process_fork runs in the parent (current) after the child is created, before the child
 * first runs. */
static __always_inline void on_fork(__u32 parent_tgid, __u32 parent_tid, __u32 child_tgid)
{
	if (parent_tgid == child_tgid) /* a new thread: its process is already tracked or not */
		return;
	__u32 *id = bpf_map_lookup_elem(&srediag_pids, &parent_tgid);
	if (!id) {
		if (parent_tgid != srediag_agent_tgid)
			return;
		id = bpf_map_lookup_elem(&srediag_spawners, &parent_tid);
		if (!id)
			return;
	}
	__u32 v = *id & ~SREDIAG_PID_DYING;
	if (bpf_map_update_elem(&srediag_pids, &child_tgid, &v, BPF_ANY))
		stat_inc(SREDIAG_STAT_PIDS_FULL);
}

/* sched_process_fork(struct task_struct *parent, struct task_struct *child) */
SEC("tp_btf/sched_process_fork")
int srediag_fork(__u64 *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	on_fork(parent->tgid, parent->pid, child->tgid);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int srediag_rfork(__u64 *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	on_fork(BPF_CORE_READ(parent, tgid), BPF_CORE_READ(parent, pid), BPF_CORE_READ(child, tgid));
	return 0;
}

/* ---- seccomp ------------------------------------------------------------------------------ */

/* Violation events a plugin may send per SREDIAG_EVENT_WINDOW_NS, set by the agent at load. */
const volatile __u32 srediag_event_budget = SREDIAG_EVENT_BUDGET;

/* Per plugin id: its violation-event budget and suppressed events (srediag.h). An array: every
 * plugin id has its entry from the start, nothing to create or evict. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SREDIAG_MAX_PLUGINS);
	__type(key, __u32);
	__type(value, struct srediag_event_budget);
} srediag_ev_budget SEC(".maps");

/* The plugin's budget entry when its violation at `now` may send an event; 0 when the event is
 * suppressed (counted). A plugin looping on a denied syscall (the SDK turns each SIGSYS into
 * EPERM: ~10^5 violations a second) otherwise makes the agent drain and process every event,
 * outside the plugin's cpu_max. Its violations stay counted exactly in srediag_viol either way.
 * Plain loads and stores plus atomic adds without fetch (BPF_XADD, in every 5.x verifier); no
 * lock (tracing programs cannot take bpf_spin_lock): CPUs racing at a window's start may each
 * let one more event through. */
static __always_inline struct srediag_event_budget *event_budget(__u32 plugin_id, __u64 now)
{
	struct srediag_event_budget *b = bpf_map_lookup_elem(&srediag_ev_budget, &plugin_id);
	if (!b) {
		/* An id beyond the array (ids are < SREDIAG_MAX_PLUGINS): no budget, no event. */
		stat_inc(SREDIAG_STAT_EVENTS_SUPPRESSED);
		return 0;
	}
	/* Signed: another CPU may have opened the window with a slightly later `now`. */
	if ((__s64)(now - b->window_ns) >= SREDIAG_EVENT_WINDOW_NS) {
		b->window_ns = now;
		b->sent = 0;
	}
	if (b->sent >= srediag_event_budget) {
		__sync_fetch_and_add(&b->suppressed, 1);
		stat_inc(SREDIAG_STAT_EVENTS_SUPPRESSED);
		return 0;
	}
	__sync_fetch_and_add(&b->sent, 1);
	return b;
}

static __always_inline void count_violation(struct task_struct *task, __u32 tgid, __u32 tid,
					    __u32 plugin_id, __s32 nr, __u32 arch, __u32 action,
					    __u32 source)
{
	struct srediag_violation_key key = {
		.plugin_id = plugin_id,
		.syscall_nr = nr,
		.arch = arch,
		.action = action,
	};
	__u64 *count = bpf_map_lookup_elem(&srediag_viol, &key);
	if (count) {
		*count += 1;
	} else {
		__u64 one = 1;
		if (bpf_map_update_elem(&srediag_viol, &key, &one, BPF_NOEXIST)) {
			/* Created meanwhile by another CPU (EEXIST), or the map is full. */
			count = bpf_map_lookup_elem(&srediag_viol, &key);
			if (count)
				*count += 1;
			else
				stat_inc(SREDIAG_STAT_VIOLATIONS_FULL);
		}
	}

	__u64 now = bpf_ktime_get_ns();
	struct srediag_event_budget *budget = event_budget(plugin_id, now);
	if (!budget)
		return;
	struct srediag_event *ev = bpf_ringbuf_reserve(&srediag_events, sizeof(*ev), 0);
	if (!ev) {
		stat_inc(SREDIAG_STAT_EVENTS_DROPPED);
		return;
	}
	ev->kind = SREDIAG_EVENT_VIOLATION;
	ev->action = action;
	ev->ktime_ns = now;
	ev->suppressed = budget->suppressed;
	ev->tgid = tgid;
	ev->tid = tid;
	ev->plugin_id = plugin_id;
	ev->syscall_nr = nr;
	ev->arch = arch;
	ev->source = source;
	BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
	bpf_ringbuf_submit(ev, 0);
}

/* signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
 * int result). `info` may be SEND_SIG_NOINFO (0) or SEND_SIG_PRIV (1). */
static __always_inline void on_signal(int sig, struct kernel_siginfo *info, struct task_struct *task)
{
	if (sig != SREDIAG_SIGSYS || (unsigned long)info <= 1)
		return;
	if (BPF_CORE_READ(info, si_code) != SREDIAG_SYS_SECCOMP)
		return;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 *id = bpf_map_lookup_elem(&srediag_pids, &tgid);
	if (!id)
		return;
	__u32 plugin_id = *id & ~SREDIAG_PID_DYING;
	__u32 tid = BPF_CORE_READ(task, pid);
	__s32 nr = BPF_CORE_READ(info, _sifields._sigsys._syscall);
	__u32 arch = BPF_CORE_READ(info, _sifields._sigsys._arch);
	/* KILL_* set the mode to DEAD before forcing the signal; TRAP leaves it FILTER. A TRAP
	 * carrying data (si_errno != 0) is srediag's `errno` action: the SDK handler returns
	 * -si_errno and the plugin continues. */
	__u32 action = SREDIAG_ACTION_TRAP;
	if (BPF_CORE_READ(info, si_errno) != 0)
		action = SREDIAG_ACTION_ERRNO;
	if (BPF_CORE_READ(task, seccomp.mode) == SREDIAG_SECCOMP_MODE_DEAD) {
		action = SREDIAG_ACTION_KILL;
		__u32 one = 1;
		bpf_map_update_elem(&srediag_sigsys, &tid, &one, BPF_ANY);
	}
	count_violation(task, tgid, tid, plugin_id, nr, arch, action, SREDIAG_SOURCE_SIGNAL);
}

SEC("tp_btf/signal_generate")
int srediag_signal(__u64 *ctx)
{
	on_signal((int)ctx[0], (struct kernel_siginfo *)ctx[1], (struct task_struct *)ctx[2]);
	return 0;
}

SEC("raw_tp/signal_generate")
int srediag_rsignal(__u64 *ctx)
{
	on_signal((int)ctx[0], (struct kernel_siginfo *)ctx[1], (struct task_struct *)ctx[2]);
	return 0;
}

/* ---- exit (tracking + seccomp KILL_THREAD) ------------------------------------------------- */

/* sched_process_exit(struct task_struct *p[, bool group_dead]) runs in the exiting task
 * (current), after exit_code is set and signal->live decremented. */
static __always_inline void on_exit(struct task_struct *task, __u32 tgid, bool btf)
{
	__u32 *id = bpf_map_lookup_elem(&srediag_pids, &tgid);
	if (!id)
		return;
	__u32 plugin_id = *id & ~SREDIAG_PID_DYING;
	__u32 tid = BPF_CORE_READ(task, pid);
	int code = BPF_CORE_READ(task, exit_code);
	if ((code & 0x7f) == SREDIAG_SIGSYS &&
	    BPF_CORE_READ(task, seccomp.mode) == SREDIAG_SECCOMP_MODE_DEAD) {
		if (bpf_map_lookup_elem(&srediag_sigsys, &tid)) {
			bpf_map_delete_elem(&srediag_sigsys, &tid); /* counted by signal_generate */
		} else {
			/* KILL_THREAD of one thread among several: do_exit(SIGSYS) in the middle of
			 * the syscall, whose number is still in the task's saved registers. */
			__s32 nr = -1;
			/* bpf_get_current_task_btf and bpf_task_pt_regs are 5.11+/5.15+: the raw_tp
			 * variant (the fallback of older kernels) finds the registers itself. `btf` is
			 * a constant: the helpers are not in that program. */
			if (btf) {
				struct task_struct *cur = bpf_get_current_task_btf();
				struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(cur);
				if (regs)
					nr = (__s32)BPF_CORE_READ(regs, orig_ax);
			} else {
				/* x86_64's task_pt_regs(): the user registers sit at the top of the
				 * task's kernel stack (THREAD_SIZE 16 KiB without KASAN, no padding);
				 * the struct's size comes from the kernel's BTF. */
				void *stack = BPF_CORE_READ(task, stack);
				struct pt_regs *regs = (struct pt_regs *)((char *)stack +
					SREDIAG_THREAD_SIZE - bpf_core_type_size(struct pt_regs));
				if (stack)
					nr = (__s32)BPF_CORE_READ(regs, orig_ax);
			}
			/* Before 5.11 KILL_PROCESS sent no signal: it dumped core and called
			 * do_group_exit(SIGSYS), which leaves SIGSYS as the group's exit code. */
			__u32 action = SREDIAG_ACTION_KILL_THREAD;
			if ((BPF_CORE_READ(task, signal, group_exit_code) & 0x7f) == SREDIAG_SIGSYS)
				action = SREDIAG_ACTION_KILL;
			count_violation(task, tgid, tid, plugin_id, nr, SREDIAG_AUDIT_ARCH_X86_64,
					action, SREDIAG_SOURCE_EXIT);
		}
	}
	/* The last thread: keep tracking it through the rest of do_exit (exit_mm, exit_files run
	 * after this tracepoint since 6.16) and let its final switch-out remove it. */
	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		*id = plugin_id | SREDIAG_PID_DYING;
}

SEC("tp_btf/sched_process_exit")
int srediag_exit(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	on_exit(task, task->tgid, true);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int srediag_rexit(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	on_exit(task, BPF_CORE_READ(task, tgid), false);
	return 0;
}

/* ---- memory: RSS (kmem/rss_stat) and OOM kills (oom/mark_victim) --------------------------- */

/* rss_stat(struct mm_struct *mm, int member) fires at every change of one of mm's RSS counters
 * (page faults, unmaps, exit), mostly in a task using that mm; otherwise (reclaim, exec's
 * teardown of the old mm) the mm's owner is the process. Every other task pays one load and one
 * hash lookup. The counters are read without summing their per-CPU parts: off by at most
 * (percpu batch - 1) pages per CPU and counter (~0.4 MiB per process on 2 CPUs). */
static __always_inline void on_rss(struct mm_struct *mm, bool btf)
{
	/* Common case first, cheapest: the current process's own mm. One helper call, one load
	 * (direct in tp_btf), one hash lookup for any other process. */
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mm_struct *cur_mm;
	if (btf) {
		cur_mm = bpf_get_current_task_btf()->mm;
	} else {
		struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
		cur_mm = BPF_CORE_READ(cur, mm);
	}
	if (cur_mm != mm) {
		/* Someone else's mm (reclaim, exec's teardown of the old mm, exit after exit_mm):
		 * charge the mm's owner process. */
		if (!bpf_core_field_exists(mm->owner))
			return;
		tgid = BPF_CORE_READ(mm, owner, tgid);
	}
	__u32 *id = bpf_map_lookup_elem(&srediag_pids, &tgid);
	if (!id)
		return;
	__s64 file, anon, shmem;
	if (bpf_core_type_exists(struct mm_rss_stat)) {
		/* Before 6.2: an atomic array (the other branch's relocations are left unresolved
		 * there, and the verifier never reaches them). */
		struct mm_struct___pre62 *old = (void *)mm;
		file = BPF_CORE_READ(old, rss_stat.count[SREDIAG_MM_FILEPAGES].counter);
		anon = BPF_CORE_READ(old, rss_stat.count[SREDIAG_MM_ANONPAGES].counter);
		shmem = BPF_CORE_READ(old, rss_stat.count[SREDIAG_MM_SHMEMPAGES].counter);
	} else {
		file = BPF_CORE_READ(mm, rss_stat[SREDIAG_MM_FILEPAGES].count);
		anon = BPF_CORE_READ(mm, rss_stat[SREDIAG_MM_ANONPAGES].count);
		shmem = BPF_CORE_READ(mm, rss_stat[SREDIAG_MM_SHMEMPAGES].count);
	}
	__s64 pages = (file > 0 ? file : 0) + (anon > 0 ? anon : 0) + (shmem > 0 ? shmem : 0);
	struct srediag_rss v = {
		.pages = (__u64)pages,
		.plugin_id = *id & ~SREDIAG_PID_DYING,
	};
	bpf_map_update_elem(&srediag_mem, &tgid, &v, BPF_ANY);
}

SEC("tp_btf/rss_stat")
int srediag_rss(__u64 *ctx)
{
	on_rss((struct mm_struct *)ctx[0], true);
	return 0;
}

SEC("raw_tp/rss_stat")
int srediag_rrss(__u64 *ctx)
{
	on_rss((struct mm_struct *)ctx[0], false);
	return 0;
}

/* mark_victim(struct task_struct *task, uid_t uid): the OOM killer (global or memcg) chose
 * `task`'s process. */
static __always_inline void on_oom(struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 *id = bpf_map_lookup_elem(&srediag_pids, &tgid);
	if (!id)
		return;
	__u32 plugin_id = *id & ~SREDIAG_PID_DYING;
	__u64 *n = bpf_map_lookup_elem(&srediag_ooms, &plugin_id);
	if (n)
		*n += 1;
	struct srediag_event *ev = bpf_ringbuf_reserve(&srediag_events, sizeof(*ev), 0);
	if (!ev) {
		stat_inc(SREDIAG_STAT_EVENTS_DROPPED);
		return;
	}
	ev->kind = SREDIAG_EVENT_OOM;
	ev->action = 0;
	ev->ktime_ns = bpf_ktime_get_ns();
	ev->tgid = tgid;
	ev->tid = BPF_CORE_READ(task, pid);
	ev->plugin_id = plugin_id;
	ev->syscall_nr = -1;
	ev->arch = 0;
	ev->source = 0;
	ev->suppressed = 0;
	BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
	bpf_ringbuf_submit(ev, 0);
}

SEC("tp_btf/mark_victim")
int srediag_oom(__u64 *ctx)
{
	on_oom((struct task_struct *)ctx[0]);
	return 0;
}

SEC("raw_tp/mark_victim")
int srediag_room(__u64 *ctx)
{
	on_oom((struct task_struct *)ctx[0]);
	return 0;
}

/* ---- IPC latency -------------------------------------------------------------------------- */

/* Rings the agent registered: ring id -> (plugin id, direction, the tgids allowed at each site).
 * A probe hit on any other ring is ignored; a hit on a registered ring from a process that is not
 * the one expected at that site (a plugin calling its own probe sites with another plugin's ring
 * ids, or its own ring's other site) is dropped and counted. The uprobes' pid scope already keeps
 * processes without srediag uprobes (another agent, another instance of the binary) out. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SREDIAG_IPC_MAX_RINGS);
	__type(key, __u64);
	__type(value, struct srediag_ipc_ring);
} srediag_ipc_ring SEC(".maps");

/* Publishes waiting for their consume: PER_RING slots per (plugin, direction), so a ring only
 * ever replaces its own entries (an LRU shared by every ring could be flushed by one plugin). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SREDIAG_IPC_HISTS * SREDIAG_IPC_PENDING_PER_RING);
	__type(key, __u32);
	__type(value, struct srediag_ipc_pending);
} srediag_ipc_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SREDIAG_IPC_HISTS);
	__type(key, __u32);
	__type(value, struct srediag_ipc_hist);
} srediag_ipc_hist SEC(".maps");

/* Forged probe hits per plugin id of the process that made them (srediag_pids). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SREDIAG_MAX_PLUGINS);
	__type(key, __u32);   /* plugin id */
	__type(value, __u64); /* hits dropped */
} srediag_ipc_forged SEC(".maps");

/* floor(log2(v)) for v > 0, 0 for v = 0; branch-free enough for the verifier. */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, s;
	s = (v > 0xFFFFFFFFULL) << 5; v >>= s; r |= s;
	s = (v > 0xFFFF) << 4; v >>= s; r |= s;
	s = (v > 0xFF) << 3; v >>= s; r |= s;
	s = (v > 0xF) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (__u32)(v >> 1);
	return r;
}

/* The registered ring `ring`, when the current process is the one expected at this site;
 * a hit from any other process is counted (per plugin when it is a tracked one) and dropped. */
static __always_inline struct srediag_ipc_ring *ipc_ring(__u64 ring, bool publish)
{
	struct srediag_ipc_ring *r = bpf_map_lookup_elem(&srediag_ipc_ring, &ring);
	if (!r)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == (publish ? r->publisher_tgid : r->consumer_tgid))
		return r;
	stat_inc(SREDIAG_STAT_IPC_FORGED);
	__u32 *id = bpf_map_lookup_elem(&srediag_pids, &tgid);
	if (id) {
		__u32 plugin_id = *id & ~SREDIAG_PID_DYING;
		__u64 *n = bpf_map_lookup_elem(&srediag_ipc_forged, &plugin_id);
		if (n)
			*n += 1;
	}
	return 0;
}

/* The pending slot of (`r`, seq): index (plugin_id * 2 + direction) * PER_RING + seq % PER_RING
 * (the array lookup bounds-checks it). */
static __always_inline struct srediag_ipc_pending *ipc_slot(struct srediag_ipc_ring *r, __u64 seq)
{
	__u32 hist = r->plugin_id * 2 + (r->direction & 1);
	if (hist >= SREDIAG_IPC_HISTS)
		return 0;
	__u32 idx = hist * SREDIAG_IPC_PENDING_PER_RING +
		    ((__u32)seq & (SREDIAG_IPC_PENDING_PER_RING - 1));
	return bpf_map_lookup_elem(&srediag_ipc_pending, &idx);
}

/* srediag_probe_publish(u64 ring, u64 seq, u64 items): remember when. */
SEC("uprobe")
int srediag_ipc_publish(struct pt_regs *ctx)
{
	__u64 ring = (__u64)PT_REGS_PARM1(ctx);
	__u64 seq = (__u64)PT_REGS_PARM2(ctx);
	struct srediag_ipc_ring *r = ipc_ring(ring, true);
	if (!r)
		return 0;
	struct srediag_ipc_pending *p = ipc_slot(r, seq);
	if (!p)
		return 0;
	p->ring = (__u32)ring;
	p->seq = (__u32)seq;
	p->ts_ns = bpf_ktime_get_ns();
	return 0;
}

/* srediag_probe_consume(u64 ring, u64 seq, u64 items): publish -> consume into the histogram of
 * the ring's (plugin, direction). */
SEC("uprobe")
int srediag_ipc_consume(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 ring = (__u64)PT_REGS_PARM1(ctx);
	__u64 seq = (__u64)PT_REGS_PARM2(ctx);
	struct srediag_ipc_ring *r = ipc_ring(ring, false);
	if (!r)
		return 0;
	struct srediag_ipc_pending *p = ipc_slot(r, seq);
	if (!p)
		return 0;
	__u64 then = p->ts_ns;
	if (!then || p->ring != (__u32)ring || p->seq != (__u32)seq) {
		stat_inc(SREDIAG_STAT_IPC_UNMATCHED);
		return 0;
	}
	p->ts_ns = 0;
	__u64 delta = now > then ? now - then : 0;
	__u32 idx = r->plugin_id * 2 + (r->direction & 1);
	struct srediag_ipc_hist *h = bpf_map_lookup_elem(&srediag_ipc_hist, &idx);
	if (!h)
		return 0;
	/* 64-bit, so the clamp compares the very register that indexes: with a __u32, clang
	 * compares a zero-extended copy, and the 6.1 verifier does not carry that bound over to the
	 * original ("invalid access to map value": the observer failed to load there). */
	__u64 b = log2_u64(delta);
	if (b >= SREDIAG_IPC_BUCKETS)
		b = SREDIAG_IPC_BUCKETS - 1;
	h->count += 1;
	h->sum_ns += delta;
	h->buckets[b] += 1;
	return 0;
}
