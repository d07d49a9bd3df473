//! The scaler function: once a minute it sets each event source mapping's concurrency by the
//! queue-depth policy of [`sluice_core::scaling`].
//!
//! For each mapping in `SLUICE_SCALER_MAPPINGS` a run:
//! 1. reads the mapping (`GetEventSourceMapping`): its source, batch size and current setting;
//! 2. observes the source: a queue's visible and in-flight messages (`GetQueueAttributes`); and,
//!    from CloudWatch (`GetMetricData`), the function's own EMF metrics: messages per second of
//!    batch time (its records ÷ `BatchDuration`, the rate one concurrent batch drains),
//!    completions, and `RetriableFailures` (a throttling downstream). A stream mapping is
//!    observed by its `IteratorAge`;
//! 3. decides with [`decide`] (a queue's `MaximumConcurrency`) or [`decide_parallelization`] (a
//!    stream's `ParallelizationFactor`), and applies a change with `UpdateEventSourceMapping`;
//! 4. emits the decision as EMF metrics (`Function=scaler`, `Source=<queue or stream>`) and logs
//!    each change with its reason.
//!
//! The policy's window (recent recommendations, the throttling ceiling, the last calibrated
//! rate) lives in one small S3 object, `SLUICE_SCALER_STATE`, so a cold start carries on where
//! the last run stopped. The object is found by listing first, so the function needs no read on
//! keys that do not exist (S3 answers a missing key with 403 to a caller that cannot list).
//!
//! A request event may be `{"dry_run": true}`: decide and report, change nothing, keep no state.

mod config;
mod observe;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::metrics::{MetricSet, Sink, Unit};
use sluice_aws::AwsError;
use sluice_core::scaling::{
    decide, decide_parallelization, Observation, Reason, ScalerState, StreamObservation,
    MAX_PARALLELIZATION,
};

pub use config::{MappingSpec, ScalerConfig, CALIBRATED_BY};
pub use observe::{Calibration, Source};

/// The function name in metrics.
pub const FUNCTION: &str = "scaler";

/// What the scaler keeps of one mapping between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MappingState {
    /// The policy's window.
    pub policy: ScalerState,
    /// When it was last observed (epoch seconds).
    pub observed_at: Option<u64>,
    /// Its queue's visible plus in-flight messages then.
    pub backlog: Option<u64>,
    /// The last rate per batch measured (messages/s), kept for runs without fresh metrics.
    pub rate_per_batch: Option<f64>,
    /// The last change made.
    pub last_change: Option<Change>,
}

/// A change the scaler made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When (epoch seconds).
    pub at: u64,
    /// The setting before.
    pub from: u32,
    /// The setting after.
    pub to: u32,
    /// Why, in words.
    pub reason: String,
}

/// The state object: every mapping's state by UUID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateFile {
    /// By mapping UUID.
    pub mappings: BTreeMap<String, MappingState>,
}

/// What a run did with one mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingOutcome {
    /// The function its metrics come from.
    pub function: String,
    /// The mapping's UUID.
    pub uuid: String,
    /// Its source: the queue's or the stream's name (empty when it could not be read).
    pub source: String,
    /// `MaximumConcurrency` for a queue, `ParallelizationFactor` for a stream.
    pub setting: &'static str,
    /// The setting before the run.
    pub before: Option<u32>,
    /// The setting after it (what a dry run would set).
    pub after: Option<u32>,
    /// What the policy recommends now.
    pub recommended: Option<u32>,
    /// Whether the setting changed (or, in a dry run, would).
    pub changed: bool,
    /// Why, in words.
    pub reason: String,
    /// Why, as data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Reason>,
    /// Messages waiting (a queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible: Option<u64>,
    /// Messages being processed (a queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    /// Messages/s per concurrent batch used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_batch: Option<f64>,
    /// Messages arriving per second, estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrivals_per_sec: Option<f64>,
    /// The stream's iterator age, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterator_age_secs: Option<f64>,
    /// Throttles and retriable failures downstream per second.
    pub throttles_per_sec: f64,
    /// At its maximum while its backlog still grows.
    pub capacity_exhausted: bool,
    /// Why the mapping could not be observed or set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether that error may pass by itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retriable: bool,
}

