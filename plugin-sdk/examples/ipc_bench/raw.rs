//! The limit: a raw packed SPSC ring of fixed 64-byte records in a memfd, no framing, no
//! validation, one Release store per record (cached peer index); waits spin and yield the CPU
//! every 128 polls (so a peer descheduled on a shared vCPU gets to run).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

pub const RECORD: usize = 64;
const SLOTS: u64 = 16384; // 1 MiB of records
const DATA: usize = 128;
const SIZE: usize = DATA + SLOTS as usize * RECORD;

pub struct Raw {
    base: *mut u8,
}

pub fn create() -> OwnedFd {
    // SAFETY: valid name; result checked and owned once.
    let fd = unsafe { libc::memfd_create(c"raw-ring".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sizing our own memfd.
    let r = unsafe { libc::ftruncate(fd.as_raw_fd(), SIZE as libc::off_t) };
    assert_eq!(r, 0);
    fd
}

impl Raw {
    pub fn map(fd: &OwnedFd) -> Raw {
        // SAFETY: maps the whole memfd shared; never unmapped (the process exits).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Raw { base: p.cast() }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: offset 0 of a live, page-aligned mapping; only ever accessed atomically.
        unsafe { &*self.base.cast::<AtomicU64>() }
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: offset 64 of the live mapping; only ever accessed atomically.
        unsafe { &*self.base.add(64).cast::<AtomicU64>() }
    }

    pub fn produce(&self, n: u64, record: &[u8; RECORD]) {
        let (mut tail, mut head) = (0u64, 0u64);
        for _ in 0..n {
            let mut polls = 0u32;
            while tail - head == SLOTS {
                head = self.head().load(Ordering::Acquire);
                backoff(&mut polls);
            }
            // SAFETY: slot `tail % SLOTS` lies inside the mapping and was released by the consumer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    record.as_ptr(),
                    self.base.add(DATA + (tail % SLOTS) as usize * RECORD),
                    RECORD,
                )
            };
            tail += 1;
            self.tail().store(tail, Ordering::Release);
        }
    }

    pub fn consume(&self, n: u64, mut each: impl FnMut(&[u8; RECORD])) {
        let mut head = 0u64;
        let mut rec = [0u8; RECORD];
        let mut polls = 0u32;
        while head < n {
            let tail = self.tail().load(Ordering::Acquire);
            if tail == head {
                backoff(&mut polls);
                continue;
            }
            polls = 0;
            while head < tail {
                // SAFETY: slot inside the mapping, published by the producer's Release store.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.base.add(DATA + (head % SLOTS) as usize * RECORD),
                        rec.as_mut_ptr(),
                        RECORD,
                    )
                };
                each(&rec);
                head += 1;
            }
            self.head().store(head, Ordering::Release);
        }
    }
}

fn backoff(polls: &mut u32) {
    *polls += 1;
    if (*polls).is_multiple_of(128) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}
