//! IPC benchmark: the shared-memory ring against AF_UNIX SOCK_SEQPACKET and a raw SPSC ring, in
//! two processes (this binary re-executes itself as the peer). Not a test: it prints a Markdown
//! report with the machine, the numbers and the goals.
//!
//! `cargo run --release -p srediag-plugin-sdk --example ipc_bench [-- --quick]`
//!
//! B1 round trip (p50/p99): 64 B and 4 KiB, ring with futex or eventfd wake-ups (blocking) and
//! spinning, against a SEQPACKET socketpair with the same bytes.
//! B2 throughput of 64-byte records in batches of 1/16/64: the ring (framed, validated, copied
//! out) against the socket with one send per record and with the same batching (same framing,
//! same decode), and against a raw packed SPSC ring (no framing, no validation). CPU-ns per
//! record is user+system time of both processes (getrusage) over the records.
//!
//! Profiling aids (environment): `IPC_BENCH_DEBUG=1` prints both ends' ring counters,
//! `IPC_BENCH_RING_ONLY=<batch>` runs only the ring's B2 row, `IPC_BENCH_RING=<bytes>` sets its size.

mod raw;
mod sys;

use srediag_plugin_sdk::ring::{
    Frames, Ring, RingConfig, RingError, WaitOptions, WakeMode, frame_size,
};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MAX_FRAME: usize = 8192;
const RING_BYTES: usize = 1 << 20;
const RECORD: usize = 64;
const LONG: Duration = Duration::from_secs(30);
const SPIN_LONG: Duration = Duration::from_secs(1);
/// Spin before blocking in the throughput runs (both sides).
const THROUGHPUT_SPIN: Duration = Duration::from_micros(50);
/// Ring size in the throughput runs.
const THROUGHPUT_RING: usize = 1 << 20;
/// The consumer's private buffer in the throughput runs (a read copies at most this much).
const SINK_BUFFER: usize = 32 * 1024;

fn checksum(p: &[u8]) -> u64 {
    p.chunks_exact(8).fold(p.len() as u64, |a, c| {
        a.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap_or_default())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..]);
        return;
    }
    let flag = |f: &str| args.iter().any(|a| a == f);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    parent(Opts {
        div: if flag("--quick") { 10 } else { 1 },
        b1: only.as_deref() != Some("b2"),
        b2: only.as_deref() != Some("b1"),
        spin: !flag("--no-spin"),
    });
}

// ------------------------------------------------------------------ peer side

fn open(memfd: RawFd, eventfds: Option<(RawFd, RawFd)>) -> Ring {
    Ring::open(
        sys::inherited(memfd),
        eventfds.map(|(a, b)| (sys::inherited(a), sys::inherited(b))),
    )
    .expect("open ring")
}

fn report(records: u64, sum: u64, cpu0: u64) {
    println!(
        "records={records} sum={sum} cpu_ns={} end_ns={}",
        sys::cpu_ns() - cpu0,
        sys::mono_ns()
    );
}

