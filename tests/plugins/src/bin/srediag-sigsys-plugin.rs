//! A plugin whose first own action after exec is a syscall its seccomp profile refuses
//! (`mkdirat`, refused by the `processor` profile): no SDK, no SIGSYS handler, no handshake, so
//! every incarnation is killed by SIGSYS at once — the misconfigured-profile case, and the
//! fastest possible death after exec (`tests/tests/bpf_plugins.rs`,
//! `a_plugin_killed_by_its_first_syscall_is_counted_every_time`).
//!
//! Only the Rust runtime's start-up syscalls (all in the `base` profile) run before it.

fn main() {
    // SAFETY: mkdirat of a static NUL-terminated path relative to the working directory; the
    // profile refuses it, and if it ever got through it would only create an empty directory in
    // the plugin's scratch directory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mkdirat,
            libc::AT_FDCWD,
            c"srediag-sigsys".as_ptr(),
            0o700,
        )
    };
    // Not reached under a profile that refuses mkdirat.
    println!("mkdirat was not refused: {rc}");
    std::process::exit(3);
}
