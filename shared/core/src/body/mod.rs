//! SQS message bodies: application change events, Debezium envelopes and DMS records, bare or
//! wrapped by SNS or EventBridge.
//!
//! The body is classified by its shape, looking through at most two wrappers. The raw line keeps
//! the body as it came, wrapper included; only the route is taken from the inner event.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Change, Image, Route};
use crate::error::DecodeError;
use crate::json::{read_str, Limits};
use crate::seq::truncate;
use crate::time::{epoch_text_to_ms, rfc3339_to_ms};

use app::app;
use debezium::debezium;
use dms::dms;

mod app;
mod debezium;
mod dms;

/// How many wrappers (SNS, EventBridge) are looked through before giving up.
const MAX_WRAPPERS: usize = 2;

/// The top-level keys that tell the supported shapes apart.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Probe<'a> {
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
pub(super) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
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

pub(super) fn probe(text: &str) -> Result<Probe<'_>, DecodeError> {
    serde_json::from_str(text).map_err(|_| DecodeError::UnknownShape {
        detail: format!("expected a JSON object, found {}", kind_of(text)),
    })
}

/// When the probe is a wrapper, returns the inner document's text.
pub(super) fn unwrap(
    probe: &Probe<'_>,
    limits: &Limits,
) -> Result<Option<(String, Wrapper)>, DecodeError> {
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

pub(super) fn misrouted_s3(what: &str) -> DecodeError {
    DecodeError::Misrouted {
        what: what.to_owned(),
        hint:
            "S3 notifications of the raw bucket belong on the transform queue, not the ingest queue"
                .into(),
    }
}

pub(super) fn classify(text: &str, probe: &Probe<'_>) -> Result<Change, DecodeError> {
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

pub(super) fn kind_of(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'{') => "an object of the wrong shape",
        _ => "a number",
    }
}

pub(super) fn keys_of(text: &str) -> String {
    let keys: BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(text).unwrap_or_default();
    let mut names: Vec<String> = keys.into_keys().take(8).map(|k| truncate(&k)).collect();
    if names.is_empty() {
        names.push("(none)".into());
    }
    format!("[{}]", names.join(", "))
}

/// Reads a JSON object into a column image, each column kept raw.
pub(super) fn image(raw: &RawValue, path: &str) -> Result<Image, DecodeError> {
    let map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| DecodeError::InvalidField {
            path: path.to_owned(),
            detail: format!("expected an object, found {}", kind_of(raw.get())),
        })?;
    Ok(Image::Json(map))
}

pub(super) fn opt_image(raw: Option<&RawValue>, path: &str) -> Result<Option<Image>, DecodeError> {
    raw.map(|r| image(r, path)).transpose()
}

pub(super) fn string_field<'a>(
    raw: Option<&'a RawValue>,
    path: &str,
) -> Result<Cow<'a, str>, DecodeError> {
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
pub(super) fn u64_field(raw: &RawValue, path: &str) -> Result<u64, DecodeError> {
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
pub(super) fn time_field(raw: Option<&RawValue>, path: &str) -> Result<Option<i64>, DecodeError> {
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

#[cfg(test)]
mod tests_support {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    pub(super) fn dec(body: &str) -> Result<Change, DecodeError> {
        decode(body, &Limits::default())
    }

    pub(super) const APP: &str = r#"{"table":"orders","op":"update","key":{"order_id":"o-1"},"before":null,"after":{"order_id":"o-1","total":12345678901234567890.123},"seq":42,"ts":"2026-11-01T10:00:00Z","source":"billing"}"#;
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::seq::Seq;

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
            "../../../../schemas/app-change-event.schema.json"
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
