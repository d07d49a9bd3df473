//! The ordering guard is one definition ([`sluice_core::row::Guard`]) with two readers: the
//! in-memory model of the conditional writes ([`sluice_core::row::apply_write`], behind the
//! in-memory store) and the DynamoDB adapter's condition expressions. Here the same histories,
//! shuffled, duplicated and coalesced per object as transform does, go through both, the
//! second against a real AWS-compatible endpoint, and must end in the same items.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_dynamo::AttributeValue;
use sluice_aws::memory::Memory;
use sluice_aws::typed_tables::{DynamoTypedTables, TypedTables};
use sluice_core::contract::{self, Contract};
use sluice_core::json::Limits;
use sluice_core::row::{newest_of, type_change, RowMeta, TypedRow};
use sluice_tests::*;

const CONTRACT: &str = "name: t\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: string}\n  - {name: email, type: string}\n  - {name: bio, type: string}\n";

/// One change of a key: a value for its TOAST column `bio` (or null), the placeholder that
/// leaves it unchanged, or a delete.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Value(Option<u8>),
    Unchanged,
    Delete,
}

/// The row a Debezium change of `key` at `seq` types to, from raw line `L<seq>`.
fn row(contract: &Contract, key: &str, seq: u64, kind: Kind) -> TypedRow {
    let image = |bio: String| format!(r#"{{"id":"{key}","email":"e{seq}","bio":{bio}}}"#);
    let (op, before, after) = match kind {
        Kind::Value(v) => (
            "u",
            "null".to_owned(),
            image(v.map_or_else(|| "null".to_owned(), |b| format!("\"b{b}\""))),
        ),
        Kind::Unchanged => (
            "u",
            "null".to_owned(),
            image("\"__debezium_unavailable_value\"".into()),
        ),
        Kind::Delete => ("d", format!(r#"{{"id":"{key}"}}"#), "null".to_owned()),
    };
    let event = format!(
        r#"{{"before":{before},"after":{after},"source":{{"connector":"postgresql","table":"people","lsn":{seq}}},"op":"{op}","ts_ms":1795520000000}}"#
    );
    let change = sluice_core::body::decode(&event, &Limits::default()).unwrap();
    let meta = RowMeta {
        raw_ref: format!("s3://raw/raw/people/o.ndjson.gz#L{seq}"),
        ts_ms: 1_795_520_000_000,
        tombstone_expires_at: 1_900_000_000,
    };
    type_change(&change, contract, &meta).unwrap().unwrap()
}

fn history() -> impl Strategy<Value = Vec<(u64, Kind)>> {
    let kind = prop_oneof![
        3 => prop::option::weighted(0.8, 0u8..4).prop_map(Kind::Value),
        3 => Just(Kind::Unchanged),
        1 => Just(Kind::Delete),
    ];
    prop::collection::vec(kind, 1..10).prop_map(|kinds| {
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| (i as u64 + 1, k))
            .collect()
    })
}

/// The case count: 32 by default, `SLUICE_FUZZ_CASES` under `make fuzz`.
fn cases() -> u32 {
    std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(32, |n| (n / 100).max(32))
}

/// Items by key, with the key's prefix removed so both stores name them alike.
fn by_key(
    items: impl IntoIterator<Item = BTreeMap<String, AttributeValue>>,
) -> BTreeMap<String, BTreeMap<String, AttributeValue>> {
    items
        .into_iter()
        .map(|item| {
            let id = match &item["id"] {
                AttributeValue::S(s) => s.clone(),
                other => panic!("key {other:?}"),
            };
            (id, item)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Two keys' histories, delivered shuffled and duplicated in objects of any size (each
    /// coalesced per key, as transform writes only an object's newest change of a key, filling
    /// what it left unchanged), end in the same items in memory and in DynamoDB.
    #[test]
    fn the_in_memory_model_and_dynamodb_agree(
        a in history(),
        b in history(),
        order in any::<prop::sample::Index>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        chunk in 1usize..5,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let env = env().await;
            let contract = contract::parse("t.yaml", CONTRACT).unwrap();
            let prefix = unique("guard");
            let table = format!("{prefix}-t");
            sluice_local::provision::ensure_typed_table(&env.ddb, &table, &contract.key_schema())
                .await
                .unwrap();
            let dynamo = DynamoTypedTables::new(env.ddb.clone(), format!("{prefix}-"));
            let memory = Memory::new();

            let mut delivery: Vec<TypedRow> = a
                .iter()
                .map(|(seq, k)| row(&contract, "a", *seq, *k))
                .chain(b.iter().map(|(seq, k)| row(&contract, "b", *seq + 100, *k)))
                .collect();
            let n = delivery.len();
            for d in &dups {
                delivery.push(delivery[d.index(n)].clone());
            }
            let mut seed = order.index(usize::MAX / 2) | 1;
            for i in (1..delivery.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                delivery.swap(i, seed % (i + 1));
            }
            for object in delivery.chunks(chunk) {
                let mut groups: BTreeMap<String, Vec<(TypedRow, ())>> = BTreeMap::new();
                for r in object {
                    groups.entry(r.key_id()).or_default().push((r.clone(), ()));
                }
                for (winner, ()) in groups.into_values().filter_map(newest_of) {
                    let in_memory = memory.put_row(&winner).await.unwrap();
                    let in_dynamo = dynamo.put_row(&winner).await.unwrap();
                    assert_eq!(in_memory, in_dynamo, "the same outcome for {winner:?}");
                }
            }

            let stored = scan(&env, &table).await.into_iter().map(|item| {
                item.into_iter().map(|(k, v)| (k, AttributeValue::from(v))).collect()
            });
            let modelled = memory.rows().into_values().map(|item| item.into_iter().collect());
            assert_eq!(by_key(modelled), by_key(stored));
        });
    }
}
