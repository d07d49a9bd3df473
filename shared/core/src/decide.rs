//! The per-line decision: what one raw line of staging becomes under the contracts.
//!
//! One synchronous function, [`decide`], with no I/O, in the spirit of Vector's
//! `FunctionTransform`. Transform calls it for every line it reads and writes or dead-letters
//! what it says; the audit calls it to know what every line must have become; replay and
//! redrive dry runs call it to show what they would do. So the rule exists once:
//!
//! 1. the line must read as a raw line;
//! 2. its record is decoded again by its format, so a decoder fix applies on replay (the landed
//!    `seq` is used only where part of the order is outside the record: `ddb-kinesis`);
//! 3. control records touch no row, and a truncate is for a person to act on;
//! 4. every contract fed by the change's table and format types it into rows (the row, and
//!    for an update that moves a key, the old key's tombstone), or refuses it.

use std::sync::Arc;

use crate::body;
use crate::change::{Change, Format, Op};
use crate::contract::Contract;
use crate::contract_set::ContractSet;
use crate::ddb;
use crate::error::DecodeError;
use crate::json::{check_surrogates, Limits};
use crate::raw::RawLineView;
use crate::row::{old_key_tombstone, type_change, RowMeta, TypedRow, Violation};

/// What one raw line becomes.
#[derive(Debug)]
pub enum LineOutcome<'a> {
    /// The line is not a raw line: not JSON, or not of a raw line's shape.
    NotARawLine(DecodeError),
    /// A raw line whose record cannot be decoded by its format.
    Undecodable {
        /// The line.
        line: RawLineView<'a>,
        /// Why.
        error: DecodeError,
        /// The contracts the line's table and format feed.
        contracts: Vec<Arc<Contract>>,
    },
    /// A record about the source rather than a row (DMS control, Debezium messages).
    Control {
        /// The line.
        line: RawLineView<'a>,
        /// The contracts the line's table and format feed.
        contracts: Vec<Arc<Contract>>,
    },
    /// The source table was truncated: never applied automatically, a person decides.
    Truncate {
        /// The line.
        line: RawLineView<'a>,
        /// The decoded change.
        change: Change,
        /// The contracts the change's table and format feed.
        contracts: Vec<Arc<Contract>>,
    },
    /// No contract takes the change's table and format.
    NoContract {
        /// The line.
        line: RawLineView<'a>,
        /// The decoded change.
        change: Change,
    },
    /// The change typed under each contract that takes it.
    Typed {
        /// The line.
        line: RawLineView<'a>,
        /// The decoded change.
        change: Change,
        /// One result per contract.
        results: Vec<ContractResult>,
    },
}

/// A change under one contract.
#[derive(Debug)]
pub struct ContractResult {
    /// The contract.
    pub contract: Arc<Contract>,
    /// The rows the change writes (its row, then the old key's tombstone when an update moved
    /// the key), none when it touches no row, or why the contract refuses it.
    pub rows: Result<Vec<TypedRow>, Violation>,
}

/// What a decision needs besides the line.
#[derive(Debug, Clone, Copy)]
pub struct DecideContext<'a> {
    /// The contracts.
    pub contracts: &'a ContractSet,
    /// Bounds on the record.
    pub limits: &'a Limits,
    /// When a tombstone written now would expire, epoch seconds.
    pub tombstone_expires_at: i64,
}

/// Decides what the raw line `text`, found at `raw_ref`, becomes.
pub fn decide<'a>(text: &'a str, raw_ref: &str, cx: &DecideContext<'_>) -> LineOutcome<'a> {
    // A line as sluice writes it has its record read once, by its format. Anything that does
    // not read so is read again carefully, which says what is wrong.
    if let Some(line) = RawLineView::quick(text) {
        if let Ok(change) = decode_record(&line, cx.limits) {
            return decide_change(line, change, raw_ref, cx);
        }
    }
    decide_carefully(text, raw_ref, cx)
}

/// [`decide`] with the line read whole by `serde_json`.
fn decide_carefully<'a>(text: &'a str, raw_ref: &str, cx: &DecideContext<'_>) -> LineOutcome<'a> {
    let line: RawLineView<'a> = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(e) => {
            return LineOutcome::NotARawLine(match e.classify() {
                serde_json::error::Category::Data => DecodeError::UnknownShape {
                    detail: format!("not a raw line: {e}"),
                },
                _ => DecodeError::NotJson {
                    detail: e.to_string(),
                },
            })
        }
    };
    match decode_record(&line, cx.limits) {
        Ok(change) => decide_change(line, change, raw_ref, cx),
        Err(error) => {
            let contracts = cx.contracts.for_source(&line.table, line.format);
            LineOutcome::Undecodable {
                line,
                error,
                contracts,
            }
        }
    }
}

/// What a decoded change becomes (steps 3 and 4).
fn decide_change<'a>(
    line: RawLineView<'a>,
    change: Change,
    raw_ref: &str,
    cx: &DecideContext<'_>,
) -> LineOutcome<'a> {
    let contracts = cx
        .contracts
        .for_source(&change.route.table, change.route.format);
    match change.route.op {
        Op::Control => return LineOutcome::Control { line, contracts },
        Op::Truncate => {
            return LineOutcome::Truncate {
                line,
                change,
                contracts,
            }
        }
        _ => {}
    }
    if contracts.is_empty() {
        return LineOutcome::NoContract { line, change };
    }
    let meta = RowMeta {
        raw_ref: raw_ref.to_owned(),
        ts_ms: line.ts_ms,
        tombstone_expires_at: cx.tombstone_expires_at,
    };
    let results = contracts
        .into_iter()
        .map(|contract| {
            let rows = type_change(&change, &contract, &meta).map(|row| match row {
                None => Vec::new(),
                Some(row) => {
                    let old = old_key_tombstone(&change, &contract, &meta, &row);
                    std::iter::once(row).chain(old).collect()
                }
            });
            ContractResult { contract, rows }
        })
        .collect();
    LineOutcome::Typed {
        line,
        change,
        results,
    }
}

