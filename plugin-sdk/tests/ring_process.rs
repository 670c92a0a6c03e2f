//! The ring across processes: an echo peer, hostile peers that scribble over the shared memory
//! while this process reads or writes, seals, and a peer that dies.
//!
//! Peers are this test binary re-executed (`--exact child_entry`) with the ring fds inherited at
//! fixed numbers and the role in `SREDIAG_RING_CHILD`.
#![allow(unexpected_cfgs)]
#![cfg(not(loom))] // the loom build replaces shared memory with a model

use srediag_plugin_sdk::ring::{Frames, Ring, RingConfig, RingError, WaitOptions, WakeMode};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "SREDIAG_RING_CHILD";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
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
        .map(|i| (seq as usize).wrapping_mul(131).wrapping_add(i) as u8)
        .collect()
}

/// Re-executes this test binary as a peer with `fds` at the given numbers.
fn spawn(role: &str, fds: &[(BorrowedFd<'_>, RawFd)], secs: u64) -> Child {
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, to)| (f.as_raw_fd(), *to)).collect();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("SREDIAG_RING_SECS", secs.to_string())
        .stdout(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only calls fcntl/dup2
    // (async-signal-safe). Sources are first moved above 100 so that no dup2 overwrites a source
    // not yet moved, and dup2 onto a different number clears FD_CLOEXEC.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 8];
            for (i, (from, _)) in pairs.iter().enumerate() {
                high[i] = libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, (_, to)) in pairs.iter().enumerate() {
                if libc::dup2(high[i], *to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the parent dup2'ed a descriptor to this number for us; we take ownership once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The peer side. Does nothing in a normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let secs: u64 = std::env::var("SREDIAG_RING_SECS").unwrap().parse().unwrap();
    match role.as_str() {
        "echo" => echo(None),
        "echo-eventfd" => echo(Some((
            (inherited(12), inherited(13)),
            (inherited(14), inherited(15)),
        ))),
        "scribble-producer" => scribble(Duration::from_secs(secs), true),
        "scribble-consumer" => scribble(Duration::from_secs(secs), false),
        other => panic!("unknown role {other}"),
    }
}

type EventFds = ((OwnedFd, OwnedFd), (OwnedFd, OwnedFd));

fn echo(eventfds: Option<EventFds>) {
    let (e_in, e_out) = match eventfds {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let inbound = Ring::open(inherited(10), e_in).unwrap();
    let outbound = Ring::open(inherited(11), e_out).unwrap();
    let mut rx = inbound.consumer(WaitOptions::default()).unwrap();
    let mut tx = outbound.producer(WaitOptions::default()).unwrap();
    let mut frames = Frames::new();
    loop {
        match rx.recv_timeout(&mut frames, Duration::from_secs(20)) {
            Ok(0) => panic!("echo peer: nothing for 20 s"),
            Ok(_) => {
                for f in frames.iter() {
                    match tx.try_stage(f.tag, f.payload) {
                        Ok(()) => {}
                        Err(RingError::Full) => tx
                            .push_timeout(f.tag, f.payload, Duration::from_secs(20))
                            .unwrap(),
                        Err(e) => panic!("{e}"),
                    }
                }
                tx.publish();
            }
            Err(RingError::Closed) => return,
            Err(e) => panic!("echo peer: {e}"),
        }
    }
}

/// Maps fd 10 raw and writes random values into the fields a hostile producer (or consumer)
/// controls: its index (absurd and plausible values), the sleep flags (futex words), its closed
/// flag, frame headers with plausible, absurd and wrap lengths, random bytes, and now and then a
/// well-formed frame so that parsing goes deep. Offsets are the documented layout.
fn scribble(for_how_long: Duration, as_producer: bool) {
    let fd = inherited(10);
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable.
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    let size = st.st_size as usize;
    // SAFETY: a fresh shared mapping of the whole sealed memfd.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let base = base.cast::<u8>();
    let data = (size - 4096) as u64;
    let w64 = |off: u64, v: u64| {
        assert!(off + 8 <= size as u64);
        // SAFETY: in bounds (checked); the other side is another process and only reads this
        // memory through atomics or copies.
        unsafe { base.add(off as usize).cast::<u64>().write_volatile(v) }
    };
    let r64 = |off: u64| {
        // SAFETY: as above; constant in-bounds header offsets.
        unsafe { base.add(off as usize).cast::<u64>().read_volatile() }
    };
    let (own, other, own_flag) = if as_producer {
        (64, 128, 72)
    } else {
        (128, 64, 136)
    };
    let mut rng = Rng(std::process::id() as u64 | 1);
    let start = Instant::now();
    while start.elapsed() < for_how_long {
        for _ in 0..16 {
            match rng.below(20) {
                0 => w64(own, rng.next()),
                1..=5 if as_producer => {
                    w64(own, r64(other).wrapping_add(rng.below(data + 64) / 8 * 8))
                }
                1..=5 => w64(own, r64(other).wrapping_sub(rng.below(data + 64) / 8 * 8)),
                6 => w64(192 + 64 * rng.below(2), rng.below(3)), // sleep flags = futex words
                7 if rng.below(100) == 0 => w64(own_flag, rng.below(2)),
                8..=10 => {
                    let len = match rng.below(3) {
                        0 => rng.below(4096),
                        1 => rng.next() & 0xffff_ffff,
                        _ => 0xffff_ffff,
                    };
                    w64(4096 + rng.below(data / 8) * 8, len | (rng.next() << 32));
                }
                11..=13 if as_producer => {
                    // a well-formed frame at the consumer's head, published
                    let head = r64(128);
                    let pos = head % data;
                    let len = rng.below(64).min(data - pos - 8);
                    w64(4096 + pos, len | (rng.next() << 32));
                    w64(64, head + 8 + len.div_ceil(8) * 8);
                }
                _ => w64(4096 + rng.below(data / 8) * 8, rng.next()),
            }
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

fn ring(capacity: usize, max_frame: usize, wake: WakeMode) -> Ring {
    Ring::create(RingConfig {
        capacity,
        max_frame,
        wake,
    })
    .unwrap()
}

fn echo_round_trip(wake: WakeMode) {
    let to_peer = ring(1 << 16, 4096, wake);
    let from_peer = ring(1 << 16, 4096, wake);
    let mut fds = vec![(to_peer.memfd(), 10), (from_peer.memfd(), 11)];
    if let (Some((a, b)), Some((c, d))) = (to_peer.eventfds(), from_peer.eventfds()) {
        fds.extend([(a, 12), (b, 13), (c, 14), (d, 15)]);
    }
    let role = if wake == WakeMode::EventFd {
        "echo-eventfd"
    } else {
        "echo"
    };
    let mut child = spawn(role, &fds, 0);
    let mut tx = to_peer.producer(WaitOptions::default()).unwrap();
    let mut rx = from_peer.consumer(WaitOptions::default()).unwrap();
    let mut frames = Frames::new();
    let mut rng = Rng(5);
    let (total, mut sent, mut got) = (20_000u32, 0u32, 0u32);
    while got < total {
        // keep a window of frames in flight: batches, wrap-around, waits on both sides
        while sent < total && sent - got < 200 {
            let len = rng.below(4097) as usize;
            match tx.try_stage(sent, &payload(sent, len)) {
                Ok(()) => sent += 1,
                Err(RingError::Full) => break,
                Err(e) => panic!("{e}"),
            }
            if rng.below(8) == 0 {
                break;
            }
        }
        tx.publish();
        let n = rx
            .recv_timeout(&mut frames, Duration::from_secs(20))
            .unwrap();
        assert!(n > 0, "the echo peer stopped at {got}");
        for f in frames.iter() {
            assert_eq!(f.tag, got);
            assert_eq!(f.payload, payload(got, f.payload.len()).as_slice());
            got += 1;
        }
    }
    drop(tx); // close: the peer exits
    assert!(child.wait().unwrap().success());
    assert!(matches!(
        rx.recv_timeout(&mut frames, Duration::from_secs(5)),
        Err(RingError::Closed)
    ));
    assert_eq!(rx.stats().peer_violations(), 0);
}

#[test]
fn echo_across_processes_futex() {
    echo_round_trip(WakeMode::Futex);
}

#[test]
fn echo_across_processes_eventfd() {
    echo_round_trip(WakeMode::EventFd);
}

#[test]
fn hostile_writer_while_reading() {
    let r = ring(1 << 14, 1024, WakeMode::Futex);
    let mut rx = r.consumer(WaitOptions::default()).unwrap();
    let mut child = spawn("scribble-producer", &[(r.memfd(), 10)], 3);
    let mut frames = Frames::with_capacity(4096);
    let (mut delivered, mut errors, mut closed, mut calls) = (0u64, 0u64, 0u64, 0u64);
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        let t = Instant::now();
        let r = rx.recv_timeout(&mut frames, Duration::from_millis(5));
        slowest = slowest.max(t.elapsed());
        calls += 1;
        match r {
            Ok(n) => {
                delivered += n as u64;
                for f in frames.iter() {
                    assert!(f.payload.len() <= 1024);
                }
            }
            Err(RingError::BadIndex { .. } | RingError::MalformedFrame { .. }) => errors += 1,
            Err(RingError::Closed) => closed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let s = rx.stats();
    eprintln!(
        "hostile writer: {calls} reads, {delivered} frames, {errors} errors, {closed} closed, stats {s:?}, slowest {slowest:?}"
    );
    assert!(child.wait().unwrap().success());
    assert!(s.bad_indices > 100 && s.malformed_frames > 100, "{s:?}");
    assert!(delivered > 100, "well-formed frames still get through");
    // every violation is reported once (one may still be pending after the last read)
    assert!(
        errors <= s.peer_violations() && s.peer_violations() <= errors + 1,
        "{errors} vs {s:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a wait is bounded: {slowest:?}"
    );
}

#[test]
fn hostile_reader_while_writing() {
    let r = ring(1 << 14, 1024, WakeMode::Futex);
    let mut tx = r.producer(WaitOptions::default()).unwrap();
    let mut child = spawn("scribble-consumer", &[(r.memfd(), 10)], 3);
    let mut outcomes = [0u64; 4];
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let t = Instant::now();
        let r = tx.push_timeout(
            seq,
            &payload(seq, (seq % 1025) as usize),
            Duration::from_millis(5),
        );
        slowest = slowest.max(t.elapsed());
        seq += 1;
        match r {
            Ok(()) => outcomes[0] += 1,
            Err(RingError::TimedOut(_)) => outcomes[1] += 1,
            Err(RingError::BadIndex { .. }) => outcomes[2] += 1,
            Err(RingError::Closed) => outcomes[3] += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    eprintln!(
        "hostile reader: ok/timeout/bad/closed {outcomes:?}, stats {:?}, slowest {slowest:?}",
        tx.stats()
    );
    assert!(child.wait().unwrap().success());
    assert!(tx.stats().bad_indices > 0);
    assert!(
        slowest < Duration::from_secs(1),
        "a wait is bounded: {slowest:?}"
    );
}

#[test]
fn dead_peer_never_hangs() {
    let to_peer = ring(4096, 1024, WakeMode::Futex);
    let from_peer = ring(4096, 1024, WakeMode::Futex);
    let mut child = spawn("echo", &[(to_peer.memfd(), 10), (from_peer.memfd(), 11)], 0);
    let mut tx = to_peer.producer(WaitOptions::default()).unwrap();
    let mut rx = from_peer.consumer(WaitOptions::default()).unwrap();
    let mut frames = Frames::new();
    tx.try_push(1, b"ping").unwrap();
    assert_eq!(
        rx.recv_timeout(&mut frames, Duration::from_secs(20))
            .unwrap(),
        1
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    assert_eq!(
        rx.recv_timeout(&mut frames, Duration::from_millis(100))
            .unwrap(),
        0
    );
    while tx.try_push(2, &[0; 1000]).is_ok() {}
    assert!(matches!(
        tx.push_timeout(3, &[0; 1000], Duration::from_millis(100)),
        Err(RingError::TimedOut(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn memfd_is_sealed_and_open_checks_it() {
    let r = ring(4096, 1024, WakeMode::Futex);
    let fd = r.memfd().as_raw_fd();
    // SAFETY: plain syscalls on a descriptor the ring owns; failure is the expected outcome.
    unsafe {
        assert_eq!(libc::ftruncate(fd, 4096), -1, "shrink must be refused");
        assert_eq!(libc::ftruncate(fd, 1 << 20), -1, "grow must be refused");
        assert_eq!(
            libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE),
            -1,
            "no more seals"
        );
    }
    let dup = r.memfd().try_clone_to_owned().unwrap();
    let opened = Ring::open(dup, None).unwrap();
    assert_eq!((opened.capacity(), opened.max_frame()), (4096, 1024));

    // an unsealed memfd, and a sealed one with a bad header
    for seal in [false, true] {
        // SAFETY: fresh memfd owned below.
        let raw = unsafe {
            libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        // SAFETY: `raw` is ours.
        let f = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscalls on our fd.
        unsafe {
            assert_eq!(libc::ftruncate(raw, 8192), 0);
            if seal {
                assert_eq!(
                    libc::fcntl(
                        raw,
                        libc::F_ADD_SEALS,
                        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW
                    ),
                    0
                );
            }
        }
        let e = Ring::open(f, None).unwrap_err();
        assert!(matches!(e, RingError::BadRing(_)), "{e}");
    }
    // an eventfd ring needs its eventfds
    let ev = ring(4096, 1024, WakeMode::EventFd);
    assert!(Ring::open(ev.memfd().try_clone_to_owned().unwrap(), None).is_err());
}
