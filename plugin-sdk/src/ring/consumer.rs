//! The consumer end: the side that reads what a possibly hostile peer wrote.
//!
//! Per call: read the peer's `tail` once (Acquire) and check it (`tail - head <= capacity`,
//! aligned); copy the published span out of shared memory into the private [`Frames`] buffer;
//! parse frames from the copy only, checking every length against the maximum frame and the
//! copied span. A bad frame discards the rest of the span (the framing cannot be trusted after it),
//! is counted and returned as an error; frames before it are delivered first.

use super::error::RingError;
use super::frames::{Frames, Slot, le32};
use super::layout::{FRAME_ALIGN, FRAME_HEADER, WRAP_MARKER, frame_size};
use super::sync::{Arc, fence};
use super::wake::{Bell, Waited};
use super::{RingStats, Shared, WaitOptions};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Reads frames from a ring into private memory.
pub struct Consumer {
    sh: Arc<Shared>,
    cap: u64,
    mask: u64,
    /// Private head: never read back from shared memory.
    head: u64,
    /// Last head stored into shared memory.
    published: u64,
    /// An error found after frames that were delivered; returned by the next call.
    pending: Option<RingError>,
    opts: WaitOptions,
    stats: RingStats,
    closed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn malformed(position: u64, reason: &'static str) -> RingError {
    RingError::MalformedFrame { position, reason }
}

impl Consumer {
    pub(crate) fn new(sh: Arc<Shared>, opts: WaitOptions) -> Consumer {
        let cap = sh.capacity as u64;
        Consumer {
            sh,
            cap,
            mask: cap - 1,
            head: 0,
            published: 0,
            pending: None,
            opts,
            stats: RingStats::default(),
            closed: false,
        }
    }

    /// Counters, including the peer violations the agent quarantines on.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Reads the producer's tail once and checks it.
    fn load_tail(&mut self) -> Result<u64, RingError> {
        let t = self.sh.mem.header().prod.0.tail.load(Ordering::Acquire);
        if t.wrapping_sub(self.head) > self.cap || !t.is_multiple_of(FRAME_ALIGN as u64) {
            self.stats.bad_indices += 1;
            return Err(RingError::BadIndex {
                which: "tail",
                value: t,
                own: self.head,
                capacity: self.cap,
            });
        }
        Ok(t)
    }

    fn producer_closed(&self) -> bool {
        self.sh.mem.header().prod.0.closed.load(Ordering::Acquire) != 0
    }

    /// Reads every published frame that fits in `out` (cleared first). `Ok(0)`: nothing
    /// published. `Err(Closed)`: the producer closed and everything was read.
    pub fn try_recv(&mut self, out: &mut Frames) -> Result<usize, RingError> {
        out.clear();
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        out.ensure(frame_size(self.sh.max_frame));
        let mut tail = self.load_tail()?;
        if tail == self.head {
            if !self.producer_closed() {
                return Ok(0);
            }
            // Frames published before the close are visible after the Acquire of `closed`.
            tail = self.load_tail()?;
            if tail == self.head {
                return Err(RingError::Closed);
            }
        }
        let r = self.drain(tail, out);
        let n = out.slots.len();
        if n > 0 {
            self.stats.frames += n as u64;
            self.stats.batches += 1;
        }
        let r = match r {
            Ok(()) => Ok(n),
            Err(e) => {
                self.stats.malformed_frames += 1;
                self.head = tail; // the framing after a bad frame is meaningless: skip the span
                if n > 0 {
                    self.pending = Some(e);
                    Ok(n)
                } else {
                    Err(e)
                }
            }
        };
        self.publish_head();
        r
    }

