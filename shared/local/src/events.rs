//! Lambda events built from what the AWS APIs return, as an event source mapping would build
//! them. `sluice local run` and the end-to-end tests use these to feed handlers from a real
//! stream or queue.

use std::collections::BTreeMap;

use serde::Serialize;

pub use sluice_pipeline::stream_events::{stream_event, stream_record_json};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LambdaSqsRecord<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    attributes: BTreeMap<&'a str, &'a str>,
    message_attributes: BTreeMap<&'a str, LambdaSqsAttribute<'a>>,
    md5_of_body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<&'a str>,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
    aws_region: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LambdaSqsAttribute<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    string_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
    string_list_values: Vec<&'a str>,
    binary_list_values: Vec<String>,
    data_type: &'a str,
}

/// A Lambda SQS event holding `messages` as received from `queue_arn`.
pub fn sqs_event(
    queue_arn: &str,
    region: &str,
    messages: &[aws_sdk_sqs::types::Message],
) -> String {
    let records: Vec<LambdaSqsRecord<'_>> = messages
        .iter()
        .map(|m| LambdaSqsRecord {
            message_id: m.message_id().unwrap_or_default(),
            receipt_handle: m.receipt_handle().unwrap_or_default(),
            body: m.body().unwrap_or_default(),
            attributes: m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                .unwrap_or_default(),
            message_attributes: m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.as_str(),
                                LambdaSqsAttribute {
                                    string_value: v.string_value(),
                                    binary_value: v
                                        .binary_value()
                                        .map(|b| aws_smithy_types::base64::encode(b.as_ref())),
                                    string_list_values: v
                                        .string_list_values()
                                        .iter()
                                        .map(String::as_str)
                                        .collect(),
                                    binary_list_values: v
                                        .binary_list_values()
                                        .iter()
                                        .map(|b| aws_smithy_types::base64::encode(b.as_ref()))
                                        .collect(),
                                    data_type: v.data_type(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            md5_of_body: m.md5_of_body().unwrap_or_default(),
            md5_of_message_attributes: m.md5_of_message_attributes(),
            event_source: "aws:sqs",
            event_source_arn: queue_arn,
            aws_region: region,
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}
