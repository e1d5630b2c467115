//! Building a tape: serde_json parses the text once with `deserialize_any`, and every value
//! it visits is written down as it comes.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{Node, Tape};

/// Keys serde_json uses to smuggle its own types through a map (`arbitrary_precision`
/// numbers, raw values): a tape does not reproduce them.
const PRIVATE_PREFIX: &str = "$serde_json::private::";

pub(super) fn parse(text: &str) -> Option<Tape> {
    let mut builder = Builder {
        nodes: Vec::with_capacity(text.len() / 6 + 1),
        strings: String::with_capacity(text.len() / 2),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    Value(&mut builder).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(Tape {
        nodes: builder.nodes.into_boxed_slice(),
        strings: builder.strings.into_boxed_str(),
    })
}

struct Builder {
    nodes: Vec<Node>,
    strings: String,
}

impl Builder {
    fn push_str<E: de::Error>(&mut self, s: &str, copied: bool) -> Result<(), E> {
        let start = u32::try_from(self.strings.len()).map_err(|_| E::custom("tape too large"))?;
        let len = u32::try_from(s.len()).map_err(|_| E::custom("tape too large"))?;
        start
            .checked_add(len)
            .ok_or_else(|| E::custom("tape too large"))?;
        self.strings.push_str(s);
        self.nodes.push(if copied {
            Node::Copied { start, len }
        } else {
            Node::Str { start, len }
        });
        Ok(())
    }

    /// Opens a container: its node, to be closed by [`Builder::close`].
    fn open(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn close<E: de::Error>(&mut self, at: usize) -> Result<(), E> {
        let end = u32::try_from(self.nodes.len()).map_err(|_| E::custom("tape too large"))?;
        match self.nodes.get_mut(at) {
            Some(Node::Array { end: e } | Node::Object { end: e }) => *e = end,
            _ => return Err(E::custom("no container to close")),
        }
        Ok(())
    }
}

/// A value, visited by serde_json's `deserialize_any`.
struct Value<'b>(&'b mut Builder);

/// An object's key, visited by serde_json's map-key deserializer.
struct Key<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        key(self.0, s, false)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        key(self.0, s, true)
    }
}

fn key<E: de::Error>(b: &mut Builder, s: &str, copied: bool) -> Result<(), E> {
    if s.starts_with(PRIVATE_PREFIX) {
        return Err(E::custom("serde_json private token"));
    }
    b.push_str(s, copied)
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.nodes.push(Node::Null);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.nodes.push(Node::Bool(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.nodes.push(Node::U64(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.nodes.push(Node::I64(v));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.nodes.push(Node::F64(v));
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.push_str(s, false)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.push_str(s, true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.0.open(Node::Array { end: 0 });
        while seq.next_element_seed(Value(&mut *self.0))?.is_some() {}
        self.0.close(at)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.0.open(Node::Object { end: 0 });
        while map.next_key_seed(Key(&mut *self.0))?.is_some() {
            map.next_value_seed(Value(&mut *self.0))?;
        }
        self.0.close(at)
    }
}
