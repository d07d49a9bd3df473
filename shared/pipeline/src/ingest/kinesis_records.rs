//! DynamoDB changes delivered through Kinesis Data Streams: the decoded change record lands,
//! the Kinesis metadata goes in the origin.

use std::borrow::Cow;
use std::collections::HashSet;

use aws_lambda_events::event::streams::KinesisEventResponse;
use serde_json::value::RawValue;
use sluice_core::raw::{check_table, Landable, OriginKind};
use sluice_core::{kinesis, DecodeError, Format};

use super::stream_records::first_failed;
use crate::config::IngestConfig;

use super::*;

pub(super) fn kinesis_slot<'a>(
    index: usize,
    raw: &'a RawValue,
    config: &IngestConfig,
    now_ms: i64,
) -> Slot<'a> {
    let view = match kinesis::LambdaRecord::parse(raw.get()) {
        Ok(v) => v,
        Err(e) => {
            let origin = fallback_origin(OriginKind::Kinesis, index);
            return Slot {
                report_id: None,
                group: None,
                retry_count: 0,
                outcome: dead(e, None, &origin, raw.get().to_owned(), 0, now_ms),
            };
        }
    };
    let origin = view.origin(index);
    let outcome = match kinesis_change(&view, &config.limits) {
        Ok((route, record)) => Outcome::Land(Box::new(Landable {
            route,
            origin,
            record: Cow::Owned(record),
        })),
        // The original is the whole Lambda record: its data may not even be text.
        Err((err, format)) => dead(err, format, &origin, raw.get().to_owned(), 0, now_ms),
    };
    Slot {
        report_id: view.sequence_number().map(str::to_owned),
        group: None,
        retry_count: 0,
        outcome,
    }
}

/// Decodes, bounds, validates and routes the change record in one Kinesis record's data.
pub(super) fn kinesis_change(
    view: &kinesis::LambdaRecord<'_>,
    limits: &sluice_core::json::Limits,
) -> Result<(sluice_core::Route, String), (DecodeError, Option<Format>)> {
    let data = view.data(limits).map_err(|e| (e, None))?;
    let change = kinesis::ChangeRecord::parse(&data).map_err(|e| (e, None))?;
    let format = Some(Format::DdbKinesis);
    let seq = view.sequence_number().ok_or_else(|| {
        (
            DecodeError::MissingSeq {
                path: "kinesis.sequenceNumber".into(),
            },
            format,
        )
    })?;
    let route = change.route(seq).map_err(|e| (e, format))?;
    check_table(&route.table).map_err(|e| (e, format))?;
    // `data` was read, checked and compacted by `LambdaRecord::data`.
    Ok((route, data))
}

pub(super) fn kinesis_response(
    slots: &[Slot<'_>],
    failed: &HashSet<usize>,
) -> Result<KinesisEventResponse, IngestError> {
    let mut response = KinesisEventResponse::default();
    if let Some(seq) = first_failed(slots, failed, "sequenceNumber")? {
        response.add_failure(seq);
    }
    Ok(response)
}
