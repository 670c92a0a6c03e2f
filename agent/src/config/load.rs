//! Reading and decoding a configuration file.

use super::diagnostic::{Diagnostic, Severity};
use super::id::ComponentId;
use super::interpolate::{Env, interpolate};
use super::position::PosIndex;
use super::secret::EnvRefs;
use super::{Component, Config, Service};
use crate::components::{self, Kind};
use crate::pipeline::QueueConfig;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The embedded default configuration, used by `srediag run` without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// The name diagnostics use for the embedded default.
pub const EMBEDDED_NAME: &str = "<embedded default>";

/// Configuration files larger than this are refused before parsing.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Where a configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The embedded default.
    Embedded,
    /// A file.
    File(PathBuf),
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than the cap.
    #[error("config file {path} is {size} bytes, more than the {MAX_CONFIG_BYTES}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file was read but is not a valid configuration.
    #[error("{} problem(s) in {file}", diagnostics.iter().filter(|d| d.severity == Severity::Error).count())]
    Invalid {
        /// The file name as printed.
        file: String,
        /// Every problem found (errors and warnings).
        diagnostics: Vec<Diagnostic>,
    },
}

/// Reads and validates a configuration. On success, returns it with its warnings.
pub fn load(source: &Source, env: &dyn Env) -> Result<(Config, Vec<Diagnostic>), LoadError> {
    match source {
        Source::Embedded => load_str(DEFAULT_CONFIG, EMBEDDED_NAME, env),
        Source::File(path) => {
            let read = |source| LoadError::Read {
                path: path.clone(),
                source,
            };
            let meta = std::fs::metadata(path).map_err(read)?;
            if meta.len() > MAX_CONFIG_BYTES {
                return Err(LoadError::TooLarge {
                    path: path.clone(),
                    size: meta.len(),
                });
            }
            let text = std::fs::read_to_string(path).map_err(read)?;
            load_str(&text, &path.display().to_string(), env)
        }
    }
}

/// Collects diagnostics while decoding.
pub(super) struct Ctx<'a> {
    pub file: &'a str,
    pub index: PosIndex,
    pub diags: Vec<Diagnostic>,
    /// Components defined but rejected (already reported): references to them are not errors.
    pub broken: std::collections::BTreeSet<(Kind, String)>,
    /// Where `${env:…}` was used.
    pub env_refs: EnvRefs,
}

impl Ctx<'_> {
    /// Takes every value from the environment out of the diagnostics (module doc of
    /// `config::secret`).
    fn scrub(&mut self) {
        for d in &mut self.diags {
            if let std::borrow::Cow::Owned(m) = self.env_refs.scrub(&d.message, &d.path) {
                d.message = m;
            }
        }
    }

    pub fn error_at_value(&mut self, path: &str, msg: String) {
        let pos = self.index.value(path);
        self.diags
            .push(Diagnostic::new(Severity::Error, self.file, pos, path, msg));
    }

    pub fn error_at_key(&mut self, path: &str, msg: String) {
        let pos = self.index.key(path);
        self.diags
            .push(Diagnostic::new(Severity::Error, self.file, pos, path, msg));
    }

    pub fn warn_at_key(&mut self, path: &str, msg: String) {
        let pos = self.index.key(path);
        self.diags.push(Diagnostic::new(
            Severity::Warning,
            self.file,
            pos,
            path,
            msg,
        ));
    }

    /// Like [`Ctx::decode_error`]; `queue` adds the generic `queue` key to serde's list of
    /// expected fields of an unknown-field error.
    fn decode_error_with_hint(
        &mut self,
        base: &str,
        err: serde_path_to_error::Error<serde_yaml::Error>,
        queue: bool,
    ) {
        let before = self.diags.len();
        self.decode_error(base, err);
        if queue {
            for d in &mut self.diags[before..] {
                if d.message.starts_with("unknown field") && d.message.contains("expected") {
                    d.message.push_str(", or `queue`");
                }
            }
        }
    }

    /// Reports a typed-decode error of the value at `base`.
    fn decode_error(&mut self, base: &str, err: serde_path_to_error::Error<serde_yaml::Error>) {
        let inner = err.path().to_string();
        let mut path = if inner == "." || inner.is_empty() {
            base.to_string()
        } else if base.is_empty() {
            inner
        } else {
            format!("{base}.{inner}")
        };
        let msg = err.into_inner().to_string();
        if let Some(field) = unknown_field(&msg) {
            if !path.ends_with(&format!(".{field}")) && path != field {
                path = if path.is_empty() {
                    field
                } else {
                    format!("{path}.{field}")
                };
            }
            self.error_at_key(&path, msg);
        } else {
            self.error_at_value(&path, msg);
        }
    }
}

