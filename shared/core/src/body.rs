//! SQS message bodies: application change events, Debezium envelopes and DMS records, bare or
//! wrapped by SNS or EventBridge.
//!
//! The body is classified by its shape, looking through at most two wrappers. The raw line keeps
//! the body as it came, wrapper included; only the route is taken from the inner event.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Change, Format, Image, Op, Route};
use crate::error::DecodeError;
use crate::json::{read_str, Limits};
use crate::seq::{truncate, Seq};
use crate::time::{epoch_text_to_ms, rfc3339_to_ms};

/// How many wrappers (SNS, EventBridge) are looked through before giving up.
const MAX_WRAPPERS: usize = 2;

/// The top-level keys that tell the supported shapes apart.
#[derive(Debug, Default, Deserialize)]
struct Probe<'a> {
    #[serde(rename = "Type", borrow, default)]
    sns_type: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    sns_message: Option<Cow<'a, str>>,
    #[serde(rename = "detail-type", borrow, default)]
    detail_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<&'a RawValue>,
    #[serde(rename = "Records", borrow, default)]
    records: Option<&'a RawValue>,
    #[serde(rename = "Event", borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    table: Option<&'a RawValue>,
    #[serde(borrow, default)]
    op: Option<&'a RawValue>,
}

/// A member that is present, even when it is `null` (which `Option` alone reads as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Which wrapper a body came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapper {
    /// The event itself.
    Bare,
    /// An SNS `Notification` whose `Message` holds the event as a string.
    Sns,
    /// An EventBridge event whose `detail` holds the event.
    EventBridge,
}

/// Routes a body: format, table, op, seq and commit time.
///
/// `body` must be one JSON document (see [`crate::json::read_str`]).
pub fn route(body: &str, limits: &Limits) -> Result<Route, DecodeError> {
    decode(body, limits).map(|c| c.route)
}

/// Decodes a body into a change, images included.
pub fn decode(body: &str, limits: &Limits) -> Result<Change, DecodeError> {
    decode_wrapped(body, limits).map(|(change, _)| change)
}

/// Decodes a body and tells which wrapper it came in.
pub fn decode_wrapped(body: &str, limits: &Limits) -> Result<(Change, Wrapper), DecodeError> {
    let mut text: Cow<'_, str> = Cow::Borrowed(body);
    let mut wrapper = Wrapper::Bare;
    for _ in 0..=MAX_WRAPPERS {
        let probe = probe(&text)?;
        match unwrap(&probe, limits)? {
            Some((inner, w)) => {
                if wrapper == Wrapper::Bare {
                    wrapper = w;
                }
                text = Cow::Owned(inner);
            }
            None => return classify(&text, &probe).map(|c| (c, wrapper)),
        }
    }
    Err(DecodeError::UnknownShape {
        detail: format!("more than {MAX_WRAPPERS} nested SNS/EventBridge wrappers"),
    })
}

fn probe(text: &str) -> Result<Probe<'_>, DecodeError> {
    serde_json::from_str(text).map_err(|_| DecodeError::UnknownShape {
        detail: format!("expected a JSON object, found {}", kind_of(text)),
    })
}

/// When the probe is a wrapper, returns the inner document's text.
fn unwrap(probe: &Probe<'_>, limits: &Limits) -> Result<Option<(String, Wrapper)>, DecodeError> {
    if probe.sns_type.as_deref() == Some("Notification") {
        let message = probe
            .sns_message
            .as_deref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "Message".into(),
            })?;
        let inner = read_str(message, limits).map_err(|e| match e {
            DecodeError::NotJson { detail } => DecodeError::NotJson {
                detail: format!("SNS Message: {detail}"),
            },
            other => other,
        })?;
        return Ok(Some((inner.into_owned(), Wrapper::Sns)));
    }
    if let (Some(_), Some(detail)) = (probe.detail_type, probe.detail) {
        if probe.source.is_some_and(|s| s.get() == "\"aws.s3\"") {
            return Err(misrouted_s3("an S3 event delivered by EventBridge"));
        }
        let inner = match serde_json::from_str::<Cow<'_, str>>(detail.get()) {
            Ok(s) => read_str(&s, limits)?.into_owned(),
            Err(_) => detail.get().to_owned(),
        };
        return Ok(Some((inner, Wrapper::EventBridge)));
    }
    Ok(None)
}

