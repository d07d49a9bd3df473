//! The records of a stream mapping's on-failure record, read again from their stream.
//!
//! An on-failure record (`DDBStreamBatchInfo`, `KinesisBatchInfo`) names a shard and a range
//! of sequence numbers, not the records. They are read again from the stream, from the first
//! sequence number to the last, and returned as the Lambda event the mapping would have
//! delivered, for ingest. Past the stream's retention (24 hours for DynamoDB Streams, the
//! stream's retention for Kinesis) the records are gone: that is [`RangeError::PastRetention`],
//! and the changes must come back from raw staging or the source instead.

use std::cmp::Ordering;

use sluice_aws::AwsError;
use sluice_core::dead_letter::{StreamBatch, StreamKind};

use crate::stream_events::stream_record_json;

/// The most `GetRecords` calls one range may take (a range is at most a mapping's batch).
const MAX_PAGES: usize = 1_000;

/// Empty pages in a row after which a range's last record is taken as not there.
const MAX_EMPTY_PAGES: usize = 20;

fn not_reached(end: &str, read: usize, pages: usize) -> RangeError {
    RangeError::NotReached {
        end: end.to_owned(),
        read,
        pages,
    }
}

/// Why a range could not be read again.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    /// The records are no longer in the stream.
    #[error(
        "the records are past the stream's retention ({0}); they cannot be read again from it. \
         Replay raw staging (`sluice replay --table …`) or re-export from the source"
    )]
    PastRetention(String),
    /// The on-failure record does not name a stream, a shard or a range.
    #[error("the on-failure record names no {0}")]
    Incomplete(&'static str),
    /// The range's last record was not reached (the shard ended, or too many pages came back
    /// empty); nothing of it is sent, so the letter stays.
    #[error(
        "the range's last record ({end}) was not reached after {read} record(s) and {pages} \
         page(s); the letter stays, to try again later"
    )]
    NotReached {
        /// The range's last sequence number.
        end: String,
        /// Records read before giving up.
        read: usize,
        /// Pages asked for.
        pages: usize,
    },
    /// A call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl RangeError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Aws(e) => e.is_retriable(),
            Self::NotReached { .. } => true,
            Self::PastRetention(_) | Self::Incomplete(_) => false,
        }
    }
}

/// Whether an error code says the records are gone from the stream.
pub fn is_past_retention(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TrimmedDataAccessException" | "ExpiredIteratorException")
    )
}

fn classify(e: AwsError) -> RangeError {
    if is_past_retention(e.code.as_deref()) {
        RangeError::PastRetention(e.message.clone())
    } else {
        RangeError::Aws(e)
    }
}

