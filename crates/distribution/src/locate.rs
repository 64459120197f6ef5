//! Finds the line and column of a YAML path (`providers.inference[0].config.url`) in the
//! source text, so that problems found after parsing can point into the file.
//!
//! This is a scan of block-style YAML by indentation, not a full parser. It records where each
//! block mapping key and sequence item starts; everything written in flow style (`{...}`,
//! `[...]`) is attributed to the key that holds it. Anything it does not understand is simply
//! not recorded, so a lookup either finds a position that is right or finds nothing.

use std::collections::BTreeMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where the nodes of one YAML document start.
#[derive(Debug, Default)]
pub struct SourceMap {
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    position: Position,
    /// The value is a flow collection: descendants are inside it.
    flow: bool,
}

impl SourceMap {
    /// Scans `source`. Only the first document is mapped.
    pub fn scan(source: &str) -> SourceMap {
        Scanner::default().run(source)
    }

    /// The position of `path`; for a node inside a flow collection, the position of the key
    /// holding the collection; for a missing key, the position of its parent entry.
    pub fn locate(&self, path: &str) -> Option<Position> {
        if let Some(node) = self.nodes.get(path) {
            return Some(node.position);
        }
        let mut ancestor = path;
        let mut missing_levels = 0;
        while let Some(parent) = parent_path(ancestor) {
            missing_levels += 1;
            if let Some(node) = self.nodes.get(parent) {
                return (node.flow || missing_levels == 1).then_some(node.position);
            }
            ancestor = parent;
        }
        None
    }
}

/// `a.b[0]` → `a.b`, `a.b` → `a`, `a` → None.
fn parent_path(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

#[derive(Debug)]
struct Container {
    indent: usize,
    path: String,
    kind: Kind,
}

#[derive(Debug, PartialEq)]
enum Kind {
    Mapping,
    Sequence { next: usize },
}

#[derive(Debug)]
enum Skip {
    None,
    /// Lines indented more than this belong to a block scalar.
    BlockScalar(usize),
    /// Bracket depth of an unfinished flow collection.
    Flow(i32),
}

#[derive(Debug)]
struct Scanner {
    map: SourceMap,
    stack: Vec<Container>,
    /// A key whose value starts on a later line: (indent of the key, its path).
    pending: Option<(usize, String)>,
    skip: Skip,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            map: SourceMap::default(),
            stack: Vec::new(),
            pending: None,
            skip: Skip::None,
        }
    }
}

impl Scanner {
    fn run(mut self, source: &str) -> SourceMap {
        let mut seen_content = false;
        for (number, raw) in source.lines().enumerate() {
            let line = number + 1;
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let text = strip_comment(&raw[indent..]).trim_end();
            match self.skip {
                Skip::BlockScalar(parent) => {
                    if text.is_empty() || indent > parent {
                        continue;
                    }
                    self.skip = Skip::None;
                }
                Skip::Flow(depth) => {
                    let depth = depth + bracket_balance(text);
                    self.skip = if depth > 0 {
                        Skip::Flow(depth)
                    } else {
                        Skip::None
                    };
                    continue;
                }
                Skip::None => {}
            }
            if text.is_empty() || text.starts_with('%') {
                continue;
            }
            if text == "---" || text.starts_with("--- ") || text == "..." {
                if seen_content {
                    break;
                }
                continue;
            }
            if raw[indent..].starts_with('\t') {
                continue;
            }
            seen_content = true;
            self.line(line, indent, text);
        }
        self.map
    }

