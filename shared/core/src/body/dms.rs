//! AWS DMS records: data (`data` + `metadata`) and control records.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Change, Format, Op, Route};
use crate::error::DecodeError;
use crate::seq::{truncate, Seq};

use super::debezium::binlog_file_number;
use super::*;

#[derive(Deserialize)]
pub(super) struct DmsRecord<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(rename = "before-image", borrow, default)]
    before_image: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: DmsMetadata<'a>,
}

#[derive(Deserialize)]
pub(super) struct DmsMetadata<'a> {
    #[serde(rename = "record-type", borrow, default)]
    record_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    operation: Option<&'a RawValue>,
    #[serde(rename = "table-name", borrow, default)]
    table_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "commit-timestamp", borrow, default)]
    commit_timestamp: Option<&'a RawValue>,
    #[serde(rename = "transaction-id", borrow, default)]
    transaction_id: Option<&'a RawValue>,
    #[serde(rename = "stream-position", borrow, default)]
    stream_position: Option<Cow<'a, str>>,
}

pub(super) fn dms(text: &str) -> Result<Change, DecodeError> {
    let r: DmsRecord<'_> = serde_json::from_str(text).map_err(|err| DecodeError::UnknownShape {
        detail: format!("not an AWS DMS record: {err}"),
    })?;
    let m = &r.metadata;
    let record_type = string_field(m.record_type, "metadata.record-type")?;
    let operation = string_field(m.operation, "metadata.operation")?;
    let table = string_field(m.table_name, "metadata.table-name")?;
    let op = match (record_type.as_ref(), operation.as_ref()) {
        ("data", "load") => Op::Snapshot,
        ("data", "insert") => Op::Insert,
        ("data", "update") => Op::Update,
        ("data", "delete") => Op::Delete,
        ("control", _) => Op::Control,
        ("data", other) => {
            return Err(DecodeError::InvalidField {
                path: "metadata.operation".into(),
                detail: format!(
                    "expected load, insert, update or delete, found {:?}",
                    truncate(other)
                ),
            })
        }
        (other, _) => {
            return Err(DecodeError::InvalidField {
                path: "metadata.record-type".into(),
                detail: format!("expected data or control, found {:?}", truncate(other)),
            })
        }
    };
    let ts_ms = match time_field(m.commit_timestamp, "metadata.commit-timestamp")? {
        Some(t) => Some(t),
        None => time_field(m.timestamp, "metadata.timestamp")?,
    };
    let seq = match dms_seq(m, ts_ms)? {
        Some(seq) => seq,
        None if op == Op::Control => Seq::parts(&[0]),
        None => {
            return Err(DecodeError::MissingSeq {
                path: "metadata.stream-position (or metadata.timestamp and transaction-id)".into(),
            })
        }
    };
    let data = opt_image(r.data, "data")?;
    let (before, after) = match op {
        Op::Delete => (data, None),
        Op::Control => (None, None),
        _ => (opt_image(r.before_image, "before-image")?, data),
    };
    if matches!(op, Op::Insert | Op::Update | Op::Snapshot) && after.is_none() {
        return Err(DecodeError::MissingField {
            path: "data".into(),
        });
    }
    Ok(Change::new(
        Route::new(Format::Dms, table.into_owned(), op, seq, ts_ms),
        None,
        before,
        after,
    ))
}

/// The engine position in `stream-position`, else the commit time in µs plus the transaction id.
pub(super) fn dms_seq(m: &DmsMetadata<'_>, ts_ms: Option<i64>) -> Result<Option<Seq>, DecodeError> {
    if let Some(parts) = m.stream_position.as_deref().and_then(parse_stream_position) {
        return Ok(Some(Seq::parts(&parts)));
    }
    let micros = [m.commit_timestamp, m.timestamp]
        .into_iter()
        .flatten()
        .find_map(|raw| {
            let s: String = serde_json::from_str(raw.get()).ok()?;
            chrono::DateTime::parse_from_rfc3339(&s)
                .ok()?
                .timestamp_micros()
                .try_into()
                .ok()
        })
        .or_else(|| ts_ms.and_then(|t| u64::try_from(t).ok()).map(|t| t * 1000));
    let Some(micros) = micros else {
        return Ok(None);
    };
    let txid = match m.transaction_id {
        Some(raw) => u64_field(raw, "metadata.transaction-id")?,
        None => 0,
    };
    Ok(Some(Seq::parts(&[micros, txid])))
}

