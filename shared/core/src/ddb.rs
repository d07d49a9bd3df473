//! DynamoDB Streams records.
//!
//! A stream record is read through a borrowed view: only the fields that route and order it are
//! decoded for ingest, and the images stay raw until transform asks for them. Transform reads a
//! record and its images in one pass ([`StreamRecord::parse_decoded`]) and falls back to the
//! careful reading, attribute by attribute, for anything that pass does not take exactly as the
//! careful one would. `N` values keep their decimal text (serde_dynamo's
//! `AttributeValue::N(String)`), so no precision is lost.
//!
//! A REMOVE whose `userIdentity` is the DynamoDB service principal is a TTL expiry.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{ddb_disagreement, Change, Format, Image, Op, Route};
use crate::error::DecodeError;
use crate::json::Member;
use crate::seq::{truncate, Seq};
use crate::time::epoch_text_to_ms;

mod fast;

/// The `userIdentity` of a TTL deletion.
pub const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// A borrowed view of one DynamoDB Streams record (the object under `Records[]`).
///
/// Its images are `I`: left raw by default ([`StreamRecord::parse`]), or read in the same pass
/// ([`StreamRecord::parse_decoded`]).
#[derive(Debug, Deserialize)]
pub struct StreamRecord<'a, I = &'a RawValue> {
    /// Unique id of the record.
    #[serde(rename = "eventID", borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    #[serde(rename = "eventName", borrow, default)]
    pub event_name: Option<Cow<'a, str>>,
    /// The stream ARN, which names the table.
    #[serde(rename = "eventSourceARN", borrow, default)]
    pub event_source_arn: Option<Cow<'a, str>>,
    /// Who made the change; the DynamoDB service for TTL deletions.
    #[serde(rename = "userIdentity", borrow, default)]
    pub user_identity: Option<UserIdentity<'a>>,
    /// The change itself.
    #[serde(borrow, default = "none")]
    pub dynamodb: Option<StreamData<'a, I>>,
}

fn none<T>() -> Option<T> {
    None
}

/// The `userIdentity` of a stream record.
#[derive(Debug, Deserialize)]
pub struct UserIdentity<'a> {
    /// `Service` for TTL deletions.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// `dynamodb.amazonaws.com` for TTL deletions.
    #[serde(rename = "principalId", borrow, default)]
    pub principal_id: Option<Cow<'a, str>>,
}

/// The `dynamodb` object of a stream record, with its images as `I`.
#[derive(Debug, Deserialize)]
pub struct StreamData<'a, I = &'a RawValue> {
    /// The commit time in seconds, as decimal text in any notation.
    #[serde(rename = "ApproximateCreationDateTime", borrow, default)]
    pub approximate_creation_date_time: Option<&'a RawValue>,
    /// The shard-local sequence number, up to 40 decimal digits.
    #[serde(rename = "SequenceNumber", borrow, default)]
    pub sequence_number: Option<Cow<'a, str>>,
    /// The stream view type.
    #[serde(rename = "StreamViewType", borrow, default)]
    pub stream_view_type: Option<Cow<'a, str>>,
    /// The key attributes.
    #[serde(rename = "Keys", default = "none")]
    pub keys: Option<I>,
    /// The item after the change.
    #[serde(rename = "NewImage", default = "none")]
    pub new_image: Option<I>,
    /// The item before the change.
    #[serde(rename = "OldImage", default = "none")]
    pub old_image: Option<I>,
}

impl<'a> StreamRecord<'a> {
    /// Reads the view from the record's JSON text.
    pub fn parse(text: &'a str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError::UnknownShape {
            detail: format!("not a DynamoDB stream record: {e}"),
        })
    }
}

/// A record read for its route, its images skipped: what ingest needs.
pub type RoutedRecord<'a> = StreamRecord<'a, IgnoredAny>;

impl<'a> RoutedRecord<'a> {
    /// Reads the view from the record's JSON text, skipping its images.
    pub fn parse_routed(text: &'a str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError::UnknownShape {
            detail: format!("not a DynamoDB stream record: {e}"),
        })
    }

    /// Reads the view from where [`crate::json::read_raw_members`] found the members of the
    /// record `text`, reading only the few small values that route it; the images are not
    /// crossed again. `None` when anything is not as [`Self::parse_routed`] would take it
    /// without a doubt (a member written twice, an escape in a name, a value of another type):
    /// the caller then reads the record with that, which says what is wrong.
    pub fn from_members(text: &'a str, members: &[Member]) -> Option<Self> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let mut record = Self {
            event_id: None,
            event_name: None,
            event_source_arn: None,
            user_identity: None,
            dynamodb: None,
        };
        let mut seen = [false; 5];
        let mut data = None;
        for (i, m) in members.iter().enumerate().filter(|(_, m)| m.depth == 1) {
            let names = [
                "eventID",
                "eventName",
                "eventSourceARN",
                "userIdentity",
                "dynamodb",
            ];
            let Some((slot, v)) = known_member(text, m, names, &mut seen)? else {
                continue;
            };
            match slot {
                0 => record.event_id = optional_str(v)?,
                1 => record.event_name = optional_str(v)?,
                2 => record.event_source_arn = optional_str(v)?,
                3 => record.user_identity = serde_json::from_str(v).ok()?,
                _ if v == "null" => {}
                _ if v.starts_with('{') => data = Some(i),
                _ => return None,
            }
        }
        if let Some(parent) = data {
            let mut d = StreamData {
                approximate_creation_date_time: None,
                sequence_number: None,
                stream_view_type: None,
                keys: None,
                new_image: None,
                old_image: None,
            };
            let mut seen = [false; 6];
            for m in members.iter().filter(|m| m.parent == Some(parent)) {
                let names = [
                    "ApproximateCreationDateTime",
                    "SequenceNumber",
                    "StreamViewType",
                    "Keys",
                    "NewImage",
                    "OldImage",
                ];
                let Some((slot, v)) = known_member(text, m, names, &mut seen)? else {
                    continue;
                };
                // An image is any JSON value, skipped as the careful reading skips it.
                let image = (v != "null").then_some(IgnoredAny);
                match slot {
                    0 => d.approximate_creation_date_time = serde_json::from_str(v).ok()?,
                    1 => d.sequence_number = optional_str(v)?,
                    2 => d.stream_view_type = optional_str(v)?,
                    3 => d.keys = image,
                    4 => d.new_image = image,
                    _ => d.old_image = image,
                }
            }
            record.dynamodb = Some(d);
        }
        Some(record)
    }
}

