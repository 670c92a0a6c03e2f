//! The manifest's `cli:` field: the diagnostics verbs a plugin adds under
//! `srediag diagnose <plugin> <verb>`, their typed arguments and their output kinds; and what
//! an invocation's arguments must be to reach the plugin.
//!
//! A manifest is hostile input, so the declaration is bounded ([`MAX_VERBS`], [`MAX_ARGS`],
//! lengths, a small charset for names, no control characters in help texts). Arguments cross
//! as typed JSON: `string` and `enum` as strings, `int` as integers, `bool` as booleans,
//! `duration` as integer milliseconds. [`CliVerb::parse_words`] turns a command line into that
//! form (the CLI); [`CliVerb::check_args`] checks it and fills in defaults (the agent, before
//! anything reaches the plugin, whoever sent the request).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use srediag_plugin_sdk::control::OutputKind;
use std::collections::{BTreeMap, BTreeSet};

/// Most verbs one plugin declares.
pub const MAX_VERBS: usize = 32;
/// Most arguments of one verb.
pub const MAX_ARGS: usize = 32;
/// Most values of an `enum` argument.
pub const MAX_ENUM_VALUES: usize = 64;
/// Most output entries of one verb.
pub const MAX_OUTPUTS: usize = 8;
/// Longest `summary` (bytes).
pub const MAX_SUMMARY: usize = 200;
/// Longest argument `help` (bytes).
pub const MAX_HELP: usize = 512;
/// Longest verb `description` (bytes).
pub const MAX_DESCRIPTION: usize = 4096;
/// Longest value of a `string` argument (bytes).
pub const MAX_STRING_VALUE: usize = 4096;
/// Longest `duration` value: 7 days, in milliseconds.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Argument names the CLI keeps for itself (`--output FILE`, `--socket`, `--help`).
pub const RESERVED_ARGS: [&str; 3] = ["output", "socket", "help"];

/// One diagnostics verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliVerb {
    /// `[a-z][a-z0-9-]{0,63}`, unique in the manifest.
    pub name: String,
    /// One line for `srediag diagnose --help` (≤ 200 bytes, no control characters).
    pub summary: String,
    /// More text for `srediag diagnose <plugin> <verb> --help` (≤ 4096 bytes; newlines allowed).
    #[serde(default)]
    pub description: String,
    /// Arguments, `--name value` on the command line.
    #[serde(default)]
    pub args: Vec<CliArg>,
    /// What the verb can write; the operator picks one per invocation.
    pub output: Vec<OutputSpec>,
}

/// The type of an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgType {
    /// Free text (≤ 4096 bytes, no NUL).
    String,
    /// A signed 64-bit integer, within `min`/`max` when given.
    Int,
    /// `10s`, `500ms`, `2m`, `1h30m`, `1d` (≤ 7 days); crosses as milliseconds.
    Duration,
    /// `--name` alone is true; `--name=false` (or `--name false`).
    Bool,
    /// One of `values`.
    Enum,
}

impl ArgType {
    /// Lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Int => "int",
            ArgType::Duration => "duration",
            ArgType::Bool => "bool",
            ArgType::Enum => "enum",
        }
    }
}

/// One argument of a verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliArg {
    /// `[a-z][a-z0-9-]{0,31}` (`--name`), unique in the verb, not `output`, `socket`, `help`.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ArgType,
    /// One line of help (≤ 512 bytes, no control characters).
    #[serde(default)]
    pub help: String,
    /// Must be given (then no `default`).
    #[serde(default)]
    pub required: bool,
    /// The value when not given, written as on the command line (`10s`, `49`, `svg`, `true`).
    #[serde(
        default,
        deserialize_with = "scalar_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<String>,
    /// The allowed values of an `enum` (1–64 of `[a-z0-9][a-z0-9._-]{0,63}`).
    #[serde(default)]
    pub values: Vec<String>,
    /// Smallest allowed `int`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Largest allowed `int`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// An output a verb can write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OutputSpec {
    /// Text for a terminal (`-o text`, the default).
    Text {},
    /// JSON values, one per line (`-o json`).
    Json {},
    /// A file the CLI writes to `--output FILE` (`-` for stdout).
    File {
        /// Its media type, e.g. `image/svg+xml`.
        media_type: String,
    },
}

impl OutputSpec {
    /// The kind.
    pub fn kind(&self) -> OutputKind {
        match self {
            OutputSpec::Text {} => OutputKind::Text,
            OutputSpec::Json {} => OutputKind::Json,
            OutputSpec::File { .. } => OutputKind::File,
        }
    }
}

