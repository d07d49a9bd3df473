//! Transform messages: what a message on the transform queue asks for.
//!
//! The transform queue takes S3 `ObjectCreated` notifications of the raw bucket (bare or in an
//! SNS `Notification`; one may name several objects), `s3:TestEvent` messages (sent when a
//! notification is configured, and ignored), raw lines sent directly (redrive), and references
//! to one line of a raw object (`{"sluice_line_ref":"s3://bucket/key#L17"}`: the redrive of a
//! line too large to travel inline).
//! Reading one is pure, so the transform handler and the dead-letter tools read them alike.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::DecodeError;
use crate::json::{read_str, Limits};

/// One unit of work named by a transform message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A raw object to read.
    Object {
        /// The bucket.
        bucket: String,
        /// The key, decoded.
        key: String,
    },
    /// One line of a raw object, by its number (from 1).
    Line {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The line's number, from 1, counting every `\n`-ended line as transform does.
        line: usize,
    },
    /// The lines of a raw object whose source commit time (`ts_ms`) is in a window: a replay.
    Window {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Lines at or after this time (epoch ms), when given.
        since_ms: Option<i64>,
        /// Lines before this time (epoch ms), when given.
        until_ms: Option<i64>,
    },
    /// One raw line, sent inline.
    Inline {
        /// The raw line.
        line: String,
        /// What names it in dead letters.
        raw_ref: String,
    },
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Event", borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "Type", borrow, default)]
    sns_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "Message", default)]
    sns_message: Option<String>,
    #[serde(borrow, default)]
    v: Option<&'a RawValue>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
    #[serde(default)]
    sluice_line_ref: Option<String>,
    #[serde(default)]
    sluice_replay: Option<ReplayProbe>,
}

#[derive(Deserialize)]
struct ReplayProbe {
    object: String,
    #[serde(default)]
    since_ms: Option<i64>,
    #[serde(default)]
    until_ms: Option<i64>,
}

/// The body of a message that asks transform to replay the lines of a raw object whose source
/// commit time is in `[since_ms, until_ms)`.
pub fn replay_message(object: &str, since_ms: Option<i64>, until_ms: Option<i64>) -> String {
    serde_json::json!({ "sluice_replay": {
        "object": object, "since_ms": since_ms, "until_ms": until_ms,
    }})
    .to_string()
}

/// The body of a message that asks transform for one line of a raw object.
pub fn line_ref_message(raw_ref: &str) -> String {
    serde_json::json!({ "sluice_line_ref": raw_ref }).to_string()
}

/// Splits `s3://bucket/key#L17` into the bucket, the key and the line number.
pub fn parse_line_ref(raw_ref: &str) -> Option<(String, String, usize)> {
    let (object, line) = raw_ref.rsplit_once("#L")?;
    let line: usize = line.parse().ok().filter(|n| *n > 0)?;
    let (bucket, key) = object.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_owned(), key.to_owned(), line))
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventSource", default)]
    event_source: Option<String>,
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
}

/// What a transform message asks for: objects, an inline raw line, or nothing (an
/// `s3:TestEvent`, or only notifications other than `ObjectCreated`). `inline_ref` names an
/// inline line in its dead letters.
pub fn parse(body: &str, inline_ref: &str) -> Result<Vec<Work>, DecodeError> {
    let text = read_str(body, &Limits::default())?;
    let not_object = || DecodeError::UnknownShape {
        detail: "a transform message is a JSON object".into(),
    };
    // serde reads a struct from an array too, field by field: only an object is a message.
    if !text.trim_start().starts_with('{') {
        return Err(not_object());
    }
    let probe: Probe<'_> = serde_json::from_str(&text).map_err(|_| not_object())?;
    if probe.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if probe.sns_type.as_deref() == Some("Notification") {
        if let Some(inner) = probe.sns_message.as_deref() {
            return parse(inner, inline_ref);
        }
    }
    if let Some(r) = probe.sluice_replay {
        let (bucket, key) = r
            .object
            .strip_prefix("s3://")
            .and_then(|p| p.split_once('/'))
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| DecodeError::InvalidField {
                path: "sluice_replay.object".into(),
                detail: format!("{:?} is not s3://bucket/key", r.object),
            })?;
        return Ok(vec![Work::Window {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            since_ms: r.since_ms,
            until_ms: r.until_ms,
        }]);
    }
    if let Some(r) = probe.sluice_line_ref.as_deref() {
        let (bucket, key, line) = parse_line_ref(r).ok_or_else(|| DecodeError::InvalidField {
            path: "sluice_line_ref".into(),
            detail: format!("{r:?} is not s3://bucket/key#L<line>"),
        })?;
        return Ok(vec![Work::Line { bucket, key, line }]);
    }
    if probe.v.is_some() && probe.record.is_some() {
        return Ok(vec![Work::Inline {
            line: text.into_owned(),
            raw_ref: inline_ref.to_owned(),
        }]);
    }
    if let Some(records) = probe.records {
        let mut work = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let rec: S3Record =
                serde_json::from_str(r.get()).map_err(|e| DecodeError::InvalidField {
                    path: format!("Records[{i}]"),
                    detail: format!("not an S3 event record: {e}"),
                })?;
            if rec.event_source.as_deref() != Some("aws:s3") {
                return Err(DecodeError::InvalidField {
                    path: format!("Records[{i}].eventSource"),
                    detail: "expected aws:s3".into(),
                });
            }
            if !rec
                .event_name
                .as_deref()
                .unwrap_or_default()
                .starts_with("ObjectCreated:")
            {
                continue;
            }
            let entity = rec.s3.ok_or_else(|| DecodeError::MissingField {
                path: format!("Records[{i}].s3"),
            })?;
            work.push(Work::Object {
                bucket: entity.bucket.name,
                key: url_decode_key(&entity.object.key).ok_or_else(|| {
                    DecodeError::InvalidField {
                        path: format!("Records[{i}].s3.object.key"),
                        detail: "not a valid URL-encoded key".into(),
                    }
                })?,
            });
        }
        return Ok(work);
    }
    Err(DecodeError::UnknownShape {
        detail: "expected an S3 event notification, an s3:TestEvent or a raw line".into(),
    })
}

