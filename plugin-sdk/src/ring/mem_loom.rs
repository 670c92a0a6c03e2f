//! The loom stand-in for the shared mapping: a heap header of loom atomics and a data area of
//! loom cells, so loom checks both the index/flag protocol and that every data byte the consumer
//! reads was published to it (and vice versa for the bytes the producer overwrites).

use super::error::RingError;
use super::layout::Header;
use loom::cell::UnsafeCell;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub capacity: usize,
    pub max_frame: usize,
    pub wake_kind: u32,
}

pub(crate) const MAX_CAPACITY: usize = 1 << 30;
pub(crate) const MIN_CAPACITY: usize = 16;

pub(crate) struct Mem {
    header: Header,
    data: Box<[UnsafeCell<u8>]>,
}

impl Mem {
    pub(crate) fn create(p: Params) -> Result<Mem, RingError> {
        Ok(Mem {
            header: Header::new_zeroed(),
            data: (0..p.capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    pub(crate) fn copy_out(&self, off: usize, dst: &mut [u8]) {
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: loom tracks this access and fails the model on a racing write.
            *d = self.data[off + i].with(|p| unsafe { *p });
        }
    }

    pub(crate) fn copy_in(&self, off: usize, src: &[u8]) {
        for (i, s) in src.iter().enumerate() {
            // SAFETY: loom tracks this access and fails the model on a racing read or write.
            self.data[off + i].with_mut(|p| unsafe { *p = *s });
        }
    }
}
