//! One field's value, read from a change's images and typed by its contract field.

use serde_dynamo::AttributeValue;

use crate::change::{Change, Image};
use crate::contract::{Field, FieldType};
use crate::logical::Hint;
use crate::typing::{coerce_hinted, SrcRef};

use super::*;

/// Debezium's placeholder for a Postgres TOAST column that did not change and was not sent
/// (REPLICA IDENTITY DEFAULT). It is never written.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// Whether a value is Debezium's unavailable-value placeholder: as text, as the base64 of that
/// text (binary columns), or as a list holding only the placeholder (array columns).
pub(super) fn is_unavailable(value: SrcRef<'_>) -> bool {
    const TEXT: &str = "\"__debezium_unavailable_value\"";
    const BASE64: &str = "\"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\"";
    const LIST: &str = "[\"__debezium_unavailable_value\"]";
    match value {
        SrcRef::Json(raw) => matches!(raw.get(), TEXT | BASE64 | LIST),
        _ => false,
    }
}

/// What a field's source holds.
pub(super) enum Found {
    /// A typed value.
    Value(AttributeValue),
    /// Null or absent.
    Missing,
    /// Not sent: the stored value stays.
    Unchanged,
}

pub(super) fn lookup<'a>(image: &'a Image, path: &[String]) -> Option<SrcRef<'a>> {
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
pub(super) fn type_field(
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
                        field: field.name.to_string(),
                        from: field.from_path(),
                        expected: field.ty.to_string(),
                        found,
                    });
                }
            }
            return coerce_hinted(value, &field.ty, &hint, &field.name)
                .map(|v| v.map_or(Found::Missing, Found::Value))
                .map_err(|error| Violation::Type {
                    field: field.name.to_string(),
                    from: field.from_path(),
                    error: Box::new(error),
                });
        }
    }
    Ok(Found::Missing)
}
