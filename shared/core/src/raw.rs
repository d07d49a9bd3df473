//! Raw lines and raw objects: the lossless staging layer (DESIGN §3.1).
//!
//! A raw line wraps one source record, unchanged, with what is needed to route and order it.
//! Lines are grouped by table and by the UTC hour of the source commit, and each group is written
//! as one gzip NDJSON object under `raw/<table>/dt=YYYY-MM-DD/hr=HH/<batch-id>.ndjson.gz`.
//! The batch id is a hash of the group's origin ids, so the same batch delivered again writes the
//! same key instead of a duplicate.

use std::borrow::Cow;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::change::{Format, Op, Route};
use crate::error::DecodeError;
use crate::seq::Seq;
use crate::time::partition;

mod quick;

/// The version of the raw line format.
pub const RAW_LINE_VERSION: u8 = 1;

/// The prefix under which raw objects are written.
pub const RAW_PREFIX: &str = "raw/";

/// Where the commit time of a raw line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TsSource {
    /// The source's own commit time.
    Source,
    /// The source carried none; this is the time ingest received it.
    Arrival,
}

/// Which kind of event source delivered a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    /// A DynamoDB stream.
    Ddb,
    /// A Kinesis data stream.
    Kinesis,
    /// An SQS queue.
    Sqs,
}

/// Where a record came from: its event source and its id there.
#[derive(Debug, Clone, Serialize)]
pub struct Origin<'a> {
    /// The kind of event source.
    pub kind: OriginKind,
    /// The ARN of the stream or queue.
    pub arn: Cow<'a, str>,
    /// The stream record's `eventID`, or the SQS `messageId`.
    pub id: Cow<'a, str>,
    /// SQS system attributes (`SentTimestamp`, `MessageGroupId`, `SequenceNumber`…), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Cow<'a, RawValue>>,
    /// SQS message attributes, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_attributes: Option<Cow<'a, RawValue>>,
    /// Where a Kinesis data stream holds the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<KinesisOrigin<'a>>,
}

/// A Kinesis record's place in its stream, as the Lambda event gave it.
#[derive(Debug, Clone, Serialize)]
pub struct KinesisOrigin<'a> {
    /// The shard, from the event's `eventID` (`shardId-…:<sequence number>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_id: Option<Cow<'a, str>>,
    /// The Kinesis sequence number, a decimal string of up to 129 digits.
    pub sequence_number: Cow<'a, str>,
    /// The partition key the producer chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<Cow<'a, str>>,
    /// When Kinesis received the record, in epoch seconds, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approximate_arrival_timestamp: Option<Cow<'a, RawValue>>,
    /// The event's `kinesisSchemaVersion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<Cow<'a, str>>,
}

/// One line of a raw object, as [`ObjectWriter::push`] writes it: these fields in this order,
/// `record` last.
#[derive(Debug, Clone, Serialize)]
pub struct RawLine<'a> {
    /// The raw line format version, [`RAW_LINE_VERSION`].
    pub v: u8,
    /// The source format.
    pub format: Format,
    /// The source table.
    pub table: &'a str,
    /// The operation.
    pub op: Op,
    /// The normalised ordering token, as ingest computed it.
    ///
    /// Transform does not trust it: it decodes `record` again and takes the token from there,
    /// so a fix to a decoder (how a DMS position or a Debezium `sequence` is read) applies to
    /// raw staging on replay. The exception is `ddb-kinesis`, whose order is partly outside the
    /// record (the Kinesis sequence number): there the landed token is used. It is here for
    /// readers of raw staging (Athena, a replay's dry run) that order lines without decoding.
    pub seq: &'a Seq,
    /// The commit time, or the arrival time when `ts_source` is `arrival`.
    pub ts_ms: i64,
    /// Where `ts_ms` came from.
    pub ts_source: TsSource,
    /// When ingest received the record.
    pub ingested_ms: i64,
    /// The event source and the record's id there.
    pub origin: &'a Origin<'a>,
    /// The source record exactly as received, written compactly: JSON text that ingest's reader
    /// checked and compacted, written into the line as it is.
    #[serde(skip)]
    pub record: &'a str,
}

