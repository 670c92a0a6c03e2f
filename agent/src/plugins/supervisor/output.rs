//! The plugin's stdout and stderr, copied into the agent's log.
//!
//! What a plugin writes costs the agent CPU (reading, scanning, formatting) outside the plugin's
//! `cpu_max`, so each stream is read at most [`BYTES_PER_SEC`] a second: past that the agent stops
//! reading until the second is over, the pipe fills and the plugin's own `write` blocks — the cost
//! goes back to the plugin, nothing is dropped in the pipe. Lines go through the plugin's log
//! budget (shared with everything else the plugin can make the agent log), are cut at
//! [`MAX_LOG_LINE`](crate::plugins::ledger::MAX_LOG_LINE) bytes and escaped; a plugin writing
//! without newlines cannot grow the agent's memory (the line buffer stops growing at the cut).

use crate::plugins::ledger::{Ledger, LogSource, MAX_LOG_LINE};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Most bytes a second the agent reads from one of a plugin's output streams.
pub const BYTES_PER_SEC: usize = 256 * 1024;

/// Reads one output stream until the plugin closes it.
pub(super) async fn forward_output(
    ledger: Arc<Ledger>,
    source: LogSource,
    out: impl std::os::fd::IntoRawFd,
) {
    // SAFETY: we own the pipe fd taken from the child.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(out.into_raw_fd()) };
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_file(file) else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut window = Instant::now();
    let mut read_in_window = 0usize;
    loop {
        if read_in_window >= BYTES_PER_SEC {
            let rest = Duration::from_secs(1).saturating_sub(window.elapsed());
            tokio::time::sleep(rest).await;
        }
        if window.elapsed() >= Duration::from_secs(1) {
            window = Instant::now();
            read_in_window = 0;
        }
        let want = buf.len().min(BYTES_PER_SEC - read_in_window).max(1);
        let k = match pipe.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        read_in_window += k;
        let mut chunk = &buf[..k];
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            push_cut(&mut line, &chunk[..nl]);
            ledger.log().info(source, &line);
            line.clear();
            chunk = &chunk[nl + 1..];
        }
        push_cut(&mut line, chunk);
    }
    if !line.is_empty() {
        ledger.log().info(source, &line);
    }
}

/// Appends to `line` up to the line length cut.
fn push_cut(line: &mut Vec<u8>, part: &[u8]) {
    let room = MAX_LOG_LINE.saturating_sub(line.len());
    line.extend_from_slice(&part[..part.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stop_growing_at_the_cut() {
        let mut line = Vec::new();
        for _ in 0..100 {
            push_cut(&mut line, &[b'x'; 1000]);
        }
        assert_eq!(line.len(), MAX_LOG_LINE);
    }
}
