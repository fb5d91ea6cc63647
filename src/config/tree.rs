//! A YAML file as a tree of nodes that remember where they were written.
//!
//! Built in one pass over saphyr-parser's spanned events: the only YAML
//! parser the config uses. This module knows YAML, not the schema: it
//! reports what is wrong with the file as YAML (syntax, characters YAML
//! forbids, more than one document, duplicate keys, keys that are not
//! strings, tags, alias bombs) and answers "where is `pools.blue`?".
//!
//! Why not a library's tree: yaml_serde keeps no positions past its first
//! error, and saphyr's `MarkedYaml` (built from these same events) stops at
//! the first duplicate key without naming it, resolves `007` and large
//! numbers unlike yaml_serde, and would still need the checks below.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The start of the file: where mistakes without a better place are reported.
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }

    /// `self`, or `end` when past the last line: the parser places an error
    /// or an empty node at the end of input one line further (`{`, `? `).
    fn before(self, end: Pos) -> Pos {
        if self.line > end.line {
            end
        } else {
            self
        }
    }
}

/// One mistake found in the file, before a file name is attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub pos: Pos,
    pub message: String,
}

impl Issue {
    pub fn new(pos: Pos, message: impl Into<String>) -> Issue {
        Issue {
            pos,
            message: message.into(),
        }
    }
}

/// A value in the file. `id` is unique within one [`Tree`], also for the
/// copies that aliases make.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: usize,
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// `plain` is true for an untagged plain scalar, the only kind YAML resolves
/// to null, booleans and numbers; quoted and block scalars are always strings.
#[derive(Debug, Clone)]
pub struct Scalar {
    pub value: String,
    pub plain: bool,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A parsed file: its one document.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: Node,
}

/// Aliases are expanded by copying; this bounds the copies ("billion laughs").
const MAX_NODES: usize = 100_000;

impl Tree {
    /// Parse `text`. A YAML error is returned alone (nothing else can be
    /// checked); otherwise the tree and any problems that do not stop the
    /// rest of the checks.
    pub fn parse(text: &str) -> Result<(Tree, Vec<Issue>), Issue> {
        let mut builder = Builder {
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            end: scan(text)?,
            nodes: 0,
            issues: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        while let Some(event) = parser.next_event() {
            let (event, span) = event.map_err(|e| {
                let pos = Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                };
                syntax_error(text, pos.before(builder.end), e.info())
            })?;
            builder.event(event, &span)?;
        }
        let root = builder.root.unwrap_or(Node {
            id: 0,
            pos: Pos::START,
            kind: Kind::Scalar(Scalar {
                value: String::new(),
                plain: true,
            }),
        });
        Ok((Tree { root }, builder.issues))
    }

    /// The node at a dotted path (`pools.blue.endpoints.0`), if written in the file.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.walk(path).ok()
    }

    /// Where to report a mistake in the value at `path`: the value itself, or
    /// when it is absent (a default was used) the nearest written parent,
    /// pointed at by its key.
    pub fn value_pos(&self, path: &str) -> Pos {
        match self.walk(path) {
            Ok(node) if !path.is_empty() => node.pos,
            Ok(_) => Pos::START,
            Err(parent) => parent,
        }
    }

    /// Where the key of a top-level section is written, if it is.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.root.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| e.key_pos),
            _ => None,
        }
    }

    /// The node at `path`, or where its nearest written parent is pointed at.
    fn walk(&self, path: &str) -> Result<&Node, Pos> {
        let mut node = &self.root;
        let mut anchor = Pos::START;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            let next = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|e| e.key == seg)
                    .map(|e| (&e.value, e.key_pos)),
                Kind::Seq(items) => seg
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|n| (n, n.pos)),
                Kind::Scalar(_) => None,
            };
            (node, anchor) = next.ok_or(anchor)?;
        }
        Ok(node)
    }
}

/// `listeners.1.bind` as an operator reads it: `listeners[1].bind`.
pub fn display_path(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Where the text ends; or the first character YAML forbids (only printable
/// ones are allowed, YAML 1.2 section 5.1, and saphyr-parser lets control
/// characters through), where it is.
fn scan(text: &str) -> Result<Pos, Issue> {
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}')
            || (c >= '\u{a0}' && !matches!(c, '\u{fffe}' | '\u{ffff}'))
    };
    let mut pos = Pos::START;
    let mut chars = text.strip_prefix('\u{feff}').unwrap_or(text).chars();
    while let Some(c) = chars.next() {
        if !printable(c) {
            let code = u32::from(c);
            let message = format!(
                "YAML syntax error: control character U+{code:04X} is not allowed \
                 (in a double-quoted string, write it as an escape)"
            );
            return Err(Issue::new(pos, message));
        }
        if c == '\n' || (c == '\r' && !chars.as_str().starts_with('\n')) {
            pos = Pos {
                line: pos.line + 1,
                column: 1,
            };
        } else if c != '\r' {
            pos.column += 1;
        }
    }
    Ok(pos)
}

