//! `srediag print-config [--config FILE]`.

use super::exit::{CmdResult, FAILURE, Failure, ok};
use super::output::print;
use super::{Output, load_config};
use std::path::PathBuf;

/// Prints the effective configuration: YAML by default (also for `-o table`), or JSON. Secret
/// settings (header values) show as `${env:NAME}` as written, or `<redacted>`, and the values of
/// the variables they use appear nowhere (`config::secret`); what is printed loads back.
pub fn execute(path: Option<PathBuf>, out: Output) -> CmdResult {
    let (config, warnings) = load_config(path).map_err(|e| e.report())?;
    for w in &warnings {
        eprintln!("{}", crate::text::escape_control(&w.to_string()));
    }
    let format = if out == Output::Table {
        Output::Yaml
    } else {
        out
    };
    let shown = config
        .redacted()
        .map_err(|e| Failure::new(FAILURE, format!("cannot encode the configuration: {e}")))?;
    print(format, &shown, |_| String::new())?;
    ok()
}
