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

/// A batch `seq` is being published to ring `ring`: called right *before* the frame becomes
/// visible (the `tail` store), so the consumer's hit can never come before this one.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn srediag_probe_publish(ring: u64, seq: u64, items: u64) {
    // The tag keeps the two bodies different: identical functions get folded into one address
    // (LTO/ICF did that to the release binaries), which would make both sites one uprobe.
    std::hint::black_box((ring, seq, items, PUBLISH_TAG));
}

const PUBLISH_TAG: u32 = 0x5055_424c; // "PUBL"
const CONSUME_TAG: u32 = 0x434f_4e53; // "CONS"

/// A batch `seq` was consumed from ring `ring` (after it was copied out and verified).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn srediag_probe_consume(ring: u64, seq: u64, items: u64) {
    std::hint::black_box((ring, seq, items, CONSUME_TAG));
}

/// Whether batch `seq` is sampled under period `every` (0 = never).
#[inline]
pub fn sampled(every: u32, seq: u64) -> bool {
    every != 0 && seq.is_multiple_of(every as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_sites_have_distinct_addresses() {
        let publish = super::srediag_probe_publish as extern "C" fn(u64, u64, u64) as usize;
        let consume = super::srediag_probe_consume as extern "C" fn(u64, u64, u64) as usize;
        assert_ne!(publish, consume);
    }

    #[test]
    fn sampling_rule() {
        assert!(!super::sampled(0, 0));
        assert!(super::sampled(1, 7));
        assert!(super::sampled(4, 8) && !super::sampled(4, 9));
    }
}
