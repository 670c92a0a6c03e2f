//! Issue 11 against the running agent: a client of the OTLP/HTTP receiver that declares 10 GiB
//! or sends its headers a byte per second, 5,000 idle connections on the admin socket, and a
//! trust policy another user owns.

use prost::Message as _;
use srediag_tests::plugins::*;
use srediag_tests::*;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

fn otlp_config(tel: u16, otlp: u16, extra: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{otlp}\n{extra}exporters:\n  debug: {{}}\nservice:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{tel}\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"
    )
}

/// Reads until the peer closes (EOF or reset) or `limit` passes; the time it took, or `None`
/// when the connection was still open at `limit`. `tick` runs between reads (e.g. to send a
/// byte); a failing write also means closed.
fn closed_within(
    s: &mut TcpStream,
    limit: Duration,
    mut tick: impl FnMut(&mut TcpStream) -> std::io::Result<()>,
) -> Option<(Duration, Vec<u8>)> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some((t0.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some((t0.elapsed(), got)),
        }
        if tick(s).is_err() {
            return Some((t0.elapsed(), got));
        }
    }
    None
}

/// Issue 11 point 11: `Content-Length: 10737418240` with a 3-byte body is answered 413 at once
/// and the connection closed; headers sent a byte per second, and an idle kept-alive
/// connection, are cut off after `read_header_timeout` (default 10 s); a normal request works.
#[test]
fn otlp_refuses_declared_giants_and_cuts_off_slow_headers() {
    let dir = TempDir::new().unwrap();
    let (tel, otlp) = (free_port(), free_port());
    let agent = Agent::start(dir.path(), &otlp_config(tel, otlp, ""), tel);
    let addr = format!("127.0.0.1:{otlp}");

    // The slow ones start first: they run while the rest of the test does.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(&addr).unwrap();
    let empty = logs_request("r", "idle", 0..1, 0).encode_to_vec();
    idle.write_all(
        format!(
            "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            empty.len()
        )
        .as_bytes(),
    )
    .unwrap();
    idle.write_all(&empty).unwrap();
    let slow_thread = std::thread::spawn(move || {
        let mut last = Instant::now() - Duration::from_secs(1);
        closed_within(&mut slow, Duration::from_secs(15), |s| {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                s.write_all(b"X")?; // one header byte per second
            }
            Ok(())
        })
    });
    let idle_thread =
        std::thread::spawn(move || closed_within(&mut idle, Duration::from_secs(15), |_| Ok(())));

    // Declared 10 GiB, 3 bytes sent.
    let mut giant = TcpStream::connect(&addr).unwrap();
    giant
        .write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 10737418240\r\n\r\nabc")
        .unwrap();
    let giant = closed_within(&mut giant, Duration::from_secs(10), |_| Ok(()));

    // A normal request still works.
    let status = post_protobuf(
        &http(),
        &format!("http://{addr}/v1/logs"),
        &logs_request("r", "ok", 0..3, 0),
    );
    assert_eq!(status, 200);

    let slow = slow_thread.join().unwrap();
    let (slow_took, _) = slow.expect("a header sent a byte per second was still open after 15 s");
    assert!(
        slow_took >= Duration::from_secs(8),
        "cut off before the header timeout: {slow_took:?}"
    );
    let idle = idle_thread.join().unwrap();
    let (idle_took, idle_answer) =
        idle.expect("an idle kept-alive connection was still open after 15 s");
    assert!(
        String::from_utf8_lossy(&idle_answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&idle_answer)
    );
    let (took, answer) = giant.expect("a 10 GiB declaration kept the connection open for 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(2), "413 and close took {took:?}");
    eprintln!("declared 10 GiB: 413 and closed after {took:?}");
    // The 413 is counted.
    let errors = agent.counter(
        "srediag_component_errors_total",
        &[("kind", "receiver"), ("component", "otlp")],
    );
    assert_eq!(errors, 1.0);
    eprintln!("slow header closed after {slow_took:?}; idle keep-alive closed after {idle_took:?}");
}

/// The body counterpart: headers complete, body trickling: 408 and closed after `read_timeout`.
#[test]
fn otlp_cuts_off_a_slow_body() {
    let dir = TempDir::new().unwrap();
    let (tel, otlp) = (free_port(), free_port());
    let extra = "        read_timeout: 2s\n";
    let cfg = otlp_config(tel, otlp, "").replace(
        &format!("endpoint: 127.0.0.1:{otlp}\n"),
        &format!("endpoint: 127.0.0.1:{otlp}\n{extra}"),
    );
    let _agent = Agent::start(dir.path(), &cfg, tel);
    let mut s = TcpStream::connect(format!("127.0.0.1:{otlp}")).unwrap();
    s.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let mut last = Instant::now();
    let (took, answer) = closed_within(&mut s, Duration::from_secs(10), |s| {
        if last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            s.write_all(b"x")?;
        }
        Ok(())
    })
    .expect("a trickling body kept the connection open for 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&took),
        "{took:?}"
    );
}

fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Raises this process's open-file limit to `n` (the hard limit allows it as root).
fn raise_nofile(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Whether the agent closed our end (EOF or reset); `false` while it is open.
fn peer_closed(s: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    s.set_nonblocking(true).unwrap();
    match (&*s).read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

const ADMIN_CONNECTIONS: usize = 5000;
/// Stated bound on the agent's RSS growth while 5,000 idle admin connections are attempted.
const ADMIN_RSS_BOUND: u64 = 16 << 20;

/// Issue 11 point 10: 5,000 idle root connections to the admin socket. The agent keeps at most
/// 64 (the rest are closed, counted), its RSS grows less than 16 MiB, `srediag plugin list`
/// still answers while they are held, and an idle connection is closed after the 5 s request
/// timeout.
#[test]
fn admin_socket_bounds_idle_connections() {
    if !privileged("admin_socket_bounds_idle_connections") {
        return;
    }
    let _serial = serial();
    raise_nofile(ADMIN_CONNECTIONS as u64 + 1024);
    let dir = TempDir::new().unwrap();
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let plugins = format!(
        "  tp:\n    path: {}\n    type: processor\n    config: {{mode: serve}}\n    shutdown_grace: 2s",
        plugin_bin("srediag-test-plugin").display()
    );
    let agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    wait_state(&admin, "tp", &["ready"], Duration::from_secs(20));
    let before = rss_bytes(agent.pid());
    let t0 = Instant::now();
    let conns: Vec<UnixStream> = (0..ADMIN_CONNECTIONS)
        .map(|i| UnixStream::connect(&admin).unwrap_or_else(|e| panic!("connect {i}: {e}")))
        .collect();
    eprintln!("{ADMIN_CONNECTIONS} connections in {:?}", t0.elapsed());
    let open = poll_until(
        Duration::from_secs(20),
        "the agent to keep at most 64 admin connections",
        || {
            let open = conns.iter().filter(|s| !peer_closed(s)).count();
            (open <= 64).then_some(open)
        },
    );
    // The operator is not locked out while the attacker holds its connections.
    let list = plugin_list(&admin);
    assert_eq!(list.len(), 1);
    let after = rss_bytes(agent.pid());
    let grew = after.saturating_sub(before);
    eprintln!(
        "agent RSS {before} -> {after} bytes (+{grew}); {open} of {ADMIN_CONNECTIONS} connections open"
    );
    assert!(
        grew < ADMIN_RSS_BOUND,
        "RSS grew {grew} bytes, more than {ADMIN_RSS_BOUND}"
    );
    let closed = |reason: &str| {
        agent.counter(
            "srediag_admin_connections_closed_total",
            &[("reason", reason)],
        )
    };
    assert!(
        closed("evicted") + closed("limit") >= (ADMIN_CONNECTIONS - 64) as f64,
        "evicted {} limit {}",
        closed("evicted"),
        closed("limit")
    );
    drop(conns);
    // An idle connection is closed after the request timeout (5 s), and counted.
    let idle = UnixStream::connect(&admin).unwrap();
    let t0 = Instant::now();
    poll_until(
        Duration::from_secs(10),
        "the idle connection to be closed",
        || peer_closed(&idle).then_some(()),
    );
    let took = t0.elapsed();
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(8)).contains(&took),
        "idle connection closed after {took:?}"
    );
    assert!(closed("timeout") >= 1.0);
    assert!(agent.metric("srediag_admin_connections", &[]).is_some());
}

/// Issue 11 point 4 through the agent: a trust policy owned by `nobody` and writable by all,
/// saying `allow_unsigned: true`, is refused (SRD-P017 naming the file and the problem), no
/// plugin process exists; once root owns it and it is 0644, `plugin restart` loads the plugin.
#[test]
fn agent_refuses_a_policy_another_user_owns() {
    if !privileged("agent_refuses_a_policy_another_user_owns") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let policy = dir.path().join("trust.yaml");
    std::fs::write(&policy, "allow_unsigned: true\n").unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&policy, Some(65534), Some(65534)).unwrap();
    let tel = free_port();
    let admin = dir.path().join("admin.sock");
    let plugins = format!(
        "  tp:\n    path: {}\n    type: processor\n    config: {{mode: serve}}\n    shutdown_grace: 2s",
        plugin_bin("srediag-test-plugin").display()
    );
    let _agent = start_agent(
        dir.path(),
        &agent_config(&admin, tel, &plugins),
        tel,
        &admin,
    );
    let st = wait_state(&admin, "tp", &["rejected"], Duration::from_secs(20));
    let err = st["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("SRD-P017")
            && err.contains(&policy.display().to_string())
            && err.contains("owned by uid 65534"),
        "{err}"
    );
    assert!(st["pid"].is_null(), "{st}");
    // Fixed: root-owned, 0644.
    std::os::unix::fs::chown(&policy, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    restart(&admin, "tp");
    wait_state(&admin, "tp", &["ready"], Duration::from_secs(20));
}

fn restart(admin: &Path, name: &str) {
    let out = srediag(
        &[
            "plugin",
            "restart",
            name,
            "--socket",
            &admin.display().to_string(),
        ],
        Duration::from_secs(15),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
}
