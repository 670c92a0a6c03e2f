//! Filters over an exec: a plugin process execs under its profile (the dynamic loader, libtest,
//! std threads and tokio all run after the filter is installed).

use std::ffi::CString;

use super::super::{Action, Options, compile};
use super::child;
use super::profiles_with_widest_options;

#[test]
fn exec_of_a_glibc_binary_works_under_every_profile() {
    let truth = c"/bin/true";
    for (name, opts) in profiles_with_widest_options() {
        for action in [Action::Errno, Action::Kill] {
            let filter = compile(name, action, &opts).unwrap();
            let (o, out) = child::exec(&filter, &[truth], &[]);
            assert_eq!(o.exit_code(), Some(0), "{name} {action:?}: {o:?} {out}");
        }
    }
}

/// The env var that turns [`exec_probe_target`] from a no-op into the probe.
const PROBE_ENV: &str = "SREDIAG_SECCOMP_EXEC_PROBE";

#[test]
fn exec_of_a_threaded_rust_tokio_binary_works_under_the_processor_profile() {
    // Re-executes this test binary (a Rust program: libtest harness, std threads, tokio) under the
    // filter with the kill action, running only exec_probe_target.
    let exe = CString::new(
        std::env::current_exe()
            .unwrap()
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let test = CString::new(format!(
        "{}::exec_probe_target",
        module_path!().trim_start_matches("srediag_sandbox::")
    ))
    .unwrap();
    let env = CString::new(format!("{PROBE_ENV}=1")).unwrap();
    let argv = [
        exe.as_c_str(),
        c"--exact",
        test.as_c_str(),
        c"--test-threads=1",
        c"--nocapture",
    ];
    for name in ["processor", "base"] {
        let filter = compile(name, Action::Kill, &Options::default()).unwrap();
        let (o, out) = child::exec(&filter, &argv, &[env.as_c_str()]);
        assert_eq!(o.exit_code(), Some(0), "{name}: {o:?}\n{out}");
        assert!(
            out.contains("seccomp exec probe ok"),
            "{name}: the probe did not run:\n{out}"
        );
    }
}

#[test]
fn exec_probe_target() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    // What a typical plugin does: a multi-threaded tokio runtime with timers and channels, std
    // threads, file reads, stdout.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sum = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        for i in 0..4u64 {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                tx.send(i).await.unwrap();
            });
        }
        drop(tx);
        let mut sum = 0;
        while let Some(i) = rx.recv().await {
            sum += i;
        }
        sum + tokio::task::spawn_blocking(|| 10).await.unwrap()
    });
    let t = std::thread::Builder::new()
        .name("probe".into())
        .spawn(|| 1)
        .unwrap();
    // std's io::copy from a file into an AF_UNIX socket pair (read/write here; std may also take
    // its sendfile/splice fast paths, which base allows).
    let (mut rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
    // /bin/true is smaller than the socket buffer, so the copy completes before the read.
    let mut elf = std::fs::File::open("/bin/true").unwrap();
    let size = elf.metadata().unwrap().len();
    assert!(size < 60_000, "{size}");
    let copied = std::io::copy(&mut elf, &mut tx).unwrap();
    tx.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut rx, &mut back).unwrap();
    assert_eq!(
        (copied, back.len() as u64, &back[..4]),
        (size, size, &b"\x7fELF"[..])
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    println!("seccomp exec probe ok: {}", sum + t.join().unwrap());
}
