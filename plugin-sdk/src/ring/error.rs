//! Ring errors. Everything the peer can cause is a value, never a panic.

/// What went wrong on a ring.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// No room for the frame now (`try_push`, `try_stage`): retry, block or drop and count.
    #[error("ring is full")]
    Full,
    /// A bounded wait ran out (`push_timeout`).
    #[error("timed out after {0:?} waiting for the peer")]
    TimedOut(std::time::Duration),
    /// The peer closed its end (and, for a consumer, every published frame was read).
    #[error("the peer closed the ring")]
    Closed,
    /// A frame larger than the ring's maximum was offered (a local error, not the peer's).
    #[error("frame of {len} bytes exceeds the ring's {max}-byte maximum")]
    FrameTooLarge {
        /// Payload bytes offered.
        len: usize,
        /// The ring's maximum payload.
        max: usize,
    },
    /// The peer published an index that cannot be right (counted as a peer violation).
    #[error("peer wrote an invalid {which} index {value} (own index {own}, capacity {capacity})")]
    BadIndex {
        /// `tail` (read by the consumer) or `head` (read by the producer).
        which: &'static str,
        /// The value read.
        value: u64,
        /// This side's index at the time.
        own: u64,
        /// Data area size.
        capacity: u64,
    },
    /// The bytes between head and tail do not parse as frames (counted as a peer violation; the
    /// rest of the published span is discarded).
    #[error("malformed frame at ring position {position}: {reason}")]
    MalformedFrame {
        /// Monotonic byte position of the bad frame.
        position: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The memfd or its header is not a usable ring.
    #[error("not a valid ring: {0}")]
    BadRing(String),
    /// Invalid [`RingConfig`](super::RingConfig).
    #[error("invalid ring configuration: {0}")]
    Config(String),
    /// The producer or consumer of this ring was already taken in this process.
    #[error("the ring's {0} was already taken")]
    Taken(&'static str),
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl RingError {
    #[cfg(not(loom))]
    pub(crate) fn last_os(op: &'static str) -> RingError {
        RingError::Io {
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}