/// Decodes an S3 notification key: form encoding, where `+` is a space.
pub fn url_decode_key(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = key.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_keys_are_form_decoded() {
        assert_eq!(
            url_decode_key("raw/my+table/dt%3D2026-11-25/a%2Bb.ndjson.gz").unwrap(),
            "raw/my table/dt=2026-11-25/a+b.ndjson.gz"
        );
        assert_eq!(url_decode_key("raw%2Forders%2Fx").unwrap(), "raw/orders/x");
        assert!(url_decode_key("bad%2").is_none());
        assert!(url_decode_key("bad%zz").is_none());
        assert!(url_decode_key("%ff").is_none(), "not UTF-8");
    }

    #[test]
    fn messages_name_objects_lines_or_nothing() {
        let s3 = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"raw/t/x+y.ndjson.gz"}}},{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"gone"}}},{"eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"b"},"object":{"key":"raw/t/z.ndjson.gz"}}}]}"#;
        let work = parse(s3, "x").unwrap();
        let keys: Vec<String> = work
            .iter()
            .filter_map(|w| match w {
                Work::Object { key, .. } => Some(key.clone()),
                Work::Inline { .. } | Work::Line { .. } | Work::Window { .. } => None,
            })
            .collect();
        assert_eq!(keys, ["raw/t/x y.ndjson.gz", "raw/t/z.ndjson.gz"]);
        assert!(parse(
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#,
            "x"
        )
        .unwrap()
        .is_empty());
        let sns = serde_json::json!({"Type": "Notification", "Message": s3}).to_string();
        assert_eq!(parse(&sns, "x").unwrap().len(), 2);
        let line = r#"{"v":1,"format":"app","table":"t","op":"insert","seq":"1","ts_ms":1,"ts_source":"source","ingested_ms":1,"origin":{},"record":{}}"#;
        assert!(
            matches!(parse(line, "ref").unwrap().as_slice(), [Work::Inline { raw_ref, .. }] if raw_ref == "ref")
        );
        assert_eq!(parse("hello", "x").unwrap_err().code(), "not_json");
        assert_eq!(
            parse(&line_ref_message("s3://b/raw/t/x y.ndjson.gz#L17"), "x").unwrap(),
            [Work::Line {
                bucket: "b".into(),
                key: "raw/t/x y.ndjson.gz".into(),
                line: 17
            }]
        );
        for bad in [
            "s3://b/k#L0",
            "s3://b/k",
            "b/k#L1",
            "s3:///k#L1",
            "s3://b/#L2",
        ] {
            assert_eq!(
                parse(&line_ref_message(bad), "x").unwrap_err().code(),
                "invalid_field",
                "{bad}"
            );
        }
        assert_eq!(
            parse(r#"[[], "s3:TestEvent"]"#, "x").unwrap_err().code(),
            "unknown_shape"
        );
        assert_eq!(
            parse(r#"{"a":1}"#, "x").unwrap_err().code(),
            "unknown_shape"
        );
        assert_eq!(
            parse(r#"{"Records":[{"eventSource":"aws:sqs"}]}"#, "x")
                .unwrap_err()
                .code(),
            "invalid_field"
        );
    }
}
