//! The header page: one `#[repr(C)]` struct of atomics at offset 0 of the memfd.
//!
//! Every field is an atomic, so a `&Header` into shared memory is sound even while the peer
//! writes any bit pattern into it (atomics are `UnsafeCell`s; every `u32`/`u64` is valid). Each
//! side's hot index lives on its own cache line so the producer and consumer do not false-share.

use super::sync::{AtomicU32, AtomicU64};

/// `"SRDRING\0"` read as a little-endian `u64`.
#[cfg(not(loom))]
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SRDRING\0");
/// Layout version; bump on any change to this file.
#[cfg(not(loom))]
pub(crate) const VERSION: u32 = 1;
/// Bytes before the data area (one page).
#[cfg(not(loom))]
pub(crate) const HEADER_SIZE: usize = 4096;
/// Frame header: `[u32 len][u32 tag]`, little endian.
pub(crate) const FRAME_HEADER: usize = 8;
/// Frames start and end on this alignment (padding is zeroed by the producer).
pub(crate) const FRAME_ALIGN: usize = 8;
/// `len` of the marker the producer writes when a frame does not fit before the end of the data
/// area: the rest of the area is skipped and the frame starts at offset 0.
pub(crate) const WRAP_MARKER: u32 = u32::MAX;

/// Doorbell kinds recorded in the header so both sides agree.
pub(crate) const WAKE_FUTEX: u32 = 0;
pub(crate) const WAKE_EVENTFD: u32 = 1;

/// A value on its own cache line.
#[repr(C, align(64))]
pub(crate) struct Line<T>(pub T);

/// Written once by the creator before the memfd is shared.
#[repr(C)]
pub(crate) struct Meta {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_size: AtomicU32,
    pub capacity: AtomicU64,
    pub max_frame: AtomicU32,
    pub wake_kind: AtomicU32,
}

/// Written by the producer.
#[repr(C)]
pub(crate) struct ProducerSide {
    /// Monotonic byte position one past the last published frame.
    pub tail: AtomicU64,
    /// Non-zero once the producer closed (after its last publish).
    pub closed: AtomicU32,
}

/// Written by the consumer.
#[repr(C)]
pub(crate) struct ConsumerSide {
    /// Monotonic byte position of the first unconsumed frame.
    pub head: AtomicU64,
    /// Non-zero once the consumer closed.
    pub closed: AtomicU32,
}

/// The header page.
#[repr(C)]
pub(crate) struct Header {
    pub meta: Line<Meta>,
    pub prod: Line<ProducerSide>,
    pub cons: Line<ConsumerSide>,
    /// 1 while the consumer sleeps (or is about to) waiting for data: the futex word, and the
    /// flag that tells the producer a wake-up syscall is needed.
    pub data_waiter: Line<AtomicU32>,
    /// 1 while the producer sleeps waiting for space.
    pub space_waiter: Line<AtomicU32>,
    /// Set by the agent: the SDK's probe sites fire (sampled) while non-zero.
    pub probe_enabled: Line<AtomicU32>,
}

#[cfg(loom)]
impl Header {
    pub(crate) fn new_zeroed() -> Header {
        Header {
            meta: Line(Meta {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                header_size: AtomicU32::new(0),
                capacity: AtomicU64::new(0),
                max_frame: AtomicU32::new(0),
                wake_kind: AtomicU32::new(0),
            }),
            prod: Line(ProducerSide {
                tail: AtomicU64::new(0),
                closed: AtomicU32::new(0),
            }),
            cons: Line(ConsumerSide {
                head: AtomicU64::new(0),
                closed: AtomicU32::new(0),
            }),
            data_waiter: Line(AtomicU32::new(0)),
            space_waiter: Line(AtomicU32::new(0)),
            probe_enabled: Line(AtomicU32::new(0)),
        }
    }
}

// The wire layout, pinned: the peer may be built by another SDK version.
#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(Header, meta) == 0);
    assert!(offset_of!(Meta, magic) == 0);
    assert!(offset_of!(Meta, version) == 8);
    assert!(offset_of!(Meta, header_size) == 12);
    assert!(offset_of!(Meta, capacity) == 16);
    assert!(offset_of!(Meta, max_frame) == 24);
    assert!(offset_of!(Meta, wake_kind) == 28);
    assert!(offset_of!(Header, prod) == 64);
    assert!(offset_of!(ProducerSide, tail) == 0);
    assert!(offset_of!(ProducerSide, closed) == 8);
    assert!(offset_of!(Header, cons) == 128);
    assert!(offset_of!(Header, data_waiter) == 192);
    assert!(offset_of!(Header, space_waiter) == 256);
    assert!(offset_of!(Header, probe_enabled) == 320);
    assert!(size_of::<Header>() <= HEADER_SIZE);
    assert!(align_of::<Header>() <= 4096);
};

/// Bytes a frame with `len` payload bytes occupies (header + payload + padding).
pub(crate) const fn frame_size(len: usize) -> usize {
    FRAME_HEADER + len.next_multiple_of(FRAME_ALIGN)
}
