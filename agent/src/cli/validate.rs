//! `srediag validate --config FILE`.

use super::exit::{CONFIG, CmdResult, ok};
use super::output::print;
use super::{Output, load_config};
use crate::config::{Diagnostic, LoadError};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Serialize)]
struct Report {
    /// True when the configuration can be used.
    valid: bool,
    /// Every problem, errors and warnings.
    diagnostics: Vec<Diagnostic>,
}

/// Checks the file; prints problems as `FILE:LINE:COL: error: PATH: message` on stderr.
pub fn execute(path: PathBuf, out: Output) -> CmdResult {
    match load_config(Some(path.clone())) {
        Ok((_, warnings)) => {
            for w in &warnings {
                eprintln!("{w}");
            }
            if out != Output::Table {
                print(
                    out,
                    &Report {
                        valid: true,
                        diagnostics: warnings,
                    },
                    |_| String::new(),
                )?;
            } else {
                println!("{}: valid", path.display());
            }
            ok()
        }
        Err(e) => {
            if out != Output::Table
                && let LoadError::Invalid { diagnostics, .. } = &e.0
            {
                print(
                    out,
                    &Report {
                        valid: false,
                        diagnostics: diagnostics.clone(),
                    },
                    |_| String::new(),
                )?;
            }
            let f = e.report();
            eprintln!("error: {f}");
            Ok(ExitCode::from(if f.code == super::exit::NO_INPUT {
                f.code
            } else {
                CONFIG
            }))
        }
    }
}
