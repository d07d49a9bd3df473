//! What the row module's tests share: a contract, a change of it, and a shuffled delivery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use proptest::prelude::*;

use super::*;
use crate::change::{Change, Format, Image, Op, Route};
use crate::contract::{self, Contract};
use crate::seq::Seq;

pub(crate) const CONTRACT: &str = r#"
name: orders
version: 3
sources: [{table: orders}]
primary_key: [order_id]
unknown_fields: keep
fields:
  - {name: order_id, type: string}
  - {name: total, type: decimal, from: amounts.total}
  - {name: customer, type: string, from: customer_id, required: true}
  - {name: status, type: string, default: new}
"#;

pub(crate) fn contract() -> Contract {
    contract::parse("orders.yaml", CONTRACT).unwrap()
}

pub(crate) fn meta() -> RowMeta {
    RowMeta {
        raw_ref: "s3://b/raw/orders/x.ndjson.gz#L1".into(),
        ts_ms: 1_795_590_000_000,
        tombstone_expires_at: 1_800_000_000,
    }
}

pub(crate) fn json_image(text: &str) -> Image {
    Image::Json(serde_json::from_str(text).unwrap())
}

pub(crate) fn change(op: Op, seq: u64, after: Option<&str>, key: Option<&str>) -> Change {
    Change::new(
        Route::new(
            Format::App,
            "orders",
            op,
            Seq::decimal(&seq.to_string(), "seq").unwrap(),
            Some(1),
        ),
        key.map(json_image),
        None,
        after.map(json_image),
    )
}

/// A history delivered with some changes again (`dups`) and shuffled deterministically by
/// the sampled index.
pub(crate) fn delivery<T: Copy>(
    history: &[T],
    shuffle: prop::sample::Index,
    dups: &[prop::sample::Index],
) -> Vec<T> {
    let mut delivery = history.to_vec();
    for d in dups {
        delivery.push(history[d.index(history.len())]);
    }
    let mut seed = shuffle.index(usize::MAX / 2) | 1;
    for i in (1..delivery.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        delivery.swap(i, seed % (i + 1));
    }
    delivery
}
