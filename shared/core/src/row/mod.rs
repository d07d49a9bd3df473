//! Typed rows (DESIGN §3.5): a change typed by a contract, with its bookkeeping attributes,
//! and the ordering guard that makes writes idempotent.
//!
//! Every typed item carries `_seq`, `_op`, `_source_ts` (epoch ms), `_contract_version` and
//! `_raw` (the raw line it came from). A delete becomes a tombstone (`_deleted = true` and an
//! `_expires_at` TTL in epoch seconds) so an older change that arrives late cannot bring the row
//! back. A write goes through only if [`supersedes`] holds, which the DynamoDB adapter expresses
//! as a condition expression.
//!
//! The module is split by concern: [`field`] reads one field's value from a change's images,
//! [`extra`] keeps unread columns under `_extra`, [`coalesce`] keeps the newest change of each
//! key within an object, and [`guard`] is the ordering guard and the model of the conditional
//! writes, which the DynamoDB adapter and the in-memory store both follow.

mod attrs;
mod coalesce;
mod extra;
mod field;
mod guard;
#[cfg(test)]
pub(crate) mod test_support;

pub use attrs::RowAttrs;
pub use coalesce::{coalesce, newest_of, push_change};
pub use extra::json_to_attribute;
pub use field::UNAVAILABLE_VALUE;
pub use guard::*;

use std::collections::HashMap;
use std::sync::Arc;

use serde_dynamo::AttributeValue;

use crate::change::{Change, Image, Op};
use crate::contract::{Contract, Field, UnknownFields};
use crate::seq::Seq;
use crate::typing::{SrcRef, TypeError};

