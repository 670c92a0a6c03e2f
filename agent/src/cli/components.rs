//! `srediag components`.

use super::Output;
use super::exit::{CmdResult, ok};
use super::output::{print, table};
use crate::components::{Spec, specs};

/// Lists the built-in component types.
pub fn execute(out: Output) -> CmdResult {
    let list: Vec<&Spec> = specs().iter().collect();
    print(out, &list, |l| {
        let rows: Vec<Vec<String>> = l
            .iter()
            .map(|s| {
                vec![
                    s.kind.as_str().to_string(),
                    s.type_name.to_string(),
                    serde_json::to_value(s.stability)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    s.signals
                        .iter()
                        .map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    s.description.to_string(),
                ]
            })
            .collect();
        table(
            &["KIND", "TYPE", "STABILITY", "SIGNALS", "DESCRIPTION"],
            &rows,
        )
    })?;
    ok()
}
