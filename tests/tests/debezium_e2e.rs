//! End to end: a Debezium Postgres stream through ingest and transform, against a real
//! AWS-compatible endpoint.
//!
//! Events come as Kafka Connect's JSON converter writes them with schemas: NUMERIC columns as
//! `org.apache.kafka.connect.data.Decimal` bytes with a scale, `timestamp` as
//! `io.debezium.time.MicroTimestamp`, and an update whose unchanged TOAST column carries
//! `__debezium_unavailable_value`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue as A;
use base64::Engine;
use sluice_local::audit::{audit, AuditInput};
use sluice_pipeline::contracts::ContractSet;
use sluice_tests::*;

type Item = HashMap<String, A>;

const CONTRACT: &str = r#"
name: {name}
version: 1
sources: [{table: {source}, formats: [debezium]}]
primary_key: [id]
fields:
  - {name: id, type: int}
  - {name: email, type: string}
  - {name: balance, type: decimal}
  - {name: credit_limit, type: decimal}
  - {name: created_at, type: timestamp}
  - {name: bio, type: string}
"#;

/// Connect Decimal bytes: big-endian two's complement of the unscaled value, base64.
fn decimal_bytes(unscaled: i128) -> String {
    let bytes = unscaled.to_be_bytes();
    let sign = if unscaled < 0 { 0xff } else { 0 };
    let mut start = 0;
    while start < 15 && bytes[start] == sign && (bytes[start + 1] & 0x80) == (sign & 0x80) {
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

fn schema() -> serde_json::Value {
    let columns = serde_json::json!([
        {"type": "int32", "optional": false, "field": "id"},
        {"type": "string", "optional": true, "field": "email"},
        {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
         "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "14"}, "field": "balance"},
        {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
         "version": 1, "parameters": {"scale": "4", "connect.decimal.precision": "38"}, "field": "credit_limit"},
        {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp",
         "version": 1, "field": "created_at"},
        {"type": "string", "optional": true, "field": "bio"}
    ]);
    serde_json::json!({"type": "struct", "name": "pg.public.accounts.Envelope", "optional": false, "fields": [
        {"type": "struct", "optional": true, "field": "before", "name": "pg.public.accounts.Value", "fields": columns},
        {"type": "struct", "optional": true, "field": "after", "name": "pg.public.accounts.Value", "fields": columns},
        {"type": "struct", "optional": false, "field": "source", "fields": []},
        {"type": "string", "optional": false, "field": "op"},
        {"type": "int64", "optional": true, "field": "ts_ms"}
    ]})
}

fn event(table: &str, op: &str, lsn: u64, after: serde_json::Value) -> String {
    serde_json::json!({
        "schema": schema(),
        "payload": {
            "before": null,
            "after": after,
            "source": {"version": "2.7.3.Final", "connector": "postgresql", "name": "pg",
                       "ts_ms": 1_795_500_000_000u64 + lsn, "snapshot": "false", "db": "bank",
                       "sequence": format!("[\"{}\",\"{lsn}\"]", lsn - 1), "schema": "public",
                       "table": table, "txId": lsn, "lsn": lsn, "xmin": null},
            "op": op,
            "ts_ms": 1_795_500_000_000u64 + lsn + 7
        }
    })
    .to_string()
}

fn s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn n(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_n().ok()).cloned()
}

/// GIVEN a Debezium Postgres stream with Decimal bytes, microsecond timestamps, and later an
///       update whose unchanged TOAST column is `__debezium_unavailable_value`
/// WHEN it goes through ingest and transform in two rounds (so the update is its own object)
/// THEN the typed table holds exact decimals and UTC timestamps, and the TOASTed column keeps
///      its earlier value, even when the earlier change arrives after the update; the audit is
///      clean.
#[tokio::test]
async fn a_debezium_postgres_stream_types_exactly_and_keeps_toasted_columns() {
    let env = env().await;
    let source = unique("accounts");
    let text = CONTRACT
        .replace("{name}", "accounts_typed")
        .replace("{source}", &source);
    let p = pipeline(&env, &[("accounts.yaml", text)]).await;
    let long_bio = "Ünïcode biography. ".repeat(200);
    // Exact values that an f64 would round: 38 significant digits, and cents on large sums.
    let limit_unscaled: i128 = 12_345_678_901_234_567_890_123_456_789_012_345_678;
    let first = vec![
        event(
            &source,
            "c",
            1000,
            serde_json::json!({"id": 1, "email": "ann@example.com",
                "balance": decimal_bytes(9_007_199_254_740_993), "credit_limit": decimal_bytes(limit_unscaled),
                "created_at": 1_795_500_000_123_456i64, "bio": long_bio}),
        ),
        event(
            &source,
            "c",
            1001,
            serde_json::json!({"id": 2, "email": "bob@example.com",
                "balance": decimal_bytes(-5), "credit_limit": null,
                "created_at": -1_000_001i64, "bio": "short"}),
        ),
        // Row 3 arrives out of order: its TOAST update first, its insert in the second round.
        event(
            &source,
            "u",
            1500,
            serde_json::json!({"id": 3, "email": "cy@new.example.com",
                "balance": decimal_bytes(300), "credit_limit": null,
                "created_at": 0, "bio": "__debezium_unavailable_value"}),
        ),
    ];
    let deps = ingest_deps(&env, &p.ingest);
    ingest_bodies(&env, &p, &deps, &first, 10).await;
    let (_, failed) = drain_transform(&env, &p, &transform_deps(&env, &p)).await;
    assert_eq!(failed, 0);

    // The update: a new email and balance; the bio did not change and is not sent.
    let second = vec![
        event(
            &source,
            "u",
            2000,
            serde_json::json!({"id": 1, "email": "ann@new.example.com",
            "balance": decimal_bytes(100), "credit_limit": decimal_bytes(limit_unscaled),
            "created_at": 1_795_500_000_123_456i64, "bio": "__debezium_unavailable_value"}),
        ),
        event(
            &source,
            "c",
            1002,
            serde_json::json!({"id": 3, "email": "cy@example.com",
            "balance": decimal_bytes(100), "credit_limit": null,
            "created_at": 0, "bio": "Cy's biography, delivered late."}),
        ),
        // A truncate: never applied to the rows, a `source_truncated` dead letter instead.
        event(&source, "t", 2500, serde_json::Value::Null),
    ];
    ingest_bodies(&env, &p, &deps, &second, 10).await;
    let (_, failed) = drain_transform(&env, &p, &transform_deps(&env, &p)).await;
    assert_eq!(failed, 0);

    let typed: BTreeMap<String, Item> = scan(&env, &p.typed_table("accounts_typed"))
        .await
        .into_iter()
        .map(|i| (n(&i, "id").unwrap(), i))
        .collect();
    assert_eq!(typed.len(), 3);
    let ann = &typed["1"];
    assert_eq!(s(ann, "email").as_deref(), Some("ann@new.example.com"));
    assert_eq!(n(ann, "balance").as_deref(), Some("1"));
    assert_eq!(
        n(ann, "credit_limit").as_deref(),
        Some("1234567890123456789012345678901234.5678"),
        "38 significant digits, exactly"
    );
    assert_eq!(
        s(ann, "created_at").as_deref(),
        Some("2026-11-24T06:00:00.123456Z")
    );
    assert_eq!(
        s(ann, "bio").as_deref(),
        Some(long_bio.as_str()),
        "the unchanged TOAST column keeps its earlier value"
    );
    assert!(
        !ann.values().any(|v| v
            .as_s()
            .is_ok_and(|t| t.contains("__debezium_unavailable_value"))),
        "the placeholder is never written"
    );
    assert_eq!(s(ann, "_op").as_deref(), Some("update"));
    let bob = &typed["2"];
    assert_eq!(n(bob, "balance").as_deref(), Some("-0.05"));
    assert!(!bob.contains_key("credit_limit"), "null is missing");
    assert_eq!(
        s(bob, "created_at").as_deref(),
        Some("1969-12-31T23:59:58.999999Z"),
        "before 1970"
    );

    let cy = &typed["3"];
    assert_eq!(
        s(cy, "bio").as_deref(),
        Some("Cy's biography, delivered late."),
        "the late insert fills the column its newer update left unchanged"
    );
    assert_eq!(s(cy, "email").as_deref(), Some("cy@new.example.com"));
    assert_eq!(n(cy, "balance").as_deref(), Some("3"));

    let contracts = ContractSet::from_files([(
        "accounts.yaml".to_owned(),
        std::fs::read_to_string(p.contracts_dir.join("accounts.yaml")).unwrap(),
    )]);
    let report = audit(&AuditInput {
        s3: &env.s3,
        sqs: &env.sqs,
        ddb: &env.ddb,
        raw_bucket: &p.ingest.raw_bucket,
        dlq_urls: std::slice::from_ref(&p.ingest.dlq_url),
        contracts: &contracts,
        typed_table_prefix: &p.names.typed_table_prefix,
        source_tables: &[],
        queues: &[("transform".to_owned(), p.transform_queue_url.clone())],
        progress: None,
    })
    .await
    .unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.tables[0].raw_lines, 6);
    assert_eq!(report.tables[0].typed, 3);
    assert_eq!(report.tables[0].stale, 2);
    assert_eq!(report.tables[0].quarantined, 1, "the truncate");
    assert_eq!(report.dead_letters.values().sum::<usize>(), 1);
}
