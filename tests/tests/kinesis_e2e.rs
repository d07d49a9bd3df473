//! End to end: DynamoDB changes delivered through Kinesis Data Streams (format `ddb-kinesis`),
//! against a real AWS-compatible endpoint.
//!
//! DynamoDB writes a table's changes to a Kinesis data stream itself; the local emulator does
//! not. So the test derives the change records DynamoDB would write from the source table's own
//! DynamoDB stream: the same changes and images, in stream order, with strictly increasing
//! creation times in microseconds. It puts them into a real Kinesis stream on the endpoint (out of
//! order and some twice, as DynamoDB may), reads every shard back as an event source mapping would,
//! and delivers the Lambda events to the ingest handler duplicated and shuffled, in several
//! batches. The transform handler then types the landed objects, and the typed table must equal
//! the source table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue as A;
use base64::Engine;
use sluice_core::typing::canonical_decimal;
use sluice_pipeline::ingest::IngestResponse;
use sluice_tests::*;

type Item = HashMap<String, A>;

const REGION: &str = "us-east-1";

fn s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn n(item: &Item, k: &str) -> Option<String> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .map(|x| canonical_decimal(x).unwrap())
}

fn contract(source: &str) -> String {
    format!(
        r#"
name: kinesis_typed
version: 1
sources: [{{table: {source}, formats: [ddb-kinesis]}}]
primary_key: [id]
fields:
  - {{name: id, type: string, from: pk}}
  - {{name: s, type: string}}
  - {{name: amount, type: decimal}}
  - {{name: version, type: int}}
  - {{name: tags, type: set<string>}}
  - {{name: b, type: binary}}
  - {{name: note, type: string}}
"#
    )
}

fn item(i: usize, v: usize) -> Item {
    HashMap::from([
        ("pk".to_owned(), A::S(format!("k-{i:03}"))),
        ("s".to_owned(), A::S(format!("ünïcode {i} v{v}"))),
        (
            "amount".to_owned(),
            A::N(format!("98765432109876543210.{v}{i:03}")),
        ),
        ("version".to_owned(), A::N(v.to_string())),
        (
            "tags".to_owned(),
            A::Ss(vec![format!("t{i}"), format!("v{v}")]),
        ),
        (
            "b".to_owned(),
            A::B(aws_sdk_dynamodb::primitives::Blob::new(vec![
                i as u8, v as u8, 0, 255,
            ])),
        ),
        ("note".to_owned(), A::S(format!("note {i}.{v}"))),
    ])
}

/// A small deterministic shuffle (xorshift), so a failure can be reproduced.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The change record DynamoDB writes to Kinesis for one DynamoDB stream record: the same event
/// name, identity, keys and images, the table's name instead of the stream ARN, no stream
/// sequence number, and the creation time in microseconds.
fn change_record(
    stream_arn: &str,
    table: &str,
    r: &aws_sdk_dynamodbstreams::types::Record,
    created_us: u64,
) -> String {
    let stream: serde_json::Value = serde_json::from_str(
        &sluice_local::events::stream_record_json(stream_arn, REGION, r).unwrap(),
    )
    .unwrap();
    let d = &stream["dynamodb"];
    let mut dynamodb = serde_json::json!({
        "ApproximateCreationDateTime": created_us,
        "ApproximateCreationDateTimePrecision": "MICROSECOND",
        "Keys": d["Keys"],
        "SizeBytes": d["SizeBytes"],
    });
    for image in ["NewImage", "OldImage"] {
        if !d[image].is_null() {
            dynamodb[image] = d[image].clone();
        }
    }
    serde_json::json!({
        "awsRegion": REGION,
        "eventID": stream["eventID"],
        "eventName": stream["eventName"],
        "userIdentity": stream.get("userIdentity").cloned().unwrap_or_default(),
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": dynamodb,
        "eventSource": "aws:dynamodb",
    })
    .to_string()
}

/// A record read back from a Kinesis shard, as one JSON object of a Lambda `Records` array.
fn lambda_record(
    stream_arn: &str,
    shard_id: &str,
    r: &aws_sdk_kinesis::types::Record,
) -> serde_json::Value {
    // Epoch seconds with milliseconds, as Lambda writes them.
    let t = r.approximate_arrival_timestamp().unwrap();
    let arrival: serde_json::Value =
        serde_json::from_str(&format!("{}.{:03}", t.secs(), t.subsec_nanos() / 1_000_000)).unwrap();
    serde_json::json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r.partition_key(),
            "sequenceNumber": r.sequence_number(),
            "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard_id}:{}", r.sequence_number()),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-ingest",
        "awsRegion": REGION,
        "eventSourceARN": stream_arn,
    })
}

