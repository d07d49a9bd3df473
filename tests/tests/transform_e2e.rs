//! End to end: ingest and transform together, against a real AWS-compatible endpoint.
//!
//! Changes come from a real DynamoDB stream or a real SQS queue, pass through the ingest handler
//! into S3, reach the transform queue through the raw bucket's real S3 notifications, and are
//! typed by the transform handler into DynamoDB tables that the tests read back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue as A;
use sluice_core::typing::canonical_decimal;
use sluice_tests::*;

type Item = HashMap<String, A>;

fn s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn n(item: &Item, k: &str) -> Option<String> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .map(|x| canonical_decimal(x).unwrap())
}

fn source_item(i: usize, v: usize) -> Item {
    let blob = aws_sdk_dynamodb::primitives::Blob::new(vec![i as u8, v as u8, 0, 255]);
    HashMap::from([
        ("pk".to_owned(), A::S(format!("o-{i:04}"))),
        ("s".to_owned(), A::S(format!("ünïcode \"{i}\" v{v}"))),
        (
            "n_big".to_owned(),
            A::N(format!("1234567890123456789012345678901234.{v}{i:03}")),
        ),
        ("n_int".to_owned(), A::N(format!("{}", i * 100 + v))),
        ("b".to_owned(), A::B(blob.clone())),
        (
            "ss".to_owned(),
            A::Ss(vec![format!("x{i}"), format!("y{v}")]),
        ),
        ("ns".to_owned(), A::Ns(vec!["1.50".into(), format!("{v}")])),
        (
            "bs".to_owned(),
            A::Bs(vec![blob, aws_sdk_dynamodb::primitives::Blob::new(vec![9])]),
        ),
        (
            "m".to_owned(),
            A::M(HashMap::from([(
                "k".to_owned(),
                A::L(vec![A::N("2.50".into()), A::Bool(true), A::Null(true)]),
            )])),
        ),
        (
            "l".to_owned(),
            A::L(vec![A::S("a".into()), A::S(format!("{v}"))]),
        ),
        ("flag".to_owned(), A::Bool(v % 2 == 1)),
        (
            "at".to_owned(),
            A::S(format!("2026-11-25T0{}:00:00.123+01:00", v % 10)),
        ),
        ("gone".to_owned(), A::Null(true)),
    ])
}

fn ddb_contract(name: &str, source: &str, version: u32) -> String {
    format!(
        r#"
name: {name}
version: {version}
sources: [{{table: {source}, formats: [ddb-stream]}}]
primary_key: [id]
fields:
  - {{name: id, type: string, from: pk}}
  - {{name: s, type: string}}
  - {{name: n_big, type: decimal}}
  - {{name: n_int, type: int}}
  - {{name: b, type: binary}}
  - {{name: ss, type: set<string>}}
  - {{name: ns, type: set<decimal>}}
  - {{name: bs, type: set<binary>}}
  - {{name: m, type: json}}
  - {{name: l, type: list<string>}}
  - {{name: flag, type: bool}}
  - {{name: at, type: timestamp}}
  - {{name: gone, type: string}}
"#
    )
}

