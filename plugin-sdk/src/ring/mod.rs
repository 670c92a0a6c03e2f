//! Shared-memory rings: the data path between the agent and a plugin.
//!
//! One [`Ring`] is a single-producer single-consumer byte ring in a `memfd` that the agent
//! creates (`MFD_CLOEXEC | MFD_ALLOW_SEALING`), sizes (a power of two, configurable), seals
//! against resizing (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`: the plugin cannot shrink it
//! under the agent and make it take SIGBUS) and passes to the plugin as an fd. A plugin gets two:
//! agent→plugin and plugin→agent.
//!
//! Layout: a 4 KiB header page (magic, version, capacity, maximum frame, producer `tail` and
//! consumer `head` on separate cache lines, the two sleep flags that double as futex words, a
//! `probe_enabled` word) and a data area of frames `[u32 len][u32 tag][payload][pad to 8]`. A
//! frame never straddles the end of the data area: the producer writes a wrap marker instead and
//! starts again at offset 0, so a peer that trusts the ring can read frames in place.
//!
//! The producer stages any number of frames and publishes them with one Release store of `tail`
//! (a batch); it issues a wake-up syscall only when the consumer declared it is asleep, which is
//! what makes batching cheap. Every wait is bounded, with an optional spin phase first.
//!
//! The peer is untrusted. [`Consumer`] reads `tail` once per call and checks it, copies the
//! published span out of shared memory into a private [`Frames`] buffer and parses only that copy;
//! every index or frame the peer got wrong is returned as a [`RingError`] and counted
//! ([`RingStats::peer_violations`]) so the agent can quarantine the plugin. Nothing the peer
//! writes can make either side panic, read or write outside the mapping, or wait forever.
//! See `docs/ipc.md`.
//!
//! ```no_run
//! use srediag_plugin_sdk::ring::{Frames, Ring, RingConfig, WaitOptions};
//! use std::time::Duration;
//! let ring = Ring::create(RingConfig::default()).unwrap();
//! let mut tx = ring.producer(WaitOptions::default()).unwrap();
//! let mut rx = ring.consumer(WaitOptions::default()).unwrap();
//! tx.try_stage(1, b"first").unwrap();
//! tx.try_stage(2, b"second").unwrap();
//! tx.publish();
//! let mut frames = Frames::new();
//! rx.recv_timeout(&mut frames, Duration::from_millis(100)).unwrap();
//! assert_eq!(frames.iter().map(|f| f.tag).collect::<Vec<_>>(), [1, 2]);
//! ```
#![allow(unexpected_cfgs)] // `--cfg loom` selects the model-checking build.

mod consumer;
mod error;
mod frames;
mod layout;
#[cfg(not(loom))]
mod mem;
#[cfg(loom)]
mod mem_loom;
#[cfg(loom)]
use mem_loom as mem;
mod producer;
mod wake;

#[cfg(all(test, loom))]
mod loom_model;
#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::Consumer;
pub use error::RingError;
pub use frames::{Frame, Frames};
pub use producer::Producer;

use mem::{MAX_CAPACITY, MIN_CAPACITY, Mem, Params};
use std::time::Duration;
use wake::Doorbell;

/// The atomics the ring uses: std's, or loom's under `--cfg loom`.
pub(crate) mod sync {
    #[cfg(loom)]
    pub(crate) use loom::sync::Arc;
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
    #[cfg(not(loom))]
    pub(crate) use std::sync::Arc;
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};
}

/// Frame header bytes (`[u32 len][u32 tag]`).
pub const FRAME_HEADER: usize = layout::FRAME_HEADER;

/// Bytes a frame with a `len`-byte payload occupies in the ring (header, payload, padding to 8).
pub const fn frame_size(len: usize) -> usize {
    layout::frame_size(len)
}

/// How big a ring is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Data area in bytes: a power of two, 4 KiB to 1 GiB.
    pub capacity: usize,
    /// Largest payload of one frame; `frame_size(max_frame)` must fit in half the capacity so an
    /// empty ring always takes a maximal frame wherever its indices stand.
    pub max_frame: usize,
    /// Wake-ups by futex on the header words (default) or by two eventfds.
    pub wake: WakeMode,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            capacity: 1 << 20,
            max_frame: 64 * 1024,
            wake: WakeMode::Futex,
        }
    }
}

