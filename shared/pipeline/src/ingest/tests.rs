//! Orchestration only: the ports are in-memory doubles. Behaviour against AWS is tested end
//! to end in the `sluice-tests` crate.
use sluice_aws::memory::{Faults, Memory};

use super::*;

/// A raw store whose puts of keys containing `pattern` fail.
fn raw_puts_failing(pattern: &str) -> Memory {
    Memory::new().with_faults(Faults {
        raw_puts_failing: Some(pattern.into()),
        ..Faults::default()
    })
}

fn deps(store: Memory, dlq: Memory) -> Ingest<Memory, Memory> {
    Ingest {
        config: IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" => Some("mem".into()),
            "SLUICE_DLQ_URL" => Some("q".into()),
            _ => None,
        })
        .unwrap(),
        store,
        dead_letters: dlq,
        metrics: Sink::Discard,
    }
}

fn stream_record(seq: &str, table: &str) -> String {
    format!(
        r#"{{"eventID":"e{seq}","eventName":"INSERT","eventSource":"aws:dynamodb","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/{table}/stream/x","dynamodb":{{"ApproximateCreationDateTime":1795520000,"Keys":{{"pk":{{"S":"{seq}"}}}},"NewImage":{{"pk":{{"S":"{seq}"}}}},"SequenceNumber":"{seq}","StreamViewType":"NEW_IMAGE"}}}}"#
    )
}

fn sqs_record(id: &str, body: &str) -> String {
    format!(
        r#"{{"messageId":"{id}","receiptHandle":"r","body":{},"attributes":{{"ApproximateReceiveCount":"3"}},"messageAttributes":{{}},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:q"}}"#,
        serde_json::to_string(body).unwrap()
    )
}

/// A Kinesis Lambda record whose data is a DynamoDB change record of `table`.
fn kinesis_record(seq: &str, table: &str, created_us: u64) -> String {
    let change = format!(
        r#"{{"awsRegion":"us-east-1","eventID":"c{seq}","eventName":"MODIFY","userIdentity":null,"recordFormat":"application/json","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":{created_us},"ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":{{"pk":{{"S":"{seq}"}}}},"NewImage":{{"pk":{{"S":"{seq}"}}}},"SizeBytes":12}},"eventSource":"aws:dynamodb"}}"#
    );
    kinesis_with_data(seq, &base64_of(change.as_bytes()))
}

