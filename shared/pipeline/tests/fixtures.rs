//! Fixture-driven tests: every file under `tests/fixtures/producers/` is an event shaped after a
//! producer's public documentation, with the outcome it must have.
//!
//! Each fixture runs through the real ingest handler and then the real transform handler, with
//! in-memory ports (orchestration doubles; behaviour against AWS is tested end to end in the
//! `sluice-tests` crate). A fixture is a JSON object:
//!
//! - `about`: what it shows, and after which documentation it is shaped;
//! - `contract`: a file under `tests/fixtures/contracts/` (optional; without one, only ingest runs);
//! - `event`: a Lambda event, or `sqs_bodies`: SQS message bodies, each a JSON string (the body's
//!   exact text) or any other JSON value (its text as written in the fixture), or `rounds`: lists
//!   of SQS bodies, each ingested and transformed before the next (messages `r<round>m<i>`);
//! - `expect.landed`: the raw lines, ordered by their records' ids (`origin.id`), each a subset;
//! - `expect.dead_letters`: the failure envelopes, ingest's then transform's, each a subset;
//! - `expect.rows`: the typed rows at the end, ordered by key, each a subset of the item written
//!   as DynamoDB JSON (`{"N": "1.5"}`); absent means "not checked", `[]` means none;
//! - in a subset, `null` means "absent", and a string starting with `~` means "contains";
//! - `expect.failures`: the record ids reported back to the event source (default none).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;
use sluice_aws::memory::Memory;
use sluice_aws::metrics::Sink;
use sluice_pipeline::contracts::{ContractCache, ContractSource};
use sluice_pipeline::ingest::{self, Ingest};
use sluice_pipeline::transform::{self, Transform};
use sluice_pipeline::{IngestConfig, TransformConfig};

type Item = HashMap<String, serde_dynamo::AttributeValue>;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The SQS event for a list of bodies.
fn sqs_event(bodies: &[&RawValue], id_prefix: &str) -> String {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let text = raw.get();
            let body = if text.starts_with('"') {
                serde_json::from_str::<String>(text).unwrap()
            } else {
                text.to_owned()
            };
            serde_json::json!({
                "messageId": format!("{id_prefix}{i}"),
                "receiptHandle": format!("r{i}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795590000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:sluice-ingest",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

/// Whether `want` is a subset of `got`: every key of an object, every element of an array.
fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().all(|(k, v)| match (v, g.get(k)) {
            (Value::Null, found) => found.is_none_or(Value::is_null),
            (v, found) => found.is_some_and(|gv| subset(v, gv)),
        }),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| subset(a, b))
        }
        (Value::String(w), Value::String(g)) if w.starts_with('~') => g.contains(&w[1..]),
        _ => want == got,
    }
}

fn check_list(what: &str, file: &str, want: Option<&Value>, got: &[Value]) {
    let Some(want) = want else { return };
    let want = want.as_array().unwrap();
    assert_eq!(
        want.len(),
        got.len(),
        "{file}: expected {} {what}, got {}:\n{}",
        want.len(),
        got.len(),
        serde_json::to_string_pretty(got).unwrap()
    );
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert!(
            subset(w, g),
            "{file}: {what}[{i}] differs.\nexpected (subset): {}\ngot: {}",
            serde_json::to_string_pretty(w).unwrap(),
            serde_json::to_string_pretty(g).unwrap()
        );
    }
}

fn ddb_json(item: &Item) -> Value {
    let sorted: BTreeMap<&String, &serde_dynamo::AttributeValue> = item.iter().collect();
    serde_json::to_value(sorted).unwrap()
}

