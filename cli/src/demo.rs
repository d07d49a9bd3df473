//! `sluice demo`: a realistic workload through the whole local pipeline, then a summary and an
//! audit.
//!
//! Orders change in a DynamoDB table (`orders`, read through its stream); customers change
//! through application events and Debezium envelopes on the ingest queue. A share of the changes
//! is bad on purpose: unreadable bodies, missing ordering tokens, values of the wrong type,
//! missing required fields and tables without a contract. Every one of them must end as a dead
//! letter, and every other change as a typed row.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as A, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sluice_aws::clients::{sqs_client, SdkConfig};
use sluice_local::mappings::Backoff;
use sluice_pipeline::dlq::DlqSnapshot;

use crate::error::Outcome;
use crate::local::{self, LocalOpts};
use crate::output::{self, Output};
use crate::pipeline;

/// The DynamoDB source table of the demo; the `orders` contract reads it.
pub const ORDERS_TABLE: &str = "orders";

/// Arguments of `sluice demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    local: LocalOpts,
    /// Changes to make in all.
    #[arg(long, default_value_t = 3000)]
    count: u64,
    /// Changes per second at most (0: as fast as the endpoint takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop making changes after this many seconds, even before `--count`.
    #[arg(long)]
    duration: Option<u64>,
    /// The share of changes that are bad on purpose.
    #[arg(long, default_value_t = 0.02)]
    bad_ratio: f64,
    /// Only provision and make the changes; do not run the pipeline or the audit.
    #[arg(long)]
    no_run: bool,
    /// Keep what a previous demo left instead of starting clean.
    #[arg(long)]
    keep: bool,
    /// Seed of the workload's random choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// A small deterministic random source (xorshift), so a seed replays the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the workload made.
#[derive(Debug, Default)]
struct Made {
    ddb: u64,
    sqs: u64,
    bad: u64,
}

struct Workload {
    rng: Rng,
    bad_ratio: f64,
    orders: Vec<u64>,
    next_order: u64,
    app_customers: HashMap<u64, u64>,
    dbz_customers: Vec<u64>,
    next_customer: u64,
    lsn: u64,
}

const STATUSES: [&str; 4] = ["new", "paid", "shipped", "delivered"];

