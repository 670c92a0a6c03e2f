//! Backpressure with `policy: drop`: the file exporter writes into a FIFO that nobody reads, so
//! its writes block; its queue (capacity 2 batches) fills, and everything after that is dropped
//! and counted. Once the stall is established the test drains the FIFO and checks the books
//! balance exactly: sent = delivered (records read from the FIFO) and dropped = N - delivered.
//!
//! `drop_policy_accounts_for_every_record` — stall → drain → balance → SIGTERM. The dropped
//! counter can only be read while the agent is up, and it is final only once every accepted record
//! is accounted for (delivered + dropped = N): from then on nothing is in flight, so nothing can
//! still be dropped and nothing more can be delivered. After SIGTERM the test reads the FIFO to
//! EOF and checks that indeed nothing more came.
//!
//! `sigterm_while_stalled_flushes_the_queue` — stall → read the dropped counter D → SIGTERM while
//! the exporter is still blocked → read the FIFO to EOF. D is final at the stall: with no
//! processor, a receiver's 200 means each batch was already pushed into the exporter queue or
//! dropped there (ARCHITECTURE.md), and nothing more is sent. Graceful shutdown flushes what was
//! accepted, so the FIFO must yield exactly N - D records and the agent must exit 0.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use srediag_tests::*;

const REQUESTS: u64 = 60;
const PER_REQUEST: u64 = 50;
/// Body filler per record: one request is ~20 KiB of JSON, far above the 4 KiB pipe.
const PAD: usize = 200;
const WAIT: Duration = Duration::from_secs(30);

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Drains `fifo` until EOF, counting the log records of every complete line into `delivered`.
/// Returns the total records, or an error (a bad line, a partial last line, a read error).
fn drain(mut fifo: std::fs::File, delivered: Arc<AtomicU64>) -> Result<u64, String> {
    let fd = fifo.as_raw_fd();
    // SAFETY: fcntl on an fd owned by `fifo`, which is alive for the whole call.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) < 0 {
            return Err(format!("fcntl: {}", std::io::Error::last_os_error()));
        }
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match fifo.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read fifo: {e}")),
        }
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| {
                format!(
                    "fifo line is not JSON ({e}): {}",
                    String::from_utf8_lossy(&line[..line.len().min(300)])
                )
            })?;
            let n = count_log_records(&v) as u64;
            total += n;
            delivered.fetch_add(n, Ordering::SeqCst);
        }
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes of a partial line at EOF", buf.len()));
    }
    Ok(total)
}

/// An agent whose file exporter (queue capacity 2, policy drop) is stalled on a FIFO nobody
/// reads yet, after N records were sent and acknowledged.
struct Stalled {
    agent: Agent,
    fifo: std::fs::File,
    total: u64,
    _dir: TempDir,
}

const FILE: [(&str, &str); 1] = [("component", "file")];

fn stalled() -> Stalled {
    let dir = TempDir::new().expect("tempdir");
    let fifo_path = dir.path().join("out.fifo");
    mkfifo(&fifo_path);
    // Open the read end first (non-blocking, or open would wait for a writer), so the agent's
    // open for writing succeeds; then shrink the pipe to one page so the stall comes early.
    let fifo = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo_path)
        .expect("open fifo for reading");
    // SAFETY: fcntl on an fd owned by `fifo`.
    let rc = unsafe { libc::fcntl(fifo.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(rc >= 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());

    let (otlp, tel) = (free_port(), free_port());
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  file:
    path: {fifo}
    queue: {{ capacity: 2, policy: drop }}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{tel}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
"#,
        fifo = fifo_path.display()
    );
    let agent = Agent::start(dir.path(), &config, tel);
    let client = http();
    let url = format!("http://127.0.0.1:{otlp}/v1/logs");
    let run = run_id();
    for r in 0..REQUESTS {
        let req = logs_request(&run, "bp", r * PER_REQUEST..(r + 1) * PER_REQUEST, PAD);
        assert_eq!(
            post_protobuf(&client, &url, &req),
            200,
            "request {r}: policy drop must not refuse"
        );
    }
    let total = REQUESTS * PER_REQUEST;
    let logs = [("receiver", "otlp"), ("signal", "logs")];
    assert_eq!(
        agent.counter("srediag_receiver_accepted_items_total", &logs),
        total as f64
    );

    // The stall: the exporter is blocked on the full pipe, its queue is at capacity, drops began.
    let capacity = agent
        .metric("srediag_queue_capacity", &FILE)
        .expect("srediag_queue_capacity{component=file}");
    assert_eq!(capacity, 2.0, "queue capacity of the file exporter");
    poll_until(
        WAIT,
        "a full file exporter queue and drops (the stall)",
        || {
            let size = agent.metric("srediag_queue_size", &FILE)?;
            let dropped = agent.counter("srediag_queue_dropped_items_total", &FILE);
            (size == capacity && dropped > 0.0).then_some(())
        },
    );
    Stalled {
        agent,
        fifo,
        total,
        _dir: dir,
    }
}

