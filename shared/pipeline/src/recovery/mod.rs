//! Recovery: dead letters inspected, judged and sent back, one library for `sluice dlq` and
//! the redrive function alike.
//!
//! - [`select`]: what a letter is about, filters, error fingerprints, counts;
//! - [`judge`]: what a letter would become under the code and contracts as they are now, and
//!   how it goes back (the original body to its queue, a raw line to the transform queue, a
//!   stream range through ingest);
//! - [`run`]: a redrive over the dead-letter queues: every letter read once, the matching ones
//!   judged, sent back and only then deleted (send first, then delete: a stop in between
//!   leaves a harmless duplicate, never a lost letter), the rest given back untouched;
//! - [`function`]: the redrive function's handler, on a schedule and on demand;
//! - [`replay`]: transform run again over raw staging for a table and a time range;
//! - `streams` (feature `streams`): stream ranges read again.

pub mod function;
pub mod judge;
pub mod replay;
pub mod run;
pub mod select;
#[cfg(feature = "streams")]
pub mod streams;

use crate::config::{parsed, ConfigError, IngestConfig};

pub use judge::{Action, Plan, Verdict, VerdictKind};
pub use run::{Fate, LetterReport, Redrive, RedriveOptions, RedriveSummary};
pub use select::{Facets, Filter, Stats};

/// Where letters are read from and sent back to. Every variable is listed in the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// `SLUICE_DLQ_URL`, and `SLUICE_DLQ_FIFO_URL` when a FIFO ingest queue has its own DLQ.
    pub dlq_urls: Vec<String>,
    /// `SLUICE_INGEST_QUEUE_URL`: where moved source messages go back when SQS does not say
    /// which queue they came from.
    pub ingest_queue_url: Option<String>,
    /// `SLUICE_INGEST_FIFO_QUEUE_URL`: the same for messages of a FIFO group.
    pub ingest_fifo_queue_url: Option<String>,
    /// `SLUICE_TRANSFORM_QUEUE_URL`: where raw lines and object notifications go back.
    pub transform_queue_url: String,
    /// `SLUICE_CONTRACTS`: the contracts letters are judged by.
    pub contracts: String,
    /// `SLUICE_REDRIVE_MAX_RETRIES`: how often the redrive function sends a record back
    /// before leaving it for a person (default 5).
    pub max_retries: u32,
    /// `SLUICE_MAX_LINE_BYTES`: the longest raw line transform reads (as for transform).
    pub max_line_bytes: usize,
    /// The ingest settings, for records that go through ingest here (stream ranges).
    pub ingest: IngestConfig,
}

impl RecoveryConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `env`.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let ingest = IngestConfig::from_lookup(&env)?;
        let optional = |name: &str| env(name).filter(|v| !v.is_empty());
        let mut dlq_urls = vec![ingest.dlq_url.clone()];
        dlq_urls.extend(optional("SLUICE_DLQ_FIFO_URL"));
        Ok(Self {
            dlq_urls,
            ingest_queue_url: optional("SLUICE_INGEST_QUEUE_URL"),
            ingest_fifo_queue_url: optional("SLUICE_INGEST_FIFO_QUEUE_URL"),
            transform_queue_url: crate::config::required(&env, "SLUICE_TRANSFORM_QUEUE_URL")?,
            contracts: crate::config::required(&env, "SLUICE_CONTRACTS")?,
            max_retries: parsed(&env, "SLUICE_REDRIVE_MAX_RETRIES", 5)?,
            max_line_bytes: parsed(
                &env,
                "SLUICE_MAX_LINE_BYTES",
                crate::TransformConfig::DEFAULT_MAX_LINE_BYTES,
            )?,
            ingest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_queue_and_names_what_is_missing() {
        let base = |name: &str| match name {
            "SLUICE_RAW_BUCKET" => Some("raw".to_owned()),
            "SLUICE_DLQ_URL" => Some("http://q/dlq".to_owned()),
            "SLUICE_TRANSFORM_QUEUE_URL" => Some("http://q/t".to_owned()),
            "SLUICE_CONTRACTS" => Some("s3://c/".to_owned()),
            "SLUICE_DLQ_FIFO_URL" => Some("http://q/dlq.fifo".to_owned()),
            _ => None,
        };
        let c = RecoveryConfig::from_lookup(base).unwrap();
        assert_eq!(c.dlq_urls, ["http://q/dlq", "http://q/dlq.fifo"]);
        assert_eq!(c.max_retries, 5);
        assert_eq!(c.ingest_queue_url, None);
        let e = RecoveryConfig::from_lookup(|n| {
            (n != "SLUICE_TRANSFORM_QUEUE_URL")
                .then(|| base(n))
                .flatten()
        })
        .unwrap_err();
        assert!(e.to_string().contains("SLUICE_TRANSFORM_QUEUE_URL"), "{e}");
    }
}
