//! Loom models of the ring protocol, run on the real `Producer`/`Consumer` code with loom's
//! atomics and a data area of loom cells:
//! `RUSTFLAGS="--cfg loom" cargo test -p srediag-plugin-sdk --release ring::loom`.
//!
//! Loom explores the interleavings (bounded preemptions) of: the Release/Acquire publication of
//! `tail` and `head` (a data byte read before it was written, or overwritten before it was read,
//! fails the model), and the sleep-flag handshake (futex waits block without timeout here, so a
//! lost wake-up never terminates and fails the model).

use super::*;
use ::loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    );
    if let Some(n) = std::env::var("LOOM_MAX_BRANCHES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        b.max_branches = n;
    }
    b.check(f);
}

fn small_ring() -> Ring {
    // 32-byte data area, 8-byte payloads: two frames fill it, the third wraps.
    Ring::create(RingConfig {
        capacity: 32,
        max_frame: 8,
        wake: WakeMode::Futex,
    })
    .unwrap()
}

fn drain(rx: &mut Consumer, expect: &[(u32, &[u8])]) {
    let mut out = Frames::with_capacity(64);
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(&mut out, Duration::from_secs(3600)) {
            Ok(_) => got.extend(out.iter().map(|f| (f.tag, f.payload.to_vec()))),
            Err(RingError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let want: Vec<(u32, Vec<u8>)> = expect.iter().map(|(t, p)| (*t, p.to_vec())).collect();
    assert_eq!(got, want);
    assert_eq!(rx.stats().peer_violations(), 0);
}

/// Blocking push into a full ring, blocking receive from an empty one, wrap-around, close.
#[test]
fn push_wait_wrap_close() {
    model(|| {
        let r = small_ring();
        let mut tx = r.producer(WaitOptions::default()).unwrap();
        let mut rx = r.consumer(WaitOptions::default()).unwrap();
        let t = thread::spawn(move || {
            tx.push_timeout(1, b"aaaaaaaa", Duration::from_secs(3600))
                .unwrap();
            tx.push_timeout(2, b"b", Duration::from_secs(3600)).unwrap();
            tx.push_timeout(3, b"cccccccc", Duration::from_secs(3600))
                .unwrap();
            drop(tx);
        });
        drain(&mut rx, &[(1, b"aaaaaaaa"), (2, b"b"), (3, b"cccccccc")]);
        t.join().unwrap();
    });
}

/// Batches: frames staged and published together arrive together and in order; a zero-length
/// frame shifts the positions so a later frame needs the wrap marker.
#[test]
fn batched_publish_with_wrap_marker() {
    model(|| {
        let r = small_ring();
        let mut tx = r.producer(WaitOptions::default()).unwrap();
        let mut rx = r.consumer(WaitOptions::default()).unwrap();
        let t = thread::spawn(move || {
            tx.try_stage(1, b"xy").unwrap();
            tx.try_stage(2, b"").unwrap();
            tx.publish();
            // 24 bytes used at positions 0..24; this frame needs 16 contiguous bytes: it waits for
            // the consumer, then goes behind a wrap marker at 24.
            tx.push_timeout(3, b"zzzz", Duration::from_secs(3600))
                .unwrap();
        });
        drain(&mut rx, &[(1, b"xy"), (2, b""), (3, b"zzzz")]);
        t.join().unwrap();
    });
}
