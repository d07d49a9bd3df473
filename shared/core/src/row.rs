//! Typed rows (DESIGN §3.5): a change typed by a contract, with its bookkeeping attributes,
//! and the ordering guard that makes writes idempotent.
//!
//! Every typed item carries `_seq`, `_op`, `_source_ts` (epoch ms), `_contract_version` and
//! `_raw` (the raw line it came from). A delete becomes a tombstone (`_deleted = true` and an
//! `_expires_at` TTL in epoch seconds) so an older change that arrives late cannot bring the row
//! back. A write goes through only if [`supersedes`] holds, which the DynamoDB adapter expresses
//! as a condition expression.

use std::collections::{BTreeMap, HashMap};

use serde_dynamo::AttributeValue;
use serde_json::value::RawValue;

use crate::change::{Change, Image, Op};
use crate::contract::{Contract, Field, FieldType, UnknownFields};
use crate::logical::Hint;
use crate::seq::Seq;
use crate::typing::{canonical_decimal, coerce_hinted, SrcRef, TypeError};

/// The attribute holding the ordering token.
pub const SEQ_ATTR: &str = "_seq";
/// The attribute holding the operation (`insert`, `update`, `snapshot`, `delete`).
pub const OP_ATTR: &str = "_op";
/// The attribute holding the source commit time, epoch milliseconds.
pub const SOURCE_TS_ATTR: &str = "_source_ts";
/// The attribute holding the contract version the row was typed with.
pub const VERSION_ATTR: &str = "_contract_version";
/// The attribute holding the raw line's location, `s3://bucket/key#L<n>`.
pub const RAW_ATTR: &str = "_raw";
/// The tombstone marker.
pub const DELETED_ATTR: &str = "_deleted";
/// The TTL attribute of tombstones, epoch seconds.
pub const EXPIRES_ATTR: &str = "_expires_at";
/// Where `unknown_fields: keep` stores the source columns no field reads.
pub const EXTRA_ATTR: &str = "_extra";

/// What the row's provenance adds to it.
#[derive(Debug, Clone)]
pub struct RowMeta {
    /// `s3://bucket/key#L<n>` or another reference to the raw line.
    pub raw_ref: String,
    /// The source commit time (or arrival time), epoch ms.
    pub ts_ms: i64,
    /// When a tombstone expires, epoch seconds.
    pub tombstone_expires_at: i64,
}

/// A row ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRow {
    /// The contract (typed table) name.
    pub table: String,
    /// The key attributes, partition key first.
    pub key: Vec<(String, AttributeValue)>,
    /// The whole item: key, fields and bookkeeping attributes.
    pub item: HashMap<String, AttributeValue>,
    /// The ordering token.
    pub seq: Seq,
    /// The contract version.
    pub version: u64,
    /// Whether this is a tombstone.
    pub tombstone: bool,
    /// Fields the change did not carry (Debezium's placeholder for an unchanged TOAST column):
    /// the write keeps their stored values instead of replacing the whole item.
    pub unchanged: Vec<String>,
    /// Fields the change has no value for (null or absent, and no default). A whole-row write
    /// leaves them out; a write that keeps unchanged fields removes these explicitly.
    pub missing: Vec<String>,
    /// Fields whose value (or absence) was taken from an earlier change of the key, with that
    /// change's `seq`: the write records it as `_vseq:<field>` (see [`VSEQ_PREFIX`]).
    pub filled: Vec<(String, Seq)>,
}

impl TypedRow {
    /// A string that identifies the row's key within its table, for coalescing.
    pub fn key_id(&self) -> String {
        let mut s = String::new();
        for (name, value) in &self.key {
            s.push_str(name);
            s.push('=');
            let mut json = String::new();
            let _ = crate::typing::write_json(SrcRef::Ddb(value), &mut json);
            s.push_str(&json);
            s.push('\u{1f}');
        }
        s
    }
}

/// Why a change does not fit its contract. Names the field and never holds the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A value does not fit its field's type.
    #[error("field {field} (from `{from}`): {error}")]
    Type {
        /// The field.
        field: String,
        /// Its source path.
        from: String,
        /// The type error, with the path and the kind of value found.
        error: Box<TypeError>,
    },
    /// A required field has no value.
    #[error("field {field} (from `{from}`): required, but the change has no value for it")]
    Missing {
        /// The field.
        field: String,
        /// Its source path.
        from: String,
    },
    /// A key field is an empty string, which DynamoDB cannot store as a key.
    #[error("field {field}: key attributes cannot be empty strings")]
    EmptyKey {
        /// The field.
        field: String,
    },
    /// A key value of another kind than the key field's type (a number for a string key, or
    /// a string for a number key). Keys are never converted between kinds: a key that arrives
    /// as `N` from one source and as `S` from another would split or merge rows.
    #[error("key field {field} (from `{from}`) is {expected}, but this change has {found}; keys are not converted between strings and numbers, because sources that disagree on a key's kind would split or merge rows: make the sources agree, or give each its own contract")]
    KeyKind {
        /// The field.
        field: String,
        /// Its source path.
        from: String,
        /// The field's type.
        expected: String,
        /// The kind of value found.
        found: &'static str,
    },
    /// A column the field reads is present in the source but cannot be read.
    #[error("field {field} (from `{from}`): the source value cannot be read: {detail}")]
    Unreadable {
        /// The field, or the column for `unknown_fields: keep`.
        field: String,
        /// Its source path.
        from: String,
        /// Why the value cannot be read.
        detail: String,
    },
    /// The change has no image to type.
    #[error("the {op} carries no {image}: {hint}")]
    NoImage {
        /// The operation.
        op: &'static str,
        /// The image that is missing.
        image: &'static str,
        /// What to change.
        hint: &'static str,
    },
}

impl Violation {
    /// The contract field the violation is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Type { field, .. }
            | Self::Missing { field, .. }
            | Self::EmptyKey { field }
            | Self::KeyKind { field, .. }
            | Self::Unreadable { field, .. } => Some(field),
            Self::NoImage { .. } => None,
        }
    }
}