fn misrouted_s3(what: &str) -> DecodeError {
    DecodeError::Misrouted {
        what: what.to_owned(),
        hint:
            "S3 notifications of the raw bucket belong on the transform queue, not the ingest queue"
                .into(),
    }
}

fn classify(text: &str, probe: &Probe<'_>) -> Result<Change, DecodeError> {
    if probe.event.as_deref() == Some("s3:TestEvent") {
        return Err(misrouted_s3("an s3:TestEvent message"));
    }
    if probe
        .records
        .is_some_and(|r| r.get().contains("\"aws:s3\""))
    {
        return Err(misrouted_s3("an S3 event notification"));
    }
    if let Some(payload) = probe.payload {
        if payload.get() == "null" {
            return Err(DecodeError::UnknownShape {
                detail: "a Debezium envelope with a null payload (a tombstone) carries no change"
                    .into(),
            });
        }
        // The schema/payload wrapper of Kafka Connect's JsonConverter; `schema` may be null.
        let mut change = debezium(payload.get()).map_err(|e| e.within("payload"))?;
        if let Some(schema) = probe.schema {
            change.logical = crate::logical::from_connect_schema(schema).map_err(|detail| {
                DecodeError::InvalidField {
                    path: "schema".into(),
                    detail,
                }
            })?;
        }
        return Ok(change);
    }
    if probe.metadata.is_some() {
        return dms(text);
    }
    if probe.source.is_some_and(|s| s.get().starts_with('{')) && probe.op.is_some() {
        return debezium(text);
    }
    if probe.table.is_some() || probe.op.is_some() {
        return app(text);
    }
    Err(DecodeError::UnknownShape {
        detail: format!(
            "expected an application change event, a Debezium envelope or a DMS record; found an object with keys {}",
            keys_of(text)
        ),
    })
}

fn kind_of(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'{') => "an object of the wrong shape",
        _ => "a number",
    }
}

fn keys_of(text: &str) -> String {
    let keys: BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(text).unwrap_or_default();
    let mut names: Vec<String> = keys.into_keys().take(8).map(|k| truncate(&k)).collect();
    if names.is_empty() {
        names.push("(none)".into());
    }
    format!("[{}]", names.join(", "))
}

/// Reads a JSON object into a column image, each column kept raw.
fn image(raw: &RawValue, path: &str) -> Result<Image, DecodeError> {
    let map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| DecodeError::InvalidField {
            path: path.to_owned(),
            detail: format!("expected an object, found {}", kind_of(raw.get())),
        })?;
    Ok(Image::Json(map))
}

fn opt_image(raw: Option<&RawValue>, path: &str) -> Result<Option<Image>, DecodeError> {
    raw.map(|r| image(r, path)).transpose()
}

fn string_field<'a>(raw: Option<&'a RawValue>, path: &str) -> Result<Cow<'a, str>, DecodeError> {
    let raw = raw.ok_or_else(|| DecodeError::MissingField {
        path: path.to_owned(),
    })?;
    let s: Cow<'a, str> =
        serde_json::from_str(raw.get()).map_err(|_| DecodeError::InvalidField {
            path: path.to_owned(),
            detail: format!("expected a string, found {}", kind_of(raw.get())),
        })?;
    if s.is_empty() {
        return Err(DecodeError::InvalidField {
            path: path.to_owned(),
            detail: "must not be empty".into(),
        });
    }
    Ok(s)
}

/// An unsigned integer from a JSON number or a numeric string.
fn u64_field(raw: &RawValue, path: &str) -> Result<u64, DecodeError> {
    let text = raw.get().trim_matches('"');
    text.parse::<u64>().map_err(|_| DecodeError::InvalidField {
        path: path.to_owned(),
        detail: format!(
            "expected a non-negative integer, found {}",
            truncate(raw.get())
        ),
    })
}

