//! `${env:VAR}` interpolation in string values (the OpenTelemetry Collector's syntax).
//!
//! - `${env:VAR}` is replaced by the variable's value; unset is an error.
//! - `${env:VAR:-default}` uses `default` when VAR is unset or empty.
//! - `$$` is a literal `$`.
//! - When a whole scalar is one reference, the substituted text is read as a YAML scalar, so
//!   `send_batch_size: ${env:BATCH}` gives a number.
//!
//! Every scalar that held a reference is remembered ([`EnvRef`]: where, as written, and what each
//! variable resolved to), so outputs can show the reference instead of the value
//! (`super::secret`).

use super::secret::{EnvRef, Seg};
use serde_yaml::Value;

/// A reference that could not be resolved, at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    /// Key path of the scalar.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Looks up environment variables; a seam for tests.
pub trait Env {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Interpolates every string scalar in `value`, collecting every error; returns where a
/// reference was used.
pub fn interpolate(
    value: &mut Value,
    env: &dyn Env,
    path: &str,
    errors: &mut Vec<InterpolationError>,
) -> Vec<EnvRef> {
    let mut refs = Vec::new();
    walk(value, env, path, &mut Vec::new(), errors, &mut refs);
    refs
}

fn walk(
    value: &mut Value,
    env: &dyn Env,
    path: &str,
    segs: &mut Vec<Seg>,
    errors: &mut Vec<InterpolationError>,
    refs: &mut Vec<EnvRef>,
) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            match expand(s, env) {
                Ok(x) => {
                    if x.refs > 0 {
                        refs.push(EnvRef {
                            segs: segs.clone(),
                            path: path.to_string(),
                            written: s.clone(),
                            resolved: x.resolved,
                        });
                    }
                    *value = if x.whole {
                        match serde_yaml::from_str::<Value>(&x.text) {
                            Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
                            _ => Value::String(x.text),
                        }
                    } else {
                        Value::String(x.text)
                    };
                }
                Err(message) => errors.push(InterpolationError {
                    path: path.to_string(),
                    message,
                }),
            }
        }
        Value::Sequence(seq) => {
            for (i, v) in seq.iter_mut().enumerate() {
                segs.push(Seg::Index(i));
                walk(v, env, &format!("{path}[{i}]"), segs, errors, refs);
                segs.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                segs.push(Seg::Key(key));
                walk(v, env, &p, segs, errors, refs);
                segs.pop();
            }
        }
        Value::Tagged(t) => walk(&mut t.value, env, path, segs, errors, refs),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// One expanded string.
struct Expanded {
    text: String,
    /// The whole input was a single reference.
    whole: bool,
    /// References in it.
    refs: usize,
    /// `(NAME, value)` of each variable taken from the environment (not defaults).
    resolved: Vec<(String, String)>,
}

/// Expands one string.
fn expand(s: &str, env: &dyn Env) -> Result<Expanded, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut refs = 0;
    let mut resolved = Vec::new();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated reference in {s:?}: expected `}}`"))?;
            let inner = &body[..end];
            let spec = inner.strip_prefix("env:").ok_or_else(|| {
                format!("unsupported reference `${{{inner}}}`: only `${{env:NAME}}` is supported")
            })?;
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "invalid environment variable name {name:?} in `${{{inner}}}`"
                ));
            }
            match (
                env.get(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => {
                    out.push_str(&v);
                    resolved.push((name.to_string(), v));
                }
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (set it, or give a default: `${{env:{name}:-value}}`)"
                    ));
                }
            }
            refs += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    let whole =
        refs == 1 && s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
    Ok(Expanded {
        text: out,
        whole,
        refs,
        resolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    fn env() -> MapEnv {
        MapEnv(HashMap::from([
            ("HOST", "10.0.0.1"),
            ("N", "42"),
            ("EMPTY", ""),
        ]))
    }

    fn run(yaml: &str) -> (Value, Vec<InterpolationError>) {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        let mut errs = Vec::new();
        let _ = interpolate(&mut v, &env(), "", &mut errs);
        (v, errs)
    }

    #[test]
    fn substitutes_and_types_whole_references() {
        let (v, errs) = run(
            "a: ${env:HOST}:4318\nb: ${env:N}\nc: x$$y\nd: ${env:MISSING:-dflt}\ne: ${env:EMPTY:-d}\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(v["a"], Value::String("10.0.0.1:4318".into()));
        assert_eq!(v["b"], Value::Number(42.into()));
        assert_eq!(v["c"], Value::String("x$y".into()));
        assert_eq!(v["d"], Value::String("dflt".into()));
        assert_eq!(v["e"], Value::String("d".into()));
    }

    #[test]
    fn remembers_where_references_were() {
        let mut v: Value = serde_yaml::from_str(
            "a:\n  h:\n    x.y: Bearer ${env:HOST}\nb: [1, '${env:N}']\nc: ${env:MISSING:-d}\n",
        )
        .unwrap();
        let refs = interpolate(&mut v, &env(), "", &mut Vec::new());
        let got: Vec<_> = refs
            .iter()
            .map(|r| (r.path.as_str(), r.written.as_str(), r.resolved.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "a.h.x.y",
                    "Bearer ${env:HOST}",
                    vec![("HOST".to_string(), "10.0.0.1".to_string())]
                ),
                (
                    "b[1]",
                    "${env:N}",
                    vec![("N".to_string(), "42".to_string())]
                ),
                ("c", "${env:MISSING:-d}", vec![]),
            ]
        );
        assert_eq!(
            refs[0].segs,
            [
                Seg::Key("a".into()),
                Seg::Key("h".into()),
                Seg::Key("x.y".into())
            ]
        );
    }

    #[test]
    fn reports_unset_and_malformed_references_with_paths() {
        let (_, errs) = run("x:\n  - ok\n  - ${env:NOPE}\ny: ${env:A\nz: ${file:/etc/passwd}\n");
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["x[1]", "y", "z"]);
        assert!(errs[0].message.contains("NOPE is not set"));
    }
}