/// Debezium's placeholder for a Postgres TOAST column that did not change and was not sent
/// (REPLICA IDENTITY DEFAULT). It is never written.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// Whether a value is Debezium's unavailable-value placeholder: as text, as the base64 of that
/// text (binary columns), or as a list holding only the placeholder (array columns).
fn is_unavailable(value: SrcRef<'_>) -> bool {
    const TEXT: &str = "\"__debezium_unavailable_value\"";
    const BASE64: &str = "\"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\"";
    const LIST: &str = "[\"__debezium_unavailable_value\"]";
    match value {
        SrcRef::Json(raw) => matches!(raw.get(), TEXT | BASE64 | LIST),
        _ => false,
    }
}

/// What a field's source holds.
enum Found {
    /// A typed value.
    Value(AttributeValue),
    /// Null or absent.
    Missing,
    /// Not sent: the stored value stays.
    Unchanged,
}

fn lookup<'a>(image: &'a Image, path: &[String]) -> Option<SrcRef<'a>> {
    let (first, rest) = path.split_first()?;
    let mut value = match image {
        Image::Ddb(m) => SrcRef::Ddb(m.get(first)?),
        Image::Json(m) => SrcRef::Json(m.get(first)?),
    };
    for segment in rest {
        value = value.member(segment)?;
    }
    Some(value)
}

/// Types one field from the first image that has a value for it, reading logical values as the
/// event's schema (or else the contract) says.
fn type_field(
    field: &Field,
    images: &[Option<&Image>],
    change: &Change,
    is_key: bool,
) -> Result<Found, Violation> {
    let hint = Hint {
        logical: match field.from.as_slice() {
            [column] => change.logical.get(column).copied(),
            _ => None,
        },
        unit: field.unit,
        scale: field.scale,
    };
    for image in images.iter().flatten() {
        if let Some(value) = lookup(image, &field.from) {
            if value.is_null() {
                continue;
            }
            if is_unavailable(value) {
                return Ok(Found::Unchanged);
            }
            // A value the event's schema (or the contract's scale) declares is typed by that
            // declaration: a Connect Decimal key arrives as base64 text but is a number.
            if is_key && hint.logical.is_none() && hint.scale.is_none() {
                let found = value.kind();
                let other_kind = match field.ty {
                    FieldType::String => found == "a number",
                    FieldType::Int | FieldType::Decimal => found == "a string",
                    _ => false,
                };
                if other_kind {
                    return Err(Violation::KeyKind {
                        field: field.name.clone(),
                        from: field.from_path(),
                        expected: field.ty.to_string(),
                        found,
                    });
                }
            }
            return coerce_hinted(value, &field.ty, &hint, &field.name)
                .map(|v| v.map_or(Found::Missing, Found::Value))
                .map_err(|error| Violation::Type {
                    field: field.name.clone(),
                    from: field.from_path(),
                    error: Box::new(error),
                });
        }
    }
    Ok(Found::Missing)
}

/// Applies a contract to a change. `Ok(None)` for changes that touch no row (truncate, control).
pub fn type_change(
    change: &Change,
    contract: &Contract,
    meta: &RowMeta,
) -> Result<Option<TypedRow>, Violation> {
    let op = change.route.op;
    let tombstone = match op {
        Op::Insert | Op::Update | Op::Snapshot => false,
        Op::Delete => true,
        Op::Truncate | Op::Control => return Ok(None),
    };
    // Where values come from: the new image for upserts, the key (then the old image) for deletes.
    let primary = if tombstone {
        change.key.as_ref().or(change.before.as_ref())
    } else {
        change.after.as_ref()
    };
    let Some(primary) = primary else {
        return Err(if tombstone {
            Violation::NoImage {
                op: "delete",
                image: "key or old image",
                hint: "the row's key cannot be recovered (Debezium needs REPLICA IDENTITY with the key)",
            }
        } else {
            Violation::NoImage {
                op: op.as_str(),
                image: "new image",
                hint: "a DynamoDB stream needs the NEW_IMAGE or NEW_AND_OLD_IMAGES view",
            }
        });
    };
    let fallback = if tombstone {
        change.before.as_ref()
    } else {
        change.key.as_ref()
    };
    let images = [Some(primary), fallback];

    let mut item = HashMap::new();
    let mut unchanged = Vec::new();
    let mut missing = Vec::new();
    let mut key = Vec::with_capacity(contract.primary_key.len());
    for field in contract.key_fields() {
        let value = match type_field(field, &images, change, true)? {
            Found::Value(v) => v,
            Found::Missing | Found::Unchanged => {
                return Err(Violation::Missing {
                    field: field.name.clone(),
                    from: field.from_path(),
                })
            }
        };
        if matches!(&value, AttributeValue::S(s) if s.is_empty()) {
            return Err(Violation::EmptyKey {
                field: field.name.clone(),
            });
        }
        key.push((field.name.clone(), value.clone()));
        item.insert(field.name.clone(), value);
    }
    if !tombstone {
        for (column, detail) in &change.unreadable {
            let reader = contract
                .fields
                .iter()
                .find(|f| f.from.first() == Some(column));
            if reader.is_some() || contract.unknown_fields == UnknownFields::Keep {
                return Err(Violation::Unreadable {
                    field: reader.map_or_else(|| column.clone(), |f| f.name.clone()),
                    from: reader.map_or_else(|| column.clone(), Field::from_path),
                    detail: detail.clone(),
                });
            }
        }
        for (i, field) in contract.fields.iter().enumerate() {
            if contract.primary_key.contains(&i) {
                continue;
            }
            match type_field(field, &images, change, false)? {
                Found::Value(v) => {
                    item.insert(field.name.clone(), v);
                }
                Found::Unchanged => unchanged.push(field.name.clone()),
                Found::Missing if field.required => {
                    return Err(Violation::Missing {
                        field: field.name.clone(),
                        from: field.from_path(),
                    })
                }
                Found::Missing => match &field.default {
                    Some(d) => {
                        item.insert(field.name.clone(), d.clone());
                    }
                    None => missing.push(field.name.clone()),
                },
            }
        }
        if contract.unknown_fields == UnknownFields::Keep {
            let extra = extra_columns(primary, contract)?;
            if !extra.is_empty() {
                item.insert(EXTRA_ATTR.to_owned(), AttributeValue::M(extra));
            }
            // Unknown columns the change did not send keep their stored values too.
            if let Image::Json(columns) = primary {
                for (name, value) in columns {
                    let read = contract
                        .fields
                        .iter()
                        .any(|f| f.from.first().is_some_and(|s| s == name));
                    if !read && is_unavailable(SrcRef::Json(value)) {
                        unchanged.push(extra_column(name));
                    }
                }
            }
        }
    }
    bookkeeping(&mut item, change, contract, meta, tombstone);
    Ok(Some(TypedRow {
        table: contract.name.clone(),
        key,
        item,
        seq: change.route.seq.clone(),
        version: contract.version,
        tombstone,
        unchanged,
        missing,
        filled: Vec::new(),
    }))
}

