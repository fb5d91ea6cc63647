//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Built from saphyr-parser's spanned events, so that every later check can
//! point at a line and column. This module knows YAML, not the schema: it
//! reports only what is wrong with the document as YAML (duplicate keys,
//! non-string keys, unsupported tags) and answers "where is `pools.blue`?".

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// A 1-based line and column.
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

/// A value in the document. `id` is unique within one [`Document`].
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

impl Scalar {
    /// `~`, `null` or nothing at all.
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// Where a node sits in the tree.
#[derive(Debug, Clone)]
struct Meta {
    /// Dotted path from the root, sequence indices as numbers: `listeners.1.bind`.
    path: String,
    /// Where the value itself starts.
    pos: Pos,
    /// Where to point at the node as a whole: its key when it is a mapping value.
    anchor: Pos,
    parent: Option<usize>,
    key: Option<String>,
}

/// `pos`, or the end of the text when the parser reports an error at the
/// end of input one line past the last (e.g. for a file of just `{`).
pub(super) fn within(text: &str, pos: Pos) -> Pos {
    let breaks = text.replace("\r\n", "\n");
    let lines = breaks.matches(['\r', '\n']).count() + 1;
    if pos.line <= lines {
        return pos;
    }
    let last = breaks.rsplit(['\r', '\n']).next().unwrap_or("");
    Pos {
        line: lines,
        column: last.chars().count() + 1,
    }
}

/// A parsed document: the root node plus an index from node id to its place.
#[derive(Debug, Clone)]
pub struct Document {
    pub root: Node,
    meta: Vec<Meta>,
}

/// Aliases are expanded by copying; this bounds the copies ("billion laughs").
const MAX_NODES: usize = 100_000;

impl Document {
    /// Parse `text`. A YAML error is returned alone (nothing else can be
    /// checked); otherwise the document and any problems that do not stop
    /// the rest of the checks.
    pub fn parse(text: &str) -> Result<(Document, Vec<Issue>), Issue> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        while let Some(event) = parser.next_event() {
            let (event, span) = event.map_err(|e| {
                let pos = Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                };
                Issue::new(within(text, pos), e.info().to_string())
            })?;
            builder.event(event, &span)?;
        }
        let mut root = builder.root.unwrap_or(Node {
            id: 0,
            pos: Pos::START,
            kind: Kind::Scalar(Scalar {
                value: String::new(),
                plain: true,
            }),
        });
        let mut meta = Vec::new();
        number(&mut root, String::new(), Pos::START, None, None, &mut meta);
        Ok((Document { root, meta }, builder.issues))
    }

    /// The node at a dotted path (`pools.blue.endpoints.0`), if written in the file.
    pub fn node(&self, path: &str) -> Option<&Node> {
        if path.is_empty() {
            return Some(&self.root);
        }
        path.split('.')
            .try_fold(&self.root, |node, seg| match &node.kind {
                Kind::Map(entries) => entries.iter().find(|e| e.key == seg).map(|e| &e.value),
                Kind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                Kind::Scalar(_) => None,
            })
    }

    /// Where to report a mistake in the value at `path`: the value itself, or
    /// when it is absent (a default was used) the nearest written parent.
    pub fn value_pos(&self, path: &str) -> Pos {
        match self.node(path) {
            Some(node) if !path.is_empty() => node.pos,
            _ => self.parent_pos(path),
        }
    }

    fn parent_pos(&self, path: &str) -> Pos {
        let mut prefix = path;
        while let Some((parent, _)) = prefix.rsplit_once('.') {
            if let Some(node) = self.node(parent) {
                return self.anchor(node.id);
            }
            prefix = parent;
        }
        Pos::START
    }

    /// The dotted path of a node.
    pub fn path(&self, id: usize) -> &str {
        self.meta.get(id).map_or("", |m| m.path.as_str())
    }

    /// Where the value of node `id` starts.
    pub fn node_pos(&self, id: usize) -> Pos {
        self.meta.get(id).map_or(Pos::START, |m| m.pos)
    }

    /// The key of a mapping entry when the node is one, else the node itself.
    pub fn anchor(&self, id: usize) -> Pos {
        self.meta.get(id).map_or(Pos::START, |m| m.anchor)
    }

    /// Whether `id` is the value of key `key` in the mapping `parent`.
    pub fn is_entry_of(&self, id: usize, parent: usize, key: &str) -> bool {
        self.meta
            .get(id)
            .is_some_and(|m| m.parent == Some(parent) && m.key.as_deref() == Some(key))
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

fn number(
    node: &mut Node,
    path: String,
    anchor: Pos,
    parent: Option<usize>,
    key: Option<String>,
    meta: &mut Vec<Meta>,
) {
    node.id = meta.len();
    let id = node.id;
    meta.push(Meta {
        path: path.clone(),
        pos: node.pos,
        anchor,
        parent,
        key,
    });
    let join = |seg: &str| {
        if path.is_empty() {
            seg.to_string()
        } else {
            format!("{path}.{seg}")
        }
    };
    match &mut node.kind {
        Kind::Scalar(_) => {}
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let pos = item.pos;
                number(item, join(&i.to_string()), pos, Some(id), None, meta);
            }
        }
        Kind::Map(entries) => {
            for e in entries.iter_mut() {
                let child = join(&e.key);
                number(
                    &mut e.value,
                    child,
                    e.key_pos,
                    Some(id),
                    Some(e.key.clone()),
                    meta,
                );
            }
        }
    }
}

