//! serde deserialization out of a [`Node`] tree, with every error mapped to the span of the
//! innermost node (or mapping key) it concerns.
//!
//! Scalars are read leniently where plans need it: a string such as a rendered template
//! (`"{{ n }}"` → `"3"`) is accepted for a number or boolean field, and a number for a string field.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::node::{Entry, Node, Value};
use crate::diag::Span;

/// A deserialization error and the place it refers to.
#[derive(Debug, Clone)]
pub struct NodeError {
    pub span: Option<Span>,
    pub message: String,
    /// Set for unknown fields: the field name, so callers can suggest the right one.
    pub unknown_field: Option<(String, &'static [&'static str])>,
    pub missing_field: bool,
}

impl NodeError {
    fn at(mut self, span: &Span) -> Self {
        if self.span.is_none() {
            self.span = Some(span.clone());
        }
        self
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError {
            span: None,
            message: msg.to_string(),
            unknown_field: None,
            missing_field: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Self::custom(format_args!("unknown field `{field}`"));
        e.unknown_field = Some((field.to_string(), expected));
        e
    }

    fn missing_field(field: &'static str) -> Self {
        let mut e = Self::custom(format_args!("missing field `{field}`"));
        e.missing_field = true;
        e
    }
}

/// Deserializes `T` from `node`.
///
/// # Errors
/// A [`NodeError`] located at the node or key that does not fit `T`.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, NodeError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.at(&node.span))
}

struct NodeDe<'a>(&'a Node);

macro_rules! lenient_number {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
            match &self.0.value {
                Value::Str(s) => match s.trim().parse::<$ty>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(de::Error::invalid_type(de::Unexpected::Str(s), &visitor)),
                },
                _ => self.deserialize_any(visitor),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        let node = self.0;
        let r = match &node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAcc { iter: items.iter() }),
            Value::Map(map) => visitor.visit_map(MapAcc {
                iter: map.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.at(&node.span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match &self.0.value {
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match &self.0.value {
            Value::Str(s) => match s.trim() {
                "true" | "True" | "TRUE" => visitor.visit_bool(true),
                "false" | "False" | "FALSE" => visitor.visit_bool(false),
                _ => Err(de::Error::invalid_type(de::Unexpected::Str(s), &visitor)),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    lenient_number!(deserialize_u8, visit_u64, u64);
    lenient_number!(deserialize_u16, visit_u64, u64);
    lenient_number!(deserialize_u32, visit_u64, u64);
    lenient_number!(deserialize_u64, visit_u64, u64);
    lenient_number!(deserialize_i8, visit_i64, i64);
    lenient_number!(deserialize_i16, visit_i64, i64);
    lenient_number!(deserialize_i32, visit_i64, i64);
    lenient_number!(deserialize_i64, visit_i64, i64);
    lenient_number!(deserialize_f32, visit_f64, f64);
    lenient_number!(deserialize_f64, visit_f64, f64);

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.0.value {
            Value::Null => visitor.visit_unit(),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        let node = self.0;
        let r = match &node.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Map(map) if map.len() == 1 => match map.iter().next() {
                Some((k, e)) => visitor.visit_enum(EnumAcc { key: k, entry: e }),
                None => Err(de::Error::invalid_type(unexpected(node), &visitor)),
            },
            _ => Err(de::Error::invalid_type(unexpected(node), &visitor)),
        };
        r.map_err(|e| e.at(&node.span))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit_struct seq tuple tuple_struct map struct identifier i128 u128
    }
}

fn unexpected(node: &Node) -> de::Unexpected<'_> {
    match &node.value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Int(i) => de::Unexpected::Signed(*i),
        Value::Float(f) => de::Unexpected::Float(*f),
        Value::Str(s) => de::Unexpected::Str(s),
        Value::Seq(_) => de::Unexpected::Seq,
        Value::Map(_) => de::Unexpected::Map,
    }
}

struct SeqAcc<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = NodeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.iter.next() {
            Some(n) => seed
                .deserialize(NodeDe(n))
                .map(Some)
                .map_err(|e| e.at(&n.span)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAcc<'a> {
    iter: indexmap::map::Iter<'a, String, Entry>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = NodeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        match self.iter.next() {
            Some((k, e)) => {
                self.value = Some(&e.value);
                let key: de::value::StrDeserializer<'_, NodeError> = k.as_str().into_deserializer();
                seed.deserialize(key)
                    .map(Some)
                    .map_err(|err| err.at(&e.key_span))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, NodeError> {
        let n = self
            .value
            .take()
            .ok_or_else(|| <NodeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(NodeDe(n)).map_err(|e| e.at(&n.span))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct EnumAcc<'a> {
    key: &'a str,
    entry: &'a Entry,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAcc<'a> {
    type Error = NodeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), NodeError> {
        let key: de::value::StrDeserializer<'_, NodeError> = self.key.into_deserializer();
        let v = seed
            .deserialize(key)
            .map_err(|e| e.at(&self.entry.key_span))?;
        Ok((v, NodeDe(&self.entry.value)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = NodeError;

    fn unit_variant(self) -> Result<(), NodeError> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, NodeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::plan::node::parse_yaml;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        count: u32,
        #[serde(default)]
        flag: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    fn node(text: &str) -> Node {
        parse_yaml(&SourceFile::new("t.yaml", None, text.into())).unwrap()
    }

    #[test]
    fn unknown_fields_point_at_the_key() {
        let e =
            from_node::<Outer>(&node("name: a\ninner:\n  count: 1\n  colour: red\n")).unwrap_err();
        assert_eq!(e.message, "unknown field `colour`");
        assert_eq!(e.span.unwrap().location(), "t.yaml:4:3");
        assert_eq!(e.unknown_field.unwrap().1, &["count", "flag"]);
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let e = from_node::<Outer>(&node("name: a\ninner:\n  count: lots\n")).unwrap_err();
        assert_eq!(e.span.unwrap().location(), "t.yaml:3:10");
        assert!(
            e.message.contains("invalid type: string \"lots\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn missing_fields_point_at_the_mapping() {
        let e = from_node::<Outer>(&node("name: a\ninner:\n  flag: true\n")).unwrap_err();
        assert!(e.missing_field);
        assert_eq!(e.span.unwrap().location(), "t.yaml:3:3");
    }

    #[test]
    fn rendered_strings_coerce_to_numbers_and_bools() {
        let o = from_node::<Outer>(&node("name: 7\ninner: {count: '3', flag: 'true'}\n")).unwrap();
        assert_eq!(o.name, "7");
        assert_eq!(o.inner.count, 3);
        assert!(o.inner.flag);
    }
}