use extra::{extra_column, extra_columns};
use field::{is_unavailable, type_field, Found};

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
    /// What the change says of the row: its key, its fields and `_extra`. The bookkeeping
    /// attributes are added when the row is written ([`Self::write_item`]), so the rows a
    /// transform types and then drops for a newer change of their key never build them.
    pub item: RowAttrs,
    /// The ordering token.
    pub seq: Seq,
    /// The contract version.
    pub version: u64,
    /// The operation the row records: `delete` for a tombstone.
    pub op: Op,
    /// The source commit time (or arrival time), epoch ms.
    pub source_ts: i64,
    /// `s3://bucket/key#L<n>` or another reference to the raw line the row came from.
    pub raw_ref: String,
    /// For a tombstone, when it expires, epoch seconds.
    pub expires_at: i64,
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
    /// About how many bytes the row holds in memory, its map's slots included: what bounds the
    /// rows one invocation keeps while it coalesces (see `TransformConfig::coalesce_max_bytes`).
    pub fn held_bytes(&self) -> usize {
        // A slot per attribute the row has room for. Attribute names are shared with the
        // contract, so only their pointers count.
        const SLOT: usize = std::mem::size_of::<(Arc<str>, AttributeValue)>();
        let names = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        std::mem::size_of::<Self>()
            + self.table.len()
            + self
                .key
                .iter()
                .map(|(k, v)| {
                    k.len() + value_bytes(v) + std::mem::size_of::<(String, AttributeValue)>()
                })
                .sum::<usize>()
            + self.item.capacity() * SLOT
            + self.item.values().map(value_bytes).sum::<usize>()
            + self.seq.as_str().len()
            + self.raw_ref.len()
            + names(&self.unchanged)
            + names(&self.missing)
            + self
                .filled
                .iter()
                .map(|(f, s)| f.len() + s.as_str().len() + 48)
                .sum::<usize>()
    }

    /// Whether the row is a tombstone: the row of a delete.
    pub fn is_tombstone(&self) -> bool {
        self.op == Op::Delete
    }

    /// A string that identifies the row's key within its table, for coalescing.
    pub fn key_id(&self) -> String {
        let mut s = String::new();
        self.push_key_id(&mut s);
        s
    }

    /// Appends [`Self::key_id`] to `out`.
    pub fn push_key_id(&self, out: &mut String) {
        for (name, value) in &self.key {
            out.push_str(name);
            out.push('=');
            // A key value is a string, a number or binary: always written.
            let _ = crate::typing::write_json(SrcRef::Ddb(value), out);
            out.push('\u{1f}');
        }
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
    /// The dead letter's `error_code` for the violation.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Type { .. } => "type_mismatch",
            Self::Missing { .. } => "missing_field",
            Self::EmptyKey { .. } => "empty_key",
            Self::NoImage { .. } => "no_image",
            Self::Unreadable { .. } => "unreadable_value",
            Self::KeyKind { .. } => "key_type_mismatch",
        }
    }
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

    // Every field and `_extra`, without growing the map on the way and no larger than that:
    // every kept row holds one until the object is flushed.
    let extra = usize::from(contract.unknown_fields == UnknownFields::Keep);
    let mut item = RowAttrs::with_capacity(contract.fields.len() + extra);
    let mut unchanged = Vec::new();
    let mut missing = Vec::new();
    let mut key = Vec::with_capacity(contract.primary_key.len());
    for field in contract.key_fields() {
        let value = match type_field(field, &images, change, true)? {
            Found::Value(v) => v,
            Found::Missing | Found::Unchanged => {
                return Err(Violation::Missing {
                    field: field.name.to_string(),
                    from: field.from_path(),
                })
            }
        };
        if matches!(&value, AttributeValue::S(s) if s.is_empty()) {
            return Err(Violation::EmptyKey {
                field: field.name.to_string(),
            });
        }
        key.push((field.name.to_string(), value.clone()));
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
                    field: reader.map_or_else(|| column.clone(), |f| f.name.to_string()),
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
                Found::Unchanged => unchanged.push(field.name.to_string()),
                Found::Missing if field.required => {
                    return Err(Violation::Missing {
                        field: field.name.to_string(),
                        from: field.from_path(),
                    })
                }
                Found::Missing => match &field.default {
                    Some(d) => {
                        item.insert(field.name.clone(), d.clone());
                    }
                    None => missing.push(field.name.to_string()),
                },
            }
        }
        if contract.unknown_fields == UnknownFields::Keep {
            let extra = extra_columns(primary, contract)?;
            if !extra.is_empty() {
                item.insert(Arc::from(EXTRA_ATTR), AttributeValue::M(extra));
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
    Ok(Some(TypedRow {
        table: contract.name.clone(),
        key,
        item,
        seq: change.route.seq.clone(),
        version: contract.version,
        op: if tombstone { Op::Delete } else { op },
        source_ts: meta.ts_ms,
        raw_ref: meta.raw_ref.clone(),
        expires_at: meta.tombstone_expires_at,
        unchanged,
        missing,
        filled: Vec::new(),
    }))
}

/// How many attributes [`bookkeeping`] adds to a row.
pub(super) const fn bookkeeping_len(tombstone: bool) -> usize {
    if tombstone {
        7
    } else {
        5
    }
}

/// Adds a row's bookkeeping attributes to `item`: `_seq`, `_op`, `_source_ts`,
/// `_contract_version`, `_raw`, and for a tombstone `_deleted` and `_expires_at`.
pub(super) fn bookkeeping(item: &mut Item, row: &TypedRow) {
    item.insert(
        SEQ_ATTR.into(),
        AttributeValue::S(row.seq.as_str().to_owned()),
    );
    item.insert(
        OP_ATTR.into(),
        AttributeValue::S(row.op.as_str().to_owned()),
    );
    item.insert(
        SOURCE_TS_ATTR.into(),
        AttributeValue::N(row.source_ts.to_string()),
    );
    item.insert(
        VERSION_ATTR.into(),
        AttributeValue::N(row.version.to_string()),
    );
    item.insert(RAW_ATTR.into(), AttributeValue::S(row.raw_ref.clone()));
    if row.is_tombstone() {
        item.insert(DELETED_ATTR.into(), AttributeValue::Bool(true));
        item.insert(
            EXPIRES_ATTR.into(),
            AttributeValue::N(row.expires_at.to_string()),
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
            Ok(Found::Value(value)) => key.push((field.name.to_string(), value)),
            _ => return None,
        }
    }
    if key == new_row.key {
        return None;
    }
    let item: RowAttrs = contract
        .key_fields()
        .zip(&key)
        .map(|(field, (_, v))| (field.name.clone(), v.clone()))
        .collect();
    Some(TypedRow {
        table: contract.name.clone(),
        key,
        item,
        seq: change.route.seq.clone(),
        version: contract.version,
        op: Op::Delete,
        source_ts: meta.ts_ms,
        raw_ref: meta.raw_ref.clone(),
        expires_at: meta.tombstone_expires_at,
        unchanged: Vec::new(),
        missing: Vec::new(),
        filled: Vec::new(),
    })
}

/// Prefix of the attributes that record, for a field whose stored value did not come from the
/// row's own change, the `seq` of the change it came from (`_vseq:bio`). Only rows written by a
/// change that left a field unchanged (Debezium's TOAST placeholder) have them.
///
/// They make out-of-order delivery converge: when an older change arrives after a newer one that
/// left a field unchanged, the older change is stale for the row, but it still carries the
/// field, so it fills the field if it is newer than the stored value's `_vseq` ([`fills`]).
pub const VSEQ_PREFIX: &str = "_vseq:";

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

    /// The row's attributes with its bookkeeping attributes, without the `_vseq:` of the
    /// fields it took from earlier changes.
    pub fn own_item(&self) -> Item {
        let mut item = Item::with_capacity(
            self.item.len() + bookkeeping_len(self.is_tombstone()) + self.filled.len(),
        );
        item.extend(self.item.iter().map(|(k, v)| (k.to_string(), v.clone())));
        bookkeeping(&mut item, self);
        item
    }

    /// The item a whole-row write stores: the row's attributes, its bookkeeping attributes and
    /// the `_vseq:` of the fields it took from earlier changes.
    pub fn write_item(&self) -> Item {
        let mut item = self.own_item();
        for (field, seq) in &self.filled {
            item.insert(vseq_attr(field), AttributeValue::S(seq.as_str().to_owned()));
        }
        item
    }
}

