//! Replay: transform run again over raw staging, for a table and a range of source commit
//! times, after a contract change or a decoder fix.
//!
//! Raw staging is partitioned by the source commit hour (`raw/<table>/dt=…/hr=…/`), so the
//! objects of a range are found by their keys. Each goes to transform as a replay message
//! ([`sluice_core::notification::replay_message`]) that names the object and the range, and
//! transform decides only the lines whose `ts_ms` is in it: every row of the range is rewritten,
//! and no other. The ordering guard lets a row through when its `seq` is newer, or equal under a
//! newer contract version (DESIGN §3.5); a row whose newest change lies outside the range stays
//! as it is.
//!
//! [`queue`] sends the messages to the transform queue, so Lambda spreads the work over as many
//! invocations as the mapping allows; `sluice replay --local` hands them to transform in
//! process. [`preview`] is the dry run: what each row would become, without writing.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use sluice_aws::raw_objects::RawObjects;
use sluice_aws::AwsError;
use sluice_core::decide::{decide, DecideContext, LineOutcome};
use sluice_core::json::Limits;
use sluice_core::notification::replay_message;
use sluice_core::raw::key_segment;
use sluice_core::row::{TypedRow, SEQ_ATTR, VERSION_ATTR};

use crate::contracts::ContractSet;
use crate::lines::{read_line_capped, LineRead};

/// One raw object of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes (compressed).
    pub bytes: i64,
}

/// The hour a raw key's partition names (`…/dt=2026-11-30/hr=07/…`), as epoch ms.
pub fn hour_of_key(key: &str) -> Option<i64> {
    let dt = key.split("/dt=").nth(1)?.get(..10)?;
    let hr = key.split("/hr=").nth(1)?.get(..2)?;
    sluice_core::time::rfc3339_to_ms(&format!("{dt}T{hr}:00:00Z"))
}

/// The raw objects of `table` with lines in `[since_ms, until_ms)`: those of every hour the
/// range touches.
pub async fn objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    table: &str,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Vec<RawObject>, AwsError> {
    let prefix = format!("raw/{}/", key_segment(table));
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("ListObjectsV2", format!("s3://{bucket}/{prefix}"), e)
            })?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let hour = hour_of_key(key);
            let touches = hour.is_none_or(|h| {
                since_ms.is_none_or(|s| h + 3_600_000 > s) && until_ms.is_none_or(|u| h < u)
            });
            if touches {
                out.push(RawObject {
                    key: key.to_owned(),
                    bytes: o.size().unwrap_or_default(),
                });
            }
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The replay messages of these objects.
pub fn messages(
    bucket: &str,
    objects: &[RawObject],
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Vec<String> {
    objects
        .iter()
        .map(|o| replay_message(&format!("s3://{bucket}/{}", o.key), since_ms, until_ms))
        .collect()
}

/// Sends replay messages to the transform queue, ten at a time; `progress` gets the count sent.
pub async fn queue(
    sqs: &aws_sdk_sqs::Client,
    transform_queue_url: &str,
    messages: &[String],
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<usize, AwsError> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let mut sent = 0;
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .ok()
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(transform_queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SendMessageBatch", transform_queue_url, e))?;
        if let Some(f) = out.failed().first() {
            return Err(AwsError::local(
                "SendMessageBatch",
                transform_queue_url,
                format!(
                    "{} of {} replay message(s) refused ({}: {}); {sent} were sent, run the replay \
                     again (it is idempotent)",
                    out.failed().len(),
                    chunk.len(),
                    f.code(),
                    f.message().unwrap_or_default()
                ),
            ));
        }
        sent += chunk.len();
        crate::failpoint::hit("replay.after_batch");
        progress(sent);
    }
    Ok(sent)
}

/// What a replay would do, per typed table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Preview {
    /// Lines in the range.
    pub lines: usize,
    /// Per typed table.
    pub tables: BTreeMap<String, TablePreview>,
    /// Lines that would fail (dead letters), by error code.
    pub fails: BTreeMap<String, usize>,
    /// The first failures, for people.
    pub first_failures: Vec<String>,
}

