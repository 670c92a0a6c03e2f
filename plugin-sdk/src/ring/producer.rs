//! The producer end: stage frames, publish them in batches, wait (bounded) for space.

use super::error::RingError;
use super::layout::{FRAME_ALIGN, FRAME_HEADER, WRAP_MARKER, frame_size};
use super::sync::{Arc, fence};
use super::wake::{Bell, Waited};
use super::{RingStats, Shared, WaitOptions};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Writes frames into a ring. The authoritative `tail` is private; the shared one is only ever
/// written. The consumer's `head` is read from shared memory and checked before use.
pub struct Producer {
    sh: Arc<Shared>,
    cap: u64,
    mask: u64,
    /// Private tail, including staged (unpublished) frames.
    tail: u64,
    /// Last tail stored into shared memory.
    published: u64,
    /// Last valid head read from the consumer.
    head: u64,
    opts: WaitOptions,
    stats: RingStats,
    closed: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .field("published", &self.published)
            .field("head", &self.head)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Producer {
    pub(crate) fn new(sh: Arc<Shared>, opts: WaitOptions) -> Producer {
        let cap = sh.capacity as u64;
        // A ring is used by one producer for its whole life, starting at 0; nothing is read back.
        let tail = 0;
        Producer {
            sh,
            cap,
            mask: cap - 1,
            tail,
            published: tail,
            head: tail,
            opts,
            stats: RingStats::default(),
            closed: false,
        }
    }

    /// Counters.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Largest payload.
    pub fn max_frame(&self) -> usize {
        self.sh.max_frame
    }

    /// Frames staged since the last publish are waiting.
    pub fn has_staged(&self) -> bool {
        self.tail != self.published
    }

    /// Reads and checks the consumer's head: it may only move forward, up to what we published.
    fn refresh_head(&mut self) -> Result<(), RingError> {
        let h = self.sh.mem.header().cons.0.head.load(Ordering::Acquire);
        let moved = h.wrapping_sub(self.head);
        if moved > self.published.wrapping_sub(self.head) || !h.is_multiple_of(FRAME_ALIGN as u64) {
            self.stats.bad_indices += 1;
            return Err(RingError::BadIndex {
                which: "head",
                value: h,
                own: self.published,
                capacity: self.cap,
            });
        }
        self.head = h;
        Ok(())
    }

    fn consumer_closed(&self) -> bool {
        self.sh.mem.header().cons.0.closed.load(Ordering::Acquire) != 0
    }

    /// Copies one frame into the ring without publishing it. `Full` leaves earlier staged frames
    /// staged: publish them, then wait or drop.
    pub fn try_stage(&mut self, tag: u32, payload: &[u8]) -> Result<(), RingError> {
        let len = payload.len();
        if len > self.sh.max_frame {
            return Err(RingError::FrameTooLarge {
                len,
                max: self.sh.max_frame,
            });
        }
        let total = frame_size(len) as u64;
        let pos = self.tail & self.mask;
        let to_end = self.cap - pos;
        let need = if total <= to_end {
            total
        } else {
            to_end + total
        };
        if need > self.cap - (self.tail - self.head) {
            self.refresh_head()?;
            if need > self.cap - (self.tail - self.head) {
                self.stats.full += 1;
                return Err(if self.consumer_closed() {
                    RingError::Closed
                } else {
                    RingError::Full
                });
            }
        }
        let mem = &self.sh.mem;
        let mut pos = pos as usize;
        if total > to_end {
            let mut marker = [0u8; FRAME_HEADER];
            marker[..4].copy_from_slice(&WRAP_MARKER.to_le_bytes());
            mem.copy_in(pos, &marker);
            self.tail += to_end;
            pos = 0;
        }
        let mut hdr = [0u8; FRAME_HEADER];
        hdr[..4].copy_from_slice(&(len as u32).to_le_bytes());
        hdr[4..].copy_from_slice(&tag.to_le_bytes());
        mem.copy_in(pos, &hdr);
        mem.copy_in(pos + FRAME_HEADER, payload);
        let pad = total as usize - FRAME_HEADER - len;
        if pad > 0 {
            mem.copy_in(pos + FRAME_HEADER + len, &[0u8; FRAME_ALIGN][..pad]);
        }
        self.tail += total;
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        Ok(())
    }

    /// Makes every staged frame visible to the consumer (one Release store) and wakes it if it
    /// declared it is asleep. Cheap when nothing is staged.
    pub fn publish(&mut self) {
        if self.tail == self.published {
            return;
        }
        let h = self.sh.mem.header();
        h.prod.0.tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
        self.stats.batches += 1;
        // Pairs with the consumer's fence between setting `data_waiter` and re-reading `tail`:
        // either it sees our tail or we see its flag.
        fence(Ordering::SeqCst);
        self.wake_consumer();
    }

    fn wake_consumer(&mut self) {
        let w = &self.sh.mem.header().data_waiter.0;
        if w.load(Ordering::Relaxed) != 0 && w.swap(0, Ordering::AcqRel) != 0 {
            self.sh.bell.wake(Bell::Data, w);
            self.stats.wakeups_sent += 1;
        }
    }

    /// Stages and publishes one frame, or returns `Full` at once.
    pub fn try_push(&mut self, tag: u32, payload: &[u8]) -> Result<(), RingError> {
        let r = self.try_stage(tag, payload);
        self.publish();
        r
    }

    /// Stages and publishes one frame, waiting up to `timeout` for space (spinning first if
    /// configured). Staged frames are published before any wait.
    pub fn push_timeout(
        &mut self,
        tag: u32,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), RingError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_stage(tag, payload) {
                Ok(()) => {
                    self.publish();
                    return Ok(());
                }
                Err(RingError::Full) => {}
                Err(e) => {
                    self.publish();
                    return Err(e);
                }
            }
            self.publish();
            self.wait_space(deadline, timeout)?;
        }
    }

    /// Waits until the consumer moved its head, the consumer closed, or the deadline.
    fn wait_space(&mut self, deadline: Instant, timeout: Duration) -> Result<(), RingError> {
        let h = self.sh.mem.header();
        let moved = |p: &Producer| h.cons.0.head.load(Ordering::Acquire) != p.head;
        if super::spin_wait(self.opts.spin.min(timeout), || moved(self)) {
            return Ok(());
        }
        let w = &h.space_waiter.0;
        loop {
            if moved(self) {
                return Ok(());
            }
            if self.consumer_closed() {
                return Err(RingError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RingError::TimedOut(timeout));
            }
            w.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if moved(self) || self.consumer_closed() {
                w.store(0, Ordering::Relaxed);
                continue;
            }
            self.stats.sleeps += 1;
            let r = self.sh.bell.wait(Bell::Space, w, 1, deadline - now);
            w.store(0, Ordering::Relaxed);
            if r == Waited::Woken && !moved(self) && !self.consumer_closed() {
                self.stats.empty_wakeups += 1;
            }
        }
    }

    /// Publishes what is staged and tells the consumer no more frames come. Also done on drop.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.publish();
        self.closed = true;
        self.sh
            .mem
            .header()
            .prod
            .0
            .closed
            .store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        self.wake_consumer();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
    }
}
