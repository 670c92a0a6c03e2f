//! Rendering data as a table, JSON or YAML (`-o`).

use super::args::Output;
use super::exit::{FAILURE, Failure};
use serde::Serialize;

/// Prints `value` in the chosen format; `table` uses the given renderer.
pub fn print<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    let text = match format {
        Output::Table => table(value),
        Output::Json => {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| Failure::new(FAILURE, format!("cannot encode JSON: {e}")))?;
            s.push('\n');
            s
        }
        Output::Yaml => serde_yaml::to_string(value)
            .map_err(|e| Failure::new(FAILURE, format!("cannot encode YAML: {e}")))?,
    };
    print!("{text}");
    Ok(())
}

/// Renders rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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
}