fn kinesis_with_data(seq: &str, data: &str) -> String {
    format!(
        r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":1795520000.5}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:{seq}","eventName":"aws:kinesis:record","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s"}}"#
    )
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn event(records: &[String]) -> String {
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

#[tokio::test]
async fn stream_reports_the_first_failed_sequence_number() {
    let d = deps(raw_puts_failing("/bad/"), Memory::new());
    let e = event(&[
        stream_record("100", "good"),
        stream_record("9000000000000000003", "bad"),
        stream_record("100000000000000000004", "good"),
        stream_record("100000000000000000005", "bad"),
    ]);
    let r = handle(&e, &d).await.unwrap();
    assert_eq!(r.failed_ids(), vec!["9000000000000000003".to_owned()]);
    assert_eq!(
        d.store.object_lines().len(),
        1,
        "the good table's object is written"
    );
}

#[tokio::test]
async fn a_raw_object_refused_for_good_dead_letters_its_records_instead_of_retrying() {
    let d = deps(
        Memory::new().with_faults(Faults {
            raw_puts_refused: Some("/bad/".into()),
            ..Faults::default()
        }),
        Memory::new(),
    );
    let e = event(&[
        stream_record("100", "good"),
        stream_record("101", "bad"),
        stream_record("102", "bad"),
    ]);
    let r = handle(&e, &d).await.unwrap();
    assert!(r.failed_ids().is_empty(), "nothing is retried: {r:?}");
    let sent = d.dead_letters.dead_letters();
    assert_eq!(sent.len(), 2);
    for env in sent.iter() {
        assert_eq!(env.error_code.as_deref(), Some("raw_write_rejected"));
        assert_eq!(env.error_class, ErrorClass::Internal);
        assert_eq!(env.table.as_deref(), Some("bad"));
        assert!(env.error.contains("injected refusal"), "{}", env.error);
        let original: serde_json::Value =
            serde_json::from_str(env.original.as_deref().unwrap()).unwrap();
        assert_eq!(
            original["eventSourceARN"], "arn:aws:dynamodb:us-east-1:1:table/bad/stream/x",
            "the record, whole"
        );
    }
    assert_eq!(d.store.object_lines().len(), 1);
}

#[tokio::test]
async fn stream_record_without_sequence_number_is_dead_lettered_not_retried() {
    let d = deps(Memory::new(), Memory::new());
    let no_seq = stream_record("1", "t").replace(r#","SequenceNumber":"1""#, "");
    let r = handle(&event(&[no_seq, stream_record("2", "t")]), &d)
        .await
        .unwrap();
    assert!(r.failed_ids().is_empty());
    let sent = d.dead_letters.dead_letters();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].error_code.as_deref(), Some("missing_seq"));
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_sent_is_retried() {
    let d = deps(
        Memory::new(),
        Memory::new().with_faults(Faults {
            dead_letters_failing: true,
            ..Faults::default()
        }),
    );
    let app = r#"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#;
    let r = handle(
        &event(&[sqs_record("ok", app), sqs_record("poison", "nope")]),
        &d,
    )
    .await
    .unwrap();
    assert_eq!(r.failed_ids(), vec!["poison".to_owned()]);
}

/// A FIFO queue's message of group `group`.
fn fifo_record(id: &str, group: &str, body: &str) -> String {
    format!(
        r#"{{"messageId":"{id}","receiptHandle":"r","body":{},"attributes":{{"ApproximateReceiveCount":"1","MessageGroupId":"{group}","SequenceNumber":"1"}},"messageAttributes":{{}},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:q.fifo"}}"#,
        serde_json::to_string(body).unwrap()
    )
}

#[tokio::test]
async fn a_fifo_record_behind_a_failure_of_its_group_is_not_dead_lettered_yet() {
    // Table `down` cannot be landed; `t` can.
    let d = deps(raw_puts_failing("/down/"), Memory::new());
    let down = r#"{"table":"down","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#;
    let up = r#"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#;
    let r = handle(
        &event(&[
            fifo_record("a-head", "a", down),
            fifo_record("a-poison", "a", "nope a"),
            fifo_record("b-head", "b", up),
            fifo_record("b-poison", "b", "nope b"),
        ]),
        &d,
    )
    .await
    .unwrap();
    // Group a stops at its head; its poison is retried with it, not dead-lettered twice.
    assert_eq!(
        r.failed_ids(),
        vec!["a-head".to_owned(), "a-poison".to_owned()]
    );
    let sent: Vec<Option<String>> = d
        .dead_letters
        .dead_letters()
        .into_iter()
        .map(|e| e.original)
        .collect();
    assert_eq!(sent, vec![Some("nope b".to_owned())]);
}

#[tokio::test]
async fn envelope_carries_the_retry_count_and_the_body_verbatim() {
    let d = deps(Memory::new(), Memory::new());
    let body = "  not json at all\n";
    handle(&event(&[sqs_record("m1", body)]), &d).await.unwrap();
    let sent = d.dead_letters.dead_letters();
    assert_eq!(sent[0].original.as_deref(), Some(body));
    assert_eq!(
        sent[0].retry_count, 2,
        "ApproximateReceiveCount 3 means two retries"
    );
    assert_eq!(sent[0].error_class, sluice_core::ErrorClass::BadFormat);
}

#[tokio::test]
async fn a_record_that_is_not_an_sqs_message_is_dead_lettered() {
    let d = deps(Memory::new(), Memory::new());
    let odd = r#"{"eventSource":"aws:sqs","messageId":42}"#.to_owned();
    let r = handle(&event(&[odd]), &d).await.unwrap();
    assert_eq!(r.failed_ids(), Vec::<String>::new());
    assert_eq!(
        d.dead_letters.dead_letters()[0].error_code.as_deref(),
        Some("unknown_shape")
    );
}

#[tokio::test]
async fn a_tumbling_window_invocation_gets_its_state_back_with_the_failures() {
    let d = deps(Memory::new(), Memory::new());
    let event = format!(
        r#"{{"Records":[{}],"window":{{"start":"2026-11-25T07:00:00Z","end":"2026-11-25T07:05:00Z"}},"state":{{"count":3}},"shardId":"s-1","eventSourceARN":"stream-ARN","isFinalInvokeForWindow":false,"isWindowTerminatedEarly":false}}"#,
        stream_record("7", "t")
    );
    let r = handle(&event, &d).await.unwrap();
    assert_eq!(
        r.to_json().unwrap(),
        serde_json::json!({"batchItemFailures": [], "state": {"count": 3}})
    );
    let empty = handle(r#"{"Records":[],"window":{"start":"a","end":"b"},"state":{},"isFinalInvokeForWindow":true}"#, &d).await.unwrap();
    assert_eq!(
        empty.to_json().unwrap(),
        serde_json::json!({"batchItemFailures": [], "state": {}})
    );
}

const LONG_A: &str = "49657828409187701520019995242508390119953358325192589314";
const LONG_B: &str = "49657828409187701520019995242509599045772972954367295490";
const LONG_C: &str = "49657828409187701520019995242510807971592587583541999618";

#[tokio::test]
async fn kinesis_lands_each_change_under_its_table() {
    let d = deps(Memory::new(), Memory::new());
    let e = event(&[
        kinesis_record(LONG_A, "orders", 1_795_520_000_000_001),
        kinesis_record(LONG_B, "orders", 1_795_520_000_000_002),
        kinesis_record(LONG_C, "customers", 1_795_520_000_000_003),
    ]);
    let r = handle(&e, &d).await.unwrap();
    assert!(matches!(r, IngestResponse::Kinesis(_)));
    assert_eq!(
        r.to_json().unwrap(),
        serde_json::json!({"batchItemFailures": []})
    );
    let mut objects = d.store.object_lines();
    objects.sort();
    assert_eq!(objects.len(), 2);
    assert!(objects[0]
        .0
        .starts_with("raw/customers/dt=2026-11-24/hr=11/"));
    assert_eq!(objects[1].1, 2, "both orders changes in one object");
    assert!(d.dead_letters.dead_letters().is_empty());
}

#[tokio::test]
async fn kinesis_reports_the_first_failed_sequence_number() {
    let d = deps(raw_puts_failing("/bad/"), Memory::new());
    let e = event(&[
        kinesis_record(LONG_A, "good", 1),
        kinesis_record(LONG_B, "bad", 2),
        kinesis_record(LONG_C, "good", 3),
    ]);
    let r = handle(&e, &d).await.unwrap();
    assert_eq!(r.failed_ids(), vec![LONG_B.to_owned()]);
    assert_eq!(
        r.to_json().unwrap(),
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": LONG_B}]})
    );
    assert_eq!(d.store.object_lines().len(), 1);
}

#[tokio::test]
async fn malformed_kinesis_records_are_dead_lettered_with_their_code_and_kept_whole() {
    let d = deps(Memory::new(), Memory::new());
    let not_a_change = base64_of(br#"{"device":"foo","temperature":42.42}"#);
    let no_table = base64_of(
        br#"{"eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"pk":{"S":"a"}}}}"#,
    );
    let cases = [
        (kinesis_with_data("11", "%%% not base64"), "invalid_base64"),
        (
            kinesis_with_data("12", &base64_of(b"\xff\xfe\xfd")),
            "invalid_utf8",
        ),
        (
            kinesis_with_data("13", &base64_of(b"INSERT INTO orders")),
            "not_json",
        ),
        (kinesis_with_data("14", &not_a_change), "unknown_shape"),
        (kinesis_with_data("15", &no_table), "missing_field"),
        (
            r#"{"eventSource":"aws:kinesis","kinesis":{"sequenceNumber":"16"}}"#.to_owned(),
            "missing_field",
        ),
        (
            r#"{"eventSource":"aws:kinesis","kinesis":"INSERT"}"#.to_owned(),
            "unknown_shape",
        ),
    ];
    let records: Vec<String> = cases.iter().map(|(r, _)| r.clone()).collect();
    let r = handle(&event(&records), &d).await.unwrap();
    assert!(r.failed_ids().is_empty(), "dead letters are not retried");
    assert!(d.store.object_lines().is_empty());
    let sent = d.dead_letters.dead_letters();
    assert_eq!(sent.len(), cases.len());
    for (record, code) in &cases {
        let env = sent
            .iter()
            .find(|e| e.original.as_deref() == Some(record.as_str()))
            .unwrap_or_else(|| panic!("no dead letter keeps {record}"));
        assert_eq!(env.error_code.as_deref(), Some(*code), "{record}");
        assert_eq!(env.step, Step::Ingest);
    }
    let kinesis_origin = sent
        .iter()
        .find(|e| e.error_code.as_deref() == Some("unknown_shape") && e.format.is_none())
        .map(|e| serde_json::from_str::<serde_json::Value>(e.origin.get()).unwrap())
        .unwrap();
    assert_eq!(kinesis_origin["kind"], "kinesis");
    let with_table = sent
        .iter()
        .find(|e| e.original.as_deref() == Some(records[4].as_str()))
        .unwrap();
    assert_eq!(with_table.format, Some(Format::DdbKinesis));
    let origin: serde_json::Value = serde_json::from_str(with_table.origin.get()).unwrap();
    assert_eq!(origin["kinesis"]["sequence_number"], "15");
    assert_eq!(origin["kinesis"]["shard_id"], "shardId-000000000000");
    assert_eq!(origin["arn"], "arn:aws:kinesis:us-east-1:1:stream/s");
}

#[tokio::test]
async fn a_kinesis_dead_letter_that_cannot_be_sent_is_retried_from_there() {
    let d = deps(
        Memory::new(),
        Memory::new().with_faults(Faults {
            dead_letters_failing: true,
            ..Faults::default()
        }),
    );
    let e = event(&[
        kinesis_record("1", "t", 1),
        kinesis_with_data("2", "!!"),
        kinesis_record("3", "t", 3),
    ]);
    let r = handle(&e, &d).await.unwrap();
    assert_eq!(r.failed_ids(), vec!["2".to_owned()]);
    // Without a sequence number to name it, the whole batch is retried.
    let e = event(&[
        kinesis_record("1", "t", 1),
        r#"{"eventSource":"aws:kinesis","kinesis":{}}"#.to_owned(),
    ]);
    let err = handle(&e, &d).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
}

#[tokio::test]
async fn a_kinesis_tumbling_window_gets_its_state_back() {
    let d = deps(Memory::new(), Memory::new());
    let e = format!(
        r#"{{"Records":[{}],"window":{{"start":"a","end":"b"}},"state":{{"n":1}},"shardId":"shardId-000000000000","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s","isFinalInvokeForWindow":false,"isWindowTerminatedEarly":false}}"#,
        kinesis_record("9", "t", 9)
    );
    let r = handle(&e, &d).await.unwrap();
    assert!(matches!(r, IngestResponse::KinesisWindow(..)));
    assert_eq!(
        r.to_json().unwrap(),
        serde_json::json!({"batchItemFailures": [], "state": {"n": 1}})
    );
}

#[tokio::test]
async fn events_that_are_not_batches_are_refused_whole() {
    let d = deps(Memory::new(), Memory::new());
    for bad in [
        r#"{"foo":1}"#,
        "[]",
        r#"{"Records":[{"eventSource":"aws:s3"}]}"#,
    ] {
        let err = handle(bad, &d).await.unwrap_err();
        assert!(
            matches!(err, IngestError::UnsupportedEvent(_)),
            "{bad}: {err}"
        );
        assert!(!err.is_retriable());
    }
    let empty = handle(r#"{"Records":[]}"#, &d).await.unwrap();
    assert!(empty.failed_ids().is_empty());
}

#[tokio::test]
async fn its_metrics_are_the_catalogued_ones() {
    let collector = sluice_aws::metrics::Collector::default();
    let mut d = deps(Memory::new(), Memory::new());
    d.metrics = Sink::Collect(collector.clone());
    handle(&event(&[stream_record("1", "people")]), &d)
        .await
        .unwrap();
    let sets = collector.drain();
    sluice_aws::metrics::check_coverage(FUNCTION, sets.iter().map(|(_, m)| m)).unwrap();
}
