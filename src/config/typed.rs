//! Reading the [`Tree`] into the typed [`Config`], reporting every unknown
//! key, missing key and wrong type, each at its line and column.
//!
//! The schema stays in one place, `schema.rs`: `de.rs` is a serde
//! `Deserializer` over the tree, so serde's derived code decides what each
//! key must hold, and the field lists serde hands to `deserialize_struct`
//! tell which keys are unknown. Serde stops at its first error, so the file
//! is read again after each one, with the failing value set aside: a
//! stand-in ([`hole::Hole`]) takes its place, or the place of a missing
//! required key, so that reading goes on past it. This module does no
//! semantic checks.

mod de;
mod hole;

use super::schema::Config;
use super::tree::{Issue, Pos, Tree};
use de::{At, De};
use serde::de::{self as serde_de, Expected, Unexpected};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;

/// The outcome of reading the tree as a [`Config`].
pub(super) struct Typed {
    /// `None` only when nothing usable could be read (e.g. the file is a list).
    pub config: Option<Config>,
    pub issues: Vec<Issue>,
    /// Top-level sections holding a stand-in: their semantic checks would
    /// run on made-up values and shifted indices, so they are skipped.
    pub dirty: BTreeSet<String>,
    /// Keys whose value could not be read and were left out (read as their
    /// default): `rollback.interval`. The rest of their section is still
    /// checked, but nothing is said about these keys, or against them.
    pub unread: BTreeSet<String>,
}

/// How a value that could not be read is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// Read as a stand-in, so its parent can still be read.
    Placeholder,
    /// Left out, as if not written (when no stand-in fits its type).
    Skip,
}

/// Every error costs one pass; this bounds pathological files.
const MAX_PASSES: usize = 500;

pub(super) fn read(tree: &Tree) -> Typed {
    let root = tree.root.id;
    let mut aside: HashMap<usize, Aside> = HashMap::new();
    let mut missing: BTreeSet<(usize, &'static str)> = BTreeSet::new();
    let mut issues = Vec::new();
    let mut unknown = BTreeMap::new();
    let mut dirty = BTreeSet::new();
    let mut unread = BTreeSet::new();
    let mut config = None;
    for _ in 0..MAX_PASSES {
        let ctx = Ctx {
            aside: &aside,
            missing: &missing,
            unknown: RefCell::default(),
        };
        let result = Config::deserialize(De::new(&tree.root, &At::ROOT, &ctx))
            .map_err(|e| e.found_in(&tree.root, &At::ROOT));
        unknown.append(&mut ctx.unknown.into_inner());
        let err = match result {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(err) => err,
        };
        let Some(place) = err.place.map(|p| *p) else {
            break;
        };
        let section = match err.missing {
            Some(field) if place.section.is_empty() => field.to_string(),
            _ => place.section.clone(),
        };
        let go_on = if err.hole {
            dirty.insert(section);
            // No stand-in fits there: leave the node out; its parent decides.
            place.id != root && aside.insert(place.id, Aside::Skip) != Some(Aside::Skip)
        } else if let Some(field) = err.missing {
            // A key written with a value left out is not missing: said already.
            if !place.key_written {
                let message = match place.path.as_str() {
                    "" => format!("missing required key `{field}`"),
                    path => format!("missing required key `{field}` in `{path}`"),
                };
                issues.push(Issue::new(place.anchor, message));
            }
            dirty.insert(section);
            missing.insert((place.id, field))
        } else {
            let path = match place.path.as_str() {
                "" => "top level",
                path => path,
            };
            issues.push(Issue::new(place.pos, format!("{path}: {}", err.message)));
            if place.id == root {
                false
            } else if place.keyed {
                // A key's value: read on as if it were not written (its
                // default; a required key then reads as a stand-in), so the
                // rest of its section is still checked.
                unread.insert(place.path.clone());
                aside.insert(place.id, Aside::Skip).is_none()
            } else {
                // A list item: leaving it out would shift the indices after it.
                dirty.insert(section);
                aside.insert(place.id, Aside::Placeholder).is_none()
            }
        };
        if !go_on {
            break;
        }
    }
    let mut all: Vec<Issue> = unknown
        .into_iter()
        .map(|(pos, message)| Issue { pos, message })
        .collect();
    all.append(&mut issues);
    Typed {
        config,
        issues: all,
        dirty,
        unread,
    }
}

/// What one reading pass knows about the earlier ones.
struct Ctx<'a> {
    aside: &'a HashMap<usize, Aside>,
    /// Required keys found missing: (mapping node, key), read as stand-ins.
    missing: &'a BTreeSet<(usize, &'static str)>,
    /// Unknown keys by position, gathered while reading (they never stop it).
    unknown: RefCell<BTreeMap<Pos, String>>,
}

impl Ctx<'_> {
    fn unknown_key(&self, key: &str, key_pos: Pos, parent: &At<'_>, fields: &[&str]) {
        let mut msg = match parent.path() {
            place if place.is_empty() => format!("unknown key `{key}`"),
            place => format!("unknown key `{key}` in `{place}`"),
        };
        match suggest(key, fields) {
            Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
            None => msg.push_str(&format!("; known keys: {}", fields.join(", "))),
        }
        self.unknown.borrow_mut().insert(key_pos, msg);
    }
}

/// A serde error that remembers the innermost node it came from.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct DeError {
    message: String,
    missing: Option<&'static str>,
    place: Option<Box<Place>>,
    /// The error came from a stand-in owned by the node at `place`, not from the file.
    hole: bool,
}

