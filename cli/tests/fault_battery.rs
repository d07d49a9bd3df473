//! The fault battery: `sluice local run` behind the fault-injecting proxy, on a seeded workload of
//! DynamoDB stream changes and SQS application events with poison among them, scenario by
//! scenario; then an independent checker ([`sluice_tests::checker`]) reads the sources, the typed
//! table and the dead-letter queue and counts every change as typed, stale or dead-lettered, and
//! what must never happen (lost, duplicate effects, nonmonotonic, resurrected) as 0. Once the
//! faults stop, the backlog must drain within 60 s.
//!
//! `make test` runs each scenario once, small (`SLUICE_BATTERY_CHANGES`, default 60 changes per
//! source, one seed); `make faults` runs them larger and over several seeds
//! (`SLUICE_BATTERY_SEEDS`). A failure prints its seed: `SLUICE_BATTERY_SEEDS=<seed>` runs it
//! again with the same draws.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_tests::battery::{watch, Battery};
use sluice_tests::checker::{check_with_staging, Counts};
use sluice_tests::faults::{Fault, FaultProxy, Rule};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A new pipeline with the workload of `seed` sent (`sizes`: stream changes, application
/// events), run by the `sluice` binary of this build.
async fn loaded(env: &sluice_tests::TestEnv, seed: u64, sizes: (u64, u64)) -> Battery {
    loaded_with_kinesis(env, seed, sizes, 0).await
}

async fn loaded_with_kinesis(
    env: &sluice_tests::TestEnv,
    seed: u64,
    sizes: (u64, u64),
    kinesis: u64,
) -> Battery {
    Battery::loaded_with_kinesis(
        &env.endpoint,
        Path::new(env!("CARGO_BIN_EXE_sluice")),
        Path::new(REPO),
        seed,
        sizes,
        kinesis,
    )
    .await
}

/// The longest the backlog may take to drain once the faults stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// One scenario: its faults, as rules over the pipeline's resources, and how long they last.
struct Scenario {
    name: &'static str,
    faults: fn(&Battery) -> Vec<Rule>,
    lasting: Duration,
    /// Changes through a Kinesis stream (0: no Kinesis stream).
    kinesis: u64,
}

/// What one run of a scenario found.
struct Outcome {
    counts: Counts,
    drain: Duration,
    anomalies: Vec<String>,
    /// Messages that were no change, sent and found as dead letters of their own.
    unkeyed: (usize, usize),
}

fn changes() -> u64 {
    std::env::var("SLUICE_BATTERY_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn seeds() -> Vec<u64> {
    std::env::var("SLUICE_BATTERY_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1])
}

async fn run(scenario: &Scenario, seed: u64) -> Outcome {
    let env = sluice_tests::env().await;
    let battery = loaded_with_kinesis(&env, seed, (changes(), changes()), scenario.kinesis).await;

    let proxy = FaultProxy::start_seeded(&env.endpoint, seed);
    for rule in (scenario.faults)(&battery) {
        proxy.add(rule.during(Duration::ZERO, scenario.lasting));
    }
    let faults_end = Instant::now() + scenario.lasting;
    let mut child = battery.run_until_idle(&proxy.url);
    let (history, ended, status) = watch(
        &battery,
        &mut child,
        Duration::from_millis(700),
        scenario.lasting + Duration::from_secs(240),
    )
    .await;
    assert!(
        status.success(),
        "{} (seed {seed}): the runner failed: {}",
        scenario.name,
        battery.run_log()
    );
    // The runner may end before the faults do, when nothing is left to fault.
    let drain = ended.saturating_duration_since(faults_end);
    assert_eq!(
        battery.backlog().await,
        0,
        "{} (seed {seed}): the queues are not empty",
        scenario.name
    );
    let sent = battery.sent().await;
    let letters = battery.letters().await;
    let report = check_with_staging(&sent, &history, &letters, &battery.staging().await);
    let unkeyed = letters
        .iter()
        .filter(|l| l.change.is_none())
        .map(|l| l.failure_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let injected = proxy.calls().iter().filter(|c| c.fault.is_some()).count();
    sluice_tests::battery::record(scenario.name, seed, &report.counts, Some(drain), injected);
    println!(
        "{:<28} seed {seed:<6} injected {injected:<5} {}",
        scenario.name,
        row(&report.counts, drain)
    );
    if report.counts.stranded > 0 {
        println!("    stranded by code: {:?}", report.stranded_by_code);
    }
    let mut anomalies = report.anomalies;
    if !report.counts.clean() {
        let name = format!("battery-{}-{seed}.log", scenario.name.replace(' ', "-"));
        let kept = battery.keep_run_log(&name);
        anomalies.push(format!("the runner's log: {}", kept.display()));
    }
    Outcome {
        counts: report.counts,
        drain,
        anomalies,
        unkeyed: (battery.unkeyed, unkeyed),
    }
}

/// One line of the battery's table.
fn row(c: &Counts, drain: Duration) -> String {
    format!(
        "sent {:<5} typed {:<5} stale {:<5} dead-lettered {:<4} stranded {:<3} lost {} duplicate effects {} nonmonotonic {} resurrected {} phantoms {} diverged {} unstaged {} out of order {} (of {} groups) duplicate letters {:<3} drained in {:.1} s",
        c.sent,
        c.typed,
        c.stale,
        c.dead_lettered,
        c.stranded,
        c.lost,
        c.duplicate_effects,
        c.nonmonotonic,
        c.resurrected,
        c.phantoms,
        c.diverged,
        c.unstaged,
        c.out_of_order,
        c.ordered_groups,
        c.duplicate_letters,
        drain.as_secs_f64()
    )
}

/// Runs a scenario for every seed and checks every count.
async fn battery(scenario: Scenario) {
    for seed in seeds() {
        let o = run(&scenario, seed).await;
        assert!(
            o.counts.clean(),
            "{} (seed {seed}): {:?}\n{}",
            scenario.name,
            o.counts,
            o.anomalies.join("\n")
        );
        assert_eq!(
            o.unkeyed.0, o.unkeyed.1,
            "{} (seed {seed}): messages that are no change, sent and dead-lettered",
            scenario.name
        );
        assert!(
            o.drain <= DRAIN_LIMIT,
            "{} (seed {seed}): drained in {:?}",
            scenario.name,
            o.drain
        );
        assert!(
            o.counts.typed > 0 && o.counts.dead_lettered > 0,
            "{} (seed {seed}): the workload typed rows and dead-lettered poison: {:?}",
            scenario.name,
            o.counts
        );
    }
}

/// S3 answering 10 % of requests with 503 SlowDown and 5 % with 500, and refusing every
/// connection from 2 s to 6 s.
fn s3_faults() -> Vec<Rule> {
    vec![
        Rule::new("s3", "", Fault::Refuse)
            .any_operation()
            .during(Duration::from_secs(2), Duration::from_secs(4)),
        Rule::new("s3", "", Fault::slow_down())
            .any_operation()
            .probability(0.10),
        Rule::new("s3", "", Fault::internal_error())
            .any_operation()
            .probability(0.05),
    ]
}

/// DynamoDB throttling 10 % of typed writes and reads, half as `ThrottlingException` and half
/// as `ProvisionedThroughputExceededException`.
fn throttling() -> Vec<Rule> {
    ["PutItem", "UpdateItem", "GetItem"]
        .into_iter()
        .flat_map(|op| {
            [
                Rule::new("dynamodb", op, Fault::throttling()).probability(0.05),
                Rule::new("dynamodb", op, Fault::throughput_exceeded()).probability(0.05),
            ]
        })
        .collect()
}

/// 5 % of S3 puts, typed writes and SQS sends and deletes applied with their answer lost.
fn ambiguous() -> Vec<Rule> {
    [
        ("s3", "PutObject"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "UpdateItem"),
        ("sqs", "SendMessage"),
        ("sqs", "SendMessageBatch"),
        ("sqs", "DeleteMessage"),
        ("sqs", "DeleteMessageBatch"),
    ]
    .into_iter()
    .map(|(service, op)| Rule::new(service, op, Fault::Ambiguous).probability(0.05))
    .collect()
}

/// A share of the sends to the dead-letter queue failing with `ServiceUnavailable`.
fn dead_letter_sends(b: &Battery, share: f64) -> Vec<Rule> {
    let dlq = format!("{}-dlq", b.prefix);
    ["SendMessage", "SendMessageBatch"]
        .into_iter()
        .map(|op| {
            Rule::new("sqs", op, Fault::service_unavailable())
                .body(dlq.clone())
                .probability(share)
        })
        .collect()
}

/// GIVEN S3 answering 10 % of requests with 503 SlowDown and 5 % with 500, and refusing every
/// connection for 4 s, for 12 s in all
/// WHEN the pipeline runs through it
/// THEN every change is typed, stale or dead-lettered (poison only), nothing else happens, and
/// the backlog drains within 60 s of the faults' end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_and_an_outage() {
    battery(Scenario {
        name: "s3 errors + outage",
        faults: |_| s3_faults(),
        lasting: Duration::from_secs(12),
        kinesis: 0,
    })
    .await;
}

/// GIVEN DynamoDB throttling 10 % of typed writes and reads, half as `ThrottlingException` and
/// half as `ProvisionedThroughputExceededException`, for 12 s
/// THEN the same holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling() {
    battery(Scenario {
        name: "dynamodb throttling",
        faults: |_| throttling(),
        lasting: Duration::from_secs(12),
        kinesis: 0,
    })
    .await;
}

/// GIVEN 5 % of S3 puts, typed writes and SQS sends and deletes applied with their answer lost,
/// for 12 s
/// THEN the same holds: a write tried again is idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_writes() {
    battery(Scenario {
        name: "ambiguous writes",
        faults: |_| ambiguous(),
        lasting: Duration::from_secs(12),
        kinesis: 0,
    })
    .await;
}

/// GIVEN 40 % of the sends to the dead-letter queue failing with `ServiceUnavailable`, for 12 s
/// THEN the same holds, and each failure is on the queue (counted once by its id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_send_failures() {
    battery(Scenario {
        name: "dlq send failures 40%",
        faults: |b| dead_letter_sends(b, 0.40),
        lasting: Duration::from_secs(12),
        kinesis: 0,
    })
    .await;
}

