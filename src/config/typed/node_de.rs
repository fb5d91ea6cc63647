//! The serde `Deserializer` over positioned [`Node`]s.
//!
//! It reads scalars the way yaml_serde does (YAML 1.2 core schema: only plain
//! scalars are null, booleans or numbers), filters unknown keys out of every
//! struct (recording them in the [`Ctx`]), and puts a [`Hole`] where a value
//! was set aside or a required key is missing.

use super::hole::Hole;
use super::{explain_str_error, Aside, Ctx, DeError};
use crate::config::position::{Kind, Node, Scalar};
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};

#[derive(Clone, Copy)]
pub(super) struct De<'a> {
    pub(super) node: &'a Node,
    pub(super) ctx: &'a Ctx<'a>,
}

impl<'a> De<'a> {
    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn plain(&self) -> Option<&'a str> {
        self.scalar().filter(|s| s.plain).map(|s| s.value.as_str())
    }

    /// How YAML's core schema reads this node, for error messages.
    fn unexpected(&self) -> Unexpected<'a> {
        match &self.node.kind {
            Kind::Seq(_) => Unexpected::Seq,
            Kind::Map(_) => Unexpected::Map,
            Kind::Scalar(s) if !s.plain => Unexpected::Str(&s.value),
            Kind::Scalar(s) if s.is_null() => Unexpected::Unit,
            Kind::Scalar(s) => match resolve(&s.value) {
                Resolved::Bool(b) => Unexpected::Bool(b),
                Resolved::Unsigned(n) => Unexpected::Unsigned(n),
                Resolved::Signed(n) => Unexpected::Signed(n),
                Resolved::Float(f) => Unexpected::Float(f),
                Resolved::Str => Unexpected::Str(&s.value),
            },
        }
    }

    fn invalid<T>(&self, exp: &dyn Expected) -> Result<T, DeError> {
        Err(de::Error::invalid_type(self.unexpected(), exp))
    }

    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.node.id))
    }

    fn is_null(&self) -> bool {
        self.scalar().is_some_and(Scalar::is_null)
    }
}

pub(super) enum Resolved {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str,
}

/// YAML 1.2 core schema resolution of a plain scalar (as yaml_serde does it).
pub(super) fn resolve(v: &str) -> Resolved {
    match v {
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    // Leading zeros followed by digits only are a string in YAML 1.2 (`007`).
    if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Resolved::Str;
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
        return Resolved::Unsigned(n);
    }
    if let Ok(n) = unsigned.parse::<u64>() {
        return Resolved::Unsigned(n);
    }
    if let Ok(n) = v.parse::<i64>() {
        return Resolved::Signed(n);
    }
    // Rust also reads `inf` and `nan`; YAML does not, hence the digit.
    if v.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(f) = unsigned.parse::<f64>() {
            if f.is_finite() {
                return Resolved::Float(f);
            }
        }
    }
    Resolved::Str
}

