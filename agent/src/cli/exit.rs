//! Exit codes (sysexits.h where one fits) and the one-line error that goes with them.

use std::fmt;
use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// A runtime failure not covered below.
pub const FAILURE: u8 = 1;
/// A usage error: an unknown or mistyped argument (what clap uses too).
pub const USAGE: u8 = 2;
/// A plugin bundle is not trusted (EX_DATAERR); `srediag plugin verify|install` print the
/// reason code (`rejected_digest`, …).
pub const REJECTED: u8 = 65;
/// The input file could not be read (EX_NOINPUT).
pub const NO_INPUT: u8 = 66;
/// A service could not start: address in use, peer unavailable (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// An output file could not be created, e.g. it exists (EX_CANTCREAT).
pub const CANT_CREATE: u8 = 73;
/// A plugin verb ran past its timeout (EX_TEMPFAIL: try again, or raise `verbs.timeout`).
pub const TEMP_FAIL: u8 = 75;
/// Root (or a capability) is needed (EX_NOPERM).
pub const NO_PERM: u8 = 77;
/// The configuration is invalid (EX_CONFIG).
pub const CONFIG: u8 = 78;
/// Interrupted by SIGINT (Ctrl-C) or SIGTERM: 128 + 2.
pub const INTERRUPTED: u8 = 130;

/// A command failure: the message is printed as one line on stderr, the code is the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// The message, naming what failed and where, with the remedy.
    pub message: String,
}

impl Failure {
    /// A failure with code and message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a command returns.
pub type CmdResult = Result<ExitCode, Failure>;

/// Exit 0.
pub fn ok() -> CmdResult {
    Ok(ExitCode::from(OK))
}
