//! A hostile plugin that speaks the protocol by hand (no SDK runtime), for the attack tests of
//! `tests/tests/plugin_attacks.rs`: it makes the handshake, then does what its first argument
//! says — each one a way to make the root agent pay that the agent must bound, count and
//! quarantine.
//!
//! ```text
//! srediag-raw-plugin ATTACK
//!   partial-flood   answers the first batch with Partial frames of the same records, forever
//!   amplify         answers every batch with `factor` (config, default 10000) copies of its records
//!   no-consume      never reads its input ring (answers heartbeats)
//!   rewind          answers the first batch, then stops reading and moves its input ring's read
//!                   index backwards
//!   close-input     answers the first batch, then stops reading and sets its input ring's
//!                   `closed` flag
//!   tiny-frames     fills its output ring with 8-byte frames of an unknown tag, again and again
//!   wake-spam       answers honestly, and pokes the agent's futex on its output ring nonstop
//!   error-flood     sends 60 KB `error` control messages nonstop
//!   garbage-flood   sends undecodable control packets nonstop
//!   unexpected-flood sends 60 KB `invoke_text` messages for an invocation that does not exist,
//!                   nonstop
//!   ack-flood       sends heartbeat answers with made-up sequence numbers, nonstop
//!   long-version    says hello with a 60 KB version string full of terminal escapes
//!   honest          a well-behaved pass-through (the control case)
//!
//! Modes added by the independent review of the issue-11 fix (tests/tests/review_attacks.rs):
//!   enrich          honest: adds one attribute of `attr_bytes` (config, default 200) bytes to
//!                   every log record (what a k8s-metadata enricher does)
//!   split-lines     honest: splits every log record whose body is a string into one record
//!                   per line (a multi-line/stack-trace splitter)
//!   drip            answers every batch honestly, but only `delay_ms` (config, default 1500)
//!                   after it arrived: each batch just inside `data_path.answer_timeout`
//!   escape-flood    answers honestly and prints lines of 2,000 control bytes on stdout nonstop
//!
//! Modes of the hot-swap tests (tests/tests/plugin_swap.rs):
//!   deaf-drain      answers every batch `delay_ms` (config, default 300) after it arrived; once
//!                   the agent asks it to drain it never answers again, never acknowledges the
//!                   drain and ignores `shutdown` (what it holds must be re-delivered); prints
//!                   `RAW drain ignored holding=<batches>`
//! Diagnostics verbs (tests/tests/plugin_verbs.rs; the bundle's manifest declares the verbs):
//!   verb-flood      answers every `invoke` with 60 KB `invoke_text` chunks, nonstop, ignoring
//!                   `cancel` (and output of other kinds: `invoke_file` of an undeclared media
//!                   type for a verb named `wrong-kind`)
//! ```
//!
//! Every attack prints `RAW <attack> started` on stdout once the handshake is done.

use serde_json::Value;
use srediag_plugin_sdk::control::{
    self, AgentMsg, CONTROL_FD, DataPathInfo, MAX_MESSAGE, PROTOCOL_VERSION, PluginMsg, PluginType,
};
use srediag_plugin_sdk::data::Records;
use srediag_plugin_sdk::ring::{Frames, Ring, WaitOptions};
use srediag_plugin_sdk::wire::{self, Encoder, Tag, WIRE_SCHEMA_VERSION};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

fn send(msg: &PluginMsg) {
    send_raw(&control::encode(msg));
}

fn send_raw(bytes: &[u8]) {
    // SAFETY: sending a live buffer on the inherited control socket.
    unsafe {
        libc::send(
            CONTROL_FD,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        )
    };
}

fn recv() -> Option<AgentMsg> {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    // SAFETY: receiving into a live buffer of the given length.
    let n = unsafe { libc::recv(CONTROL_FD, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n <= 0 {
        std::process::exit(0);
    }
    control::decode::<AgentMsg>(&buf[..n as usize]).ok()
}

fn hello(version: String) {
    send(&PluginMsg::Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "srediag-raw-plugin".into(),
        version,
        plugin_type: PluginType::Processor,
        capabilities: vec!["processor/raw".into()],
        sdk_version: "raw-1".into(),
        schema_version: WIRE_SCHEMA_VERSION,
    });
}

/// Set in `verb-flood` mode: every `invoke` starts a flood of output.
static VERB_FLOOD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Answers invocation `id` of `verb` with output forever, ignoring `cancel`.
fn flood_output(id: u64, verb: String) {
    std::thread::spawn(move || {
        let text = "f".repeat(60_000);
        loop {
            if verb == "wrong-kind" {
                send(&PluginMsg::InvokeFile {
                    id,
                    media_type: "application/x-not-declared".into(),
                    data: "AAAA".into(),
                });
            } else {
                send(&PluginMsg::InvokeText {
                    id,
                    text: text.clone(),
                });
            }
        }
    });
}

/// Answers heartbeats (and exits on shutdown) on a thread of its own.
fn heartbeats() {
    std::thread::spawn(|| {
        loop {
            match recv() {
                Some(AgentMsg::Heartbeat { seq }) => send(&PluginMsg::HeartbeatAck { seq }),
                Some(AgentMsg::Shutdown { .. }) => std::process::exit(0),
                Some(AgentMsg::Invoke { id, verb, .. })
                    if VERB_FLOOD.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    println!("RAW flooding invocation {id}");
                    flood_output(id, verb);
                }
                _ => {}
            }
        }
    });
}

