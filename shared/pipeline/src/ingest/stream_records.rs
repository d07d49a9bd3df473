//! DynamoDB Streams records: the first failed sequence number is reported, so the shard is
//! retried from there.

use std::borrow::Cow;
use std::collections::HashSet;

use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::value::RawValue;
use sluice_core::json::read_raw_members;
use sluice_core::raw::{check_table, Landable, Origin, OriginKind};
use sluice_core::{ddb, Format};

use crate::config::IngestConfig;

use super::*;

pub(super) fn stream_slot<'a>(
    index: usize,
    raw: &'a RawValue,
    config: &IngestConfig,
    now_ms: i64,
) -> Slot<'a> {
    let limits = &config.limits;
    let (text, members) = match read_raw_members(raw, limits) {
        Ok(t) => t,
        Err(e) => {
            let origin = fallback_origin(OriginKind::Ddb, index);
            return Slot {
                report_id: None,
                group: None,
                retry_count: 0,
                outcome: dead(e, None, &origin, raw.get().to_owned(), 0, now_ms),
            };
        }
    };
    // The scan that checked the record found its members: the few that route it are read
    // from there, and the record is parsed only when they do not read plainly.
    let parsed = ddb::RoutedRecord::from_members(raw.get(), &members)
        .map_or_else(|| ddb::RoutedRecord::parse_routed(raw.get()), Ok);
    let (report_id, origin) = match &parsed {
        Ok(r) => (
            r.sequence_number().map(str::to_owned),
            Origin {
                kind: OriginKind::Ddb,
                arn: r.event_source_arn.clone().unwrap_or(Cow::Borrowed("")),
                id: r
                    .event_id
                    .clone()
                    .or_else(|| r.sequence_number().map(|s| Cow::Owned(s.to_owned())))
                    .unwrap_or_else(|| Cow::Owned(format!("record-{index}"))),
                attributes: None,
                message_attributes: None,
                kinesis: None,
            },
        ),
        Err(_) => (None, fallback_origin(OriginKind::Ddb, index)),
    };
    let routed = parsed
        .and_then(|r| r.route())
        .and_then(|route| check_table(&route.table).map(|()| route));
    let outcome = match routed {
        Ok(route) => Outcome::Land(Box::new(Landable {
            route,
            origin,
            record: text,
        })),
        Err(e) => dead(
            e,
            Some(Format::DdbStream),
            &origin,
            raw.get().to_owned(),
            0,
            now_ms,
        ),
    };
    Slot {
        report_id,
        group: None,
        retry_count: 0,
        outcome,
    }
}

pub(super) fn stream_response(
    slots: &[Slot<'_>],
    failed: &HashSet<usize>,
) -> Result<DynamoDbEventResponse, IngestError> {
    let mut response = DynamoDbEventResponse::default();
    if let Some(seq) = first_failed(slots, failed, "SequenceNumber")? {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = Some(seq);
        response.batch_item_failures.push(f);
    }
    Ok(response)
}

/// The sequence number of the first failed record of a stream or shard batch: it is retried from
/// that record on, so only that one is reported. `what` names the field, for the error when the
/// record has none.
pub(super) fn first_failed(
    slots: &[Slot<'_>],
    failed: &HashSet<usize>,
    what: &'static str,
) -> Result<Option<String>, IngestError> {
    let Some(first) = (0..slots.len()).find(|i| failed.contains(i)) else {
        return Ok(None);
    };
    slots[first]
        .report_id
        .clone()
        .map(Some)
        .ok_or(IngestError::Unreportable { index: first, what })
}
