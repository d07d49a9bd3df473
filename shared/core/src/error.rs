//! Error classes shared by every stage, and the decoding error.
//!
//! Every failure in sluice is put in one [`ErrorClass`]. The class decides what happens next:
//! a `retriable` failure is reported to the event source so the record is delivered again, and
//! every other class is data that is quarantined at once on the dead-letter queue.

use serde::{Deserialize, Serialize};

/// What kind of failure a record met, and so where it goes (DESIGN §3.6, §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts and network errors: retried by the event source.
    Retriable,
    /// The input cannot be read as any supported format.
    BadFormat,
    /// The record does not satisfy its table's contract.
    ContractViolation,
    /// No contract exists for the record's table.
    NoContract,
    /// The record is over a size or depth bound.
    TooLarge,
    /// The source table was truncated. Typed rows are not removed automatically: a person
    /// decides (see the README, "Truncates").
    SourceTruncated,
    /// A bug or an unexpected state in sluice itself.
    Internal,
}

impl ErrorClass {
    /// The class as it appears in failure envelopes and SQS message attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retriable => "retriable",
            Self::BadFormat => "bad_format",
            Self::ContractViolation => "contract_violation",
            Self::NoContract => "no_contract",
            Self::TooLarge => "too_large",
            Self::SourceTruncated => "source_truncated",
            Self::Internal => "internal",
        }
    }

    /// Whether a failure of this class is worth delivering again unchanged.
    pub fn is_retriable(self) -> bool {
        matches!(self, Self::Retriable)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a source record or message body could not be decoded.
///
/// Each variant has its own stable [`code`](DecodeError::code), which the failure envelope
/// carries as `error_code`, so dead letters can be filtered by the exact cause. Messages name
/// the field path and never include the whole record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is empty.
    #[error("body is empty")]
    Empty,
    /// The body holds only whitespace.
    #[error("body holds only whitespace")]
    WhitespaceOnly,
    /// The body holds comment lines, which JSON does not allow.
    #[error("body holds a comment line (line {line}), which JSON does not allow")]
    CommentLines {
        /// The first comment line, from 1.
        line: usize,
    },
    /// The bytes are not valid UTF-8 (or hold an escaped lone surrogate).
    #[error("body is not valid UTF-8: {detail}")]
    InvalidUtf8 {
        /// Where the invalid sequence starts, as told by the decoder.
        detail: String,
    },
    /// The text is not JSON at all.
    #[error("body is not JSON: {detail}")]
    NotJson {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// The JSON text ends before the document is complete.
    #[error("JSON is truncated: {detail}")]
    Truncated {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// More than one JSON document, or trailing content after the document.
    #[error("body holds trailing content after the first JSON document: {detail}")]
    TrailingContent {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// The JSON nests deeper than the configured bound.
    #[error("JSON nests deeper than {limit} levels")]
    TooDeep {
        /// The bound that was exceeded.
        limit: usize,
    },
    /// The record is larger than the configured bound.
    #[error("record is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The record's size in bytes.
        size: usize,
        /// The bound that was exceeded.
        limit: usize,
    },
    /// Valid JSON, but of no shape sluice knows.
    #[error("JSON of no known shape: {detail}")]
    UnknownShape {
        /// What was found instead.
        detail: String,
    },
    /// A field that the format requires is absent or null.
    #[error("missing required field `{path}`")]
    MissingField {
        /// The JSON path of the field.
        path: String,
    },
    /// The change carries no ordering token.
    #[error("missing ordering token `{path}`: without it the change cannot be ordered")]
    MissingSeq {
        /// The JSON path where the token was expected.
        path: String,
    },
    /// A field has the wrong type or an unreadable value.
    #[error("invalid value at `{path}`: {detail}")]
    InvalidField {
        /// The JSON path of the field.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A DynamoDB `B` or `BS` member is not valid base64.
    #[error("invalid base64 at `{path}`: {detail}")]
    InvalidBase64 {
        /// The JSON path of the attribute.
        path: String,
        /// The decoder's message.
        detail: String,
    },
    /// The change's key names one row and its image another.
    #[error(
        "`{key}` and `{image}` disagree: the key names one row and the image another; \
         a change must name its row once"
    )]
    KeyMismatch {
        /// The key column's path (`key.id`, `dynamodb.Keys.pk`).
        key: String,
        /// The image column's path (`after.id`, `dynamodb.NewImage.pk`).
        image: String,
    },
    /// The table name cannot make a raw staging key: S3 keys are at most 1,024 bytes.
    #[error(
        "table name {table:?} is {encoded} bytes once percent-encoded for its raw staging key, \
         over the {limit} that a 1,024-byte S3 key leaves for it (bytes other than letters, \
         digits, `_`, `-` and `.` take three)"
    )]
    TableNameTooLong {
        /// The table name, shortened.
        table: String,
        /// Its length in the key, in bytes.
        encoded: usize,
        /// The most the key allows.
        limit: usize,
    },
    /// A message that belongs to another queue, such as an S3 event notification.
    #[error("{what} reached the ingest queue; {hint}")]
    Misrouted {
        /// What the message is.
        what: String,
        /// Where it belongs instead.
        hint: String,
    },
}