    fn line(&mut self, line: usize, indent: usize, text: &str) {
        let is_item = text == "-" || text.starts_with("- ");
        if let Some((key_indent, path)) = self.pending.take()
            && (indent > key_indent || (indent == key_indent && is_item))
        {
            let kind = if is_item {
                Kind::Sequence { next: 0 }
            } else {
                Kind::Mapping
            };
            self.stack.push(Container { indent, path, kind });
        }
        while let Some(top) = self.stack.last() {
            let mismatched =
                top.indent == indent && matches!(top.kind, Kind::Sequence { .. }) && !is_item;
            if top.indent > indent || mismatched {
                self.stack.pop();
            } else {
                break;
            }
        }
        if self.stack.is_empty() && indent == 0 && !is_item {
            self.stack.push(Container {
                indent: 0,
                path: String::new(),
                kind: Kind::Mapping,
            });
        }
        match self.stack.last() {
            Some(top) if top.indent == indent => self.entry(line, indent, text),
            _ => {} // a continuation line or something not understood
        }
    }

    /// An entry of the container on top of the stack, starting at column `indent + 1`.
    fn entry(&mut self, line: usize, indent: usize, text: &str) {
        let top = self.stack.last_mut().expect("caller checked");
        match &mut top.kind {
            Kind::Sequence { next } => {
                let Some(rest) = text.strip_prefix('-') else {
                    return;
                };
                let path = format!("{}[{}]", top.path, next);
                *next += 1;
                let rest_trimmed = rest.trim_start();
                let inner_indent = indent + 1 + (rest.len() - rest_trimmed.len());
                if rest_trimmed.is_empty() {
                    self.record(&path, line, indent, false);
                    self.pending = Some((indent, path));
                    return;
                }
                self.record(&path, line, indent, starts_flow(rest_trimmed));
                if starts_flow(rest_trimmed) {
                    self.start_flow(rest_trimmed);
                    return;
                }
                if rest_trimmed == "-" || rest_trimmed.starts_with("- ") {
                    self.stack.push(Container {
                        indent: inner_indent,
                        path,
                        kind: Kind::Sequence { next: 0 },
                    });
                    self.entry(line, inner_indent, rest_trimmed);
                } else if split_key(rest_trimmed).is_some() {
                    self.stack.push(Container {
                        indent: inner_indent,
                        path,
                        kind: Kind::Mapping,
                    });
                    self.entry(line, inner_indent, rest_trimmed);
                } else if is_block_scalar(rest_trimmed) {
                    self.skip = Skip::BlockScalar(indent);
                }
            }
            Kind::Mapping => {
                let Some((key, value)) = split_key(text) else {
                    return;
                };
                let path = crate::env::join_key(&top.path, &key);
                let value = strip_anchor(value);
                if value.is_empty() {
                    self.record(&path, line, indent, false);
                    self.pending = Some((indent, path));
                } else if starts_flow(value) {
                    self.record(&path, line, indent, true);
                    self.start_flow(value);
                } else {
                    self.record(&path, line, indent, false);
                    if is_block_scalar(value) {
                        self.skip = Skip::BlockScalar(indent);
                    }
                }
            }
        }
    }

    fn record(&mut self, path: &str, line: usize, indent: usize, flow: bool) {
        self.map.nodes.entry(path.to_string()).or_insert(Node {
            position: Position {
                line,
                column: indent + 1,
            },
            flow,
        });
    }

    fn start_flow(&mut self, value: &str) {
        let depth = bracket_balance(value);
        if depth > 0 {
            self.skip = Skip::Flow(depth);
        }
    }
}

fn starts_flow(value: &str) -> bool {
    value.starts_with('[') || value.starts_with('{')
}

fn is_block_scalar(value: &str) -> bool {
    value.starts_with('|') || value.starts_with('>')
}

/// Drops a leading `&anchor` from a value.
fn strip_anchor(value: &str) -> &str {
    match value.strip_prefix('&') {
        Some(rest) => rest
            .split_once(' ')
            .map(|(_, v)| v.trim_start())
            .unwrap_or(""),
        None => value,
    }
}