/// The heap bytes of one attribute value, nested values and their slots included.
fn value_bytes(value: &AttributeValue) -> usize {
    const SLOT: usize = std::mem::size_of::<AttributeValue>();
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 0,
        AttributeValue::Ss(v) | AttributeValue::Ns(v) => v.iter().map(|s| s.len() + 24).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.len() + 24).sum(),
        AttributeValue::L(v) => v.iter().map(|x| SLOT + value_bytes(x)).sum(),
        AttributeValue::M(m) => m
            .iter()
            .map(|(k, x)| 2 * (24 + SLOT) + k.len() + value_bytes(x))
            .sum(),
    }
}

pub(super) fn str_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn held_bytes_grows_with_what_the_row_holds() {
        let small = change(
            Op::Insert,
            7,
            Some(r#"{"order_id":"o-1","customer_id":"c"}"#),
            None,
        );
        let big_value = format!(
            r#"{{"order_id":"o-1","customer_id":"{}"}}"#,
            "x".repeat(10_001)
        );
        let big = change(Op::Insert, 7, Some(&big_value), None);
        let small = type_change(&small, &contract(), &meta()).unwrap().unwrap();
        let big = type_change(&big, &contract(), &meta()).unwrap().unwrap();
        let map_slots = small.item.len() * std::mem::size_of::<(String, AttributeValue)>();
        assert!(small.held_bytes() > map_slots, "{}", small.held_bytes());
        assert!(big.held_bytes() >= small.held_bytes() + 10_000);
    }

    #[test]
    fn bookkeeping_len_counts_what_bookkeeping_adds() {
        let c = change(Op::Delete, 7, None, Some(r#"{"order_id":"o-1"}"#));
        let tombstone_row = type_change(&c, &contract(), &meta()).unwrap().unwrap();
        let c = change(
            Op::Insert,
            7,
            Some(r#"{"order_id":"o-1","customer_id":"c"}"#),
            None,
        );
        let upsert_row = type_change(&c, &contract(), &meta()).unwrap().unwrap();
        for row in [tombstone_row, upsert_row] {
            let tombstone = row.is_tombstone();
            let mut item = HashMap::new();
            bookkeeping(&mut item, &row);
            assert_eq!(
                item.len(),
                bookkeeping_len(tombstone),
                "tombstone: {tombstone}"
            );
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
        assert!(
            !row.item.contains_key(SEQ_ATTR),
            "bookkeeping is added when the row is written"
        );
        let written = row.write_item();
        assert_eq!(
            written[SEQ_ATTR],
            AttributeValue::S(Seq::decimal("7", "").unwrap().as_str().into())
        );
        assert_eq!(written[VERSION_ATTR], AttributeValue::N("3".into()));
        assert_eq!(written[OP_ATTR], AttributeValue::S("insert".into()));
        assert_eq!(
            written[RAW_ATTR],
            AttributeValue::S("s3://b/raw/orders/x.ndjson.gz#L1".into())
        );
        assert_eq!(
            written[SOURCE_TS_ATTR],
            AttributeValue::N(meta().ts_ms.to_string())
        );
        assert!(!written.contains_key(DELETED_ATTR));
        assert!(!written.contains_key(EXPIRES_ATTR));
        assert!(!written.contains_key(EXTRA_ATTR), "every column was read");
        assert_eq!(written.len(), row.item.len() + bookkeeping_len(false));
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
        assert!(row.is_tombstone());
        let written = row.write_item();
        assert_eq!(written[DELETED_ATTR], AttributeValue::Bool(true));
        assert_eq!(written[OP_ATTR], AttributeValue::S("delete".into()));
        assert_eq!(
            written[EXPIRES_ATTR],
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
        assert!(old.is_tombstone() && old.seq == row.seq);
        assert_eq!(old.write_item()[DELETED_ATTR], AttributeValue::Bool(true));
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
}
