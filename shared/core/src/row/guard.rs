//! The ordering guard and the model of the conditional writes (DESIGN §3.5).
//!
//! Every condition a typed write is made under is one [`Guard`]: [`Guard::holds`] evaluates it
//! on an item in memory, and [`Guard::expression`] is the same condition as DynamoDB evaluates
//! it, so the in-memory store and the DynamoDB adapter cannot disagree. [`apply_write`] applies
//! a row to an item exactly as the adapter's writes do, for in-memory stores and tests.

use serde_dynamo::AttributeValue;

use crate::seq::Seq;

use super::extra::{as_extra_column, extra_of, set_extra};
use super::*;

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

/// A condition on the stored item under which a typed write applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard<'a> {
    /// Nothing is stored, or the incoming change supersedes the stored row: a lower `seq`, or
    /// the same `seq` under an older contract version ([`supersedes`]).
    Supersedes {
        /// The incoming change's `seq`.
        seq: &'a Seq,
        /// The incoming contract version.
        version: u64,
    },
    /// Nothing is stored.
    Absent,
    /// The stored row still has this `seq` and contract version: nothing changed it since it
    /// was read.
    Unchanged {
        /// The `seq` read.
        seq: &'a Seq,
        /// The contract version read.
        version: u64,
    },
    /// A field's `_vseq:` attribute is there and older than `seq`: a fill may set the field.
    OlderValue {
        /// The field's `_vseq:` attribute.
        vseq_attr: &'a str,
        /// The `seq` of the change the fill's value comes from.
        seq: &'a Seq,
    },
}