/// Where an error was found.
#[derive(Debug)]
struct Place {
    id: usize,
    /// Where the node's value starts.
    pos: Pos,
    /// Where to point at the node as a whole: its key when it has one.
    anchor: Pos,
    /// `listeners[1].bind`; empty for the top level.
    path: String,
    /// The top-level key it is under.
    section: String,
    /// For a missing key: it is written, but its value was left out.
    key_written: bool,
    /// The node is the value of a key (not a list item, not the root).
    keyed: bool,
}

impl serde_de::Error for DeError {
    fn custom<T: Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            missing: None,
            place: None,
            hole: false,
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format!(
            "expected {}, found {}",
            describe_expected(exp),
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format!(
            "invalid value {}, expected {}",
            describe_unexpected(&unexp),
            describe_expected(exp)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list = expected
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = suggest(variant, expected)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        Self::custom(format!(
            "unknown value `{variant}`, expected one of {list}{hint}"
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            missing: Some(field),
            ..Self::custom(format!("missing required key `{field}`"))
        }
    }
}

/// A duration such as `250ms`, `2s` or `1m`, or why not, in the words
/// `check` uses (the admin API says the same).
pub fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    if let Some(rest) = value.trim_start().strip_prefix('-') {
        let example = match rest.trim() {
            "" => "2s",
            r => r,
        };
        return Err(format!(
            "invalid duration {value:?}: durations cannot be negative (a span of time from 0 up, such as {example})"
        ));
    }
    humantime::parse_duration(value).map_err(|why| {
        format!("invalid duration {value:?}: {why} (durations look like 250ms, 2s or 1m)")
    })
}

/// A string that its type refused (a duration, a socket address), said with
/// the reason the parser gives, once.
fn explain_str_error(e: DeError, what: &str, value: &str) -> DeError {
    if e.missing.is_some() || e.place.is_some() {
        return e;
    }
    let message = if what == "a duration" {
        match parse_duration(value) {
            Err(message) => message,
            Ok(_) => format!(
                "invalid duration {value:?}: {} (durations look like 250ms, 2s or 1m)",
                e.message
            ),
        }
    } else if e.message.starts_with("invalid value") {
        e.message
    } else {
        let what = what.trim_start_matches("a ").trim_start_matches("an ");
        format!("invalid {what} {value:?}: {}", e.message)
    };
    serde_de::Error::custom(message)
}

fn describe_expected(exp: &dyn Expected) -> String {
    let exp = exp.to_string();
    match exp.as_str() {
        "u8" => format!("a whole number from 0 to {}", u8::MAX),
        "u16" => format!("a whole number from 0 to {}", u16::MAX),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a duration" => "a duration such as 250ms, 2s or 1m".into(),
        s if s.starts_with("struct ") => "a mapping of keys".into(),
        s if s.starts_with("a sequence") => "a list".into(),
        _ => exp,
    }
}

fn describe_unexpected(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Unit => "nothing (null)".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        Unexpected::Unsigned(n) => n.to_string(),
        Unexpected::Signed(n) => n.to_string(),
        Unexpected::Float(f) => f.to_string(),
        other => other.to_string(),
    }
}

/// The closest of `known` to a mistyped `word`, if it is close enough.
pub(super) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word = norm(word);
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (edit_distance(&word, &norm(k)), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance counting a swap of two neighbours as one edit
/// (optimal string alignment), so `inof` is one step from `info`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_and_only_close() {
        let known = ["endpoints", "tls", "protocol"];
        assert_eq!(suggest("endpoint", &known), Some("endpoints"));
        assert_eq!(suggest("protocl", &known), Some("protocol"));
        assert_eq!(suggest("tsl", &known), Some("tls"));
        assert_eq!(suggest("cert", &known), None);
        assert_eq!(suggest("TLS", &known), Some("tls"));
        assert_eq!(suggest("weights", &known), None);
        assert_eq!(suggest("token-file", &["token_file"]), Some("token_file"));
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_core_schema() {
        use de::resolve;
        use serde::de::Unexpected::{Bool, Float, Signed, Str, Unit, Unsigned};
        assert_eq!(resolve("8080"), Unsigned(8080));
        assert_eq!(resolve("-1"), Signed(-1));
        assert_eq!(resolve("0.5"), Float(0.5));
        assert_eq!(resolve("0x10"), Unsigned(16));
        assert_eq!(resolve("true"), Bool(true));
        assert_eq!(resolve("~"), Unit);
        assert_eq!(resolve("007"), Str("007"));
        assert_eq!(resolve("2s"), Str("2s"));
        assert_eq!(resolve("infinity"), Str("infinity"));
    }

    #[test]
    fn a_value_no_stand_in_fits_is_left_out_and_the_rest_is_read() {
        use crate::config::tests::{after, assert_has, at, errors, render, POOLS};
        // No stand-in is an address range: the item is left out, and the
        // other sections are still read and checked.
        let text = format!(
            "{POOLS}traffic: {{override_trusted: [nope, \"127.0.0.1/8\"]}}\nretries: {{attempts: 99}}\n"
        );
        let d = errors(&text);
        assert_eq!(d.len(), 2, "{}", render(&d));
        assert_has(
            &d,
            at(&text, "nope"),
            "traffic.override_trusted[0]: \"nope\" is not an address",
        );
        assert_has(&d, after(&text, "attempts: "), "99 is more than 10");
    }
}
