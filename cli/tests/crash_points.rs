//! Crashes at every fail point of the handlers ([`sluice_pipeline::failpoint`]), in the manner of
//! Kafka Connect's `test_bounce`: `sluice local run` aborts at a fail point, three rounds in a row,
//! then runs to the end; the independent checker must find every change typed, stale or
//! dead-lettered, and nothing lost, duplicated or resurrected.
//!
//! Built only with the `failpoints` feature (`make test` runs
//! `cargo test -p sluice-cli --features failpoints --test crash_points`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use sluice_tests::battery::{watch, Battery};
use sluice_tests::checker::check;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A new pipeline with the workload of `seed` sent (`sizes`: stream changes, application
/// events), run by the `sluice` binary of this build.
async fn loaded(env: &sluice_tests::TestEnv, seed: u64, sizes: (u64, u64)) -> Battery {
    Battery::loaded(
        &env.endpoint,
        Path::new(env!("CARGO_BIN_EXE_sluice")),
        Path::new(REPO),
        seed,
        sizes,
    )
    .await
}

/// The pass of the fail point each round aborts at: past the first in the first round, so some
/// work is done before it; at the first in the others, so each round crashes (what the crash
/// left in flight comes back to the next round once its visibility timeout ends).
const ROUNDS: [u32; 3] = [2, 1, 1];

async fn bounce(point: &'static str) {
    assert!(sluice_pipeline::failpoint::POINTS.contains(&point));
    let env = sluice_tests::env().await;
    let battery = loaded(&env, 11, (45, 45)).await;

    let mut crashed = 0;
    for pass in ROUNDS {
        let out = battery
            .command(&env.endpoint, &["local", "run", "--until-idle"])
            .env("SLUICE_FAILPOINT", format!("{point}:{pass}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert!(
                stderr.contains(&format!("fail point {point}: aborting")),
                "{point}: the run failed for another reason: {stderr}"
            );
            crashed += 1;
        }
    }
    assert_eq!(crashed, ROUNDS.len(), "{point}: every round crashes there");

    let mut child = battery.run_until_idle(&env.endpoint);
    let (history, _, status) = watch(
        &battery,
        &mut child,
        Duration::from_secs(1),
        Duration::from_secs(180),
    )
    .await;
    assert!(status.success(), "{point}: the last run failed");
    assert_eq!(
        battery.backlog().await,
        0,
        "{point}: the queues are not empty"
    );
    let letters = battery.letters().await;
    let report = check(&battery.sent().await, &history, &letters);
    sluice_tests::battery::record(
        &format!("crash at {point}"),
        11,
        &report.counts,
        None,
        crashed,
    );
    println!(
        "{point:<28} crashed {crashed} of {} rounds: {:?}",
        ROUNDS.len(),
        report.counts
    );
    assert!(
        report.counts.clean(),
        "{point}: {:?}\n{}",
        report.counts,
        report.anomalies.join("\n")
    );
    assert_eq!(
        report.counts.stranded, 0,
        "{point}: valid changes left on the dead-letter queue: {:?}",
        report.stranded_by_code
    );
    let unkeyed: BTreeSet<&str> = letters
        .iter()
        .filter(|l| l.change.is_none())
        .map(|l| l.failure_id.as_str())
        .collect();
    assert_eq!(unkeyed.len(), battery.unkeyed, "{point}: {unkeyed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_raw_object_is_written() {
    bounce("ingest.after_raw_put").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_ingest_sends_a_dead_letter() {
    bounce("ingest.after_dead_letter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_ingest_answers() {
    bounce("ingest.before_response").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_typed_write() {
    bounce("transform.after_typed_write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_transform_sends_a_dead_letter() {
    bounce("transform.after_dead_letter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_transform_answers() {
    bounce("transform.before_response").await;
}

/// Runs `sluice <args>` on the battery's pipeline with the fail point `point` armed at its first
/// pass, and checks that it crashed there.
fn crash_once(battery: &Battery, endpoint: &str, point: &str, args: &[&str]) {
    let out = battery
        .command(endpoint, args)
        .env("SLUICE_FAILPOINT", format!("{point}:1"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("fail point {point}: aborting")),
        "{point}: {args:?} did not crash there: {stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The checker's verdict after a drain, which must be clean with nothing stranded.
async fn assert_clean(battery: &Battery, history: &[sluice_tests::checker::Snapshot], what: &str) {
    let report = check(&battery.sent().await, history, &battery.letters().await);
    sluice_tests::battery::record(what, 11, &report.counts, None, ROUNDS.len());
    println!("{what:<28}: {:?}", report.counts);
    assert!(
        report.counts.clean(),
        "{what}: {:?}\n{}",
        report.counts,
        report.anomalies.join("\n")
    );
    assert_eq!(
        report.counts.stranded, 0,
        "{what}: {:?}",
        report.stranded_by_code
    );
    let audit = battery
        .command(&battery.env.endpoint, &["audit"])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
}

/// GIVEN valid changes stranded on the dead-letter queue by an S3 outage longer than the retries
/// WHEN `sluice dlq redrive` crashes between sending a letter back and deleting it, three runs
/// in a row, then runs to its end twice once the letters it had read are visible again
/// THEN after a drain every change is typed, stale or dead-lettered, nothing is stranded, and the
/// audit is clean: a letter sent back twice is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_redrives_send_and_delete() {
    let env = sluice_tests::env().await;
    // Enough stranded letters that each crashed run, which hides the page it read, finds more.
    let battery = loaded(&env, 11, (30, 80)).await;
    let (mut history, _) = battery
        .run_through_s3_outage(11, Duration::from_secs(20), 40)
        .await;
    let before = check(&battery.sent().await, &history, &battery.letters().await);
    assert!(before.counts.stranded > 30, "{:?}", before.counts);

    // A pass hides the letters it reads for its read time and 30 s more, so the letters a
    // crashed run had read come back only then: each round waits for them.
    let redrive = ["dlq", "redrive", "--read-secs", "1"];
    for _ in ROUNDS {
        crash_once(&battery, &env.endpoint, "redrive.after_send", &redrive);
        tokio::time::sleep(Duration::from_secs(32)).await;
    }
    for _ in 0..2 {
        let out = battery.command(&env.endpoint, &redrive).output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    history.extend(battery.drain().await);
    assert_clean(&battery, &history, "crash at redrive.after_send").await;
}

/// GIVEN a pipeline drained clean
/// WHEN `sluice replay` of the source table crashes after sending a batch of replay messages,
/// three runs in a row, then runs to its end
/// THEN after a drain the rows are what they were, nothing went back, and the audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_replay_batches() {
    let env = sluice_tests::env().await;
    let battery = loaded(&env, 11, (30, 30)).await;
    let mut history = battery.drain().await;
    let source = battery.source.clone();
    let replay = ["replay", "--table", source.as_str()];
    for _ in ROUNDS {
        crash_once(&battery, &env.endpoint, "replay.after_batch", &replay);
    }
    let out = battery.command(&env.endpoint, &replay).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = history.last().cloned().unwrap_or_default();
    history.extend(battery.drain().await);
    assert_eq!(
        history.last().map(|s| s.keys().collect::<Vec<_>>()),
        Some(before.keys().collect::<Vec<_>>()),
        "the replay touched the same keys only"
    );
    assert_clean(&battery, &history, "crash at replay.after_batch").await;
}
