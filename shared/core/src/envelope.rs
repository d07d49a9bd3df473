//! The failure envelope: the body of every dead letter sluice writes (DESIGN §3.6).
//!
//! An envelope carries everything needed to understand, fix and replay a failed record: the
//! original verbatim (or a claim-check reference to it in S3 when it is too large for the
//! queue), the step that failed, the error class and code, the time and the retry count.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::change::Format;
use crate::error::ErrorClass;
use crate::raw::hex;

/// The pipeline step where a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Landing source records in raw staging.
    Ingest,
    /// Typing raw lines into tables.
    Transform,
    /// Sending dead letters back.
    Redrive,
}

impl Step {
    /// The name used in envelopes and message attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Transform => "transform",
            Self::Redrive => "redrive",
        }
    }
}

/// A contract by name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRef {
    /// The contract's name (its typed table).
    pub name: String,
    /// Its version.
    pub version: u64,
}

/// A dead letter's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureEnvelope {
    /// Always 1: marks the message as a sluice failure envelope.
    pub sluice_failure: u8,
    /// Deterministic id: the same record failing the same way gets the same id.
    pub failure_id: String,
    /// The step that failed.
    pub step: Step,
    /// The class of the failure.
    pub error_class: ErrorClass,
    /// The precise cause, such as `not_json` or `invalid_base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// A human-readable message, with the field path where there is one.
    pub error: String,
    /// The table, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The source format, when it could be recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The event source and the record's id there.
    pub origin: Box<RawValue>,
    /// Where the record lies in raw staging (`s3://bucket/key#L17`), once it was landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ref: Option<String>,
    /// The raw line or message body, verbatim; absent when it was claim-checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// `s3://bucket/quarantine/<failure_id>.json` when the original was too large for the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_ref: Option<String>,
    /// Size of the original in bytes.
    pub original_bytes: usize,
    /// The contract a `contract_violation` failed under, and its version: a redrive knows
    /// from it that a newer version may now take the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractRef>,
    /// When the record first failed (RFC 3339).
    pub first_failed_at: String,
    /// When the record failed this time (RFC 3339).
    pub failed_at: String,
    /// How often the record was retried before this failure.
    pub retry_count: u32,
    /// The version of sluice that wrote the envelope.
    pub pipeline_version: String,
}

impl FailureEnvelope {
    /// A new envelope for a first failure at `now_ms`. `identity` is what names the failed record
    /// at its step (an ARN and an id, or a raw reference and a field), so that the same record
    /// failing the same way gets the same `failure_id`.
    pub fn new(
        step: Step,
        class: ErrorClass,
        code: &str,
        error: String,
        identity: (&str, &str),
        origin: Box<RawValue>,
        now_ms: i64,
    ) -> Self {
        let at = crate::time::ms_to_rfc3339(now_ms);
        Self {
            sluice_failure: 1,
            failure_id: failure_id(step, identity.0, identity.1, code),
            step,
            error_class: class,
            error_code: Some(code.to_owned()),
            error,
            table: None,
            format: None,
            origin,
            raw_ref: None,
            original: None,
            original_ref: None,
            original_bytes: 0,
            contract: None,
            first_failed_at: at.clone(),
            failed_at: at,
            retry_count: 0,
            pipeline_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Attaches the original verbatim.
    pub fn with_original(mut self, original: String) -> Self {
        self.original_bytes = original.len();
        self.original = Some(original);
        self
    }
}

/// The message attribute that marks a message redriven from the dead-letter queue.
pub const REDRIVE_ATTRIBUTE: &str = "sluice_redrive";

/// What a redriven message carries about the letter it came from (as JSON, in the message
/// attribute [`REDRIVE_ATTRIBUTE`]), so that a record failing again keeps its history: the same
/// `failure_id` (from the same identity), its first failure time, and a retry count that grows
/// with each redrive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveMark {
    /// Retries before this delivery: the letter's `retry_count` plus one.
    #[serde(default)]
    pub retry_count: u32,
    /// When the record first failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<String>,
    /// The id the record had at its source (the first message id), for its `failure_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_id: Option<String>,
    /// Where the line lies in raw staging, for an inline raw line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ref: Option<String>,
    /// When it was redriven (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<String>,
}

impl RedriveMark {
    /// Reads a mark; `None` when the text is not one.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The mark as the attribute's value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Derives a failure id from the step, the origin and the cause.
pub fn failure_id(step: Step, origin_arn: &str, origin_id: &str, code: &str) -> String {
    let mut h = Sha256::new();
    for part in [step.as_str(), origin_arn, origin_id, code] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize()[..16])
}

/// The S3 key where a claim-checked original is stored.
pub fn quarantine_key(failure_id: &str) -> String {
    format!("quarantine/{failure_id}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_ids_are_deterministic_and_distinct() {
        let a = failure_id(Step::Ingest, "arn", "m1", "not_json");
        assert_eq!(a, failure_id(Step::Ingest, "arn", "m1", "not_json"));
        assert_ne!(a, failure_id(Step::Ingest, "arn", "m2", "not_json"));
        assert_ne!(a, failure_id(Step::Transform, "arn", "m1", "not_json"));
        assert_eq!(quarantine_key(&a), format!("quarantine/{a}.json"));
    }

    #[test]
    fn envelope_serialises_with_the_documented_names() {
        let env = FailureEnvelope {
            sluice_failure: 1,
            failure_id: "f".into(),
            step: Step::Ingest,
            error_class: ErrorClass::BadFormat,
            error_code: Some("not_json".into()),
            error: "body is not JSON".into(),
            table: None,
            format: None,
            origin: RawValue::from_string(r#"{"kind":"sqs"}"#.into()).unwrap(),
            raw_ref: None,
            original: Some("hello".into()),
            original_ref: None,
            original_bytes: 5,
            contract: None,
            first_failed_at: "2026-01-01T00:00:00.000Z".into(),
            failed_at: "2026-01-01T00:00:00.000Z".into(),
            retry_count: 0,
            pipeline_version: "0.1.0".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&env).unwrap();
        assert_eq!(v["sluice_failure"], 1);
        assert_eq!(v["step"], "ingest");
        assert_eq!(v["error_class"], "bad_format");
        assert_eq!(v["original"], "hello");
        assert!(v.get("table").is_none());
        let back: FailureEnvelope = serde_json::from_value(v).unwrap();
        assert_eq!(back.error_code.as_deref(), Some("not_json"));
    }
}
