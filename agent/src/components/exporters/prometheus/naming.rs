//! OTLP → Prometheus names, following the OpenTelemetry compatibility specification: sanitised
//! names, unit suffixes (`By` → `_bytes`, `s` → `_seconds`), `_total` for monotonic counters.

/// Replaces every character outside `[a-zA-Z0-9_:]` with `_`, collapses runs of `_`, and
/// prefixes `_` when the name starts with a digit.
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A label name: like [`sanitize`] without `:`, and never starting with `__` (reserved).
pub fn label(name: &str) -> String {
    let mut s = sanitize(&name.replace(':', "_"));
    if s.starts_with("__") {
        s = format!("key{s}");
    }
    s
}

fn unit_suffix(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "By" => "bytes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "%" => "percent",
        "Hz" => "hertz",
        "By/s" => "bytes_per_second",
        _ => return None,
    })
}

/// The Prometheus name of an OTLP metric.
pub fn metric_name(namespace: &str, name: &str, unit: &str, counter: bool) -> String {
    let mut n = sanitize(name);
    if let Some(suffix) = unit_suffix(unit)
        && !n.ends_with(suffix)
    {
        n = format!("{n}_{suffix}");
    }
    if counter && !n.ends_with("_total") {
        n.push_str("_total");
    }
    // `_count`, `_sum` and `_bucket` belong to histogram and summary series: a gauge (or a
    // histogram's base name) ending so would confuse queries and fails `promtool check metrics`.
    if !counter && ["_count", "_sum", "_bucket"].iter().any(|s| n.ends_with(s)) {
        n.push_str("_value");
    }
    if namespace.is_empty() {
        n
    } else {
        format!("{namespace}_{n}")
    }
}

/// Escapes a label value for the text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes HELP text.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_names_units_and_counters() {
        assert_eq!(
            metric_name("", "system.cpu.time", "s", true),
            "system_cpu_time_seconds_total"
        );
        assert_eq!(
            metric_name("", "system.memory.usage", "By", false),
            "system_memory_usage_bytes"
        );
        assert_eq!(metric_name("node", "load.1m", "1", false), "node_load_1m");
        assert_eq!(
            metric_name("", "http.requests_total", "{request}", true),
            "http_requests_total"
        );
        assert_eq!(sanitize("1bad..name"), "_1bad_name");
        assert_eq!(
            metric_name("", "system.cpu.logical.count", "{cpu}", false),
            "system_cpu_logical_count_value"
        );
        assert_eq!(metric_name("", "ops.count", "1", true), "ops_count_total");
        assert_eq!(label("__x.y"), "_x_y");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