/// Starts draining the FIFO on a thread; the receiver yields its final result at EOF.
fn start_drain(fifo: std::fs::File) -> (Arc<AtomicU64>, mpsc::Receiver<Result<u64, String>>) {
    let delivered = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let d = Arc::clone(&delivered);
    std::thread::spawn(move || {
        let _ = tx.send(drain(fifo, d));
    });
    (delivered, rx)
}

#[test]
fn drop_policy_accounts_for_every_record() {
    // `_dir` first: bindings drop in reverse, so the agent dies before its temp dir goes.
    let Stalled {
        _dir,
        mut agent,
        fifo,
        total,
    } = stalled();
    let (delivered, rx) = start_drain(fifo);
    // Wait until every accepted record is either delivered or dropped.
    let dropped = poll_until(WAIT, "delivered + dropped == accepted, queue empty", || {
        let samples = parse_prometheus(&agent.metrics_text());
        let dropped =
            metric_sum(&samples, "srediag_queue_dropped_items_total", &FILE).unwrap_or(0.0) as u64;
        let sent = metric_sum(
            &samples,
            "srediag_exporter_sent_items_total",
            &[("exporter", "file"), ("signal", "logs")],
        )
        .unwrap_or(0.0) as u64;
        let size = metric_sum(&samples, "srediag_queue_size", &FILE).unwrap_or(-1.0);
        let got = delivered.load(Ordering::SeqCst);
        (got + dropped == total && sent == got && size == 0.0).then_some(dropped)
    });
    let got = delivered.load(Ordering::SeqCst);
    assert!(dropped > 0, "nothing dropped");
    assert!(got > 0, "nothing delivered");
    let full = agent.counter(
        "srediag_queue_dropped_items_total",
        &[("component", "file"), ("reason", "queue_full")],
    );
    assert_eq!(full as u64, dropped, "every drop here is reason=queue_full");
    assert_eq!(
        agent.counter(
            "srediag_exporter_failed_items_total",
            &[("exporter", "file")]
        ),
        0.0
    );

    // Stop; the FIFO reaches EOF; nothing more may appear.
    agent.sigterm();
    let status = agent.wait_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    let final_delivered = rx
        .recv_timeout(WAIT)
        .expect("FIFO reader did not reach EOF after the agent exited")
        .unwrap_or_else(|e| panic!("FIFO contents: {e}"));
    assert_eq!(
        final_delivered, got,
        "records delivered after the books balanced"
    );
    assert_eq!(dropped, total - final_delivered, "dropped == N - delivered");
    eprintln!("backpressure: sent {total}, delivered {final_delivered}, dropped {dropped}");
}

#[test]
fn sigterm_while_stalled_flushes_the_queue() {
    // `_dir` first: bindings drop in reverse, so the agent dies before its temp dir goes.
    let Stalled {
        _dir,
        mut agent,
        fifo,
        total,
    } = stalled();
    let dropped = agent.counter("srediag_queue_dropped_items_total", &FILE) as u64;
    assert!(
        dropped > 0 && dropped < total,
        "dropped {dropped} of {total}"
    );
    agent.sigterm();
    // The exporter is blocked on the pipe: the agent cannot have finished yet.
    assert!(
        agent.try_exit().is_none(),
        "agent exited with its exporter blocked on a full FIFO"
    );
    let (_, rx) = start_drain(fifo);
    let status = agent.wait_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    let delivered = rx
        .recv_timeout(WAIT)
        .expect("FIFO reader did not reach EOF after the agent exited")
        .unwrap_or_else(|e| panic!("FIFO contents: {e}"));
    assert_eq!(
        delivered,
        total - dropped,
        "graceful shutdown must flush the queued and in-flight batches: sent {total}, dropped {dropped} before SIGTERM"
    );
    eprintln!("stalled shutdown: sent {total}, delivered {delivered}, dropped {dropped}");
}