/// A default written as a YAML scalar: a string, an integer or a boolean (kept as text).
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string, an integer or a boolean")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }
    d.deserialize_any(V)
}

/// Why an invocation's arguments are refused (one line, naming the argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Not declared by the verb.
    #[error("unknown argument --{name} ({known})")]
    Unknown {
        /// The name given.
        name: String,
        /// The declared ones, for the message.
        known: String,
    },
    /// Given twice.
    #[error("--{name} given more than once")]
    Repeated {
        /// The argument.
        name: String,
    },
    /// Required and not given.
    #[error("missing --{name} ({kind}, required)")]
    Missing {
        /// The argument.
        name: String,
        /// Its type.
        kind: &'static str,
    },
    /// No value after `--name`.
    #[error("--{name} needs a value ({expected})")]
    NoValue {
        /// The argument.
        name: String,
        /// What it takes.
        expected: String,
    },
    /// The value does not have the argument's type or range.
    #[error("--{name}: {value:?} is not {expected}")]
    Invalid {
        /// The argument.
        name: String,
        /// The value (cut to 64 characters).
        value: String,
        /// What it takes.
        expected: String,
    },
    /// A word that is not `--name`.
    #[error("unexpected {word:?}: arguments are written --name value")]
    Positional {
        /// The word (cut to 64 characters).
        word: String,
    },
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Parses a duration: one or more `<digits><unit>` with units `ms`, `s`, `m`, `h`, `d`
/// (`1h30m`, `500ms`); milliseconds, at most [`MAX_DURATION_MS`].
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    let (mut i, mut total) = (0usize, 0u64);
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 12 {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_lowercase() {
            i += 1;
        }
        let ms = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms)?)?;
    }
    (total <= MAX_DURATION_MS).then_some(total)
}

fn valid_word(s: &str, max: usize, first_letter: bool, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && (b[0].is_ascii_lowercase() || (!first_letter && b[0].is_ascii_digit()))
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || extra.contains(c)
        })
}

fn one_line(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// A media type: `type/subtype`, each `[a-z0-9][a-z0-9.+-]{0,63}`.
pub fn valid_media_type(s: &str) -> bool {
    let Some((t, sub)) = s.split_once('/') else {
        return false;
    };
    [t, sub].iter().all(|p| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= 64
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".+-".contains(c))
    })
}

impl CliArg {
    /// What the argument takes, for messages and help (`int in 1..=1000`, `one of a, b`).
    pub fn expected(&self) -> String {
        match self.kind {
            ArgType::String => format!("a string of at most {MAX_STRING_VALUE} bytes"),
            ArgType::Int => match (self.min, self.max) {
                (Some(a), Some(b)) => format!("an integer from {a} to {b}"),
                (Some(a), None) => format!("an integer of at least {a}"),
                (None, Some(b)) => format!("an integer of at most {b}"),
                (None, None) => "an integer".into(),
            },
            ArgType::Duration => "a duration such as 10s, 500ms, 2m, 1h30m (at most 7d)".into(),
            ArgType::Bool => "true or false".into(),
            ArgType::Enum => format!("one of {}", self.values.join(", ")),
        }
    }

    fn invalid(&self, value: &str) -> ArgError {
        ArgError::Invalid {
            name: self.name.clone(),
            value: cut(value),
            expected: self.expected(),
        }
    }