/// The field name in serde's "unknown field `x`, expected …" message.
fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Decodes a typed value; `null` reads as an empty mapping so every default applies.
pub fn decode<T: DeserializeOwned>(
    value: Value,
) -> Result<T, serde_path_to_error::Error<serde_yaml::Error>> {
    let value = if value.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        value
    };
    serde_path_to_error::deserialize(value)
}

/// Validates configuration text. `file` names it in diagnostics.
pub fn load_str(
    text: &str,
    file: &str,
    env: &dyn Env,
) -> Result<(Config, Vec<Diagnostic>), LoadError> {
    let mut ctx = Ctx {
        file,
        index: PosIndex::build(text),
        diags: Vec::new(),
        broken: Default::default(),
        env_refs: EnvRefs::default(),
    };
    let invalid = |mut ctx: Ctx| {
        ctx.diags.sort_by_key(|d| (d.line, d.column));
        ctx.scrub();
        LoadError::Invalid {
            file: file.to_string(),
            diagnostics: ctx.diags,
        }
    };
    let mut root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e)
            if !ctx.index.duplicates().is_empty() && e.to_string().contains("duplicate entry") =>
        {
            for (path, pos, first) in ctx.index.duplicates().to_vec() {
                let key = path.rsplit('.').next().unwrap_or(&path).to_string();
                ctx.diags.push(Diagnostic::new(
                    Severity::Error,
                    file,
                    pos,
                    &path,
                    format!(
                        "duplicate key `{key}` (first defined at line {}): ids must be unique",
                        first.line
                    ),
                ));
            }
            return Err(invalid(ctx));
        }
        Err(e) => {
            let pos = e
                .location()
                .map(|l| super::position::Pos {
                    line: l.line(),
                    col: l.column(),
                })
                .unwrap_or_default();
            ctx.diags.push(Diagnostic::new(
                Severity::Error,
                file,
                pos,
                "",
                e.to_string(),
            ));
            return Err(invalid(ctx));
        }
    };
    let mut ierrs = Vec::new();
    ctx.env_refs = EnvRefs::new(interpolate(&mut root, env, "", &mut ierrs));
    for e in ierrs {
        ctx.error_at_value(&e.path, e.message);
    }
    let Value::Mapping(top) = root else {
        ctx.error_at_value(
            "",
            "the configuration must be a mapping with `receivers`, `exporters` and `service`"
                .into(),
        );
        return Err(invalid(ctx));
    };
    let mut sections: BTreeMap<&str, Value> = BTreeMap::new();
    for (k, v) in top {
        let key = k.as_str().unwrap_or("<non-string key>").to_string();
        match key.as_str() {
            "receivers" | "processors" | "exporters" | "extensions" | "plugins" | "service" => {
                let k: &str = match key.as_str() {
                    "receivers" => "receivers",
                    "processors" => "processors",
                    "exporters" => "exporters",
                    "extensions" => "extensions",
                    "plugins" => "plugins",
                    _ => "service",
                };
                sections.insert(k, v);
            }
            _ => ctx.error_at_key(
                &key,
                format!("unknown top-level key `{key}`, expected one of `receivers`, `processors`, `exporters`, `extensions`, `plugins`, `service`"),
            ),
        }
    }
    let mut take = |name: &str| sections.remove(name).unwrap_or(Value::Null);
    let receivers = components_of(&mut ctx, Kind::Receiver, take("receivers"));
    let processors = components_of(&mut ctx, Kind::Processor, take("processors"));
    let exporters = components_of(&mut ctx, Kind::Exporter, take("exporters"));
    let extensions = components_of(&mut ctx, Kind::Extension, take("extensions"));
    let plugins = plugins_of(&mut ctx, take("plugins"));
    let service_value = take("service");
    let service: Option<Service> = if service_value.is_null() {
        ctx.error_at_value(
            "",
            "missing `service` section: at least one pipeline is needed under `service.pipelines`"
                .into(),
        );
        None
    } else {
        match decode::<Service>(service_value) {
            Ok(s) => Some(s),
            Err(e) => {
                ctx.decode_error("service", e);
                None
            }
        }
    };
    let Some(service) = service else {
        return Err(invalid(ctx));
    };
    let mut config = Config {
        receivers,
        processors,
        exporters,
        extensions,
        plugins,
        service,
        env_refs: EnvRefs::default(),
    };
    super::validate::validate(&config, &mut ctx);
    if ctx.diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(invalid(ctx));
    }
    ctx.diags.sort_by_key(|d| (d.line, d.column));
    ctx.scrub();
    config.env_refs = ctx.env_refs;
    Ok((config, ctx.diags))
}

