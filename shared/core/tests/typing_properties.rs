//! Property tests of decoding and typing: arbitrary Debezium-shaped events, with arbitrary
//! schemas naming every logical type sluice reads, and arbitrary DynamoDB stream records, either
//! type into a row or fail with an error. Nothing panics.
//!
//! `SLUICE_FUZZ_CASES` sets the number of cases (256 by default; `make fuzz` runs many more).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{json, Value};
use sluice_core::contract;
use sluice_core::ddb::StreamRecord;
use sluice_core::json::Limits;
use sluice_core::row::{coalesce, type_change, RowMeta};

fn cases() -> u32 {
    std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

const CONTRACT: &str = r#"
name: t
version: 1
sources: [{table: t}]
primary_key: [c0]
unknown_fields: keep
fields:
  - {name: c0, type: int}
  - {name: c1, type: decimal}
  - {name: c2, type: timestamp}
  - {name: c3, type: date}
  - {name: c4, type: time}
  - {name: c5, type: string}
  - {name: c6, type: decimal, scale: 3}
  - {name: c7, type: "list<decimal>"}
  - {name: c8, type: "set<timestamp>"}
  - {name: c9, type: json}
"#;

const LOGICAL: &[&str] = &[
    "org.apache.kafka.connect.data.Decimal",
    "io.debezium.data.VariableScaleDecimal",
    "io.debezium.time.Date",
    "io.debezium.time.Time",
    "io.debezium.time.MicroTime",
    "io.debezium.time.NanoTime",
    "io.debezium.time.Timestamp",
    "io.debezium.time.MicroTimestamp",
    "io.debezium.time.NanoTimestamp",
    "io.debezium.time.ZonedTimestamp",
    "org.apache.kafka.connect.data.Date",
    "other.Name",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[A-Za-z0-9+/=]{0,40}".prop_map(Value::String),
        "-?[0-9]{1,45}(\\.[0-9]{1,45})?([eE][-+]?[0-9]{1,4})?".prop_map(Value::String),
        Just(json!("__debezium_unavailable_value")),
        (any::<i32>(), "[A-Za-z0-9+/=]{0,30}").prop_map(|(s, v)| json!({"scale": s, "value": v})),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Value::Array)
    })
}

fn column_schema() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(LOGICAL),
        prop_oneof![
            Just(Value::Null),
            any::<i16>().prop_map(|s| json!(s.to_string())),
            "[a-z0-9]{0,3}".prop_map(Value::String)
        ],
    )
        .prop_map(|(name, scale)| {
            let mut s = json!({"type": "bytes", "name": name});
            if !scale.is_null() {
                s["parameters"] = json!({ "scale": scale });
            }
            s
        })
}

fn contract() -> sluice_core::contract::Contract {
    contract::parse("t.yaml", CONTRACT).unwrap()
}

fn meta() -> RowMeta {
    RowMeta {
        raw_ref: "r".into(),
        ts_ms: 0,
        tombstone_expires_at: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any Debezium event, with any schema, decodes and types or fails; it never panics.
    #[test]
    fn any_debezium_event_types_or_fails(
        values in prop::collection::vec(value(), 10),
        schemas in prop::collection::vec(prop::option::of(column_schema()), 10),
        op in prop::sample::select(vec!["c", "u", "d", "r", "t"]),
        lsn in any::<u64>(),
    ) {
        let mut after = serde_json::Map::new();
        let mut columns = Vec::new();
        for (i, (v, s)) in values.into_iter().zip(schemas).enumerate() {
            after.insert(format!("c{i}"), v);
            if let Some(mut s) = s {
                s["field"] = json!(format!("c{i}"));
                columns.push(s);
            }
        }
        let body = json!({
            "schema": {"type": "struct", "fields": [{"field": "after", "type": "struct", "fields": columns}]},
            "payload": {"before": after.clone(), "after": after, "op": op, "ts_ms": 1,
                        "source": {"connector": "postgresql", "table": "t", "lsn": lsn}}
        })
        .to_string();
        if let Ok(change) = sluice_core::body::decode(&body, &Limits::default()) {
            let rows: Vec<_> = type_change(&change, &contract(), &meta()).ok().flatten().into_iter().collect();
            let _ = coalesce(rows);
        }
    }

    /// Any JSON as a DynamoDB stream record's image decodes and types or fails; it never panics.
    #[test]
    fn any_stream_record_types_or_fails(
        image in prop::collection::btree_map("c[0-9]", value(), 0..6),
        kind in prop::sample::select(vec!["S", "N", "B", "SS", "NS", "BS", "L", "M", "NULL", "BOOL"]),
    ) {
        let typed: serde_json::Map<String, Value> = image.into_iter().map(|(k, v)| (k, json!({ kind: v }))).collect();
        let record = json!({
            "eventID": "e", "eventName": "MODIFY", "eventSource": "aws:dynamodb",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
            "dynamodb": {"Keys": {"c0": {"N": "1"}}, "NewImage": typed, "SequenceNumber": "1", "StreamViewType": "NEW_IMAGE"}
        })
        .to_string();
        if let Ok(change) = StreamRecord::parse(&record).and_then(|r| r.decode()) {
            let _ = type_change(&change, &contract(), &meta());
        }
    }
}