impl Workload {
    fn order_item(&mut self, id: u64, version: u64, bad: bool) -> HashMap<String, A> {
        let total = format!("{}.{:02}", 10 + self.rng.below(990), self.rng.below(100));
        let mut item = HashMap::from([
            ("order_id".to_owned(), A::S(format!("o-{id:06}"))),
            (
                "status".to_owned(),
                A::S(STATUSES[(version as usize).min(3)].to_owned()),
            ),
            ("total".to_owned(), A::N(total)),
            ("currency".to_owned(), A::S("EUR".into())),
            (
                "items".to_owned(),
                A::L(vec![A::M(HashMap::from([
                    (
                        "sku".to_owned(),
                        A::S(format!("sku-{}", self.rng.below(50))),
                    ),
                    ("qty".to_owned(), A::N((1 + self.rng.below(4)).to_string())),
                ]))]),
            ),
            (
                "tags".to_owned(),
                A::Ss(vec!["web".into(), format!("v{version}")]),
            ),
            (
                "created_at".to_owned(),
                A::S(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ),
            ("paid".to_owned(), A::Bool(version >= 1)),
            ("coupon".to_owned(), A::S(format!("C{}", self.rng.below(9)))),
        ]);
        if !bad {
            item.insert(
                "customer_id".into(),
                A::S(format!("c-{}", self.rng.below(500))),
            );
        }
        item
    }

    /// One SQS body for customers, or a poison one.
    fn customer_body(&mut self, bad: bool) -> String {
        if bad {
            return match self.rng.below(5) {
                0 => "customer 17 changed their e-mail".to_owned(),
                1 => serde_json::json!({"table": "customers", "op": "insert", "key": {"id": 1}, "after": {"id": 1, "email": "x@example.com"}}).to_string(),
                2 => serde_json::json!({"table": "customers", "op": "insert", "key": {"id": 900_000}, "after": {"id": 900_000, "email": 12345}, "seq": 1}).to_string(),
                3 => serde_json::json!({"table": "customers", "op": "insert", "key": {"id": 900_001}, "after": {"id": 900_001, "first_name": "NoMail"}, "seq": 1}).to_string(),
                _ => serde_json::json!({"table": "invoices", "op": "insert", "key": {"id": 1}, "after": {"id": 1}, "seq": 1}).to_string(),
            };
        }
        if self.rng.chance(0.6) {
            // Application events: ids below 100000, a per-key version as seq.
            let id = if self.app_customers.is_empty() || self.rng.chance(0.3) {
                self.next_customer += 1;
                self.next_customer
            } else {
                let keys: Vec<u64> = self.app_customers.keys().copied().collect();
                keys[self.rng.below(keys.len() as u64) as usize]
            };
            let seq = self.app_customers.entry(id).or_insert(0);
            *seq += 1;
            let op = if *seq == 1 { "insert" } else { "update" };
            serde_json::json!({
                "table": "customers", "op": op, "key": {"id": id}, "seq": *seq,
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "after": {"id": id, "first_name": format!("First{id}"), "last_name": "Example", "email": format!("c{id}-{seq}@example.com"),
                          "signed_up": chrono::Utc::now().timestamp_millis()},
                "source": "accounts-service"
            })
            .to_string()
        } else {
            // Debezium from Postgres: ids from 100000, ordered by the LSN.
            let (id, op) = if self.dbz_customers.is_empty() || self.rng.chance(0.3) {
                let id = 100_000 + self.dbz_customers.len() as u64;
                self.dbz_customers.push(id);
                (id, "c")
            } else {
                (
                    self.dbz_customers[self.rng.below(self.dbz_customers.len() as u64) as usize],
                    "u",
                )
            };
            self.lsn += 8 + self.rng.below(64);
            let now = chrono::Utc::now().timestamp_millis();
            serde_json::json!({
                "schema": {"type": "struct", "optional": false, "name": "pg.public.customers.Envelope", "fields": []},
                "payload": {
                    "before": null,
                    "after": {"id": id, "first_name": format!("Pg{id}"), "last_name": "Replica", "email": format!("pg{id}-{}@example.com", self.lsn)},
                    "source": {"version": "2.7.0.Final", "connector": "postgresql", "name": "pg", "ts_ms": now, "snapshot": "false",
                               "db": "shop", "schema": "public", "table": "customers", "txId": self.lsn / 8, "lsn": self.lsn},
                    "op": op, "ts_ms": now
                }
            })
            .to_string()
        }
    }
}

impl DemoArgs {
    /// Runs the demo; exit 1 when its audit is not clean.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let sdk = self.local.aws.sdk_config().await?;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        if !self.keep {
            local::down(&sdk, &self.local, &[ORDERS_TABLE.to_owned()])
                .await
                .context("could not remove the previous demo's pipeline")?;
        }
        ensure_orders_table(&ddb).await?;
        let p = local::up(
            &sdk,
            &self.local,
            &local::Sources {
                tables: vec![ORDERS_TABLE.to_owned()],
                ..Default::default()
            },
            false,
        )
        .await?;
        eprintln!(
            "Pipeline {:?} is up: raw bucket s3://{}, typed tables {}orders and {}customers.",
            p.prefix, p.names.raw_bucket, p.names.typed_table_prefix, p.names.typed_table_prefix
        );

        let started = Instant::now();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runner = if self.no_run {
            None
        } else {
            let (sdk, p) = (sdk.clone(), p.clone());
            Some(tokio::spawn(async move {
                pipeline::run(&sdk, &p, false, stop_rx, demo_backoff(), None, None).await
            }))
        };
        let made = self.generate(&sdk, &ddb, &p.ingest_url).await?;
        let generated_in = started.elapsed();
        let Some(runner) = runner else {
            eprintln!("Made {} changes ({} in DynamoDB, {} over SQS, {} bad) in {:.1} s; run `sluice local run --until-idle` next.", made.ddb + made.sqs, made.ddb, made.sqs, made.bad, generated_in.as_secs_f64());
            return Ok(Outcome::Ok);
        };
        // The changes are made; now drain what is left and stop.
        let spinner = output::stderr_is_terminal().then(|| {
            let s = ProgressBar::new_spinner().with_message("draining the pipeline");
            s.enable_steady_tick(Duration::from_millis(120));
            s
        });
        let _ = stop_tx.send(true);
        let (_, mut totals) = runner.await.context("the pipeline task failed")??;
        let (_, rest) = pipeline::run(
            &sdk,
            &p,
            true,
            tokio::sync::watch::channel(false).1,
            demo_backoff(),
            None,
            None,
        )
        .await?;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        let elapsed = started.elapsed();
        for (k, v) in rest.sums {
            *totals.sums.entry(k).or_default() += v;
        }
        totals.latencies.extend(rest.latencies);