/// Adds the bookkeeping attributes: `_seq`, `_op`, `_source_ts`, `_contract_version`, `_raw`,
/// and for a tombstone `_deleted` and `_expires_at`.
fn bookkeeping(
    item: &mut HashMap<String, AttributeValue>,
    change: &Change,
    contract: &Contract,
    meta: &RowMeta,
    tombstone: bool,
) {
    let op = if tombstone {
        Op::Delete
    } else {
        change.route.op
    };
    item.insert(
        SEQ_ATTR.into(),
        AttributeValue::S(change.route.seq.as_str().to_owned()),
    );
    item.insert(OP_ATTR.into(), AttributeValue::S(op.as_str().to_owned()));
    item.insert(
        SOURCE_TS_ATTR.into(),
        AttributeValue::N(meta.ts_ms.to_string()),
    );
    item.insert(
        VERSION_ATTR.into(),
        AttributeValue::N(contract.version.to_string()),
    );
    item.insert(RAW_ATTR.into(), AttributeValue::S(meta.raw_ref.clone()));
    if tombstone {
        item.insert(DELETED_ATTR.into(), AttributeValue::Bool(true));
        item.insert(
            EXPIRES_ATTR.into(),
            AttributeValue::N(meta.tombstone_expires_at.to_string()),
        );
    }
}

/// For an update that changes the row's key (a DMS or application update whose old image has
/// another key), a tombstone for the old key, at the same `seq`. `None` when the key is unchanged
/// or the old image does not hold the whole old key.
pub fn old_key_tombstone(
    change: &Change,
    contract: &Contract,
    meta: &RowMeta,
    new_row: &TypedRow,
) -> Option<TypedRow> {
    if change.route.op != Op::Update {
        return None;
    }
    let before = change.before.as_ref()?;
    let mut key = Vec::with_capacity(new_row.key.len());
    for field in contract.key_fields() {
        match type_field(field, &[Some(before)], change, true) {
            Ok(Found::Value(value)) => key.push((field.name.clone(), value)),
            _ => return None,
        }
    }
    if key == new_row.key {
        return None;
    }
    let mut item: HashMap<String, AttributeValue> = key.iter().cloned().collect();
    bookkeeping(&mut item, change, contract, meta, true);
    Some(TypedRow {
        table: contract.name.clone(),
        key,
        item,
        seq: change.route.seq.clone(),
        version: contract.version,
        tombstone: true,
        unchanged: Vec::new(),
        missing: Vec::new(),
        filled: Vec::new(),
    })
}

/// The source columns that no field reads, as they came.
fn extra_columns(
    image: &Image,
    contract: &Contract,
) -> Result<HashMap<String, AttributeValue>, Violation> {
    let read = |name: &str| {
        contract
            .fields
            .iter()
            .any(|f| f.from.first().is_some_and(|s| s == name))
    };
    let unnamed = || Violation::Unreadable {
        field: EXTRA_ATTR.to_owned(),
        from: String::new(),
        detail: "a column with an empty name cannot be kept under `_extra`: DynamoDB attribute \
                 names are at least one character; name it at the source, or set \
                 `unknown_fields: ignore`"
            .into(),
    };
    match image {
        Image::Ddb(m) => m
            .iter()
            .filter(|(k, _)| !read(k))
            .map(|(k, v)| {
                if k.is_empty() {
                    return Err(unnamed());
                }
                Ok((k.clone(), storable(v)))
            })
            .collect(),
        Image::Json(m) => m
            .iter()
            .filter(|(k, v)| !read(k) && !is_unavailable(SrcRef::Json(v)))
            .map(|(k, v)| {
                if k.is_empty() {
                    return Err(unnamed());
                }
                Ok((k.clone(), json_to_attribute(v)))
            })
            .collect(),
    }
}

/// A DynamoDB value as DynamoDB can store it: a map with an empty attribute name anywhere in it
/// (which a hand-made stream record can hold, and DynamoDB refuses) keeps its JSON text as `S`.
fn storable(v: &AttributeValue) -> AttributeValue {
    fn has_unnamed(v: &AttributeValue) -> bool {
        match v {
            AttributeValue::M(m) => m.iter().any(|(k, v)| k.is_empty() || has_unnamed(v)),
            AttributeValue::L(l) => l.iter().any(has_unnamed),
            _ => false,
        }
    }
    if !has_unnamed(v) {
        return v.clone();
    }
    let mut text = String::new();
    match crate::typing::write_json(SrcRef::Ddb(v), &mut text) {
        Ok(()) => AttributeValue::S(text),
        Err(_) => v.clone(),
    }
}

/// A JSON value as a DynamoDB value: what DynamoDB can hold becomes `N`, `M`, `L`…; what it
/// cannot keeps its literal JSON text as `S`, so nothing is rounded or lost: a number of more
/// than 38 significant digits (or out of DynamoDB's range), and an object with an empty key
/// (DynamoDB attribute names are at least one character).
pub fn json_to_attribute(raw: &RawValue) -> AttributeValue {
    let text = raw.get();
    let literal = || AttributeValue::S(text.to_owned());
    match text.as_bytes().first() {
        Some(b'n') => AttributeValue::Null(true),
        Some(b't') => AttributeValue::Bool(true),
        Some(b'f') => AttributeValue::Bool(false),
        Some(b'"') => serde_json::from_str(text).map_or_else(|_| literal(), AttributeValue::S),
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(text).map_or_else(
            |_| literal(),
            |v| AttributeValue::L(v.into_iter().map(json_to_attribute).collect()),
        ),
        Some(b'{') => match serde_json::from_str::<BTreeMap<String, &RawValue>>(text) {
            Ok(m) if m.keys().any(String::is_empty) => literal(),
            Ok(m) => AttributeValue::M(
                m.into_iter()
                    .map(|(k, v)| (k, json_to_attribute(v)))
                    .collect(),
            ),
            Err(_) => literal(),
        },
        _ => match canonical_decimal(text) {
            Ok(n) => AttributeValue::N(n),
            Err(_) => literal(),
        },
    }
}

