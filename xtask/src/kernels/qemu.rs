//! Boots a kernel with the initramfs under QEMU (TCG: nested KVM does not work on this machine
//! kind) and collects what the guest reports: the first serial port is the console (kernel log
//! and every item's output → `console.log`), the second carries the runner's JSON lines
//! (→ `results.jsonl`), so kernel messages (soft lockups, OOM reports) never corrupt the results.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::runner::Record;

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub smp: u32,
    pub memory_mib: u32,
    /// Added to `console=ttyS0 panic=-1 quiet`.
    pub append: Option<&'a str>,
    pub console: PathBuf,
    pub results: PathBuf,
    /// The guest is killed past this.
    pub timeout: Duration,
}

/// How the boot ended.
pub struct Ended {
    pub wall: Duration,
    /// Killed at the timeout (else the guest powered off).
    pub killed: bool,
}

/// The QEMU command line.
pub fn command(b: &Boot<'_>) -> Command {
    let mut append = "console=ttyS0 panic=-1 quiet".to_string();
    if let Some(a) = b.append {
        append.push(' ');
        append.push_str(a);
    }
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-machine", "q35", "-accel", "tcg", "-cpu", "max"])
        .arg("-smp")
        .arg(b.smp.to_string())
        .arg("-m")
        .arg(b.memory_mib.to_string())
        .args(["-nographic", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initrd)
        .arg("-append")
        .arg(append)
        .arg("-serial")
        .arg(format!("file:{}", b.console.display()))
        .arg("-serial")
        .arg(format!("file:{}", b.results.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// Boots, calls `progress` with each record as the guest writes it, returns when the guest
/// powered off or was killed at the timeout.
pub fn boot(b: &Boot<'_>, mut progress: impl FnMut(&Record)) -> Result<Ended> {
    let _ = std::fs::remove_file(&b.console);
    let _ = std::fs::remove_file(&b.results);
    let mut c = command(b);
    let stderr_path = b.console.with_extension("qemu-stderr");
    c.stderr(std::fs::File::create(&stderr_path)?);
    println!("$ {}", crate::show(&c));
    let t0 = Instant::now();
    let mut child = c
        .spawn()
        .context("qemu-system-x86_64 (package qemu-system-x86)")?;
    let mut seen = 0usize;
    let mut poll = |final_read: bool| {
        let text = std::fs::read_to_string(&b.results).unwrap_or_default();
        // Complete lines only (the last one may still be arriving), unless the guest is gone.
        let complete = if final_read {
            text.as_str()
        } else {
            &text[..text.rfind('\n').map_or(0, |i| i + 1)]
        };
        let lines: Vec<&str> = complete.lines().collect();
        for l in &lines[seen.min(lines.len())..] {
            if let Ok(r) = serde_json::from_str::<Record>(l.trim()) {
                progress(&r);
            }
        }
        seen = lines.len();
    };
    let killed = loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                eprintln!("kernels: qemu exited {st}: {}", err.trim());
            }
            break false;
        }
        if t0.elapsed() > b.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        poll(false);
        std::thread::sleep(Duration::from_millis(500));
    };
    poll(true);
    Ok(Ended {
        wall: t0.elapsed(),
        killed,
    })
}

/// Kernel complaints in a console log worth a column: soft lockups and RCU stalls.
pub fn lockups(console: &str) -> usize {
    console
        .lines()
        .filter(|l| l.contains("soft lockup") || l.contains("self-detected stall"))
        .count()
}
