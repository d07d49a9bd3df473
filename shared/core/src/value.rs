//! Values in source images, seen uniformly: a DynamoDB attribute value, a raw JSON value, or a
//! member of a DynamoDB set. Typing and logical values read them without a detour through `f64`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_dynamo::AttributeValue;
use serde_json::value::RawValue;

/// A value in a source image.
#[derive(Debug, Clone, Copy)]
pub enum SrcRef<'a> {
    /// A DynamoDB attribute value.
    Ddb(&'a AttributeValue),
    /// A raw JSON value.
    Json(&'a RawValue),
    /// A member of a DynamoDB string set.
    Str(&'a str),
    /// A member of a DynamoDB number set, as decimal text.
    Num(&'a str),
    /// A member of a DynamoDB binary set.
    Bin(&'a [u8]),
}

/// One level of a source value, seen uniformly.
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
    Bin(&'a [u8]),
    List(Vec<SrcRef<'a>>),
    Map,
    StrSet(&'a [String]),
    NumSet(&'a [String]),
    BinSet(&'a [Vec<u8>]),
}

impl Node<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Num(_) => "a number",
            Self::Str(_) => "a string",
            Self::Bin(_) => "binary",
            Self::List(_) => "a list",
            Self::Map => "a map",
            Self::StrSet(_) => "a string set",
            Self::NumSet(_) => "a number set",
            Self::BinSet(_) => "a binary set",
        }
    }
}

impl<'a> SrcRef<'a> {
    pub(crate) fn node(self) -> Result<Node<'a>, &'static str> {
        match self {
            Self::Ddb(v) => Ok(match v {
                AttributeValue::Null(_) => Node::Null,
                AttributeValue::Bool(b) => Node::Bool(*b),
                AttributeValue::N(n) => Node::Num(Cow::Borrowed(n)),
                AttributeValue::S(s) => Node::Str(Cow::Borrowed(s)),
                AttributeValue::B(b) => Node::Bin(b),
                AttributeValue::L(l) => Node::List(l.iter().map(SrcRef::Ddb).collect()),
                AttributeValue::M(_) => Node::Map,
                AttributeValue::Ss(s) => Node::StrSet(s),
                AttributeValue::Ns(n) => Node::NumSet(n),
                AttributeValue::Bs(b) => Node::BinSet(b),
            }),
            Self::Str(s) => Ok(Node::Str(Cow::Borrowed(s))),
            Self::Num(n) => Ok(Node::Num(Cow::Borrowed(n))),
            Self::Bin(b) => Ok(Node::Bin(b)),
            Self::Json(raw) => {
                let text = raw.get();
                match text.as_bytes().first() {
                    Some(b'n') => Ok(Node::Null),
                    Some(b't') => Ok(Node::Bool(true)),
                    Some(b'f') => Ok(Node::Bool(false)),
                    Some(b'"') => serde_json::from_str::<String>(text)
                        .map(|s| Node::Str(Cow::Owned(s)))
                        .map_err(|_| "a string that is not valid Unicode"),
                    Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(text)
                        .map(|v| Node::List(v.into_iter().map(SrcRef::Json).collect()))
                        .map_err(|_| "unreadable JSON"),
                    Some(b'{') => Ok(Node::Map),
                    Some(_) => Ok(Node::Num(Cow::Borrowed(text))),
                    None => Err("empty JSON"),
                }
            }
        }
    }

    /// The kind of the value, such as `a number` or `a string`, for messages.
    pub fn kind(self) -> &'static str {
        self.node().map_or("an unreadable value", |n| n.kind())
    }

    /// Whether the value is null.
    pub fn is_null(self) -> bool {
        matches!(self.node(), Ok(Node::Null))
    }

    /// The member `name` of a map value, if this is a map that has it.
    pub fn member(self, name: &str) -> Option<SrcRef<'a>> {
        match self {
            Self::Ddb(AttributeValue::M(m)) => m.get(name).map(SrcRef::Ddb),
            Self::Json(raw) if raw.get().starts_with('{') => {
                let entries = serde_json::from_str::<MapEntries<'a>>(raw.get()).ok()?.0;
                entries
                    .into_iter()
                    .find(|(k, _)| k.0 == name)
                    .map(|(_, v)| SrcRef::Json(v))
            }
            _ => None,
        }
    }
}

/// A JSON object's entries in order, keys borrowed where they have no escapes.
pub(crate) struct MapEntries<'a>(Vec<(KeyText<'a>, &'a RawValue)>);

#[derive(Deserialize)]
pub(crate) struct KeyText<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for MapEntries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = MapEntries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<KeyText<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(MapEntries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}