impl MappingOutcome {
    /// An outcome of `spec` with nothing observed yet.
    fn new(spec: &MappingSpec) -> Self {
        Self {
            function: spec.function.clone(),
            uuid: spec.uuid.clone(),
            source: String::new(),
            setting: "MaximumConcurrency",
            before: None,
            after: None,
            recommended: None,
            changed: false,
            reason: String::new(),
            decision: None,
            visible: None,
            in_flight: None,
            rate_per_batch: None,
            arrivals_per_sec: None,
            iterator_age_secs: None,
            throttles_per_sec: 0.0,
            capacity_exhausted: false,
            error: None,
            retriable: false,
        }
    }
}

/// A run's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalerReport {
    /// Decided and reported only.
    pub dry_run: bool,
    /// When the run observed (epoch seconds).
    pub at: u64,
    /// One entry per mapping, in the configured order.
    pub mappings: Vec<MappingOutcome>,
    /// Settings changed (or, in a dry run, that would change).
    pub changes: usize,
    /// Mappings that could not be observed or set.
    pub failed: usize,
}

/// A request to the function (any event but a schedule).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerRequest {
    /// Decide and report; change nothing and keep no state.
    pub dry_run: bool,
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    /// The event is neither a schedule nor a request.
    #[error("unsupported event: {0}")]
    UnsupportedEvent(String),
    /// The state could not be read or written.
    #[error("the scaler's state: {0}")]
    State(#[source] AwsError),
}

impl ScalerError {
    /// Whether a later run may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::UnsupportedEvent(_) => false,
            Self::State(e) => e.is_retriable(),
        }
    }
}

/// What the function needs, built once at cold start.
pub struct Scaler {
    config: ScalerConfig,
    clients: observe::Clients,
    metrics: Sink,
}

impl Scaler {
    /// The function on AWS, with clients built from `sdk`.
    pub fn from_sdk(config: ScalerConfig, sdk: &SdkConfig, metrics: Sink) -> Self {
        Self {
            clients: observe::Clients {
                lambda: aws_sdk_lambda::Client::new(sdk),
                sqs: sqs_client(sdk),
                cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
                s3: s3_client(sdk),
            },
            config,
            metrics,
        }
    }

    /// What an event asks: a scheduled event runs; any other event is a [`ScalerRequest`].
    pub fn request(event: &str) -> Result<ScalerRequest, ScalerError> {
        if crate::lambda::is_schedule(event).map_err(ScalerError::UnsupportedEvent)? {
            return Ok(ScalerRequest::default());
        }
        serde_json::from_str(event).map_err(|e| {
            ScalerError::UnsupportedEvent(format!(
                "expected a scheduled event, {{}} or {{\"dry_run\": true}}: {e}"
            ))
        })
    }

    /// Handles one event at the current time.
    pub async fn handle(&self, event: &str) -> Result<ScalerReport, ScalerError> {
        let request = Self::request(event)?;
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        self.run(now, request.dry_run).await
    }

