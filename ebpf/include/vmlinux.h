/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * A hand-written, minimal subset of the kernel types srediag's BPF programs use: only the
 * structs and fields the programs read, each marked `preserve_access_index`, so clang emits
 * CO-RE relocations and the loader (aya, with /sys/kernel/btf/vmlinux) rewrites every field
 * offset for the running kernel. Field order and the other members do not matter; names and
 * types do (CO-RE matches by name and checks type compatibility).
 *
 * Why not the full `bpftool btf dump file /sys/kernel/btf/vmlinux format c` (135k lines,
 * ~4 MB for 6.18)? It would tie the build to one kernel's dump or to bpftool + kernel BTF on
 * the build machine, and CO-RE makes the full dump unnecessary. To add a field: look it up in
 * the dump of a BTF kernel (the command above), copy the member with its exact name and type.
 * Checked against: 6.18.44 (x86_64, Firecracker). Fields used and the oldest kernel that has
 * them: task_struct.{pid,tgid,exit_code,signal,seccomp.mode,comm,se.sum_exec_runtime} (all 5.x),
 * task_struct.__state (5.14; `state` before), task_struct.stack (all),
 * signal_struct.{live,group_exit_code} (2.6), kernel_siginfo._sigsys (4.20), pt_regs.orig_ax (x86),
 * task_struct.mm, mm_struct.rss_stat[] as percpu_counter (6.2) or mm_rss_stat (before),
 * mm_struct.owner (CONFIG_MEMCG).
 */
#ifndef __SREDIAG_VMLINUX_H__
#define __SREDIAG_VMLINUX_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };

/* UAPI values (include/uapi/linux/bpf.h); stable ABI. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live;
	int group_exit_code;
};

struct seccomp {
	int mode;
};

struct sched_entity {
	u64 sum_exec_runtime;
};

struct mm_struct;

struct task_struct {
	unsigned int __state;
	void *stack;
	struct sched_entity se;
	struct mm_struct *mm;
	int pid;
	int tgid;
	int exit_code;
	struct signal_struct *signal;
	struct seccomp seccomp;
	char comm[16];
};

union __sifields {
	struct {
		void *_call_addr;
		int _syscall;
		unsigned int _arch;
	} _sigsys;
};

struct kernel_siginfo {
	struct {
		int si_signo;
		int si_errno;
		int si_code;
		union __sifields _sifields;
	};
};

struct percpu_counter {
	s64 count;
};

/* rss_stat is `struct percpu_counter rss_stat[NR_MM_COUNTERS]` since 6.2. `owner` needs
 * CONFIG_MEMCG. */
struct mm_struct {
	struct percpu_counter rss_stat[4];
	struct task_struct *owner;
};

/* Before 6.2 rss_stat was `struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; }` (the
 * type is gone since): the `___pre62` flavour reads it there, chosen at load time by
 * bpf_core_type_exists(struct mm_rss_stat). */
typedef struct {
	s64 counter;
} atomic_long_t;

struct mm_rss_stat {
	atomic_long_t count[4];
};

/* Before 5.14 the task state was `long state`. */
struct task_struct___pre514 {
	long state;
};

struct mm_struct___pre62 {
	struct mm_rss_stat rss_stat;
};

/* x86_64 only (-D__TARGET_ARCH_x86): the syscall number a task entered with (orig_ax), and
 * the first three integer arguments of a function at a uprobe (di, si, dx: bpf_tracing.h's
 * PT_REGS_PARM1..3 read these names because __VMLINUX_H__ is defined below). */
struct pt_regs {
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
};

#pragma clang attribute pop

/* What a bpftool-generated vmlinux.h defines: bpf_tracing.h then uses the kernel's pt_regs
 * field names. */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__
#endif

#endif /* __SREDIAG_VMLINUX_H__ */
