//! Debezium change event envelopes, with or without the `schema`/`payload` wrapper.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Change, Format, Op, Route};
use crate::error::DecodeError;
use crate::seq::{truncate, Seq};

use super::*;

#[derive(Deserialize)]
pub(super) struct DbzPayload<'a> {
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<DbzSource<'a>>,
    #[serde(borrow, default)]
    op: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts_ms: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct DbzSource<'a> {
    #[serde(borrow, default)]
    connector: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    table: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lsn: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sequence: Option<&'a RawValue>,
    #[serde(borrow, default)]
    file: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pos: Option<&'a RawValue>,
    #[serde(borrow, default)]
    row: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts_ms: Option<&'a RawValue>,
}

pub(super) fn debezium(text: &str) -> Result<Change, DecodeError> {
    let p: DbzPayload<'_> =
        serde_json::from_str(text).map_err(|err| DecodeError::UnknownShape {
            detail: format!("not a Debezium change event: {err}"),
        })?;
    let source = p.source.ok_or_else(|| DecodeError::MissingField {
        path: "source".into(),
    })?;
    let table = string_field(source.table, "source.table")?;
    let op = match string_field(p.op, "op")?.as_ref() {
        "c" => Op::Insert,
        "u" => Op::Update,
        "d" => Op::Delete,
        "r" => Op::Snapshot,
        "t" => Op::Truncate,
        "m" => Op::Control,
        other => {
            return Err(DecodeError::InvalidField {
                path: "op".into(),
                detail: format!("expected c, u, d, r, t or m, found {:?}", truncate(other)),
            })
        }
    };
    let seq = debezium_seq(&source)?;
    let commit = time_field(source.ts_ms, "source.ts_ms")?.filter(|&t| t > 0);
    let ts_ms = match commit {
        Some(t) => Some(t),
        None => time_field(p.ts_ms, "ts_ms")?,
    };
    let before = opt_image(p.before, "before")?;
    let after = opt_image(p.after, "after")?;
    if matches!(op, Op::Insert | Op::Update | Op::Snapshot) && after.is_none() {
        return Err(DecodeError::MissingField {
            path: "after".into(),
        });
    }
    if op == Op::Delete && before.is_none() {
        return Err(DecodeError::InvalidField {
            path: "before".into(),
            detail:
                "a delete with neither `before` nor `after` cannot name its row; give the table a \
                     primary key or set REPLICA IDENTITY FULL"
                    .into(),
        });
    }
    Ok(Change::new(
        Route::new(Format::Debezium, table.into_owned(), op, seq, ts_ms),
        None,
        before,
        after,
    ))
}

/// Postgres: `source.sequence` (the last commit LSN, then the LSN) when present, else the `lsn`.
/// MySQL: the binlog `(file number, pos, row)`.
pub(super) fn debezium_seq(source: &DbzSource<'_>) -> Result<Seq, DecodeError> {
    let connector = source.connector.as_deref().unwrap_or_default();
    if let Some(sequence) = source
        .sequence
        .filter(|s| s.get() != "null" && connector != "mysql")
    {
        return postgres_sequence(sequence).map(|parts| Seq::parts(&parts));
    }
    if let Some(lsn) = source.lsn.filter(|_| connector != "mysql") {
        return Ok(Seq::parts(&[u64_field(lsn, "source.lsn")?]));
    }
    if let (Some(file), Some(pos)) = (source.file.as_deref(), source.pos) {
        let file_no = binlog_file_number(file).ok_or_else(|| DecodeError::InvalidField {
            path: "source.file".into(),
            detail: format!(
                "expected a binlog file name ending in a number, found {:?}",
                truncate(file)
            ),
        })?;
        let row = source
            .row
            .map(|r| u64_field(r, "source.row"))
            .transpose()?
            .unwrap_or(0);
        return Ok(Seq::parts(&[file_no, u64_field(pos, "source.pos")?, row]));
    }
    let path = match connector {
        "mysql" => "source.pos",
        "postgresql" => "source.lsn",
        _ => "source.lsn or source.file/pos",
    };
    Err(DecodeError::MissingSeq { path: path.into() })
}