/// Which of `names` the member `m` of `text` is, with its value: `Some(None)` for a name not
/// among them, `None` for what only the parser should read (an escaped name, a name met before,
/// as `seen` tells).
fn known_member<'a, const N: usize>(
    text: &'a str,
    m: &Member,
    names: [&str; N],
    seen: &mut [bool; N],
) -> Option<Option<(usize, &'a str)>> {
    let name = text.get(m.name.clone())?;
    if name.contains('\\') {
        return None;
    }
    let Some(slot) = names.iter().position(|n| *n == name) else {
        return Some(None);
    };
    if std::mem::replace(seen.get_mut(slot)?, true) {
        return None;
    }
    Some(Some((slot, text.get(m.value.clone())?)))
}

/// An optional string member's value: `Some(None)` for `null`, `None` when it is no string.
fn optional_str(value: &str) -> Option<Option<Cow<'_, str>>> {
    if value == "null" {
        return Some(None);
    }
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if !inner.bytes().any(|b| b == b'\\' || b < 0x20) => {
            Some(Some(Cow::Borrowed(inner)))
        }
        _ => serde_json::from_str::<String>(value)
            .ok()
            .map(|s| Some(Cow::Owned(s))),
    }
}

/// An image read in the same pass as its record. Only a well-formed image reads so; anything
/// else fails the whole pass, and the record is read carefully instead.
#[derive(Debug)]
pub struct DecodedImage(AttrMap);

impl<'de> Deserialize<'de> for DecodedImage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fast::deserialize_image(d).map(DecodedImage)
    }
}

impl<'a> StreamRecord<'a, DecodedImage> {
    /// Reads the record and its images in one pass, or `None` when anything about it needs the
    /// careful reading of [`StreamRecord::parse`] and [`StreamRecord::decode`] (which then says
    /// what is wrong). When it reads, its change is the careful reading's.
    pub fn parse_decoded(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The whole change.
    pub fn decode(self) -> Result<Change, DecodeError> {
        let route = self.route()?;
        let ttl_delete = self.is_ttl_delete();
        let data = self.dynamodb.ok_or_else(|| DecodeError::MissingField {
            path: "dynamodb".into(),
        })?;
        let key = data.keys.ok_or_else(|| DecodeError::MissingField {
            path: "dynamodb.Keys".into(),
        })?;
        assemble(
            route,
            ttl_delete,
            key.0,
            (data.new_image.map(|i| i.0), BTreeMap::new()),
            data.old_image.map(|i| i.0),
        )
    }
}

impl<'a, I> StreamRecord<'a, I> {
    /// The record's sequence number, as it came, when it has one.
    pub fn sequence_number(&self) -> Option<&str> {
        self.dynamodb.as_ref()?.sequence_number.as_deref()
    }

    /// Whether this record is a deletion by DynamoDB's TTL sweeper.
    pub fn is_ttl_delete(&self) -> bool {
        self.event_name.as_deref() == Some("REMOVE")
            && self.user_identity.as_ref().is_some_and(|u| {
                u.kind.as_deref() == Some("Service")
                    && u.principal_id.as_deref() == Some(TTL_PRINCIPAL)
            })
    }

    /// The operation named by `eventName`.
    pub fn op(&self) -> Result<Op, DecodeError> {
        match self.event_name.as_deref() {
            Some("INSERT") => Ok(Op::Insert),
            Some("MODIFY") => Ok(Op::Update),
            Some("REMOVE") => Ok(Op::Delete),
            Some(other) => Err(DecodeError::InvalidField {
                path: "eventName".into(),
                detail: format!(
                    "expected INSERT, MODIFY or REMOVE, found {:?}",
                    truncate(other)
                ),
            }),
            None => Err(DecodeError::MissingField {
                path: "eventName".into(),
            }),
        }
    }

    /// Table, op, seq and commit time: what ingest needs to land the record.
    pub fn route(&self) -> Result<Route, DecodeError> {
        let data = self
            .dynamodb
            .as_ref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "dynamodb".into(),
            })?;
        let op = self.op()?;
        let arn = self
            .event_source_arn
            .as_deref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "eventSourceARN".into(),
            })?;
        let table = table_from_stream_arn(arn).ok_or_else(|| DecodeError::InvalidField {
            path: "eventSourceARN".into(),
            detail: format!(
                "expected arn:…:table/NAME/stream/LABEL, found {:?}",
                truncate(arn)
            ),
        })?;
        let seq_text = data
            .sequence_number
            .as_deref()
            .ok_or_else(|| DecodeError::MissingSeq {
                path: "dynamodb.SequenceNumber".into(),
            })?;
        let seq = Seq::decimal(seq_text, "dynamodb.SequenceNumber")?;
        let ts_ms =
            match data.approximate_creation_date_time {
                None => None,
                Some(raw) if raw.get() == "null" => None,
                Some(raw) => Some(epoch_text_to_ms(raw.get().trim_matches('"')).ok_or_else(
                    || DecodeError::InvalidField {
                        path: "dynamodb.ApproximateCreationDateTime".into(),
                        detail: format!("expected epoch seconds, found {}", truncate(raw.get())),
                    },
                )?),
            };
        Ok(Route::new(Format::DdbStream, table, op, seq, ts_ms))
    }
}