macro_rules! forward_ints {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let r = match self.plain().map(resolve) {
                Some(Resolved::Unsigned(n)) => visitor.visit_u64(n),
                Some(Resolved::Signed(n)) => visitor.visit_i64(n),
                _ => self.invalid(&visitor),
            };
            self.wrap(r)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Seq(_) => self.deserialize_seq(visitor),
            Kind::Map(_) => self.deserialize_map(visitor),
            Kind::Scalar(s) if !s.plain => visitor.visit_str(&s.value),
            Kind::Scalar(s) if s.is_null() => visitor.visit_unit(),
            Kind::Scalar(s) => match resolve(&s.value) {
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Unsigned(n) => visitor.visit_u64(n),
                Resolved::Signed(n) => visitor.visit_i64(n),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str => visitor.visit_str(&s.value),
            },
        };
        self.wrap(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.plain().map(resolve) {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            _ => self.invalid(&visitor),
        };
        self.wrap(r)
    }

    forward_ints! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.plain().map(resolve) {
            Some(Resolved::Unsigned(n)) => visitor.visit_u64(n),
            Some(Resolved::Signed(n)) => visitor.visit_i64(n),
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            _ => self.invalid(&visitor),
        };
        self.wrap(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.scalar() {
            Some(s) => {
                let what = format!("{}", &visitor as &dyn Expected);
                visitor
                    .visit_str(&s.value)
                    .map_err(|e: DeError| explain_str_error(e, &what, &s.value))
            }
            None => self.invalid(&visitor),
        };
        self.wrap(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            self.wrap(visitor.visit_none())
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = if self.is_null() {
            visitor.visit_unit()
        } else {
            self.invalid(&visitor)
        };
        self.wrap(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                ctx: self.ctx,
            }),
            _ => self.invalid(&visitor),
        };
        self.wrap(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

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
            Kind::Scalar(s) if s.is_null() => &[],
            _ => return self.wrap(self.invalid(&visitor)),
        };
        let mut kept = Vec::new();
        for e in written
            .iter()
            .filter(|e| ctx.aside.get(&e.value.id) != Some(&Aside::Skip))
        {
            if name.is_empty() || fields.contains(&e.key.as_str()) {
                kept.push((e.key.as_str(), Slot::of(&e.value, ctx)));
            } else {
                ctx.unknown_key(e, self.node, fields);
            }
        }
        for (_, field) in ctx
            .missing
            .range((self.node.id, "")..(self.node.id + 1, ""))
        {
            kept.push((field, Slot::Hole(self.node.id)));
        }
        self.wrap(visitor.visit_map(MapDe::new(kept, ctx)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match self.scalar() {
            Some(s) if !s.is_null() => visitor.visit_enum(UnitVariant(&s.value)),
            _ => {
                let list: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
                Err(de::Error::invalid_type(
                    self.unexpected(),
                    &format!("one of {}", list.join(", ")).as_str(),
                ))
            }
        };
        self.wrap(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    ctx: &'a Ctx<'a>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let ctx = self.ctx;
        match self
            .items
            .by_ref()
            .find(|n| ctx.aside.get(&n.id) != Some(&Aside::Skip))
        {
            Some(node) => Slot::of(node, ctx).deserialize(seed, ctx).map(Some),
            None => Ok(None),
        }
    }
}

/// What a key of a mapping holds: a written value, or a stand-in.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Node(&'a Node),
    /// A stand-in owned by node `.0` (see [`Hole`]).
    Hole(usize),
}

impl<'a> Slot<'a> {
    fn of(node: &'a Node, ctx: &Ctx<'_>) -> Self {
        match ctx.aside.get(&node.id) {
            Some(Aside::Placeholder) => Slot::Hole(node.id),
            _ => Slot::Node(node),
        }
    }

    fn deserialize<'de, T: DeserializeSeed<'de>>(
        self,
        seed: T,
        ctx: &'a Ctx<'a>,
    ) -> Result<T::Value, DeError> {
        match self {
            Slot::Node(node) => seed.deserialize(De { node, ctx }),
            Slot::Hole(owner) => seed.deserialize(Hole).map_err(|e| e.hole_at(owner)),
        }
    }

    fn id(self) -> usize {
        match self {
            Slot::Node(n) => n.id,
            Slot::Hole(owner) => owner,
        }
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<(&'a str, Slot<'a>)>,
    value: Option<Slot<'a>>,
    ctx: &'a Ctx<'a>,
}

impl<'a> MapDe<'a> {
    fn new(entries: Vec<(&'a str, Slot<'a>)>, ctx: &'a Ctx<'a>) -> Self {
        MapDe {
            entries: entries.into_iter(),
            value: None,
            ctx,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, slot)) => {
                self.value = Some(slot);
                let key: de::value::StrDeserializer<'_, DeError> = key.into_deserializer();
                seed.deserialize(key).map(Some).map_err(|e| e.at(slot.id()))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(slot) => slot.deserialize(seed, self.ctx),
            None => Err(de::Error::custom("value without a key")),
        }
    }
}

/// An enum written as a plain string: only unit variants.
pub(super) struct UnitVariant<'a>(pub(super) &'a str);

impl<'de> de::EnumAccess<'de> for UnitVariant<'_> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let name: de::value::StrDeserializer<'_, DeError> = self.0.into_deserializer();
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(de::Error::custom("expected a mapping for this value"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(de::Error::custom("expected a list for this value"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(de::Error::custom("expected a mapping for this value"))
    }
}