/// A commit time: RFC 3339 text or an epoch number read by magnitude.
fn time_field(raw: Option<&RawValue>, path: &str) -> Result<Option<i64>, DecodeError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    let parsed = if let Some(s) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        rfc3339_to_ms(s).or_else(|| epoch_text_to_ms(s))
    } else {
        epoch_text_to_ms(text)
    };
    parsed.map(Some).ok_or_else(|| DecodeError::InvalidField {
        path: path.to_owned(),
        detail: format!(
            "expected RFC 3339 text or epoch milliseconds, found {}",
            truncate(text)
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Application-level change events (DESIGN §3.2)

#[derive(Deserialize)]
struct AppEvent<'a> {
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

fn app(text: &str) -> Result<Change, DecodeError> {
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

// ---------------------------------------------------------------------------------------------
// Debezium

#[derive(Deserialize)]
struct DbzPayload<'a> {
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
struct DbzSource<'a> {
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

fn debezium(text: &str) -> Result<Change, DecodeError> {
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
fn debezium_seq(source: &DbzSource<'_>) -> Result<Seq, DecodeError> {
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
fn postgres_sequence(raw: &RawValue) -> Result<Vec<u64>, DecodeError> {
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
fn binlog_file_number(file: &str) -> Option<u64> {
    if file.is_empty() {
        return Some(0);
    }
    file.rsplit('.').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// AWS DMS

#[derive(Deserialize)]
struct DmsRecord<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(rename = "before-image", borrow, default)]
    before_image: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: DmsMetadata<'a>,
}

#[derive(Deserialize)]
struct DmsMetadata<'a> {
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

fn dms(text: &str) -> Result<Change, DecodeError> {
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
fn dms_seq(m: &DmsMetadata<'_>, ts_ms: Option<i64>) -> Result<Option<Seq>, DecodeError> {
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
fn parse_stream_position(pos: &str) -> Option<Vec<u64>> {
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
    use super::*;

    fn dec(body: &str) -> Result<Change, DecodeError> {
        decode(body, &Limits::default())
    }

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
    fn sns_wrapped_application_event() {
        let message = serde_json::to_string(APP).unwrap();
        let body = format!(
            "{{\n  \"Type\" : \"Notification\",\n  \"MessageId\" : \"m\",\n  \"TopicArn\" : \"arn:aws:sns:us-east-1:1:t\",\n  \"Message\" : {message}\n}}"
        );
        let (c, w) = decode_wrapped(&body, &Limits::default()).unwrap();
        assert_eq!(w, Wrapper::Sns);
        assert_eq!(c.route.table, "orders");
    }

    #[test]
    fn eventbridge_wrapped_application_event() {
        let body = format!(
            r#"{{"version":"0","id":"x","detail-type":"OrderChanged","source":"billing","account":"1","time":"2026-11-01T10:00:00Z","region":"us-east-1","resources":[],"detail":{APP}}}"#
        );
        let (c, w) = decode_wrapped(&body, &Limits::default()).unwrap();
        assert_eq!(w, Wrapper::EventBridge);
        assert_eq!(c.route.seq, Seq::decimal("42", "").unwrap());
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

    #[test]
    fn bodies_of_no_known_shape() {
        let cases = [
            (r#"{"message": "foo1"}"#, "unknown_shape"),
            ("[1,2,3]", "unknown_shape"),
            ("\"just a string\"", "unknown_shape"),
            ("42", "unknown_shape"),
            (
                r#"{"Type":"Notification","Message":"hello world"}"#,
                "not_json",
            ),
            (
                r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#,
                "misrouted",
            ),
            (
                r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put"}]}"#,
                "misrouted",
            ),
            (r#"{"schema":null,"payload":null}"#, "unknown_shape"),
        ];
        for (body, code) in cases {
            assert_eq!(dec(body).unwrap_err().code(), code, "{body}");
        }
        let err = dec(r#"{"message": "foo1"}"#).unwrap_err();
        assert!(err.to_string().contains("[message]"), "{err}");
    }

    #[test]
    fn the_published_json_schema_matches_the_decoder() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../../schemas/app-change-event.schema.json"
        ))
        .unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["table", "op", "key", "seq"]);
        // Every example in the schema decodes, and dropping any required field is refused.
        for example in schema["examples"].as_array().unwrap() {
            assert!(dec(&example.to_string()).is_ok(), "{example}");
            for field in &required {
                let mut broken = example.clone();
                broken.as_object_mut().unwrap().remove(*field);
                assert!(dec(&broken.to_string()).is_err(), "without {field}");
            }
        }
        // Every op the schema allows is accepted.
        for op in schema["properties"]["op"]["enum"].as_array().unwrap() {
            let body =
                format!(r#"{{"table":"t","op":{op},"key":{{"id":1}},"after":{{"id":1}},"seq":1}}"#);
            assert!(dec(&body).is_ok(), "{op}");
        }
    }
}