/// What a replay would do to one typed table's rows.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TablePreview {
    /// Rows whose fields would change.
    pub change: usize,
    /// Rows that would be rewritten with the same fields (only the contract version moves).
    pub same_fields: usize,
    /// Rows that stay as they are: the same change under the same (or a newer) version.
    pub equal: usize,
    /// Rows where a newer change (outside the range) stands.
    pub newer_stands: usize,
}

/// Reads the stored rows: the typed tables, named `<prefix><contract>`.
pub struct StoredRows<'a> {
    /// DynamoDB.
    pub ddb: &'a aws_sdk_dynamodb::Client,
    /// The typed tables' prefix.
    pub prefix: &'a str,
}

/// A range of source commit times, `[since_ms, until_ms)`; an end not given is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// From (epoch ms).
    pub since_ms: Option<i64>,
    /// Until (epoch ms), excluded.
    pub until_ms: Option<i64>,
}

/// The dry run: every line of the range decided under the current contracts, the newest row of
/// each key compared with the stored one. Nothing is written.
pub async fn preview<O: RawObjects>(
    objects: &O,
    bucket: &str,
    keys: &[RawObject],
    Range { since_ms, until_ms }: Range,
    contracts: &ContractSet,
    limits: &Limits,
    stored: &StoredRows<'_>,
) -> Result<Preview, AwsError> {
    let mut p = Preview::default();
    let mut newest: HashMap<(String, String), TypedRow> = HashMap::new();
    let cx = DecideContext {
        contracts,
        limits,
        tombstone_expires_at: 0,
    };
    for o in keys {
        let mut reader = objects.open(bucket, &o.key).await?;
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            buf.clear();
            let read = read_line_capped(&mut reader, &mut buf, limits.max_record_bytes)
                .await
                .map_err(|e| AwsError::local("GetObject", format!("s3://{bucket}/{}", o.key), e))?;
            n += 1;
            let text = match read {
                LineRead::Eof => break,
                LineRead::TooLong(size) => {
                    p.lines += 1;
                    fail(
                        &mut p,
                        "too_large",
                        format!("s3://{bucket}/{}#L{n}: {size} bytes", o.key),
                    );
                    continue;
                }
                LineRead::Line if buf.iter().all(u8::is_ascii_whitespace) => continue,
                LineRead::Line => String::from_utf8_lossy(&buf).into_owned(),
            };
            let raw_ref = format!("s3://{bucket}/{}#L{n}", o.key);
            let outcome = decide(&text, &raw_ref, &cx);
            let line_ts = match &outcome {
                LineOutcome::NotARawLine(_) => None,
                LineOutcome::Undecodable { line, .. }
                | LineOutcome::Control { line, .. }
                | LineOutcome::Truncate { line, .. }
                | LineOutcome::NoContract { line, .. }
                | LineOutcome::Typed { line, .. } => Some(line.ts_ms),
            };
            if let Some(ts) = line_ts {
                if since_ms.is_some_and(|s| ts < s) || until_ms.is_some_and(|u| ts >= u) {
                    continue;
                }
            }
            p.lines += 1;
            match outcome {
                LineOutcome::NotARawLine(e) | LineOutcome::Undecodable { error: e, .. } => {
                    fail(&mut p, e.code(), format!("{raw_ref}: {e}"));
                }
                LineOutcome::Control { .. } => {}
                LineOutcome::Truncate { .. } => {
                    fail(
                        &mut p,
                        "source_truncated",
                        format!("{raw_ref}: a source truncate"),
                    );
                }
                LineOutcome::NoContract { change, .. } => fail(
                    &mut p,
                    "no_contract",
                    format!(
                        "{raw_ref}: no contract takes table {:?}",
                        change.route.table
                    ),
                ),
                LineOutcome::Typed { results, .. } => {
                    for r in results {
                        match r.rows {
                            Err(v) => fail(
                                &mut p,
                                v.code(),
                                format!(
                                    "{raw_ref}: contract {} v{}: {v}",
                                    r.contract.name, r.contract.version
                                ),
                            ),
                            Ok(rows) => {
                                for row in rows {
                                    let id = (row.table.clone(), row.key_id());
                                    let keep = newest.get(&id).is_none_or(|old| row.seq > old.seq);
                                    if keep {
                                        newest.insert(id, row);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let compared: Vec<(String, Verdict)> = stream::iter(newest.into_values())
        .map(|row| async move {
            let v = compare(stored, &row).await;
            v.map(|v| (row.table.clone(), v))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    for (table, v) in compared {
        let t = p.tables.entry(table).or_default();
        match v {
            Verdict::Change => t.change += 1,
            Verdict::SameFields => t.same_fields += 1,
            Verdict::Equal => t.equal += 1,
            Verdict::NewerStands => t.newer_stands += 1,
        }
    }
    Ok(p)
}

fn fail(p: &mut Preview, code: &str, what: String) {
    *p.fails.entry(code.to_owned()).or_default() += 1;
    if p.first_failures.len() < 10 {
        p.first_failures.push(what);
    }
}

enum Verdict {
    Change,
    SameFields,
    Equal,
    NewerStands,
}

/// What the guarded write of `row` would do to the stored row.
async fn compare(stored: &StoredRows<'_>, row: &TypedRow) -> Result<Verdict, AwsError> {
    let table = format!("{}{}", stored.prefix, row.table);
    let key: HashMap<String, AttributeValue> = row
        .key
        .iter()
        .map(|(k, v)| (k.clone(), AttributeValue::from(v.clone())))
        .collect();
    let item = stored
        .ddb
        .get_item()
        .table_name(&table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetItem", table.clone(), e))?
        .item;
    let Some(item) = item else {
        return Ok(Verdict::Change);
    };
    let text = |k: &str| match item.get(k) {
        Some(AttributeValue::S(s) | AttributeValue::N(s)) => Some(s.clone()),
        _ => None,
    };
    let stored_seq = text(SEQ_ATTR).unwrap_or_default();
    let stored_version: u64 = text(VERSION_ATTR)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let seq = row.seq.as_str();
    Ok(match stored_seq.as_str().cmp(seq) {
        std::cmp::Ordering::Greater => Verdict::NewerStands,
        std::cmp::Ordering::Equal if stored_version >= row.version => Verdict::Equal,
        _ => {
            let own = row.own_item();
            let fields_equal = own.iter().all(|(k, v)| {
                bookkeeping(k) || item.get(k) == Some(&AttributeValue::from(v.clone()))
            }) && item.keys().all(|k| bookkeeping(k) || own.contains_key(k));
            if fields_equal {
                Verdict::SameFields
            } else {
                Verdict::Change
            }
        }
    })
}

/// Attributes that say where a row came from rather than what it holds.
fn bookkeeping(name: &str) -> bool {
    use sluice_core::row::{EXPIRES_ATTR, OP_ATTR, RAW_ATTR, SOURCE_TS_ATTR, VSEQ_PREFIX};
    [
        SEQ_ATTR,
        OP_ATTR,
        SOURCE_TS_ATTR,
        VERSION_ATTR,
        RAW_ATTR,
        EXPIRES_ATTR,
    ]
    .contains(&name)
        || name.starts_with(VSEQ_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_hour() {
        assert_eq!(
            hour_of_key("raw/orders/dt=2026-11-30/hr=07/abc.ndjson.gz"),
            sluice_core::time::rfc3339_to_ms("2026-11-30T07:00:00Z")
        );
        assert_eq!(hour_of_key("raw/orders/abc.ndjson.gz"), None);
        assert_eq!(hour_of_key("raw/orders/dt=2026-11-30/hr=x"), None);
    }
}