struct Rings {
    input: Ring,
    output: Ring,
}

fn open_rings(info: DataPathInfo) -> Rings {
    // SAFETY: the agent passed these fds for the rings; nothing else owns them.
    let own = |fd: i32| unsafe { OwnedFd::from_raw_fd(fd) };
    Rings {
        input: Ring::open(own(info.to_plugin_fd), None).expect("input ring"),
        output: Ring::open(own(info.from_plugin_fd), None).expect("output ring"),
    }
}

/// A pointer to a u64/u32 word of a ring's shared header (offsets of the SDK's layout: producer
/// line at 64, consumer line at 128, the data waiter's futex word at 192).
fn header_word(fd: i32, offset: usize) -> *mut u32 {
    // SAFETY: a shared mapping of the ring's header page; only raw volatile accesses follow.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    assert!(base != libc::MAP_FAILED, "mmap ring header");
    // SAFETY: offset < 4096, inside the mapping.
    unsafe { base.cast::<u8>().add(offset).cast() }
}

fn serve_batches(
    rings: &Rings,
    mut answer: impl FnMut(u64, Records, &mut Encoder) -> Vec<(Tag, Vec<u8>)>,
) {
    let mut rx = rings
        .input
        .consumer(WaitOptions::default())
        .expect("consumer");
    let mut tx = rings
        .output
        .producer(WaitOptions::default())
        .expect("producer");
    let mut frames = Frames::new();
    let mut enc = Encoder::new();
    loop {
        if rx
            .recv_timeout(&mut frames, Duration::from_millis(100))
            .is_err()
        {
            continue;
        }
        let batches: Vec<(u64, Records)> = frames
            .iter()
            .filter_map(|f| wire::decode(f.payload).ok())
            .collect();
        for (seq, records) in batches {
            for (tag, bytes) in answer(seq, records, &mut enc) {
                let _ = tx.push_timeout(tag as u32, &bytes, Duration::from_secs(3600));
            }
        }
    }
}

fn repeat(records: &Records, times: usize) -> Records {
    let Records::Logs(l) = records else {
        return records.clone();
    };
    let mut out = l.clone();
    for rl in &mut out.resource_logs {
        for sl in &mut rl.scope_logs {
            let one = sl.log_records.clone();
            sl.log_records = one
                .iter()
                .cycle()
                .take(one.len() * times)
                .cloned()
                .collect();
        }
    }
    Records::Logs(out)
}

/// `enrich`: one more attribute of `n` bytes on every log record.
fn enrich(records: Records, n: usize) -> Records {
    let Records::Logs(mut l) = records else {
        return records;
    };
    let value = "v".repeat(n);
    for rl in &mut l.resource_logs {
        for sl in &mut rl.scope_logs {
            for r in &mut sl.log_records {
                r.attributes
                    .push(srediag_plugin_sdk::data::common::KeyValue {
                        key: "k8s.pod.annotation".into(),
                        value: Some(srediag_plugin_sdk::data::common::AnyValue {
                            value: Some(
                                srediag_plugin_sdk::data::common::any_value::Value::StringValue(
                                    value.clone(),
                                ),
                            ),
                        }),
                    });
            }
        }
    }
    Records::Logs(l)
}

/// `split-lines`: one record per line of every string body.
fn split_lines(records: Records) -> Records {
    use srediag_plugin_sdk::data::common::any_value::Value as V;
    let Records::Logs(mut l) = records else {
        return records;
    };
    for rl in &mut l.resource_logs {
        for sl in &mut rl.scope_logs {
            let mut out = Vec::new();
            for r in std::mem::take(&mut sl.log_records) {
                match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(V::StringValue(s)) if s.contains('\n') => {
                        for line in s.lines() {
                            let mut one = r.clone();
                            one.body = Some(srediag_plugin_sdk::data::common::AnyValue {
                                value: Some(V::StringValue(line.to_string())),
                            });
                            out.push(one);
                        }
                    }
                    _ => out.push(r),
                }
            }
            sl.log_records = out;
        }
    }
    Records::Logs(l)
}

