//! In-process tests of the ring: framing, wrap-around, limits, waits, and a peer that writes
//! garbage (sequentially here; the concurrent hostile writer is a separate process in
//! `tests/ring_process.rs`).

use super::layout::{WRAP_MARKER, frame_size};
use super::*;
use std::sync::atomic::Ordering;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn payload(seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

fn ring(capacity: usize, max_frame: usize) -> Ring {
    Ring::create(RingConfig {
        capacity,
        max_frame,
        wake: WakeMode::Futex,
    })
    .unwrap()
}

fn check(f: Frame<'_>, seq: u32) {
    assert_eq!(f.tag, seq);
    assert_eq!(
        f.payload,
        payload(seq, f.payload.len()).as_slice(),
        "payload of frame {seq}"
    );
}

#[test]
fn batch_round_trip_keeps_tags_and_bytes() {
    let r = Ring::create(RingConfig::default()).unwrap();
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    assert!(matches!(
        r.producer(WaitOptions::default()),
        Err(RingError::Taken("producer"))
    ));
    let mut out = Frames::new();
    assert_eq!(rx.try_recv(&mut out).unwrap(), 0);
    for i in 0..10u32 {
        tx.try_stage(i, &payload(i, i as usize * 3)).unwrap();
    }
    assert_eq!(
        rx.try_recv(&mut out).unwrap(),
        0,
        "staged frames are invisible until published"
    );
    tx.publish();
    assert_eq!(rx.try_recv(&mut out).unwrap(), 10);
    for (i, f) in out.iter().enumerate() {
        check(f, i as u32);
    }
    assert_eq!(tx.stats().batches, 1);
    assert_eq!(
        tx.stats().wakeups_sent,
        0,
        "no syscall while the consumer is awake"
    );
    assert_eq!(rx.stats().peer_violations(), 0);
}

#[test]
fn config_is_validated() {
    for (capacity, max_frame) in [
        (3000, 16),
        (1 << 31, 16),
        (4096, 0),
        (4096, 2048),
        (4096, 2041),
    ] {
        let e = Ring::create(RingConfig {
            capacity,
            max_frame,
            wake: WakeMode::Futex,
        })
        .unwrap_err();
        assert!(
            matches!(e, RingError::Config(_)),
            "{capacity}/{max_frame}: {e}"
        );
    }
    ring(4096, 2040);
}

#[test]
fn wraps_around_with_every_length_and_interleaving() {
    let r = ring(4096, 600);
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    let mut out = Frames::with_capacity(1024); // smaller than the ring: reads come in pieces
    let mut rng = Rng(7);
    let (mut sent, mut got) = (0u32, 0u32);
    while got < 50_000 {
        // stage a random batch until full
        for _ in 0..rng.below(12) {
            let len = rng.below(601) as usize;
            match tx.try_stage(sent, &payload(sent, len)) {
                Ok(()) => sent += 1,
                Err(RingError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        tx.publish();
        for _ in 0..rng.below(3) {
            let n = rx.try_recv(&mut out).unwrap();
            assert_eq!(n, out.len());
            for f in out.iter() {
                check(f, got);
                got += 1;
            }
        }
    }
    assert!(tx.stats().full > 0);
    assert_eq!(rx.stats().peer_violations(), 0);
    assert_eq!(tx.stats().bad_indices, 0);
}

#[test]
fn max_size_frames_fit_at_every_position() {
    let max = 4096 / 2 - 8;
    let r = ring(4096, max);
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    let mut out = Frames::with_capacity(16); // grown to one maximal frame
    assert!(matches!(
        tx.try_push(0, &vec![0; max + 1]),
        Err(RingError::FrameTooLarge { .. })
    ));
    for step in 0..600u32 {
        // shift the ring position by a small frame, then push a maximal one into an empty ring
        tx.try_push(step, &payload(step, (step % 5) as usize * 8))
            .unwrap();
        tx.try_push(step, &payload(step, max)).unwrap();
        let mut seen = 0;
        while seen < 2 {
            let n = rx.try_recv(&mut out).unwrap();
            for f in out.iter() {
                check(f, step);
            }
            seen += n;
        }
    }
    assert_eq!(rx.stats().peer_violations(), 0);
}

#[test]
fn full_then_bounded_push_timeout_then_closed() {
    let r = ring(4096, 1024);
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    let mut n = 0;
    while tx.try_push(n, &[1; 1000]).is_ok() {
        n += 1;
    }
    assert!(matches!(tx.try_push(n, &[1; 1000]), Err(RingError::Full)));
    let t = Instant::now();
    let e = tx
        .push_timeout(n, &[1; 1000], Duration::from_millis(60))
        .unwrap_err();
    assert!(matches!(e, RingError::TimedOut(_)), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(60) && t.elapsed() < Duration::from_secs(5));
    assert!(tx.stats().sleeps >= 1);
    rx.close();
    assert!(matches!(
        tx.push_timeout(n, &[1; 1000], Duration::from_secs(5)),
        Err(RingError::Closed)
    ));
}

#[test]
fn recv_timeout_is_bounded_and_sees_close() {
    let r = ring(4096, 64);
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let mut rx = r
        .consumer(WaitOptions::spin(Duration::from_micros(50)))
        .unwrap();
    let mut out = Frames::new();
    let t = Instant::now();
    assert_eq!(
        rx.recv_timeout(&mut out, Duration::from_millis(50))
            .unwrap(),
        0
    );
    assert!(t.elapsed() >= Duration::from_millis(50) && t.elapsed() < Duration::from_secs(5));
    tx.try_push(9, b"last").unwrap();
    drop(tx);
    assert_eq!(
        rx.recv_timeout(&mut out, Duration::from_secs(5)).unwrap(),
        1
    );
    assert!(matches!(
        rx.recv_timeout(&mut out, Duration::from_secs(5)),
        Err(RingError::Closed)
    ));
}

fn threaded(wake: WakeMode, spin: Duration, frames: u32) {
    let r = Ring::create(RingConfig {
        capacity: 8192,
        max_frame: 1000,
        wake,
    })
    .unwrap();
    let mut tx = r.producer(WaitOptions::spin(spin)).unwrap();
    let mut rx = r.consumer(WaitOptions::spin(spin)).unwrap();
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(99);
        let mut seq = 0u32;
        while seq < frames {
            let batch = 1 + rng.below(20) as u32;
            for _ in 0..batch.min(frames - seq) {
                let len = rng.below(1001) as usize;
                match tx.try_stage(seq, &payload(seq, len)) {
                    Ok(()) => seq += 1,
                    Err(RingError::Full) => {
                        tx.push_timeout(seq, &payload(seq, len), Duration::from_secs(10))
                            .unwrap();
                        seq += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            tx.publish();
            if rng.below(50) == 0 {
                std::thread::sleep(Duration::from_micros(200)); // let the consumer fall asleep
            }
        }
        tx.stats()
    });
    let mut out = Frames::with_capacity(4096);
    let mut got = 0u32;
    loop {
        match rx.recv_timeout(&mut out, Duration::from_secs(10)) {
            Ok(0) => panic!("timed out at frame {got}"),
            Ok(_) => {
                for f in out.iter() {
                    check(f, got);
                    got += 1;
                }
            }
            Err(RingError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let ps = producer.join().unwrap();
    assert_eq!(got, frames);
    assert_eq!(rx.stats().peer_violations() + ps.peer_violations(), 0);
    assert!(
        rx.stats().sleeps > 0 || !spin.is_zero(),
        "the consumer slept at least once"
    );
}

#[test]
fn threads_futex() {
    threaded(WakeMode::Futex, Duration::ZERO, 50_000);
}

#[test]
fn threads_eventfd() {
    threaded(WakeMode::EventFd, Duration::ZERO, 50_000);
}

#[test]
fn threads_spin_then_block() {
    threaded(WakeMode::Futex, Duration::from_micros(20), 50_000);
}

// ---- the peer writes garbage (sequentially: indices through atomics, bytes between calls) ----

fn frame_bytes(len: u32, tag: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&len.to_le_bytes());
    b[4..].copy_from_slice(&tag.to_le_bytes());
    b
}

#[test]
fn consumer_rejects_bad_indices_and_frames_then_recovers() {
    let r = ring(4096, 256);
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    let mut out = Frames::new();
    let h = r.shared.mem.header();
    let mem = &r.shared.mem;
    let set_tail = |t: u64| h.prod.0.tail.store(t, Ordering::Release);

    for bad in [4097u64, 4, u64::MAX, 1 << 40] {
        set_tail(bad);
        assert!(
            matches!(
                rx.try_recv(&mut out),
                Err(RingError::BadIndex { which: "tail", .. })
            ),
            "tail {bad}"
        );
    }
    assert_eq!(rx.stats().bad_indices, 4);

    // a length above the maximum frame
    mem.copy_in(0, &frame_bytes(257, 1));
    set_tail(frame_size(257) as u64);
    assert!(matches!(
        rx.try_recv(&mut out),
        Err(RingError::MalformedFrame { position: 0, .. })
    ));
    let mut head = frame_size(257) as u64;

    // a length past the published tail
    mem.copy_in(head as usize, &frame_bytes(100, 2));
    set_tail(head + 16);
    assert!(matches!(
        rx.try_recv(&mut out),
        Err(RingError::MalformedFrame { .. })
    ));
    head += 16;

    // a wrap marker although the span does not wrap
    mem.copy_in(head as usize, &frame_bytes(WRAP_MARKER, 0));
    set_tail(head + 8);
    assert!(matches!(
        rx.try_recv(&mut out),
        Err(RingError::MalformedFrame { .. })
    ));
    head += 8;

    // a good frame, then a bad one: the good one is delivered, the error comes next
    mem.copy_in(head as usize, &frame_bytes(3, 7));
    mem.copy_in(head as usize + 8, b"abc\0\0\0\0\0");
    mem.copy_in(head as usize + 16, &frame_bytes(9999, 8));
    set_tail(head + 24);
    assert_eq!(rx.try_recv(&mut out).unwrap(), 1);
    assert_eq!(
        out.get(0).unwrap(),
        Frame {
            tag: 7,
            payload: b"abc"
        }
    );
    assert!(matches!(
        rx.try_recv(&mut out),
        Err(RingError::MalformedFrame { .. })
    ));
    head += 24;

    // the head published to the peer followed, and a good frame still reads
    assert_eq!(h.cons.0.head.load(Ordering::Acquire), head);
    mem.copy_in(head as usize, &frame_bytes(2, 5));
    mem.copy_in(head as usize + 8, b"ok\0\0\0\0\0\0");
    set_tail(head + 16);
    assert_eq!(rx.try_recv(&mut out).unwrap(), 1);
    assert_eq!(
        out.get(0).unwrap(),
        Frame {
            tag: 5,
            payload: b"ok"
        }
    );
    assert_eq!(rx.stats().malformed_frames, 4);
    assert_eq!(rx.stats().peer_violations(), 8);
}

#[test]
fn producer_rejects_bad_head() {
    let r = ring(4096, 1024);
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let h = r.shared.mem.header();
    for i in 0..4 {
        tx.try_push(i, &[0; 1000]).unwrap(); // 4 x 1008 of 4096 bytes: the next push reads the head
    }
    // the consumer claims to have read beyond what was published, or moved backwards
    for bad in [5000u64, 3, u64::MAX] {
        h.cons.0.head.store(bad, Ordering::Release);
        assert!(
            matches!(
                tx.try_push(9, &[0; 1000]),
                Err(RingError::BadIndex { which: "head", .. })
            ),
            "head {bad}"
        );
    }
    h.cons.0.head.store(1008, Ordering::Release);
    tx.try_push(9, &[0; 1000]).unwrap();
    h.cons.0.head.store(0, Ordering::Release); // backwards
    tx.try_push(10, &[0; 1000]).unwrap_err();
    assert_eq!(tx.stats().bad_indices, 4);
}

#[test]
fn random_garbage_never_panics_and_is_counted() {
    let r = ring(4096, 512);
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    let mut out = Frames::with_capacity(1024);
    let h = r.shared.mem.header();
    let mut rng = Rng(0xdead_beef);
    let mut delivered = 0u64;
    for _ in 0..200_000 {
        match rng.below(4) {
            0 => h.prod.0.tail.store(rng.next(), Ordering::Release),
            1 => {
                // a plausible tail: a little ahead of the head the consumer published
                let head = h.cons.0.head.load(Ordering::Acquire);
                h.prod
                    .0
                    .tail
                    .store(head + rng.below(4200) / 8 * 8, Ordering::Release)
            }
            2 => {
                let off = rng.below(4096 / 8) as usize * 8;
                let len = match rng.below(3) {
                    0 => rng.next() as u32,
                    1 => rng.below(600) as u32,
                    _ => WRAP_MARKER,
                };
                r.shared
                    .mem
                    .copy_in(off, &frame_bytes(len, rng.next() as u32));
            }
            _ => {
                let off = rng.below(4096 - 64) as usize;
                let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                r.shared.mem.copy_in(off, &bytes);
            }
        }
        if let Ok(n) = rx.try_recv(&mut out) {
            delivered += n as u64;
            for f in out.iter() {
                assert!(f.payload.len() <= 512);
            }
        }
    }
    let s = rx.stats();
    assert!(s.malformed_frames > 1000 && s.bad_indices > 1000, "{s:?}");
    assert!(delivered > 0, "plausible frames get through");
}

#[test]
fn probe_flag_round_trips() {
    let r = ring(4096, 64);
    assert_eq!(r.probe_sampling(), 0);
    r.set_probe_sampling(16);
    assert_eq!(r.probe_sampling(), 16);
    assert_eq!(
        r.shared
            .mem
            .header()
            .probe_enabled
            .0
            .load(Ordering::Relaxed),
        16
    );
}