    /// The typed value of `text` as written on a command line.
    pub fn parse_value(&self, text: &str) -> Result<Value, ArgError> {
        let v = match self.kind {
            ArgType::String => Value::String(text.to_string()),
            ArgType::Int => Value::from(text.parse::<i64>().map_err(|_| self.invalid(text))?),
            ArgType::Duration => {
                Value::from(parse_duration_ms(text).ok_or_else(|| self.invalid(text))?)
            }
            ArgType::Bool => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(self.invalid(text)),
            },
            ArgType::Enum => Value::String(text.to_string()),
        };
        self.check_value(&v)
    }

    /// Checks a typed value (from the admin socket, or [`CliArg::parse_value`]).
    pub fn check_value(&self, v: &Value) -> Result<Value, ArgError> {
        let shown = || match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let ok = match (self.kind, v) {
            (ArgType::String, Value::String(s)) => s.len() <= MAX_STRING_VALUE && !s.contains('\0'),
            (ArgType::Int, Value::Number(n)) => n.as_i64().is_some_and(|i| {
                self.min.is_none_or(|m| i >= m) && self.max.is_none_or(|m| i <= m)
            }),
            (ArgType::Duration, Value::Number(n)) => {
                n.as_u64().is_some_and(|ms| ms <= MAX_DURATION_MS)
            }
            (ArgType::Bool, Value::Bool(_)) => true,
            (ArgType::Enum, Value::String(s)) => self.values.iter().any(|x| x == s),
            _ => false,
        };
        if ok {
            Ok(v.clone())
        } else {
            Err(self.invalid(&shown()))
        }
    }

    /// The default as a typed value (validated with the manifest).
    pub fn default_value(&self) -> Option<Value> {
        self.default
            .as_deref()
            .and_then(|d| self.parse_value(d).ok())
    }

    /// Problems with this declaration, as `(field below the argument, message)`.
    fn problems(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !valid_word(&self.name, 32, true, b"") || RESERVED_ARGS.contains(&self.name.as_str()) {
            e.push((
                ".name".into(),
                format!(
                    "{:?} must match [a-z][a-z0-9-]{{0,31}} and not be output, socket or help",
                    self.name
                ),
            ));
        }
        if self.help.len() > MAX_HELP || !one_line(&self.help) {
            e.push((
                ".help".into(),
                format!("longer than {MAX_HELP} bytes or has control characters"),
            ));
        }
        if self.kind == ArgType::Enum {
            let mut seen = BTreeSet::new();
            if self.values.is_empty() || self.values.len() > MAX_ENUM_VALUES {
                e.push((
                    ".values".into(),
                    format!("an enum lists 1 to {MAX_ENUM_VALUES} values"),
                ));
            }
            for (i, v) in self.values.iter().enumerate() {
                if !valid_word(v, 64, false, b"._") || !seen.insert(v) {
                    e.push((
                        format!(".values[{i}]"),
                        format!("{:?} must be a unique [a-z0-9][a-z0-9._-]{{0,63}}", cut(v)),
                    ));
                }
            }
        } else if !self.values.is_empty() {
            e.push((".values".into(), "only enum arguments list values".into()));
        }
        if self.kind != ArgType::Int && (self.min.is_some() || self.max.is_some()) {
            e.push((".min".into(), "only int arguments have min and max".into()));
        }
        if let (Some(a), Some(b)) = (self.min, self.max)
            && a > b
        {
            e.push((".min".into(), format!("{a} is above max {b}")));
        }
        if let Some(d) = &self.default {
            if self.required {
                e.push((
                    ".default".into(),
                    "a required argument has no default".into(),
                ));
            }
            if let Err(err) = self.parse_value(d) {
                e.push((".default".into(), err.to_string()));
            }
        }
        e
    }
}

impl CliVerb {
    /// The declared argument `name`.
    pub fn arg(&self, name: &str) -> Option<&CliArg> {
        self.args.iter().find(|a| a.name == name)
    }

    /// The output kinds it declares (each once).
    pub fn kinds(&self) -> BTreeSet<OutputKind> {
        self.output.iter().map(OutputSpec::kind).collect()
    }

    /// True when it declares a file output of `media_type`.
    pub fn writes_media_type(&self, media_type: &str) -> bool {
        self.output
            .iter()
            .any(|o| matches!(o, OutputSpec::File { media_type: m } if m == media_type))
    }

    fn known(&self) -> String {
        if self.args.is_empty() {
            return format!("verb {} takes no arguments", self.name);
        }
        let names: Vec<String> = self.args.iter().map(|a| format!("--{}", a.name)).collect();
        format!("arguments: {}", names.join(", "))
    }

    fn unknown(&self, name: &str) -> ArgError {
        ArgError::Unknown {
            name: cut(name),
            known: self.known(),
        }
    }

    /// Checks typed arguments against the declaration: every name declared, each value of its
    /// type and range, every required one present; fills in the defaults. The agent runs this on
    /// every invocation, whoever sent it.
    pub fn check_args(
        &self,
        args: &BTreeMap<String, Value>,
    ) -> Result<BTreeMap<String, Value>, ArgError> {
        let mut out = BTreeMap::new();
        for (name, v) in args {
            let a = self.arg(name).ok_or_else(|| self.unknown(name))?;
            out.insert(name.clone(), a.check_value(v)?);
        }
        for a in &self.args {
            if out.contains_key(&a.name) {
                continue;
            }
            if a.required {
                return Err(ArgError::Missing {
                    name: a.name.clone(),
                    kind: a.kind.as_str(),
                });
            }
            if let Some(d) = a.default_value() {
                out.insert(a.name.clone(), d);
            }
        }
        Ok(out)
    }

