//! Property tests of the ingest handler with in-memory ports: whatever arrives, every record ends
//! as a landed line or a dead letter, and nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use sluice_aws::memory::Memory;
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::{handle, Ingest};
use sluice_pipeline::IngestConfig;

/// Runs ingest on an event and returns (landed lines, dead letters, failures reported).
fn run(event: &str) -> (usize, usize, usize) {
    let mem = Memory::discarding();
    let deps = Ingest {
        config: IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" | "SLUICE_DLQ_URL" => Some("x".into()),
            _ => None,
        })
        .unwrap(),
        store: &mem,
        dead_letters: &mem,
        metrics: Sink::Discard,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = rt.block_on(handle(event, &deps)).unwrap();
    let landed = mem.lines_landed();
    let dead = mem.dead_letter_count();
    (landed, dead, response.failed_ids().len())
}

/// `SLUICE_FUZZ_CASES` cases (256 by default; `make fuzz` runs many more).
fn cases() -> u32 {
    std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-zA-Z0-9 _.:+-]{0,12}".prop_map(serde_json::Value::String),
        prop_oneof![
            Just("S"),
            Just("N"),
            Just("B"),
            Just("SS"),
            Just("NS"),
            Just("M"),
            Just("L"),
            Just("NULL"),
            Just("BOOL")
        ]
        .prop_map(|k| serde_json::Value::String(k.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("eventName".to_owned()),
                    Just("dynamodb".to_owned()),
                    Just("SequenceNumber".to_owned()),
                    Just("Keys".to_owned()),
                    Just("NewImage".to_owned()),
                    Just("eventSourceARN".to_owned()),
                    Just("table".to_owned()),
                    Just("op".to_owned()),
                    Just("seq".to_owned()),
                    Just("payload".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Arbitrary bytes as SQS bodies (as text, since SQS bodies are strings).
    #[test]
    fn any_sqs_body_lands_or_is_dead_lettered(bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6)) {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| serde_json::json!({
                "messageId": format!("m{i}"), "body": String::from_utf8_lossy(b),
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:r:1:q"
            }))
            .collect();
        let (landed, dead, failed) = run(&serde_json::json!({ "Records": records }).to_string());
        prop_assert_eq!(landed + dead, bodies.len());
        prop_assert_eq!(failed, 0);
    }

    /// Arbitrary JSON (shaped like bodies and stream records) as SQS bodies and stream records.
    #[test]
    fn any_json_record_lands_or_is_dead_lettered(values in prop::collection::vec(json_value(), 1..6)) {
        let sqs: Vec<serde_json::Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"messageId": format!("m{i}"), "body": v.to_string(), "eventSource": "aws:sqs", "eventSourceARN": "q"}))
            .collect();
        let (landed, dead, failed) = run(&serde_json::json!({ "Records": sqs }).to_string());
        prop_assert_eq!(landed + dead, values.len());
        prop_assert_eq!(failed, 0);

        let stream: Vec<serde_json::Value> = values
            .iter()
            .map(|v| {
                let mut r = serde_json::json!({"eventSource": "aws:dynamodb"});
                if let (Some(o), Some(extra)) = (r.as_object_mut(), v.as_object()) {
                    for (k, x) in extra {
                        o.insert(k.clone(), x.clone());
                    }
                }
                r
            })
            .collect();
        let event = serde_json::json!({ "Records": stream }).to_string();
        let mem_result = std::panic::catch_unwind(|| run(&event));
        prop_assert!(mem_result.is_ok(), "no panic");
        let (landed, dead, failed) = mem_result.unwrap();
        // A stream record without a sequence number cannot be reported; it is dead-lettered.
        prop_assert_eq!(landed + dead, values.len());
        prop_assert_eq!(failed, 0);
    }

    /// Arbitrary bytes, and change records with arbitrary JSON inside, as Kinesis data.
    #[test]
    fn any_kinesis_data_lands_or_is_dead_lettered(
        bytes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
        parts in prop::collection::vec((json_value(), json_value(), json_value()), 0..4),
        precision in prop_oneof![Just(None), Just(Some("MILLISECOND")), Just(Some("MICROSECOND")), Just(Some("x"))],
    ) {
        use base64::Engine;
        let mut payloads = bytes;
        for (created, keys, image) in &parts {
            let mut dynamodb = serde_json::json!({"ApproximateCreationDateTime": created, "Keys": keys, "NewImage": image});
            if let (Some(p), Some(o)) = (precision, dynamodb.as_object_mut()) {
                o.insert("ApproximateCreationDateTimePrecision".into(), p.into());
            }
            let change = serde_json::json!({"eventName": "INSERT", "tableName": "t", "eventSource": "aws:dynamodb", "dynamodb": dynamodb});
            payloads.push(change.to_string().into_bytes());
        }
        if payloads.is_empty() {
            // An empty batch is not an event Lambda sends; make it one record of empty data.
            payloads.push(Vec::new());
        }
        let records: Vec<serde_json::Value> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| serde_json::json!({
                "kinesis": {"data": base64::engine::general_purpose::STANDARD.encode(p), "sequenceNumber": format!("4965782840918770152001999524250839011995335832519258{i:04}"), "partitionKey": "k"},
                "eventSource": "aws:kinesis", "eventID": format!("shardId-000000000000:{i}"), "eventSourceARN": "arn:aws:kinesis:r:1:stream/s"
            }))
            .collect();
        let (landed, dead, failed) = run(&serde_json::json!({ "Records": records }).to_string());
        prop_assert_eq!(landed + dead, payloads.len());
        prop_assert_eq!(failed, 0);
    }
}
