//! Raw lines of the shape `bench/peers/gen_raw.py` writes, built in Rust so the per-stage
//! micro-benchmarks need no generated file: DynamoDB Streams records of table `orders`
//! (NEW_IMAGE view), about 70 % inserts, 25 % updates and 5 % deletes over `n / 3` keys, and one
//! line in 200 with an amount the orders contract must refuse. Deterministic.

/// The orders contract every peer implements (`bench/peers/contract-orders.yaml`).
pub const ORDERS_CONTRACT: &str = include_str!("../peers/contract-orders.yaml");

const ARN: &str =
    "arn:aws:dynamodb:eu-central-1:123456789012:table/orders/stream/2026-11-24T00:00:00.000";
const NAMES: [&str; 6] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Barbara Liskov",
    "Edsger Dijkstra",
    "Frances Allen",
];
const TIERS: [&str; 3] = ["bronze", "silver", "gold"];
const OFFSETS: [&str; 4] = ["Z", "+01:00", "-05:00", "+05:30"];
const BAD: [&str; 3] = ["n/a", "12,50", ""];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` raw lines (without their newlines).
pub fn raw_lines(n: usize) -> Vec<String> {
    let mut rng = Rng(42);
    let keys = (n / 3).max(1) as u64;
    (0..n)
        .map(|i| {
            let k = rng.below(keys);
            let roll = rng.below(100);
            let (event, op) = match roll {
                0..=69 => ("INSERT", "insert"),
                70..=94 => ("MODIFY", "update"),
                _ => ("REMOVE", "delete"),
            };
            let seq = 400_000_000_000_000_000_000u128 + i as u128 * 100 + u128::from(rng.below(100));
            let t = 1_795_520_000 + (i / 100) as u64;
            let key = format!(r#"{{"order_id":{{"S":"o-{k:08}"}}}}"#);
            let image = if event == "REMOVE" {
                String::new()
            } else {
                let amount = if i % 200 == 199 {
                    BAD[(i / 200) % 3].to_owned()
                } else {
                    format!("{}.{:02}", 1 + rng.below(1_000_000), rng.below(100))
                };
                let cid = k % 4999;
                let idx = |n: usize| usize::try_from(cid).unwrap_or(0) % n;
                let offset = OFFSETS[usize::try_from(rng.below(4)).unwrap_or(0)];
                format!(
                    concat!(
                        r#","NewImage":{{"order_id":{{"S":"o-{k:08}"}},"amount":{{"N":"{amount}"}},"#,
                        r#""qty":{{"N":"{qty}"}},"paid":{{"BOOL":{paid}}},"#,
                        r#""created_at":{{"S":"2026-11-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}{offset}"}},"#,
                        r#""customer":{{"M":{{"id":{{"S":"c-{cid:06}"}},"name":{{"S":"{name}"}},"#,
                        r#""tier":{{"S":"{tier}"}},"since":{{"N":"{since}"}}}}}},"#,
                        r#""tags":{{"SS":["gift","express"]}},"status":{{"S":"paid"}}}}"#
                    ),
                    k = k,
                    amount = amount,
                    qty = 1 + rng.below(50),
                    paid = rng.below(2) == 0,
                    day = 1 + rng.below(28),
                    h = rng.below(24),
                    m = rng.below(60),
                    s = rng.below(60),
                    ms = rng.below(1000),
                    offset = offset,
                    cid = cid,
                    name = NAMES[idx(NAMES.len())],
                    tier = TIERS[idx(TIERS.len())],
                    since = 2015 + cid % 11,
                )
            };
            let id = format!("{:016x}{:016x}", rng.next(), rng.next());
            let record = format!(
                r#"{{"eventID":"{id}","eventName":"{event}","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"eu-central-1","dynamodb":{{"ApproximateCreationDateTime":{t},"Keys":{key}{image},"SequenceNumber":"{seq}","SizeBytes":180,"StreamViewType":"NEW_IMAGE"}},"eventSourceARN":"{ARN}"}}"#
            );
            format!(
                r#"{{"v":1,"format":"ddb-stream","table":"orders","op":"{op}","seq":"{seq:0>40}","ts_ms":{ts},"ts_source":"source","ingested_ms":{ingested},"origin":{{"kind":"ddb","arn":"{ARN}","id":"{id}"}},"record":{record}}}"#,
                ts = t * 1000,
                ingested = t * 1000 + 50 + rng.below(850),
            )
        })
        .collect()
}

/// The lines as one gzip NDJSON object, as raw staging holds them.
pub fn gzip_object(lines: &[String]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    for line in lines {
        gz.write_all(line.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

#[cfg(test)]
mod tests {
    use sluice_core::contract_set::ContractSet;
    use sluice_core::decide::{decide, DecideContext, LineOutcome};
    use sluice_core::json::Limits;

    use super::*;

    #[test]
    fn the_lines_are_decided_as_the_generators_are() {
        let lines = raw_lines(400);
        let set = ContractSet::from_files([("orders.yaml".to_owned(), ORDERS_CONTRACT.to_owned())]);
        assert_eq!(set.all().len(), 1, "the contract checks");
        let cx = DecideContext {
            contracts: &set,
            limits: &Limits::default(),
            tombstone_expires_at: 1,
        };
        let (mut rows, mut tombstones, mut refused) = (0, 0, 0);
        for (i, line) in lines.iter().enumerate() {
            let LineOutcome::Typed { results, .. } = decide(line, &format!("s3://b/k#L{i}"), &cx)
            else {
                panic!("line {i} not typed: {line}");
            };
            match &results[0].rows {
                Ok(r) if r[0].is_tombstone() => tombstones += 1,
                Ok(_) => rows += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(
            (1..=2).contains(&refused),
            "one line in 200 has a bad amount: {refused}"
        );
        assert!(
            tombstones > 0 && rows > 300,
            "{rows} rows, {tombstones} tombstones"
        );
        assert!(gzip_object(&lines).unwrap().len() < lines.iter().map(String::len).sum());
    }
}
