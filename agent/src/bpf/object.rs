//! The embedded BPF object and attaching its programs: each hook exists as a `tp_btf` program
//! (typed arguments, cheapest) and a `raw_tp` program (no BTF attach target needed); the first
//! that loads and attaches wins. Neither needs tracefs (classic tracepoints would, and tracefs
//! is not mounted in every mount namespace), so srediag never mounts it.

use aya::programs::{BtfTracePoint, RawTracePoint};
use aya::{Btf, Ebpf};

/// `ebpf/observers.bpf.c`, compiled by `agent/build.rs`.
pub(super) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observers.bpf.o"));

/// One kernel hook and its two program variants in [`OBJECT`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Hook {
    /// Tracepoint name (`sched_switch`).
    pub tracepoint: &'static str,
    /// The `SEC("tp_btf/…")` program.
    pub tp_btf: &'static str,
    /// The `SEC("raw_tp/…")` program.
    pub raw_tp: &'static str,
}

pub(super) const SWITCH: Hook = Hook {
    tracepoint: "sched_switch",
    tp_btf: "srediag_switch",
    raw_tp: "srediag_rswitch",
};
pub(super) const FORK: Hook = Hook {
    tracepoint: "sched_process_fork",
    tp_btf: "srediag_fork",
    raw_tp: "srediag_rfork",
};
pub(super) const EXIT: Hook = Hook {
    tracepoint: "sched_process_exit",
    tp_btf: "srediag_exit",
    raw_tp: "srediag_rexit",
};
pub(super) const SIGNAL: Hook = Hook {
    tracepoint: "signal_generate",
    tp_btf: "srediag_signal",
    raw_tp: "srediag_rsignal",
};

pub(super) const RSS: Hook = Hook {
    tracepoint: "rss_stat",
    tp_btf: "srediag_rss",
    raw_tp: "srediag_rrss",
};
pub(super) const OOM: Hook = Hook {
    tracepoint: "mark_victim",
    tp_btf: "srediag_oom",
    raw_tp: "srediag_room",
};

/// How a hook ended up attached: `"tp_btf sched_switch"`.
pub(super) type Attached = String;

/// Loads and attaches one variant of `hook`: tp_btf first (unless `raw_only`), then raw_tp.
/// On failure, says why for each variant tried; a variant that loaded but did not attach is
/// unloaded again.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    hook: Hook,
    raw_only: bool,
) -> Result<Attached, String> {
    let mut why = Vec::new();
    if !raw_only {
        match attach_tp_btf(ebpf, btf, hook) {
            Ok(()) => return Ok(format!("tp_btf {}", hook.tracepoint)),
            Err(e) => why.push(format!("tp_btf: {e}")),
        }
    }
    match attach_raw_tp(ebpf, hook) {
        Ok(()) => Ok(format!("raw_tp {}", hook.tracepoint)),
        Err(e) => {
            why.push(format!("raw_tp: {e}"));
            Err(format!("{}: {}", hook.tracepoint, why.join("; ")))
        }
    }
}

fn attach_tp_btf(ebpf: &mut Ebpf, btf: &Btf, hook: Hook) -> Result<(), String> {
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(hook.tp_btf)
        .ok_or_else(|| format!("program {} missing from the object", hook.tp_btf))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load(hook.tracepoint, btf).map_err(|e| describe(&e))?;
    if let Err(e) = prog.attach() {
        let _ = prog.unload();
        return Err(describe(&e));
    }
    Ok(())
}

fn attach_raw_tp(ebpf: &mut Ebpf, hook: Hook) -> Result<(), String> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(hook.raw_tp)
        .ok_or_else(|| format!("program {} missing from the object", hook.raw_tp))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| describe(&e))?;
    if let Err(e) = prog.attach(hook.tracepoint) {
        let _ = prog.unload();
        return Err(describe(&e));
    }
    Ok(())
}

/// An error with its sources on one line, cut to 300 characters (a verifier log keeps its end,
/// where the reason is).
pub(super) fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        // Some errors already print their source; do not repeat it.
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    let s: Vec<char> = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .collect();
    if s.len() <= 300 {
        return s.into_iter().collect();
    }
    let head: String = s[..100].iter().collect();
    let tail: String = s[s.len() - 197..].iter().collect();
    format!("{head}...{tail}")
}