/// Plain JSON of a DynamoDB value, written here independently of the code under test.
fn plain_json(v: &A) -> serde_json::Value {
    use base64::Engine;
    match v {
        A::S(s) => serde_json::Value::String(s.clone()),
        A::N(n) => serde_json::from_str(n).unwrap(),
        A::Bool(b) => serde_json::Value::Bool(*b),
        A::Null(_) => serde_json::Value::Null,
        A::B(b) => {
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
        }
        A::L(l) => serde_json::Value::Array(l.iter().map(plain_json).collect()),
        A::M(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), plain_json(v))).collect())
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// GIVEN a source DynamoDB table mutated over 300 times with every attribute type
/// WHEN its stream goes through ingest, the raw objects' notifications through transform
/// THEN the typed table equals the source table: the same keys and typed values, decimal
/// precision included, and every deleted item is a tombstone.
#[tokio::test]
async fn dynamodb_source_table_and_typed_table_agree() {
    let env = env().await;
    let source = unique("src");
    let p = pipeline(
        &env,
        &[("t.yaml", ddb_contract("orders_typed", &source, 1))],
    )
    .await;
    let stream_arn = source_table(&env, &source).await;
    for i in 0..150 {
        env.ddb
            .put_item()
            .table_name(&source)
            .set_item(Some(source_item(i, 0)))
            .send()
            .await
            .unwrap();
    }
    for v in 1..=2 {
        for i in 0..60 {
            env.ddb
                .put_item()
                .table_name(&source)
                .set_item(Some(source_item(i, v)))
                .send()
                .await
                .unwrap();
        }
    }
    let deleted: BTreeSet<String> = (100..130).map(|i| format!("o-{i:04}")).collect();
    for k in &deleted {
        env.ddb
            .delete_item()
            .table_name(&source)
            .key("pk", A::S(k.clone()))
            .send()
            .await
            .unwrap();
    }
    let records = stream_records(&env, &stream_arn).await;
    assert!(records.len() >= 300, "{} changes", records.len());

    let ingest = ingest_deps(&env, &p.ingest);
    for batch in records.chunks(100) {
        let r = sluice_pipeline::ingest::handle(
            &sluice_local::events::stream_event(&stream_arn, "us-east-1", batch),
            &ingest,
        )
        .await
        .unwrap();
        assert!(r.failed_ids().is_empty());
    }
    drain_transform_clean(&env, &p, records.len()).await;

    let source_items = scan_by(&env, &source, "pk").await;
    let typed = scan_by(&env, &p.typed_table("orders_typed"), "id").await;
    let (live, tombstones) = live_and_tombstones(&typed);
    assert_eq!(
        live,
        source_items.keys().cloned().collect::<BTreeSet<_>>(),
        "the same keys"
    );
    assert_eq!(tombstones, deleted, "deleted items are tombstones");
    for k in &deleted {
        let t = &typed[k];
        assert_eq!(t["_deleted"], A::Bool(true));
        assert!(
            t.contains_key("_expires_at") && !t.contains_key("s"),
            "a tombstone keeps only its key"
        );
    }
    for (k, src) in &source_items {
        let row = &typed[k];
        assert_eq!(s(row, "s"), s(src, "s"), "{k}");
        assert_eq!(n(row, "n_big"), n(src, "n_big"), "{k}: decimal precision");
        assert_eq!(
            n(row, "n_big").unwrap().len(),
            n(src, "n_big").unwrap().len()
        );
        assert_eq!(n(row, "n_int"), n(src, "n_int"));
        assert_eq!(row["b"], src["b"]);
        let set = |v: &A| -> BTreeSet<String> { v.as_ss().unwrap().iter().cloned().collect() };
        assert_eq!(set(&row["ss"]), set(&src["ss"]));
        let nset = |v: &A| -> BTreeSet<String> {
            v.as_ns()
                .unwrap()
                .iter()
                .map(|x| canonical_decimal(x).unwrap())
                .collect()
        };
        assert_eq!(nset(&row["ns"]), nset(&src["ns"]));
        let bset = |v: &A| -> BTreeSet<Vec<u8>> {
            v.as_bs()
                .unwrap()
                .iter()
                .map(|b| b.as_ref().to_vec())
                .collect()
        };
        assert_eq!(bset(&row["bs"]), bset(&src["bs"]));
        let json: serde_json::Value = serde_json::from_str(&s(row, "m").unwrap()).unwrap();
        assert_eq!(json, plain_json(&src["m"]));
        let list: Vec<String> = row["l"]
            .as_l()
            .unwrap()
            .iter()
            .map(|v| v.as_s().unwrap().clone())
            .collect();
        assert_eq!(
            list,
            src["l"]
                .as_l()
                .unwrap()
                .iter()
                .map(|v| v.as_s().unwrap().clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(row["flag"], src["flag"]);
        let at = s(src, "at").unwrap();
        let expected_at = chrono::DateTime::parse_from_rfc3339(&at)
            .unwrap()
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        assert_eq!(s(row, "at").unwrap(), expected_at);
        assert!(
            !row.contains_key("gone"),
            "null is missing, and an optional missing field is absent"
        );
        assert_eq!(row["_contract_version"], A::N("1".into()));
        assert!(s(row, "_raw")
            .unwrap()
            .starts_with(&format!("s3://{}/raw/{source}/", p.ingest.raw_bucket)));
    }
}

fn customers_contract(name: &str, source: &str, version: u32, extra_field: &str) -> String {
    format!(
        r#"
name = "{name}"
version = {version}
primary_key = ["id"]
[[sources]]
table = "{source}"
[[fields]]
name = "id"
type = "int"
[[fields]]
name = "first_name"
type = "string"
[[fields]]
name = "email"
type = "string"
required = true
[[fields]]
name = "balance"
type = "decimal"
{extra_field}
"#
    )
}

fn app(table: &str, id: u64, seq: u64, op: &str, email: serde_json::Value) -> String {
    let after = if op == "delete" {
        serde_json::Value::Null
    } else {
        serde_json::json!({"id": id, "first_name": format!("n{id}-{seq}"), "email": email, "balance": "1234567890123456789.99"})
    };
    serde_json::json!({"table": table, "op": op, "key": {"id": id}, "after": after, "seq": seq, "ts": 1_795_590_000_000u64 + seq}).to_string()
}

fn debezium_pg(table: &str, id: u64, lsn: u64, email: &str) -> String {
    serde_json::json!({
        "schema": {"type": "struct", "fields": [], "optional": false, "name": "x.Envelope"},
        "payload": {
            "before": null,
            "after": {"id": id, "first_name": "Dbz", "email": email, "balance": 10.25},
            "source": {"connector": "postgresql", "name": "pg", "ts_ms": 1_795_590_000_000u64, "db": "shop", "schema": "public", "table": table, "lsn": lsn},
            "op": "c",
            "ts_ms": 1_795_590_000_100u64
        }
    })
    .to_string()
}

fn debezium_mysql_delete(table: &str, id: u64) -> String {
    serde_json::json!({
        "before": {"id": id, "first_name": "Gone", "email": "g@example.com"},
        "after": null,
        "source": {"connector": "mysql", "name": "my", "ts_ms": 1_795_590_001_000u64, "db": "shop", "table": table, "file": "mysql-bin.000004", "pos": 99, "row": 0},
        "op": "d",
        "ts_ms": 1_795_590_001_001u64
    })
    .to_string()
}

fn dms(table: &str, id: u64, op: &str, email: &str) -> String {
    serde_json::json!({
        "data": {"id": id, "first_name": "Dms", "email": email, "balance": "0.10"},
        "metadata": {"timestamp": "2026-11-25T07:00:00.000000Z", "record-type": "data", "operation": op, "partition-key-type": "primary-key",
                     "schema-name": "shop", "table-name": table, "transaction-id": 42,
                     "stream-position": "mysql-bin-changelog.000010:500:0:600:42:mysql-bin-changelog.000010:400"}
    })
    .to_string()
}

/// GIVEN application, Debezium and DMS events for a second table, and poisoned records
/// WHEN they go through ingest over SQS and then transform
/// THEN the good ones are typed rows; exactly the poisoned ones are on the DLQ, each naming
/// the failing field (or the missing contract) and its class.
#[tokio::test]
async fn sqs_sources_are_typed_and_poisoned_records_are_dead_lettered() {
    let env = env().await;
    let source = unique("customers");
    let orphan = unique("nocontract");
    let p = pipeline(
        &env,
        &[(
            "c.toml",
            customers_contract("customers_typed", &source, 1, ""),
        )],
    )
    .await;
    let good = vec![
        app(&source, 1, 1, "insert", "a@example.com".into()),
        app(&source, 1, 2, "update", "a2@example.com".into()),
        app(&source, 2, 1, "insert", "b@example.com".into()),
        debezium_pg(&source, 3, 1000, "c@example.com"),
        debezium_mysql_delete(&source, 2),
        dms(&source, 4, "insert", "d@example.com"),
        dms(&source, 5, "load", "e@example.com"),
    ];
    let poison = vec![
        (
            app(&source, 6, 1, "insert", serde_json::json!(12345)),
            "email",
            "type_mismatch",
        ),
        (
            app(&source, 7, 1, "insert", serde_json::Value::Null),
            "email",
            "missing_field",
        ),
        (
            app(&orphan, 8, 1, "insert", "x@example.com".into()),
            "",
            "no_contract",
        ),
    ];
    let mut bodies = good.clone();
    bodies.extend(poison.iter().map(|(b, _, _)| b.clone()));
    let ingest = ingest_deps(&env, &p.ingest);
    ingest_bodies(&env, &p, &ingest, &bodies, 10).await;
    let (stats, failed) = drain_transform(&env, &p, &transform_deps(&env, &p)).await;
    assert_eq!(failed, 0);
    assert_eq!(stats.lines, bodies.len());

    let typed: BTreeMap<String, Item> = scan(&env, &p.typed_table("customers_typed"))
        .await
        .into_iter()
        .map(|i| (n(&i, "id").unwrap(), i))
        .collect();
    assert_eq!(
        typed.keys().cloned().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"]
    );
    assert_eq!(
        s(&typed["1"], "email").as_deref(),
        Some("a2@example.com"),
        "the higher seq wins"
    );
    assert_eq!(
        n(&typed["1"], "balance").as_deref(),
        Some("1234567890123456789.99")
    );
    assert_eq!(
        typed["2"]["_deleted"],
        A::Bool(true),
        "the Debezium delete is a tombstone"
    );
    assert_eq!(s(&typed["3"], "first_name").as_deref(), Some("Dbz"));
    assert_eq!(n(&typed["3"], "balance").as_deref(), Some("10.25"));
    assert_eq!(s(&typed["4"], "_op").as_deref(), Some("insert"));
    assert_eq!(s(&typed["5"], "_op").as_deref(), Some("snapshot"));

    let letters = dead_letters(&env, &p.ingest.dlq_url, poison.len() + 1).await;
    assert_eq!(letters.len(), poison.len(), "exactly the poisoned records");
    for (body, field, code) in &poison {
        let (env_, attrs) = letters
            .iter()
            .find(|(e, _)| {
                let line: serde_json::Value =
                    serde_json::from_str(e.original.as_deref().unwrap()).unwrap();
                line["record"] == serde_json::from_str::<serde_json::Value>(body).unwrap()
            })
            .unwrap_or_else(|| panic!("no dead letter for {body}"));
        assert_eq!(env_.error_code.as_deref(), Some(*code));
        assert_eq!(env_.step, sluice_core::envelope::Step::Transform);
        assert!(
            env_.error.contains(&format!("field {field}")) || field.is_empty(),
            "{}",
            env_.error
        );
        let class = if *code == "no_contract" {
            "no_contract"
        } else {
            "contract_violation"
        };
        assert_eq!(env_.error_class.as_str(), class);
        assert_eq!(attrs["error_class"], class);
        let raw_ref = env_.raw_ref.as_deref().unwrap();
        assert!(
            raw_ref.starts_with(&format!("s3://{}/raw/", p.ingest.raw_bucket))
                && raw_ref.contains("#L"),
            "{raw_ref}"
        );
    }
}

/// GIVEN the same changes to a few keys, delivered shuffled and duplicated, in several batches
/// WHEN they go through ingest and transform
/// THEN the typed table ends in the same state as delivering them once, in order.
#[tokio::test]
async fn shuffled_and_duplicated_delivery_converges() {
    let env = env().await;
    let source = unique("shuffled");
    let p = pipeline(
        &env,
        &[(
            "c.toml",
            customers_contract("shuffled_typed", &source, 1, ""),
        )],
    )
    .await;
    // Per key: seq 1..=6; key 3 ends deleted.
    let mut changes = Vec::new();
    for id in 1..=4u64 {
        for seq in 1..=6u64 {
            let op = if id == 3 && seq == 6 {
                "delete"
            } else if seq == 1 {
                "insert"
            } else {
                "update"
            };
            changes.push(app(
                &source,
                id,
                seq,
                op,
                format!("{id}-{seq}@example.com").into(),
            ));
        }
    }
    let mut delivery = changes.clone();
    delivery.extend(changes.iter().step_by(3).cloned());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..delivery.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        delivery.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let ingest = ingest_deps(&env, &p.ingest);
    ingest_bodies(&env, &p, &ingest, &delivery, 7).await;
    let (_, failed) = drain_transform(&env, &p, &transform_deps(&env, &p)).await;
    assert_eq!(failed, 0);

    let typed: BTreeMap<String, Item> = scan(&env, &p.typed_table("shuffled_typed"))
        .await
        .into_iter()
        .map(|i| (n(&i, "id").unwrap(), i))
        .collect();
    for id in 1..=4u64 {
        let row = &typed[&id.to_string()];
        if id == 3 {
            assert_eq!(row["_deleted"], A::Bool(true));
        } else {
            assert_eq!(
                s(row, "email"),
                Some(format!("{id}-6@example.com")),
                "key {id}"
            );
            assert_eq!(s(row, "first_name"), Some(format!("n{id}-6")));
        }
        assert_eq!(
            s(row, "_seq"),
            Some(
                sluice_core::Seq::decimal("6", "")
                    .unwrap()
                    .as_str()
                    .to_owned()
            )
        );
    }
}

/// Puts an S3 notification for every raw object on the transform queue again: a replay.
async fn renotify(env: &TestEnv, p: &Pipeline) {
    for key in list_keys(env, &p.ingest.raw_bucket, "raw/").await {
        let notification = serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": p.ingest.raw_bucket}, "object": {"key": key}}}]});
        env.sqs
            .send_message()
            .queue_url(&p.transform_queue_url)
            .message_body(notification.to_string())
            .send()
            .await
            .unwrap();
    }
}

/// GIVEN rows typed under contract version 1
/// WHEN the contract changes (version 2 adds a field) and the same raw object is processed again
/// THEN the rows are rewritten under version 2, at the same `seq`.
#[tokio::test]
async fn a_contract_change_rewrites_rows_on_reprocessing() {
    let env = env().await;
    let source = unique("evolving");
    let p = pipeline(
        &env,
        &[(
            "c.toml",
            customers_contract("evolving_typed", &source, 1, ""),
        )],
    )
    .await;
    let bodies: Vec<String> = (1..=3)
        .map(|id| app(&source, id, 1, "insert", format!("{id}@example.com").into()))
        .collect();
    let ingest = ingest_deps(&env, &p.ingest);
    ingest_bodies(&env, &p, &ingest, &bodies, 10).await;
    let transform = transform_deps(&env, &p);
    assert_eq!(drain_transform(&env, &p, &transform).await.1, 0);
    let before = scan(&env, &p.typed_table("evolving_typed")).await;
    assert_eq!(before.len(), 3);
    assert!(before
        .iter()
        .all(|i| i["_contract_version"] == A::N("1".into()) && !i.contains_key("name")));

    // Version 2 reads first_name into a new field `name` too.
    let v2 = customers_contract(
        "evolving_typed",
        &source,
        2,
        "[[fields]]\nname = \"name\"\ntype = \"string\"\nfrom = \"first_name\"\n",
    );
    p.put_contract(&env, "c.toml", &v2).await;
    // Replay: the same object's notification, processed again.
    renotify(&env, &p).await;
    let (stats, failed) = drain_transform(&env, &p, &transform).await;
    assert_eq!(failed, 0);
    assert_eq!(stats.tables["evolving_typed"].written, 3);
    let after = scan(&env, &p.typed_table("evolving_typed")).await;
    for item in &after {
        assert_eq!(item["_contract_version"], A::N("2".into()));
        assert_eq!(s(item, "name"), s(item, "first_name"));
    }
    // And processing it once more under the same version changes nothing: every row is found
    // already written from the same lines, neither written again nor counted stale.
    renotify(&env, &p).await;
    let (stats, _) = drain_transform(&env, &p, &transform).await;
    assert_eq!(stats.tables["evolving_typed"].written, 0);
    assert_eq!(stats.tables["evolving_typed"].already_written, 3);
    assert_eq!(stats.tables["evolving_typed"].stale, 0);
}

/// GIVEN contracts stored under an S3 prefix, one of them broken
/// WHEN transform loads them from `s3://bucket/prefix/`
/// THEN the good contract types its table and the broken file is skipped, not fatal.
#[tokio::test]
async fn contracts_load_from_s3() {
    let env = env().await;
    let source = unique("s3contracts");
    let p = pipeline(&env, &[]).await;
    let contract = customers_contract("from_s3_typed", &source, 1, "");
    sluice_local::provision::ensure_typed_table(
        &env.ddb,
        &p.typed_table("from_s3_typed"),
        &[("id".to_owned(), "N")],
    )
    .await
    .unwrap();
    for (key, body) in [
        ("contracts/c.toml", contract.as_str()),
        ("contracts/broken.yaml", "name: ["),
        ("contracts/README.md", "not a contract"),
    ] {
        env.s3
            .put_object()
            .bucket(&p.ingest.raw_bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let bodies: Vec<String> = (1..=2)
        .map(|id| app(&source, id, 1, "insert", format!("{id}@example.com").into()))
        .collect();
    ingest_bodies(&env, &p, &ingest_deps(&env, &p.ingest), &bodies, 10).await;
    let transform = transform_deps_with(
        &env,
        &p,
        &format!("s3://{}/contracts/", p.ingest.raw_bucket),
    );
    let (stats, failed) = drain_transform(&env, &p, &transform).await;
    assert_eq!(failed, 0);
    assert_eq!(stats.tables["from_s3_typed"].written, 2);
    assert_eq!(scan(&env, &p.typed_table("from_s3_typed")).await.len(), 2);
}

fn dms_at(
    table: &str,
    op: &str,
    pos: u64,
    data: serde_json::Value,
    before: Option<serde_json::Value>,
) -> String {
    let mut rec = serde_json::json!({
        "data": data,
        "metadata": {"timestamp": "2026-11-25T07:00:00.000000Z", "record-type": "data", "operation": op,
                     "partition-key-type": "primary-key", "schema-name": "shop", "table-name": table, "transaction-id": pos,
                     "stream-position": format!("mysql-bin-changelog.000010:{pos}:0:{pos}:1:mysql-bin-changelog.000010:{pos}")}
    });
    if let Some(b) = before {
        rec["before-image"] = b;
    }
    rec.to_string()
}

/// GIVEN a DMS insert, then an update that changes the row's primary key
/// WHEN they go through ingest and transform
/// THEN the old key is a tombstone and the new key holds the row.
#[tokio::test]
async fn a_dms_update_that_changes_the_key_moves_the_row() {
    let env = env().await;
    let source = unique("rekeyed");
    let p = pipeline(
        &env,
        &[(
            "c.toml",
            customers_contract("rekeyed_typed", &source, 1, ""),
        )],
    )
    .await;
    let bodies = vec![
        dms_at(
            &source,
            "insert",
            100,
            serde_json::json!({"id": 46, "first_name": "Ann", "email": "a@example.com"}),
            None,
        ),
        dms_at(
            &source,
            "update",
            200,
            serde_json::json!({"id": 45, "first_name": "Ann", "email": "a@example.com"}),
            Some(serde_json::json!({"id": 46})),
        ),
    ];
    ingest_bodies(&env, &p, &ingest_deps(&env, &p.ingest), &bodies, 10).await;
    let (_, failed) = drain_transform(&env, &p, &transform_deps(&env, &p)).await;
    assert_eq!(failed, 0);
    let typed: BTreeMap<String, Item> = scan(&env, &p.typed_table("rekeyed_typed"))
        .await
        .into_iter()
        .map(|i| (n(&i, "id").unwrap(), i))
        .collect();
    assert_eq!(typed.keys().cloned().collect::<Vec<_>>(), ["45", "46"]);
    assert_eq!(
        typed["46"]["_deleted"],
        A::Bool(true),
        "the old key is a tombstone"
    );
    assert!(!typed["45"].contains_key("_deleted"));
    assert_eq!(s(&typed["45"], "email").as_deref(), Some("a@example.com"));
}

/// GIVEN hostile changes: keys that disagree with their images (an application event, and a
/// hand-made DynamoDB stream record), an escaped lone surrogate in a body and in a raw line
/// written to raw staging by other means, and unknown columns DynamoDB cannot hold as they are
/// (a number of 39 digits, a map with an empty key)
/// WHEN they go through ingest and transform
/// THEN each disagreement is a `key_mismatch` dead letter naming both paths, each lone
/// surrogate an `invalid_utf8` one, and the unknown columns are kept under `_extra` as their
/// JSON text, in a table that scans back.
#[tokio::test]
async fn hostile_keys_surrogates_and_unstorable_columns_end_precisely() {
    let env = env().await;
    let p = pipeline(
        &env,
        &[(
            "people.yaml",
            "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nunknown_fields: keep\nfields:\n  - {name: id, type: int}\n  - {name: name, type: string}\n".to_owned(),
        )],
    )
    .await;
    let ingest = ingest_deps(&env, &p.ingest);
    let digits = "9".repeat(39);
    let bodies = [
        r#"{"table":"people","op":"update","key":{"id":135},"after":{"id":136,"name":"x"},"seq":1}"#.to_owned(),
        r#"{"table":"people","op":"insert","key":{"id":2},"after":{"id":2,"name":"\ud800"},"seq":1}"#.to_owned(),
        format!(r#"{{"table":"people","op":"insert","key":{{"id":1}},"after":{{"id":1,"name":"ok","digits":{digits},"m":{{"":1,"a":2}}}},"seq":1}}"#),
    ];
    ingest_bodies(&env, &p, &ingest, &bodies, 10).await;
    // DynamoDB never sends a record whose Keys and NewImage disagree; a hand-made one can.
    let stream = r#"{"Records":[{"eventID":"e1","eventName":"INSERT","eventSource":"aws:dynamodb","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/people/stream/x","dynamodb":{"ApproximateCreationDateTime":1795520000,"Keys":{"id":{"N":"7"}},"NewImage":{"id":{"N":"8"},"name":{"S":"y"}},"SequenceNumber":"100","StreamViewType":"NEW_IMAGE"}}]}"#;
    let response = sluice_pipeline::ingest::handle(stream, &ingest)
        .await
        .unwrap();
    assert!(response.failed_ids().is_empty());
    // A raw line with a lone surrogate, written to raw staging by other means.
    let line = r#"{"v":1,"format":"app","table":"people","op":"insert","seq":"0000000000000000000000000000000000000001","ts_ms":1795520000000,"ts_source":"source","ingested_ms":1795520000000,"origin":{"kind":"sqs","arn":"a","id":"m9"},"record":{"table":"people","op":"insert","key":{"id":9},"after":{"id":9,"name":"\udc00"},"seq":1}}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, format!("{line}\n").as_bytes()).unwrap();
    env.s3
        .put_object()
        .bucket(&p.ingest.raw_bucket)
        .key("raw/people/dt=2026-11-25/hr=00/by-hand.ndjson.gz")
        .body(gz.finish().unwrap().into())
        .send()
        .await
        .unwrap();

    let (_, failed) = drain_transform(&env, &p, &transform_deps(&env, &p)).await;
    assert_eq!(failed, 0);

    let letters = dead_letters(&env, &p.ingest.dlq_url, 4).await;
    let mut seen: Vec<(String, String, String)> = letters
        .iter()
        .map(|(e, _)| {
            (
                e.step.as_str().to_owned(),
                e.error_code.clone().unwrap(),
                e.error.clone(),
            )
        })
        .collect();
    seen.sort();
    let codes: Vec<(&str, &str)> = seen
        .iter()
        .map(|(s, c, _)| (s.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("ingest", "invalid_utf8"),
            ("ingest", "key_mismatch"),
            ("transform", "invalid_utf8"),
            ("transform", "key_mismatch"),
        ],
        "{seen:#?}"
    );
    assert!(
        seen[1].2.contains("`key.id` and `after.id` disagree"),
        "{seen:#?}"
    );
    assert!(
        seen[3]
            .2
            .contains("`dynamodb.Keys.id` and `dynamodb.NewImage.id` disagree"),
        "{seen:#?}"
    );
    assert!(seen[0].2.contains("lone surrogate \\ud800"), "{seen:#?}");
    assert!(seen[2].2.contains("lone surrogate \\udc00"), "{seen:#?}");

    let rows = scan(&env, &p.typed_table("people")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let extra = rows[0]["_extra"].as_m().unwrap();
    assert_eq!(extra["digits"], A::S(digits));
    assert_eq!(extra["m"], A::S(r#"{"":1,"a":2}"#.into()));
}