/// The ordering guard: whether an incoming write replaces what is stored.
///
/// It replaces a missing row, a row with a lower `seq`, or a row with the same `seq` typed under
/// an older contract version. Anything else is stale or a duplicate.
pub fn supersedes(stored: Option<(&Seq, u64)>, incoming_seq: &Seq, incoming_version: u64) -> bool {
    match stored {
        None => true,
        Some((seq, version)) => {
            seq < incoming_seq || (seq == incoming_seq && version < incoming_version)
        }
    }
}

/// Keeps, for each (table, key), only the row with the highest `seq`; a later row wins a tie.
/// Returns the winners in first-seen order and how many rows they superseded.
///
/// A winner that left fields unchanged (Debezium's unavailable TOAST values) takes them from the
/// newest earlier change of its key that has them, as the stored row would have; fields an
/// earlier full image had as null become known-missing.
pub fn coalesce(rows: impl IntoIterator<Item = TypedRow>) -> (Vec<TypedRow>, usize) {
    let mut groups: Vec<Vec<TypedRow>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut superseded = 0;
    for row in rows {
        let id = (row.table.clone(), row.key_id());
        match index.get(&id) {
            None => {
                index.insert(id, groups.len());
                groups.push(vec![row]);
            }
            Some(&i) => {
                superseded += 1;
                groups[i].push(row);
            }
        }
    }
    let winners = groups
        .into_iter()
        .filter_map(|group| newest_of(group.into_iter().map(|r| (r, ())).collect()))
        .map(|(row, ())| row)
        .collect();
    (winners, superseded)
}

/// The newest of several rows of one key, each with something attached (such as its commit
/// time): the highest `seq`, a later one winning a tie, with the fields it left unchanged filled
/// from the newest earlier row that has them. `None` for no rows.
pub fn newest_of<T>(mut group: Vec<(TypedRow, T)>) -> Option<(TypedRow, T)> {
    // Stable: among equal `seq`s the later row stays later, and so wins.
    group.sort_by(|a, b| a.0.seq.cmp(&b.0.seq));
    group
        .into_iter()
        .reduce(|(prev, _), (next, attached)| (fill_unchanged(prev, next), attached))
}

/// `next` (the newer change) with the fields it left unchanged filled from `prev`, recording
/// where each value came from.
fn fill_unchanged(prev: TypedRow, mut next: TypedRow) -> TypedRow {
    let unchanged = std::mem::take(&mut next.unchanged);
    for field in unchanged {
        if let Some(column) = as_extra_column(&field) {
            if prev.unchanged.contains(&field) {
                next.unchanged.push(field);
            } else if !prev.tombstone {
                set_extra(&mut next.item, column, extra_of(&prev.item, column));
            }
            continue;
        }
        if prev.tombstone {
            // Deleted since: nothing to keep.
            next.missing.push(field.clone());
            next.filled.push((field, prev.seq.clone()));
            continue;
        }
        if prev.unchanged.contains(&field) {
            // The earlier change did not carry it either: still unknown.
            next.unchanged.push(field);
            continue;
        }
        let from = prev
            .filled
            .iter()
            .find(|(f, _)| *f == field)
            .map_or_else(|| prev.seq.clone(), |(_, s)| s.clone());
        match prev.item.get(&field) {
            Some(v) => {
                next.item.insert(field.clone(), v.clone());
            }
            None => next.missing.push(field.clone()),
        }
        next.filled.push((field, from));
    }
    next
}

/// Prefix of the attributes that record, for a field whose stored value did not come from the
/// row's own change, the `seq` of the change it came from (`_vseq:bio`). Only rows written by a
/// change that left a field unchanged (Debezium's TOAST placeholder) have them.
///
/// They make out-of-order delivery converge: when an older change arrives after a newer one that
/// left a field unchanged, the older change is stale for the row, but it still carries the
/// field, so it fills the field if it is newer than the stored value's `_vseq` ([`fills`]).
pub const VSEQ_PREFIX: &str = "_vseq:";

/// How [`TypedRow::unchanged`] names a column of `_extra` (`unknown_fields: keep`).
fn extra_column(name: &str) -> String {
    format!("{EXTRA_ATTR}.{name}")
}

/// The `_extra` column an [`TypedRow::unchanged`] entry names, if it names one.
fn as_extra_column(entry: &str) -> Option<&str> {
    entry.strip_prefix(EXTRA_ATTR)?.strip_prefix('.')
}

/// Sets (or, for `None`, leaves out) one column of an item's `_extra` map.
fn set_extra(item: &mut Item, column: &str, value: Option<AttributeValue>) {
    let Some(value) = value else { return };
    let entry = item
        .entry(EXTRA_ATTR.to_owned())
        .or_insert_with(|| AttributeValue::M(HashMap::new()));
    if let AttributeValue::M(m) = entry {
        m.insert(column.to_owned(), value);
    }
}

fn extra_of(item: &Item, column: &str) -> Option<AttributeValue> {
    match item.get(EXTRA_ATTR) {
        Some(AttributeValue::M(m)) => m.get(column).cloned(),
        _ => None,
    }
}

/// A typed item, attribute by attribute.
pub type Item = HashMap<String, AttributeValue>;

/// The `_vseq:` attribute of a field.
pub fn vseq_attr(field: &str) -> String {
    format!("{VSEQ_PREFIX}{field}")
}

impl TypedRow {
    /// Whether some field's value is not this change's own: left unchanged (Debezium's TOAST
    /// placeholder) or taken from an earlier change. Such a row is merged over the stored item
    /// ([`merge_partial`]) rather than replacing it.
    pub fn is_partial(&self) -> bool {
        !self.unchanged.is_empty() || !self.filled.is_empty()
    }

    /// The item a whole-row write stores: the row's attributes and the `_vseq:` of the fields it
    /// took from earlier changes.
    pub fn write_item(&self) -> Item {
        let mut item = self.item.clone();
        for (field, seq) in &self.filled {
            item.insert(vseq_attr(field), AttributeValue::S(seq.as_str().to_owned()));
        }
        item
    }
}