    /// One run at `now` (epoch seconds): every mapping observed, decided and (unless `dry_run`)
    /// set; the state saved; the decisions emitted. A mapping that fails is reported and the
    /// others go on; a state that cannot be read stops the run before it changes anything.
    pub async fn run(&self, now: u64, dry_run: bool) -> Result<ScalerReport, ScalerError> {
        let c = &self.config;
        let mut state = observe::load_state(&self.clients.s3, &c.state_bucket, &c.state_key)
            .await
            .map_err(ScalerError::State)?;
        let mut outcomes = Vec::with_capacity(c.mappings.len());
        for spec in &c.mappings {
            let entry = state.mappings.entry(spec.uuid.clone()).or_default();
            let outcome = match self.one(spec, entry, now, dry_run).await {
                Ok(o) => o,
                Err(e) => failed(spec, &e),
            };
            if let Some(err) = &outcome.error {
                tracing::warn!(mapping = %spec.uuid, function = %spec.function, error = %err, "Mapping not scaled.");
            }
            outcomes.push(outcome);
        }
        let report = ScalerReport {
            dry_run,
            at: now,
            changes: outcomes.iter().filter(|o| o.changed).count(),
            failed: outcomes.iter().filter(|o| o.error.is_some()).count(),
            mappings: outcomes,
        };
        if !dry_run {
            // Forget mappings no longer configured.
            state
                .mappings
                .retain(|uuid, _| c.mappings.iter().any(|s| &s.uuid == uuid));
            observe::save_state(&self.clients.s3, &c.state_bucket, &c.state_key, &state)
                .await
                .map_err(ScalerError::State)?;
            emit(&report, now, &self.metrics);
        }
        Ok(report)
    }

