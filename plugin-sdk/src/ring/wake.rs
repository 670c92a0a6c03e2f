//! Doorbells: how a side that found nothing to do sleeps, and how its peer wakes it.
//!
//! The sleep flag (`data_waiter`/`space_waiter` in the header) decides *whether* a wake-up
//! syscall is needed; this file only issues it. Futex: the flag word itself is the futex word
//! (`FUTEX_WAIT` returns at once if the peer already cleared it, so no wake-up is lost). Eventfd:
//! a counter that remembers a wake-up issued before the sleeper reached `ppoll`. Every wait is
//! bounded by a timeout.

use super::sync::AtomicU32;
use std::time::Duration;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Woken, interrupted, or the word no longer held the expected value.
    Woken,
    /// The timeout passed.
    #[cfg(not(loom))]
    TimedOut,
}

/// Which direction a doorbell rings: data for the consumer, space for the producer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bell {
    Data,
    Space,
}

#[cfg(not(loom))]
pub(crate) use real::{Doorbell, eventfd};

#[cfg(not(loom))]
mod real {
    use super::{AtomicU32, Bell, Duration, Waited};
    use crate::ring::RingError;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// A non-blocking, close-on-exec eventfd (one doorbell direction).
    pub(crate) fn eventfd() -> Result<OwnedFd, RingError> {
        // SAFETY: plain syscall; the result is checked and owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(RingError::last_os("eventfd"));
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    /// Futex on the header word, or a pair of eventfds passed to the peer.
    pub(crate) enum Doorbell {
        Futex,
        EventFd { data: OwnedFd, space: OwnedFd },
    }

    fn timespec(d: Duration) -> libc::timespec {
        libc::timespec {
            tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        }
    }

    impl Doorbell {
        /// Sleeps while `word` holds `expected` (futex) or until the eventfd is signalled, at most
        /// `timeout`.
        pub(crate) fn wait(
            &self,
            bell: Bell,
            word: &AtomicU32,
            expected: u32,
            timeout: Duration,
        ) -> Waited {
            let ts = timespec(timeout);
            match self {
                Doorbell::Futex => {
                    // SAFETY: `word` is a live, 4-byte aligned u32 in a MAP_SHARED mapping (so no
                    // FUTEX_PRIVATE_FLAG: the key is the memfd page, shared with the peer); `ts`
                    // outlives the call; the unused arguments are null/zero as FUTEX_WAIT requires.
                    let r = unsafe {
                        libc::syscall(
                            libc::SYS_futex,
                            word.as_ptr(),
                            libc::FUTEX_WAIT,
                            expected,
                            &ts as *const libc::timespec,
                            std::ptr::null::<u32>(),
                            0u32,
                        )
                    };
                    if r != 0
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT)
                    {
                        Waited::TimedOut
                    } else {
                        Waited::Woken
                    }
                }
                Doorbell::EventFd { data, space } => {
                    let fd = match bell {
                        Bell::Data => data.as_raw_fd(),
                        Bell::Space => space.as_raw_fd(),
                    };
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd and a timespec, both live for the call.
                    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
                    if r == 0 {
                        return Waited::TimedOut;
                    }
                    if r > 0 {
                        let mut v = 0u64;
                        // SAFETY: reads 8 bytes into `v` from a non-blocking eventfd (drains it).
                        unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
                    }
                    Waited::Woken
                }
            }
        }

        /// Wakes the peer sleeping on `word` / the eventfd.
        pub(crate) fn wake(&self, bell: Bell, word: &AtomicU32) {
            match self {
                Doorbell::Futex => {
                    // SAFETY: FUTEX_WAKE of at most one waiter on a live aligned u32 in shared memory.
                    unsafe {
                        libc::syscall(
                            libc::SYS_futex,
                            word.as_ptr(),
                            libc::FUTEX_WAKE,
                            1i32,
                            std::ptr::null::<libc::timespec>(),
                            std::ptr::null::<u32>(),
                            0u32,
                        )
                    };
                }
                Doorbell::EventFd { data, space } => {
                    let fd = match bell {
                        Bell::Data => data.as_raw_fd(),
                        Bell::Space => space.as_raw_fd(),
                    };
                    let one = 1u64;
                    // SAFETY: writes 8 bytes from `one` to an eventfd; a full counter (EAGAIN)
                    // means a wake-up is already pending, which is all we need.
                    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
                }
            }
        }
    }
}

#[cfg(loom)]
pub(crate) use model::Doorbell;

#[cfg(loom)]
mod model {
    use super::{AtomicU32, Bell, Duration, Waited};
    use std::sync::atomic::Ordering;

    /// Under loom a futex wait blocks (no timeout) until the word changes: the protocol always
    /// clears the word before waking, so a lost wake-up shows up as a model that never ends.
    pub(crate) enum Doorbell {
        Futex,
    }

    impl Doorbell {
        pub(crate) fn wait(
            &self,
            _bell: Bell,
            word: &AtomicU32,
            expected: u32,
            _timeout: Duration,
        ) -> Waited {
            while word.load(Ordering::SeqCst) == expected {
                loom::thread::yield_now();
            }
            Waited::Woken
        }

        pub(crate) fn wake(&self, _bell: Bell, _word: &AtomicU32) {}
    }
}
