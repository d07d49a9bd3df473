//! DynamoDB Streams records as a Lambda event holds them, built from what the Streams API
//! returns, as an event source mapping builds them. `sluice local run` feeds ingest with these,
//! and a redrive runs the records of a stream range through ingest with them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

/// One DynamoDB Streams record as Lambda delivers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LambdaStreamRecord {
    #[serde(rename = "eventID")]
    event_id: String,
    event_name: String,
    event_version: String,
    event_source: &'static str,
    aws_region: String,
    dynamodb: LambdaStreamData,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_identity: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LambdaStreamData {
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_creation_date_time: Option<Box<RawValue>>,
    keys: BTreeMap<String, serde_dynamo::AttributeValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_image: Option<BTreeMap<String, serde_dynamo::AttributeValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_image: Option<BTreeMap<String, serde_dynamo::AttributeValue>>,
    sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_view_type: Option<String>,
}

type SdkImage = std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>;

fn image(m: &SdkImage) -> BTreeMap<String, serde_dynamo::AttributeValue> {
    m.iter()
        .map(|(k, v)| (k.clone(), serde_dynamo::AttributeValue::from(v.clone())))
        .collect()
}

/// Epoch seconds as Lambda writes them: whole seconds, or with milliseconds when there are any.
fn epoch_seconds(t: &aws_smithy_types::DateTime) -> Option<Box<RawValue>> {
    let ms = t.subsec_nanos() / 1_000_000;
    let text = if ms == 0 {
        t.secs().to_string()
    } else {
        format!("{}.{ms:03}", t.secs())
    };
    RawValue::from_string(text).ok()
}

/// The stream record as one JSON object of a Lambda `Records` array.
pub fn stream_record_json(
    stream_arn: &str,
    region: &str,
    r: &aws_sdk_dynamodbstreams::types::Record,
) -> Option<String> {
    let d = r.dynamodb()?;
    let record = LambdaStreamRecord {
        event_id: r.event_id().unwrap_or_default().to_owned(),
        event_name: r
            .event_name()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
        event_version: r.event_version().unwrap_or("1.1").to_owned(),
        event_source: "aws:dynamodb",
        aws_region: r.aws_region().unwrap_or(region).to_owned(),
        dynamodb: LambdaStreamData {
            approximate_creation_date_time: d
                .approximate_creation_date_time()
                .and_then(epoch_seconds),
            keys: d.keys().map(image).unwrap_or_default(),
            new_image: d.new_image().map(image),
            old_image: d.old_image().map(image),
            sequence_number: d.sequence_number().unwrap_or_default().to_owned(),
            size_bytes: d.size_bytes(),
            stream_view_type: d.stream_view_type().map(|v| v.as_str().to_owned()),
        },
        event_source_arn: stream_arn.to_owned(),
        user_identity: r
            .user_identity()
            .map(|u| serde_json::json!({"type": u.r#type(), "principalId": u.principal_id()})),
    };
    serde_json::to_string(&record).ok()
}

/// A Lambda DynamoDB Streams event holding `records`.
pub fn stream_event(
    stream_arn: &str,
    region: &str,
    records: &[aws_sdk_dynamodbstreams::types::Record],
) -> String {
    let items: Vec<String> = records
        .iter()
        .filter_map(|r| stream_record_json(stream_arn, region, r))
        .collect();
    format!("{{\"Records\":[{}]}}", items.join(","))
}

/// A Kinesis record of shard `shard_id` as one object of a Lambda Kinesis event's `Records`,
/// as a Kinesis event source mapping writes it (the data base64, the arrival time in epoch
/// seconds with milliseconds).
pub fn kinesis_record_json(
    stream_arn: &str,
    region: &str,
    shard_id: &str,
    r: &aws_sdk_kinesis::types::Record,
) -> serde_json::Value {
    let mut record = serde_json::json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r.partition_key(),
            "sequenceNumber": r.sequence_number(),
            "data": aws_smithy_types::base64::encode(r.data().as_ref()),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard_id}:{}", r.sequence_number()),
        "eventName": "aws:kinesis:record",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    });
    let arrival = r
        .approximate_arrival_timestamp()
        .map(|t| format!("{}.{:03}", t.secs(), t.subsec_nanos() / 1_000_000))
        .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok());
    if let Some(n) = arrival {
        record["kinesis"]["approximateArrivalTimestamp"] = n;
    }
    record
}

/// A Lambda Kinesis event holding `records` of shard `shard_id`.
pub fn kinesis_event(
    stream_arn: &str,
    region: &str,
    shard_id: &str,
    records: &[aws_sdk_kinesis::types::Record],
) -> String {
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|r| kinesis_record_json(stream_arn, region, shard_id, r))
        .collect();
    serde_json::json!({ "Records": items }).to_string()
}