    async fn one(
        &self,
        spec: &MappingSpec,
        entry: &mut MappingState,
        now: u64,
        dry_run: bool,
    ) -> Result<MappingOutcome, AwsError> {
        let mapping = observe::mapping(&self.clients.lambda, &spec.uuid).await?;
        let mut out = MappingOutcome::new(spec);
        out.source = mapping.source.name().to_owned();
        if mapping.provisioned {
            out.reason = "provisioned mode (ProvisionedPollerConfig): MaximumConcurrency does not \
                          apply, left as it is"
                .into();
            return Ok(out);
        }
        let policy = self.config.policy_for(spec);
        let window = self.config.calibration_secs;
        match &mapping.source {
            Source::Queue { arn, name } => {
                let url = observe::queue_url(&self.clients.sqs, arn, name).await?;
                let (visible, in_flight) = observe::queue_counts(&self.clients.sqs, &url).await?;
                let m =
                    observe::calibration(&self.clients.cloudwatch, spec, name, None, now, window)
                        .await?;
                let backlog = visible + in_flight;
                let rate = m.rate_per_batch.or(entry.rate_per_batch);
                let arrivals = observe::arrivals(
                    entry.backlog,
                    entry.observed_at,
                    backlog,
                    now,
                    m.completions_per_sec,
                );
                // An unset MaximumConcurrency is AWS's default mode: up to 1,000.
                let actual = mapping.current.unwrap_or(1000);
                let bounded = actual.clamp(policy.min, policy.max);
                let obs = Observation {
                    now_secs: now,
                    visible,
                    in_flight,
                    oldest_age_secs: m.oldest_age_secs.unwrap_or(0.0),
                    arrivals_per_sec: arrivals,
                    completions_per_sec: m.completions_per_sec,
                    rate_per_batch: rate,
                    batch_size: mapping.batch_size,
                    throttles_per_sec: m.throttles_per_sec,
                    current: bounded,
                };
                let (decision, next) = decide(&policy, &obs, &entry.policy);
                let target = decision.set.unwrap_or(bounded);
                let mut reason = decision.reason.to_string();
                if decision.set.is_none() && target != actual {
                    reason = match mapping.current {
                        None => format!(
                            "unset (up to 1,000): brought within {}..={}",
                            policy.min, policy.max
                        ),
                        Some(_) => format!(
                            "{actual} is outside {}..={}: brought within",
                            policy.min, policy.max
                        ),
                    };
                }
                out.before = mapping.current;
                out.recommended = Some(decision.recommended);
                out.visible = Some(visible);
                out.in_flight = Some(in_flight);
                out.rate_per_batch = rate;
                out.arrivals_per_sec = Some(arrivals);
                out.throttles_per_sec = m.throttles_per_sec;
                out.capacity_exhausted =
                    falling_behind(target, policy.max, visible, entry.backlog, backlog);
                out.decision = Some(decision.reason);
                out.reason = reason;
                if target != actual {
                    if !dry_run {
                        observe::set_concurrency(&self.clients.lambda, &spec.uuid, target).await?;
                    }
                    out.changed = true;
                }
                out.after = Some(target);
                if !dry_run {
                    entry.policy = next;
                    entry.observed_at = Some(now);
                    entry.backlog = Some(backlog);
                    entry.rate_per_batch = rate;
                    if out.changed {
                        entry.last_change = Some(Change {
                            at: now,
                            from: actual,
                            to: target,
                            reason: out.reason.clone(),
                        });
                    }
                }
            }
            Source::Stream { name, .. } => {
                out.setting = "ParallelizationFactor";
                let m = observe::calibration(
                    &self.clients.cloudwatch,
                    spec,
                    name,
                    Some(&mapping.function_name),
                    now,
                    window,
                )
                .await?;
                let actual = mapping.parallelization.unwrap_or(1);
                let obs = StreamObservation {
                    now_secs: now,
                    iterator_age_secs: m.iterator_age_secs,
                    throttles_per_sec: m.throttles_per_sec,
                    current: actual,
                };
                let (decision, next) = decide_parallelization(&policy, &obs, &entry.policy);
                let target = decision.set.unwrap_or(actual.clamp(1, MAX_PARALLELIZATION));
                out.before = Some(actual);
                out.recommended = Some(decision.recommended);
                out.iterator_age_secs = m.iterator_age_secs;
                out.throttles_per_sec = m.throttles_per_sec;
                out.capacity_exhausted = target >= MAX_PARALLELIZATION
                    && m.iterator_age_secs
                        .is_some_and(|a| a > policy.backlog_target_secs);
                out.reason = decision.reason.to_string();
                out.decision = Some(decision.reason);
                if target != actual {
                    if !dry_run {
                        observe::set_parallelization(&self.clients.lambda, &spec.uuid, target)
                            .await?;
                    }
                    out.changed = true;
                }
                out.after = Some(target);
                if !dry_run {
                    entry.policy = next;
                    entry.observed_at = Some(now);
                    if out.changed {
                        entry.last_change = Some(Change {
                            at: now,
                            from: actual,
                            to: target,
                            reason: out.reason.clone(),
                        });
                    }
                }
            }
        }
        if out.changed {
            tracing::info!(
                mapping = %spec.uuid,
                source = %out.source,
                setting = out.setting,
                from = ?out.before,
                to = ?out.after,
                reason = %out.reason,
                dry_run,
                "Concurrency changed."
            );
        } else {
            tracing::debug!(mapping = %spec.uuid, source = %out.source, setting = ?out.after, reason = %out.reason, "Concurrency kept.");
        }
        Ok(out)
    }
}

/// A run's metrics: per mapping (dimension `Source`), and totals.
fn emit(report: &ScalerReport, now: u64, sink: &Sink) {
    let ms = i64::try_from(now.saturating_mul(1000)).unwrap_or(i64::MAX);
    for o in report.mappings.iter().filter(|o| o.error.is_none()) {
        let mut m = MetricSet::new(FUNCTION).dimension("Source", o.source.clone());
        if let Some(after) = o.after {
            m.put(
                if o.setting == "MaximumConcurrency" {
                    "Concurrency"
                } else {
                    "ParallelizationFactor"
                },
                Unit::Count,
                f64::from(after),
            );
        }
        if let Some(r) = o.recommended {
            m.put("Recommended", Unit::Count, f64::from(r));
        }
        if let (Some(v), Some(f)) = (o.visible, o.in_flight) {
            m.put("Backlog", Unit::Count, (v + f) as f64);
        }
        m.put(
            "ScalingChanges",
            Unit::Count,
            f64::from(u8::from(o.changed)),
        )
        .put(
            "CapacityExhausted",
            Unit::Count,
            f64::from(u8::from(o.capacity_exhausted)),
        );
        m.emit(sink, ms);
    }
    let mut m = MetricSet::new(FUNCTION);
    m.put("ScalingChanges", Unit::Count, report.changes as f64)
        .put("ScalerErrors", Unit::Count, report.failed as f64)
        .put(
            "CapacityExhausted",
            Unit::Count,
            f64::from(u8::from(
                report.mappings.iter().any(|o| o.capacity_exhausted),
            )),
        );
    m.emit(sink, ms);
}

