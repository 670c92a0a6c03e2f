//! The agent's end of a plugin's control socket (`SOCK_SEQPACKET`), on tokio.
//!
//! Everything received is untrusted: one packet is read into a bounded buffer and decoded
//! strictly; a malformed packet is an error the supervisor counts, never a panic.

use srediag_plugin_sdk::control::{self, AgentMsg, MAX_MESSAGE, PluginMsg};
use std::os::fd::{AsRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// A control message could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The socket failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The plugin sent something that is not a valid message.
    #[error("{0}")]
    Malformed(#[from] control::DecodeError),
}

/// The agent's end of the control socket.
pub struct ControlChannel {
    fd: AsyncFd<OwnedFd>,
}

impl ControlChannel {
    /// Wraps the agent's end (made non-blocking).
    pub fn new(fd: OwnedFd) -> std::io::Result<Self> {
        // SAFETY: fcntl on a valid fd we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open and unchanged for its
        // whole lifetime.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(ControlChannel { fd })
    }

    /// The next message; `Ok(None)` when the plugin closed its end (it exited).
    pub async fn recv(&self) -> Result<Option<PluginMsg>, ChannelError> {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                // SAFETY: `buf` is writable for its length; MSG_TRUNC reports the real size of an
                // oversized packet so it can be refused.
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_TRUNC,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) if n > MAX_MESSAGE => {
                    return Err(control::DecodeError::TooLarge(n).into());
                }
                Ok(Ok(n)) => return Ok(Some(control::decode(&buf[..n])?)),
                Ok(Err(e)) => return Err(e.into()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one message without blocking (control messages are small; a plugin that does not
    /// read its socket fills the buffer and gets an error here, which the supervisor treats as a
    /// hang).
    pub fn send(&self, msg: &AgentMsg) -> std::io::Result<()> {
        let bytes = control::encode(msg);
        // SAFETY: valid fd and buffer; MSG_NOSIGNAL avoids SIGPIPE; MSG_DONTWAIT never blocks.
        let n = unsafe {
            libc::send(
                self.fd.get_ref().as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
