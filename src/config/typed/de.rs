//! The serde `Deserializer` over the [`Tree`](crate::config::tree::Tree)'s nodes.
//!
//! Plain scalars resolve as yaml_serde resolves them (YAML 1.2 core schema:
//! only plain scalars are null, booleans or numbers); most types are read
//! through `deserialize_any`, and serde's own visitors accept or refuse what
//! they are given. Structs leave unknown keys out (recording them in the
//! [`Ctx`]); a value set aside, or a required key found missing, is read as a
//! [`Hole`]. Every error is tagged with the innermost node it came from, as
//! it leaves the slot that node fills.

use super::hole::Hole;
use super::{explain_str_error, Aside, Ctx, DeError, Place};
use crate::config::tree::{Kind, Node, Pos};
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;

/// Where a node sits: the keys and indices up to the root, kept on the stack
/// while reading (a path is only spelled out for a message).
pub(super) struct At<'a> {
    up: Option<&'a At<'a>>,
    step: Step<'a>,
    /// The key when the node is a mapping value, else the node itself.
    anchor: Pos,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl At<'_> {
    pub(super) const ROOT: At<'static> = At {
        up: None,
        step: Step::Root,
        anchor: Pos::START,
    };

    /// As an operator reads it: `listeners[1].bind`; empty for the top level.
    pub(super) fn path(&self) -> String {
        let mut out = self.up.map(At::path).unwrap_or_default();
        match self.step {
            Step::Root => {}
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
        out
    }
}

impl DeError {
    /// Tag the error with `node`, unless a node inside it already did.
    pub(super) fn found_in(mut self, node: &Node, at: &At<'_>) -> Self {
        if self.place.is_none() {
            let key_written = self.missing.is_some_and(|field| {
                matches!(&node.kind, Kind::Map(entries) if entries.iter().any(|e| e.key == field))
            });
            let path = at.path();
            self.place = Some(Box::new(Place {
                id: node.id,
                pos: node.pos,
                anchor: at.anchor,
                section: path.split(['.', '[']).next().unwrap_or("").to_string(),
                path,
                key_written,
                keyed: matches!(at.step, Step::Key(_)),
            }));
        }
        self
    }

    /// An error of the stand-in read for the node at `at`.
    fn in_hole(mut self, node: &Node, at: &At<'_>) -> Self {
        self.hole = true;
        self.found_in(node, at)
    }
}

#[derive(Clone, Copy)]
pub(super) struct De<'a> {
    node: &'a Node,
    at: &'a At<'a>,
    ctx: &'a Ctx<'a>,
}

impl<'a> De<'a> {
    pub(super) fn new(node: &'a Node, at: &'a At<'a>, ctx: &'a Ctx<'a>) -> Self {
        De { node, at, ctx }
    }

    fn is_null(&self) -> bool {
        matches!(self.unexpected(), Unexpected::Unit)
    }

    /// The node as YAML's core schema reads it: what a visitor is given,
    /// and what an error message says was found.
    fn unexpected(&self) -> Unexpected<'a> {
        match &self.node.kind {
            Kind::Seq(_) => Unexpected::Seq,
            Kind::Map(_) => Unexpected::Map,
            // Quoted, block and `!!str` scalars are strings.
            Kind::Scalar(s) if !s.plain => Unexpected::Str(&s.value),
            Kind::Scalar(s) => resolve(&s.value),
        }
    }

    fn invalid<T>(&self, exp: &dyn Expected) -> Result<T, DeError> {
        Err(de::Error::invalid_type(self.unexpected(), exp))
    }
}

