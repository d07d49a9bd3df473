//! SQS records: application events, Debezium and DMS bodies, bare or wrapped; FIFO groups fail
//! together.

use std::borrow::Cow;
use std::collections::HashSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use serde_json::value::RawValue;
use sluice_core::json::read_str;
use sluice_core::raw::{check_table, Landable, Origin, OriginKind};
use sluice_core::{body, DecodeError, Format};

use crate::config::IngestConfig;
use crate::sqs::SqsRecordView;

use super::*;

pub(super) fn sqs_slot<'a>(
    index: usize,
    raw: &'a RawValue,
    config: &IngestConfig,
    now_ms: i64,
) -> Slot<'a> {
    let view: SqsRecordView<'a> = match serde_json::from_str(raw.get()) {
        Ok(v) => v,
        Err(e) => {
            let err = DecodeError::UnknownShape {
                detail: format!("not an SQS record: {e}"),
            };
            let origin = fallback_origin(OriginKind::Sqs, index);
            return Slot {
                report_id: None,
                group: None,
                retry_count: 0,
                outcome: dead(err, None, &origin, raw.get().to_owned(), 0, now_ms),
            };
        }
    };
    let retry_count = view.retry_count();
    let group = view.attributes().message_group_id.map(Cow::into_owned);
    let origin = Origin {
        kind: OriginKind::Sqs,
        arn: view.event_source_arn.clone().unwrap_or(Cow::Borrowed("")),
        id: view
            .message_id
            .clone()
            .unwrap_or_else(|| Cow::Owned(format!("record-{index}"))),
        attributes: view.attributes.map(compact_raw),
        message_attributes: view.message_attributes.map(compact_raw),
        kinesis: None,
    };
    let report_id = view.message_id.as_deref().map(str::to_owned);
    let outcome = match sqs_body(&view, config) {
        Ok((route, record)) => Outcome::Land(Box::new(Landable {
            route,
            origin,
            record: Cow::Owned(record),
        })),
        Err((err, format, original)) => {
            let mut outcome = dead(err, format, &origin, original, retry_count, now_ms);
            if let (Outcome::Dead(env), Some(mark)) = (&mut outcome, view.redrive_mark()) {
                keep_history(env, &origin.arn, &mark);
            }
            outcome
        }
    };
    Slot {
        report_id,
        group,
        retry_count,
        outcome,
    }
}

/// A redriven record that fails again keeps its history: the `failure_id` of its first
/// message (so every count takes it once) and its first failure time.
fn keep_history(
    env: &mut sluice_core::envelope::FailureEnvelope,
    arn: &str,
    mark: &sluice_core::envelope::RedriveMark,
) {
    if let Some(id) = mark.origin_id.as_deref() {
        env.failure_id = sluice_core::envelope::failure_id(
            env.step,
            arn,
            id,
            env.error_code.as_deref().unwrap_or_default(),
        );
    }
    if let Some(at) = &mark.first_failed_at {
        env.first_failed_at.clone_from(at);
    }
}

pub(super) type BodyFailure = (DecodeError, Option<Format>, String);

/// Reads, bounds, validates and routes one SQS body.
pub(super) fn sqs_body(
    view: &SqsRecordView<'_>,
    config: &IngestConfig,
) -> Result<(sluice_core::Route, String), BodyFailure> {
    let Some(raw_body) = view.body else {
        return Err((
            DecodeError::MissingField {
                path: "body".into(),
            },
            None,
            String::new(),
        ));
    };
    let text: Cow<'_, str> = serde_json::from_str(raw_body.get()).map_err(|e| {
        let err = if raw_body.get().starts_with('"') {
            DecodeError::InvalidUtf8 {
                detail: e.to_string(),
            }
        } else {
            DecodeError::InvalidField {
                path: "body".into(),
                detail: "expected a string".into(),
            }
        };
        (err, None, raw_body.get().to_owned())
    })?;
    let compact = read_str(&text, &config.limits).map_err(|e| (e, None, text.to_string()))?;
    let route = body::route(&compact, &config.limits).map_err(|e| (e, None, text.to_string()))?;
    check_table(&route.table).map_err(|e| (e, Some(route.format), text.to_string()))?;
    Ok((route, compact.into_owned()))
}

pub(super) fn sqs_response(slots: &[Slot<'_>], failed: &HashSet<usize>) -> SqsBatchResponse {
    let mut failed_groups: HashSet<&str> = HashSet::new();
    let mut response = SqsBatchResponse::default();
    for (i, slot) in slots.iter().enumerate() {
        let group_failed = slot
            .group
            .as_deref()
            .is_some_and(|g| failed_groups.contains(g));
        if failed.contains(&i) || group_failed {
            if let Some(g) = slot.group.as_deref() {
                failed_groups.insert(g);
            }
            let mut f = BatchItemFailure::default();
            f.item_identifier = slot
                .report_id
                .clone()
                .unwrap_or_else(|| format!("record-{i}"));
            response.batch_item_failures.push(f);
        }
    }
    response
}
