//! Memory-management calls that take raw pointers.

/// Drains every CPU's LRU page batch (`lru_add_drain_all` in the kernel) by locking and unlocking
/// one byte of this thread's stack. Sealing a memfd with `F_SEAL_WRITE` fails with `EBUSY` while
/// a page just written still sits in another CPU's batch (the writer migrated); after this the
/// seal can be tried again. Best effort: a failing `mlock` (say, `RLIMIT_MEMLOCK` 0) drains
/// nothing and is not an error.
pub fn drain_lru_batches() {
    let page = [0u8; 1];
    // SAFETY: locking and unlocking the page of a live stack variable; no memory is changed,
    // only the kernel's per-CPU LRU batches are drained.
    unsafe {
        if libc::mlock(page.as_ptr().cast(), 1) == 0 {
            libc::munlock(page.as_ptr().cast(), 1);
        }
    }
}
