//! The deserializer over a tape: the visitor calls serde_json's deserializer makes on the
//! text (`serde_json/src/de.rs`, 1.0.x), or an error that sends the caller back to the text.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

use super::{Node, Tape};

/// The newtype name behind serde_json's `RawValue`.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

thread_local! {
    /// Set when an error is made while a tape is deserialized (see [`Fallback`]).
    static FAILED: Cell<bool> = const { Cell::new(false) };
}

/// `T` deserialized from `tape` exactly as serde_json would from the text, or `None`: then
/// the caller parses the text with serde_json. `None` whenever any error was made on the
/// way — including one a `Deserialize` impl recovered from (an untagged enum trying its
/// variants, a flattened `Option`), since serde_json might have succeeded differently there.
pub(crate) fn deserialize<T: DeserializeOwned>(tape: &Tape) -> Option<T> {
    let before = FAILED.with(|f| f.replace(false));
    let mut de = TapeDe {
        nodes: &tape.nodes,
        strings: &tape.strings,
        pos: 0,
    };
    let value = T::deserialize(&mut de);
    let failed = FAILED.with(|f| f.replace(before));
    match value {
        Ok(value) if !failed && de.pos == tape.nodes.len() => Some(value),
        _ => None,
    }
}

/// The only error: "ask serde_json". Making one marks the running deserialization failed.
#[derive(Debug)]
pub(crate) struct Fallback;

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not reproduced from the tape")
    }
}

impl std::error::Error for Fallback {}

impl de::Error for Fallback {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        fail()
    }
}

fn fail() -> Fallback {
    FAILED.with(|f| f.set(true));
    Fallback
}

type Result<T> = std::result::Result<T, Fallback>;

struct TapeDe<'de> {
    nodes: &'de [Node],
    strings: &'de str,
    pos: usize,
}

impl<'de> TapeDe<'de> {
    fn peek(&self) -> Result<Node> {
        self.nodes.get(self.pos).copied().ok_or_else(fail)
    }

    fn next(&mut self) -> Result<Node> {
        let node = self.peek()?;
        self.pos += 1;
        Ok(node)
    }

    fn text(&self, start: u32, len: u32) -> Result<&'de str> {
        let start = start as usize;
        self.strings
            .get(start..start + len as usize)
            .ok_or_else(fail)
    }

    /// Visits a string node as serde_json visits the string it parsed: lent or copied.
    fn visit_string<V: Visitor<'de>>(&self, node: Node, visitor: V) -> Result<V::Value> {
        match node {
            Node::Str { start, len } => visitor.visit_borrowed_str(self.text(start, len)?),
            Node::Copied { start, len } => visitor.visit_str(self.text(start, len)?),
            _ => Err(fail()),
        }
    }

    fn visit_number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Node::U64(v) => visitor.visit_u64(v),
            Node::I64(v) => visitor.visit_i64(v),
            Node::F64(v) => visitor.visit_f64(v),
            _ => Err(fail()),
        }
    }

    /// Visits an array's elements; serde_json fails when the visitor leaves some.
    fn visit_array<V: Visitor<'de>>(&mut self, end: u32, visitor: V) -> Result<V::Value> {
        let end = end as usize;
        let value = visitor.visit_seq(Seq { de: self, end })?;
        if self.pos == end {
            Ok(value)
        } else {
            Err(fail())
        }
    }

    /// Visits an object's entries; serde_json fails when the visitor leaves some.
    fn visit_object<V: Visitor<'de>>(&mut self, end: u32, visitor: V) -> Result<V::Value> {
        let end = end as usize;
        let value = visitor.visit_map(Map {
            de: self,
            end,
            value_next: false,
        })?;
        if self.pos == end {
            Ok(value)
        } else {
            Err(fail())
        }
    }

    /// Runs `seed` on the next value, which it must consume (serde_json fails on a value a
    /// seed leaves unread).
    fn consume<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value> {
        let at = self.pos;
        let value = seed.deserialize(&mut *self)?;
        if self.pos > at {
            Ok(value)
        } else {
            Err(fail())
        }
    }
}

macro_rules! number {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.visit_number(visitor)
        }
    )*};
}

