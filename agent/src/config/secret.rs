//! Keeping secrets out of what srediag prints and logs about its configuration.
//!
//! - A setting whose type is [`Secret`] (HTTP header values of the `otlp` exporter) is never
//!   shown: it serializes as `<redacted>` and its `Debug` says `Secret(<redacted>)`.
//! - `srediag print-config` shows such a setting as written when it came from the environment
//!   (`Bearer ${env:TOKEN}`), else `<redacted>`; and every value a variable used in a secret
//!   setting resolved to is replaced by its reference wherever else it appears in the output.
//! - Diagnostics (`validate`, and the warnings `run` logs) never quote a value that came from
//!   the environment: each is replaced by `${env:NAME}` — in a diagnostic about the setting that
//!   used it, whatever its length; elsewhere when it is at least [`MIN_SCRUB_LEN`] characters
//!   (shorter values would match unrelated words and numbers).
//!
//! Settings srediag does not know the meaning of (a plugin's `config`) are shown as resolved,
//! unless a variable also feeds a secret setting.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::borrow::Cow;
use std::fmt;

/// What a secret shows as.
pub const REDACTED: &str = "<redacted>";

/// Environment values shorter than this are only replaced in diagnostics about their own
/// setting.
pub const MIN_SCRUB_LEN: usize = 4;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A scalar that held at least one `${env:…}` reference. `Debug` names the variables but not
/// their values.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvRef {
    /// Where, as steps.
    pub segs: Vec<Seg>,
    /// Where, as diagnostics print it (`exporters.otlp.headers.authorization`).
    pub path: String,
    /// The scalar as written (`Bearer ${env:TOKEN}`).
    pub written: String,
    /// `(NAME, value)` of each variable taken from the environment (defaults are not secret:
    /// they are written in the file).
    pub resolved: Vec<(String, String)>,
}

impl fmt::Debug for EnvRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvRef")
            .field("path", &self.path)
            .field("written", &self.written)
            .field(
                "resolved",
                &self.resolved.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Every reference of one configuration.
#[derive(Debug, Clone, Default)]
pub struct EnvRefs(Vec<EnvRef>);

fn is_under(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
}

/// `text` with each `(value, reference)` replaced, longest values first.
fn replace_all<'a>(text: &'a str, subs: &[(&str, String)]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for (value, reference) in subs {
        if !value.is_empty() && out.contains(value) {
            out = Cow::Owned(out.replace(value, reference));
        }
    }
    out
}

fn reference(name: &str) -> String {
    format!("${{env:{name}}}")
}

impl EnvRefs {
    /// From the interpolation's list.
    pub fn new(refs: Vec<EnvRef>) -> EnvRefs {
        EnvRefs(refs)
    }

    /// The references.
    pub fn iter(&self) -> impl Iterator<Item = &EnvRef> {
        self.0.iter()
    }

    /// The substitutions that apply to text about `path` (`None`: text about no one setting).
    fn subs_for(&self, path: Option<&str>) -> Vec<(&str, String)> {
        let mut subs: Vec<(&str, String)> = self
            .0
            .iter()
            .flat_map(|r| {
                let own = path.is_some_and(|p| is_under(p, &r.path));
                r.resolved
                    .iter()
                    .filter(move |(_, v)| own || v.chars().count() >= MIN_SCRUB_LEN)
                    .map(|(n, v)| (v.as_str(), reference(n)))
            })
            .collect();
        // Longest first (a value inside a longer one is replaced after it); equal ones adjacent.
        subs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
        subs.dedup();
        subs
    }

