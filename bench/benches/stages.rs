//! Per-stage micro-benchmarks of the transform path, each over the same raw lines (of the
//! shape `bench/peers/gen_raw.py` writes, built by `sluice_bench::sample`), so a regression
//! shows in the stage that has it:
//!
//! - `read_object`: the in-memory raw object opened through the `RawObjects` port (inflated by
//!   the adapter's gzip reader) and split into lines;
//! - `parse_raw_line`: a line read as a raw line (`sluice_core::raw::RawLineView`);
//! - `decode_record`: its record decoded again by its format (`decide::decode_record`);
//! - `type_change`: the change typed under the orders contract (`row::type_change`);
//! - `decide`: the whole per-line decision (`decide::decide`), the three above and the rest;
//! - `coalesce`: the typed rows of the object coalesced per key (`row::coalesce`);
//! - `build_item`: each winner as the DynamoDB adapter sends it: the item in the SDK's attribute
//!   values and the guard's condition expression.
//!
//! Throughput is per line (per winning row for `build_item`). `cargo bench -p sluice-bench`
//! runs them; `cargo test` runs each once, so they cannot rot.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use sluice_aws::memory::Memory;
use sluice_aws::RawObjects;
use sluice_bench::sample::{gzip_object, raw_lines, ORDERS_CONTRACT};
use sluice_core::contract_set::ContractSet;
use sluice_core::decide::{decide, decode_record, DecideContext, LineOutcome};
use sluice_core::json::Limits;
use sluice_core::raw::RawLineView;
use sluice_core::row::{coalesce, type_change, Guard, RowMeta, TypedRow};
use sluice_core::Format;
use tokio::io::AsyncBufReadExt;

/// The functions' allocator (functions/*/src/main.rs), so each stage is measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lines per iteration: enough keys for coalescing to matter, small enough for `cargo test`.
const LINES: usize = 600;
const KEY: &str = "raw/orders/dt=2026-11-24/hr=00/sample.ndjson.gz";

/// One benchmark per stage, over the same sample lines.
fn stages(c: &mut Criterion) {
    let lines = raw_lines(LINES);
    let Ok(object) = gzip_object(&lines) else {
        eprintln!("stages: the sample object could not be compressed");
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        eprintln!("stages: no tokio runtime");
        return;
    };
    let contracts =
        ContractSet::from_files([("orders.yaml".to_owned(), ORDERS_CONTRACT.to_owned())]);
    let Some(contract) = contracts.for_source("orders", Format::DdbStream).pop() else {
        eprintln!("stages: the orders contract does not check");
        return;
    };
    let limits = Limits::default();
    let cx = DecideContext {
        contracts: &contracts,
        limits: &limits,
        tombstone_expires_at: 1_798_000_000,
    };
    let refs: Vec<String> = (1..=LINES)
        .map(|n| format!("s3://bench-raw/{KEY}#L{n}"))
        .collect();
    let parsed: Vec<RawLineView<'_>> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let changes: Vec<_> = parsed
        .iter()
        .filter_map(|l| decode_record(l, &limits).ok())
        .collect();
    let rows: Vec<TypedRow> = lines
        .iter()
        .zip(&refs)
        .filter_map(|(l, r)| match decide(l, r, &cx) {
            LineOutcome::Typed { results, .. } => results.into_iter().next()?.rows.ok(),
            _ => None,
        })
        .flatten()
        .collect();
    let (winners, _) = coalesce(rows.clone());
    let store = Memory::new();
    store.put_object(KEY, object);

    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("read_object", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut n = 0usize;
                if let Ok(mut reader) = store.open("bench-raw", KEY).await {
                    let mut buf = Vec::with_capacity(2048);
                    while reader.read_until(b'\n', &mut buf).await.unwrap_or(0) > 0 {
                        n += black_box(&buf).len();
                        buf.clear();
                    }
                }
                n
            })
        })
    });
    g.bench_function("parse_raw_line", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| serde_json::from_str::<RawLineView<'_>>(black_box(l)).is_ok())
                .count()
        })
    });
    g.bench_function("decode_record", |b| {
        b.iter(|| {
            parsed
                .iter()
                .filter(|l| decode_record(black_box(l), &limits).is_ok())
                .count()
        })
    });
    g.bench_function("type_change", |b| {
        let meta = RowMeta {
            raw_ref: refs[0].clone(),
            ts_ms: 1_795_520_000_000,
            tombstone_expires_at: 1_798_000_000,
        };
        b.iter(|| {
            changes
                .iter()
                .filter(|ch| matches!(type_change(black_box(ch), &contract, &meta), Ok(Some(_))))
                .count()
        })
    });
    g.bench_function("decide", |b| {
        b.iter(|| {
            lines
                .iter()
                .zip(&refs)
                .filter(|(l, r)| matches!(decide(black_box(l), r, &cx), LineOutcome::Typed { .. }))
                .count()
        })
    });
    g.bench_function("coalesce", |b| {
        b.iter_batched(
            || rows.clone(),
            |rows| coalesce(rows).0.len(),
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(winners.len() as u64));
    g.bench_function("build_item", |b| {
        b.iter(|| {
            winners
                .iter()
                .map(|row| {
                    let item = sluice_aws::typed_tables::into_sdk(black_box(row).write_item());
                    let guard = Guard::of(row).expression("order_id");
                    let values: Vec<aws_sdk_dynamodb::types::AttributeValue> =
                        guard.values.iter().map(|(_, v)| v.clone().into()).collect();
                    item.len() + guard.condition.len() + values.len()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

/// Short runs: 20 samples over 2 s per stage, so `make bench` stays quick.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// Every stage, with [`config`]'s settings and what the command line adds.
fn benches() {
    let mut c = config().configure_from_args();
    stages(&mut c);
}

criterion_main!(benches);