/// `drip`: answers each batch `delay` after it arrived (batches held side by side, so every one
/// is answered just inside the agent's answer timeout however many are in flight).
fn drip(rings: &Rings, delay: Duration) {
    let mut rx = rings
        .input
        .consumer(WaitOptions::default())
        .expect("consumer");
    let mut tx = rings
        .output
        .producer(WaitOptions::default())
        .expect("producer");
    let mut frames = Frames::new();
    let mut enc = Encoder::new();
    let mut held: std::collections::VecDeque<(std::time::Instant, u64, Records)> =
        Default::default();
    loop {
        let _ = rx.recv_timeout(&mut frames, Duration::from_millis(10));
        for f in frames.iter() {
            if let Ok((seq, records)) = wire::decode(f.payload) {
                held.push_back((std::time::Instant::now(), seq, records));
            }
        }
        while held.front().is_some_and(|(t, _, _)| t.elapsed() >= delay) {
            let (_, seq, records) = held.pop_front().expect("front");
            let bytes = enc.encode(seq, &records).expect("encode").to_vec();
            let _ = tx.push_timeout(Tag::Result as u32, &bytes, Duration::from_secs(3600));
        }
    }
}

/// `deaf-drain`: drip-answers until the agent asks for a drain, then holds everything for ever.
fn deaf_drain(rings: &Rings, delay: Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DRAINING: AtomicBool = AtomicBool::new(false);
    std::thread::spawn(|| {
        loop {
            match recv() {
                Some(AgentMsg::Heartbeat { seq }) => send(&PluginMsg::HeartbeatAck { seq }),
                Some(AgentMsg::Drain {}) => DRAINING.store(true, Ordering::SeqCst),
                _ => {} // shutdown included: it is deaf
            }
        }
    });
    let mut rx = rings
        .input
        .consumer(WaitOptions::default())
        .expect("consumer");
    let mut tx = rings
        .output
        .producer(WaitOptions::default())
        .expect("producer");
    let mut frames = Frames::new();
    let mut enc = Encoder::new();
    let mut held: std::collections::VecDeque<(std::time::Instant, u64, Records)> =
        Default::default();
    let mut told = false;
    loop {
        let _ = rx.recv_timeout(&mut frames, Duration::from_millis(10));
        for f in frames.iter() {
            if let Ok((seq, records)) = wire::decode(f.payload) {
                held.push_back((std::time::Instant::now(), seq, records));
            }
        }
        if DRAINING.load(Ordering::SeqCst) {
            if !told {
                told = true;
                println!("RAW drain ignored holding={}", held.len());
            }
            continue;
        }
        while held.front().is_some_and(|(t, _, _)| t.elapsed() >= delay) {
            let (_, seq, records) = held.pop_front().expect("front");
            let bytes = enc.encode(seq, &records).expect("encode").to_vec();
            let _ = tx.push_timeout(Tag::Result as u32, &bytes, Duration::from_secs(3600));
        }
    }
}

