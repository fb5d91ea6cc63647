//! The tree's positions, and every mistake that is one of YAML rather than
//! of the schema, as an operator meets it: `file:line:col` from a whole file.

use super::*;
use crate::config::tests::{after, assert_has, assert_one, at, at_last, errors, render, POOLS};

fn tree(text: &str) -> Tree {
    match Tree::parse(text) {
        Ok((tree, _)) => tree,
        Err(e) => panic!("valid YAML expected: {e:?}"),
    }
}

fn pos(line: usize, column: usize) -> Pos {
    Pos { line, column }
}

#[test]
fn positions_of_keys_values_and_items() {
    let t = tree("pools:\n  blue:\n    endpoints: [\"a:1\", b:2]\n");
    assert_eq!(t.value_pos("pools.blue.endpoints.0"), pos(3, 17));
    assert_eq!(t.value_pos("pools.blue.endpoints.1"), pos(3, 24));
    // Absent: the nearest written parent, at its key.
    assert_eq!(t.value_pos("pools.blue.tls.ca"), pos(2, 3));
    assert_eq!(t.value_pos("pools.blue.endpoints.7"), pos(3, 5));
    assert_eq!(t.value_pos("health_check.interval"), Pos::START);
    assert_eq!(t.value_pos(""), Pos::START);
}

#[test]
fn block_sequence_items_and_paths() {
    let t = tree("listeners:\n  - bind: a\n  - bind: b\n    pool: blue\n");
    assert_eq!(t.value_pos("listeners.1.pool"), pos(4, 11));
    // A missing key of a list item: the item itself.
    assert_eq!(t.value_pos("listeners.0.pool"), pos(2, 5));
    assert!(t.node("listeners.1.bind").is_some() && t.node("listeners.2").is_none());
    assert_eq!(display_path("listeners.1.pool"), "listeners[1].pool");
}

#[test]
fn duplicate_keys_are_reported_at_the_second() {
    let (_, issues) = Tree::parse("a: 1\nb: 2\na: 3\n").expect("valid yaml");
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].pos, pos(3, 1));
    assert!(
        issues[0].message.contains("duplicate key `a`"),
        "{issues:?}"
    );
}

#[test]
fn quoted_scalars_are_not_plain_and_aliases_expand() {
    let t = tree("a: &x \"5\"\nb: *x\nc: !!str 7\n");
    for path in ["a", "b", "c"] {
        match t.node(path).map(|n| &n.kind) {
            Some(Kind::Scalar(s)) => assert!(!s.plain, "{path} should be a string"),
            other => panic!("{path}: {other:?}"),
        }
    }
    assert_eq!(t.value_pos("b"), pos(2, 4));
    let (a, b) = (t.node("a").map(|n| n.id), t.node("b").map(|n| n.id));
    assert_ne!(a, b, "an alias's copy has ids of its own");
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let err = Tree::parse(&text).err().map(|i| i.message);
    assert!(err.is_some_and(|m| m.contains("too many nodes")));
}

#[test]
fn empty_document_is_a_null_root() {
    let t = tree("");
    assert!(matches!(&t.root.kind, Kind::Scalar(s) if s.plain && s.value.is_empty()));
}

#[test]
fn duplicate_keys_in_nested_and_flow_mappings() {
    let text = format!("{POOLS}health_check:\n  path: /a\n  interval: 1s\n  path: /b\n");
    assert_one(
        &text,
        at_last(&text, "path"),
        "duplicate key `path` (first written at line 5)",
    );
    // Quoting does not make another key.
    let text = format!("{POOLS}retries: {{attempts: 1, \"attempts\": 2}}\n");
    assert_one(&text, at(&text, "\"attempts\""), "duplicate key `attempts`");
}

