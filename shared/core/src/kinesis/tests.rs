//! Tests of Kinesis decoding: precision, ordering, images, origins, and every malformation.

use serde_dynamo::AttributeValue as A;

use super::*;
use crate::change::{Image, Op};

const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-changes";
const SEQ: &str = "49657828409187701520019995242508390119953358325192589314";

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A change record as DynamoDB writes it to Kinesis.
fn change(event: &str, created: &str, precision: Option<&str>, images: &str) -> String {
    let precision = precision
        .map(|p| format!(r#","ApproximateCreationDateTimePrecision":"{p}""#))
        .unwrap_or_default();
    format!(
        r#"{{"awsRegion":"us-east-1","eventID":"0b6e3c2a-1","eventName":"{event}","userIdentity":null,"recordFormat":"application/json","tableName":"orders","dynamodb":{{"ApproximateCreationDateTime":{created},"Keys":{{"pk":{{"S":"o-1"}}}}{images},"SizeBytes":42{precision}}},"eventSource":"aws:dynamodb"}}"#
    )
}

fn lambda_record(data: &str, seq: &str) -> String {
    format!(
        r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"A1B2","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":1795520000.123}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000003:{seq}","eventName":"aws:kinesis:record","awsRegion":"us-east-1","eventSourceARN":"{STREAM}"}}"#
    )
}

fn route(text: &str) -> Result<Route, DecodeError> {
    ChangeRecord::parse(text)?.route(SEQ)
}

#[test]
fn microsecond_precision_is_kept_exactly() {
    let text = change(
        "INSERT",
        "1720740233012995",
        Some("MICROSECOND"),
        r#","NewImage":{"pk":{"S":"o-1"}}"#,
    );
    let r = route(&text).unwrap();
    assert_eq!(
        r.seq,
        Seq::micros_then_decimal(1_720_740_233_012_995, SEQ, "s").unwrap()
    );
    assert_eq!(r.ts_ms, Some(1_720_740_233_012));
    assert_eq!(r.format, Format::DdbKinesis);
    assert_eq!(r.table, "orders");
    assert_eq!(r.op, Op::Insert);
}

#[test]
fn millisecond_precision_is_multiplied_up() {
    let text = change("MODIFY", "1731924555370", Some("MILLISECOND"), "");
    let r = route(&text).unwrap();
    assert_eq!(
        r.seq,
        Seq::micros_then_decimal(1_731_924_555_370_000, SEQ, "s").unwrap()
    );
    assert_eq!(r.ts_ms, Some(1_731_924_555_370));
    assert_eq!(r.op, Op::Update);
    // Other notations of the same number give the same token: no float on the way.
    for same in ["1.73192455537E12", "\"1731924555370\"", "1731924555370.0"] {
        let r2 = route(&change("MODIFY", same, Some("MILLISECOND"), "")).unwrap();
        assert_eq!(r2.seq, r.seq, "{same}");
    }
}

#[test]
fn absent_precision_means_milliseconds() {
    let r = route(&change("REMOVE", "1731924555370", None, "")).unwrap();
    assert_eq!(
        ChangeRecord::parse(&change("REMOVE", "1731924555370", None, ""))
            .unwrap()
            .created_micros()
            .unwrap(),
        1_731_924_555_370_000
    );
    assert_eq!(r.ts_ms, Some(1_731_924_555_370));
    assert_eq!(r.op, Op::Delete);
}

#[test]
fn creation_time_orders_before_the_sequence_number() {
    let early = ChangeRecord::parse(&change("MODIFY", "1000001", Some("MICROSECOND"), ""))
        .unwrap()
        .route(&"9".repeat(60))
        .unwrap();
    let late = ChangeRecord::parse(&change("MODIFY", "1000002", Some("MICROSECOND"), ""))
        .unwrap()
        .route("1")
        .unwrap();
    assert!(early.seq < late.seq);
    // Same creation tick: the Kinesis sequence number decides, numerically.
    let a = route(&change("MODIFY", "5", None, "")).unwrap();
    let b = ChangeRecord::parse(&change("MODIFY", "5", None, ""))
        .unwrap()
        .route(&format!("{SEQ}0"))
        .unwrap();
    assert!(a.seq < b.seq);
}

#[test]
fn images_ttl_and_lenient_attributes_come_from_the_stream_decoder() {
    let text = change(
        "MODIFY",
        "1720742302233719",
        Some("MICROSECOND"),
        r#","NewImage":{"pk":{"S":"o-1"},"n":{"N":12.50},"ns":{"NS":[1,0.34]},"gone":{"S":null}},"OldImage":{"pk":{"S":"o-1"},"n":{"N":"1"}}"#,
    );
    let c = ChangeRecord::parse(&text).unwrap().decode(SEQ).unwrap();
    let Some(Image::Ddb(after)) = c.after else {
        panic!("no new image")
    };
    assert_eq!(after["n"], A::N("12.50".into()));
    assert_eq!(after["ns"], A::Ns(vec!["1".into(), "0.34".into()]));
    assert_eq!(after["gone"], A::Null(true));
    assert!(c.before.is_some_and(|b| b.contains("n")));
    assert!(c.key.is_some_and(|k| k.contains("pk")));
    assert!(!c.ttl_delete);

    let ttl = change("REMOVE", "1", None, r#","OldImage":{"pk":{"S":"o-1"}}"#).replace(
        r#""userIdentity":null"#,
        r#""userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"}"#,
    );
    let c = ChangeRecord::parse(&ttl).unwrap().decode(SEQ).unwrap();
    assert!(c.ttl_delete);

    let bad = change(
        "INSERT",
        "1",
        None,
        r#","NewImage":{"pk":{"S":"o-1"},"blob":{"B":"%%"}}"#,
    );
    // As in a stream record: the column is set aside for a contract that reads it to refuse.
    let c = ChangeRecord::parse(&bad).unwrap().decode(SEQ).unwrap();
    assert!(
        c.unreadable["blob"].contains("invalid base64"),
        "{:?}",
        c.unreadable
    );
}

#[test]
fn lambda_record_metadata_goes_to_the_origin() {
    let data = b64(change("INSERT", "1", None, "").as_bytes());
    let text = lambda_record(&data, SEQ);
    let r = LambdaRecord::parse(&text).unwrap();
    assert_eq!(r.sequence_number(), Some(SEQ));
    assert_eq!(r.shard_id(), Some("shardId-000000000003"));
    let origin = serde_json::to_value(r.origin(0)).unwrap();
    assert_eq!(
        origin,
        serde_json::json!({
            "kind": "kinesis",
            "arn": STREAM,
            "id": format!("shardId-000000000003:{SEQ}"),
            "kinesis": {
                "shard_id": "shardId-000000000003",
                "sequence_number": SEQ,
                "partition_key": "A1B2",
                "approximate_arrival_timestamp": 1795520000.123,
                "schema_version": "1.0",
            }
        })
    );
    assert_eq!(
        r.data(&Limits::default()).unwrap(),
        change("INSERT", "1", None, "")
    );
}

#[test]
fn pretty_printed_data_is_compacted_verbatim() {
    let pretty = "{\n  \"eventName\": \"INSERT\",\n  \"tableName\": \"orders\",\n  \"eventSource\": \"aws:dynamodb\",\n  \"dynamodb\": {\"ApproximateCreationDateTime\": 1.5E3, \"Keys\": {\"pk\": {\"S\": \"a b\"}}}\n}";
    let text = lambda_record(&b64(pretty.as_bytes()), "1");
    let data = LambdaRecord::parse(&text)
        .unwrap()
        .data(&Limits::default())
        .unwrap();
    assert_eq!(
        data,
        r#"{"eventName":"INSERT","tableName":"orders","eventSource":"aws:dynamodb","dynamodb":{"ApproximateCreationDateTime":1.5E3,"Keys":{"pk":{"S":"a b"}}}}"#
    );
}

#[test]
fn a_line_decodes_with_the_seq_ingest_landed() {
    let data = change("INSERT", "7", None, r#","NewImage":{"pk":{"S":"o-1"}}"#);
    let text = lambda_record(&b64(data.as_bytes()), SEQ);
    let landed = ingest(&text).unwrap();
    let c = decode_line(&data, &landed.seq).unwrap();
    assert_eq!(c.route, landed);
}

/// Decodes a Lambda record's data and routes it, as ingest does.
fn ingest(text: &str) -> Result<Route, DecodeError> {
    let r = LambdaRecord::parse(text)?;
    let data = r.data(&Limits::default())?;
    let seq = r.sequence_number().ok_or(DecodeError::MissingSeq {
        path: SEQUENCE_PATH.into(),
    })?;
    ChangeRecord::parse(&data)?.route(seq)
}

fn code(text: &str) -> &'static str {
    match ingest(text) {
        Ok(r) => panic!("accepted: {r:?}"),
        Err(e) => e.code(),
    }
}

fn with_data(data: &[u8]) -> String {
    lambda_record(&b64(data), SEQ)
}

#[test]
fn data_that_is_not_base64() {
    let text = lambda_record("not base64!!", SEQ);
    assert_eq!(code(&text), "invalid_base64");
    let err = ingest(&text).unwrap_err();
    assert!(err.to_string().contains("kinesis.data"), "{err}");
}

#[test]
fn data_that_is_not_utf8() {
    assert_eq!(code(&with_data(b"{\"a\":\"\xff\xfe\"}")), "invalid_utf8");
}

#[test]
fn data_that_is_not_json() {
    assert_eq!(code(&with_data(b"INSERT orders o-1")), "not_json");
    assert_eq!(code(&with_data(b"{\"eventName\":\"INS")), "truncated");
    assert_eq!(code(&with_data(b"{} {}")), "trailing_content");
    assert_eq!(code(&with_data(b"")), "empty");
    assert_eq!(code(&with_data(b" \n ")), "whitespace_only");
}

#[test]
fn data_over_the_limits() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(code(&with_data(deep.as_bytes())), "too_deep");
    let limits = Limits {
        max_record_bytes: 64,
        ..Limits::default()
    };
    let big = with_data(change("INSERT", "1", None, "").as_bytes());
    let err = LambdaRecord::parse(&big)
        .unwrap()
        .data(&limits)
        .unwrap_err();
    assert_eq!(err.code(), "too_large");
    // Just over the limit once decoded, though the base64 text passes the first check.
    let exact = Limits {
        max_record_bytes: change("INSERT", "1", None, "").len() - 1,
        ..Limits::default()
    };
    let err = LambdaRecord::parse(&big).unwrap().data(&exact).unwrap_err();
    assert_eq!(err.code(), "too_large");
    let unbounded = Limits {
        max_record_bytes: usize::MAX,
        ..Limits::default()
    };
    assert!(LambdaRecord::parse(&big).unwrap().data(&unbounded).is_ok());
}

