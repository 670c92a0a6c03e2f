//! Build script: records the compiler version for `srediag version` and `srediag_build_info`.
//! (The C BPF programs of ../ebpf will be compiled here with clang, as aya's tests do.)

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SREDIAG_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