    /// Parses command-line words (`--name value`, `--name=value`, a `bool` alone) into typed
    /// arguments (without defaults: [`CliVerb::check_args`] adds them).
    pub fn parse_words(&self, words: &[String]) -> Result<BTreeMap<String, Value>, ArgError> {
        let mut out = BTreeMap::new();
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            i += 1;
            let Some(flag) = w.strip_prefix("--").filter(|f| !f.is_empty()) else {
                return Err(ArgError::Positional { word: cut(w) });
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            let a = self.arg(name).ok_or_else(|| self.unknown(name))?;
            let text = match (inline, a.kind) {
                (Some(v), _) => v.to_string(),
                (None, ArgType::Bool) => match words.get(i).map(String::as_str) {
                    Some(v @ ("true" | "false")) => {
                        i += 1;
                        v.to_string()
                    }
                    _ => "true".into(),
                },
                (None, _) => match words.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => {
                        return Err(ArgError::NoValue {
                            name: a.name.clone(),
                            expected: a.expected(),
                        });
                    }
                },
            };
            let v = a.parse_value(&text)?;
            if out.insert(a.name.clone(), v).is_some() {
                return Err(ArgError::Repeated {
                    name: a.name.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Problems with this declaration, as `(field below the verb, message)`.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !valid_word(&self.name, 64, true, b"") {
            e.push((
                ".name".into(),
                format!("{:?} must match [a-z][a-z0-9-]{{0,63}}", cut(&self.name)),
            ));
        }
        if self.summary.is_empty() || self.summary.len() > MAX_SUMMARY || !one_line(&self.summary) {
            e.push((
                ".summary".into(),
                format!("one line of 1 to {MAX_SUMMARY} bytes without control characters"),
            ));
        }
        if self.description.len() > MAX_DESCRIPTION
            || self
                .description
                .chars()
                .any(|c| c.is_control() && c != '\n')
        {
            e.push((
                ".description".into(),
                format!(
                    "longer than {MAX_DESCRIPTION} bytes or has control characters other than newlines"
                ),
            ));
        }
        if self.args.len() > MAX_ARGS {
            e.push((".args".into(), format!("more than {MAX_ARGS} arguments")));
        }
        let mut names = BTreeSet::new();
        for (j, a) in self.args.iter().take(MAX_ARGS).enumerate() {
            if !names.insert(&a.name) {
                e.push((
                    format!(".args[{j}].name"),
                    format!("{:?} is declared twice", cut(&a.name)),
                ));
            }
            for (f, m) in a.problems() {
                e.push((format!(".args[{j}]{f}"), m));
            }
        }
        if self.output.is_empty() || self.output.len() > MAX_OUTPUTS {
            e.push((
                ".output".into(),
                format!("a verb declares 1 to {MAX_OUTPUTS} outputs (text, json, file)"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (j, o) in self.output.iter().enumerate() {
            let key = match o {
                OutputSpec::File { media_type } => {
                    if !valid_media_type(media_type) {
                        e.push((
                            format!(".output[{j}].media_type"),
                            format!("{:?} is not a media type (type/subtype)", cut(media_type)),
                        ));
                    }
                    format!("file {media_type}")
                }
                other => other.kind().as_str().to_string(),
            };
            if !seen.insert(key) {
                e.push((format!(".output[{j}]"), "declared twice".into()));
            }
        }
        e
    }
}

/// Problems with a whole `cli:` list, as `(field path, message)`.
pub(super) fn problems(verbs: &[CliVerb]) -> Vec<(String, String)> {
    let mut e = Vec::new();
    if verbs.len() > MAX_VERBS {
        e.push(("cli".into(), format!("more than {MAX_VERBS} verbs")));
    }
    let mut names = BTreeSet::new();
    for (i, v) in verbs.iter().take(MAX_VERBS).enumerate() {
        if !names.insert(&v.name) {
            e.push((
                format!("cli[{i}].name"),
                format!("{:?} is declared twice", cut(&v.name)),
            ));
        }
        for (f, m) in v.problems() {
            e.push((format!("cli[{i}]{f}"), m));
        }
    }
    e
}

/// Fuzzing the argument parser and checker with words derived from arbitrary bytes: never a
/// panic, and whatever parses also passes the agent's check.
pub fn fuzz_args(verb: &CliVerb, data: &[u8]) {
    let words: Vec<String> = String::from_utf8_lossy(data)
        .split([' ', '\n'])
        .take(64)
        .map(str::to_string)
        .collect();
    if let Ok(args) = verb.parse_words(&words) {
        let checked = verb.check_args(&args);
        if let Ok(full) = &checked {
            assert_eq!(
                verb.check_args(full).as_ref(),
                Ok(full),
                "checking is not idempotent"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb() -> CliVerb {
        serde_yaml::from_str(
            r#"
name: cpu-profile
summary: Sample CPU stacks
args:
  - {name: duration, type: duration, default: 10s, help: how long}
  - {name: pid, type: int, min: 1, help: the process}
  - {name: frequency, type: int, default: 49, min: 1, max: 1000}
  - {name: format, type: enum, values: [folded, svg, pprof], default: svg}
  - {name: kernel, type: bool}
  - {name: label, type: string, required: true}
output:
  - {kind: text}
  - {kind: file, media_type: image/svg+xml}
"#,
        )
        .unwrap()
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_typed_words_and_fills_defaults() {
        let v = verb();
        assert!(v.problems().is_empty(), "{:?}", v.problems());
        let a = v
            .parse_words(&words("--pid 42 --duration=1m30s --kernel --label x y"))
            .unwrap_err();
        assert_eq!(
            a,
            ArgError::Positional { word: "y".into() },
            "a stray word is refused"
        );
        let a = v
            .parse_words(&words("--pid 42 --duration=1m30s --kernel --label x"))
            .unwrap();
        let full = v.check_args(&a).unwrap();
        assert_eq!(full["pid"], 42);
        assert_eq!(full["duration"], 90_000);
        assert_eq!(full["kernel"], true);
        assert_eq!(full["frequency"], 49);
        assert_eq!(full["format"], "svg");
        assert_eq!(full["label"], "x");
        let a = v.parse_words(&words("--kernel false --label x")).unwrap();
        assert_eq!(a["kernel"], false);
    }

    #[test]
    fn refusals_name_the_argument() {
        let v = verb();
        let e = |s: &str| {
            v.parse_words(&words(s))
                .and_then(|a| v.check_args(&a))
                .unwrap_err()
                .to_string()
        };
        assert!(
            e("--nope 1 --label x").starts_with("unknown argument --nope (arguments: --duration")
        );
        assert_eq!(
            e("--pid abc --label x"),
            "--pid: \"abc\" is not an integer of at least 1"
        );
        assert_eq!(
            e("--pid 0 --label x"),
            "--pid: \"0\" is not an integer of at least 1"
        );
        assert!(e("--duration 10 --label x").starts_with("--duration: \"10\" is not a duration"));
        assert_eq!(
            e("--format png --label x"),
            "--format: \"png\" is not one of folded, svg, pprof"
        );
        assert_eq!(e("--pid 1"), "missing --label (string, required)");
        assert_eq!(e("--label x --label y"), "--label given more than once");
        assert!(e("--label").starts_with("--label needs a value"));
        // The agent's own check refuses what a hostile client could send directly.
        let mut raw = BTreeMap::new();
        raw.insert("label".to_string(), Value::from(3));
        assert!(v.check_args(&raw).is_err());
        raw.insert("label".to_string(), Value::from("a\0b"));
        assert!(v.check_args(&raw).is_err());
        raw.insert("label".to_string(), Value::from("ok"));
        raw.insert("duration".to_string(), Value::from(-1));
        assert!(v.check_args(&raw).is_err());
        raw.insert("duration".to_string(), Value::from(MAX_DURATION_MS + 1));
        assert!(v.check_args(&raw).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("7d"), Some(MAX_DURATION_MS));
        for bad in [
            "",
            "10",
            "s",
            "8d",
            "1.5s",
            "-1s",
            "10sec",
            "99999999999999s",
            "1s ",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn declarations_are_bounded_and_checked() {
        let mut v = verb();
        v.args[0].default = Some("forever".into());
        v.args[1].name = "output".into();
        v.args[3].values.push("svg".into());
        v.args[5].default = Some("x".into());
        v.summary = "two\nlines".into();
        v.output.push(OutputSpec::File {
            media_type: "svg".into(),
        });
        v.output.push(OutputSpec::Text {});
        let p: Vec<String> = v.problems().into_iter().map(|(f, _)| f).collect();
        for f in [
            ".args[0].default",
            ".args[1].name",
            ".args[3].values[3]",
            ".args[5].default",
            ".summary",
            ".output[2].media_type",
            ".output[3]",
        ] {
            assert!(p.iter().any(|x| x == f), "{f} not reported: {p:?}");
        }
        let many = vec![verb(); MAX_VERBS + 1];
        assert!(problems(&many).iter().any(|(f, _)| f == "cli"));
    }
}