fn str_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// What a conditional write of a typed row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The row was written.
    Written,
    /// The stored row already is this very change (the same raw line, `seq` and contract
    /// version): an earlier write of it whose acknowledgement was lost and was sent again, or
    /// the same raw object processed again. Nothing changed.
    AlreadyWritten,
    /// A newer change (a higher `seq`, or the same `seq` under a newer or equal contract
    /// version, from another line) is stored. Nothing changed but the fills of unchanged
    /// fields.
    Stale,
}

/// Whether `stored` was written from this very row: the same raw line (`_raw`), `seq` and
/// contract version.
pub fn is_stored(stored: &Item, row: &TypedRow) -> bool {
    let raw = match row.item.get(RAW_ATTR) {
        Some(AttributeValue::S(r)) => r.as_str(),
        _ => return false,
    };
    str_of(stored, RAW_ATTR) == Some(raw)
        && stored_guard(stored).is_some_and(|(seq, v)| seq == row.seq && v == row.version)
}

/// The effect of writing `row` over the stored item in `slot` (`None`: no row), as the DynamoDB
/// adapter's conditional writes have it: a row that supersedes the stored one replaces it
/// (merged over it when partial); a stale row fills what it can. For in-memory stores and
/// tests.
pub fn apply_write(slot: &mut Option<Item>, row: &TypedRow) -> WriteOutcome {
    let guard = slot.as_ref().and_then(stored_guard);
    if supersedes(guard.as_ref().map(|(s, v)| (s, *v)), &row.seq, row.version) {
        *slot = Some(if row.is_partial() {
            merge_partial(slot.as_ref(), row)
        } else {
            row.write_item()
        });
        return WriteOutcome::Written;
    }
    let Some(stored) = slot else {
        return WriteOutcome::Stale;
    };
    // The same line may come again with more fills (coalesced with other changes of its key in
    // another delivery): fills apply whether or not the stored row is this one.
    let outcome = if is_stored(stored, row) {
        WriteOutcome::AlreadyWritten
    } else {
        WriteOutcome::Stale
    };
    for fill in fills(stored, row) {
        apply_fill(stored, &fill);
    }
    outcome
}

/// A stored item's `seq` and contract version, for [`supersedes`]. `None` when it has none.
pub fn stored_guard(item: &Item) -> Option<(Seq, u64)> {
    let seq = str_of(item, SEQ_ATTR)?;
    let version = match item.get(VERSION_ATTR) {
        Some(AttributeValue::N(n)) => n.parse().ok()?,
        _ => return None,
    };
    Some((Seq::from_normalised(seq.to_owned()), version))
}

/// The item stored by a partial row ([`TypedRow::is_partial`]), written over `stored` (the
/// current item, if any, which the row supersedes).
///
/// The row's attributes replace the stored ones; its missing fields, the stored tombstone marks,
/// `_extra` and `_vseq:` attributes are removed. Then each field whose value is not the row's
/// own takes the newer of two: the stored value, as of the stored `_vseq:` (else the stored
/// row's `seq`), and the row's value, as of the change it was filled from (an unchanged field
/// has none). A `_vseq:` records which change the value kept came from (`""` when none did).
pub fn merge_partial(stored: Option<&Item>, row: &TypedRow) -> Item {
    let mut item = stored.cloned().unwrap_or_default();
    let stored_seq = stored.and_then(|s| str_of(s, SEQ_ATTR));
    let stored_value = |field: &str| {
        let s = stored?;
        let from = str_of(s, &vseq_attr(field)).or(stored_seq)?;
        Some((from.to_owned(), s.get(field).cloned()))
    };
    let mut take: Vec<(String, String, Option<AttributeValue>)> = Vec::new();
    let mut extra: Vec<(&str, Option<AttributeValue>)> = Vec::new();
    for field in &row.unchanged {
        if let Some(column) = as_extra_column(field) {
            extra.push((column, stored.and_then(|s| extra_of(s, column))));
            continue;
        }
        let (from, value) = stored_value(field).unwrap_or_default();
        take.push((field.clone(), from, value));
    }
    for (field, from) in &row.filled {
        let own = (from.as_str().to_owned(), row.item.get(field).cloned());
        let kept = match stored_value(field) {
            Some(stored) if stored.0.as_str() > own.0.as_str() => stored,
            _ => own,
        };
        take.push((field.clone(), kept.0, kept.1));
    }
    item.retain(|k, _| {
        !k.starts_with(VSEQ_PREFIX)
            && ![DELETED_ATTR, EXPIRES_ATTR, EXTRA_ATTR].contains(&k.as_str())
            && !row.missing.contains(k)
    });
    item.extend(row.item.clone());
    for (field, from, value) in take {
        match value {
            Some(v) => item.insert(field.clone(), v),
            None => item.remove(&field),
        };
        item.insert(vseq_attr(&field), AttributeValue::S(from));
    }
    for (column, value) in extra {
        set_extra(&mut item, column, value);
    }
    item
}

/// A field an older change fills in a newer stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// The field.
    pub field: String,
    /// Its value, or `None` when the change has it null (the field is removed).
    pub value: Option<AttributeValue>,
    /// The field's `_vseq:` attribute.
    pub vseq_attr: String,
    /// The `seq` of the change the value comes from; the fill applies only while the stored
    /// `_vseq:` is lower.
    pub seq: Seq,
}

