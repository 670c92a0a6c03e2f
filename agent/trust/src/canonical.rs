//! Canonical JSON for signed statements: object keys sorted by their UTF-16 code units (RFC 8785
//! order; the same as byte order for the ASCII keys srediag writes), no insignificant
//! whitespace, strings escaped as serde_json does (`"`, `\`, control characters only; the rest
//! literal UTF-8), integers in decimal. Floating-point numbers are written by serde_json's
//! shortest round-trip formatter; srediag's own manifest fields never use them.
//!
//! Key order is enforced here rather than relying on `serde_json::Map`, whose order depends on
//! the `preserve_order` feature that any crate in the build may switch on.

use serde_json::Value;

/// The canonical text of `v`.
pub fn to_canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                write(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_compact() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": null, "a": true}], "a": "x\"\n/é" }"#)
                .unwrap();
        assert_eq!(
            to_canonical_json(&v),
            r#"{"a":"x\"\n/é","b":[1,{"a":true,"z":null}]}"#
        );
    }
}
