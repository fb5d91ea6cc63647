//! A stand-in value for a place in the file that could not be read.
//!
//! It deserializes as the emptiest value of whatever type asks for it: false,
//! 0, an empty list, `None`, the first unit variant, a mapping with every
//! field a stand-in too. Its only job is to let the parent be read so the
//! mistakes after it are found; the section holding it is never checked
//! further. When a type accepts none of these, the error is marked as coming
//! from the stand-in and the reader leaves the node out instead.

use super::DeError;
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

pub(super) struct Hole;

macro_rules! zero {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.visit_u64(0)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Hole {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bool(false)
    }

    zero! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    }

    forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Strings that parse into something need a parsable stand-in.
        let text = match format!("{}", &visitor as &dyn Expected).as_str() {
            "a duration" => "0s",
            "socket address" => "0.0.0.0:0",
            "IP address" => "0.0.0.0",
            crate::config::mirror::SIZE_EXPECTED => "0",
            _ => "",
        };
        visitor.visit_str(text)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_none()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<()>()))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_map(HoleMap {
            fields: fields.iter(),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match variants.first() {
            Some(first) => visitor.visit_enum(first.into_deserializer()),
            None => Err(de::Error::custom("no value fits here")),
        }
    }
}

/// Every field of a struct, each a stand-in.
struct HoleMap {
    fields: std::slice::Iter<'static, &'static str>,
}

impl<'de> de::MapAccess<'de> for HoleMap {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.fields.next() {
            Some(field) => {
                let key: de::value::StrDeserializer<'_, DeError> = field.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        seed.deserialize(Hole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{Config, ListenerConfig, PoolsConfig};
    use serde::Deserialize;

    #[test]
    fn stands_in_for_every_section_of_the_schema() {
        assert!(PoolsConfig::deserialize(Hole).is_ok_and(|p| p.blue.endpoints.is_empty()));
        assert!(ListenerConfig::deserialize(Hole).is_ok());
        assert!(Config::deserialize(Hole).is_ok());
    }
}