    /// Copies and parses `[head, tail)` into `out` until it is full.
    fn drain(&mut self, tail: u64, out: &mut Frames) -> Result<(), RingError> {
        let cap = self.cap as usize;
        let max_frame = self.sh.max_frame;
        while self.head != tail {
            let pos = (self.head & self.mask) as usize;
            let to_end = cap - pos;
            let avail = (tail - self.head) as usize; // <= cap, checked by load_tail
            let seg = avail.min(to_end); // contiguous published bytes
            let base = out.used;
            let room = out.buf.len() - base;
            if room < FRAME_HEADER {
                return Ok(());
            }
            let n = seg.min(room);
            self.sh.mem.copy_out(pos, &mut out.buf[base..base + n]);
            let copy = &out.buf[base..base + n];
            let mut off = 0usize;
            let mut wrapped = false;
            while off < n {
                let at = self.head;
                if n - off < FRAME_HEADER {
                    if n == seg {
                        return Err(malformed(at, "truncated frame header"));
                    }
                    break; // out of buffer: the rest comes with the next call
                }
                let (Some(len), Some(tag)) = (le32(copy, off), le32(copy, off + 4)) else {
                    return Err(malformed(at, "truncated frame header"));
                };
                if len == WRAP_MARKER {
                    // The producer skipped to the start: only valid if published data continues there.
                    if avail <= to_end {
                        return Err(malformed(at, "wrap marker without data after the ring end"));
                    }
                    self.head += (to_end - off) as u64;
                    wrapped = true;
                    break;
                }
                let len = len as usize;
                if len > max_frame {
                    return Err(malformed(at, "frame length exceeds the maximum frame size"));
                }
                let total = frame_size(len);
                if total > seg - off {
                    return Err(malformed(
                        at,
                        "frame extends past the published tail or the ring end",
                    ));
                }
                if total > n - off {
                    break; // out of buffer
                }
                out.slots.push(Slot {
                    tag,
                    start: base + off + FRAME_HEADER,
                    len,
                });
                self.stats.bytes += len as u64;
                off += total;
                self.head += total as u64;
            }
            out.used = base + off;
            if !wrapped && off < seg {
                return Ok(()); // buffer full
            }
        }
        Ok(())
    }

    fn publish_head(&mut self) {
        if self.head == self.published {
            return;
        }
        let h = self.sh.mem.header();
        h.cons.0.head.store(self.head, Ordering::Release);
        self.published = self.head;
        // Pairs with the producer's fence in `wait_space`.
        fence(Ordering::SeqCst);
        let w = &h.space_waiter.0;
        if w.load(Ordering::Relaxed) != 0 && w.swap(0, Ordering::AcqRel) != 0 {
            self.sh.bell.wake(Bell::Space, w);
            self.stats.wakeups_sent += 1;
        }
    }

    /// Like [`try_recv`](Self::try_recv), waiting up to `timeout` for the first frame (spinning
    /// first if configured). `Ok(0)` when the time ran out.
    pub fn recv_timeout(
        &mut self,
        out: &mut Frames,
        timeout: Duration,
    ) -> Result<usize, RingError> {
        let n = self.try_recv(out)?;
        if n > 0 || timeout.is_zero() {
            return Ok(n);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if !self.wait_data(deadline, timeout) {
                return self.try_recv(out);
            }
            let n = self.try_recv(out)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Waits until the tail moved, the producer closed, or the deadline (returns false then).
    fn wait_data(&mut self, deadline: Instant, timeout: Duration) -> bool {
        let h = self.sh.mem.header();
        let ready =
            |c: &Consumer| h.prod.0.tail.load(Ordering::Acquire) != c.head || c.producer_closed();
        if super::spin_wait(self.opts.spin.min(timeout), || ready(self)) {
            return true;
        }
        let w = &h.data_waiter.0;
        loop {
            if ready(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            w.store(1, Ordering::Relaxed);
            // Pairs with the producer's fence in `publish`.
            fence(Ordering::SeqCst);
            if ready(self) {
                w.store(0, Ordering::Relaxed);
                return true;
            }
            self.stats.sleeps += 1;
            let r = self.sh.bell.wait(Bell::Data, w, 1, deadline - now);
            w.store(0, Ordering::Relaxed);
            if r == Waited::Woken {
                if ready(self) {
                    return true;
                }
                self.stats.empty_wakeups += 1;
            }
        }
    }

    /// Tells the producer nothing more will be read. Also done on drop.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let h = self.sh.mem.header();
        h.cons.0.closed.store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        let w = &h.space_waiter.0;
        if w.load(Ordering::Relaxed) != 0 && w.swap(0, Ordering::AcqRel) != 0 {
            self.sh.bell.wake(Bell::Space, w);
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.close();
    }
}