async fn run_fixture(path: &Path) {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let fixture: HashMap<String, Box<RawValue>> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: not a fixture: {e}"));
    let expect: Value = serde_json::from_str(fixture["expect"].get()).unwrap();
    let events: Vec<String> = match (
        fixture.get("event"),
        fixture.get("sqs_bodies"),
        fixture.get("rounds"),
    ) {
        (Some(e), None, None) => vec![e.get().to_owned()],
        (None, Some(b), None) => vec![sqs_event(
            &serde_json::from_str::<Vec<&RawValue>>(b.get()).unwrap(),
            "m",
        )],
        (None, None, Some(r)) => serde_json::from_str::<Vec<Vec<&RawValue>>>(r.get())
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, bodies)| sqs_event(bodies, &format!("r{i}m")))
            .collect(),
        _ => panic!("{file}: give one of `event`, `sqs_bodies` or `rounds`"),
    };
    let mem = Memory::new().with_bucket("raw");
    let ingest_deps = Ingest {
        config: IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" => Some("raw".into()),
            "SLUICE_DLQ_URL" => Some("dlq".into()),
            _ => None,
        })
        .unwrap(),
        store: &mem,
        dead_letters: &mem,
        metrics: Sink::Discard,
    };
    let transform_deps = fixture.get("contract").map(|contract| {
        let name: String = serde_json::from_str(contract.get()).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "sluice-fixture-{}-{}",
            std::process::id(),
            file.replace('.', "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            fixtures_dir().join("contracts").join(&name),
            dir.join(&name),
        )
        .unwrap_or_else(|e| panic!("{file}: contract {name}: {e}"));
        let config = TransformConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" => Some("raw".into()),
            "SLUICE_DLQ_URL" => Some("dlq".into()),
            "SLUICE_CONTRACTS" => Some(dir.display().to_string()),
            _ => None,
        })
        .unwrap();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        Transform {
            contracts: ContractCache::new(
                ContractSource::parse(&config.contracts),
                Duration::from_secs(60),
                s3,
            ),
            config,
            objects: &mem,
            tables: &mem,
            dead_letters: &mem,
            metrics: Sink::Discard,
        }
    });

    // Each event is ingested, then its new objects transformed, before the next one.
    let mut failures = Vec::new();
    let mut transformed: Vec<String> = Vec::new();
    for event in &events {
        let response = ingest::handle(event, &ingest_deps)
            .await
            .unwrap_or_else(|e| panic!("{file}: ingest refused the event: {e}"));
        failures.extend(response.failed_ids().into_iter().map(Value::String));
        let Some(deps) = &transform_deps else {
            continue;
        };
        let keys: Vec<String> = mem.objects().keys().cloned().collect();
        // One notification per new object, in key order, as S3 would send them.
        for key in keys {
            if transformed.contains(&key) {
                continue;
            }
            transformed.push(key.clone());
            let note = serde_json::json!({"Records": [{
                "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "raw"}, "object": {"key": key}}
            }]});
            let event = serde_json::json!({"Records": [{
                "messageId": "t", "receiptHandle": "t", "body": note.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:sluice-transform"
            }]});
            let (response, _) = transform::handle(&event.to_string(), deps).await.unwrap();
            assert!(
                response.batch_item_failures.is_empty(),
                "{file}: transform asked for a retry"
            );
        }
    }
    check_list(
        "failures",
        &file,
        Some(expect.get("failures").unwrap_or(&Value::Array(vec![]))),
        &failures,
    );

    let mut landed = Vec::new();
    for body in mem.objects().values() {
        let mut text = String::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        landed.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    // Objects are named by a hash of their records: order the lines by the records' ids.
    landed.sort_by_key(|l| l["origin"]["id"].as_str().unwrap_or_default().to_owned());
    check_list("landed lines", &file, expect.get("landed"), &landed);
    if transform_deps.is_some() {
        let rows: Vec<Value> = mem.rows().values().map(ddb_json).collect();
        check_list("typed rows", &file, expect.get("rows"), &rows);
    }
    let dead: Vec<Value> = mem
        .dead_letters()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    check_list(
        "dead letters",
        &file,
        Some(expect.get("dead_letters").unwrap_or(&Value::Array(vec![]))),
        &dead,
    );
}

fn all_fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = fixtures_dir().join("producers");
    for producer in std::fs::read_dir(&root).unwrap() {
        let dir = producer.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn every_producer_fixture_has_its_expected_outcome() {
    let fixtures = all_fixtures();
    assert!(fixtures.len() >= 15, "only {} fixtures", fixtures.len());
    for path in fixtures {
        run_fixture(&path).await;
    }
}