impl DecodeError {
    /// A stable snake_case code for this error, carried in failure envelopes as `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::WhitespaceOnly => "whitespace_only",
            Self::CommentLines { .. } => "comment_lines",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::NotJson { .. } => "not_json",
            Self::Truncated { .. } => "truncated",
            Self::TrailingContent { .. } => "trailing_content",
            Self::TooDeep { .. } => "too_deep",
            Self::TooLarge { .. } => "too_large",
            Self::UnknownShape { .. } => "unknown_shape",
            Self::MissingField { .. } => "missing_field",
            Self::MissingSeq { .. } => "missing_seq",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidBase64 { .. } => "invalid_base64",
            Self::TableNameTooLong { .. } => "table_name_too_long",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::Misrouted { .. } => "misrouted",
        }
    }

    /// The error class: decoding failures are data, never retriable.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::TooLarge { .. } => ErrorClass::TooLarge,
            _ => ErrorClass::BadFormat,
        }
    }

    /// Decoding failures never succeed on a second try with the same input.
    pub fn is_retriable(&self) -> bool {
        false
    }

    /// Classifies a `serde_json` error met while reading a whole document.
    pub(crate) fn from_json(err: &serde_json::Error) -> Self {
        let detail = err.to_string();
        match err.classify() {
            serde_json::error::Category::Eof => Self::Truncated { detail },
            serde_json::error::Category::Syntax if detail.starts_with("trailing characters") => {
                Self::TrailingContent { detail }
            }
            serde_json::error::Category::Syntax if detail.contains("recursion limit") => {
                Self::TooDeep { limit: 128 }
            }
            serde_json::error::Category::Syntax
                if detail.contains("surrogate") || detail.contains("invalid unicode") =>
            {
                Self::InvalidUtf8 { detail }
            }
            _ => Self::NotJson { detail },
        }
    }

    /// Prefixes the path of a field error with `prefix` (as in `dynamodb.NewImage`).
    pub fn within(self, prefix: &str) -> Self {
        let join = |path: String| {
            if path.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{path}")
            }
        };
        match self {
            Self::MissingField { path } => Self::MissingField { path: join(path) },
            Self::MissingSeq { path } => Self::MissingSeq { path: join(path) },
            Self::InvalidField { path, detail } => Self::InvalidField {
                path: join(path),
                detail,
            },
            Self::InvalidBase64 { path, detail } => Self::InvalidBase64 {
                path: join(path),
                detail,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let all = [
            DecodeError::Empty,
            DecodeError::WhitespaceOnly,
            DecodeError::CommentLines { line: 1 },
            DecodeError::InvalidUtf8 {
                detail: String::new(),
            },
            DecodeError::NotJson {
                detail: String::new(),
            },
            DecodeError::Truncated {
                detail: String::new(),
            },
            DecodeError::TrailingContent {
                detail: String::new(),
            },
            DecodeError::TooDeep { limit: 1 },
            DecodeError::TooLarge { size: 2, limit: 1 },
            DecodeError::UnknownShape {
                detail: String::new(),
            },
            DecodeError::MissingField {
                path: String::new(),
            },
            DecodeError::MissingSeq {
                path: String::new(),
            },
            DecodeError::InvalidField {
                path: String::new(),
                detail: String::new(),
            },
            DecodeError::InvalidBase64 {
                path: String::new(),
                detail: String::new(),
            },
            DecodeError::Misrouted {
                what: String::new(),
                hint: String::new(),
            },
            DecodeError::TableNameTooLong {
                table: String::new(),
                encoded: 0,
                limit: 0,
            },
            DecodeError::KeyMismatch {
                key: String::new(),
                image: String::new(),
            },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(DecodeError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|e| !e.is_retriable()));
    }

    #[test]
    fn within_prefixes_paths() {
        let e = DecodeError::InvalidBase64 {
            path: "b".into(),
            detail: "x".into(),
        }
        .within("dynamodb.NewImage");
        assert_eq!(e.to_string(), "invalid base64 at `dynamodb.NewImage.b`: x");
    }
}