/// Decodes a raw line's record again by its format.
///
/// A lone surrogate is refused here too, as ingest refuses it: raw staging written before that
/// check, or by other tools, may hold one.
pub fn decode_record(line: &RawLineView<'_>, limits: &Limits) -> Result<Change, DecodeError> {
    let text = line.record;
    check_surrogates(text)?;
    match line.format {
        // Read in one pass when it can be; the careful reading says what is wrong otherwise.
        Format::DdbStream => match ddb::StreamRecord::parse_decoded(text) {
            Some(record) => record.decode(),
            None => ddb::StreamRecord::parse(text)?.decode(),
        },
        Format::App | Format::Debezium | Format::Dms => body::decode(text, limits),
        Format::DdbKinesis => crate::kinesis::decode_line(text, &line.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, required: true}\n";

    fn line(record: &str) -> String {
        format!(
            r#"{{"v":1,"format":"app","table":"people","op":"insert","seq":"0000000000000000000000000000000000000001","ts_ms":1,"ts_source":"source","ingested_ms":1,"origin":{{"kind":"sqs","arn":"a","id":"m"}},"record":{record}}}"#
        )
    }

    fn run(text: &str) -> LineOutcome<'_> {
        let set = ContractSet::from_files([("people.yaml".to_owned(), CONTRACT.to_owned())]);
        decide(
            text,
            "s3://raw/k#L1",
            &DecideContext {
                contracts: &set,
                limits: &Limits::default(),
                tombstone_expires_at: 9,
            },
        )
    }

    #[test]
    fn every_kind_of_line_is_decided_once() {
        assert!(matches!(
            run("not json"),
            LineOutcome::NotARawLine(e) if e.code() == "not_json"
        ));
        assert!(matches!(
            run(r#"{"hello":1}"#),
            LineOutcome::NotARawLine(e) if e.code() == "unknown_shape"
        ));
        assert!(matches!(
            run(&line(r#"{"table":"people","op":"insert","seq":1}"#)),
            LineOutcome::Undecodable { error, contracts, .. } if error.code() == "missing_field" && contracts.len() == 1
        ));
        assert!(matches!(
            run(&line(
                r#"{"table":"strangers","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#
            )),
            LineOutcome::NoContract { .. }
        ));
        let LineOutcome::Typed { results, .. } = run(&line(
            r#"{"table":"people","op":"insert","key":{"id":1},"after":{"id":1,"email":"a@x"},"seq":1}"#,
        )) else {
            panic!("typed")
        };
        assert_eq!(results.len(), 1);
        let rows = results[0].rows.as_ref().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].key_id(),
            results[0].rows.as_ref().unwrap()[0].key_id()
        );
        let LineOutcome::Typed { results, .. } = run(&line(
            r#"{"table":"people","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#,
        )) else {
            panic!("typed")
        };
        assert!(
            matches!(&results[0].rows, Err(Violation::Missing { field, .. }) if field == "email")
        );
    }

    #[test]
    fn a_line_read_quickly_is_decided_as_a_line_read_carefully() {
        // Every single-byte change of a line, and lines of other shapes: the outcome is the
        // same whichever way the line is read.
        let base = line(
            r#"{"table":"people","op":"update","key":{"id":2},"after":{"id":2,"email":"a\"}{@x"},"seq":1}"#,
        );
        let reordered = base.replacen(r#"{"v":1,"#, r#"{"v":1,"record":{"table":"people","op":"insert","key":{"id":1},"after":{"id":1,"email":"b"},"seq":2},"#, 1);
        let mut texts = vec![
            base.clone(),
            reordered,
            format!("{base}  "),
            base.replace(',', " , "),
        ];
        for i in 0..base.len() {
            for b in [b'"', b'}', b',', b'\\', b' ', b'x', b'1', b'{', b':'] {
                let mut bytes = base.as_bytes().to_vec();
                bytes[i] = b;
                if let Ok(text) = String::from_utf8(bytes) {
                    texts.push(text);
                }
            }
        }
        let set = ContractSet::from_files([("people.yaml".to_owned(), CONTRACT.to_owned())]);
        let cx = DecideContext {
            contracts: &set,
            limits: &Limits::default(),
            tombstone_expires_at: 9,
        };
        let mut typed = 0;
        for text in &texts {
            let quick = format!("{:?}", decide(text, "s3://raw/k#L1", &cx));
            let careful = format!("{:?}", decide_carefully(text, "s3://raw/k#L1", &cx));
            assert_eq!(quick, careful, "{text}");
            typed += usize::from(quick.starts_with("Typed"));
        }
        assert!(typed > 50, "{typed}");
    }

    #[test]
    fn an_update_that_moves_its_key_writes_the_old_keys_tombstone_too() {
        let LineOutcome::Typed { results, .. } = run(&line(
            r#"{"table":"people","op":"update","key":{"id":2},"before":{"id":1,"email":"a@x"},"after":{"id":2,"email":"a@x"},"seq":1}"#,
        )) else {
            panic!("typed")
        };
        let rows = results[0].rows.as_ref().unwrap();
        assert_eq!(rows.len(), 2);
        assert!(!rows[0].is_tombstone() && rows[1].is_tombstone());
    }
}
