//! The redrive function: the same redrive as `sluice dlq redrive`, run on a schedule and on
//! demand.
//!
//! A scheduled event (EventBridge) runs it by its own rules ([`Auto`]): what a retry can fix
//! goes back with exponential backoff while the record has been retried fewer than
//! `SLUICE_REDRIVE_MAX_RETRIES` times, and contract failures go back once a newer contract
//! takes them. Any other event is a request from a person or a script, read as
//! [`RedriveRequest`] (`{"dry_run": true, "table": "orders", "class": "contract_violation"}`),
//! and runs like the CLI's redrive. Either way the answer is the run's summary, and metrics
//! (`Redriven`, `Left`, per step and class) go out as EMF.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::dead_letters::SqsDeadLetters;
use sluice_aws::metrics::{MetricSet, Sink, Unit};
use sluice_aws::raw_objects::S3RawObjects;
use sluice_aws::raw_store::S3RawStore;
use sluice_aws::AwsError;

use super::run::{Auto, Redrive, RedriveOptions, RedriveSummary};
use super::select::Filter;
use super::RecoveryConfig;
use crate::contracts::{ContractCache, ContractSource, LoadError};
use crate::ingest::Ingest;

/// The function name in metrics.
pub const FUNCTION: &str = "redrive";

/// The run's metrics: totals, and per step and class.
pub(crate) fn emit(s: &RedriveSummary, sink: &Sink, now_ms: i64) {
    let mut m = MetricSet::new(FUNCTION);
    m.put("LettersRead", Unit::Count, s.read as f64)
        .put("Redriven", Unit::Count, s.redriven as f64)
        .put("Left", Unit::Count, s.left as f64)
        .put("RedriveErrors", Unit::Count, s.errors as f64);
    m.emit(sink, now_ms);
    for (class, t) in &s.by_class {
        let mut m = MetricSet::new(FUNCTION).dimension("Class", class.clone());
        m.put("Redriven", Unit::Count, t.redriven as f64)
            .put("Left", Unit::Count, t.left as f64);
        m.emit(sink, now_ms);
    }
}

/// What a request (any event but a scheduled one) may ask.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedriveRequest {
    /// Judge and report only.
    pub dry_run: bool,
    /// Send back what would fail again too.
    pub all: bool,
    /// Run by the function's own rules, as on a schedule.
    pub auto: bool,
    /// At most this many letters.
    pub max: Option<usize>,
    /// At most this many letters a second.
    pub rate: Option<f64>,
    /// Only this step.
    pub step: Option<String>,
    /// Only this table.
    pub table: Option<String>,
    /// Only this error class.
    pub class: Option<String>,
    /// Only this error code.
    pub code: Option<String>,
    /// Only letters containing this text.
    pub contains: Option<String>,
    /// Only letters that failed at or after this time (RFC 3339, a date, or an age).
    pub since: Option<String>,
    /// Only letters that failed before this time.
    pub until: Option<String>,
}

/// An event the function cannot take.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The event is neither a schedule nor a request.
    #[error("unsupported event: {0}")]
    UnsupportedEvent(String),
    /// The contracts could not be loaded.
    #[error("could not load the contracts: {0}")]
    Contracts(#[from] LoadError),
    /// A queue could not be read or written.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl RedriveError {
    /// Whether a later run may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::UnsupportedEvent(_) => false,
            Self::Contracts(e) => e.is_retriable(),
            Self::Aws(e) => e.is_retriable(),
        }
    }
}

/// What the function needs, built once at cold start.
pub struct RedriveFunction {
    config: RecoveryConfig,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    objects: S3RawObjects,
    ingest: Ingest<S3RawStore, SqsDeadLetters>,
    contracts: ContractCache,
    #[cfg(feature = "streams")]
    streams: super::streams::StreamReaders,
    metrics: Sink,
    /// The first backoff of the function's own rules.
    pub base_delay: Duration,
    /// How long one run may read each queue.
    pub budget: Duration,
}