impl StreamRecord<'_> {
    /// The whole change, with keys and images decoded into DynamoDB attribute values.
    pub fn decode(&self) -> Result<Change, DecodeError> {
        self.decode_with(self.route()?)
    }

    /// The whole change under a route read elsewhere (as for a change record delivered through
    /// Kinesis, which names its table and ordering differently), with keys and images decoded.
    pub fn decode_with(&self, route: Route) -> Result<Change, DecodeError> {
        let data = self
            .dynamodb
            .as_ref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "dynamodb".into(),
            })?;
        let keys = data.keys.ok_or_else(|| DecodeError::MissingField {
            path: "dynamodb.Keys".into(),
        })?;
        let key = decode_image(keys).map_err(|e| e.within("dynamodb.Keys"))?;
        if key.is_empty() {
            return Err(empty_key());
        }
        let (after, unreadable) = match data.new_image {
            Some(raw) => {
                let (image, bad) =
                    decode_image_lenient(raw).map_err(|e| e.within("dynamodb.NewImage"))?;
                (Some(image), bad)
            }
            None => (None, BTreeMap::new()),
        };
        // The old image only ever supplies a key, which `Keys` holds strictly; an unreadable
        // column of it is left out.
        let before = data
            .old_image
            .map(decode_image_lenient)
            .transpose()
            .map_err(|e| e.within("dynamodb.OldImage"))?
            .map(|(image, _)| image);
        assemble(
            route,
            self.is_ttl_delete(),
            key,
            (after, unreadable),
            before,
        )
    }
}

fn empty_key() -> DecodeError {
    DecodeError::InvalidField {
        path: "dynamodb.Keys".into(),
        detail: "a stream record must name at least one key attribute".into(),
    }
}

/// The change of a stream record whose key and images are read.
fn assemble(
    route: Route,
    ttl_delete: bool,
    key: AttrMap,
    (after, unreadable): (Option<AttrMap>, BTreeMap<String, String>),
    before: Option<AttrMap>,
) -> Result<Change, DecodeError> {
    if key.is_empty() {
        return Err(empty_key());
    }
    // DynamoDB never changes an item's key: both images must hold the key's values.
    for (image, path) in [(&after, "NewImage"), (&before, "OldImage")] {
        if let Some(column) = image.as_ref().and_then(|i| ddb_disagreement(&key, i)) {
            return Err(DecodeError::KeyMismatch {
                key: format!("dynamodb.Keys.{column}"),
                image: format!("dynamodb.{path}.{column}"),
            });
        }
    }
    Ok(Change {
        ttl_delete,
        unreadable,
        ..Change::new(
            route,
            Some(Image::Ddb(key)),
            before.map(Image::Ddb),
            after.map(Image::Ddb),
        )
    })
}

