//! Text table rendering of a [`ProbeReport`].

use super::{ProbeReport, Status};

const DETAIL_WIDTH: usize = 50;
const SREDIAG_WIDTH: usize = 56;
const GAP: &str = "  ";

/// Greedy word wrap to `width` characters; words longer than `width` are split.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        let mut chars: Vec<char> = word.chars().collect();
        loop {
            let needed = if line_len == 0 {
                chars.len()
            } else {
                line_len + 1 + chars.len()
            };
            if needed <= width {
                if line_len > 0 {
                    line.push(' ');
                    line_len += 1;
                }
                line.extend(chars.iter());
                line_len += chars.len();
                break;
            }
            if line_len > 0 {
                lines.push(std::mem::take(&mut line));
                line_len = 0;
                continue;
            }
            // The word alone is too long: split it.
            let rest = chars.split_off(width);
            lines.push(chars.iter().collect());
            chars = rest;
        }
    }
    if line_len > 0 || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn pad(s: &str, width: usize) -> String {
    let len = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(len)))
}

pub(super) fn table(report: &ProbeReport) -> String {
    let name_width = report
        .items
        .iter()
        .map(|i| i.name.chars().count())
        .chain(std::iter::once(4))
        .max()
        .unwrap_or(4);
    let status_width = "unavailable".len();
    let mut out = String::new();
    let mut row = |cells: [&str; 4]| {
        let line = format!(
            "{}{GAP}{}{GAP}{}{GAP}{}",
            pad(cells[0], name_width),
            pad(cells[1], status_width),
            pad(cells[2], DETAIL_WIDTH),
            cells[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    };
    row(["NAME", "STATUS", "DETAIL", "SREDIAG"]);
    for it in &report.items {
        let detail = wrap(&it.detail, DETAIL_WIDTH);
        let srediag = wrap(&it.srediag, SREDIAG_WIDTH);
        for i in 0..detail.len().max(srediag.len()) {
            let (name, status) = if i == 0 {
                (it.name.as_str(), it.status.as_str())
            } else {
                ("", "")
            };
            row([
                name,
                status,
                detail.get(i).map_or("", String::as_str),
                srediag.get(i).map_or("", String::as_str),
            ]);
        }
    }
    let count = |s: Status| report.items.iter().filter(|i| i.status == s).count();
    out.push_str(&format!(
        "\n{} items: {} ok, {} degraded, {} unavailable\n",
        report.items.len(),
        count(Status::Ok),
        count(Status::Degraded),
        count(Status::Unavailable)
    ));
    out
}
