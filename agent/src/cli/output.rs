//! Rendering data as a table, JSON or YAML (`-o`).
//!
//! Much of what the CLI shows comes from elsewhere: plugin names, versions and errors from the
//! running agent, manifest fields from a bundle. In table output every cell is escaped
//! ([`crate::text::escape_control`]: `ESC` shows as `\x1b`, `\r` as `\r`), and the renderer's
//! whole text once more with only its own newlines kept, so nothing from outside reaches the
//! terminal as a control sequence. JSON and YAML escape control characters themselves and are
//! printed exactly.

use super::args::Output;
use super::exit::{FAILURE, Failure};
use crate::text::{escape_control, escape_control_keep_newlines};
use serde::Serialize;

/// Prints `value` in the chosen format; `table` uses the given renderer.
pub fn print<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    let text = render(format, value, table)?;
    print!("{text}");
    Ok(())
}

/// The text [`print`] prints.
pub fn render<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<String, Failure> {
    Ok(match format {
        Output::Table => escape_control_keep_newlines(&table(value)).into_owned(),
        Output::Json => {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| Failure::new(FAILURE, format!("cannot encode JSON: {e}")))?;
            s.push('\n');
            s
        }
        Output::Yaml => serde_yaml::to_string(value)
            .map_err(|e| Failure::new(FAILURE, format!("cannot encode YAML: {e}")))?,
    })
}

/// Renders rows as aligned columns under a header; every cell is escaped (a cell is one line).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_control(c).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let t = super::table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }

    #[test]
    fn cells_are_escaped_and_stay_on_their_line() {
        let t = super::table(&["A", "B"], &[vec!["x\x1b[2J\ny".into(), "\r".into()]]);
        assert_eq!(t, "A            B\nx\\x1b[2J\\ny  \\r\n");
    }
}
