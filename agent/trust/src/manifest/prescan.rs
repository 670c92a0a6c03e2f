//! The YAML event pre-scan of a manifest, before any typed decoding: anchors, aliases, tags,
//! deep nesting, too many nodes, duplicate keys and multiple documents are refused, and the
//! position of every key is recorded for error messages.

use super::{MAX_DEPTH, MAX_EVENTS, ManifestError};
use std::collections::{BTreeMap, HashSet};
use yaml_rust2::parser::{Event, Parser};

/// Positions of keys and values, by dotted path, from the pre-scan.
#[derive(Default)]
pub(super) struct Positions(BTreeMap<String, (usize, usize)>);

impl Positions {
    pub(super) fn at(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = self.0.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.0.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: HashSet<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Walks the YAML events: refuses anchors, aliases, tags, deep nesting, too many nodes,
/// duplicate keys and multiple documents; records positions.
pub(super) fn prescan(text: &str) -> Result<Positions, ManifestError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = Positions::default();
    let mut events = 0usize;
    let mut docs = 0usize;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| ManifestError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            msg: format!("invalid YAML: {}", e.info()),
        })?;
        let at = (mark.line(), mark.col() + 1);
        let err = |msg: String| ManifestError {
            line: at.0,
            col: at.1,
            msg,
        };
        events += 1;
        if events > MAX_EVENTS {
            return Err(err(format!("more than {MAX_EVENTS} YAML nodes")));
        }
        // The path of a node starting here, and whether it is a mapping key.
        let next_path = |stack: &mut Vec<Frame>| -> (String, bool) {
            match stack.last_mut() {
                None => (String::new(), false),
                Some(Frame::Seq { path, next }) => {
                    *next += 1;
                    (format!("{path}[{}]", *next - 1), false)
                }
                Some(Frame::Map { path, key, .. }) => match key.take() {
                    Some(k) => (
                        if path.is_empty() {
                            k
                        } else {
                            format!("{path}.{k}")
                        },
                        false,
                    ),
                    None => (path.clone(), true),
                },
            }
        };
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                docs += 1;
                if docs > 1 {
                    return Err(err("more than one YAML document".into()));
                }
            }
            Event::Alias(_) => {
                return Err(err("YAML aliases are not allowed in a manifest".into()));
            }
            Event::Scalar(value, _, anchor, tag) => {
                if anchor != 0 {
                    return Err(err("YAML anchors are not allowed in a manifest".into()));
                }
                if tag.is_some() {
                    return Err(err("YAML tags are not allowed in a manifest".into()));
                }
                let (path, is_key) = next_path(&mut stack);
                if is_key {
                    if let Some(Frame::Map {
                        path: mp,
                        key,
                        seen,
                    }) = stack.last_mut()
                    {
                        if !seen.insert(value.clone()) {
                            return Err(err(format!("duplicate key {value:?}")));
                        }
                        let full = if mp.is_empty() {
                            value.clone()
                        } else {
                            format!("{mp}.{value}")
                        };
                        pos.0.entry(full).or_insert(at);
                        *key = Some(value);
                    }
                } else {
                    pos.0.entry(path).or_insert(at);
                }
            }
            Event::MappingStart(anchor, ref tag) | Event::SequenceStart(anchor, ref tag) => {
                if anchor != 0 {
                    return Err(err("YAML anchors are not allowed in a manifest".into()));
                }
                if tag.is_some() {
                    return Err(err("YAML tags are not allowed in a manifest".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(err(format!("nesting deeper than {MAX_DEPTH}")));
                }
                let (path, is_key) = next_path(&mut stack);
                if is_key {
                    return Err(err(
                        "complex (non-scalar) mapping keys are not allowed".into()
                    ));
                }
                pos.0.entry(path.clone()).or_insert(at);
                if matches!(ev, Event::MappingStart(..)) {
                    stack.push(Frame::Map {
                        path,
                        key: None,
                        seen: HashSet::new(),
                    });
                } else {
                    stack.push(Frame::Seq { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(pos)
}
