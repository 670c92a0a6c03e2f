//! `srediag version`.

use super::Output;
use super::exit::{CmdResult, ok};
use super::output::print;
use serde::Serialize;

/// Version and build facts. JSON field names are stable.
#[derive(Serialize)]
pub struct VersionInfo {
    /// srediag version.
    pub version: &'static str,
    /// The compiler that built it.
    pub rustc: &'static str,
    /// Target architecture.
    pub arch: &'static str,
    /// `debug` or `release`.
    pub profile: &'static str,
}

/// Prints version information.
pub fn execute(out: Output) -> CmdResult {
    let v = VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        rustc: option_env!("SREDIAG_RUSTC_VERSION").unwrap_or("unknown"),
        arch: std::env::consts::ARCH,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    };
    print(out, &v, |v| {
        format!(
            "srediag {} ({}, {}, {})\n",
            v.version, v.arch, v.profile, v.rustc
        )
    })?;
    ok()
}
