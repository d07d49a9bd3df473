//! What the Lambda functions' `main`s share: tracing set up once, and handler failures as the
//! runtime reports them.
//!
//! A failure is reported with an `errorType` that names its cause and its retriable class
//! (`Retriable.…` or `NotRetriable.…`), so a function error in CloudWatch says at once whether
//! the event source's retry can help. A response that cannot be written as JSON is a failure
//! too: it is never replaced by a default, which would acknowledge the whole batch.

use lambda_runtime::Diagnostic;

use crate::ingest::IngestError;
use crate::transform::TransformError;

/// Sets up tracing for a function: JSON lines on stdout, filtered by `RUST_LOG` (default
/// `info`). The function's log format stays Text, so the EMF metric lines it prints reach
/// CloudWatch as printed.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
}

impl From<IngestError> for Diagnostic {
    fn from(e: IngestError) -> Self {
        Self {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

impl From<TransformError> for Diagnostic {
    fn from(e: TransformError) -> Self {
        Self {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The failure of a response that could not be written as JSON.
pub fn unwritable_response(e: &serde_json::Error) -> Diagnostic {
    Diagnostic {
        error_type: "NotRetriable.UnwritableResponse".to_owned(),
        error_message: format!("the response could not be written as JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_their_cause_and_retriable_class() {
        let d = Diagnostic::from(IngestError::UnsupportedEvent("no Records".into()));
        assert_eq!(d.error_type, "NotRetriable.UnsupportedEvent");
        assert!(d.error_message.contains("no Records"));
        let d = Diagnostic::from(IngestError::Unreportable {
            index: 3,
            what: "messageId",
        });
        assert_eq!(d.error_type, "Retriable.UnreportableRecord");
        let d = Diagnostic::from(TransformError::UnsupportedEvent("x".into()));
        assert_eq!(d.error_type, "NotRetriable.UnsupportedEvent");
        let e = serde_json::from_str::<u8>("x").unwrap_err();
        assert_eq!(
            unwritable_response(&e).error_type,
            "NotRetriable.UnwritableResponse"
        );
    }
}
