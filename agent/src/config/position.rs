//! An index from key paths (`service.pipelines.metrics.exporters[1]`) to positions in the YAML
//! text, built from the parser's marked events, so every problem names FILE:LINE:COL.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// Positions of values and mapping keys by path.
#[derive(Debug, Default)]
pub struct PosIndex {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    /// Keys defined twice in one mapping: (path, position of the repeat, first position).
    duplicates: Vec<(String, Pos, Pos)>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        start: Pos,
    },
    Seq {
        path: String,
        next: usize,
    },
}

struct Builder {
    index: PosIndex,
    stack: Vec<Frame>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// The path of the node starting now, and whether it is a mapping key.
    fn next_path(&mut self) -> (String, bool) {
        match self.stack.last_mut() {
            None => (String::new(), false),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                (p, false)
            }
            Some(Frame::Map { path, key, .. }) => match key.take() {
                Some(k) => (join(path, &k), false),
                None => (path.clone(), true),
            },
        }
    }

    fn pos(mark: &Marker) -> Pos {
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Self::pos(&mark);
        match ev {
            Event::Scalar(value, ..) => {
                let (path, is_key) = self.next_path();
                if is_key {
                    let full = join(&path, &value);
                    // A block mapping's position is its first key.
                    self.index.values.entry(path.clone()).or_insert(pos);
                    if let Some(first) = self.index.keys.get(&full) {
                        self.index.duplicates.push((full, pos, *first));
                    } else {
                        self.index.keys.insert(full, pos);
                    }
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                } else {
                    self.index.values.entry(path).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                let (path, is_key) = self.next_path();
                if is_key {
                    // A complex key; keep the map consistent by using a placeholder.
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some("<alias>".into());
                    }
                } else {
                    self.index.values.entry(path).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                let (path, is_key) = self.next_path();
                let path = if is_key {
                    join(&path, "<complex-key>")
                } else {
                    path
                };
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    start: pos,
                });
            }
            Event::SequenceStart(..) => {
                let (path, is_key) = self.next_path();
                let path = if is_key {
                    join(&path, "<complex-key>")
                } else {
                    path
                };
                self.index.values.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { path, start, .. }) = self.stack.pop() {
                    self.index.values.entry(path).or_insert(start);
                }
            }
            Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl PosIndex {
    /// Builds the index. A syntax error yields what was indexed before it (the YAML decoder
    /// reports the syntax error itself, with its position).
    pub fn build(text: &str) -> PosIndex {
        let mut b = Builder {
            index: PosIndex::default(),
            stack: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        b.index
    }

    /// Keys defined twice in one mapping: `(path, position of the repeat, first position)`.
    pub fn duplicates(&self) -> &[(String, Pos, Pos)] {
        &self.duplicates
    }

    /// Position of the value at `path`, or of the closest ancestor that has one.
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.values.get(&p) {
                return *pos;
            }
            match parent(&p) {
                Some(up) => p = up,
                None => {
                    return self
                        .values
                        .get("")
                        .copied()
                        .unwrap_or(Pos { line: 1, col: 1 });
                }
            }
        }
    }

    /// Position of the key that names `path` (`receivers.otlp` → the `otlp:` key), falling back
    /// to the value position.
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

/// The parent of a path: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
fn parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']')
        && let Some(i) = path.rfind('[')
    {
        return Some(path[..i].to_string());
    }
    Some(
        path.rfind('.')
            .map(|i| path[..i].to_string())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "receivers:\n  otlp:\n    protocols: {}\nservice:\n  pipelines:\n    metrics:\n      exporters: [a, b]\n      receivers:\n        - otlp\n";

    #[test]
    fn indexes_keys_values_and_sequence_items() {
        let idx = PosIndex::build(DOC);
        assert_eq!(idx.key("receivers.otlp"), Pos { line: 2, col: 3 });
        assert_eq!(idx.value("receivers.otlp"), Pos { line: 3, col: 5 });
        assert_eq!(
            idx.value("service.pipelines.metrics.exporters[1]"),
            Pos { line: 7, col: 22 }
        );
        assert_eq!(
            idx.value("service.pipelines.metrics.receivers[0]"),
            Pos { line: 9, col: 11 }
        );
    }

    #[test]
    fn falls_back_to_the_closest_ancestor() {
        let idx = PosIndex::build(DOC);
        assert_eq!(
            idx.value("receivers.otlp.protocols.http.endpoint"),
            Pos { line: 3, col: 16 }
        );
        assert_eq!(idx.key("service.nope"), idx.value("service"));
    }

    #[test]
    fn survives_syntax_errors() {
        let idx = PosIndex::build("a: [1, 2\nb: :");
        assert_eq!(idx.value("a"), Pos { line: 1, col: 4 });
    }
}
