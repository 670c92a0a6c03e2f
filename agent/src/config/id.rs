//! Component ids (`type[/name]`) and pipeline ids (`signal[/name]`).

use serde::{Serialize, Serializer};
use std::fmt;

/// A component id: `otlp`, `file/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// The component type (`file`).
    pub type_name: String,
    /// The optional instance name (`logs`).
    pub name: Option<String>,
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ComponentId {
    /// Parses `type[/name]`; the type is `[A-Za-z0-9_.-]+`, so is the name.
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (t, n) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if !valid_part(t) {
            return Err(format!(
                "invalid component id {s:?}: expected `type[/name]` with letters, digits, `_`, `-` or `.`"
            ));
        }
        if let Some(n) = n
            && !valid_part(n)
        {
            return Err(format!(
                "invalid component id {s:?}: the name after `/` must be non-empty letters, digits, `_`, `-` or `.`"
            ));
        }
        Ok(ComponentId {
            type_name: t.to_string(),
            name: n.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

impl Serialize for ComponentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_ids() {
        let id = ComponentId::parse("file/logs").unwrap();
        assert_eq!(id.type_name, "file");
        assert_eq!(id.name.as_deref(), Some("logs"));
        assert_eq!(id.to_string(), "file/logs");
        assert_eq!(ComponentId::parse("otlp").unwrap().name, None);
        for bad in ["", "/x", "a/", "a/b/c", "a b", "é"] {
            assert!(ComponentId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