/// The doorbell mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeMode {
    /// `FUTEX_WAIT`/`FUTEX_WAKE` on the header's sleep-flag words: no extra fds, one syscall per
    /// sleep and per wake-up.
    Futex,
    /// Two eventfds (data, space) that the agent passes with the memfd: pollable (epoll/tokio),
    /// two syscalls per sleep (`ppoll` + `read`).
    EventFd,
}

/// How an endpoint waits when it has nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Poll the peer's index for this long before sleeping (adaptive spin-then-block). Zero
    /// (default) sleeps at once; a long spin trades a busy core for microsecond latency.
    pub spin: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            spin: Duration::ZERO,
        }
    }
}

impl WaitOptions {
    /// Spin up to `spin` before sleeping.
    pub fn spin(spin: Duration) -> Self {
        WaitOptions { spin }
    }
}

/// Counters of one endpoint. Fields that do not apply to a side stay zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames written (producer) or read (consumer).
    pub frames: u64,
    /// Payload bytes written or read.
    pub bytes: u64,
    /// Publishes (producer) or non-empty reads (consumer).
    pub batches: u64,
    /// Wake-up syscalls issued for the peer.
    pub wakeups_sent: u64,
    /// Times this side went to sleep.
    pub sleeps: u64,
    /// Wake-ups after which there was still nothing to do (a peer poking the doorbell, or an
    /// eventfd wake-up left over from a race; harmless in small numbers).
    pub empty_wakeups: u64,
    /// `try_stage` calls that found the ring full.
    pub full: u64,
    /// Frames that did not parse (consumer): each discards the rest of the published span.
    pub malformed_frames: u64,
    /// Invalid indices read from the peer.
    pub bad_indices: u64,
}

impl RingStats {
    /// Everything the peer got wrong: the number the agent quarantines on.
    pub fn peer_violations(&self) -> u64 {
        self.malformed_frames + self.bad_indices
    }
}

/// Polls `ready` for up to `spin` (the spin phase of spin-then-block), checking the clock every
/// 64 polls. True when `ready` held. Pure spinning: yielding the CPU here was measured to wreck
/// spin-mode latency on a loaded machine (the yield hands the CPU to other work for a time slice),
/// so a short spin followed by a futex sleep is the intended use.
pub(crate) fn spin_wait(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if spin.is_zero() {
        return false;
    }
    let until = std::time::Instant::now() + spin;
    let mut polls = 0u32;
    loop {
        if ready() {
            return true;
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) && std::time::Instant::now() >= until {
            return false;
        }
        std::hint::spin_loop();
    }
}

pub(crate) fn check_params(p: &Params) -> Result<(), RingError> {
    if !p.capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&p.capacity) {
        return Err(RingError::Config(format!(
            "capacity {} must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}",
            p.capacity
        )));
    }
    if p.max_frame == 0
        || p.max_frame >= layout::WRAP_MARKER as usize
        || frame_size(p.max_frame) > p.capacity / 2
    {
        return Err(RingError::Config(format!(
            "max_frame {} must be at least 1 and frame_size(max_frame) at most half the capacity ({})",
            p.max_frame,
            p.capacity / 2
        )));
    }
    if p.wake_kind != layout::WAKE_FUTEX && p.wake_kind != layout::WAKE_EVENTFD {
        return Err(RingError::Config(format!(
            "unknown wake-up kind {}",
            p.wake_kind
        )));
    }
    Ok(())
}

pub(crate) struct Shared {
    pub(crate) mem: Mem,
    pub(crate) bell: Doorbell,
    pub(crate) capacity: usize,
    pub(crate) max_frame: usize,
    producer_taken: std::sync::atomic::AtomicBool,
    consumer_taken: std::sync::atomic::AtomicBool,
}

/// One mapped ring. Hand out at most one [`Producer`] and one [`Consumer`] per process; the peer
/// process holds the other end.
pub struct Ring {
    shared: sync::Arc<Shared>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.shared.capacity)
            .field("max_frame", &self.shared.max_frame)
            .finish_non_exhaustive()
    }
}

impl Ring {
    fn from_parts(mem: Mem, bell: Doorbell, capacity: usize, max_frame: usize) -> Ring {
        Ring {
            shared: sync::Arc::new(Shared {
                mem,
                bell,
                capacity,
                max_frame,
                producer_taken: Default::default(),
                consumer_taken: Default::default(),
            }),
        }
    }