fn child(args: &[String]) {
    let mode = args[0].as_str();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match mode {
        "rtt-shm" => {
            let ev = arg(1) == "eventfd";
            let opts = if arg(2) == "spin" {
                WaitOptions::spin(SPIN_LONG)
            } else {
                WaitOptions::default()
            };
            let inbound = open(10, ev.then_some((12, 13)));
            let outbound = open(11, ev.then_some((14, 15)));
            let (mut rx, mut tx) = (
                inbound.consumer(opts).unwrap(),
                outbound.producer(opts).unwrap(),
            );
            let mut frames = Frames::new();
            loop {
                match rx.recv_timeout(&mut frames, LONG) {
                    Ok(0) => panic!("peer: no frame for {LONG:?}"),
                    Ok(_) => {
                        for f in frames.iter() {
                            tx.push_timeout(f.tag, f.payload, LONG).unwrap();
                        }
                    }
                    Err(RingError::Closed) => return,
                    Err(e) => panic!("peer: {e}"),
                }
            }
        }
        "rtt-uds" => {
            let sock = sys::inherited(10);
            let mut buf = vec![0u8; 65536];
            loop {
                let n = sys::recv(sock.as_fd(), &mut buf);
                if n == 0 {
                    return;
                }
                sys::send(sock.as_fd(), &buf[..n]);
            }
        }
        "sink-shm" => {
            let ring = open(10, None);
            let mut rx = ring.consumer(WaitOptions::spin(THROUGHPUT_SPIN)).unwrap();
            let mut frames = Frames::with_capacity(SINK_BUFFER);
            let (cpu0, mut records, mut sum) = (sys::cpu_ns(), 0u64, 0u64);
            loop {
                match rx.recv_timeout(&mut frames, LONG) {
                    Ok(0) => panic!("sink: no frame for {LONG:?}"),
                    Ok(_) => {
                        for f in frames.iter() {
                            sum = sum.wrapping_add(checksum(f.payload) ^ f.tag as u64);
                            records += 1;
                        }
                    }
                    Err(RingError::Closed) => break,
                    Err(e) => panic!("sink: {e}"),
                }
            }
            assert_eq!(rx.stats().peer_violations(), 0);
            if std::env::var_os("IPC_BENCH_DEBUG").is_some() {
                eprintln!("sink stats: {:?}", rx.stats());
            }
            report(records, sum, cpu0);
        }
        "sink-uds" => {
            let sock = sys::inherited(10);
            let mut buf = vec![0u8; 65536];
            let (cpu0, mut records, mut sum) = (sys::cpu_ns(), 0u64, 0u64);
            loop {
                let n = sys::recv(sock.as_fd(), &mut buf);
                if n == 0 {
                    break;
                }
                // the same framing and checks as the ring's consumer
                let p = &buf[..n];
                let mut off = 0;
                while off < n {
                    let len = u32::from_le_bytes(p[off..off + 4].try_into().unwrap()) as usize;
                    let tag = u32::from_le_bytes(p[off + 4..off + 8].try_into().unwrap());
                    assert!(len <= MAX_FRAME && off + frame_size(len) <= n, "bad frame");
                    sum = sum.wrapping_add(checksum(&p[off + 8..off + 8 + len]) ^ tag as u64);
                    records += 1;
                    off += frame_size(len);
                }
            }
            report(records, sum, cpu0);
        }
        "sink-raw" => {
            let n: u64 = arg(1).parse().unwrap();
            let fd = sys::inherited(10);
            let ring = raw::Raw::map(&fd);
            let (cpu0, mut records, mut sum) = (sys::cpu_ns(), 0u64, 0u64);
            ring.consume(n, |r| {
                sum = sum.wrapping_add(checksum(r) ^ records);
                records += 1;
            });
            report(records, sum, cpu0);
        }
        other => panic!("unknown child mode {other}"),
    }
}

// ------------------------------------------------------------------ parent side

