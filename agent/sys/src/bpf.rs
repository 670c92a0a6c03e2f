//! Raw `bpf(2)` calls used to probe what the kernel accepts: load a trivial program
//! (`r0 = 0; exit`), create a map, enable run-time statistics. Every fd is closed right away.

use std::ffi::c_long;
use std::os::fd::{FromRawFd, OwnedFd};

use super::Errno;

/// BPF program types srediag probes (values of `enum bpf_prog_type`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_KPROBE`: kprobes and uprobes.
    Kprobe = 2,
    /// `BPF_PROG_TYPE_TRACEPOINT`: classic (tracefs) tracepoints.
    Tracepoint = 5,
    /// `BPF_PROG_TYPE_PERF_EVENT`: perf event (sampling) programs.
    PerfEvent = 7,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`: raw tracepoints.
    RawTracepoint = 17,
    /// `BPF_PROG_TYPE_TRACING`: tp_btf, fentry, fexit, iterators.
    Tracing = 26,
    /// `BPF_PROG_TYPE_LSM`: BPF-LSM hooks.
    Lsm = 29,
}

/// Expected attach types srediag probes (values of `enum bpf_attach_type`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachType {
    /// `BPF_TRACE_RAW_TP`: BTF-enabled raw tracepoint (`tp_btf`).
    TraceRawTp = 23,
    /// `BPF_TRACE_FENTRY`: function entry.
    TraceFentry = 24,
    /// `BPF_LSM_MAC`: LSM hook.
    LsmMac = 27,
}

impl ProgType {
    /// The kernel's name, e.g. `BPF_PROG_TYPE_TRACEPOINT`.
    pub fn name(self) -> &'static str {
        match self {
            ProgType::Kprobe => "BPF_PROG_TYPE_KPROBE",
            ProgType::Tracepoint => "BPF_PROG_TYPE_TRACEPOINT",
            ProgType::PerfEvent => "BPF_PROG_TYPE_PERF_EVENT",
            ProgType::RawTracepoint => "BPF_PROG_TYPE_RAW_TRACEPOINT",
            ProgType::Tracing => "BPF_PROG_TYPE_TRACING",
            ProgType::Lsm => "BPF_PROG_TYPE_LSM",
        }
    }
}

impl AttachType {
    /// The kernel's name, e.g. `BPF_TRACE_FENTRY`.
    pub fn name(self) -> &'static str {
        match self {
            AttachType::TraceRawTp => "BPF_TRACE_RAW_TP",
            AttachType::TraceFentry => "BPF_TRACE_FENTRY",
            AttachType::LsmMac => "BPF_LSM_MAC",
        }
    }
}

/// A `BPF_PROG_LOAD` request for the trivial program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProgLoad {
    /// The program type.
    pub prog_type: ProgType,
    /// `expected_attach_type`, when the program type needs one.
    pub expected_attach_type: Option<AttachType>,
    /// `attach_btf_id` in vmlinux BTF, when the program type needs one.
    pub attach_btf_id: Option<u32>,
}

/// BPF map types srediag probes (values of `enum bpf_map_type`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    /// `BPF_MAP_TYPE_RINGBUF`.
    Ringbuf = 27,
}

/// A `BPF_MAP_CREATE` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapCreate {
    /// The map type.
    pub map_type: MapType,
    /// Key size in bytes (0 for a ring buffer).
    pub key_size: u32,
    /// Value size in bytes (0 for a ring buffer).
    pub value_size: u32,
    /// Maximum entries (the byte size, a power-of-two multiple of the page size, for a ring
    /// buffer).
    pub max_entries: u32,
}

/// A failed program load: the errno and what the verifier logged (often empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bpf program load failed: {errno}")]
pub struct LoadError {
    /// The errno of `bpf(BPF_PROG_LOAD)`.
    pub errno: Errno,
    /// The verifier log, trimmed (empty when the kernel refused before verification).
    pub verifier_log: String,
}

const BPF_MAP_CREATE: c_long = 0;
const BPF_PROG_LOAD: c_long = 5;
const BPF_ENABLE_STATS: c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;
const LOG_SIZE: usize = 64 * 1024;

/// `r0 = 0` (`BPF_ALU64 | BPF_MOV | BPF_K`), then `exit` (`BPF_JMP | BPF_EXIT`). With zero
/// registers, offset and immediate the byte layout is the same on either endianness.
const TRIVIAL_PROGRAM: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 0, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];
const LICENSE: &[u8] = b"GPL\0";
const PROG_NAME: &[u8] = b"srediag_probe";

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `attach_btf_obj_fd` (the kernel zero-fills
/// fields past the size we pass).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    pad: u32,
}

/// The `BPF_MAP_CREATE` part of `union bpf_attr`, up to `map_name`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    pad: u32,
}

/// The `BPF_ENABLE_STATS` part of `union bpf_attr`.
#[repr(C)]
struct EnableStatsAttr {
    stats_type: u32,
}

fn name16(name: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name[..n]);
    out
}

/// Issues `bpf(cmd, attr, size_of::<T>())` and takes ownership of the returned fd (closed on
/// drop). Retries a few times on `EAGAIN`, as libbpf does for program loads.
fn bpf_fd<T>(cmd: c_long, attr: &T) -> Result<OwnedFd, Errno> {
    for _ in 0..5 {
        // SAFETY: `attr` is a live, initialised `#[repr(C)]` prefix of `union bpf_attr` whose
        // size we pass; every pointer inside it refers to memory that outlives this call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *const T,
                std::mem::size_of::<T>() as libc::c_uint,
            )
        };
        if ret >= 0 {
            let fd = i32::try_from(ret).map_err(|_| Errno(libc::EBADF))?;
            // SAFETY: on success `bpf()` returns a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let errno = Errno::last();
        if errno.0 != libc::EAGAIN {
            return Err(errno);
        }
    }
    Err(Errno(libc::EAGAIN))
}

