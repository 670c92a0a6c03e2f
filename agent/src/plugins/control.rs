//! The agent's end of a plugin's control socket (`SOCK_SEQPACKET`), on tokio.
//!
//! Everything received is untrusted: one packet is read into a bounded buffer and decoded
//! strictly; a malformed packet is an error the supervisor counts, never a panic.

use rustix::net::{RecvFlags, SendFlags};
use srediag_plugin_sdk::control::{self, AgentMsg, MAX_MESSAGE, PluginMsg};
use std::os::fd::OwnedFd;
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
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(ControlChannel {
            fd: crate::sys::fd::async_fd(fd)?,
        })
    }

    /// The next message; `Ok(None)` when the plugin closed its end (it exited).
    pub async fn recv(&self) -> Result<Option<PluginMsg>, ChannelError> {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                // MSG_TRUNC reports the real size of an oversized packet so it can be refused.
                rustix::net::recv(fd.get_ref(), &mut buf[..], RecvFlags::TRUNC)
                    .map(|(_, full)| full)
                    .map_err(std::io::Error::from)
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
        // MSG_NOSIGNAL avoids SIGPIPE; MSG_DONTWAIT never blocks.
        rustix::net::send(
            self.fd.get_ref(),
            &bytes,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )?;
        Ok(())
    }
}
