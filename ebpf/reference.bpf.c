// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * The B4 host-tax reference: the smallest useful global syscall hook, a raw_tp on sys_enter that
 * bumps a per-CPU counter. `cargo xtask bench bpf` measures it in the same run as srediag's
 * observers, so their cost reads against "what one global syscall hook costs here". Never
 * loaded by the agent.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} srediag_refcnt SEC(".maps");

SEC("raw_tp/sys_enter")
int srediag_ref(void *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&srediag_refcnt, &zero);
	if (v)
		*v += 1;
	return 0;
}