/// Splits `key: value` / `key:`; quoted keys are unquoted. None when the line is not a key.
fn split_key(text: &str) -> Option<(String, &str)> {
    if let Some(quote) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = text[1..].find(quote)? + 1;
        let key = &text[1..close];
        let after = &text[close + 1..];
        let value = after.strip_prefix(':')?;
        if !value.is_empty() && !value.starts_with(' ') {
            return None;
        }
        return Some((key.to_string(), value.trim()));
    }
    if starts_flow(text) || text.starts_with(['&', '*', '!', '?', '|', '>']) {
        return None;
    }
    let colon = text
        .match_indices(':')
        .map(|(i, _)| i)
        .find(|&i| i + 1 == text.len() || text[i + 1..].starts_with(' '))?;
    let key = text[..colon].trim_end();
    if key.is_empty() {
        return None;
    }
    Some((key.to_string(), text[colon + 1..].trim()))
}

/// Removes a `#` comment (outside quotes) from a line.
fn strip_comment(text: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && (previous == ' ' || previous == '\t' || i == 0) => {
                return &text[..i];
            }
            None => {}
        }
        previous = c;
    }
    text
}

/// Opening minus closing brackets outside quotes.
fn bracket_balance(text: &str) -> i32 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"version: 2 # comment
image_name: local
apis:
- inference
providers:
  inference:
  - provider_id: candle
    provider_type: inline::candle
    config:
      model_path: ${env.LLAMA_MODEL_PATH:=}
      device: cpu
  - provider_id: other
    provider_type: remote::x
    config: {url: "http://x", key: 1}
  safety:
    - provider_id: g
      provider_type: inline::llama-guard
      config:
        excluded_categories: []
description: |
  models:
    - not: a key
models:
- model_id: m
  provider_id: candle
  metadata: {}
- metadata:
    embedding_dimension: 384
  model_id: e
server:
  port: 80
"#;

    fn at(path: &str) -> Option<(usize, usize)> {
        SourceMap::scan(DOC)
            .locate(path)
            .map(|p| (p.line, p.column))
    }

    #[test]
    fn finds_block_keys_and_items() {
        assert_eq!(at("version"), Some((1, 1)));
        assert_eq!(at("apis[0]"), Some((4, 1)));
        assert_eq!(at("providers.inference"), Some((6, 3)));
        assert_eq!(at("providers.inference[0]"), Some((7, 3)));
        assert_eq!(at("providers.inference[0].provider_id"), Some((7, 5)));
        assert_eq!(
            at("providers.inference[0].config.model_path"),
            Some((10, 7))
        );
        assert_eq!(at("providers.inference[1].provider_type"), Some((13, 5)));
        assert_eq!(
            at("providers.safety[0].config.excluded_categories"),
            Some((19, 9))
        );
        assert_eq!(at("models[0].provider_id"), Some((25, 3)));
        assert_eq!(at("models[1].metadata.embedding_dimension"), Some((28, 5)));
        assert_eq!(at("models[1].model_id"), Some((29, 3)));
        assert_eq!(at("server.port"), Some((31, 3)));
    }

    #[test]
    fn flow_descendants_point_at_their_key() {
        assert_eq!(at("providers.inference[1].config.url"), Some((14, 5)));
        assert_eq!(at("models[0].metadata.x.y"), Some((26, 3)));
    }

    #[test]
    fn missing_keys_point_at_their_parent_only() {
        assert_eq!(at("providers.inference[0].config.colour"), Some((9, 5)));
        assert_eq!(at("server.tls.deep"), None);
        assert_eq!(at("nowhere"), None);
    }

    #[test]
    fn block_scalars_are_skipped() {
        assert_eq!(at("description"), Some((20, 1)));
        assert_eq!(at("models"), Some((23, 1)));
        // Lines inside the block scalar are not keys: only the parent is found.
        assert_eq!(at("description.models"), Some((20, 1)));
    }

    #[test]
    fn multi_line_flow_is_skipped() {
        let doc = "providers:\n  inference: [{provider_id: a,\n    provider_type: b}]\nserver:\n  port: 1\n";
        let map = SourceMap::scan(doc);
        let pos = map.locate("providers.inference[0].provider_type").unwrap();
        assert_eq!((pos.line, pos.column), (2, 3));
        let pos = map.locate("server.port").unwrap();
        assert_eq!((pos.line, pos.column), (5, 3));
    }
}