/// Compares two sequence numbers as the decimal numbers they are.
pub fn cmp_sequence(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Reads the stream clients a redrive needs.
#[derive(Debug, Clone)]
pub struct StreamReaders {
    /// DynamoDB Streams.
    pub dynamodb: aws_sdk_dynamodbstreams::Client,
    /// Kinesis Data Streams.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The region, for the events' `awsRegion`.
    pub region: String,
}

impl StreamReaders {
    /// The clients for `sdk`.
    pub fn from_sdk(sdk: &sluice_aws::clients::SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodbstreams::Client::new(sdk),
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            region: sdk.region().map(ToString::to_string).unwrap_or_default(),
        }
    }

    /// The Lambda event holding the range's records, read again from the stream.
    pub async fn read(&self, batch: &StreamBatch) -> Result<String, RangeError> {
        let arn = batch
            .stream_arn
            .as_deref()
            .ok_or(RangeError::Incomplete("stream"))?;
        let shard = batch
            .shard_id
            .as_deref()
            .ok_or(RangeError::Incomplete("shard"))?;
        let start = batch
            .start_sequence_number
            .as_deref()
            .ok_or(RangeError::Incomplete("first sequence number"))?;
        let end = batch.end_sequence_number.as_deref().unwrap_or(start);
        let records = match batch.kind {
            StreamKind::DynamoDb => self.dynamodb_range(arn, shard, start, end).await?,
            StreamKind::Kinesis => self.kinesis_range(arn, shard, start, end).await?,
        };
        Ok(format!("{{\"Records\":[{}]}}", records.join(",")))
    }

    async fn dynamodb_range(
        &self,
        arn: &str,
        shard: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<String>, RangeError> {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType;
        let target = format!("{arn} shard {shard}");
        let mut iterator = self
            .dynamodb
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(start)
            .send()
            .await
            .map_err(|e| classify(AwsError::from_sdk("GetShardIterator", target.clone(), e)))?
            .shard_iterator
            .ok_or(RangeError::Incomplete("shard iterator in the answer"))?;
        let mut out = Vec::new();
        let mut empty = 0;
        for pages in 1..=MAX_PAGES {
            let page = self
                .dynamodb
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .map_err(|e| classify(AwsError::from_sdk("GetRecords", target.clone(), e)))?;
            let records = page.records();
            for r in records {
                let seq = r
                    .dynamodb()
                    .and_then(|d| d.sequence_number())
                    .unwrap_or_default();
                let at = cmp_sequence(seq, end);
                if at == Ordering::Greater {
                    return Ok(out);
                }
                if let Some(json) = stream_record_json(arn, &self.region, r) {
                    out.push(json);
                }
                if at == Ordering::Equal {
                    return Ok(out);
                }
            }
            empty = if records.is_empty() { empty + 1 } else { 0 };
            // A page may be empty in the middle of a shard; many in a row, or a shard's end,
            // before the range's last record means it was not reached.
            match page.next_shard_iterator() {
                Some(next) if empty < MAX_EMPTY_PAGES => iterator = next.to_owned(),
                _ => return Err(not_reached(end, out.len(), pages)),
            }
        }
        Err(not_reached(end, out.len(), MAX_PAGES))
    }

    async fn kinesis_range(
        &self,
        arn: &str,
        shard: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<String>, RangeError> {
        use aws_sdk_kinesis::types::ShardIteratorType;
        let target = format!("{arn} shard {shard}");
        let mut iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(start)
            .send()
            .await
            .map_err(|e| classify(AwsError::from_sdk("GetShardIterator", target.clone(), e)))?
            .shard_iterator
            .ok_or(RangeError::Incomplete("shard iterator in the answer"))?;
        let mut out = Vec::new();
        let mut empty = 0;
        for pages in 1..=MAX_PAGES {
            let page = self
                .kinesis
                .get_records()
                .stream_arn(arn)
                .shard_iterator(&iterator)
                .send()
                .await
                .map_err(|e| classify(AwsError::from_sdk("GetRecords", target.clone(), e)))?;
            let records = page.records();
            for r in records {
                let at = cmp_sequence(r.sequence_number(), end);
                if at == Ordering::Greater {
                    return Ok(out);
                }
                let record = crate::stream_events::kinesis_record_json(arn, &self.region, shard, r);
                out.push(record.to_string());
                if at == Ordering::Equal {
                    return Ok(out);
                }
            }
            empty = if records.is_empty() { empty + 1 } else { 0 };
            match page.next_shard_iterator() {
                Some(next) if empty < MAX_EMPTY_PAGES => iterator = next.to_owned(),
                _ => return Err(not_reached(end, out.len(), pages)),
            }
        }
        Err(not_reached(end, out.len(), MAX_PAGES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(cmp_sequence("998", "1234"), Ordering::Less);
        assert_eq!(cmp_sequence("000998", "998"), Ordering::Equal);
        assert_eq!(
            cmp_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
    }

    #[test]
    fn trimmed_or_expired_records_are_past_retention() {
        // The codes AWS answers with when a range is gone: a sequence number behind the trim
        // horizon, and an iterator older than five minutes.
        assert!(is_past_retention(Some("TrimmedDataAccessException")));
        assert!(is_past_retention(Some("ExpiredIteratorException")));
        assert!(!is_past_retention(Some(
            "ProvisionedThroughputExceededException"
        )));
        assert!(!is_past_retention(None));
        let e = RangeError::PastRetention("x".into());
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("sluice replay"), "{e}");
    }
}