/// A record ready to land: its route, origin and verbatim record.
#[derive(Debug, Clone)]
pub struct Landable<'a> {
    /// Table, op, seq and commit time.
    pub route: Route,
    /// The event source and id.
    pub origin: Origin<'a>,
    /// The record as compact JSON text, as ingest's reader returns it: valid JSON from which
    /// only whitespace between tokens was removed.
    pub record: Cow<'a, str>,
}

impl Landable<'_> {
    /// The raw line for this record.
    pub fn line(&self, ingested_ms: i64) -> RawLine<'_> {
        let (ts_ms, ts_source) = match self.route.ts_ms {
            Some(ts) => (ts, TsSource::Source),
            None => (ingested_ms, TsSource::Arrival),
        };
        RawLine {
            v: RAW_LINE_VERSION,
            format: self.route.format,
            table: &self.route.table,
            op: self.route.op,
            seq: &self.route.seq,
            ts_ms,
            ts_source,
            ingested_ms,
            origin: &self.origin,
            record: self.record.as_ref(),
        }
    }

    /// The partition of this record: its table and the UTC date and hour of its commit.
    pub fn partition(&self, ingested_ms: i64) -> Partition {
        let (dt, hr) = partition(self.route.ts_ms.unwrap_or(ingested_ms));
        Partition {
            table: self.route.table.clone(),
            dt,
            hr,
        }
    }
}

/// A (table, date, hour) group of raw lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// The source table.
    pub table: String,
    /// `YYYY-MM-DD`.
    pub dt: String,
    /// `HH`.
    pub hr: String,
}

impl Partition {
    /// The object key of a batch in this partition.
    pub fn key(&self, batch_id: &str) -> String {
        format!(
            "{RAW_PREFIX}{}/dt={}/hr={}/{batch_id}.ndjson.gz",
            key_segment(&self.table),
            self.dt,
            self.hr
        )
    }
}

/// The longest object key S3 takes, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The length of a batch id in hex digits (128 bits).
pub const BATCH_ID_LEN: usize = 32;

/// Refuses a table name that cannot make a raw staging key: an S3 key is at most 1,024 bytes,
/// and each byte of the name outside `[A-Za-z0-9_.-]` takes three once percent-encoded, so a
/// long non-ASCII name fails sooner than its length suggests. S3 would refuse such a key on
/// every try (`KeyTooLongError`); refused here, the record is a precise dead letter instead.
pub fn check_table(table: &str) -> Result<(), DecodeError> {
    let fixed = Partition {
        table: String::new(),
        dt: "0000-00-00".into(),
        hr: "00".into(),
    }
    .key(&"0".repeat(BATCH_ID_LEN))
    .len();
    let name = key_segment(table).len();
    if fixed + name <= MAX_KEY_BYTES {
        return Ok(());
    }
    Err(DecodeError::TableNameTooLong {
        table: crate::seq::truncate(table),
        encoded: name,
        limit: MAX_KEY_BYTES - fixed,
    })
}