macro_rules! refused {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
            Err(fail())
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut TapeDe<'de> {
    type Error = Fallback;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Node::Null => visitor.visit_unit(),
            Node::Bool(v) => visitor.visit_bool(v),
            Node::U64(v) => visitor.visit_u64(v),
            Node::I64(v) => visitor.visit_i64(v),
            Node::F64(v) => visitor.visit_f64(v),
            node @ (Node::Str { .. } | Node::Copied { .. }) => self.visit_string(node, visitor),
            Node::Array { end } => self.visit_array(end, visitor),
            Node::Object { end } => self.visit_object(end, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Node::Bool(v) => visitor.visit_bool(v),
            _ => Err(fail()),
        }
    }

    number! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f64
    }

    // serde_json parses these from the text differently (`float_roundtrip`'s single
    // precision, 128-bit integers), and bytes are the string's raw bytes.
    refused! {
        deserialize_f32 deserialize_i128 deserialize_u128 deserialize_bytes deserialize_byte_buf
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let node = self.next()?;
        self.visit_string(node, visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Node::Null = self.peek()? {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Node::Null => visitor.visit_unit(),
            _ => Err(fail()),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == RAW_VALUE_TOKEN {
            return Err(fail());
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Node::Array { end } => self.visit_array(end, visitor),
            _ => Err(fail()),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Node::Object { end } => self.visit_object(end, visitor),
            _ => Err(fail()),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.next()? {
            Node::Array { end } => self.visit_array(end, visitor),
            Node::Object { end } => self.visit_object(end, visitor),
            _ => Err(fail()),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek()? {
            Node::Object { end } => {
                self.pos += 1;
                let end = end as usize;
                // `{"Variant": payload}`: exactly one entry.
                if self.pos >= end {
                    return Err(fail());
                }
                let value = visitor.visit_enum(Variant { de: self, end })?;
                if self.pos == end {
                    Ok(value)
                } else {
                    Err(fail())
                }
            }
            Node::Str { .. } | Node::Copied { .. } => visitor.visit_enum(UnitVariant { de: self }),
            _ => Err(fail()),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.pos = match self.next()? {
            Node::Array { end } | Node::Object { end } => end as usize,
            _ => self.pos,
        };
        visitor.visit_unit()
    }
}

/// An array's elements (serde_json gives no size hint).
struct Seq<'a, 'de> {
    de: &'a mut TapeDe<'de>,
    end: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Fallback;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.de.pos >= self.end {
            return Ok(None);
        }
        self.de.consume(seed).map(Some)
    }
}

/// An object's entries (serde_json gives no size hint): keys through [`Key`].
struct Map<'a, 'de> {
    de: &'a mut TapeDe<'de>,
    end: usize,
    /// A key was read and its value was not.
    value_next: bool,
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = Fallback;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.value_next {
            return Err(fail());
        }
        if self.de.pos >= self.end {
            return Ok(None);
        }
        let at = self.de.pos;
        let key = seed.deserialize(Key { de: &mut *self.de })?;
        if self.de.pos == at {
            return Err(fail());
        }
        self.value_next = true;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        if !self.value_next {
            return Err(fail());
        }
        self.value_next = false;
        self.de.consume(seed)
    }
}

/// An object key, as serde_json's `MapKey` gives it: the string to any visitor that asks
/// for one; the numbers and booleans serde_json parses out of a key are refused.
struct Key<'a, 'de> {
    de: &'a mut TapeDe<'de>,
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = Fallback;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let node = self.de.next()?;
        self.de.visit_string(node, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == RAW_VALUE_TOKEN {
            return Err(fail());
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(fail())
    }

    refused! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_bytes deserialize_byte_buf
    }

    serde::forward_to_deserialize_any! {
        char str string unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// `{"Variant": payload}`.
struct Variant<'a, 'de> {
    de: &'a mut TapeDe<'de>,
    end: usize,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Fallback;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self)> {
        // serde_json reads the variant's name with its main deserializer, not as a map key.
        let name = self.de.consume(seed)?;
        if self.de.pos >= self.end {
            return Err(fail());
        }
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Fallback;

    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(&mut *self.de)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value> {
        self.de.consume(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_seq(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_struct(&mut *self.de, "", fields, visitor)
    }
}

/// `"Variant"`.
struct UnitVariant<'a, 'de> {
    de: &'a mut TapeDe<'de>,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Fallback;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self)> {
        let name = self.de.consume(seed)?;
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Fallback;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> Result<S::Value> {
        Err(fail())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(fail())
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(fail())
    }
}
