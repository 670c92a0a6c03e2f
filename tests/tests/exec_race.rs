//! Issue 5, "execute exactly what was verified": while a bundle is verified and started, another
//! thread keeps replacing its binary — renaming a different file over it and rewriting it in
//! place — and every process that runs must be running the verified bytes.
//!
//! Each iteration runs the agent's real path in-process: `verify_bundle_dir` (openat2 beneath the
//! bundle fd, copy into a memfd while hashing, seal, read back, compare with the signed digest;
//! the policy trusts a P-256 key and the bundle carries a signature) and then, in a forked child,
//! `sandbox::exec::exec_fd` — the helper's own `execveat(5, "", …, AT_EMPTY_PATH)` — of that
//! memfd. The program is a 173-byte static x86-64 ELF built here, so 10,000 iterations fit in
//! the time budget (a full sandboxed plugin start costs ~30 ms). The child writes one byte once it
//! runs; the test then hashes `/proc/<pid>/exe` — the image the kernel is executing — and checks
//! it against the signed `sha256`, and checks the exit status the good program returns (the
//! attacker's variant exits 7). Replacing the binary by path between check and exec (an
//! `execve(path)` loader, or re-opening the path) fails this test: with the child's exec swapped
//! for `execve(<bundle>/bin/race)` it failed at iteration 17.

use srediag::plugins::sandbox::exec::exec_fd;
use srediag::plugins::sandbox::spec::PROGRAM_FD;
use srediag::plugins::trust::manifest::Manifest;
use srediag::plugins::trust::policy::{KeyEntry, PolicyFile, TrustPolicy};
use srediag::plugins::trust::{keys, sign_statement, verify_bundle_dir};
use std::io::Read as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 10_000;

/// A static x86-64 ELF: write(1, "x", 1); read(0, buf, 1); exit(code).
fn tiny_elf(code: u8) -> Vec<u8> {
    let mut text: Vec<u8> = vec![
        0xb8, 0x01, 0x00, 0x00, 0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x35, 0x23, 0x00,
        0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x31, 0xc0, 0x31, 0xff, 0x48, 0x8d,
        0x74, 0x24, 0xf0, 0xba, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x3c, 0x00, 0x00, 0x00,
        0xbf, 0x42, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x78,
    ];
    text[46] = code;
    let base: u64 = 0x40_0000;
    let hdr = 64 + 56;
    let total = (hdr + text.len()) as u64;
    let mut e = Vec::new();
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(base + hdr as u64).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&base.to_le_bytes()); // vaddr
    e.extend_from_slice(&base.to_le_bytes()); // paddr
    e.extend_from_slice(&total.to_le_bytes()); // filesz
    e.extend_from_slice(&total.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(&text);
    e
}

