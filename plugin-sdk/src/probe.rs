//! Probe sites for the agent's eBPF observers (uprobes): where a batch is published to a ring and
//! where it is consumed from one.
//!
//! They are plain exported functions with C names, never inlined, so their addresses are stable
//! symbols in every binary that links the SDK (the agent and each plugin). The observers attach
//! uprobes to them and compute, per ring and `seq`, the time from publish to consume into a log2
//! histogram. A uprobe hit costs 0.5–12 µs on the reference VM, far more than a small batch, so
//! the sites are only *called* for sampled batches: the agent sets a sampling period in the ring
//! header (`0` = off, `n` = batches whose `seq` is a multiple of `n`), and both sides apply the same
//! rule, so the publish and consume hits of a sampled batch always pair up. With sampling off the
//! cost is one relaxed load and a branch per batch.

/// A batch `seq` was published to ring `ring` (after the `tail` store).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn srediag_probe_publish(ring: u64, seq: u64, items: u64) {
    std::hint::black_box((ring, seq, items));
}

/// A batch `seq` was consumed from ring `ring` (after it was copied out and verified).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn srediag_probe_consume(ring: u64, seq: u64, items: u64) {
    std::hint::black_box((ring, seq, items));
}

/// Whether batch `seq` is sampled under period `every` (0 = never).
#[inline]
pub fn sampled(every: u32, seq: u64) -> bool {
    every != 0 && seq.is_multiple_of(every as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sampling_rule() {
        assert!(!super::sampled(0, 0));
        assert!(super::sampled(1, 7));
        assert!(super::sampled(4, 8) && !super::sampled(4, 9));
    }
}