fn spawn(args: &[&str], fds: &[(BorrowedFd<'_>, RawFd)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--child").args(args).stdout(Stdio::piped());
    sys::pass_fds(&mut cmd, fds);
    cmd.spawn().expect("spawn peer")
}

struct PeerReport {
    records: u64,
    cpu_ns: u64,
    end_ns: u64,
}

fn finish(mut child: Child) -> PeerReport {
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "peer failed");
    let field = |k: &str| -> u64 {
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("peer report without {k}: {out}"))
    };
    PeerReport {
        records: field("records"),
        cpu_ns: field("cpu_ns"),
        end_ns: field("end_ns"),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Wake {
    Futex,
    EventFd,
    Spin,
}

struct Latency {
    p50: f64,
    p99: f64,
}

fn percentiles(mut v: Vec<u64>) -> Latency {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn rtt_shm(size: usize, wake: Wake, iters: usize) -> Vec<u64> {
    let cfg = RingConfig {
        capacity: RING_BYTES,
        max_frame: MAX_FRAME,
        wake: if wake == Wake::EventFd {
            WakeMode::EventFd
        } else {
            WakeMode::Futex
        },
    };
    let (a2c, c2a) = (Ring::create(cfg).unwrap(), Ring::create(cfg).unwrap());
    let mut fds = vec![(a2c.memfd(), 10), (c2a.memfd(), 11)];
    if let (Some((a, b)), Some((c, d))) = (a2c.eventfds(), c2a.eventfds()) {
        fds.extend([(a, 12), (b, 13), (c, 14), (d, 15)]);
    }
    let ev = if wake == Wake::EventFd {
        "eventfd"
    } else {
        "futex"
    };
    let sp = if wake == Wake::Spin { "spin" } else { "block" };
    let child = spawn(&["rtt-shm", ev, sp], &fds);
    let opts = if wake == Wake::Spin {
        WaitOptions::spin(SPIN_LONG)
    } else {
        WaitOptions::default()
    };
    let (mut tx, mut rx) = (a2c.producer(opts).unwrap(), c2a.consumer(opts).unwrap());
    let payload = vec![0xabu8; size];
    let mut frames = Frames::new();
    let warm = iters / 10;
    let mut lat = Vec::with_capacity(iters);
    for i in 0..warm + iters {
        let t = Instant::now();
        tx.try_push(i as u32, &payload).unwrap();
        assert_eq!(rx.recv_timeout(&mut frames, LONG).unwrap(), 1);
        if i >= warm {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(tx);
    finish_quiet(child);
    lat
}

fn finish_quiet(mut child: Child) {
    assert!(child.wait().unwrap().success(), "peer failed");
}

fn rtt_uds(size: usize, iters: usize) -> Vec<u64> {
    let (mine, theirs) = sys::seqpacket_pair();
    let child = spawn(&["rtt-uds"], &[(theirs.as_fd(), 10)]);
    drop(theirs);
    let payload = vec![0xabu8; size];
    let mut buf = vec![0u8; 65536];
    let warm = iters / 10;
    let mut lat = Vec::with_capacity(iters);
    for i in 0..warm + iters {
        let t = Instant::now();
        sys::send(mine.as_fd(), &payload);
        assert_eq!(sys::recv(mine.as_fd(), &mut buf), size);
        if i >= warm {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(mine);
    finish_quiet(child);
    lat
}

struct Throughput {
    records: u64,
    wall_ns: u64,
    cpu_ns: u64,
}

impl Throughput {
    fn per_sec(&self) -> f64 {
        self.records as f64 * 1e9 / self.wall_ns as f64
    }
    fn cpu_per_record(&self) -> f64 {
        self.cpu_ns as f64 / self.records as f64
    }
    fn wall_per_record(&self) -> f64 {
        self.wall_ns as f64 / self.records as f64
    }
}

fn measure(n: u64, child: Child, produce: impl FnOnce()) -> Throughput {
    let (cpu0, t0) = (sys::cpu_ns(), sys::mono_ns());
    produce();
    let cpu = sys::cpu_ns() - cpu0;
    let peer = finish(child);
    assert_eq!(peer.records, n, "peer lost records");
    Throughput {
        records: n,
        wall_ns: peer.end_ns - t0,
        cpu_ns: cpu + peer.cpu_ns,
    }
}

fn thr_shm(batch: usize, n: u64) -> Throughput {
    let ring = Ring::create(RingConfig {
        capacity: std::env::var("IPC_BENCH_RING")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(THROUGHPUT_RING),
        max_frame: MAX_FRAME,
        wake: WakeMode::Futex,
    })
    .unwrap();
    let child = spawn(&["sink-shm"], &[(ring.memfd(), 10)]);
    let mut tx = ring.producer(WaitOptions::spin(THROUGHPUT_SPIN)).unwrap();
    let record = [0x5au8; RECORD];
    measure(n, child, || {
        let mut i = 0u64;
        while i < n {
            for _ in 0..batch.min((n - i) as usize) {
                match tx.try_stage(i as u32, &record) {
                    Ok(()) => {}
                    Err(RingError::Full) => tx.push_timeout(i as u32, &record, LONG).unwrap(),
                    Err(e) => panic!("{e}"),
                }
                i += 1;
            }
            tx.publish();
        }
        if std::env::var_os("IPC_BENCH_DEBUG").is_some() {
            eprintln!("producer stats (batch {batch}): {:?}", tx.stats());
        }
        drop(tx);
    })
}

fn thr_uds(batch: usize, n: u64) -> Throughput {
    let (mine, theirs) = sys::seqpacket_pair();
    let child = spawn(&["sink-uds"], &[(theirs.as_fd(), 10)]);
    drop(theirs);
    let record = [0x5au8; RECORD];
    let mut packet = Vec::with_capacity(batch * frame_size(RECORD));
    measure(n, child, || {
        let mut i = 0u64;
        while i < n {
            packet.clear();
            for _ in 0..batch.min((n - i) as usize) {
                packet.extend_from_slice(&(RECORD as u32).to_le_bytes());
                packet.extend_from_slice(&(i as u32).to_le_bytes());
                packet.extend_from_slice(&record);
                i += 1;
            }
            sys::send(mine.as_fd(), &packet);
        }
        drop(mine);
    })
}

fn thr_raw(n: u64) -> Throughput {
    let fd = raw::create();
    let ring = raw::Raw::map(&fd);
    let n_arg = n.to_string();
    let child = spawn(&["sink-raw", &n_arg], &[(fd.as_fd(), 10)]);
    let record = [0x5au8; raw::RECORD];
    measure(n, child, || ring.produce(n, &record))
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("kernel {}, {nproc} CPUs ({cpu})", kernel.trim())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

struct Opts {
    div: usize,
    b1: bool,
    b2: bool,
    spin: bool,
}

fn parent(o: Opts) {
    println!("# IPC benchmark (`ipc_bench`)\n");
    println!(
        "Machine: {}. Release build; peer = this binary re-executed.\n",
        machine()
    );
    if o.b1 {
        b1(&o);
    }
    if o.b2 {
        b2(&o);
    }
}

fn b1(o: &Opts) {
    let div = o.div;

    // ---- B1
    println!("## B1 round trip (two processes)\n");
    println!("| transport | size | p50 µs | p99 µs | p50 vs socket | goal |");
    println!("|---|---|---|---|---|---|");
    // Rounds interleave the transports so that load changes on a shared VM hit all of them alike.
    const ROUNDS: usize = 5;
    let (block_iters, spin_iters) = (20_000 / div / ROUNDS, 200_000 / div / ROUNDS);
    for size in [64usize, 4096] {
        let mut s: [Vec<u64>; 4] = Default::default();
        for _ in 0..ROUNDS {
            s[0].extend(rtt_uds(size, block_iters));
            s[1].extend(rtt_shm(size, Wake::Futex, block_iters));
            s[2].extend(rtt_shm(size, Wake::EventFd, block_iters));
            if o.spin {
                s[3].extend(rtt_shm(size, Wake::Spin, spin_iters));
            }
        }
        let [uds, futex, eventfd, spin] = s;
        let sock = percentiles(uds);
        let mut rows = vec![
            ("ring, futex (blocking)", percentiles(futex), Some(1.0)),
            ("ring, eventfd (blocking)", percentiles(eventfd), Some(1.0)),
        ];
        if o.spin {
            rows.push((
                "ring, spin",
                percentiles(spin),
                (size == 64).then_some(0.10),
            ));
        }
        println!(
            "| SEQPACKET socket | {size} B | {:.1} | {:.1} | 1.00× | |",
            sock.p50, sock.p99
        );
        for (name, l, goal) in rows {
            let ratio = l.p50 / sock.p50;
            let g = goal
                .map(|g| format!("≤ {g:.2}×: {}", verdict(ratio <= g)))
                .unwrap_or_default();
            println!(
                "| {name} | {size} B | {:.1} | {:.1} | {ratio:.3}× | {g} |",
                l.p50, l.p99
            );
        }
    }
}

fn b2(o: &Opts) {
    let div = o.div;
    println!("\n## B2 throughput, {RECORD}-byte records (two processes)\n");
    println!("| transport | batch | records/s | wall ns/record | CPU ns/record (both) |");
    println!("|---|---|---|---|---|");
    let n_fast = 20_000_000 / div as u64;
    let n_sock = 2_000_000 / div as u64;
    if let Ok(b) = std::env::var("IPC_BENCH_RING_ONLY") {
        // profiling aid: only the ring at one batch size
        let t = thr_shm(b.parse().unwrap_or(64), n_fast);
        println!("ring only: {:.2} M records/s", t.per_sec() / 1e6);
        return;
    }
    let raw = thr_raw(n_fast);
    let per_record = thr_uds(1, n_sock);
    let row = |name: &str, batch: &str, t: &Throughput| {
        println!(
            "| {name} | {batch} | {:.2} M | {:.1} | {:.1} |",
            t.per_sec() / 1e6,
            t.wall_per_record(),
            t.cpu_per_record()
        );
    };
    row("raw SPSC ring (limit)", "1", &raw);
    row("SEQPACKET, one send per record", "1", &per_record);
    let mut ratios = Vec::new();
    for batch in [1usize, 16, 64] {
        let shm = thr_shm(batch, n_fast);
        row("ring", &batch.to_string(), &shm);
        let sock = if batch == 1 {
            None
        } else {
            let s = thr_uds(batch, n_sock * 4);
            row("SEQPACKET, same batching", &batch.to_string(), &s);
            Some(s.per_sec())
        };
        ratios.push((batch, shm.per_sec(), sock));
    }
    println!(
        "\n| ring batch | vs per-record socket (goal ≥ 10×) | vs same-batch socket (goal ≥ 1.0×) | vs raw ring (goal ≥ 0.3×) |"
    );
    println!("|---|---|---|---|");
    for (batch, shm, sock) in ratios {
        let a = shm / per_record.per_sec();
        let c = shm / raw.per_sec();
        let b = sock
            .map(|s| format!("{:.2}× {}", shm / s, verdict(shm / s >= 1.0)))
            .unwrap_or_else(|| "(= per-record)".into());
        println!(
            "| {batch} | {a:.1}× {} | {b} | {c:.2}× {} |",
            verdict(a >= 10.0),
            verdict(c >= 0.3)
        );
    }
    println!(
        "\nCPU ns/record = user+system time of both processes (getrusage) / records; wall = first send to the peer's last record."
    );
}