#[test]
fn json_that_is_not_a_dynamodb_change_record() {
    for not_a_change in [
        r#"{"device":"foo","temperature":42.42}"#,
        r#"{"eventSource":"foo:bar","dynamodb":{}}"#,
        r#"[1,2,3]"#,
        r#"[null,"INSERT",null,null,{"Keys":{}}]"#,
        "42",
        r#""INSERT""#,
        r#"{"eventSource":"aws:dynamodb","dynamodb":"INSERT"}"#,
    ] {
        assert_eq!(
            code(&with_data(not_a_change.as_bytes())),
            "unknown_shape",
            "{not_a_change}"
        );
    }
}

#[test]
fn a_change_record_missing_its_table_or_dynamodb() {
    let no_table = change("INSERT", "1", None, "").replace(r#""tableName":"orders","#, "");
    assert_eq!(code(&with_data(no_table.as_bytes())), "missing_field");
    assert!(ingest(&with_data(no_table.as_bytes()))
        .unwrap_err()
        .to_string()
        .contains("tableName"));
    let empty_table = change("INSERT", "1", None, "").replace("\"orders\"", "\"  \"");
    assert_eq!(code(&with_data(empty_table.as_bytes())), "invalid_field");
    let no_dynamodb = r#"{"eventName":"INSERT","tableName":"orders","eventSource":"aws:dynamodb"}"#;
    let err = ingest(&with_data(no_dynamodb.as_bytes())).unwrap_err();
    assert_eq!(
        err,
        DecodeError::MissingField {
            path: "dynamodb".into()
        }
    );
}

#[test]
fn a_change_record_with_a_bad_event_name_or_format() {
    let odd = change("UPSERT", "1", None, "");
    assert_eq!(code(&with_data(odd.as_bytes())), "invalid_field");
    let none = change("INSERT", "1", None, "").replace(r#""eventName":"INSERT","#, "");
    assert_eq!(code(&with_data(none.as_bytes())), "missing_field");
    let ion = change("INSERT", "1", None, "").replace("application/json", "application/ion");
    let err = ingest(&with_data(ion.as_bytes())).unwrap_err();
    assert_eq!(err.code(), "invalid_field");
    assert!(err.to_string().contains("recordFormat"), "{err}");
}

#[test]
fn a_change_record_without_a_usable_creation_time() {
    let absent = r#"{"eventName":"INSERT","tableName":"orders","eventSource":"aws:dynamodb","dynamodb":{"Keys":{"pk":{"S":"a"}}}}"#;
    assert_eq!(
        ingest(&with_data(absent.as_bytes())).unwrap_err(),
        DecodeError::MissingSeq {
            path: CREATED_PATH.into()
        }
    );
    assert_eq!(
        code(&with_data(change("INSERT", "null", None, "").as_bytes())),
        "missing_seq"
    );
    for bad in ["\"yesterday\"", "-5", "true", "1e400"] {
        let err = ingest(&with_data(change("INSERT", bad, None, "").as_bytes())).unwrap_err();
        assert_eq!(err.code(), "invalid_field", "{bad}");
        assert!(err.to_string().contains(CREATED_PATH), "{err}");
    }
    let nano = change("INSERT", "1", Some("NANOSECOND"), "");
    let err = ingest(&with_data(nano.as_bytes())).unwrap_err();
    assert!(
        err.to_string()
            .contains("dynamodb.ApproximateCreationDateTimePrecision"),
        "{err}"
    );
}

#[test]
fn a_lambda_record_without_data_or_sequence_number() {
    let no_data = r#"{"kinesis":{"sequenceNumber":"1"},"eventSource":"aws:kinesis"}"#;
    assert_eq!(
        ingest(no_data).unwrap_err(),
        DecodeError::MissingField {
            path: "kinesis.data".into()
        }
    );
    let no_kinesis = r#"{"eventSource":"aws:kinesis"}"#;
    assert_eq!(code(no_kinesis), "missing_field");
    let data = b64(change("INSERT", "1", None, "").as_bytes());
    let no_seq = format!(r#"{{"kinesis":{{"data":"{data}"}},"eventSource":"aws:kinesis"}}"#);
    assert_eq!(code(&no_seq), "missing_seq");
    let bad_seq = lambda_record(&data, "49x");
    assert_eq!(code(&bad_seq), "invalid_field");
    let not_a_record = r#"{"kinesis":{"data":42}}"#;
    assert_eq!(code(not_a_record), "unknown_shape");
    // Without eventID or sequence number, the origin still names the record.
    let r = LambdaRecord::parse(no_kinesis).unwrap();
    assert_eq!(r.origin(7).id, "record-7");
    assert!(r.origin(7).kinesis.is_none());
}