#[test]
fn a_mistake_behind_an_alias_is_reported_where_it_is_written() {
    // Inside the anchored value: at its text, once for each place using it.
    let text = "\
pools:
  blue: &pool
    endpoints: [\"127.0.0.1:8001\"]
    protocol: h3
  green: *pool
";
    let d = errors(text);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(
        &d,
        after(text, "protocol: "),
        "pools.blue.protocol: unknown value `h3`",
    );
    assert_has(
        &d,
        after(text, "protocol: "),
        "pools.green.protocol: unknown value `h3`",
    );
    // The alias itself is the value: at the alias.
    let text = format!("{POOLS}health_check: {{path: &p soon, interval: *p}}\n");
    let d = errors(&text);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(
        &d,
        at(&text, "*p"),
        "health_check.interval: invalid duration \"soon\"",
    );
    assert_has(
        &d,
        after(&text, "path: "),
        "health_check.path: `soon` must start with /",
    );
}

#[test]
fn one_document_per_file() {
    let text = format!("{POOLS}---\n{POOLS}");
    assert_one(
        &text,
        at(&text, "---"),
        "holds one YAML document, found more",
    );
    let text = format!("---\n{POOLS}...\n---\nretries: {{attempts: 2}}\n");
    assert_one(&text, at_last(&text, "---"), "holds one YAML document");
    // One document with its markers is fine.
    assert!(errors(&format!("---\n{POOLS}...\n")).is_empty());
}

#[test]
fn tabs_indent_nothing_but_may_stand_elsewhere() {
    let text = format!("{POOLS}retries:\n\tattempts: 2\n");
    let d = errors(&text);
    assert_eq!(d.len(), 1, "{}", render(&d));
    assert_eq!((d[0].line, d[0].column), (5, 1), "at the tab");
    assert!(
        d[0].message
            .contains("a tab in the indentation; YAML indents with spaces only"),
        "{}",
        d[0]
    );
    let text = format!("{POOLS}retries: {{attempts: 20}}\t# a tab before a comment\n");
    assert_one(
        &text,
        at(&text, "20"),
        "retries.attempts: 20 is more than 10",
    );
}

#[test]
fn crlf_and_cr_line_ends_count_as_one_break() {
    let lf = format!("{POOLS}retries:\n  attempts: 99\n  times: 1\n");
    let crlf = lf.replace('\n', "\r\n");
    let d = errors(&crlf);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(&d, after(&lf, "attempts: "), "99 is more than 10");
    assert_has(&d, at(&lf, "times"), "unknown key `times` in `retries`");
    let cr = lf.replace('\n', "\r");
    assert_eq!(errors(&cr), d);
}

#[test]
fn a_byte_order_mark_moves_no_position() {
    let text = format!("{POOLS}retries: {{attempts: 99, times: 1}}\n");
    let d = errors(&format!("\u{feff}{text}"));
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(&d, after(&text, "attempts: "), "99 is more than 10");
    assert_has(&d, at(&text, "times"), "unknown key `times`");
    assert_has(&errors("\u{feff}poolz: 1\n"), (1, 1), "unknown key `poolz`");
    // Anywhere else it is a mistake, where it stands.
    let text = format!("{POOLS}\u{feff}retries: {{attempts: 2}}\n");
    assert_one(&text, (4, 1), "byte order mark");
}

#[test]
fn control_characters_are_refused_where_they_are() {
    let text = format!("{POOLS}log: {{level: \"info\u{7}\"}}\n");
    assert_one(&text, after(&text, "info"), "control character U+0007");
    let text = format!("{POOLS}\r\nstate_file: \"./a\u{1b}\"\n");
    assert_one(&text, (5, 17), "control character U+001B");
    // Written as an escape, it is just a character of the string.
    assert!(errors(&format!("{POOLS}state_file: \"./a\\a.json\"\n")).is_empty());
}

#[test]
fn tags_other_than_yaml_core_are_refused_at_the_tag() {
    let text = format!("{POOLS}retries: !bar {{attempts: !foo 3}}\nlog: {{level: !!str info}}\n");
    let d = errors(&text);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(&d, at(&text, "!bar"), "YAML tag `!bar` is not supported");
    assert_has(&d, at(&text, "!foo"), "YAML tag `!foo` is not supported");
}

#[test]
fn nothing_is_placed_past_the_end_of_the_file() {
    // The parser puts an error, or an empty key, one line past the last.
    assert_one("pools:\n  blue: [a, b", (2, 14), "YAML syntax error");
    let d = errors("? ");
    assert_has(&d, (1, 3), "unknown key ``");
    let text = format!("{POOLS}retries:\n  attempts: 2\n  ? ");
    assert_one(&text, (6, 5), "unknown key `` in `retries`");
}