/// Loads the trivial program described by `req` and closes it.
pub fn prog_load(req: &ProgLoad) -> Result<(), LoadError> {
    let mut log = vec![0u8; LOG_SIZE];
    let attr = ProgLoadAttr {
        prog_type: req.prog_type as u32,
        insn_cnt: TRIVIAL_PROGRAM.len() as u32,
        insns: TRIVIAL_PROGRAM.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 1,
        log_size: LOG_SIZE as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name16(PROG_NAME),
        expected_attach_type: req.expected_attach_type.map_or(0, |t| t as u32),
        attach_btf_id: req.attach_btf_id.unwrap_or(0),
        ..ProgLoadAttr::default()
    };
    match bpf_fd(BPF_PROG_LOAD, &attr) {
        Ok(fd) => {
            drop(fd);
            Ok(())
        }
        Err(errno) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier_log = String::from_utf8_lossy(&log[..end]).trim().to_owned();
            Err(LoadError {
                errno,
                verifier_log,
            })
        }
    }
}

/// Creates the map described by `req` and closes it.
pub fn map_create(req: &MapCreate) -> Result<(), Errno> {
    let attr = MapCreateAttr {
        map_type: req.map_type as u32,
        key_size: req.key_size,
        value_size: req.value_size,
        max_entries: req.max_entries,
        map_name: name16(PROG_NAME),
        ..MapCreateAttr::default()
    };
    bpf_fd(BPF_MAP_CREATE, &attr).map(drop)
}

/// Enables BPF run-time statistics and disables them again by closing the fd.
pub fn enable_stats() -> Result<(), Errno> {
    let attr = EnableStatsAttr {
        stats_type: BPF_STATS_RUN_TIME,
    };
    bpf_fd(BPF_ENABLE_STATS, &attr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel_abi() {
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_obj_fd), 112);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 120);
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 48);
    }

    #[test]
    fn names_are_nul_terminated() {
        let n = name16(b"a_very_long_program_name");
        assert_eq!(n[15], 0);
        assert_eq!(&n[..3], b"a_v");
    }
}
