//! One pass over a DynamoDB JSON image, straight into attribute values.
//!
//! The careful reader in the parent module reads an image attribute by attribute, each from its
//! own borrowed text, so that an error names the attribute and a lenient image can set an
//! unreadable attribute aside. That costs three or four scans of every byte. Almost every image
//! is well formed, so [`image`] first reads it in one pass and gives up at the first thing it
//! does not take exactly as the careful reader would (an error of any kind, a repeated type key,
//! an unknown type): the caller then reads the image carefully, which says what is wrong. So
//! the result is always the careful reader's, only sooner.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_dynamo::AttributeValue as A;
use serde_json::value::RawValue;

use super::CowStr;

/// The image's attributes by name, or `None` when anything about it needs the careful reader.
pub(super) fn image(raw: &RawValue) -> Option<BTreeMap<String, A>> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let map = de.deserialize_map(attrs()).ok()?;
    de.end().ok()?;
    Some(map)
}

/// Reads an image from a deserializer, as [`image`] does, for a record read in one pass.
pub(super) fn deserialize_image<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, A>, D::Error> {
    d.deserialize_map(attrs())
}

/// A refusal: the careful reader takes over, so its text never reaches anyone.
fn refuse<E: serde::de::Error>() -> E {
    E::custom("read carefully")
}

/// A map of attribute values by name: an image (`BTreeMap`) or the members of an `M`
/// (`HashMap`). A name written twice keeps its last value, as the careful reader's maps do.
struct Attrs<T>(PhantomData<T>);

fn attrs<T>() -> Attrs<T> {
    Attrs(PhantomData)
}

impl<'de, T: Default + Extend<(String, A)>> DeserializeSeed<'de> for Attrs<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Default + Extend<(String, A)>> Visitor<'de> for Attrs<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of attribute values")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<T, M::Error> {
        let mut out = T::default();
        while let Some(name) = map.next_key::<CowStr<'de>>()? {
            let value = map.next_value_seed(Attr)?;
            out.extend(std::iter::once((name.0.into_owned(), value)));
        }
        Ok(out)
    }
}

/// One attribute value: a map with exactly one known type key.
struct Attr;

impl<'de> DeserializeSeed<'de> for Attr {
    type Value = A;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<A, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Attr {
    type Value = A;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<A, M::Error> {
        let Some(kind) = map.next_key::<CowStr<'de>>()? else {
            return Err(refuse());
        };
        let value = match kind.0.as_ref() {
            "S" => match map.next_value::<Option<CowStr<'de>>>()? {
                Some(s) => A::S(s.0.into_owned()),
                None => A::Null(true),
            },
            "N" => A::N(number(map.next_value::<&'de RawValue>()?)?),
            "B" => A::B(base64(&map.next_value::<CowStr<'de>>()?.0)?),
            "BOOL" => A::Bool(map.next_value::<bool>()?),
            "NULL" => {
                map.next_value::<IgnoredAny>()?;
                A::Null(true)
            }
            "SS" => A::Ss(map.next_value::<Vec<String>>()?),
            "NS" => A::Ns(
                map.next_value::<Vec<&'de RawValue>>()?
                    .into_iter()
                    .map(number)
                    .collect::<Result<_, _>>()?,
            ),
            "BS" => A::Bs(
                map.next_value::<Vec<CowStr<'de>>>()?
                    .iter()
                    .map(|s| base64(&s.0))
                    .collect::<Result<_, _>>()?,
            ),
            "M" => A::M(map.next_value_seed(attrs())?),
            "L" => A::L(map.next_value_seed(Items)?),
            _ => return Err(refuse()),
        };
        // A second type key, even a repeated one, is for the careful reader.
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(refuse());
        }
        Ok(value)
    }
}

/// An `N` member: decimal text in a string, or a JSON number's literal text.
fn number<E: serde::de::Error>(raw: &RawValue) -> Result<String, E> {
    let text = raw.get();
    if let Some(plain) = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('\\'))
    {
        // A string without escapes is its own text (the parser has checked its syntax).
        Ok(plain.to_owned())
    } else if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|_| refuse())
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(refuse())
    }
}

fn base64<E: serde::de::Error>(text: &str) -> Result<Vec<u8>, E> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| refuse())
}

/// The items of an `L`.
struct Items;

impl<'de> DeserializeSeed<'de> for Items {
    type Value = Vec<A>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items {
    type Value = Vec<A>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element_seed(Attr)? {
            out.push(item);
        }
        Ok(out)
    }
}