        let by_class = dead_letters_by_class(&sqs_client(&sdk), &p.dlq_url).await?;
        let summary = Summary::new(&made, &totals, by_class, elapsed);
        let report = crate::audit::run_audit(&sdk, &p, &[]).await?;
        if out.json() {
            let mut v = serde_json::to_value(&summary)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("audit".into(), crate::audit::to_json(&report));
            }
            output::print_json(&v)?;
        } else {
            summary.print();
            crate::audit::show(&report, out)?;
        }
        Ok(if report.is_clean() {
            Outcome::Ok
        } else {
            Outcome::Found
        })
    }

    async fn generate(
        &self,
        sdk: &SdkConfig,
        ddb: &aws_sdk_dynamodb::Client,
        ingest_url: &str,
    ) -> anyhow::Result<Made> {
        let sqs = sqs_client(sdk);
        let mut w = Workload {
            rng: Rng(self.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            bad_ratio: self.bad_ratio.clamp(0.0, 1.0),
            orders: Vec::new(),
            next_order: 0,
            app_customers: HashMap::new(),
            dbz_customers: Vec::new(),
            next_customer: 0,
            lsn: 24_000_000,
        };
        let mut versions: HashMap<u64, u64> = HashMap::new();
        let bar = ProgressBar::new(self.count);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} changes [{bar:30}] {pos}/{len} ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let mut made = Made::default();
        let mut pending_sqs: Vec<String> = Vec::new();
        for i in 0..self.count {
            if self
                .duration
                .is_some_and(|d| started.elapsed() >= Duration::from_secs(d))
            {
                break;
            }
            if self.rate > 0 {
                let due = Duration::from_secs_f64(i as f64 / self.rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let bad = w.rng.chance(w.bad_ratio);
            if w.rng.chance(0.55) {
                // An order change in DynamoDB.
                let roll = w.rng.below(100);
                if w.orders.is_empty() || roll < 40 || bad {
                    w.next_order += 1;
                    let id = w.next_order;
                    let item = w.order_item(id, 0, bad);
                    ddb.put_item()
                        .table_name(ORDERS_TABLE)
                        .set_item(Some(item))
                        .send()
                        .await
                        .context("could not write to the orders table")?;
                    if !bad {
                        w.orders.push(id);
                        versions.insert(id, 0);
                    }
                } else if roll < 88 {
                    let id = w.orders[w.rng.below(w.orders.len() as u64) as usize];
                    let v = versions.entry(id).or_insert(0);
                    *v += 1;
                    let v = *v;
                    let item = w.order_item(id, v, false);
                    ddb.put_item()
                        .table_name(ORDERS_TABLE)
                        .set_item(Some(item))
                        .send()
                        .await
                        .context("could not write to the orders table")?;
                } else {
                    let idx = w.rng.below(w.orders.len() as u64) as usize;
                    let id = w.orders.swap_remove(idx);
                    ddb.delete_item()
                        .table_name(ORDERS_TABLE)
                        .key("order_id", A::S(format!("o-{id:06}")))
                        .send()
                        .await
                        .context("could not delete from the orders table")?;
                }
                made.ddb += 1;
            } else {
                pending_sqs.push(w.customer_body(bad));
                made.sqs += 1;
                if pending_sqs.len() == 10 {
                    send_batch(&sqs, ingest_url, &mut pending_sqs).await?;
                }
            }
            if bad {
                made.bad += 1;
            }
            bar.inc(1);
        }
        send_batch(&sqs, ingest_url, &mut pending_sqs).await?;
        bar.finish_and_clear();
        Ok(made)
    }
}

async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    bodies: &mut Vec<String>,
) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    if bodies.is_empty() {
        return Ok(());
    }
    let entries: Vec<SendMessageBatchRequestEntry> = bodies
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b)
                .build()
                .ok()
        })
        .collect();
    let out = sqs
        .send_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await
        .context("could not send to the ingest queue")?;
    if !out.failed().is_empty() {
        anyhow::bail!("the ingest queue refused {} message(s)", out.failed().len());
    }
    bodies.clear();
    Ok(())
}

async fn ensure_orders_table(ddb: &aws_sdk_dynamodb::Client) -> anyhow::Result<()> {
    if ddb
        .describe_table()
        .table_name(ORDERS_TABLE)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    ddb.create_table()
        .table_name(ORDERS_TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("order_id")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("order_id")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        )
        .send()
        .await
        .context("could not create the orders source table")?;
    Ok(())
}

