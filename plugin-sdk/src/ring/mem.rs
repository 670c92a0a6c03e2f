//! The shared mapping: memfd creation, sealing, mapping, and the only code that touches the
//! data area (raw-pointer copies in and out).
//!
//! Why no `&[u8]` into the data area: a shared reference promises the bytes do not change while
//! it lives, and the compiler uses that (it may re-read a length after checking it, or merge two
//! reads). The peer can change those bytes at any moment, so such a reference would be undefined
//! behaviour and would turn one validated read into two unvalidated ones. The consumer instead
//! copies a span out with one `ptr::copy_nonoverlapping` into private memory and parses only the
//! copy; torn or changing bytes can only produce a garbage copy, which validation rejects.
//! Header fields are atomics, read once into locals.

use super::error::RingError;
use super::layout::{HEADER_SIZE, Header, MAGIC, VERSION};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

/// Largest data area accepted (1 GiB).
pub(crate) const MAX_CAPACITY: usize = 1 << 30;
/// Smallest data area (one page, so the file size stays page aligned).
pub(crate) const MIN_CAPACITY: usize = 4096;

/// Parameters the creator wrote into the header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub capacity: usize,
    pub max_frame: usize,
    pub wake_kind: u32,
}

/// A `MAP_SHARED` mapping of a sealed ring memfd.
pub(crate) struct Mem {
    base: NonNull<u8>,
    map_len: usize,
    capacity: usize,
    fd: OwnedFd,
}

// SAFETY: `Mem` owns the mapping (unmapped only in Drop) and the fd. Header access goes through
// atomics; data-area access goes through `copy_in`/`copy_out` with raw pointers, and the ring
// protocol (one producer, one consumer per process, enforced by `Ring`) keeps the two endpoints
// on disjoint byte ranges between their Release/Acquire index updates.
unsafe impl Send for Mem {}
// SAFETY: see `Send`; every `&self` method is safe to call from several threads.
unsafe impl Sync for Mem {}

impl Mem {
    /// Creates, sizes, seals and maps a new ring memfd and writes its header.
    pub(crate) fn create(p: Params) -> Result<Mem, RingError> {
        // SAFETY: a valid NUL-terminated name and flags; the returned fd is checked.
        let raw = unsafe {
            libc::memfd_create(
                c"srediag-ring".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(RingError::last_os("memfd_create"));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = HEADER_SIZE + p.capacity;
        // SAFETY: plain syscall on our own fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(RingError::last_os("ftruncate ring memfd"));
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on our own fd.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(RingError::last_os("seal ring memfd"));
        }
        let mem = Mem::map(fd, size, p.capacity)?;
        let m = &mem.header().meta.0;
        m.version.store(VERSION, Ordering::Relaxed);
        m.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
        m.capacity.store(p.capacity as u64, Ordering::Relaxed);
        m.max_frame.store(p.max_frame as u32, Ordering::Relaxed);
        m.wake_kind.store(p.wake_kind, Ordering::Relaxed);
        m.magic.store(MAGIC, Ordering::Release);
        Ok(mem)
    }

    /// Maps a ring memfd created by the agent; checks the seals, the size and the header.
    pub(crate) fn open(fd: OwnedFd) -> Result<(Mem, Params), RingError> {
        // SAFETY: zeroed `stat` is a valid out-parameter; fstat on a borrowed fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable; the fd is owned by the caller and open.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(RingError::last_os("fstat ring memfd"));
        }
        let size = st.st_size as u64;
        if size < (HEADER_SIZE + MIN_CAPACITY) as u64 || size > (HEADER_SIZE + MAX_CAPACITY) as u64
        {
            return Err(RingError::BadRing(format!(
                "memfd size {size} out of range"
            )));
        }
        // SAFETY: plain fcntl query.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals < 0 || seals & need != need {
            return Err(RingError::BadRing(
                "memfd is not sealed against resizing".into(),
            ));
        }
        let size = size as usize;
        let capacity = size - HEADER_SIZE;
        let mem = Mem::map(fd, size, capacity)?;
        let m = &mem.header().meta.0;
        let (magic, version, header_size) = (
            m.magic.load(Ordering::Acquire),
            m.version.load(Ordering::Relaxed),
            m.header_size.load(Ordering::Relaxed),
        );
        let (cap, max_frame, wake_kind) = (
            m.capacity.load(Ordering::Relaxed),
            m.max_frame.load(Ordering::Relaxed),
            m.wake_kind.load(Ordering::Relaxed),
        );
        if magic != MAGIC {
            return Err(RingError::BadRing(format!("bad magic {magic:#x}")));
        }
        if version != VERSION {
            return Err(RingError::BadRing(format!(
                "layout version {version}, this SDK speaks {VERSION}"
            )));
        }
        if header_size as usize != HEADER_SIZE
            || cap != capacity as u64
            || !capacity.is_power_of_two()
        {
            return Err(RingError::BadRing(format!(
                "header says capacity {cap}, header {header_size}; memfd holds {capacity} + {HEADER_SIZE}"
            )));
        }
        let p = Params {
            capacity,
            max_frame: max_frame as usize,
            wake_kind,
        };
        super::check_params(&p).map_err(|e| RingError::BadRing(e.to_string()))?;
        Ok((mem, p))
    }

    fn map(fd: OwnedFd, size: usize, capacity: usize) -> Result<Mem, RingError> {
        // SAFETY: a fresh shared mapping of `size` bytes of a file of exactly that size (sealed
        // against shrinking, so no access within it can raise SIGBUS); the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(RingError::last_os("mmap ring memfd"));
        }
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| RingError::BadRing("mmap returned null".into()))?;
        Ok(Mem {
            base,
            map_len: size,
            capacity,
            fd,
        })
    }

    /// The header (atomics only).
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is page aligned, at least HEADER_SIZE >= size_of::<Header>() bytes,
        // lives as long as `self`, and holds only atomics, for which every bit pattern is valid
        // and concurrent writes by the peer are allowed through the shared reference.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// Copies `dst.len()` bytes from data-area offset `off` into private memory.
    /// Panics only on a caller bug (range outside the data area), never on peer data.
    pub(crate) fn copy_out(&self, off: usize, dst: &mut [u8]) {
        assert!(
            off <= self.capacity && dst.len() <= self.capacity - off,
            "ring copy_out out of range"
        );
        // SAFETY: the source range lies inside the data area of the live mapping (checked above);
        // `dst` is private memory that cannot overlap the mapping. No reference to shared memory
        // is created: the bytes are read once, and only the private copy is interpreted.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(HEADER_SIZE + off),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copies `src` into the data area at offset `off`.
    pub(crate) fn copy_in(&self, off: usize, src: &[u8]) {
        assert!(
            off <= self.capacity && src.len() <= self.capacity - off,
            "ring copy_in out of range"
        );
        // SAFETY: the destination range lies inside the data area of the live mapping (checked
        // above); `src` is private memory. The producer only writes bytes the consumer released.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.base.as_ptr().add(HEADER_SIZE + off),
                src.len(),
            )
        }
    }

    /// The memfd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `map`; nothing borrows it any more
        // (every borrow is tied to `&self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
    }
}
