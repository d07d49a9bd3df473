//! Application-level change events (DESIGN §3.2).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Change, Format, Op, Route};
use crate::error::DecodeError;
use crate::seq::{truncate, Seq};

use super::*;

#[derive(Deserialize)]
pub(super) struct AppEvent<'a> {
    #[serde(borrow, default)]
    table: Option<&'a RawValue>,
    #[serde(borrow, default)]
    op: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    seq: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
}

pub(super) fn app(text: &str) -> Result<Change, DecodeError> {
    let e: AppEvent<'_> = serde_json::from_str(text).map_err(|err| DecodeError::UnknownShape {
        detail: format!("not an application change event: {err}"),
    })?;
    let table = string_field(e.table, "table")?;
    let op = match string_field(e.op, "op")?.as_ref() {
        "insert" | "c" => Op::Insert,
        "update" | "u" => Op::Update,
        "delete" | "d" => Op::Delete,
        "snapshot" | "r" => Op::Snapshot,
        other => {
            return Err(DecodeError::InvalidField {
                path: "op".into(),
                detail: format!(
                    "expected insert, update, delete or snapshot (or c, u, d, r), found {:?}",
                    truncate(other)
                ),
            })
        }
    };
    let key = e
        .key
        .ok_or_else(|| DecodeError::MissingField { path: "key".into() })?;
    let key = image(key, "key")?;
    if key.is_empty() {
        return Err(DecodeError::InvalidField {
            path: "key".into(),
            detail: "must name at least one key column".into(),
        });
    }
    let seq_raw = e
        .seq
        .ok_or_else(|| DecodeError::MissingSeq { path: "seq".into() })?;
    let seq_text: Cow<'_, str> = if seq_raw.get().starts_with('"') {
        serde_json::from_str(seq_raw.get()).map_err(|_| DecodeError::InvalidField {
            path: "seq".into(),
            detail: "unreadable string".into(),
        })?
    } else {
        Cow::Borrowed(seq_raw.get())
    };
    let seq = Seq::decimal(&seq_text, "seq")?;
    let after = opt_image(e.after, "after")?;
    if matches!(op, Op::Insert | Op::Update | Op::Snapshot) && after.is_none() {
        return Err(DecodeError::MissingField {
            path: "after".into(),
        });
    }
    let before = opt_image(e.before, "before")?;
    // The key names the row the change is about: the new image's row for an upsert (an update
    // may move a row, so the old image may hold another key), the old one's for a delete.
    let (image, image_path) = if op == Op::Delete {
        (before.as_ref(), "before")
    } else {
        (after.as_ref(), "after")
    };
    if let Some(column) = image.and_then(|i| i.disagrees_with(&key)) {
        return Err(DecodeError::KeyMismatch {
            key: format!("key.{column}"),
            image: format!("{image_path}.{column}"),
        });
    }
    Ok(Change::new(
        Route::new(
            Format::App,
            table.into_owned(),
            op,
            seq,
            time_field(e.ts, "ts")?,
        ),
        Some(key),
        before,
        after,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::*;
    use super::*;

    const APP: &str = r#"{"table":"orders","op":"update","key":{"order_id":"o-1"},"before":null,"after":{"order_id":"o-1","total":12345678901234567890.123},"seq":42,"ts":"2026-11-01T10:00:00Z","source":"billing"}"#;

    #[test]
    fn bare_application_event() {
        let c = dec(APP).unwrap();
        assert_eq!(c.route.format, Format::App);
        assert_eq!(c.route.table, "orders");
        assert_eq!(c.route.op, Op::Update);
        assert_eq!(c.route.seq, Seq::decimal("42", "").unwrap());
        assert_eq!(c.route.ts_ms, rfc3339_to_ms("2026-11-01T10:00:00Z"));
        let Some(Image::Json(after)) = c.after else {
            panic!()
        };
        assert_eq!(
            after["total"].get(),
            "12345678901234567890.123",
            "literal kept exactly"
        );
    }

    #[test]
    fn application_event_op_letters_string_seq_and_epoch_ts() {
        let body = r#"{"table":"t","op":"d","key":{"id":1},"seq":"000042","ts":1795520000123}"#;
        let c = dec(body).unwrap();
        assert_eq!(c.route.op, Op::Delete);
        assert_eq!(c.route.seq, Seq::decimal("42", "").unwrap());
        assert_eq!(c.route.ts_ms, Some(1_795_520_000_123));
    }

    #[test]
    fn application_event_without_seq_is_missing_seq() {
        let body = r#"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1}}"#;
        assert_eq!(
            dec(body).unwrap_err(),
            DecodeError::MissingSeq { path: "seq".into() }
        );
    }

    #[test]
    fn application_event_errors_name_the_field() {
        let cases = [
            (
                r#"{"table":"t","op":"upsert","key":{"id":1},"seq":1}"#,
                "op",
            ),
            (
                r#"{"table":"","op":"insert","key":{"id":1},"seq":1}"#,
                "table",
            ),
            (r#"{"table":"t","op":"insert","seq":1,"after":{}}"#, "key"),
            (
                r#"{"table":"t","op":"insert","key":{"id":1},"seq":1}"#,
                "after",
            ),
            (
                r#"{"table":"t","op":"insert","key":{"id":1},"seq":-3,"after":{}}"#,
                "seq",
            ),
            (
                r#"{"table":"t","op":"insert","key":{"id":1},"seq":1,"after":{},"ts":"soon"}"#,
                "ts",
            ),
        ];
        for (body, field) in cases {
            let err = dec(body).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{field}`")),
                "{body}: {err}"
            );
        }
    }
}