/// A [`Guard`] as a DynamoDB condition expression, with its names and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    /// The condition expression.
    pub condition: &'static str,
    /// Its expression attribute names (every one is used, as DynamoDB requires).
    pub names: Vec<(&'static str, String)>,
    /// Its expression attribute values.
    pub values: Vec<(&'static str, AttributeValue)>,
}

impl<'a> Guard<'a> {
    /// The guard of a row's own write: it applies if the row supersedes what is stored.
    pub fn of(row: &'a TypedRow) -> Self {
        Self::Supersedes {
            seq: &row.seq,
            version: row.version,
        }
    }

    /// Whether a write under this guard applies to `stored` (`None`: no item), as DynamoDB
    /// decides it: a comparison with an attribute the item lacks is false.
    pub fn holds(&self, stored: Option<&Item>) -> bool {
        let version_of = |item: &Item| match item.get(VERSION_ATTR) {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
            _ => None,
        };
        match *self {
            Self::Supersedes { seq, version } => match stored {
                None => true,
                Some(item) => match (str_of(item, SEQ_ATTR), version_of(item)) {
                    (Some(s), Some(v)) => {
                        supersedes(Some((&Seq::from_normalised(s.to_owned()), v)), seq, version)
                    }
                    (Some(s), None) => s < seq.as_str(),
                    (None, _) => false,
                },
            },
            Self::Absent => stored.is_none(),
            Self::Unchanged { seq, version } => stored.is_some_and(|item| {
                str_of(item, SEQ_ATTR) == Some(seq.as_str()) && version_of(item) == Some(version)
            }),
            Self::OlderValue { vseq_attr, seq } => stored
                .and_then(|item| str_of(item, vseq_attr))
                .is_some_and(|v| v < seq.as_str()),
        }
    }

    /// The same condition as a DynamoDB condition expression. `partition_key` is the name of
    /// the table's partition key, whose absence means that no item is stored.
    pub fn expression(&self, partition_key: &str) -> Expression {
        let seq_value = |seq: &Seq| AttributeValue::S(seq.as_str().to_owned());
        let version_value = |v: u64| AttributeValue::N(v.to_string());
        match *self {
            Self::Supersedes { seq, version } => Expression {
                condition: "attribute_not_exists(#pk) OR #seq < :seq OR (#seq = :seq AND #v < :v)",
                names: vec![
                    ("#pk", partition_key.to_owned()),
                    ("#seq", SEQ_ATTR.to_owned()),
                    ("#v", VERSION_ATTR.to_owned()),
                ],
                values: vec![(":seq", seq_value(seq)), (":v", version_value(version))],
            },
            Self::Absent => Expression {
                condition: "attribute_not_exists(#pk)",
                names: vec![("#pk", partition_key.to_owned())],
                values: Vec::new(),
            },
            Self::Unchanged { seq, version } => Expression {
                condition: "#seq = :seq AND #v = :v",
                names: vec![
                    ("#seq", SEQ_ATTR.to_owned()),
                    ("#v", VERSION_ATTR.to_owned()),
                ],
                values: vec![(":seq", seq_value(seq)), (":v", version_value(version))],
            },
            Self::OlderValue { vseq_attr, seq } => Expression {
                condition: "attribute_exists(#vf) AND #vf < :s",
                names: vec![("#vf", vseq_attr.to_owned())],
                values: vec![(":s", seq_value(seq))],
            },
        }
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
    str_of(stored, RAW_ATTR) == Some(row.raw_ref.as_str())
        && stored_guard(stored).is_some_and(|(seq, v)| seq == row.seq && v == row.version)
}

/// The effect of writing `row` over the stored item in `slot` (`None`: no row), as the DynamoDB
/// adapter's conditional writes have it: a row that supersedes the stored one replaces it
/// (merged over it when partial); a stale row fills what it can. For in-memory stores and
/// tests.
pub fn apply_write(slot: &mut Option<Item>, row: &TypedRow) -> WriteOutcome {
    if Guard::of(row).holds(slot.as_ref()) {
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
        let own = (
            from.as_str().to_owned(),
            row.item.get(field.as_str()).cloned(),
        );
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
    item.extend(row.own_item());
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

impl Fill {
    /// The condition a fill is made under: the stored value is older than the fill's.
    pub fn guard(&self) -> Guard<'_> {
        Guard::OlderValue {
            vseq_attr: &self.vseq_attr,
            seq: &self.seq,
        }
    }
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

/// Applies a fill to an item under its [`Fill::guard`], as the DynamoDB adapter's `UpdateItem`
/// does. Returns whether it applied.
pub fn apply_fill(item: &mut Item, fill: &Fill) -> bool {
    if !fill.guard().holds(Some(item)) {
        return false;
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

    use super::super::test_support::*;
    use super::*;
    use crate::contract;

    #[test]
    fn a_guard_holds_as_dynamodb_decides_its_expression() {
        let s = |n: &str| Seq::decimal(n, "").unwrap();
        let item = |seq: Option<&str>, v: Option<u64>| -> Item {
            let mut i = Item::new();
            if let Some(seq) = seq {
                i.insert(SEQ_ATTR.into(), AttributeValue::S(s(seq).as_str().into()));
            }
            if let Some(v) = v {
                i.insert(VERSION_ATTR.into(), AttributeValue::N(v.to_string()));
            }
            i
        };
        let five = s("5");
        let sup = Guard::Supersedes {
            seq: &five,
            version: 2,
        };
        assert!(sup.holds(None));
        assert!(sup.holds(Some(&item(Some("4"), Some(9)))));
        assert!(sup.holds(Some(&item(Some("5"), Some(1)))));
        assert!(!sup.holds(Some(&item(Some("5"), Some(2)))));
        assert!(
            !sup.holds(Some(&item(None, Some(1)))),
            "an item without _seq: the comparison is false, as in DynamoDB"
        );
        assert!(sup.holds(Some(&item(Some("4"), None))));
        assert!(Guard::Absent.holds(None) && !Guard::Absent.holds(Some(&item(None, None))));
        let still = Guard::Unchanged {
            seq: &five,
            version: 2,
        };
        assert!(still.holds(Some(&item(Some("5"), Some(2)))));
        assert!(!still.holds(Some(&item(Some("5"), Some(3)))) && !still.holds(None));
        let older = Guard::OlderValue {
            vseq_attr: "_vseq:bio",
            seq: &five,
        };
        let mut with_vseq = item(Some("9"), Some(1));
        with_vseq.insert(
            "_vseq:bio".into(),
            AttributeValue::S(s("4").as_str().into()),
        );
        assert!(older.holds(Some(&with_vseq)));
        assert!(
            !older.holds(Some(&item(Some("9"), Some(1)))),
            "no _vseq: no fill"
        );
        let e = sup.expression("id");
        assert_eq!(
            e.names.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            ["#pk", "#seq", "#v"]
        );
        assert!(e.names.iter().all(|(p, _)| e.condition.contains(p)));
        assert!(e.values.iter().all(|(p, _)| e.condition.contains(p)));
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
