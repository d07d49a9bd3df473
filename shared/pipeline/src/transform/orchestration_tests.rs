//! Orchestration with in-memory ports: hostile objects and failing dependencies. Behaviour
//! against AWS is tested end to end in the `sluice-tests` crate.
use std::io::Write;

use sluice_aws::memory::{Faults, Memory};

use super::*;

/// Raw staging holding these objects.
fn objects(objects: &[(&str, Vec<u8>)]) -> Memory {
    let m = Memory::new();
    for (key, bytes) in objects {
        m.put_object(*key, bytes.clone());
    }
    m
}

fn failing(faults: Faults) -> Memory {
    Memory::new().with_faults(faults)
}

const CONTRACT: &str = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, required: true}\n";

fn deps(objects: Memory, tables: Memory, dlq: Memory) -> Transform<Memory, Memory, Memory> {
    let dir = std::env::temp_dir().join(format!(
        "sluice-contracts-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("people.yaml"), CONTRACT).unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build(),
    );
    let config = TransformConfig::from_lookup(|n| match n {
        "SLUICE_RAW_BUCKET" => Some("raw".into()),
        "SLUICE_DLQ_URL" => Some("dlq".into()),
        "SLUICE_CONTRACTS" => Some(dir.display().to_string()),
        "SLUICE_MAX_LINE_BYTES" => Some("2000".into()),
        _ => None,
    })
    .unwrap();
    Transform {
        contracts: ContractCache::new(
            ContractSource::parse(&config.contracts),
            Duration::from_secs(60),
            s3,
        ),
        config,
        objects,
        tables,
        dead_letters: dlq,
        metrics: Sink::Discard,
    }
}

fn line(table: &str, id: u64, seq: u64, after: &str) -> String {
    line_keyed(table, &id.to_string(), id, seq, after)
}

/// A raw line whose event names its key as `key` (JSON text).
fn line_keyed(table: &str, key: &str, id: u64, seq: u64, after: &str) -> String {
    let record = format!(
        r#"{{"table":"{table}","op":"insert","key":{{"id":{key}}},"after":{after},"seq":{seq}}}"#
    );
    format!(
        r#"{{"v":1,"format":"app","table":"{table}","op":"insert","seq":"{}","ts_ms":1795590000000,"ts_source":"source","ingested_ms":1795590000001,"origin":{{"kind":"sqs","arn":"a","id":"m{id}"}},"record":{record}}}"#,
        sluice_core::Seq::decimal(&seq.to_string(), "").unwrap()
    )
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).unwrap();
    gz.finish().unwrap()
}

fn notification(keys: &[&str]) -> String {
    let records: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| serde_json::json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "raw"}, "object": {"key": k}}}))
        .collect();
    let body = serde_json::json!({ "Records": records }).to_string();
    serde_json::json!({"Records": [{"messageId": "m1", "body": body, "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:t"}]}).to_string()
}