/// Every fault at once, dead-letter sends failing at 20 %.
fn everything(b: &Battery) -> Vec<Rule> {
    // The dead-letter rules first: the first matching rule applies.
    let mut rules = dead_letter_sends(b, 0.20);
    rules.extend(s3_faults());
    rules.extend(throttling());
    rules.extend(ambiguous());
    rules
}

/// GIVEN every fault above at once (dead-letter sends failing at 20 %), for 15 s
/// THEN the same holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_at_once() {
    battery(Scenario {
        name: "everything at once",
        faults: everything,
        lasting: Duration::from_secs(15),
        kinesis: 0,
    })
    .await;
}

/// GIVEN DynamoDB changes through a Kinesis stream (`sluice local run` polling it as Lambda's
/// Kinesis mapping does), besides the usual workload, and every fault above at once for 15 s
/// THEN the same holds, and every item's changes land in raw staging in their order.
///
/// No shard split: the emulator's SplitShard keeps routing new records to the closed parent
/// (and puts the parent's records back into it), which AWS never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_stream_under_faults() {
    battery(Scenario {
        name: "kinesis stream",
        faults: everything,
        lasting: Duration::from_secs(15),
        kinesis: changes(),
    })
    .await;
}

/// GIVEN S3 refusing every connection for 25 s: longer than the ingest queue's five receives and
/// the stream mapping's ten attempts ride out
/// WHEN the pipeline runs through it
/// THEN valid changes end on the dead-letter queue (moved by the queue's redrive policy, or in a
/// stream batch given up): the checker counts them stranded, none lost, and `sluice audit` fails
/// naming them unprocessed;
/// AND once `sluice dlq redrive` sends them back and the pipeline runs again, each is typed or
/// stale, nothing is stranded, and the audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retries_strands_changes_until_they_are_redriven() {
    let seed = seeds()[0];
    let env = sluice_tests::env().await;
    let battery = loaded(&env, seed, (changes(), changes())).await;
    let (mut history, faults) = battery
        .run_through_s3_outage(seed, Duration::from_secs(25), 20)
        .await;
    let sent = battery.sent().await;
    let before = battery.letters().await;
    let stranded = check_with_staging(&sent, &history, &before, &battery.staging().await);
    println!(
        "{:<28} seed {seed:<6} before the redrive: {}",
        "outage past the retries",
        row(&stranded.counts, Duration::ZERO)
    );
    println!("    stranded by code: {:?}", stranded.stranded_by_code);
    assert!(
        stranded.counts.clean(),
        "seed {seed}: {:?}\n{}",
        stranded.counts,
        stranded.anomalies.join("\n")
    );
    assert!(
        stranded.counts.stranded > 0,
        "seed {seed}: {:?}",
        stranded.counts
    );
    let audit = battery.command(&env.endpoint, &["audit"]).output().unwrap();
    let said = String::from_utf8_lossy(&audit.stdout).to_string()
        + &String::from_utf8_lossy(&audit.stderr);
    assert_eq!(audit.status.code(), Some(1), "seed {seed}: {said}");
    assert!(said.contains("unprocessed"), "seed {seed}: {said}");

    let redrive = battery
        .command(&env.endpoint, &["dlq", "redrive"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&redrive.stdout).to_string()
        + &String::from_utf8_lossy(&redrive.stderr);
    println!("{said}");
    assert!(
        matches!(redrive.status.code(), Some(0 | 1)),
        "seed {seed}: {said}"
    );
    history.extend(battery.drain().await);
    // What the redrive sent back lands after changes its source gave later: by design, so its
    // group is not held to the order.
    let mut staging = battery.staging().await;
    staging.reordered = before.iter().filter_map(|l| l.change.clone()).collect();
    let report = check_with_staging(&sent, &history, &battery.letters().await, &staging);
    println!(
        "{:<28} seed {seed:<6} after the redrive:  {}",
        "outage past the retries",
        row(&report.counts, Duration::ZERO)
    );
    sluice_tests::battery::record(
        "outage past the retries, redriven",
        seed,
        &report.counts,
        None,
        faults,
    );
    assert!(
        report.counts.clean(),
        "seed {seed}: {:?}\n{}",
        report.counts,
        report.anomalies.join("\n")
    );
    assert_eq!(
        report.counts.stranded, 0,
        "seed {seed}: still stranded after the redrive: {:?}",
        report.stranded_by_code
    );
    let audit = battery.command(&env.endpoint, &["audit"]).output().unwrap();
    assert!(
        audit.status.success(),
        "seed {seed}: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
}

/// GIVEN a clean run of the pipeline, fault-free
/// WHEN its stored state is then mutated: a typed row deleted, a dead letter of a typed change
/// put on the queue, a tombstone made alive again, and a raw object deleted
/// THEN the checker reports exactly one lost change, one duplicate effect, one resurrection,
/// and the raw object's changes as unstaged: it catches what it claims to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_lost_change_a_duplicate_effect_and_a_resurrection() {
    use aws_sdk_dynamodb::types::AttributeValue as A;

    let env = sluice_tests::env().await;
    let battery = loaded(&env, 7, (40, 40)).await;
    let mut child = battery.run_until_idle(&env.endpoint);
    let (history, _, status) = watch(
        &battery,
        &mut child,
        Duration::from_secs(1),
        Duration::from_secs(120),
    )
    .await;
    assert!(status.success());
    let sent = battery.sent().await;
    let staging = battery.staging().await;
    let clean = check_with_staging(&sent, &history, &battery.letters().await, &staging);
    assert!(clean.counts.clean(), "{:?}", clean.anomalies);
    assert!(clean.counts.ordered_groups > 4, "{:?}", clean.counts);

    let table = format!("{}-items", battery.prefix);
    let last = history.last().unwrap();
    let alive: Vec<&(String, String)> = last
        .iter()
        .filter(|(_, r)| !r.deleted)
        .map(|(k, _)| k)
        .collect();
    let tombstone = last
        .iter()
        .find(|(_, r)| r.deleted)
        .map(|(k, r)| (k.clone(), r.clone()))
        .expect("the workload deletes a key");
    // Lost: a typed row disappears.
    let (_, gone) = alive[0];
    env.ddb
        .delete_item()
        .table_name(&table)
        .key("pk", A::S(gone.clone()))
        .send()
        .await
        .unwrap();
    // Duplicate effect: a typed change is also on the dead-letter queue.
    let (_, twice) = alive[1];
    let row = &last[alive[1]];
    let digits = row.seq.trim_start_matches('0');
    let original = if twice.starts_with("s-") || twice.starts_with("f-") {
        serde_json::json!({"table": battery.source, "op": "update", "key": {"pk": twice}, "seq": digits.parse::<u64>().unwrap()})
    } else {
        serde_json::json!({"dynamodb": {"Keys": {"pk": {"S": twice}}, "SequenceNumber": digits}})
    };
    let dlq = sluice_local::provision::queue_url(&env.sqs, &format!("{}-dlq", battery.prefix))
        .await
        .unwrap();
    env.sqs
        .send_message()
        .queue_url(&dlq)
        .message_body(
            serde_json::json!({"failure_id": "mutation", "error_code": "injected", "original": original.to_string()})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    // Resurrection: the tombstone is alive again at its own seq.
    env.ddb
        .put_item()
        .table_name(&table)
        .item("pk", A::S(tombstone.0 .1.clone()))
        .item("_seq", A::S(tombstone.1.seq.clone()))
        .item("value", A::N("1".into()))
        .item("label", A::S("back".into()))
        .send()
        .await
        .unwrap();

    // Unstaged: a raw object disappears.
    let victim = staging.landings[0].1.object.clone();
    env.s3
        .delete_object()
        .bucket(format!("{}-raw", battery.prefix))
        .key(&victim)
        .send()
        .await
        .unwrap();

    let mut after = history.clone();
    after.push(battery.snapshot().await);
    let letters = battery.letters().await;
    let r = check_with_staging(&sent, &after, &letters, &battery.staging().await);
    // The changes only that object held, and no dead letter holds.
    let only_there: std::collections::BTreeSet<_> = staging
        .landings
        .iter()
        .filter(|(id, _)| {
            staging
                .landings
                .iter()
                .filter(|(other, _)| other == id)
                .all(|(_, at)| at.object == victim)
                && !letters.iter().any(|l| l.change.as_ref() == Some(id))
                && sent
                    .iter()
                    .any(|s| (&s.table, &s.key, &s.seq) == (&id.0, &id.1, &id.2))
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!only_there.is_empty());
    assert_eq!(
        r.counts.unstaged,
        only_there.len(),
        "{:?}\n{}",
        r.counts,
        r.anomalies.join("\n")
    );
    // Every change of the key whose row is gone is lost (its poison is still dead-lettered).
    let of_gone = sent
        .iter()
        .filter(|s| s.key == *gone && s.effect != sluice_tests::checker::Effect::Poison)
        .count();
    assert!(of_gone >= 1);
    assert_eq!(
        r.counts.lost,
        of_gone,
        "{:?}\n{}",
        r.counts,
        r.anomalies.join("\n")
    );
    assert_eq!(r.counts.duplicate_effects, 1, "{:?}", r.counts);
    // Alive at the tombstone's seq: resurrected, and the delete's row is not what it sent.
    assert!(r.counts.resurrected >= 1, "{:?}", r.counts);
    assert_eq!(
        (r.counts.diverged, r.counts.phantoms),
        (1, 0),
        "{:?}",
        r.counts
    );
    assert!(
        r.anomalies.iter().any(|a| a.contains(gone.as_str()))
            && r.anomalies.iter().any(|a| a.contains(twice.as_str()))
            && r.anomalies
                .iter()
                .any(|a| a.contains(tombstone.0 .1.as_str())),
        "{}",
        r.anomalies.join("\n")
    );
}
