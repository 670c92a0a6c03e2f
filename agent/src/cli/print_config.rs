//! `srediag print-config [--config FILE]`.

use super::exit::{CmdResult, ok};
use super::output::print;
use super::{Output, load_config};
use std::path::PathBuf;

/// Prints the effective configuration: YAML by default (also for `-o table`), or JSON.
pub fn execute(path: Option<PathBuf>, out: Output) -> CmdResult {
    let (config, warnings) = load_config(path).map_err(|e| e.report())?;
    for w in &warnings {
        eprintln!("{w}");
    }
    let format = if out == Output::Table {
        Output::Yaml
    } else {
        out
    };
    print(format, &config, |_| String::new())?;
    ok()
}