    /// The agent's side: a new sealed memfd (and eventfds, with [`WakeMode::EventFd`]).
    pub fn create(cfg: RingConfig) -> Result<Ring, RingError> {
        let p = Params {
            capacity: cfg.capacity,
            max_frame: cfg.max_frame,
            wake_kind: match cfg.wake {
                WakeMode::Futex => layout::WAKE_FUTEX,
                WakeMode::EventFd => layout::WAKE_EVENTFD,
            },
        };
        check_params(&p)?;
        let mem = Mem::create(p)?;
        #[cfg(not(loom))]
        let bell = match cfg.wake {
            WakeMode::Futex => Doorbell::Futex,
            WakeMode::EventFd => Doorbell::EventFd {
                data: eventfd()?,
                space: eventfd()?,
            },
        };
        #[cfg(loom)]
        let bell = Doorbell::Futex;
        Ok(Ring::from_parts(mem, bell, cfg.capacity, cfg.max_frame))
    }

    /// Data area size in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Largest frame payload.
    pub fn max_frame(&self) -> usize {
        self.shared.max_frame
    }

    /// Sets the header's probe sampling word: the SDK's probe sites fire for batches whose `seq`
    /// is a multiple of `every` (`0` switches them off). The agent writes it; either side reads it.
    pub fn set_probe_sampling(&self, every: u32) {
        self.shared
            .mem
            .header()
            .probe_enabled
            .0
            .store(every, std::sync::atomic::Ordering::Relaxed);
    }

    /// The probe sampling period (one relaxed load; cheap enough for every batch).
    pub fn probe_sampling(&self) -> u32 {
        self.shared
            .mem
            .header()
            .probe_enabled
            .0
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The producer end; once per `Ring`.
    pub fn producer(&self, opts: WaitOptions) -> Result<Producer, RingError> {
        if self
            .shared
            .producer_taken
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Err(RingError::Taken("producer"));
        }
        Ok(Producer::new(self.shared.clone(), opts))
    }

    /// The consumer end; once per `Ring`.
    pub fn consumer(&self, opts: WaitOptions) -> Result<Consumer, RingError> {
        if self
            .shared
            .consumer_taken
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Err(RingError::Taken("consumer"));
        }
        Ok(Consumer::new(self.shared.clone(), opts))
    }
}

#[cfg(not(loom))]
mod fds {
    use super::*;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    impl Ring {
        /// The plugin's side: maps a ring memfd the agent passed, after checking its seals, size
        /// and header. A ring created with [`WakeMode::EventFd`] needs its two eventfds
        /// (`eventfds = Some((data, space))`).
        pub fn open(
            memfd: OwnedFd,
            eventfds: Option<(OwnedFd, OwnedFd)>,
        ) -> Result<Ring, RingError> {
            let (mem, p) = Mem::open(memfd)?;
            let bell = match (p.wake_kind, eventfds) {
                (layout::WAKE_FUTEX, None) => Doorbell::Futex,
                (layout::WAKE_EVENTFD, Some((data, space))) => Doorbell::EventFd { data, space },
                (layout::WAKE_FUTEX, Some(_)) => {
                    return Err(RingError::BadRing("futex ring opened with eventfds".into()));
                }
                _ => {
                    return Err(RingError::BadRing(
                        "eventfd ring opened without its eventfds".into(),
                    ));
                }
            };
            Ok(Ring::from_parts(mem, bell, p.capacity, p.max_frame))
        }

        /// The memfd, to pass to the peer (dup it without `FD_CLOEXEC` into the child).
        pub fn memfd(&self) -> BorrowedFd<'_> {
            self.shared.mem.fd()
        }

        /// The (data, space) eventfds of a [`WakeMode::EventFd`] ring, to pass to the peer.
        pub fn eventfds(&self) -> Option<(BorrowedFd<'_>, BorrowedFd<'_>)> {
            match &self.shared.bell {
                Doorbell::EventFd { data, space } => Some((data.as_fd(), space.as_fd())),
                Doorbell::Futex => None,
            }
        }
    }
}
#[cfg(not(loom))]
use wake::eventfd;