/// Makes a table name safe as one key segment: bytes outside `[A-Za-z0-9_.-]` are %-encoded,
/// and so are names made only of dots.
pub fn key_segment(name: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if name.bytes().all(safe) && !name.bytes().all(|b| b == b'.') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if safe(b) && b != b'.' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// A deterministic batch id: the first 128 bits of SHA-256 over the origin ids, in hex.
pub fn batch_id<'a>(origins: impl IntoIterator<Item = &'a Origin<'a>>) -> String {
    let mut h = Sha256::new();
    for o in origins {
        h.update(o.arn.as_bytes());
        h.update([0]);
        h.update(o.id.as_bytes());
        h.update([b'\n']);
    }
    hex(&h.finalize()[..16])
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Writes raw lines into one gzip NDJSON object, line by line.
///
/// Only the compressed output and the last 64 KiB of lines are held in memory, never the
/// uncompressed text of the group.
pub struct ObjectWriter {
    gz: GzEncoder<Vec<u8>>,
    /// Lines not yet compressed: the compressor is fed in blocks, not token by token.
    pending: Vec<u8>,
    lines: usize,
    uncompressed: usize,
}

impl ObjectWriter {
    /// How many bytes of lines are gathered before they are compressed.
    const BLOCK: usize = 64 * 1024;

    /// A new, empty object. Fast compression: ingest is CPU-bound per record.
    pub fn new() -> Self {
        Self {
            gz: GzEncoder::new(Vec::new(), Compression::fast()),
            pending: Vec::new(),
            lines: 0,
            uncompressed: 0,
        }
    }

    /// Appends one line: its fields, then its record copied as it is (it was checked when it
    /// was read, and is not read again).
    pub fn push(&mut self, line: &RawLine<'_>) -> std::io::Result<()> {
        let before = self.pending.len();
        if let Err(e) = serde_json::to_writer(&mut self.pending, line) {
            self.pending.truncate(before);
            return Err(e.into());
        }
        // The fields end with the object's closing brace: the record goes before it.
        if self.pending.pop() != Some(b'}') {
            self.pending.truncate(before);
            return Err(std::io::Error::other(
                "a raw line's fields are not a JSON object",
            ));
        }
        self.pending.extend_from_slice(b",\"record\":");
        self.pending.extend_from_slice(line.record.as_bytes());
        self.pending.extend_from_slice(b"}\n");
        self.uncompressed += self.pending.len() - before;
        self.lines += 1;
        if self.pending.len() >= Self::BLOCK {
            self.gz.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The number of lines written.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Uncompressed bytes written.
    pub fn uncompressed_bytes(&self) -> usize {
        self.uncompressed
    }

    /// Finishes the gzip stream and returns the object's bytes.
    pub fn finish(mut self) -> std::io::Result<Vec<u8>> {
        self.gz.write_all(&self.pending)?;
        self.gz.finish()
    }
}

impl Default for ObjectWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// A raw line as read back from staging, borrowed from its text: what [`crate::decide`] reads
/// every line into, without copying its record. [`RawLineView::quick`] reads a line as sluice
/// writes it without crossing its record; `serde_json` reads any line.
#[derive(Debug, Clone, Deserialize)]
pub struct RawLineView<'a> {
    /// The raw line format version.
    pub v: u8,
    /// The source format.
    pub format: Format,
    /// The source table.
    #[serde(borrow)]
    pub table: Cow<'a, str>,
    /// The operation.
    pub op: Op,
    /// The normalised ordering token.
    pub seq: Seq,
    /// The commit or arrival time.
    pub ts_ms: i64,
    /// Where `ts_ms` came from.
    pub ts_source: TsSource,
    /// When ingest received the record.
    pub ingested_ms: i64,
    /// The event source and id, as written.
    #[serde(borrow)]
    pub origin: &'a RawValue,
    /// The source record's JSON text, verbatim.
    #[serde(borrow, deserialize_with = "raw_text")]
    pub record: &'a str,
}

/// A raw JSON value's text, borrowed.
fn raw_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'de str, D::Error> {
    <&'de RawValue>::deserialize(d).map(RawValue::get)
}

/// A raw line as read back from staging, for transform, replay and tests.
#[derive(Debug, Clone, Deserialize)]
pub struct OwnedRawLine {
    /// The raw line format version.
    pub v: u8,
    /// The source format.
    pub format: Format,
    /// The source table.
    pub table: String,
    /// The operation.
    pub op: Op,
    /// The normalised ordering token.
    pub seq: Seq,
    /// The commit or arrival time.
    pub ts_ms: i64,
    /// Where `ts_ms` came from.
    pub ts_source: TsSource,
    /// When ingest received the record.
    pub ingested_ms: i64,
    /// The event source and id, as written.
    pub origin: Box<RawValue>,
    /// The source record, verbatim.
    pub record: Box<RawValue>,
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn origin(id: &str) -> Origin<'static> {
        Origin {
            kind: OriginKind::Sqs,
            arn: Cow::Borrowed("arn:aws:sqs:us-east-1:1:q"),
            id: Cow::Owned(id.to_owned()),
            attributes: None,
            message_attributes: None,
            kinesis: None,
        }
    }

    #[test]
    fn batch_ids_are_stable_and_depend_on_content() {
        let a = [origin("m1"), origin("m2")];
        let b = [origin("m1"), origin("m2")];
        let c = [origin("m1"), origin("m3")];
        assert_eq!(batch_id(&a), batch_id(&b));
        assert_ne!(batch_id(&a), batch_id(&c));
        assert_eq!(batch_id(&a).len(), 32);
        // Boundaries between ids matter: ("m1","m2") is not ("m1m","2").
        assert_ne!(batch_id(&a), batch_id(&[origin("m1m"), origin("2")]));
    }

    #[test]
    fn keys_follow_the_layout() {
        let p = Partition {
            table: "orders".into(),
            dt: "2026-11-25".into(),
            hr: "07".into(),
        };
        assert_eq!(p.key("abc"), "raw/orders/dt=2026-11-25/hr=07/abc.ndjson.gz");
        assert_eq!(key_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(key_segment(".."), "%2E%2E");
        assert_eq!(key_segment("public.orders"), "public.orders");
    }

    #[test]
    fn object_round_trips_lines_verbatim() {
        let record = r#"{"n":1.50E+2,"s":"a\"}\n"}"#.to_owned();
        let land = Landable {
            route: Route::new(
                Format::App,
                "t",
                Op::Insert,
                Seq::decimal("7", "seq").unwrap(),
                None,
            ),
            origin: origin("m1"),
            record: Cow::Owned(record),
        };
        let mut w = ObjectWriter::new();
        w.push(&land.line(1_000)).unwrap();
        w.push(&land.line(1_000)).unwrap();
        let bytes = w.finish().unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let line: OwnedRawLine = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line.record.get(), r#"{"n":1.50E+2,"s":"a\"}\n"}"#);
        assert!(
            lines[0].starts_with(r#"{"v":1,"format":"app","table":"t","op":"insert","seq":""#),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with(r#","record":{"n":1.50E+2,"s":"a\"}\n"}}"#));
        assert_eq!(line.ts_source, TsSource::Arrival);
        assert_eq!(line.ts_ms, 1_000);
        assert_eq!(line.seq, Seq::decimal("7", "").unwrap());
    }

    #[test]
    fn a_table_name_that_cannot_make_a_key_is_refused() {
        // The fixed part of a key is 67 bytes, so 957 remain for the encoded name.
        assert!(check_table(&"a".repeat(957)).is_ok());
        let err = check_table(&"a".repeat(958)).unwrap_err();
        assert_eq!(err.code(), "table_name_too_long");
        assert!(err.to_string().contains("958 bytes"), "{err}");
        // A non-ASCII name triples once percent-encoded: 160 two-byte letters are 960 bytes.
        assert!(check_table(&"é".repeat(159)).is_ok());
        let err = check_table(&"é".repeat(160)).unwrap_err();
        assert!(err.to_string().contains("960 bytes"), "{err}");
        let key = Partition {
            table: "a".repeat(957),
            dt: "2026-11-30".into(),
            hr: "23".into(),
        }
        .key(&batch_id(std::iter::empty()));
        assert_eq!(key.len(), MAX_KEY_BYTES, "the limit is exact");
    }
}
