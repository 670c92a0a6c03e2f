//! File descriptors on the tokio reactor.

use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// Registers `fd` with the current tokio reactor (readable and writable interest). Safe because
/// an [`OwnedFd`] moved into the `AsyncFd` stays open and names the same open file description
/// for the `AsyncFd`'s whole life, which is what tokio's `AsyncFd::register` asks of its
/// caller. Must run inside a tokio runtime.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd moves into the AsyncFd, which owns it, keeps it open and never
    // replaces it until it is dropped or `into_inner` hands it back.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}