    /// `text` (a message about the setting at `path`) without any value from the environment.
    pub fn scrub<'a>(&self, text: &'a str, path: &str) -> Cow<'a, str> {
        if self.0.is_empty() {
            return Cow::Borrowed(text);
        }
        replace_all(text, &self.subs_for(Some(path)))
    }

    /// A serialized configuration fit to print: each secret setting (serialized as
    /// [`REDACTED`]) that came from the environment shows as written, and the values of the
    /// variables it used are replaced by their references everywhere else.
    pub fn redact(&self, mut v: Value) -> Value {
        let mut secret_vars: Vec<(&str, String)> = Vec::new();
        for r in &self.0 {
            let Some(node) = node_at(&mut v, &r.segs) else {
                continue;
            };
            if node.as_str() == Some(REDACTED) {
                *node = Value::String(r.written.clone());
                secret_vars.extend(
                    r.resolved
                        .iter()
                        .filter(|(_, val)| val.chars().count() >= MIN_SCRUB_LEN)
                        .map(|(n, val)| (val.as_str(), reference(n))),
                );
            }
        }
        if !secret_vars.is_empty() {
            secret_vars.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
            secret_vars.dedup();
            // The restored references contain no values, so replacing everywhere is safe.
            scrub_strings(&mut v, &secret_vars);
        }
        v
    }
}

fn node_at<'a>(v: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in segs {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Seg::Index(i), Value::Sequence(q)) => q.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn scrub_strings(v: &mut Value, subs: &[(&str, String)]) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(o) = replace_all(s, subs) {
                *s = o;
            }
        }
        Value::Sequence(q) => q.iter_mut().for_each(|x| scrub_strings(x, subs)),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, x)| scrub_strings(x, subs)),
        Value::Tagged(t) => scrub_strings(&mut t.value, subs),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A secret setting (an HTTP header value, a token): read as a plain string, used through
/// [`Secret::expose`], never shown — it serializes as `<redacted>` and debug-prints as
/// `Secret(<redacted>)`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str, segs: Vec<Seg>, written: &str, name: &str, value: &str) -> EnvRef {
        EnvRef {
            segs,
            path: path.into(),
            written: written.into(),
            resolved: vec![(name.into(), value.into())],
        }
    }

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        let back: Secret = serde_json::from_str("\"hunter22\"").unwrap();
        assert_eq!(back.expose(), "hunter22");
    }

    #[test]
    fn redact_restores_references_and_scrubs_their_values_elsewhere() {
        let refs = EnvRefs::new(vec![
            r(
                "e.h.authorization",
                vec![
                    Seg::Key("e".into()),
                    Seg::Key("h".into()),
                    Seg::Key("authorization".into()),
                ],
                "Bearer ${env:TOKEN}",
                "TOKEN",
                "s3cr3t-token",
            ),
            r(
                "e.endpoint",
                vec![Seg::Key("e".into()), Seg::Key("endpoint".into())],
                "http://c/${env:TOKEN}",
                "TOKEN",
                "s3cr3t-token",
            ),
            r(
                "e.path",
                vec![Seg::Key("e".into()), Seg::Key("path".into())],
                "${env:DIR}/x",
                "DIR",
                "/data",
            ),
        ]);
        let v: Value = serde_yaml::from_str(
            "e:\n  h: {authorization: <redacted>, literal: <redacted>}\n  endpoint: http://c/s3cr3t-token\n  path: /data/x\n",
        )
        .unwrap();
        let out = serde_yaml::to_string(&refs.redact(v)).unwrap();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("authorization: Bearer ${env:TOKEN}"), "{out}");
        assert!(out.contains("endpoint: http://c/${env:TOKEN}"), "{out}");
        assert!(out.contains("literal: <redacted>"), "{out}");
        // Not a secret: shown as resolved.
        assert!(out.contains("path: /data/x"), "{out}");
    }

    #[test]
    fn scrub_replaces_environment_values_in_messages() {
        let refs = EnvRefs::new(vec![
            r("a.n", vec![], "${env:N}", "N", "12"),
            r("a.t", vec![], "${env:T}", "T", "hunter22"),
        ]);
        assert_eq!(
            refs.scrub("invalid type: string \"hunter22\"", "b"),
            "invalid type: string \"${env:T}\""
        );
        // A short value only in a message about its own setting.
        assert_eq!(refs.scrub("expected 12 got 12", "b"), "expected 12 got 12");
        assert_eq!(
            refs.scrub("expected 1 got 12", "a.n"),
            "expected 1 got ${env:N}"
        );
        assert!(matches!(refs.scrub("nothing", "x"), Cow::Borrowed(_)));
    }
}
