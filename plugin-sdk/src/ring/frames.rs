//! The consumer's private buffer: frames copied out of shared memory, safe to parse.

/// Where one frame's payload sits in [`Frames`]' buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub tag: u32,
    pub start: usize,
    pub len: usize,
}

/// A batch of frames read by [`Consumer`](super::Consumer), held in private memory. Reuse one
/// across reads: the buffer is allocated once.
#[derive(Debug)]
pub struct Frames {
    pub(crate) buf: Vec<u8>,
    pub(crate) used: usize,
    pub(crate) slots: Vec<Slot>,
}

/// One frame: the producer's tag (a sequence number or a kind) and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The `u32` the producer put next to the length.
    pub tag: u32,
    /// Payload bytes (private copy).
    pub payload: &'a [u8],
}

impl Default for Frames {
    fn default() -> Self {
        Frames::new()
    }
}

impl Frames {
    /// A buffer of 256 KiB (grown to the ring's maximum frame if that is larger).
    pub fn new() -> Frames {
        Frames::with_capacity(256 * 1024)
    }

    /// A buffer of `bytes` bytes: one read copies at most this much out of the ring.
    pub fn with_capacity(bytes: usize) -> Frames {
        Frames {
            buf: vec![0; bytes],
            used: 0,
            slots: Vec::new(),
        }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No frames.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Drops the frames, keeps the allocation.
    pub fn clear(&mut self) {
        self.used = 0;
        self.slots.clear();
    }

    /// The frames in ring order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Frame<'_>> + '_ {
        self.slots.iter().map(|s| Frame {
            tag: s.tag,
            payload: self.buf.get(s.start..s.start + s.len).unwrap_or_default(),
        })
    }

    /// Frame `i`.
    pub fn get(&self, i: usize) -> Option<Frame<'_>> {
        let s = self.slots.get(i)?;
        Some(Frame {
            tag: s.tag,
            payload: self.buf.get(s.start..s.start + s.len)?,
        })
    }

    pub(crate) fn ensure(&mut self, bytes: usize) {
        if self.buf.len() < bytes {
            self.buf.resize(bytes, 0);
        }
    }
}

/// Reads a little-endian u32 from private memory.
pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