/// What a stale row (older than the stored item) still fills: the stored fields whose `_vseq:`
/// is older than the change the row carries them from.
///
/// A stale delete fills too: each such field had no value from the delete on.
pub fn fills(stored: &Item, row: &TypedRow) -> Vec<Fill> {
    let mut out = Vec::new();
    for (attr, value) in stored {
        let (Some(field), AttributeValue::S(stored_vseq)) = (attr.strip_prefix(VSEQ_PREFIX), value)
        else {
            continue;
        };
        if row.unchanged.iter().any(|f| f == field) {
            continue;
        }
        let from = row
            .filled
            .iter()
            .find(|(f, _)| f == field)
            .map_or_else(|| row.seq.clone(), |(_, s)| s.clone());
        if stored_vseq.as_str() >= from.as_str() {
            continue;
        }
        out.push(Fill {
            field: field.to_owned(),
            value: row.item.get(field).cloned(),
            vseq_attr: attr.clone(),
            seq: from,
        });
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// Applies a fill to an item under the condition the DynamoDB adapter writes
/// (`attribute_exists(_vseq:f) AND _vseq:f < :seq`). Returns whether it applied.
pub fn apply_fill(item: &mut Item, fill: &Fill) -> bool {
    match str_of(item, &fill.vseq_attr) {
        Some(v) if v < fill.seq.as_str() => {}
        _ => return false,
    }
    match &fill.value {
        Some(v) => item.insert(fill.field.clone(), v.clone()),
        None => item.remove(&fill.field),
    };
    item.insert(
        fill.vseq_attr.clone(),
        AttributeValue::S(fill.seq.as_str().to_owned()),
    );
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as Map;

    use proptest::prelude::*;

    use super::*;
    use crate::change::{Format, Route};
    use crate::contract;

    const CONTRACT: &str = r#"
name: orders
version: 3
sources: [{table: orders}]
primary_key: [order_id]
unknown_fields: keep
fields:
  - {name: order_id, type: string}
  - {name: total, type: decimal, from: amounts.total}
  - {name: customer, type: string, from: customer_id, required: true}
  - {name: status, type: string, default: new}
"#;

    fn contract() -> Contract {
        contract::parse("orders.yaml", CONTRACT).unwrap()
    }

    fn meta() -> RowMeta {
        RowMeta {
            raw_ref: "s3://b/raw/orders/x.ndjson.gz#L1".into(),
            ts_ms: 1_795_590_000_000,
            tombstone_expires_at: 1_800_000_000,
        }
    }

    fn json_image(text: &str) -> Image {
        Image::Json(serde_json::from_str(text).unwrap())
    }

    fn change(op: Op, seq: u64, after: Option<&str>, key: Option<&str>) -> Change {
        Change {
            route: Route {
                format: Format::App,
                table: "orders".into(),
                op,
                seq: Seq::decimal(&seq.to_string(), "seq").unwrap(),
                ts_ms: Some(1),
            },
            ttl_delete: false,
            key: key.map(json_image),
            before: None,
            after: after.map(json_image),
            logical: BTreeMap::new(),
            unreadable: BTreeMap::new(),
        }
    }

    #[test]
    fn renames_nesting_defaults_and_bookkeeping() {
        let c = change(
            Op::Insert,
            7,
            Some(
                r#"{"order_id":"o-1","amounts":{"total":12345678901234567890.12},"customer_id":"c-9"}"#,
            ),
            None,
        );
        let row = type_change(&c, &contract(), &meta()).unwrap().unwrap();
        assert_eq!(
            row.key,
            vec![("order_id".to_owned(), AttributeValue::S("o-1".into()))]
        );
        assert_eq!(
            row.item["total"],
            AttributeValue::N("12345678901234567890.12".into())
        );
        assert_eq!(row.item["customer"], AttributeValue::S("c-9".into()));
        assert_eq!(
            row.item["status"],
            AttributeValue::S("new".into()),
            "default"
        );
        assert_eq!(
            row.item[SEQ_ATTR],
            AttributeValue::S(Seq::decimal("7", "").unwrap().as_str().into())
        );
        assert_eq!(row.item[VERSION_ATTR], AttributeValue::N("3".into()));
        assert_eq!(row.item[OP_ATTR], AttributeValue::S("insert".into()));
        assert_eq!(
            row.item[RAW_ATTR],
            AttributeValue::S("s3://b/raw/orders/x.ndjson.gz#L1".into())
        );
        assert!(!row.item.contains_key(DELETED_ATTR));
        assert!(!row.item.contains_key(EXTRA_ATTR), "every column was read");
    }

    #[test]
    fn what_dynamodb_cannot_hold_is_kept_as_its_json_text_under_extra() {
        let after = format!(
            r#"{{"order_id":"o-1","customer_id":"c","digits":{},"m":{{"":1,"a":2}},"deep":{{"x":{{"":true}}}},"fine":{{"k":[1,"v"]}}}}"#,
            "9".repeat(39)
        );
        let row = type_change(
            &change(Op::Update, 1, Some(&after), None),
            &contract(),
            &meta(),
        )
        .unwrap()
        .unwrap();
        let AttributeValue::M(extra) = &row.item[EXTRA_ATTR] else {
            panic!("no _extra")
        };
        assert_eq!(
            extra["digits"],
            AttributeValue::S("9".repeat(39)),
            "39 digits"
        );
        assert_eq!(extra["m"], AttributeValue::S(r#"{"":1,"a":2}"#.into()));
        let AttributeValue::M(deep) = &extra["deep"] else {
            panic!("{:?}", extra["deep"])
        };
        assert_eq!(deep["x"], AttributeValue::S(r#"{"":true}"#.into()));
        assert!(
            matches!(&extra["fine"], AttributeValue::M(m) if matches!(&m["k"], AttributeValue::L(l) if l.len() == 2))
        );

        // A top-level column without a name cannot be kept: the change is refused, not cut.
        let unnamed = r#"{"order_id":"o-1","customer_id":"c","":"lost?"}"#;
        let err = type_change(
            &change(Op::Update, 1, Some(unnamed), None),
            &contract(),
            &meta(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty name"), "{err}");

        // A stream image map with an empty attribute name (hand-made; DynamoDB refuses one).
        let image = Image::Ddb(BTreeMap::from([
            ("order_id".to_owned(), AttributeValue::S("o-1".into())),
            ("customer_id".to_owned(), AttributeValue::S("c".into())),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([(
                    String::new(),
                    AttributeValue::S("x".into()),
                )])),
            ),
        ]));
        let mut c = change(Op::Update, 1, None, None);
        c.after = Some(image);
        let row = type_change(&c, &contract(), &meta()).unwrap().unwrap();
        let AttributeValue::M(extra) = &row.item[EXTRA_ATTR] else {
            panic!("no _extra")
        };
        assert_eq!(extra["m"], AttributeValue::S(r#"{"":"x"}"#.into()));
    }

    #[test]
    fn unknown_fields_keep_and_ignore() {
        let after = r#"{"order_id":"o-1","customer_id":"c","coupon":"X1","n":1.50,"big":1E+400}"#;
        let row = type_change(
            &change(Op::Update, 1, Some(after), None),
            &contract(),
            &meta(),
        )
        .unwrap()
        .unwrap();
        let AttributeValue::M(extra) = &row.item[EXTRA_ATTR] else {
            panic!("no _extra")
        };
        assert_eq!(extra["coupon"], AttributeValue::S("X1".into()));
        assert_eq!(extra["n"], AttributeValue::N("1.5".into()));
        assert_eq!(
            extra["big"],
            AttributeValue::S("1E+400".into()),
            "kept as text, not rounded"
        );
        assert!(!extra.contains_key("order_id") && !extra.contains_key("customer_id"));

        let ignoring = contract::parse(
            "o.yaml",
            &CONTRACT.replace("unknown_fields: keep", "unknown_fields: ignore"),
        )
        .unwrap();
        let row = type_change(
            &change(Op::Update, 1, Some(after), None),
            &ignoring,
            &meta(),
        )
        .unwrap()
        .unwrap();
        assert!(!row.item.contains_key(EXTRA_ATTR));
        assert!(!row.item.contains_key("coupon"));
    }

    #[test]
    fn violations_name_the_field() {
        let missing = change(Op::Insert, 1, Some(r#"{"order_id":"o-1"}"#), None);
        let e = type_change(&missing, &contract(), &meta()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field customer (from `customer_id`): required, but the change has no value for it"
        );
        assert_eq!(e.field(), Some("customer"));

        let wrong = change(
            Op::Insert,
            1,
            Some(r#"{"order_id":"o-1","customer_id":"c","amounts":{"total":"lots"}}"#),
            None,
        );
        let e = type_change(&wrong, &contract(), &meta()).unwrap_err();
        assert_eq!(e.to_string(), "field total (from `amounts.total`): `total`: expected decimal, found a string (not a number; if it is Kafka Connect Decimal bytes (base64) from an event without its schema, give the field a `scale`)");
        assert!(!e.to_string().contains("lots"), "never the value");

        let no_key = change(Op::Insert, 1, Some(r#"{"customer_id":"c"}"#), None);
        assert_eq!(
            type_change(&no_key, &contract(), &meta())
                .unwrap_err()
                .field(),
            Some("order_id")
        );

        let empty_key = change(
            Op::Insert,
            1,
            Some(r#"{"order_id":"","customer_id":"c"}"#),
            None,
        );
        assert!(matches!(
            type_change(&empty_key, &contract(), &meta()),
            Err(Violation::EmptyKey { .. })
        ));

        let keys_only = change(Op::Update, 1, None, Some(r#"{"order_id":"o-1"}"#));
        assert!(matches!(
            type_change(&keys_only, &contract(), &meta()),
            Err(Violation::NoImage { .. })
        ));
    }

    #[test]
    fn deletes_are_tombstones_with_the_key_only() {
        let c = change(Op::Delete, 9, None, Some(r#"{"order_id":"o-1"}"#));
        let row = type_change(&c, &contract(), &meta()).unwrap().unwrap();
        assert!(row.tombstone);
        assert_eq!(row.item[DELETED_ATTR], AttributeValue::Bool(true));
        assert_eq!(
            row.item[EXPIRES_ATTR],
            AttributeValue::N("1800000000".into())
        );
        assert!(
            !row.item.contains_key("customer"),
            "a tombstone holds no fields"
        );
        let no_key = change(Op::Delete, 9, None, None);
        assert!(matches!(
            type_change(&no_key, &contract(), &meta()),
            Err(Violation::NoImage { op: "delete", .. })
        ));
    }

    #[test]
    fn an_update_that_changes_the_key_tombstones_the_old_key() {
        let mut c = change(
            Op::Update,
            4,
            Some(r#"{"order_id":"o-45","customer_id":"c"}"#),
            None,
        );
        c.before = Some(json_image(r#"{"order_id":"o-46"}"#));
        let row = type_change(&c, &contract(), &meta()).unwrap().unwrap();
        let old = old_key_tombstone(&c, &contract(), &meta(), &row).unwrap();
        assert_eq!(
            old.key,
            vec![("order_id".to_owned(), AttributeValue::S("o-46".into()))]
        );
        assert!(old.tombstone && old.seq == row.seq);
        assert_eq!(old.item[DELETED_ATTR], AttributeValue::Bool(true));
        // The same key, an empty old image, or an insert: nothing to tombstone.
        c.before = Some(json_image(r#"{"order_id":"o-45"}"#));
        assert!(old_key_tombstone(&c, &contract(), &meta(), &row).is_none());
        c.before = Some(json_image("{}"));
        assert!(old_key_tombstone(&c, &contract(), &meta(), &row).is_none());
        let mut insert = change(
            Op::Insert,
            4,
            Some(r#"{"order_id":"o-45","customer_id":"c"}"#),
            None,
        );
        insert.before = Some(json_image(r#"{"order_id":"o-46"}"#));
        assert!(old_key_tombstone(&insert, &contract(), &meta(), &row).is_none());
    }

    #[test]
    fn truncate_and_control_touch_no_row() {
        for op in [Op::Truncate, Op::Control] {
            assert_eq!(
                type_change(&change(op, 1, None, None), &contract(), &meta()).unwrap(),
                None
            );
        }
    }

    #[test]
    fn the_guard_orders_by_seq_then_contract_version() {
        let s = |n: &str| Seq::decimal(n, "").unwrap();
        assert!(supersedes(None, &s("1"), 1));
        assert!(supersedes(
            Some((&s("9000000000000000003"), 1)),
            &s("100000000000000000004"),
            1
        ));
        assert!(
            !supersedes(Some((&s("5"), 1)), &s("4"), 9),
            "an older change never wins"
        );
        assert!(
            !supersedes(Some((&s("5"), 2)), &s("5"), 2),
            "a duplicate is stale"
        );
        assert!(
            supersedes(Some((&s("5"), 2)), &s("5"), 3),
            "a newer contract rewrites the same seq"
        );
        assert!(!supersedes(Some((&s("5"), 3)), &s("5"), 2));
    }

    #[test]
    fn coalescing_keeps_the_highest_seq_per_key() {
        let rows: Vec<TypedRow> = [(3, "a"), (1, "a"), (2, "b"), (5, "a"), (5, "b")]
            .into_iter()
            .map(|(seq, k)| {
                let c = change(
                    Op::Update,
                    seq,
                    Some(&format!(r#"{{"order_id":"{k}","customer_id":"c{seq}"}}"#)),
                    None,
                );
                type_change(&c, &contract(), &meta()).unwrap().unwrap()
            })
            .collect();
        let (winners, superseded) = coalesce(rows);
        assert_eq!(superseded, 3);
        assert_eq!(winners.len(), 2);
        assert_eq!(winners[0].item["customer"], AttributeValue::S("c5".into()));
        assert_eq!(winners[1].item["customer"], AttributeValue::S("c5".into()));
    }

    /// A change of one key: its seq, and whether it deletes or sets a value.
    fn history() -> impl Strategy<Value = Vec<(u64, Option<u32>)>> {
        prop::collection::vec(prop::option::weighted(0.8, any::<u32>()), 1..20).prop_map(|values| {
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i as u64 + 1, v))
                .collect()
        })
    }

    fn row_for(seq: u64, value: Option<u32>, key: &str) -> TypedRow {
        let c = match value {
            Some(v) => change(
                Op::Update,
                seq,
                Some(&format!(r#"{{"order_id":"{key}","customer_id":"c{v}"}}"#)),
                None,
            ),
            None => change(
                Op::Delete,
                seq,
                None,
                Some(&format!(r#"{{"order_id":"{key}"}}"#)),
            ),
        };
        type_change(&c, &contract(), &meta()).unwrap().unwrap()
    }

    /// A history delivered with some changes again (`dups`) and shuffled deterministically by
    /// the sampled index.
    fn delivery<T: Copy>(
        history: &[T],
        shuffle: prop::sample::Index,
        dups: &[prop::sample::Index],
    ) -> Vec<T> {
        let mut delivery = history.to_vec();
        for d in dups {
            delivery.push(history[d.index(history.len())]);
        }
        let mut seed = shuffle.index(usize::MAX / 2) | 1;
        for i in (1..delivery.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            delivery.swap(i, seed % (i + 1));
        }
        delivery
    }

    /// A table that applies writes through the guard, as the conditional write does.
    fn apply(table: &mut Map<String, TypedRow>, row: TypedRow) {
        let id = row.key_id();
        let stored = table.get(&id).map(|r| (&r.seq, r.version));
        if supersedes(stored, &row.seq, row.version) {
            table.insert(id, row);
        }
    }

    proptest! {
        /// Any permutation or duplication of a key's changes, delivered in objects of any size,
        /// ends in the same row as applying them in order.
        #[test]
        fn any_order_and_duplication_converges(
            history in history(),
            shuffle in any::<prop::sample::Index>(),
            dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            chunk in 1usize..6,
        ) {
            let mut in_order = Map::new();
            for (seq, v) in &history {
                apply(&mut in_order, row_for(*seq, *v, "k"));
            }
            let delivery = delivery(&history, shuffle, &dups);
            let mut shuffled = Map::new();
            for object in delivery.chunks(chunk) {
                let (winners, _) = coalesce(object.iter().map(|(s, v)| row_for(*s, *v, "k")));
                for row in winners {
                    apply(&mut shuffled, row);
                }
            }
            prop_assert_eq!(in_order, shuffled);
        }
    }

    /// One change of a key with a TOAST column: a value for it (or null), the placeholder, or a
    /// delete.
    #[derive(Debug, Clone, Copy)]
    enum Toast {
        Value(Option<u8>),
        Unchanged,
        Delete,
    }

    const TOAST_CONTRACT: &str = "name: t\nversion: 1\nsources: [{table: orders}]\nprimary_key: [id]\nfields:\n  - {name: id, type: string}\n  - {name: email, type: string}\n  - {name: bio, type: string}\n";

    fn toast_row(seq: u64, change_kind: Toast) -> TypedRow {
        let contract = contract::parse("t.yaml", TOAST_CONTRACT).unwrap();
        let email = format!("\"e{seq}\"");
        let c = match change_kind {
            Toast::Value(v) => {
                let bio = v.map_or_else(|| "null".to_owned(), |b| format!("\"b{b}\""));
                change(
                    Op::Update,
                    seq,
                    Some(&format!(r#"{{"id":"k","email":{email},"bio":{bio}}}"#)),
                    None,
                )
            }
            Toast::Unchanged => change(
                Op::Update,
                seq,
                Some(&format!(
                    r#"{{"id":"k","email":{email},"bio":"__debezium_unavailable_value"}}"#
                )),
                None,
            ),
            Toast::Delete => change(Op::Delete, seq, None, Some(r#"{"id":"k"}"#)),
        };
        type_change(&c, &contract, &meta()).unwrap().unwrap()
    }

    /// A table that applies writes as the DynamoDB adapter does.
    fn apply_item(table: &mut Map<String, Item>, row: &TypedRow) {
        let id = row.key_id();
        let mut slot = table.remove(&id);
        apply_write(&mut slot, row);
        if let Some(item) = slot {
            table.insert(id, item);
        }
    }

    fn toast_history() -> impl Strategy<Value = Vec<(u64, Toast)>> {
        let kind = prop_oneof![
            3 => prop::option::weighted(0.8, 0u8..4).prop_map(Toast::Value),
            3 => Just(Toast::Unchanged),
            1 => Just(Toast::Delete),
        ];
        prop::collection::vec(kind, 1..12).prop_map(|kinds| {
            kinds
                .into_iter()
                .enumerate()
                .map(|(i, k)| (i as u64 + 1, k))
                .collect()
        })
    }

    proptest! {
        /// With TOAST placeholders, any permutation or duplication of a key's changes, in
        /// objects of any size, ends with every field as the newest change that carried it set
        /// it: the same as applying the changes in order.
        #[test]
        fn toast_placeholders_converge_in_any_order(
            history in toast_history(),
            shuffle in any::<prop::sample::Index>(),
            dups in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            chunk in 1usize..5,
        ) {
            let fields = |item: Option<&Item>| {
                item.map(|i| {
                    let mut f: Vec<(String, AttributeValue)> = i
                        .iter()
                        .filter(|(k, _)| ["id", "email", "bio", SEQ_ATTR, DELETED_ATTR].contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    f.sort_by(|a, b| a.0.cmp(&b.0));
                    f
                })
            };
            let mut in_order = Map::new();
            for (seq, kind) in &history {
                apply_item(&mut in_order, &toast_row(*seq, *kind));
            }
            let delivery = delivery(&history, shuffle, &dups);
            let mut shuffled = Map::new();
            for object in delivery.chunks(chunk) {
                let (winners, _) = coalesce(object.iter().map(|(s, k)| toast_row(*s, *k)));
                for row in &winners {
                    apply_item(&mut shuffled, row);
                }
            }
            prop_assert_eq!(fields(in_order.values().next()), fields(shuffled.values().next()));
        }
    }
}