/// The demo's retries: quick first tries, and still over a minute of outage ridden
/// out before a queue's redrive policy moves a message.
fn demo_backoff() -> Backoff {
    Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    }
}

/// Dead letters on the DLQ by error class, each `failure_id` once. Changes moved there without
/// an envelope are not dead letters: the audit that follows reports them as unprocessed.
pub async fn dead_letters_by_class(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let dlq = DlqSnapshot::read(sqs, dlq_url, sluice_pipeline::dlq::READ_BUDGET).await?;
    let mut by_class = BTreeMap::new();
    for env in dlq.envelopes() {
        *by_class
            .entry(env.error_class.as_str().to_owned())
            .or_default() += 1;
    }
    Ok(by_class)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// What the demo did, for people and for `--output json`.
#[derive(Debug, Serialize)]
struct Summary {
    changes: Changes,
    elapsed_secs: f64,
    raw_objects: RawObjects,
    row_writes: RowWrites,
    dead_letters: BTreeMap<String, usize>,
    throughput_per_sec: f64,
    latency_ms: Latency,
}

#[derive(Debug, Serialize)]
struct Changes {
    total: u64,
    ddb: u64,
    sqs: u64,
    bad: u64,
}

#[derive(Debug, Serialize)]
struct RawObjects {
    objects: f64,
    bytes: f64,
    records_landed: f64,
}

#[derive(Debug, Serialize)]
struct RowWrites {
    applied: f64,
    already_written: f64,
    stale: f64,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    samples: usize,
}

impl Summary {
    fn new(
        made: &Made,
        totals: &pipeline::Totals,
        dead_letters: BTreeMap<String, usize>,
        elapsed: Duration,
    ) -> Self {
        let total = made.ddb + made.sqs;
        let mut lat = totals.latencies.clone();
        lat.sort_by(f64::total_cmp);
        Self {
            changes: Changes {
                total,
                ddb: made.ddb,
                sqs: made.sqs,
                bad: made.bad,
            },
            elapsed_secs: elapsed.as_secs_f64(),
            raw_objects: RawObjects {
                objects: totals.sum("ingest", "ObjectsWritten"),
                bytes: totals.sum("ingest", "BytesWritten"),
                records_landed: totals.sum("ingest", "RecordsLanded"),
            },
            row_writes: RowWrites {
                applied: totals.sum("transform", "RowsWritten"),
                already_written: totals.sum("transform", "RowsAlreadyWritten"),
                stale: totals.sum("transform", "RowsStale"),
            },
            dead_letters,
            throughput_per_sec: total as f64 / elapsed.as_secs_f64().max(0.001),
            latency_ms: Latency {
                p50: percentile(&lat, 0.5),
                p99: percentile(&lat, 0.99),
                samples: lat.len(),
            },
        }
    }

    fn print(&self) {
        let c = &self.changes;
        let letters: usize = self.dead_letters.values().sum();
        let classes: Vec<String> = self
            .dead_letters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        outln!(
            "sluice demo: {} changes through the pipeline in {:.1} s",
            c.total,
            self.elapsed_secs
        );
        outln!(
            "  changes in       {} ({} in DynamoDB, {} over SQS; {} bad on purpose)",
            c.total,
            c.ddb,
            c.sqs,
            c.bad
        );
        outln!(
            "  raw objects      {} ({:.1} KiB gzip, {} records landed)",
            self.raw_objects.objects,
            self.raw_objects.bytes / 1024.0,
            self.raw_objects.records_landed
        );
        let again = if self.row_writes.already_written > 0.0 {
            format!(
                ", {} found already written",
                self.row_writes.already_written
            )
        } else {
            String::new()
        };
        outln!(
            "  row writes       {} applied, {} skipped as stale{again} (one write per key per raw object)",
            self.row_writes.applied, self.row_writes.stale
        );
        outln!(
            "  dead letters     {letters}{}{}",
            if classes.is_empty() { "" } else { ": " },
            classes.join(", ")
        );
        outln!(
            "  throughput       {:.0} changes/s",
            self.throughput_per_sec
        );
        outln!(
            "  latency (e2e)    p50 {:.0} ms, p99 {:.0} ms ({} samples)",
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.samples
        );
        outln!("The audit below counts raw lines, each once, where the summary counts writes:");
    }
}
