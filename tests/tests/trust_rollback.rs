//! The rollback state survives `kill -9` mid-write: a child process raises a plugin's
//! high-water mark in a tight loop (each raise is an atomic replace of the state file) and is
//! SIGKILLed at varying moments; every time, the file must parse and hold a mark the child
//! had reached, never a torn or empty file.

use srediag::plugins::trust::rollback::{Mark, RollbackStore, State, Version, write_atomic};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SREDIAG_TRUST_ROLLBACK_CHILD";

/// In the child: raise the mark forever (the parent kills it).
#[test]
fn rollback_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut store = RollbackStore::open(std::path::Path::new(&path)).expect("open");
    let start = store
        .state()
        .plugins
        .get("p")
        .map_or(0, |m| Version::parse(&m.version).map_or(0, |v| v.patch));
    for patch in start + 1.. {
        let v = Version::new(1, 0, patch);
        store
            .record("p", &v, &format!("sha256:{patch:064x}"))
            .expect("record");
    }
}

#[test]
fn state_survives_sigkill_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin-versions.json");
    // Many other plugins' marks make each write ~200 KiB, so a non-atomic writer would be
    // caught mid-write.
    let mut state = State {
        format: 1,
        plugins: Default::default(),
    };
    for i in 0..2000 {
        state.plugins.insert(
            format!("other-{i:04}"),
            Mark {
                version: "3.2.1".into(),
                digest: format!("sha256:{i:064x}"),
            },
        );
    }
    write_atomic(&path, &serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last = 0u64;
    for round in 0..15u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "rollback_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it write for a varying while, then SIGKILL.
        let deadline = Instant::now() + Duration::from_millis(40 + round * 15);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let store = RollbackStore::open(&path)
            .unwrap_or_else(|e| panic!("round {round}: state unreadable after kill -9: {e}"));
        assert_eq!(
            store.state().plugins.len(),
            2000 + usize::from(store.state().plugins.contains_key("p")),
            "other marks intact"
        );
        let Some(mark) = store.state().plugins.get("p").cloned() else {
            continue;
        };
        let v = Version::parse(&mark.version).unwrap();
        assert_eq!(
            mark.digest,
            format!("sha256:{:064x}", v.patch),
            "version and digest come from one write"
        );
        assert!(v.patch >= last, "the mark went down: {} < {last}", v.patch);
        last = v.patch;
    }
    assert!(last > 0, "the child never wrote");
    println!("final mark 1.0.{last} after 15 SIGKILLs");
}