fn main() {
    let attack = std::env::args().nth(1).unwrap_or_else(|| "honest".into());
    if attack == "long-version" {
        hello(format!(
            "1.0\x1b[1;31m\x1b]0;owned\x07\r{}",
            "v".repeat(60_000)
        ));
        let _ = recv();
        std::thread::sleep(Duration::from_secs(3600));
        return;
    }
    hello("1.0.0".into());
    let Some(AgentMsg::Welcome {
        config, data_path, ..
    }) = recv()
    else {
        std::process::exit(1);
    };
    send(&PluginMsg::Ready {});
    if attack == "verb-flood" {
        VERB_FLOOD.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if attack != "deaf-drain" {
        heartbeats();
    }
    println!("RAW {attack} started");
    let rings = data_path.map(open_rings);
    let cfg: Value = config;
    match (attack.as_str(), rings) {
        ("deaf-drain", Some(r)) => deaf_drain(
            &r,
            Duration::from_millis(cfg["delay_ms"].as_u64().unwrap_or(300)),
        ),
        ("partial-flood", Some(r)) => {
            let mut rx = r.input.consumer(WaitOptions::default()).expect("consumer");
            let mut tx = r.output.producer(WaitOptions::default()).expect("producer");
            let mut frames = Frames::new();
            let (seq, records) = loop {
                let _ = rx.recv_timeout(&mut frames, Duration::from_millis(100));
                if let Some(b) = frames.iter().find_map(|f| wire::decode(f.payload).ok()) {
                    break b;
                }
            };
            let bytes = Encoder::new()
                .encode(seq, &records)
                .expect("encode")
                .to_vec();
            loop {
                let _ = tx.push_timeout(Tag::Partial as u32, &bytes, Duration::from_secs(3600));
            }
        }
        ("amplify", Some(r)) => {
            let factor = cfg["factor"].as_u64().unwrap_or(10_000) as usize;
            serve_batches(&r, |seq, records, enc| {
                let big = repeat(&records, factor);
                match enc.encode(seq, &big) {
                    Ok(b) if b.len() <= r.output.max_frame() => vec![(Tag::Result, b.to_vec())],
                    _ => big
                        .split(1000)
                        .into_iter()
                        .map(|p| (Tag::Partial, enc.encode(seq, &p).expect("encode").to_vec()))
                        .collect(),
                }
            })
        }
        ("no-consume", Some(_r)) => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        ("rewind" | "close-input", Some(r)) => {
            // Answer the first batch, then stop reading and break the input ring's header.
            let mut rx = r.input.consumer(WaitOptions::default()).expect("consumer");
            let mut tx = r.output.producer(WaitOptions::default()).expect("producer");
            let mut frames = Frames::new();
            let (seq, records) = loop {
                let _ = rx.recv_timeout(&mut frames, Duration::from_millis(100));
                if let Some(b) = frames.iter().find_map(|f| wire::decode(f.payload).ok()) {
                    break b;
                }
            };
            let bytes = Encoder::new()
                .encode(seq, &records)
                .expect("encode")
                .to_vec();
            let _ = tx.push_timeout(Tag::Result as u32, &bytes, Duration::from_secs(5));
            let head = header_word(srediag_plugin_sdk::control::TO_PLUGIN_FD, 128);
            let closed = header_word(srediag_plugin_sdk::control::TO_PLUGIN_FD, 136);
            loop {
                // SAFETY: words inside the shared header mapping; volatile, racing the agent.
                unsafe {
                    if attack == "rewind" {
                        std::ptr::write_volatile(head.cast::<u64>(), 0);
                    } else {
                        std::ptr::write_volatile(closed, 1);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        ("tiny-frames", Some(r)) => {
            let mut tx = r.output.producer(WaitOptions::default()).expect("producer");
            loop {
                while tx.try_stage(99, &[]).is_ok() {}
                tx.publish();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        ("wake-spam", Some(r)) => {
            let waiter = header_word(srediag_plugin_sdk::control::FROM_PLUGIN_FD, 192) as usize;
            std::thread::spawn(move || {
                loop {
                    // SAFETY: FUTEX_WAKE on a word of the shared header mapping.
                    unsafe {
                        libc::syscall(
                            libc::SYS_futex,
                            waiter as *mut u32,
                            libc::FUTEX_WAKE,
                            1,
                            0,
                            0,
                            0,
                        )
                    };
                }
            });
            serve_batches(&r, |seq, records, enc| {
                vec![(
                    Tag::Result,
                    enc.encode(seq, &records).expect("encode").to_vec(),
                )]
            })
        }
        ("enrich", Some(r)) => {
            let n = cfg["attr_bytes"].as_u64().unwrap_or(200) as usize;
            serve_batches(&r, |seq, records, enc| {
                let out = enrich(records, n);
                vec![(Tag::Result, enc.encode(seq, &out).expect("encode").to_vec())]
            })
        }
        ("split-lines", Some(r)) => serve_batches(&r, |seq, records, enc| {
            let out = split_lines(records);
            vec![(Tag::Result, enc.encode(seq, &out).expect("encode").to_vec())]
        }),
        ("drip", Some(r)) => drip(
            &r,
            Duration::from_millis(cfg["delay_ms"].as_u64().unwrap_or(1500)),
        ),
        ("escape-flood", r) => {
            std::thread::spawn(|| {
                use std::io::Write as _;
                let mut line = vec![0x01u8; 2000];
                line.push(b'\n');
                let out = std::io::stdout();
                let mut out = out.lock();
                loop {
                    if out.write_all(&line).is_err() {
                        return;
                    }
                }
            });
            match r {
                Some(r) => serve_batches(&r, |seq, records, enc| {
                    vec![(
                        Tag::Result,
                        enc.encode(seq, &records).expect("encode").to_vec(),
                    )]
                }),
                None => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
            }
        }
        ("error-flood", _) => loop {
            send(&PluginMsg::Error {
                message: format!("\x1b[2J{}", "e".repeat(60_000)),
            });
        },
        ("garbage-flood", _) => loop {
            send_raw(b"{\"type\": \"heartbeat_ack\", \"seq\": not json at all");
        },
        ("unexpected-flood", _) => loop {
            send(&PluginMsg::InvokeText {
                id: 7,
                text: "u".repeat(60_000),
            });
        },
        ("ack-flood", _) => {
            let mut seq = 1_000_000u64;
            loop {
                seq += 1;
                send(&PluginMsg::HeartbeatAck { seq });
            }
        }
        (_, Some(r)) => serve_batches(&r, |seq, records, enc| {
            vec![(
                Tag::Result,
                enc.encode(seq, &records).expect("encode").to_vec(),
            )]
        }),
        (_, None) => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}