/// Creates a Kinesis stream and waits until it is active; returns its ARN.
async fn kinesis_stream(kinesis: &aws_sdk_kinesis::Client, name: &str, shards: i32) -> String {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    for _ in 0..50 {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .unwrap();
        if summary.stream_status == aws_sdk_kinesis::types::StreamStatus::Active {
            return summary.stream_arn;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("stream {name} never became active");
}

/// Every record of every shard, from the trim horizon, as Lambda records.
async fn read_stream(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
    arn: &str,
) -> Vec<serde_json::Value> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let shards = kinesis
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .unwrap()
        .shards
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut it = kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(i) = it {
            let out = kinesis
                .get_records()
                .shard_iterator(i)
                .limit(1000)
                .send()
                .await
                .unwrap();
            if out.records().is_empty() {
                break;
            }
            records.extend(
                out.records()
                    .iter()
                    .map(|r| lambda_record(arn, shard.shard_id(), r)),
            );
            it = out.next_shard_iterator;
        }
    }
    records
}

/// GIVEN a DynamoDB source table changed many times per key (inserts, full and partial updates,
/// an attribute removed, deletes, re-inserts)
/// WHEN the change records DynamoDB would write to Kinesis go through a real Kinesis stream
/// (put out of order, some twice), reach ingest duplicated and shuffled in several batches, and
/// the landed objects go through transform
/// THEN the typed table equals the source table, every deleted item is a tombstone, and every
/// raw line is a `ddb-kinesis` line with its Kinesis metadata in its origin.
#[tokio::test]
async fn dynamodb_changes_through_kinesis_converge_to_the_source_table() {
    let env = env().await;
    let kinesis = aws_sdk_kinesis::Client::new(&env.sdk);
    let source = unique("kin-src");
    let p = pipeline(&env, &[("k.yaml", contract(&source))]).await;
    let ddb_stream_arn = source_table(&env, &source).await;

    // The changes: 30 inserts, three rounds of updates on 20 keys, a partial update that
    // removes an attribute, 8 deletes and 3 re-inserts.
    for i in 0..30 {
        let put = env.ddb.put_item().table_name(&source);
        put.set_item(Some(item(i, 0))).send().await.unwrap();
    }
    for v in 1..=3 {
        for i in 0..20 {
            let put = env.ddb.put_item().table_name(&source);
            put.set_item(Some(item(i, v))).send().await.unwrap();
        }
    }
    for i in 0..5 {
        env.ddb
            .update_item()
            .table_name(&source)
            .key("pk", A::S(format!("k-{i:03}")))
            .update_expression("SET #s = :s, version = :v REMOVE note")
            .expression_attribute_names("#s", "s")
            .expression_attribute_values(":s", A::S(format!("partial {i}")))
            .expression_attribute_values(":v", A::N("4".into()))
            .send()
            .await
            .unwrap();
    }
    for i in 10..18 {
        env.ddb
            .delete_item()
            .table_name(&source)
            .key("pk", A::S(format!("k-{i:03}")))
            .send()
            .await
            .unwrap();
    }
    for i in 10..13 {
        let put = env.ddb.put_item().table_name(&source);
        put.set_item(Some(item(i, 9))).send().await.unwrap();
    }
    let deleted: BTreeSet<String> = (13..18).map(|i| format!("k-{i:03}")).collect();

    // What DynamoDB would write to Kinesis: in stream order, strictly increasing microseconds
    // (from the stream's own creation times where they are later).
    let records = stream_records(&env, &ddb_stream_arn).await;
    assert!(
        records.len() >= 30 + 60 + 5 + 8 + 3,
        "{} changes",
        records.len()
    );
    let mut last_us = 0u64;
    let mut changes = Vec::new();
    for r in &records {
        let at_us = r
            .dynamodb()
            .and_then(|d| d.approximate_creation_date_time())
            .map(|t| t.secs() as u64 * 1_000_000 + u64::from(t.subsec_nanos() / 1_000))
            .unwrap_or_default();
        last_us = at_us.max(last_us + 1);
        let pk = r.dynamodb().unwrap().keys().unwrap()["pk"]
            .as_s()
            .unwrap()
            .clone();
        changes.push((pk, change_record(&ddb_stream_arn, &source, r, last_us)));
    }

    // Into a real Kinesis stream of two shards, partitioned by key. DynamoDB may write the
    // records out of order and some twice (a retried put: a new Kinesis sequence number, the
    // same change), so they are put shuffled, every fifth change again later on: the Kinesis
    // sequence numbers alone do not give the order of the changes.
    let stream_name = unique("kin");
    let kinesis_arn = kinesis_stream(&kinesis, &stream_name, 2).await;
    let mut rng = Shuffle(0x9e37_79b9_7f4a_7c15);
    let mut puts: Vec<(&String, &String)> = changes.iter().map(|(pk, d)| (pk, d)).collect();
    puts.extend(changes.iter().step_by(5).map(|(pk, d)| (pk, d)));
    rng.shuffle(&mut puts);
    for chunk in puts.chunks(100) {
        let entries = chunk
            .iter()
            .map(|(pk, data)| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(pk.as_str())
                    .data(aws_sdk_kinesis::primitives::Blob::new(data.as_bytes()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = kinesis
            .put_records()
            .stream_name(&stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    let kinesis_records = read_stream(&kinesis, &stream_name, &kinesis_arn).await;
    assert_eq!(kinesis_records.len(), puts.len(), "every put is read back");

    // Lambda delivers at least once: every third record again, everything shuffled, in
    // batches of varying size.
    let mut delivery = kinesis_records.clone();
    delivery.extend(kinesis_records.iter().step_by(3).cloned());
    rng.shuffle(&mut delivery);
    let ingest = ingest_deps(&env, &p.ingest);
    let mut rest = &delivery[..];
    while !rest.is_empty() {
        let size = (7 + rng.next() % 40) as usize;
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let event = serde_json::json!({ "Records": batch }).to_string();
        let response = sluice_pipeline::ingest::handle(&event, &ingest)
            .await
            .unwrap();
        assert!(matches!(response, IngestResponse::Kinesis(_)));
        assert!(
            response.failed_ids().is_empty(),
            "{:?}",
            response.failed_ids()
        );
    }

    let lines = raw_lines(&env, &p.ingest.raw_bucket).await;
    let mut landed_seqs = BTreeSet::new();
    for (key, line) in &lines {
        assert_eq!(line.format, sluice_core::Format::DdbKinesis);
        assert_eq!(line.table, source);
        assert!(key.starts_with(&format!("raw/{source}/")), "{key}");
        let origin: serde_json::Value = serde_json::from_str(line.origin.get()).unwrap();
        assert_eq!(origin["kind"], "kinesis");
        assert_eq!(origin["arn"], kinesis_arn.as_str());
        assert!(origin["kinesis"]["shard_id"]
            .as_str()
            .unwrap()
            .starts_with("shardId-"));
        landed_seqs.insert(
            origin["kinesis"]["sequence_number"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        let record: serde_json::Value = serde_json::from_str(line.record.get()).unwrap();
        assert_eq!(
            record["tableName"],
            source.as_str(),
            "the change record, decoded"
        );
    }
    let put_seqs: BTreeSet<String> = kinesis_records
        .iter()
        .map(|r| r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(landed_seqs, put_seqs, "every Kinesis record landed");
    assert!(dead_letters(&env, &p.ingest.dlq_url, 1).await.is_empty());

    drain_transform_clean(&env, &p, lines.len()).await;

    let source_items = scan_by(&env, &source, "pk").await;
    let typed = scan_by(&env, &p.typed_table("kinesis_typed"), "id").await;
    let (live, tombstones) = live_and_tombstones(&typed);
    assert_eq!(
        live,
        source_items.keys().cloned().collect::<BTreeSet<_>>(),
        "the same keys"
    );
    assert_eq!(tombstones, deleted, "deleted items are tombstones");
    for (k, src) in &source_items {
        let row = &typed[k];
        assert_eq!(s(row, "s"), s(src, "s"), "{k}");
        assert_eq!(n(row, "amount"), n(src, "amount"), "{k}: decimal precision");
        assert_eq!(n(row, "version"), n(src, "version"), "{k}");
        let set = |v: Option<&A>| -> BTreeSet<String> {
            v.unwrap().as_ss().unwrap().iter().cloned().collect()
        };
        assert_eq!(set(row.get("tags")), set(src.get("tags")), "{k}");
        assert_eq!(row.get("b"), src.get("b"), "{k}");
        assert_eq!(
            s(row, "note"),
            s(src, "note"),
            "{k}: a removed attribute is absent"
        );
    }
    // The final state of the keys that changed most: the last write wins, not the last delivered.
    assert_eq!(s(&typed["k-001"], "s").as_deref(), Some("partial 1"));
    assert_eq!(n(&typed["k-011"], "version").as_deref(), Some("9"));
    assert_eq!(n(&typed["k-019"], "version").as_deref(), Some("3"));
    assert_eq!(n(&typed["k-025"], "version").as_deref(), Some("0"));

    // The audit reconciles the raw lines and compares the source table with the typed one.
    let contracts = sluice_pipeline::contracts::ContractSet::from_files([(
        "k.yaml".to_owned(),
        contract(&source),
    )]);
    let report = sluice_local::audit::audit(&sluice_local::audit::AuditInput {
        s3: &env.s3,
        sqs: &env.sqs,
        ddb: &env.ddb,
        raw_bucket: &p.ingest.raw_bucket,
        dlq_urls: std::slice::from_ref(&p.ingest.dlq_url),
        contracts: &contracts,
        typed_table_prefix: &p.names.typed_table_prefix,
        source_tables: std::slice::from_ref(&source),
        queues: &[("transform".to_owned(), p.transform_queue_url.clone())],
        progress: None,
    })
    .await
    .unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.tables[0].source_keys, Some(source_items.len()));
}
