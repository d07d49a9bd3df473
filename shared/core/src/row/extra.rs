//! `unknown_fields: keep`: the columns no field reads, kept under `_extra` as DynamoDB values,
//! or as their JSON text where DynamoDB cannot hold them.

use std::collections::{BTreeMap, HashMap};

use serde_dynamo::AttributeValue;
use serde_json::value::RawValue;

use crate::change::Image;
use crate::contract::Contract;
use crate::typing::{canonical_decimal, SrcRef};

use super::field::is_unavailable;
use super::*;

/// The source columns that no field reads, as they came.
pub(super) fn extra_columns(
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
pub(super) fn storable(v: &AttributeValue) -> AttributeValue {
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

/// How [`TypedRow::unchanged`] names a column of `_extra` (`unknown_fields: keep`).
pub(super) fn extra_column(name: &str) -> String {
    format!("{EXTRA_ATTR}.{name}")
}

/// The `_extra` column an [`TypedRow::unchanged`] entry names, if it names one.
pub(super) fn as_extra_column(entry: &str) -> Option<&str> {
    entry.strip_prefix(EXTRA_ATTR)?.strip_prefix('.')
}

/// Attributes by name: a stored item, or a typed row's own attributes.
pub(super) trait Attributes {
    /// The value of `name`.
    fn attr(&self, name: &str) -> Option<&AttributeValue>;
    /// The value of `name`, set to `init()` first when there is none.
    fn attr_or_insert(&mut self, name: &str, init: AttributeValue) -> &mut AttributeValue;
}

impl Attributes for Item {
    fn attr(&self, name: &str) -> Option<&AttributeValue> {
        self.get(name)
    }
    fn attr_or_insert(&mut self, name: &str, init: AttributeValue) -> &mut AttributeValue {
        self.entry(name.to_owned()).or_insert(init)
    }
}

impl Attributes for RowAttrs {
    fn attr(&self, name: &str) -> Option<&AttributeValue> {
        self.get(name)
    }
    fn attr_or_insert(&mut self, name: &str, init: AttributeValue) -> &mut AttributeValue {
        self.get_or_insert(name, init)
    }
}

/// Sets (or, for `None`, leaves out) one column of an item's `_extra` map.
pub(super) fn set_extra(item: &mut impl Attributes, column: &str, value: Option<AttributeValue>) {
    let Some(value) = value else { return };
    if let AttributeValue::M(m) = item.attr_or_insert(EXTRA_ATTR, AttributeValue::M(HashMap::new()))
    {
        m.insert(column.to_owned(), value);
    }
}

pub(super) fn extra_of(item: &impl Attributes, column: &str) -> Option<AttributeValue> {
    match item.attr(EXTRA_ATTR) {
        Some(AttributeValue::M(m)) => m.get(column).cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract;

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
}