#[tokio::test]
async fn every_bad_line_is_a_precise_dead_letter_and_the_rest_goes_through() {
    let mut text = Vec::new();
    let lines: Vec<Vec<u8>> = vec![
        line("people", 1, 1, r#"{"id":1,"email":"a@x"}"#).into_bytes(),
        b"not json at all".to_vec(),
        br#"{"hello":"world"}"#.to_vec(),
        line("strangers", 2, 1, r#"{"id":2}"#).into_bytes(),
        line("people", 3, 1, r#"{"id":3}"#).into_bytes(),
        line_keyed(
            "people",
            r#""four""#,
            4,
            1,
            r#"{"id":"four","email":"d@x"}"#,
        )
        .into_bytes(),
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(3000)).into_bytes(),
        b"{\"bad\":\"\xff\"}".to_vec(),
        Vec::new(),
        line("people", 1, 2, r#"{"id":1,"email":"a2@x"}"#).into_bytes(),
        line("people", 5, 1, r#"{"id":6,"email":"e@x"}"#).into_bytes(),
    ];
    for l in &lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    let objects = objects(&[("raw/people/o.ndjson.gz", gzip(&text))]);
    let d = deps(objects, Memory::new(), Memory::new());
    let (response, stats) = handle(&notification(&["raw/people/o.ndjson.gz"]), &d)
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let codes: Vec<(String, String)> = d
        .dead_letters
        .dead_letters()
        .iter()
        .map(|e| {
            (
                e.raw_ref
                    .clone()
                    .unwrap()
                    .rsplit('#')
                    .next()
                    .unwrap()
                    .to_owned(),
                e.error_code.clone().unwrap(),
            )
        })
        .collect();
    let expect = [
        // The event's key says 5, its image 6.
        ("L11", "key_mismatch"),
        ("L2", "not_json"),
        ("L3", "unknown_shape"),
        ("L4", "no_contract"),
        ("L5", "missing_field"),
        ("L6", "key_type_mismatch"),
        ("L7", "too_large"),
        ("L8", "invalid_utf8"),
    ];
    let mut codes_sorted = codes.clone();
    codes_sorted.sort();
    assert_eq!(
        codes_sorted,
        expect.map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let rows = d.tables.rows();
    assert_eq!(rows.len(), 1, "one good key");
    let row = rows.values().next().unwrap();
    assert_eq!(
        row["email"],
        serde_dynamo::AttributeValue::S("a2@x".into()),
        "the later seq won in the object"
    );
    assert_eq!(stats.tables["people"].stale, 1);
    assert_eq!(stats.lines, 10, "every line is counted but the blank one");
}

#[tokio::test]
async fn a_corrupt_or_missing_object_is_dead_lettered_not_retried() {
    let objects = objects(&[("raw/p/bad.ndjson.gz", b"this is not gzip".to_vec())]);
    let d = deps(objects, Memory::new(), Memory::new());
    let (response, _) = handle(
        &notification(&["raw/p/bad.ndjson.gz", "raw/p/missing.ndjson.gz"]),
        &d,
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let sent = d.dead_letters.dead_letters();
    let codes: Vec<&str> = sent
        .iter()
        .map(|e| e.error_code.as_deref().unwrap())
        .collect();
    assert_eq!(codes, ["object_corrupt", "object_unreadable"]);
    assert_eq!(
        sent[0].original_ref.as_deref(),
        Some("s3://raw/raw/p/bad.ndjson.gz")
    );
}

#[tokio::test]
async fn retriable_write_failures_and_unsent_dead_letters_retry_the_message() {
    let text = format!(
        "{}\nnot json\n",
        line("people", 1, 1, r#"{"id":1,"email":"a@x"}"#)
    );
    let raw = || objects(&[("raw/p/o.ndjson", text.clone().into_bytes())]);
    let throttled = deps(
        raw(),
        failing(Faults {
            writes_failing: true,
            ..Faults::default()
        }),
        Memory::new(),
    );
    let (response, _) = handle(&notification(&["raw/p/o.ndjson"]), &throttled)
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    let dlq_down = deps(
        raw(),
        Memory::new(),
        failing(Faults {
            dead_letters_failing: true,
            ..Faults::default()
        }),
    );
    let (response, _) = handle(&notification(&["raw/p/o.ndjson"]), &dlq_down)
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn test_events_and_unknown_messages() {
    let d = deps(Memory::new(), Memory::new(), Memory::new());
    let event = |body: &str| {
        serde_json::json!({"Records": [{"messageId": "m", "body": body, "eventSource": "aws:sqs", "eventSourceARN": "q"}]}).to_string()
    };
    let (r, _) = handle(
        &event(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#),
        &d,
    )
    .await
    .unwrap();
    assert!(r.batch_item_failures.is_empty());
    assert!(
        d.dead_letters.dead_letters().is_empty(),
        "a test event is ignored"
    );
    let (r, _) = handle(&event("garbage"), &d).await.unwrap();
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(
        d.dead_letters.dead_letters()[0].error_code.as_deref(),
        Some("not_json")
    );
    assert!(handle("[]", &d).await.is_err());
}

/// An SQS event of one message with this body and these message attributes (Lambda's shape).
fn message(body: &str, attributes: serde_json::Value) -> String {
    serde_json::json!({"Records": [{"messageId": "m-1", "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": attributes,
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:transform"}]})
    .to_string()
}

#[tokio::test]
async fn a_line_reference_reads_that_line_alone_and_names_a_missing_one() {
    let text = [
        line("people", 1, 1, r#"{"id":1,"email":"a@x"}"#),
        line("people", 2, 1, r#"{"id":2}"#),
        line("people", 3, 1, r#"{"id":3,"email":"c@x"}"#),
    ]
    .join("\n");
    let key = "raw/people/x.ndjson.gz";
    let d = deps(
        objects(&[(key, gzip(text.as_bytes()))]),
        Memory::new(),
        Memory::new(),
    );
    let line_ref =
        |n: usize| sluice_core::notification::line_ref_message(&format!("s3://raw/{key}#L{n}"));
    let (_, stats) = handle(&message(&line_ref(3), serde_json::json!({})), &d)
        .await
        .unwrap();
    assert_eq!((stats.lines, stats.tables["people"].written), (1, 1));
    assert_eq!(d.tables.rows().len(), 1, "line 3 alone");
    // A line past the end: an internal dead letter that names it, never a row.
    handle(&message(&line_ref(9), serde_json::json!({})), &d)
        .await
        .unwrap();
    let sent = d.dead_letters.dead_letters();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].error_code.as_deref(), Some("line_not_found"));
    assert_eq!(sent[0].error, "the object has 3 line(s), not 9");
}

#[tokio::test]
async fn a_redriven_line_that_fails_again_keeps_its_history() {
    let l = line("people", 2, 1, r#"{"id":2}"#);
    let mark = sluice_core::envelope::RedriveMark {
        retry_count: 2,
        first_failed_at: Some("2026-11-01T00:00:00.000Z".into()),
        origin_id: None,
        raw_ref: Some("s3://raw/raw/people/x.ndjson.gz#L2".into()),
        redriven_at: None,
    };
    let d = deps(Memory::new(), Memory::new(), Memory::new());
    let attrs = serde_json::json!({"sluice_redrive": {"dataType": "String", "stringValue": mark.to_json()}});
    handle(&message(&l, attrs), &d).await.unwrap();
    let sent = d.dead_letters.dead_letters();
    assert_eq!(sent.len(), 1);
    let env = &sent[0];
    assert_eq!(
        env.raw_ref.as_deref(),
        Some("s3://raw/raw/people/x.ndjson.gz#L2")
    );
    assert_eq!(env.first_failed_at, "2026-11-01T00:00:00.000Z");
    assert_eq!(
        env.retry_count, 2,
        "the mark's retries and none of this message's"
    );
    // The same failure id as the first failure of the line had.
    let first = sluice_core::envelope::failure_id(
        sluice_core::envelope::Step::Transform,
        "s3://raw/raw/people/x.ndjson.gz#L2",
        "people",
        "missing_field",
    );
    assert_eq!(env.failure_id, first);
}

#[tokio::test]
async fn its_metrics_are_the_catalogued_ones() {
    let text = format!("{}\n", line("people", 1, 1, r#"{"id":1,"email":"a@x"}"#));
    let objects = objects(&[("raw/people/o.ndjson.gz", gzip(text.as_bytes()))]);
    let collector = sluice_aws::metrics::Collector::default();
    let mut d = deps(objects, Memory::new(), Memory::new());
    d.metrics = Sink::Collect(collector.clone());
    handle(&notification(&["raw/people/o.ndjson.gz"]), &d)
        .await
        .unwrap();
    let sets = collector.drain();
    sluice_aws::metrics::check_coverage(FUNCTION, sets.iter().map(|(_, m)| m)).unwrap();
}

#[tokio::test]
async fn an_object_larger_than_the_coalescing_budget_ends_in_the_same_rows() {
    // 600 lines over 25 keys, each key's changes out of order, and a bad line now and then.
    let mut text = String::new();
    for i in 0..600u64 {
        let id = i % 25;
        let seq = 1 + (i * 7919) % 600;
        if i % 97 == 0 {
            text.push_str(&line("people", id, seq, &format!(r#"{{"id":{id}}}"#)));
        } else {
            text.push_str(&line(
                "people",
                id,
                seq,
                &format!(r#"{{"id":{id},"email":"{id}-{seq}@x"}}"#),
            ));
        }
        text.push('\n');
    }
    let gz = gzip(text.as_bytes());
    let run = |budget: Option<usize>| {
        let gz = gz.clone();
        async move {
            let mut d = deps(
                objects(&[("raw/people/big.ndjson.gz", gz)]),
                Memory::new(),
                Memory::new(),
            );
            if let Some(b) = budget {
                d.config.coalesce_max_bytes = b;
            }
            let (response, stats) = handle(&notification(&["raw/people/big.ndjson.gz"]), &d)
                .await
                .unwrap();
            assert!(response.batch_item_failures.is_empty());
            (d.tables.rows(), d.dead_letters.dead_letter_count(), stats)
        }
    };
    let (whole_rows, whole_dead, whole) = run(None).await;
    let (rows, dead, bounded) = run(Some(2_000)).await;
    assert_eq!(whole.partial_flushes, 0);
    assert!(bounded.partial_flushes > 10, "{bounded:?}");
    assert_eq!(whole_rows.len(), 25);
    assert_eq!(rows, whole_rows, "the same rows whatever the budget");
    assert_eq!((dead, whole_dead), (7, 7));
    // Each key's newest change won.
    for id in 0..25u64 {
        let newest = (0..600u64)
            .filter(|i| i % 25 == id && i % 97 != 0)
            .map(|i| 1 + (i * 7919) % 600)
            .max()
            .unwrap();
        let found = rows
            .values()
            .filter(|item| item.get("id") == Some(&serde_dynamo::AttributeValue::N(id.to_string())))
            .filter_map(|item| match item.get("email") {
                Some(serde_dynamo::AttributeValue::S(s)) => Some(s.clone()),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(found, vec![format!("{id}-{newest}@x")]);
    }
    // More writes when bounded, each refused or applied by the guard.
    let written = |s: &TransformStats| s.tables.values().map(|t| t.written).sum::<usize>();
    assert_eq!(written(&whole), 25);
    assert!(written(&bounded) > 25, "{bounded:?}");
}