enum PendingKey {
    Key(String, Pos),
    /// A key that is not a string: reported, and its value dropped.
    Invalid,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<PendingKey>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    issues: Vec<Issue>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), Issue> {
        let pos = Pos::of(span);
        if matches!(
            event,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            self.grow(1, pos)?;
        }
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && self.scalar_tag(tag, pos);
                let kind = Kind::Scalar(Scalar {
                    value: value.into_owned(),
                    plain,
                });
                self.complete(Node { id: 0, pos, kind }, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.collection_tag(tag, pos);
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.collection_tag(tag, pos);
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (
                        Node {
                            id: 0,
                            pos,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            id: 0,
                            pos,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ),
                    None => return Err(Issue::new(pos, "unbalanced YAML collection")),
                };
                self.complete(node, anchor);
            }
            Event::Alias(anchor) => {
                let mut node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| Issue::new(pos, "alias to an unknown anchor"))?;
                node.pos = pos;
                self.grow(count(&node), pos)?;
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

    /// True when the tag leaves a plain scalar free to be resolved (no tag,
    /// or a core-schema tag other than `!!str`).
    fn scalar_tag(&mut self, tag: Option<Cow<'_, Tag>>, pos: Pos) -> bool {
        match tag {
            None => true,
            Some(tag) if is_core(&tag) => tag.suffix != "str",
            Some(tag) => {
                self.issues.push(Issue::new(
                    pos,
                    format!("YAML tag `{tag}` is not supported here"),
                ));
                true
            }
        }
    }

    fn collection_tag(&mut self, tag: Option<Cow<'_, Tag>>, pos: Pos) {
        if let Some(tag) = tag.filter(|t| !is_core(t)) {
            self.issues.push(Issue::new(
                pos,
                format!("YAML tag `{tag}` is not supported here"),
            ));
        }
    }

    /// Count `n` more nodes; aliases copy whole subtrees, hence a bound.
    fn grow(&mut self, n: usize, pos: Pos) -> Result<(), Issue> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Issue::new(
                pos,
                "document too large (aliases expand to too many nodes)",
            ));
        }
        Ok(())
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    *key = Some(match node.kind {
                        Kind::Scalar(s) => PendingKey::Key(s.value, node.pos),
                        _ => {
                            self.issues
                                .push(Issue::new(node.pos, "a mapping key must be a plain string"));
                            PendingKey::Invalid
                        }
                    })
                }
                Some(PendingKey::Key(k, key_pos)) => {
                    if let Some(first) = entries.iter().find(|e| e.key == k) {
                        self.issues.push(Issue::new(
                            key_pos,
                            format!(
                                "duplicate key `{k}` (first written at line {})",
                                first.key_pos.line
                            ),
                        ));
                    } else {
                        entries.push(Entry {
                            key: k,
                            key_pos,
                            value: node,
                        });
                    }
                }
                Some(PendingKey::Invalid) => {}
            },
        }
    }
}

fn is_core(tag: &Tag) -> bool {
    tag.is_yaml_core_schema() || tag.handle == "!!"
}

fn count(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Scalar(_) => 0,
        Kind::Seq(items) => items.iter().map(count).sum(),
        Kind::Map(entries) => entries.iter().map(|e| count(&e.value)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(text).expect("valid yaml").0
    }

    #[test]
    fn positions_of_keys_values_and_items() {
        let d = doc("pools:\n  blue:\n    endpoints: [\"a:1\", b:2]\n");
        assert_eq!(
            d.value_pos("pools.blue.endpoints.0"),
            Pos {
                line: 3,
                column: 17
            }
        );
        assert_eq!(
            d.value_pos("pools.blue.endpoints.1"),
            Pos {
                line: 3,
                column: 24
            }
        );
        // Absent: the nearest written parent's key.
        assert_eq!(d.value_pos("pools.blue.tls.ca"), Pos { line: 2, column: 3 });
        assert_eq!(d.value_pos("health_check.interval"), Pos::START);
    }

    #[test]
    fn block_sequence_items_and_paths() {
        let d = doc("listeners:\n  - bind: a\n  - bind: b\n    pool: blue\n");
        assert_eq!(
            d.value_pos("listeners.1.pool"),
            Pos {
                line: 4,
                column: 11
            }
        );
        let id = d.node("listeners.1.pool").map(|n| n.id).unwrap_or_default();
        assert_eq!(d.path(id), "listeners.1.pool");
        assert_eq!(display_path(d.path(id)), "listeners[1].pool");
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second() {
        let (_, issues) = Document::parse("a: 1\nb: 2\na: 3\n").expect("valid yaml");
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].pos, Pos { line: 3, column: 1 });
        assert!(
            issues[0].message.contains("duplicate key `a`"),
            "{issues:?}"
        );
    }

    #[test]
    fn quoted_scalars_are_not_plain_and_aliases_expand() {
        let d = doc("a: &x \"5\"\nb: *x\nc: !!str 7\n");
        for path in ["a", "b", "c"] {
            match d.node(path).map(|n| &n.kind) {
                Some(Kind::Scalar(s)) => assert!(!s.plain, "{path} should be a string"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert_eq!(d.value_pos("b"), Pos { line: 2, column: 4 });
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = Document::parse(&text).err().map(|i| i.message);
        assert!(err.is_some_and(|m| m.contains("too many nodes")));
    }

    #[test]
    fn empty_document_is_a_null_root() {
        let d = doc("");
        assert!(matches!(&d.root.kind, Kind::Scalar(s) if s.is_null()));
    }
}
