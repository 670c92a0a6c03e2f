//! `srediag probe`.

use super::Output;
use super::exit::{CmdResult, ok};
use super::output::print;

/// Reports what this host supports for srediag.
pub fn execute(out: Output) -> CmdResult {
    let host = crate::sys::real_host();
    let report = crate::probe::run(&*host);
    print(out, &report, |r| r.render_table())?;
    ok()
}