/// A queue mapping at its maximum whose backlog still grew since the last run: more of the
/// same setting will not catch up.
fn falling_behind(setting: u32, max: u32, visible: u64, before: Option<u64>, now: u64) -> bool {
    setting >= max && visible > 0 && before.is_some_and(|b| now > b)
}

fn failed(spec: &MappingSpec, e: &AwsError) -> MappingOutcome {
    MappingOutcome {
        error: Some(e.to_string()),
        retriable: e.is_retriable(),
        ..MappingOutcome::new(spec)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_schedule_runs_and_a_request_may_ask_for_a_dry_run() {
        let schedule =
            r#"{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#;
        assert_eq!(Scaler::request(schedule).unwrap(), ScalerRequest::default());
        assert_eq!(Scaler::request("{}").unwrap(), ScalerRequest::default());
        assert!(Scaler::request(r#"{"dry_run": true}"#).unwrap().dry_run);
        let err = Scaler::request(r#"{"Records": []}"#).unwrap_err();
        assert!(
            err.to_string().contains("expected a scheduled event"),
            "{err}"
        );
        assert!(!err.is_retriable());
        assert!(Scaler::request("[")
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
    }

    #[test]
    fn capacity_is_exhausted_only_at_the_maximum_with_a_growing_backlog() {
        assert!(falling_behind(50, 50, 10, Some(100), 120));
        assert!(
            !falling_behind(49, 50, 10, Some(100), 120),
            "below the maximum"
        );
        assert!(!falling_behind(50, 50, 10, Some(120), 120), "not growing");
        assert!(
            !falling_behind(50, 50, 10, None, 120),
            "nothing to compare with"
        );
        assert!(!falling_behind(50, 50, 0, Some(100), 120), "all in flight");
    }

    #[test]
    fn its_metrics_are_the_catalogued_ones() {
        let spec = MappingSpec {
            function: "ingest".into(),
            uuid: "u".into(),
            max: None,
        };
        let queue = MappingOutcome {
            source: "q".into(),
            after: Some(4),
            recommended: Some(4),
            visible: Some(10),
            in_flight: Some(2),
            ..MappingOutcome::new(&spec)
        };
        let stream = MappingOutcome {
            source: "s".into(),
            setting: "ParallelizationFactor",
            after: Some(2),
            recommended: Some(2),
            ..MappingOutcome::new(&spec)
        };
        let report = ScalerReport {
            dry_run: false,
            at: 0,
            mappings: vec![queue, stream],
            changes: 0,
            failed: 0,
        };
        let c = sluice_aws::metrics::Collector::default();
        emit(&report, 0, &Sink::Collect(c.clone()));
        let sets = c.drain();
        sluice_aws::metrics::check_coverage(FUNCTION, sets.iter().map(|(_, m)| m)).unwrap();
    }

    #[test]
    fn the_state_reads_back_what_it_wrote_and_takes_an_empty_object() {
        let mut s = StateFile::default();
        s.mappings.insert(
            "u".into(),
            MappingState {
                observed_at: Some(60),
                backlog: Some(7),
                rate_per_batch: Some(12.5),
                ..MappingState::default()
            },
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StateFile>(&text).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<StateFile>("{}").unwrap(),
            StateFile::default()
        );
    }
}
