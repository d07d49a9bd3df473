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

/// The pass of the fail point each round aborts at: past the first in the first round, so some
/// work is done before it; at the first in the others, so each round crashes (what the crash
/// left in flight comes back to the next round once its visibility timeout ends).
const ROUNDS: [u32; 3] = [2, 1, 1];

async fn bounce(point: &'static str) {
    assert!(sluice_pipeline::failpoint::POINTS.contains(&point));
    let env = sluice_tests::env().await;
    let mut battery = Battery::new(
        &env.endpoint,
        Path::new(env!("CARGO_BIN_EXE_sluice")),
        Path::new(REPO),
    )
    .await;
    let mut rng = fastrand::Rng::with_seed(11);
    battery.stream_changes(45, &mut rng).await;
    battery.app_events(45, &mut rng).await;

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