/// A YAML syntax error at `pos`, in words. A tab where YAML wants spaces
/// is the usual cause of the parser's terse words: said plainly, at the tab.
fn syntax_error(text: &str, pos: Pos, info: &str) -> Issue {
    let line = text.lines().nth(pos.line.saturating_sub(1)).unwrap_or("");
    let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
    if let Some(tab) = line[..indent].find('\t') {
        let at = Pos {
            line: pos.line,
            column: line[..tab].chars().count() + 1,
        };
        let message = "YAML syntax error: a tab in the indentation; YAML indents with spaces only \
                       (replace the tab with spaces)";
        return Issue::new(at, message.to_string());
    }
    let here = line.chars().nth(pos.column.saturating_sub(1));
    let hint = if here == Some('\t') {
        " (a tab here: write a space instead)"
    } else {
        ""
    };
    Issue::new(pos, format!("YAML syntax error: {info}{hint}"))
}

enum PendingKey {
    Key(String, Pos),
    /// A key that is not a string: reported, and its value dropped.
    Invalid,
}

/// A sequence or mapping being read; `key` is only used by mappings.
struct Frame {
    node: Node,
    anchor: usize,
    key: Option<PendingKey>,
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    /// Where the text ends.
    end: Pos,
    /// Nodes made so far, copies included; also the last id given.
    nodes: usize,
    issues: Vec<Issue>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), Issue> {
        let pos = Pos::of(span).before(self.end);
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && self.scalar_tag(tag, pos);
                let kind = Kind::Scalar(Scalar {
                    value: value.into_owned(),
                    plain,
                });
                let node = self.node(pos, kind)?;
                self.complete(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.collection_tag(tag, pos);
                let node = self.node(pos, Kind::Seq(Vec::new()))?;
                self.stack.push(Frame {
                    node,
                    anchor,
                    key: None,
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.collection_tag(tag, pos);
                let node = self.node(pos, Kind::Map(Vec::new()))?;
                self.stack.push(Frame {
                    node,
                    anchor,
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self
                    .stack
                    .pop()
                    .ok_or_else(|| Issue::new(pos, "unbalanced YAML collection"))?;
                self.complete(frame.node, frame.anchor);
            }
            Event::Alias(anchor) => {
                let mut node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| Issue::new(pos, "alias to an unknown anchor"))?;
                self.renumber(&mut node, pos)?;
                node.pos = pos;
                self.complete(node, 0);
            }
            Event::DocumentStart(_) if self.root.is_some() => {
                return Err(Issue::new(
                    pos,
                    "a config file holds one YAML document, found more",
                ));
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    /// The next id. Aliases copy whole subtrees, hence a bound on nodes.
    fn next_id(&mut self, pos: Pos) -> Result<usize, Issue> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Issue::new(
                pos,
                "document too large (aliases expand to too many nodes)",
            ));
        }
        Ok(self.nodes)
    }

    fn node(&mut self, pos: Pos, kind: Kind) -> Result<Node, Issue> {
        let id = self.next_id(pos)?;
        Ok(Node { id, pos, kind })
    }

    /// Fresh ids for an alias's copy, so that a mistake in it is reported
    /// at each place it is used.
    fn renumber(&mut self, node: &mut Node, pos: Pos) -> Result<(), Issue> {
        node.id = self.next_id(pos)?;
        match &mut node.kind {
            Kind::Scalar(_) => Ok(()),
            Kind::Seq(items) => items.iter_mut().try_for_each(|n| self.renumber(n, pos)),
            Kind::Map(entries) => entries
                .iter_mut()
                .try_for_each(|e| self.renumber(&mut e.value, pos)),
        }
    }

    /// True when the tag leaves a plain scalar free to be resolved (no tag,
    /// or a core-schema tag other than `!!str`).
    fn scalar_tag(&mut self, tag: Option<Cow<'_, Tag>>, pos: Pos) -> bool {
        match tag {
            None => true,
            Some(tag) if is_core(&tag) => tag.suffix != "str",
            Some(tag) => {
                self.unsupported(&tag, pos);
                true
            }
        }
    }

    fn collection_tag(&mut self, tag: Option<Cow<'_, Tag>>, pos: Pos) {
        if let Some(tag) = tag.filter(|t| !is_core(t)) {
            self.unsupported(&tag, pos);
        }
    }

    fn unsupported(&mut self, tag: &Tag, pos: Pos) {
        let message = format!("YAML tag `{tag}` is not supported here");
        self.issues.push(Issue::new(pos, message));
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(Frame {
            node: parent, key, ..
        }) = self.stack.last_mut()
        else {
            self.root = Some(node);
            return;
        };
        let entries = match &mut parent.kind {
            Kind::Map(entries) => entries,
            Kind::Seq(items) => return items.push(node),
            Kind::Scalar(_) => return,
        };
        match key.take() {
            None => {
                *key = Some(match node.kind {
                    Kind::Scalar(s) => PendingKey::Key(s.value, node.pos),
                    _ => {
                        let message = "a mapping key must be a plain string";
                        self.issues.push(Issue::new(node.pos, message));
                        PendingKey::Invalid
                    }
                })
            }
            Some(PendingKey::Key(k, key_pos)) => {
                if let Some(first) = entries.iter().find(|e| e.key == k) {
                    let line = first.key_pos.line;
                    let message = format!("duplicate key `{k}` (first written at line {line})");
                    self.issues.push(Issue::new(key_pos, message));
                } else {
                    entries.push(Entry {
                        key: k,
                        key_pos,
                        value: node,
                    });
                }
            }
            Some(PendingKey::Invalid) => {}
        }
    }
}

fn is_core(tag: &Tag) -> bool {
    tag.is_yaml_core_schema() || tag.handle == "!!"
}

#[cfg(test)]
mod tests;
