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
///
/// `RUST_LOG` is a list of targets and levels (`info`, `sluice_pipeline=debug,warn`): a plain
/// filter, so the functions carry no regular-expression engine. A value that does not read as
/// one falls back to `info` and says so.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, bad) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .without_time(),
        )
        .with(filter)
        .init();
    if let Some(value) = bad {
        tracing::warn!(rust_log = %value, "RUST_LOG is not a list of targets and levels; logging at info.");
    }
}

/// The filter `RUST_LOG` names, and the value when it could not be read.
fn log_filter(value: Option<&str>) -> (tracing_subscriber::filter::Targets, Option<String>) {
    use tracing_subscriber::filter::Targets;
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => (info(), None),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(_) => (info(), Some(v.to_owned())),
        },
    }
}

/// Whether `event` is a scheduled event (EventBridge or EventBridge Scheduler), which runs a
/// function by its own rules; an error when it is not a JSON object at all.
pub fn is_schedule(event: &str) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "detail-type", default)]
        detail_type: Option<String>,
        #[serde(default)]
        source: Option<String>,
    }
    let probe: Probe =
        serde_json::from_str(event).map_err(|e| format!("not a JSON object: {e}"))?;
    Ok(probe.detail_type.as_deref() == Some("Scheduled Event")
        || matches!(
            probe.source.as_deref(),
            Some("aws.events" | "aws.scheduler")
        ))
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
    fn rust_log_is_read_as_targets_and_levels() {
        use tracing::Level;
        let (f, bad) = log_filter(None);
        assert!(bad.is_none() && f.would_enable("any", &Level::INFO));
        assert!(!f.would_enable("any", &Level::DEBUG));
        let (f, bad) = log_filter(Some("sluice_pipeline=debug,warn"));
        assert!(bad.is_none());
        assert!(f.would_enable("sluice_pipeline::ingest", &Level::DEBUG));
        assert!(!f.would_enable("aws_config", &Level::INFO));
        let (f, bad) = log_filter(Some("orders=loud"));
        assert_eq!(bad.as_deref(), Some("orders=loud"));
        assert!(f.would_enable("any", &Level::INFO));
    }

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