/// The table name in a stream ARN: `arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`.
pub fn table_from_stream_arn(arn: &str) -> Option<&str> {
    let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let name = resource.strip_prefix("table/")?.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// An image's attributes, borrowed from the record: each name (unescaped only when it has to be)
/// with its value's JSON, in one pass over the image and no map in between.
fn image_entries(raw: &RawValue) -> Result<Vec<(Cow<'_, str>, &RawValue)>, DecodeError> {
    struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Entries<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Entries<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map of attribute values")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                    while let Some(key) = map.next_key::<CowStr<'de>>()? {
                        out.push((key.0, map.next_value::<&'de RawValue>()?));
                    }
                    Ok(Entries(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    let entries: Entries<'_> =
        serde_json::from_str(raw.get()).map_err(|e| DecodeError::InvalidField {
            path: String::new(),
            detail: format!("expected a map of attribute values: {e}"),
        })?;
    Ok(entries.0)
}

/// A string borrowed from the input when it has no escapes, owned when it has.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Decodes an image attribute by attribute, so an error names the attribute.
fn decode_image(
    raw: &RawValue,
) -> Result<BTreeMap<String, serde_dynamo::AttributeValue>, DecodeError> {
    if let Some(image) = fast::image(raw) {
        return Ok(image);
    }
    image_entries(raw)?
        .into_iter()
        .map(|(name, value)| attr(value, &Path::Root(&name)).map(|v| (name.into_owned(), v)))
        .collect()
}

/// An image's attributes by name.
type AttrMap = BTreeMap<String, serde_dynamo::AttributeValue>;

/// Decodes an image whose attributes may be unreadable: a readable map is required, but each
/// attribute that cannot be read is set aside with its error instead of failing the image.
fn decode_image_lenient(
    raw: &RawValue,
) -> Result<(AttrMap, BTreeMap<String, String>), DecodeError> {
    match fast::image(raw) {
        Some(image) => Ok((image, BTreeMap::new())),
        None => careful_image_lenient(raw),
    }
}

/// [`decode_image_lenient`] attribute by attribute, each from its own text.
fn careful_image_lenient(
    raw: &RawValue,
) -> Result<(AttrMap, BTreeMap<String, String>), DecodeError> {
    let mut image = BTreeMap::new();
    let mut unreadable = BTreeMap::new();
    for (name, value) in image_entries(raw)? {
        match attr(value, &Path::Root(&name)) {
            Ok(v) => {
                image.insert(name.into_owned(), v);
            }
            Err(e) => {
                unreadable.insert(name.into_owned(), e.to_string());
            }
        }
    }
    Ok((image, unreadable))
}

/// Where an attribute is, written out only when an error names it.
enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root(p) => f.write_str(p),
            Self::Key(parent, k) => write!(f, "{parent}.{k}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// An attribute value as DynamoDB JSON has it: its type keys (distinct; a repeated key keeps its
/// last value, as a map would) with their JSON, borrowed.
struct TypeKeyed<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TypeKeyed<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TypeKeyed<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an attribute value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut keys: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(1);
                while let Some(key) = map.next_key::<CowStr<'de>>()? {
                    let value = map.next_value::<&'de RawValue>()?;
                    match keys.iter_mut().find(|(k, _)| *k == key.0) {
                        Some(slot) => slot.1 = value,
                        None => keys.push((key.0, value)),
                    }
                }
                Ok(TypeKeyed(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads one DynamoDB JSON attribute value, naming the path of anything wrong.
///
/// Beyond what DynamoDB writes, it accepts what other libraries emit: `N` and `NS` members as
/// JSON numbers (their literal text is kept) and `{"S": null}` as a null.
pub fn attribute(raw: &RawValue, path: &str) -> Result<serde_dynamo::AttributeValue, DecodeError> {
    attr(raw, &Path::Root(path))
}

fn attr(raw: &RawValue, path: &Path<'_>) -> Result<serde_dynamo::AttributeValue, DecodeError> {
    use serde_dynamo::AttributeValue as A;
    let invalid = |detail: String| DecodeError::InvalidField {
        path: path.to_string(),
        detail,
    };
    let typed: TypeKeyed<'_> = serde_json::from_str(raw.get())
        .map_err(|_| invalid("expected an attribute value such as {\"S\": …}".into()))?;
    let [(kind, value)] = typed.0.as_slice() else {
        return Err(invalid(format!(
            "expected exactly one type key (S, N, B, SS, NS, BS, M, L, NULL, BOOL), found {}",
            typed.0.len()
        )));
    };
    let (kind, value) = (kind.as_ref(), *value);
    let text = value.get();
    let string = |v: &RawValue| serde_json::from_str::<String>(v.get()).ok();
    let number = |v: &RawValue| -> Option<String> {
        let t = v.get();
        if t.starts_with('"') {
            string(v)
        } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            Some(t.to_owned())
        } else {
            None
        }
    };
    let b64 = |s: &str, at: &dyn std::fmt::Display| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| DecodeError::InvalidBase64 {
                path: at.to_string(),
                detail: e.to_string(),
            })
    };
    let wrong = |expected: &str| {
        invalid(format!(
            "`{kind}` holds {}, expected {expected}",
            json_kind(text)
        ))
    };
    Ok(match kind {
        "S" if text == "null" => A::Null(true),
        "S" => A::S(string(value).ok_or_else(|| wrong("a string"))?),
        "N" => A::N(number(value).ok_or_else(|| wrong("a number"))?),
        "B" => A::B(b64(
            &string(value).ok_or_else(|| wrong("base64 text"))?,
            path,
        )?),
        "BOOL" => A::Bool(serde_json::from_str(text).map_err(|_| wrong("true or false"))?),
        "NULL" => A::Null(true),
        "SS" => A::Ss(
            list(value)
                .ok_or_else(|| wrong("a list of strings"))?
                .into_iter()
                .map(string)
                .collect::<Option<_>>()
                .ok_or_else(|| wrong("a list of strings"))?,
        ),
        "NS" => A::Ns(
            list(value)
                .ok_or_else(|| wrong("a list of numbers"))?
                .into_iter()
                .map(number)
                .collect::<Option<_>>()
                .ok_or_else(|| wrong("a list of numbers"))?,
        ),
        "BS" => {
            let members = list(value).ok_or_else(|| wrong("a list of base64 texts"))?;
            let mut out = Vec::with_capacity(members.len());
            for (i, m) in members.into_iter().enumerate() {
                let s = string(m).ok_or_else(|| wrong("a list of base64 texts"))?;
                out.push(b64(&s, &Path::Index(path, i))?);
            }
            A::Bs(out)
        }
        "M" => {
            let entries = image_entries(value).map_err(|_| wrong("a map"))?;
            let mut map = std::collections::HashMap::with_capacity(entries.len());
            for (k, v) in entries {
                let a = attr(v, &Path::Key(path, &k))?;
                map.insert(k.into_owned(), a);
            }
            A::M(map)
        }
        "L" => A::L(
            list(value)
                .ok_or_else(|| wrong("a list"))?
                .into_iter()
                .enumerate()
                .map(|(i, v)| attr(v, &Path::Index(path, i)))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(invalid(format!(
                "unknown type key {:?}; expected S, N, B, SS, NS, BS, M, L, NULL or BOOL",
                truncate(other)
            )))
        }
    })
}

fn list(v: &RawValue) -> Option<Vec<&RawValue>> {
    serde_json::from_str(v.get()).ok()
}

fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'[') => "a list",
        Some(b'{') => "an object",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use serde_dynamo::AttributeValue as A;

    use super::*;

    const ARN: &str =
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000";

    fn record(event: &str, view: &str, data: &str) -> String {
        format!(
            r#"{{"eventID":"e1","eventName":"{event}","eventSource":"aws:dynamodb","eventSourceARN":"{ARN}","dynamodb":{{"ApproximateCreationDateTime":1795520000,"SequenceNumber":"1100000000017454423009","StreamViewType":"{view}",{data}}}}}"#
        )
    }

    /// The routed view `from_members` reads, or `None`, for a record's text.
    fn routed_from_members(text: &str) -> Option<String> {
        let raw: Box<RawValue> = serde_json::from_str(text).ok()?;
        let (_, members) =
            crate::json::read_raw_members(&raw, &crate::json::Limits::default()).ok()?;
        RoutedRecord::from_members(raw.get(), &members).map(|r| format!("{r:?}"))
    }

    #[test]
    fn a_record_routed_from_its_members_reads_as_the_parser_reads_it() {
        let plain = record("REMOVE", "NEW_AND_OLD_IMAGES", r#""Keys":{"pk":{"S":"a,\"}{"}},"NewImage":null,"OldImage":{"pk":{"S":"a"},"l":{"L":[{"M":{"x":{"N":"1"}}}]}}"#)
            .replacen(r#""eventID":"e1","#, r#""eventID":"e\u0031","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},"#, 1);
        let spaced = plain
            .replace(r#""dynamodb":{"#, "\"dynamodb\" :\n {  ")
            .replace(r#","SequenceNumber""#, " ,\t\"SequenceNumber\"");
        for text in [&plain, &spaced] {
            let quick = routed_from_members(text).expect("reads from its members");
            let parsed = RoutedRecord::parse_routed(text).unwrap();
            assert_eq!(quick, format!("{parsed:?}"));
            assert!(parsed.is_ttl_delete() && parsed.route().is_ok());
        }
        // Every single-byte change that leaves valid JSON: from its members, either the record
        // reads as the parser reads it, or it is left to the parser.
        let mut read = 0;
        for i in 0..plain.len() {
            for b in [b'"', b'}', b',', b'\\', b' ', b'x', b'1', b'{', b'n', b':'] {
                let mut bytes = plain.as_bytes().to_vec();
                bytes[i] = b;
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                if serde_json::from_str::<&RawValue>(&text).is_err() {
                    continue;
                }
                let Some(quick) = routed_from_members(&text) else {
                    continue;
                };
                read += 1;
                let parsed = RoutedRecord::parse_routed(&text).unwrap_or_else(|e| {
                    panic!("read from members, refused by the parser: {e}: {text}")
                });
                assert_eq!(quick, format!("{parsed:?}"), "{text}");
            }
        }
        assert!(read > 100, "{read}");
        // Left to the parser: a member twice, an escaped name, a value of another type, no object.
        for text in [
            plain.replacen(r#""eventName""#, r#""eventName":"INSERT","eventName""#, 1),
            plain.replacen(
                r#""SequenceNumber""#,
                r#""SequenceNumber":"1","SequenceNumber""#,
                1,
            ),
            plain.replacen(r#""eventName""#, r#""event\u004eame""#, 1),
            plain.replacen(r#""eventName":"REMOVE""#, r#""eventName":5"#, 1),
            plain.replacen(r#""dynamodb":{"#, r#""dynamodb":[],"x":{"#, 1),
            format!("[{plain}]"),
        ] {
            assert_eq!(routed_from_members(&text), None, "{text}");
        }
    }

    #[test]
    fn every_attribute_type_decodes_and_n_keeps_its_digits() {
        let data = r#""Keys":{"pk":{"S":"o-1"}},"NewImage":{"pk":{"S":"o-1"},
            "n":{"N":"12345678901234567890123456789012345.678"},"b":{"B":"AAEC"},
            "ss":{"SS":["a","b"]},"ns":{"NS":["1","2.50"]},"bs":{"BS":["AA==","AQ=="]},
            "m":{"M":{"inner":{"L":[{"S":"x"},{"N":"1"}]}}},"l":{"L":[{"NULL":true},{"BOOL":false}]},
            "nul":{"NULL":true},"t":{"BOOL":true}}"#;
        let text = record("INSERT", "NEW_IMAGE", data);
        let change = StreamRecord::parse(&text).unwrap().decode().unwrap();
        let Some(Image::Ddb(after)) = change.after else {
            panic!("no image")
        };
        assert_eq!(
            after["n"],
            A::N("12345678901234567890123456789012345.678".into())
        );
        assert_eq!(after["b"], A::B(vec![0, 1, 2]));
        assert_eq!(after["ss"], A::Ss(vec!["a".into(), "b".into()]));
        assert_eq!(after["ns"], A::Ns(vec!["1".into(), "2.50".into()]));
        assert_eq!(after["bs"], A::Bs(vec![vec![0], vec![1]]));
        assert_eq!(
            after["m"],
            A::M(
                [(
                    "inner".to_owned(),
                    A::L(vec![A::S("x".into()), A::N("1".into())])
                )]
                .into_iter()
                .collect()
            )
        );
        assert_eq!(after["l"], A::L(vec![A::Null(true), A::Bool(false)]));
        assert_eq!(after["nul"], A::Null(true));
        assert_eq!(after["t"], A::Bool(true));
        assert_eq!(change.route.op, Op::Insert);
        assert_eq!(change.route.table, "orders");
        assert_eq!(change.route.ts_ms, Some(1_795_520_000_000));
        assert!(change.before.is_none());
    }

    #[test]
    fn every_stream_view() {
        let img = r#""NewImage":{"pk":{"S":"a"},"v":{"N":"2"}},"OldImage":{"pk":{"S":"a"},"v":{"N":"1"}}"#;
        let cases = [
            ("NEW_AND_OLD_IMAGES", img.to_owned(), true, true),
            (
                "NEW_IMAGE",
                r#""NewImage":{"pk":{"S":"a"},"v":{"N":"2"}}"#.to_owned(),
                true,
                false,
            ),
            (
                "OLD_IMAGE",
                r#""OldImage":{"pk":{"S":"a"},"v":{"N":"1"}}"#.to_owned(),
                false,
                true,
            ),
            ("KEYS_ONLY", String::new(), false, false),
        ];
        for (view, images, has_new, has_old) in cases {
            let sep = if images.is_empty() { "" } else { "," };
            let text = record(
                "MODIFY",
                view,
                &format!(r#""Keys":{{"pk":{{"S":"a"}}}}{sep}{images}"#),
            );
            let c = StreamRecord::parse(&text).unwrap().decode().unwrap();
            assert_eq!(c.route.op, Op::Update, "{view}");
            assert_eq!(c.after.is_some(), has_new, "{view}");
            assert_eq!(c.before.is_some(), has_old, "{view}");
            assert!(c.key.is_some_and(|k| k.contains("pk")), "{view}");
        }
    }

    #[test]
    fn ttl_delete_is_a_remove_by_the_service_principal() {
        let ttl = r#"{"eventID":"1","eventName":"REMOVE","eventSourceARN":"arn:aws:dynamodb:r:1:table/t/stream/x","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},"dynamodb":{"SequenceNumber":"5","Keys":{"pk":{"S":"a"}},"OldImage":{"pk":{"S":"a"}}}}"#;
        let c = StreamRecord::parse(ttl).unwrap().decode().unwrap();
        assert!(c.ttl_delete);
        assert_eq!(c.route.op, Op::Delete);
        assert_eq!(c.route.ts_ms, None);
        let user = ttl.replace("dynamodb.amazonaws.com", "AIDAEXAMPLE");
        assert!(
            !StreamRecord::parse(&user)
                .unwrap()
                .decode()
                .unwrap()
                .ttl_delete
        );
        let insert = ttl.replace("REMOVE", "INSERT");
        assert!(
            !StreamRecord::parse(&insert)
                .unwrap()
                .decode()
                .unwrap()
                .ttl_delete
        );
    }

    #[test]
    fn invalid_base64_names_the_attribute() {
        let text = record(
            "INSERT",
            "NEW_IMAGE",
            r#""Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"},"blob":{"B":"not base64!"}}"#,
        );
        // In the new image the column is set aside, for a contract that reads it to refuse.
        let c = StreamRecord::parse(&text).unwrap().decode().unwrap();
        assert!(
            c.unreadable["blob"].contains("invalid base64 at `blob`"),
            "{:?}",
            c.unreadable
        );
        assert!(
            matches!(&c.after, Some(Image::Ddb(m)) if !m.contains_key("blob") && m.contains_key("pk"))
        );
        // In the key it cannot be: the row could not be named.
        let text = record(
            "INSERT",
            "NEW_IMAGE",
            r#""Keys":{"pk":{"B":"not base64!"}},"NewImage":{"pk":{"S":"a"}}"#,
        );
        let err = StreamRecord::parse(&text).unwrap().decode().unwrap_err();
        assert_eq!(err.code(), "invalid_base64");
        assert!(err.to_string().contains("dynamodb.Keys.pk"), "{err}");
    }

    #[test]
    fn lenient_shapes_other_libraries_emit() {
        let text = record(
            "INSERT",
            "NEW_IMAGE",
            r#""Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"},"ns":{"NS":[1,2,0.34]},"n":{"N":1},"gone":{"S":null},"big":{"N":12345678901234567890.5}}"#,
        );
        let c = StreamRecord::parse(&text).unwrap().decode().unwrap();
        let Some(Image::Ddb(after)) = c.after else {
            panic!()
        };
        assert_eq!(
            after["ns"],
            A::Ns(vec!["1".into(), "2".into(), "0.34".into()])
        );
        assert_eq!(after["n"], A::N("1".into()));
        assert_eq!(after["gone"], A::Null(true));
        assert_eq!(
            after["big"],
            A::N("12345678901234567890.5".into()),
            "the literal text, not an f64"
        );
    }

    #[test]
    fn nested_errors_name_their_path() {
        let text = record(
            "INSERT",
            "NEW_IMAGE",
            r#""Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"},"m":{"M":{"inner":{"L":[{"S":"x"},{"B":"%%%"}]}}}}"#,
        );
        let c = StreamRecord::parse(&text).unwrap().decode().unwrap();
        assert!(
            c.unreadable["m"].contains("m.inner[1]"),
            "{:?}",
            c.unreadable
        );
        for (bad, needle) in [
            (r#"{"X":"1"}"#, "unknown type key"),
            (r#"{"S":"a","N":"1"}"#, "exactly one type key"),
            (r#"{"N":true}"#, "`N` holds a boolean"),
            (r#"{"SS":[1]}"#, "a list of strings"),
            (r#"{}"#, "found 0"),
            (r#""text""#, "expected an attribute value"),
            (r#"{"M":{"a":{"M":{"b":{"Q":1}}}}}"#, "f.a.b"),
            (r#"{"S":"a\u00e9","N":"1","S":"b"}"#, "found 2"),
        ] {
            let raw = RawValue::from_string(bad.to_owned()).unwrap();
            let e = attribute(&raw, "f").unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn a_repeated_type_key_keeps_its_last_value_and_escaped_names_are_read() {
        let raw = RawValue::from_string(r#"{"S":"a","S":"b"}"#.to_owned()).unwrap();
        assert_eq!(attribute(&raw, "f").unwrap(), A::S("b".into()));
        let raw = RawValue::from_string(r#"{"\u0053":"c"}"#.to_owned()).unwrap();
        assert_eq!(attribute(&raw, "f").unwrap(), A::S("c".into()));
    }

    #[test]
    fn missing_sequence_number_is_missing_seq() {
        let text = r#"{"eventName":"INSERT","eventSourceARN":"arn:aws:dynamodb:r:1:table/t/stream/x","dynamodb":{"Keys":{"pk":{"S":"a"}}}}"#;
        let err = StreamRecord::parse(text).unwrap().route().unwrap_err();
        assert_eq!(
            err,
            DecodeError::MissingSeq {
                path: "dynamodb.SequenceNumber".into()
            }
        );
    }

    #[test]
    fn sci_notation_creation_time_is_exact() {
        let text = r#"{"eventName":"MODIFY","eventSourceARN":"arn:aws:dynamodb:r:1:table/t/stream/x","dynamodb":{"ApproximateCreationDateTime":1.635734407123456789E9,"SequenceNumber":"4421584500000000017450439092","Keys":{"Id":{"N":"101"}}}}"#;
        let r = StreamRecord::parse(text).unwrap().route().unwrap();
        assert_eq!(r.ts_ms, Some(1_635_734_407_123));
    }

    #[test]
    fn creation_time_in_every_unit_and_notation() {
        let at = |v: &str| {
            let text = format!(
                r#"{{"eventName":"INSERT","eventSourceARN":"{ARN}","dynamodb":{{"ApproximateCreationDateTime":{v},"SequenceNumber":"1","Keys":{{"pk":{{"S":"a"}}}}}}}}"#
            );
            StreamRecord::parse(&text).unwrap().route().unwrap().ts_ms
        };
        assert_eq!(at("1428537600"), Some(1_428_537_600_000), "integer seconds");
        assert_eq!(at("1693997155.0"), Some(1_693_997_155_000), "float seconds");
        assert_eq!(
            at("1795588531.458"),
            Some(1_795_588_531_458),
            "seconds with milliseconds"
        );
        assert_eq!(
            at("1.635734407123456789E9"),
            Some(1_635_734_407_123),
            "scientific notation"
        );
        assert_eq!(at("1731924555370"), Some(1_731_924_555_370), "milliseconds");
        assert_eq!(
            at("1720740233012995"),
            Some(1_720_740_233_012),
            "microseconds"
        );
        assert_eq!(at("null"), None, "null is absent");
    }

    #[test]
    fn user_identity_absent_null_or_not_the_service_is_no_ttl_delete() {
        let base = r#"{"eventName":"REMOVE","eventSourceARN":"arn:aws:dynamodb:r:1:table/t/stream/x","dynamodb":{"SequenceNumber":"5","Keys":{"pk":{"S":"a"}}}"#;
        for identity in [
            "",
            r#","userIdentity":null"#,
            r#","userIdentity":{"type":"Service","principalId":"other.amazonaws.com"}"#,
        ] {
            let text = format!("{base}{identity}}}");
            assert!(
                !StreamRecord::parse(&text).unwrap().is_ttl_delete(),
                "{identity}"
            );
        }
    }

    #[test]
    fn table_names_come_from_the_stream_arn() {
        assert_eq!(table_from_stream_arn(ARN), Some("orders"));
        assert_eq!(table_from_stream_arn("stream-ARN"), None);
        assert_eq!(
            table_from_stream_arn("arn:aws:dynamodb:r:1:table//stream/x"),
            None
        );
    }

    mod one_pass {
        use proptest::prelude::*;

        use super::super::{careful_image_lenient, fast};
        use crate::change::Image;
        use serde_json::value::RawValue;

        /// Attribute values as producers write them, and as they get them wrong.
        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                "[a-z\\\\\"é]{0,6}".prop_map(|s| format!(r#"{{"S":{}}}"#, serde_json::json!(s))),
                Just(r#"{"S":null}"#.to_owned()),
                Just(r#"{"S":5}"#.to_owned()),
                "-?[0-9]{1,30}(\\.[0-9]{1,5})?".prop_map(|n| format!(r#"{{"N":"{n}"}}"#)),
                "-?(0|[1-9][0-9]{0,4})(\\.[0-9]{1,3})?(e[0-9])?"
                    .prop_map(|n| format!(r#"{{"N":{n}}}"#)),
                // Escaped digits, and text that is no number.
                Just(r#"{"N":"1\u0030.5"}"#.to_owned()),
                Just(r#"{"N":"\"7"}"#.to_owned()),
                Just(r#"{"N":"x"}"#.to_owned()),
                Just(r#"{"N":true}"#.to_owned()),
                Just(r#"{"N":null}"#.to_owned()),
                prop_oneof![Just("AAEC"), Just("!!"), Just(""), Just("AA")]
                    .prop_map(|b| format!(r#"{{"B":"{b}"}}"#)),
                prop_oneof![Just("true"), Just("false"), Just("\"x\""), Just("1")]
                    .prop_map(|b| format!(r#"{{"BOOL":{b}}}"#)),
                prop_oneof![Just("true"), Just("false"), Just("5"), Just("null")]
                    .prop_map(|b| format!(r#"{{"NULL":{b}}}"#)),
                Just(r#"{"SS":["a","b\u0041"]}"#.to_owned()),
                Just(r#"{"SS":["a",1]}"#.to_owned()),
                Just(r#"{"NS":["1",2.5,-3]}"#.to_owned()),
                Just(r#"{"NS":["1",false]}"#.to_owned()),
                Just(r#"{"BS":["AA==","AQ=="]}"#.to_owned()),
                Just(r#"{"BS":["AA==","?"]}"#.to_owned()),
                Just(r#"{"X":1}"#.to_owned()),
                Just("{}".to_owned()),
                Just(r#"{"S":"a","S":"b"}"#.to_owned()),
                Just(r#"{"S":"a","N":"1"}"#.to_owned()),
                Just(r#""plain""#.to_owned()),
                Just("[1]".to_owned()),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    prop::collection::vec((name(), inner.clone()), 0..4).prop_map(|m| format!(
                        r#"{{"M":{{{}}}}}"#,
                        m.iter()
                            .map(|(k, v)| format!("{k}:{v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )),
                    prop::collection::vec(inner, 0..4)
                        .prop_map(|l| format!(r#"{{"L":[{}]}}"#, l.join(","))),
                ]
            })
        }

        /// Attribute names, repeated and escaped ones among them.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(r#""a""#.to_owned()),
                Just(r#""b""#.to_owned()),
                Just(r#""\u0061""#.to_owned()),
                Just(r#""é \"q\"""#.to_owned()),
                "[a-z]{1,8}".prop_map(|s| format!("\"{s}\"")),
            ]
        }

        /// A stream record around the generated images, well formed or not in its own ways.
        fn record() -> impl Strategy<Value = String> {
            let image = prop::collection::vec((name(), value()), 0..4)
                .prop_map(|attrs| {
                    format!(
                        "{{{}}}",
                        attrs
                            .iter()
                            .map(|(k, v)| format!("{k}:{v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
                .boxed();
            let keys = prop_oneof![
                Just(r#"{"a":{"S":"1"}}"#.to_owned()),
                Just("{}".to_owned()),
                image.clone(),
            ];
            let maybe = |s: BoxedStrategy<String>, field: &'static str| {
                prop_oneof![
                    Just(String::new()),
                    Just(format!(r#","{field}":null"#)),
                    s.prop_map(move |v| format!(r#","{field}":{v}"#)),
                ]
            };
            let same_key = Just(r#"{"a":{"S":"1"},"b":{"N":"2"}}"#.to_owned()).boxed();
            let new_image = prop_oneof![same_key.clone(), image.clone()].boxed();
            let old_image = prop_oneof![same_key, image].boxed();
            (
                prop_oneof![Just("INSERT"), Just("MODIFY"), Just("REMOVE"), Just("OTHER")],
                keys,
                maybe(new_image, "NewImage"),
                maybe(old_image, "OldImage"),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(event, keys, new, old, ttl, has_data)| {
                    let identity = if ttl {
                        r#","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"}"#
                    } else {
                        ""
                    };
                    let data = if has_data {
                        format!(
                            r#","dynamodb":{{"ApproximateCreationDateTime":1795520000,"Keys":{keys}{new}{old},"SequenceNumber":"100","StreamViewType":"NEW_AND_OLD_IMAGES"}}"#
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        r#"{{"eventID":"e","eventName":"{event}","eventSourceARN":"arn:aws:dynamodb:r:1:table/t/stream/x"{identity}{data}}}"#
                    )
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// A record read in one pass becomes the change the careful reading makes of it,
            /// and every record without an unreadable part reads in one pass.
            #[test]
            fn a_record_read_in_one_pass_is_the_careful_readings_change(text in record()) {
                let careful = super::super::StreamRecord::parse(&text).and_then(|r| r.decode());
                match super::super::StreamRecord::parse_decoded(&text) {
                    Some(record) => match (record.decode(), careful) {
                        (Ok(fast), Ok(careful)) => {
                            let ddb = |i: &Option<Image>| match i {
                                Some(Image::Ddb(m)) => Some(m.clone()),
                                _ => None,
                            };
                            prop_assert_eq!(&fast.route, &careful.route);
                            prop_assert_eq!(fast.ttl_delete, careful.ttl_delete);
                            prop_assert_eq!(ddb(&fast.key), ddb(&careful.key));
                            prop_assert_eq!(ddb(&fast.before), ddb(&careful.before));
                            prop_assert_eq!(ddb(&fast.after), ddb(&careful.after));
                            prop_assert_eq!(&fast.unreadable, &careful.unreadable);
                        }
                        (fast, careful) => prop_assert_eq!(
                            format!("{:?}", fast.err()),
                            format!("{:?}", careful.err()),
                            "{}",
                            text
                        ),
                    },
                    None => {
                        // Only a record with an image the one-pass reader refuses may need
                        // the careful reading.
                        let view = super::super::StreamRecord::parse(&text).unwrap();
                        let data = view.dynamodb.as_ref().unwrap();
                        prop_assert!(
                            [data.keys, data.new_image, data.old_image]
                                .into_iter()
                                .flatten()
                                .any(|raw| fast::image(raw).is_none()),
                            "{text}: read carefully but not in one pass: {careful:?}"
                        );
                    }
                }
            }

            /// The one-pass reader gives the careful reader's image whenever it reads one, and
            /// reads every image the careful reader finds nothing wrong with, but for a type
            /// key written twice.
            #[test]
            fn the_one_pass_reader_agrees_with_the_careful_one(
                attrs in prop::collection::vec((name(), value()), 0..6),
                spaced in any::<bool>(),
            ) {
                let sep = if spaced { ", " } else { "," };
                let text = format!(
                    "{{{}}}",
                    attrs.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(sep)
                );
                let raw = RawValue::from_string(text.clone()).unwrap();
                let careful = careful_image_lenient(&raw).unwrap();
                match fast::image(&raw) {
                    Some(image) => {
                        prop_assert!(careful.1.is_empty(), "{text}: {:?}", careful.1);
                        prop_assert_eq!(image, careful.0, "{}", text);
                    }
                    None => prop_assert!(
                        !careful.1.is_empty() || text.contains(r#""S":"a","S":"b""#),
                        "{text}: the careful reader found nothing wrong"
                    ),
                }
            }
        }
    }
}