/// Postgres's `source.sequence`: a JSON array, inside a string, of the last commit LSN and the
/// change's LSN, each a decimal string or null (`"[\"22910216\",\"22910504\"]"`). A null
/// counts as 0.
pub(super) fn postgres_sequence(raw: &RawValue) -> Result<Vec<u64>, DecodeError> {
    let invalid = |detail: String| DecodeError::InvalidField {
        path: "source.sequence".into(),
        detail,
    };
    let text: Cow<'_, str> = serde_json::from_str(raw.get())
        .map_err(|_| invalid("expected a string holding a JSON array of LSNs".into()))?;
    let items: Vec<Option<&RawValue>> = serde_json::from_str(&text).map_err(|_| {
        invalid(format!(
            "expected a JSON array of LSNs, found {:?}",
            truncate(&text)
        ))
    })?;
    if items.is_empty() || items.len() > 2 {
        return Err(invalid(format!(
            "expected [last commit LSN, LSN], found {} entries",
            items.len()
        )));
    }
    let mut parts = Vec::with_capacity(2);
    for item in &items {
        parts.push(match item {
            None => 0,
            Some(raw) => u64_field(raw, "source.sequence")?,
        });
    }
    if parts.len() == 1 {
        parts.insert(0, 0);
    }
    Ok(parts)
}

/// `mysql-bin.000003` is file 3. An empty name (as some snapshot tools write) is file 0.
pub(super) fn binlog_file_number(file: &str) -> Option<u64> {
    if file.is_empty() {
        return Some(0);
    }
    file.rsplit('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::*;
    use super::*;

    const DBZ_PG: &str = r#"{"before":null,"after":{"id":1,"first_name":"Anne"},"source":{"version":"2.5.0.Final","connector":"postgresql","name":"PostgreSQL_server","ts_ms":1559033904863,"snapshot":"false","db":"postgres","sequence":"[\"24023119\",\"24023128\"]","schema":"public","table":"customers","txId":555,"lsn":24023128,"xmin":null},"op":"c","ts_ms":1559033904863}"#;

    #[test]
    fn debezium_postgres_without_schema() {
        let c = dec(DBZ_PG).unwrap();
        assert_eq!(c.route.format, Format::Debezium);
        assert_eq!(c.route.table, "customers");
        assert_eq!(c.route.op, Op::Insert);
        assert_eq!(c.route.seq, Seq::parts(&[24_023_119, 24_023_128]));
        assert_eq!(c.route.ts_ms, Some(1_559_033_904_863));
    }

    #[test]
    fn debezium_postgres_with_schema_wrapper_and_null_schema() {
        let with = format!(
            r#"{{"schema":{{"type":"struct","fields":[],"optional":false,"name":"x.Envelope"}},"payload":{DBZ_PG}}}"#
        );
        assert_eq!(dec(&with).unwrap().route.table, "customers");
        let null_schema = format!(r#"{{"schema":null,"payload":{DBZ_PG}}}"#);
        assert_eq!(
            dec(&null_schema).unwrap().route.seq,
            Seq::parts(&[24_023_119, 24_023_128])
        );
    }

    #[test]
    fn debezium_mysql_binlog_positions_order_numerically() {
        let mysql = |file: &str, pos: u64| {
            format!(
                r#"{{"before":{{"id":1}},"after":{{"id":1,"v":2}},"source":{{"connector":"mysql","name":"m","ts_ms":1700000000000,"db":"inventory","table":"products","server_id":223344,"file":"{file}","pos":{pos},"row":0}},"op":"u","ts_ms":1700000000001}}"#
            )
        };
        let a = dec(&mysql("mysql-bin.000003", 998)).unwrap().route.seq;
        let b = dec(&mysql("mysql-bin.000003", 1234)).unwrap().route.seq;
        let c = dec(&mysql("mysql-bin.000010", 4)).unwrap().route.seq;
        assert!(a < b && b < c);
        let wrapped = format!(
            r#"{{"schema":{{}},"payload":{}}}"#,
            mysql("mysql-bin.000003", 998)
        );
        assert_eq!(dec(&wrapped).unwrap().route.seq, a);
    }

    #[test]
    fn debezium_delete_without_any_image_names_replica_identity() {
        let body = r#"{"before":null,"after":null,"source":{"connector":"postgresql","table":"products","lsn":34078720},"op":"d","ts_ms":1}"#;
        let err = dec(body).unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert!(err.to_string().contains("REPLICA IDENTITY FULL"), "{err}");
        let key_only = r#"{"before":{"id":1},"after":null,"source":{"connector":"postgresql","table":"products","lsn":46523128},"op":"d","ts_ms":1}"#;
        let c = dec(key_only).unwrap();
        assert_eq!(c.route.op, Op::Delete);
        assert!(c.before.is_some_and(|b| b.contains("id")));
    }

    #[test]
    fn debezium_without_position_is_missing_seq() {
        let body = r#"{"before":null,"after":{"id":1},"source":{"connector":"postgresql","table":"t"},"op":"c"}"#;
        assert_eq!(dec(body).unwrap_err().code(), "missing_seq");
    }
}