impl RedriveFunction {
    /// The function on AWS, with clients built from `sdk`.
    pub fn from_sdk(config: RecoveryConfig, sdk: &SdkConfig, metrics: Sink) -> Self {
        let s3 = s3_client(sdk);
        Self {
            sqs: sqs_client(sdk),
            s3: s3.clone(),
            objects: S3RawObjects::new(s3.clone()),
            ingest: Ingest::from_sdk(config.ingest.clone(), sdk, Sink::Discard),
            contracts: ContractCache::new(
                ContractSource::parse(&config.contracts),
                Duration::from_secs(60),
                s3,
            ),
            #[cfg(feature = "streams")]
            streams: super::streams::StreamReaders::from_sdk(sdk),
            metrics,
            base_delay: Duration::from_secs(60),
            // Inside the template's 300 s timeout, with room to give letters back.
            budget: Duration::from_secs(240),
            config,
        }
    }

    /// Handles one event: a schedule, or a request.
    pub async fn handle(&self, event: &str) -> Result<RedriveSummary, RedriveError> {
        let options = self.options(event)?;
        let contracts: Arc<_> = self.contracts.get().await?;
        let run = Redrive {
            config: &self.config,
            sqs: &self.sqs,
            objects: &self.objects,
            ingest: &self.ingest,
            contracts: &contracts,
            max_line_bytes: self.config.max_line_bytes,
            s3: Some(&self.s3),
            #[cfg(feature = "streams")]
            streams: Some(&self.streams),
        };
        let summary = run.run(&options, None).await?;
        self.emit(&summary);
        tracing::info!(
            read = summary.read,
            matched = summary.matched,
            redriven = summary.redriven,
            left = summary.left,
            errors = summary.errors,
            dry_run = summary.dry_run,
            "Redrive run done."
        );
        Ok(summary)
    }

    /// The run an event asks for.
    pub fn options(&self, event: &str) -> Result<RedriveOptions, RedriveError> {
        let auto = Auto {
            max_retries: self.config.max_retries,
            base_delay: self.base_delay,
        };
        if crate::lambda::is_schedule(event).map_err(RedriveError::UnsupportedEvent)? {
            return Ok(RedriveOptions {
                auto: Some(auto),
                budget: self.budget,
                ..RedriveOptions::default()
            });
        }
        let r: RedriveRequest = serde_json::from_str(event).map_err(|e| {
            RedriveError::UnsupportedEvent(format!(
                "expected a scheduled event or a request such as {{\"dry_run\": true, \
                 \"table\": \"orders\"}}: {e}"
            ))
        })?;
        let now = chrono::Utc::now().timestamp_millis();
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(|t| super::select::parse_time(t, now).map_err(RedriveError::UnsupportedEvent))
                .transpose()
        };
        Ok(RedriveOptions {
            filter: Filter {
                step: r.step,
                table: r.table,
                class: r.class,
                code: r.code,
                contains: r.contains,
                since_ms: time(&r.since)?,
                until_ms: time(&r.until)?,
            },
            max: r.max,
            dry_run: r.dry_run,
            all: r.all,
            rate: r.rate,
            budget: self.budget,
            auto: r.auto.then_some(auto),
        })
    }

    fn emit(&self, s: &RedriveSummary) {
        emit(s, &self.metrics, chrono::Utc::now().timestamp_millis());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sluice_aws::metrics::{check_coverage, Collector};

    #[test]
    fn its_metrics_are_the_catalogued_ones() {
        let mut s = RedriveSummary::default();
        s.by_class
            .insert("transform contract_violation".into(), Default::default());
        let c = Collector::default();
        emit(&s, &Sink::Collect(c.clone()), 0);
        let sets = c.drain();
        check_coverage(FUNCTION, sets.iter().map(|(_, m)| m)).unwrap();
    }
}