/// Parses a DMS `stream-position` into numbers.
///
/// - Postgres: `00000002/7C007178.3.00000002/7C007178`: LSNs in hex `hi/lo`, and counters.
/// - MySQL: `mysql-bin-changelog.002171:36912271:0:…`: binlog file number, position, row.
pub(super) fn parse_stream_position(pos: &str) -> Option<Vec<u64>> {
    if pos.contains('/') {
        return pos
            .split('.')
            .map(|part| match part.split_once('/') {
                Some((hi, lo)) => {
                    let hi = u64::from_str_radix(hi, 16).ok()?;
                    let lo = u64::from_str_radix(lo, 16).ok()?;
                    Some((hi << 32) | lo)
                }
                None => part.parse().ok(),
            })
            .collect();
    }
    let mut fields = pos.split(':');
    let file_no = binlog_file_number(fields.next()?)?;
    let position: u64 = fields.next()?.parse().ok()?;
    let row = fields
        .next()
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap_or(0);
    Some(vec![file_no, position, row])
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::*;
    use super::*;

    #[test]
    fn dms_data_records_of_every_operation() {
        let rec = |op: &str, pos: &str| {
            format!(
                r#"{{"data":{{"id":100000161,"k":"1"}},"metadata":{{"timestamp":"2019-11-07T19:00:16.917871Z","record-type":"data","operation":"{op}","partition-key-type":"primary-key","schema-name":"sbtest","table-name":"sbtest_x","transaction-id":9324410911751,"stream-position":"{pos}"}}}}"#
            )
        };
        let pos = "mysql-bin-changelog.002171:36912271:0:36912333:9324410911751:mysql-bin-changelog.002171:36912209";
        for (op, expect) in [
            ("load", Op::Snapshot),
            ("insert", Op::Insert),
            ("update", Op::Update),
            ("delete", Op::Delete),
        ] {
            let c = dec(&rec(op, pos)).unwrap();
            assert_eq!(c.route.op, expect);
            assert_eq!(c.route.table, "sbtest_x");
            assert_eq!(c.route.seq, Seq::parts(&[2171, 36_912_271, 0]));
            assert_eq!(c.after.is_some(), expect != Op::Delete);
            assert_eq!(c.before.is_some(), expect == Op::Delete);
        }
        let earlier = dec(&rec("insert", "mysql-bin-changelog.002171:998:0"))
            .unwrap()
            .route
            .seq;
        let later = dec(&rec("insert", "mysql-bin-changelog.002171:1234:0"))
            .unwrap()
            .route
            .seq;
        assert!(earlier < later, "positions compare as numbers");
        let pg = dec(&rec("insert", "00000002/7C007178.3.00000002/7C007178"))
            .unwrap()
            .route
            .seq;
        let pg2 = dec(&rec("insert", "00000002/840001D8.2.00000002/840001D8"))
            .unwrap()
            .route
            .seq;
        assert!(pg < pg2);
    }

    #[test]
    fn dms_without_stream_position_orders_by_time_and_transaction() {
        let body = r#"{"data":{"id":1},"metadata":{"timestamp":"2019-11-07T19:00:16.917871Z","record-type":"data","operation":"insert","table-name":"t","transaction-id":7}}"#;
        let seq = dec(body).unwrap().route.seq;
        assert_eq!(seq, Seq::parts(&[1_573_153_216_917_871, 7]));
    }

    #[test]
    fn dms_control_record() {
        let body = r#"{"control":{"table-def":{"columns":{"id":{"type":"WSTRING","length":512,"nullable":false}},"primary-key":["id"]}},"metadata":{"timestamp":"2019-11-21T19:14:22.223792Z","record-type":"control","operation":"create-table","partition-key-type":"task-id","schema-name":"","table-name":"customer"}}"#;
        let c = dec(body).unwrap();
        assert_eq!(c.route.op, Op::Control);
        assert_eq!(c.route.table, "customer");
        assert!(c.after.is_none() && c.before.is_none());
    }
}
