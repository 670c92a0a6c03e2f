//! The IPC latency observer against forgery, through the library API (`srediag::bpf`): this test
//! process plays the agent (its own probe sites carry the agent's uprobes), helper processes
//! (this test binary re-executed with `SREDIAG_IPC_HELPER=1`) play two plugins whose uprobes and
//! rings the test registers like the supervisor does. The helpers call the SDK's probe sites
//! with whatever ring ids and sequence numbers the test tells them, as a hostile plugin can.
//!
//! - One plugin flooding publishes on its own ring cannot evict another ring's pending publish
//!   (each ring has its own slots).
//! - Hits from a process that is not the ring's publisher (for publish) or consumer (for
//!   consume) are dropped and counted per plugin (`srediag_bpf_ipc_forged_probes_total`); the
//!   victim's histogram does not move.
//!
//! Privileged (root, kernel BTF): without them the test prints why and passes, except under
//! `CI=true`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use srediag::bpf::{Observers, Options};

/// The SDK's probe sites (publish, consume), kept in this binary: the agent's uprobes attach to
/// them in `/proc/self/exe`, the helpers' to the same functions in their process.
#[used]
static PROBE_SITES: [extern "C" fn(u64, u64, u64); 2] = srediag::bpf::PROBE_SITES;

fn srediag_probe_publish(ring: u64, seq: u64, items: u64) {
    PROBE_SITES[0](ring, seq, items);
}

fn srediag_probe_consume(ring: u64, seq: u64, items: u64) {
    PROBE_SITES[1](ring, seq, items);
}

const HELPER_ENV: &str = "SREDIAG_IPC_HELPER";

fn privileged(test: &str) -> bool {
    let euid = rustix::process::geteuid().as_raw();
    let reason = if euid != 0 {
        format!("not root (euid {euid})")
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        "no kernel BTF (/sys/kernel/btf/vmlinux)".to_owned()
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {reason} (CI=true requires a privileged run)");
    }
    println!("skipped {test}: {reason}");
    false
}

/// The helper: one command per stdin line, `ok` on stdout after each.
/// `pub RING SEQ`, `con RING SEQ`, `flood RING FROM N` (publishes seqs FROM..FROM+N).
#[test]
fn helper_process() {
    if std::env::var(HELPER_ENV).is_err() {
        return;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "SREDIAG:ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        let n = |i: usize| w[i].parse::<u64>().unwrap();
        match w.first().copied() {
            Some("pub") => srediag_probe_publish(n(1), n(2), 1),
            Some("con") => srediag_probe_consume(n(1), n(2), 1),
            Some("flood") => {
                for s in n(2)..n(2) + n(3) {
                    srediag_probe_publish(n(1), s, 1);
                }
            }
            _ => std::process::exit(0),
        }
        writeln!(out, "SREDIAG:ok").unwrap();
        out.flush().unwrap();
    }
    std::process::exit(0);
}

/// A helper process ("plugin"): killed and reaped on drop.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn() -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take().unwrap();
        let mut h = Helper {
            child,
            stdin,
            stdout,
        };
        h.expect("ready");
        h
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn expect(&mut self, key: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "helper {} exited before printing {key}", self.pid());
            if line.contains(&format!("SREDIAG:{key}")) {
                return;
            }
        }
    }

    /// Runs one command in the helper and waits until it is done.
    fn run(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.expect("ok");
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(to_plugin, from_plugin)` sample counts of plugin `name`.
fn counts(obs: &Observers, name: &str) -> (u64, u64) {
    let h = obs.ipc_histograms(obs.plugin_id(name).unwrap());
    let c = |d: &str| h.get(d).map(|h| h.count).unwrap_or(0);
    (c("to_plugin"), c("from_plugin"))
}

/// The value of the series `name{labels}` in the registry's exposition (0 when absent).
fn series(registry: &prometheus::Registry, name: &str, labels: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let head = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[test]
fn a_plugin_cannot_forge_or_evict_another_plugins_ipc_samples() {
    if !privileged("a_plugin_cannot_forge_or_evict_another_plugins_ipc_samples") {
        return;
    }
    let obs = Observers::load(Options::default());
    let up = obs.status().into_iter().find(|s| s.name == "ipc_latency");
    assert!(up.as_ref().is_some_and(|s| s.up), "{up:?}");
    let registry = prometheus::Registry::new();
    obs.register_metrics(&registry).unwrap();

    let mut honest = Helper::spawn();
    let mut forger = Helper::spawn();
    // Ring ids as the agent hands them out: (to_plugin, from_plugin) per incarnation.
    let (h_to, h_from, f_to, f_from) = (11u64, 12u64, 21u64, 22u64);
    for (name, h, to, from) in [
        ("honest", &honest, h_to, h_from),
        ("forger", &forger, f_to, f_from),
    ] {
        let id = obs.plugin_id(name).unwrap();
        obs.register(id, name, &[h.pid()]).unwrap();
        obs.ipc_attach(name, h.pid(), to, from)
            .unwrap_or_else(|e| panic!("ipc_attach {name}: {e}"));
    }

    // The honest round trip: agent publishes, plugin consumes; plugin publishes, agent consumes.
    srediag_probe_publish(h_to, 1, 1);
    honest.run(&format!("con {h_to} 1"));
    honest.run(&format!("pub {h_from} 1"));
    srediag_probe_consume(h_from, 1, 1);
    assert_eq!(counts(&obs, "honest"), (1, 1));

    // Eviction: a batch of the honest plugin is in flight (published, not yet consumed) while
    // the forger publishes 3 × 8192 sequence numbers on its own plugin→agent ring (where it
    // is the legitimate publisher). The honest batch's publish must still be there.
    srediag_probe_publish(h_to, 2, 1);
    forger.run(&format!("flood {f_from} 1000 24576"));
    honest.run(&format!("con {h_to} 2"));
    assert_eq!(
        counts(&obs, "honest"),
        (2, 1),
        "the honest plugin's pending publish was evicted by another plugin's publishes"
    );

    // Forgery: the forger publishes and, 20 ms later, consumes on the honest plugin's rings
    // (both sites wrong for it), and publishes on its own agent→plugin ring (the agent is its
    // publisher). Nothing reaches a histogram; every hit is counted as forged, for the forger.
    let forged_before = series(
        &registry,
        "srediag_bpf_ipc_forged_probes_total",
        "plugin=\"forger\"",
    );
    for s in 100..110 {
        forger.run(&format!("pub {h_to} {s}"));
        forger.run(&format!("pub {h_from} {s}"));
    }
    std::thread::sleep(Duration::from_millis(20));
    for s in 100..110 {
        forger.run(&format!("con {h_to} {s}"));
        forger.run(&format!("con {h_from} {s}"));
    }
    forger.run(&format!("pub {f_to} 7"));
    assert_eq!(counts(&obs, "honest"), (2, 1), "forged samples counted");
    let forged = series(
        &registry,
        "srediag_bpf_ipc_forged_probes_total",
        "plugin=\"forger\"",
    ) - forged_before;
    assert_eq!(forged, 41.0, "forged hits counted for the forger");
    assert_eq!(
        series(
            &registry,
            "srediag_bpf_ipc_forged_probes_total",
            "plugin=\"honest\""
        ),
        0.0
    );

    // The honest plugin still measures.
    srediag_probe_publish(h_to, 3, 1);
    honest.run(&format!("con {h_to} 3"));
    assert_eq!(counts(&obs, "honest"), (3, 1));
    obs.ipc_detach("honest", None);
    obs.ipc_detach("forger", None);
}