/// Writes an executable file (mode 0755, as a bundle's entrypoint is), so that a loader that
/// executed the path instead of the verified memfd would run the attacker's bytes.
fn write_exe(p: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(p)?;
    std::io::Write::write_all(&mut f, bytes)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds owned here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn skip_reason() -> Option<String> {
    if std::env::consts::ARCH != "x86_64" {
        return Some(format!(
            "the test program is an x86-64 ELF; this is {}",
            std::env::consts::ARCH
        ));
    }
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (the agent's bundle reader and rollback state are root-only; CI runs it as root)".into());
    }
    None
}

#[test]
fn the_running_binary_is_always_the_verified_one() {
    if let Some(why) = skip_reason() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true never skips: {why}"
        );
        eprintln!("skipping the_running_binary_is_always_the_verified_one: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny_elf(0);
    let evil = tiny_elf(7);
    let good_hex = keys::hex(&keys::sha256(&good));
    assert_ne!(good_hex, keys::hex(&keys::sha256(&evil)));

    // A signed bundle: manifest + detached key signature (what `srediag plugin sign` writes).
    let bundle = tmp.path().join("race");
    std::fs::create_dir_all(bundle.join("bin")).unwrap();
    write_exe(&bundle.join("bin/race"), &good).unwrap();
    let manifest = format!(
        "api_version: srediag.io/plugin/v1\nname: race\ntype: processor\nversion: 1.0.0\nentrypoint: bin/race\nsha256: {good_hex}\nrequires: {{srediag: \">=0.1\", ipc_protocol: 1, schema_version: 1}}\nfiles:\n  bin/race: {{sha256: {good_hex}}}\n"
    );
    std::fs::write(bundle.join("manifest.yaml"), &manifest).unwrap();
    let key = keys::P256SigningKey::from_slice(&[7u8; 32]).unwrap();
    let m = Manifest::parse(manifest.as_bytes()).unwrap();
    std::fs::write(
        bundle.join("manifest.sig"),
        sign_statement(&key, &m.statement()),
    )
    .unwrap();
    let policy = TrustPolicy::from_file(
        PolicyFile {
            keys: vec![KeyEntry {
                name: "race".into(),
                pem: Some(keys::public_pem(&key)),
                path: None,
            }],
            ..Default::default()
        },
        tmp.path(),
        &tmp.path().join("trust.yaml"),
    )
    .unwrap();
    let host = srediag::plugins::loader::host_info();

    // The attacker: outside the bundle (a temp file inside would be an unlisted file), same
    // filesystem so rename(2) works.
    let stage = tmp.path().join("stage");
    std::fs::create_dir(&stage).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let target = bundle.join("bin/race");
        let (good, evil) = (good.clone(), evil.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (renamed, written) = if i.is_multiple_of(2) {
                    (&evil, &good)
                } else {
                    (&good, &evil)
                };
                // Rename a fresh file over the binary…
                let t = stage.join(format!("r{}", i % 4));
                if write_exe(&t, renamed).is_ok() {
                    let _ = std::fs::rename(&t, &target);
                }
                // …then rewrite it in place (same inode, same length).
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&target) {
                    let _ = f.write_all_at(written, 0);
                }
                swaps.fetch_add(2, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    let argv0 = c"race";
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    let start = Instant::now();
    let (mut verified, mut rejected) = (0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for it in 0..ITERATIONS {
        let (r, _) = verify_bundle_dir(&bundle, &policy, &host, None);
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                rejected += 1;
                *reasons.entry(e.status.as_str().to_string()).or_default() += 1;
                continue;
            }
        };
        verified += 1;
        assert_eq!(
            v.entrypoint.sha256_hex(),
            good_hex,
            "verified bundle's memfd digest"
        );
        let (out_r, out_w) = pipe();
        let (in_r, in_w) = pipe();
        let memfd = v.entrypoint.fd().as_raw_fd();
        let (o, i) = (out_w.as_raw_fd(), in_r.as_raw_fd());
        // SAFETY: the child only makes raw syscalls (dup2, execveat via exec_fd, _exit) on fds
        // and C strings prepared before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                if libc::dup2(o, 1) < 0 || libc::dup2(i, 0) < 0 || libc::dup2(memfd, PROGRAM_FD) < 0
                {
                    libc::_exit(120);
                }
            }
            let _ = exec_fd(PROGRAM_FD, &argv, &envp);
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(121) }
        }
        drop(out_w);
        drop(in_r);
        let mut out = std::fs::File::from(out_r);
        let mut b = [0u8; 1];
        let running = out.read_exact(&mut b).is_ok() && b[0] == b'x';
        let exe = std::fs::read(format!("/proc/{pid}/exe"));
        drop(std::fs::File::from(in_w)); // lets the program exit
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        match exe {
            Ok(bytes) if running && keys::hex(&keys::sha256(&bytes)) == good_hex && code == Some(0) => {}
            Ok(bytes) => failures.push(format!(
                "iteration {it}: running={running} exe sha256 {} (verified {good_hex}), exit {code:?}",
                keys::hex(&keys::sha256(&bytes))
            )),
            Err(e) => failures.push(format!(
                "iteration {it}: running={running} /proc/{pid}/exe: {e}, exit {code:?}"
            )),
        }
        if failures.len() > 10 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();
    let took = start.elapsed();
    println!(
        "{} iterations in {took:.1?}: {verified} verified and executed, {rejected} rejected ({reasons:?}), {} replacements of the binary",
        verified + rejected,
        swaps.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "a process ran something other than the verified binary:\n{}",
        failures.join("\n")
    );
    assert_eq!(verified + rejected, ITERATIONS);
    // The race must be real in both directions: the attacker won some verifications (content
    // changed under the reader) and lost others (runs happened while it kept writing).
    assert!(
        verified >= 100,
        "only {verified} of {ITERATIONS} verifications succeeded: the test did not exercise exec"
    );
    assert!(
        rejected >= 100,
        "only {rejected} of {ITERATIONS} verifications were rejected: the attacker did not race"
    );
    assert!(
        took < Duration::from_secs(120),
        "took {took:?}; keep the race test within the CI budget"
    );
}

#[test]
fn tiny_program_runs_from_a_sealed_memfd() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping tiny_program_runs_from_a_sealed_memfd: {why}");
        return;
    }
    // Sanity of the test program itself: run straight from a file, it prints "x" and exits 7.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("evil");
    std::fs::write(&p, tiny_elf(7)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&p)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"x");
    assert_eq!(out.status.code(), Some(7));
}