/// Decodes one component section (`receivers:` …).
fn components_of(ctx: &mut Ctx, kind: Kind, value: Value) -> BTreeMap<ComponentId, Component> {
    let section = kind.section();
    let mut out = BTreeMap::new();
    let map = match value {
        Value::Null => return out,
        Value::Mapping(m) => m,
        _ => {
            ctx.error_at_value(
                section,
                format!("`{section}` must be a mapping of component ids to settings"),
            );
            return out;
        }
    };
    for (k, v) in map {
        let Some(key) = k.as_str().map(str::to_string) else {
            ctx.error_at_value(
                section,
                format!("`{section}` keys must be component ids (strings)"),
            );
            continue;
        };
        let path = format!("{section}.{key}");
        let id = match ComponentId::parse(&key) {
            Ok(id) => id,
            Err(e) => {
                ctx.error_at_key(&path, e);
                continue;
            }
        };
        let Some(spec) = components::find(kind, &id.type_name) else {
            ctx.broken.insert((kind, key.clone()));
            let known = components::types_of(kind);
            let hint = if known.is_empty() {
                format!(
                    "no built-in {} exists yet; plugin components go under `plugins`",
                    kind.as_str()
                )
            } else {
                format!("known {} types: {}", kind.as_str(), known.join(", "))
            };
            ctx.error_at_key(
                &path,
                format!("unknown {} type `{}` ({hint})", kind.as_str(), id.type_name),
            );
            continue;
        };
        let mut v = if v.is_null() {
            Value::Mapping(Mapping::new())
        } else {
            v
        };
        let mut queue = None;
        if matches!(kind, Kind::Processor | Kind::Exporter) {
            let q = match &mut v {
                Value::Mapping(m) => m.remove("queue"),
                _ => None,
            };
            match q.map(decode::<QueueConfig>).transpose() {
                Ok(q) => {
                    let q = q.unwrap_or_default();
                    if q.capacity == 0 {
                        ctx.error_at_value(
                            &format!("{path}.queue.capacity"),
                            "queue capacity must be at least 1".into(),
                        );
                    }
                    queue = Some(q);
                }
                Err(e) => {
                    ctx.broken.insert((kind, key.clone()));
                    ctx.decode_error(&format!("{path}.queue"), e)
                }
            }
        }
        match (spec.parse)(v) {
            Ok(config) => {
                for (sub, msg) in config.validate() {
                    let p = if sub.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}.{sub}")
                    };
                    ctx.error_at_value(&p, msg);
                }
                out.insert(
                    id,
                    Component {
                        kind,
                        config,
                        queue,
                    },
                );
            }
            Err(e) => {
                ctx.broken.insert((kind, key.clone()));
                let queue_hint = matches!(kind, Kind::Processor | Kind::Exporter);
                ctx.decode_error_with_hint(&path, e, queue_hint);
            }
        }
    }
    out
}

/// Decodes `plugins:`.
fn plugins_of(ctx: &mut Ctx, value: Value) -> crate::plugins::config::Plugins {
    let mut out = BTreeMap::new();
    let map = match value {
        Value::Null => return out,
        Value::Mapping(m) => m,
        _ => {
            ctx.error_at_value(
                "plugins",
                "`plugins` must be a mapping of plugin names to settings".into(),
            );
            return out;
        }
    };
    for (k, v) in map {
        let Some(name) = k.as_str().map(str::to_string) else {
            ctx.error_at_value("plugins", "plugin names must be strings".into());
            continue;
        };
        let path = format!("plugins.{name}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            ctx.error_at_key(
                &path,
                format!(
                    "invalid plugin name {name:?}: use letters, digits, `_` or `-` (at most 64)"
                ),
            );
            continue;
        }
        match decode::<crate::plugins::config::PluginConfig>(v) {
            Ok(p) => {
                for (sub, msg) in p.validate() {
                    ctx.error_at_value(&format!("{path}.{sub}"), msg);
                }
                if p.path.is_some() && p.bundle.is_none() {
                    ctx.warn_at_key(
                        &format!("{path}.path"),
                        "unsigned development mode: the plugin loads only if the trust policy says allow_unsigned: true (every load logged and counted); use a signed `bundle:` in production".into(),
                    );
                }
                out.insert(name, p);
            }
            Err(e) => ctx.decode_error(&path, e),
        }
    }
    out
}
