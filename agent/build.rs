//! Build script:
//! 1. records the compiler version for `srediag version` and `srediag_build_info`;
//! 2. compiles the C BPF programs `../ebpf/*.bpf.c` with clang into `OUT_DIR/<name>.bpf.o`
//!    (embedded by `src/bpf/` with `aya::include_bytes_aligned!`), as aya's own C-BPF test build
//!    does: `clang -g -O2 -target bpf -D__TARGET_ARCH_<arch> -I ../ebpf/include`, CO-RE through
//!    BTF (`-g`), DWARF stripped afterwards when `llvm-strip` exists (BTF stays);
//! 3. turns the shared ABI header `../ebpf/include/srediag.h` into `OUT_DIR/bpf_abi.rs`: every
//!    `#define SREDIAG_<NAME> <integer>` as a constant, and the size and top-level field offsets
//!    clang computes for every `struct srediag_*` (`-fdump-record-layouts`), against which
//!    `src/bpf/abi.rs` asserts its `#[repr(C)]` mirrors at compile time.
//!
//! `CLANG` and `LLVM_STRIP` override the tool names. A missing clang fails the build with one line
//! saying how to install it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    rustc_version();
    bpf();
}

fn rustc_version() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SREDIAG_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Stops the build with one line (cargo prints it under "failed to run custom build command").
fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn bpf() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let ebpf = manifest.join("../ebpf");
    let include = ebpf.join("include");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=LLVM_STRIP");
    // The directories themselves: a new source or header reruns the script.
    println!("cargo:rerun-if-changed={}", ebpf.display());
    println!("cargo:rerun-if-changed={}", include.display());

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    if Command::new(&clang).arg("--version").output().is_err() {
        fail("clang not found: run `cargo xtask deps` (Debian: apt install clang llvm libbpf-dev)");
    }
    let target_arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok("riscv64") => "riscv",
        Ok("s390x") => "s390",
        Ok("powerpc64") => "powerpc",
        Ok(other) => fail(&format!("no BPF target arch mapping for {other}")),
        Err(_) => "x86",
    };

    for header in sorted_files(&include, ".h") {
        println!("cargo:rerun-if-changed={}", header.display());
    }
    let sources = sorted_files(&ebpf, ".bpf.c");
    let strip = std::env::var("LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".into());
    let can_strip = Command::new(&strip).arg("--version").output().is_ok();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 file name");
        let obj = out.join(name.replace(".bpf.c", ".bpf.o"));
        let output = Command::new(&clang)
            .args(["-g", "-O2", "-target", "bpf", "-Wall"])
            .arg(format!("-D__TARGET_ARCH_{target_arch}"))
            .arg("-I")
            .arg(&include)
            // Reproducible objects: no absolute source paths in the debug info.
            .arg(format!("-ffile-prefix-map={}=ebpf", ebpf.display()))
            .arg("-c")
            .arg(src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run {clang}: {e}")));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            fail(&format!(
                "clang failed on {}:\n{}",
                src.display(),
                stderr.trim_end()
            ));
        }
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            println!("cargo:warning={line}");
        }
        if can_strip {
            // Drops DWARF only; .BTF and .BTF.ext (what aya needs) are not debug sections.
            let _ = Command::new(&strip).arg("-g").arg(&obj).status();
        }
    }

    abi(&clang, &include, &out);
}

fn sorted_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", dir.display())))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

/// Generates `OUT_DIR/bpf_abi.rs` from `srediag.h`.
fn abi(clang: &str, include: &Path, out: &Path) {
    let header = include.join("srediag.h");
    let text = std::fs::read_to_string(&header)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", header.display())));
    let mut rs = String::from(
        "// Generated by agent/build.rs from ebpf/include/srediag.h. Do not edit.\n\n",
    );

    // `#define SREDIAG_NAME <integer>` → `pub const NAME: u64 = <integer>;`
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(short) = name.strip_prefix("SREDIAG_") else {
            continue;
        };
        let parsed = match value
            .strip_prefix("0x")
            .or_else(|| value.strip_prefix("0X"))
        {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse::<u64>(),
        };
        if let Ok(v) = parsed {
            writeln!(rs, "pub const {short}: u64 = {v:#x};").expect("write to String");
        }
    }

    // Struct layouts as clang computes them for the BPF target.
    let structs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("struct "))
        .filter_map(|l| l.strip_suffix('{').map(str::trim))
        .filter(|n| n.starts_with("srediag_"))
        .collect();
    let probe = out.join("bpf_abi_layout.c");
    let mut c = String::from("#include \"vmlinux.h\"\n#include \"srediag.h\"\n");
    for s in &structs {
        writeln!(c, "_Static_assert(sizeof(struct {s}) > 0, \"\");").expect("write to String");
    }
    std::fs::write(&probe, c)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", probe.display())));
    let output = Command::new(clang)
        .args([
            "-target",
            "bpf",
            "-fsyntax-only",
            "-Xclang",
            "-fdump-record-layouts",
            "-I",
        ])
        .arg(include)
        .arg(&probe)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {clang}: {e}")));
    if !output.status.success() {
        fail(&format!(
            "clang could not lay out {}:\n{}",
            header.display(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    let dump = String::from_utf8_lossy(&output.stdout);
    let layouts = parse_layouts(&dump);
    for s in &structs {
        let Some((size, fields)) = layouts
            .iter()
            .find(|(n, _, _)| n == s)
            .map(|(_, z, f)| (z, f))
        else {
            fail(&format!("clang printed no layout for struct {s}"));
        };
        writeln!(rs, "\n/// Layout of `struct {s}`.\n#[allow(non_upper_case_globals, dead_code)]\npub mod {s} {{").expect("write");
        writeln!(rs, "    pub const SIZE: usize = {size};").expect("write");
        for (field, off) in fields {
            writeln!(rs, "    pub const {field}: usize = {off};").expect("write");
        }
        rs.push_str("}\n");
    }
    let dest = out.join("bpf_abi.rs");
    std::fs::write(&dest, rs)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", dest.display())));
}

/// `(struct name, size, [(top-level field, offset)])`.
type Layout = (String, usize, Vec<(String, usize)>);

/// The layouts in clang's `-fdump-record-layouts` output:
///
/// ```text
///          0 | struct srediag_event
///          0 |   __u32 kind
///         24 |   char[16] comm
///            | [sizeof=40, align=8]
/// ```
fn parse_layouts(dump: &str) -> Vec<Layout> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<(String, usize)>)> = None;
    for line in dump.lines() {
        let Some((left, right)) = line.split_once('|') else {
            continue;
        };
        let offset = left.trim();
        if let Some(rest) = right.strip_prefix(" struct ") {
            current = Some((rest.trim().to_string(), Vec::new()));
        } else if let Some(rest) = right.trim().strip_prefix("[sizeof=") {
            let size = rest.split(',').next().and_then(|s| s.parse().ok());
            if let (Some((name, fields)), Some(size)) = (current.take(), size) {
                out.push((name, size, fields));
            }
        } else if let Some(field) = right.strip_prefix("   ")
            && !field.starts_with(' ')
            && let Some(cur) = current.as_mut()
            && let Ok(off) = offset.parse::<usize>()
            && let Some(name) = field.split_whitespace().last()
        {
            cur.1.push((name.to_string(), off));
        }
    }
    out
}
