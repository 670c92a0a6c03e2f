//! The B4 benchmark's reference program (`ebpf/reference.bpf.c`): a minimal `raw_tp/sys_enter`
//! hook with a per-CPU counter, i.e. the cheapest global syscall hook. Only benchmarks load it;
//! dropping [`Reference`] detaches and frees it.

use aya::Ebpf;
use aya::maps::PerCpuArray;
use aya::programs::RawTracePoint;

/// `ebpf/reference.bpf.c`, compiled by `agent/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reference.bpf.o"));

/// The attached reference program.
pub struct Reference {
    ebpf: Ebpf,
}

impl Reference {
    /// Loads and attaches it (root).
    pub fn attach() -> Result<Reference, String> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| super::object::describe(&e))?;
        let prog: &mut RawTracePoint = ebpf
            .program_mut("srediag_ref")
            .ok_or("program srediag_ref missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load().map_err(|e| super::object::describe(&e))?;
        prog.attach("sys_enter")
            .map_err(|e| super::object::describe(&e))?;
        Ok(Reference { ebpf })
    }

    /// Syscalls the hook saw (all CPUs).
    pub fn hits(&self) -> u64 {
        self.ebpf
            .map("srediag_refcnt")
            .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
            .and_then(|a| a.get(&0, 0).ok())
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}