/// YAML 1.2 core schema resolution of a plain scalar (as yaml_serde does it).
pub(super) fn resolve(v: &str) -> Unexpected<'_> {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Unexpected::Unit,
        "true" | "True" | "TRUE" => return Unexpected::Bool(true),
        "false" | "False" | "FALSE" => return Unexpected::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Unexpected::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Unexpected::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Unexpected::Float(f64::NAN),
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    // Leading zeros followed by digits only are a string in YAML 1.2 (`007`).
    if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Unexpected::Str(v);
    }
    let unsigned = v.strip_prefix('+').unwrap_or(v);
    let radix = |p: &str, r: u32| {
        unsigned
            .strip_prefix(p)
            .and_then(|d| u64::from_str_radix(d, r).ok())
    };
    if let Some(n) = radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
    {
        return Unexpected::Unsigned(n);
    }
    if let Ok(n) = unsigned.parse::<u64>() {
        return Unexpected::Unsigned(n);
    }
    if let Ok(n) = v.parse::<i64>() {
        return Unexpected::Signed(n);
    }
    // Rust also reads `inf` and `nan`; YAML does not, hence the digit.
    if v.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(f) = unsigned.parse::<f64>() {
            if f.is_finite() {
                return Unexpected::Float(f);
            }
        }
    }
    Unexpected::Str(v)
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = DeError;

    /// Numbers, booleans, lists and null come through here; their visitors
    /// refuse what does not fit, in the words of `DeError::invalid_type`.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Map(_) => self.deserialize_map(visitor),
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                at: self.at,
                ctx: self.ctx,
            }),
            Kind::Scalar(s) => match self.unexpected() {
                Unexpected::Unit => visitor.visit_unit(),
                Unexpected::Bool(b) => visitor.visit_bool(b),
                Unexpected::Unsigned(n) => visitor.visit_u64(n),
                Unexpected::Signed(n) => visitor.visit_i64(n),
                Unexpected::Float(f) => visitor.visit_f64(f),
                _ => visitor.visit_str(&s.value),
            },
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct identifier
    }

    /// Any scalar reads as the text written (`name: 123` is "123").
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Kind::Scalar(s) = &self.node.kind else {
            return self.invalid(&visitor);
        };
        let what = format!("{}", &visitor as &dyn Expected);
        visitor
            .visit_str(&s.value)
            .map_err(|e| explain_str_error(e, &what, &s.value))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

    /// Keys not in `fields` are recorded as unknown and left out; `name` is
    /// empty for a map, which knows no fields and keeps every key.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let ctx = self.ctx;
        let written: &[_] = match &self.node.kind {
            Kind::Map(entries) => entries,
            // `health_check:` with nothing after it means "all defaults".
            _ if self.is_null() => &[],
            _ => return self.invalid(&visitor),
        };
        let mut kept = Vec::new();
        for e in written
            .iter()
            .filter(|e| ctx.aside.get(&e.value.id) != Some(&Aside::Skip))
        {
            if name.is_empty() || fields.contains(&e.key.as_str()) {
                kept.push((e.key.as_str(), e.key_pos, Slot::of(&e.value, ctx)));
            } else {
                ctx.unknown_key(&e.key, e.key_pos, self.at, fields);
            }
        }
        let id = self.node.id;
        for &(_, field) in ctx.missing.range((id, "")..(id + 1, "")) {
            kept.push((field, self.node.pos, Slot::Missing(self.node, self.at)));
        }
        let map = MapDe {
            entries: kept.into_iter(),
            value: None,
            at: self.at,
            ctx,
        };
        visitor.visit_map(map)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Scalar(s) if !self.is_null() => {
                let name: StrDeserializer<'_, DeError> = s.value.as_str().into_deserializer();
                visitor.visit_enum(name)
            }
            _ => {
                let list: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
                self.invalid(&format!("one of {}", list.join(", ")).as_str())
            }
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// What a key or list item holds: a written value, or a stand-in.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Node(&'a Node),
    /// A value set aside: a stand-in owned by the node itself.
    Placeholder(&'a Node),
    /// A required key found missing: a stand-in owned by the mapping.
    Missing(&'a Node, &'a At<'a>),
}

impl<'a> Slot<'a> {
    fn of(node: &'a Node, ctx: &Ctx<'_>) -> Self {
        match ctx.aside.get(&node.id) {
            Some(Aside::Placeholder) => Slot::Placeholder(node),
            _ => Slot::Node(node),
        }
    }

    /// Read the slot whose place is `at`.
    fn read<'de, T: DeserializeSeed<'de>>(
        self,
        seed: T,
        at: &At<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<T::Value, DeError> {
        match self {
            // Also errors of a type's own checks after reading (`Cidr`).
            Slot::Node(node) => seed
                .deserialize(De { node, at, ctx })
                .map_err(|e| e.found_in(node, at)),
            Slot::Placeholder(node) => seed.deserialize(Hole).map_err(|e| e.in_hole(node, at)),
            Slot::Missing(map, map_at) => {
                seed.deserialize(Hole).map_err(|e| e.in_hole(map, map_at))
            }
        }
    }
}

struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    at: &'a At<'a>,
    ctx: &'a Ctx<'a>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let ctx = self.ctx;
        let next = self
            .items
            .by_ref()
            .find(|(_, n)| ctx.aside.get(&n.id) != Some(&Aside::Skip));
        let Some((index, node)) = next else {
            return Ok(None);
        };
        let at = At {
            up: Some(self.at),
            step: Step::Index(index),
            anchor: node.pos,
        };
        Slot::of(node, ctx).read(seed, &at, ctx).map(Some)
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<(&'a str, Pos, Slot<'a>)>,
    value: Option<(&'a str, Pos, Slot<'a>)>,
    at: &'a At<'a>,
    ctx: &'a Ctx<'a>,
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key: StrDeserializer<'_, DeError> = entry.0.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, key_pos, slot)) = self.value.take() else {
            return Err(de::Error::custom("value without a key"));
        };
        let at = At {
            up: Some(self.at),
            step: Step::Key(key),
            anchor: key_pos,
        };
        slot.read(seed, &at, self.ctx)
    }
}
