//! `sluice scale simulate` as a user runs it: the scores of each policy on the spike trace, a
//! trace from a CSV, and the errors of bad input (exit 1, the cause on the first line).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn score<'a>(report: &'a serde_json::Value, policy: &str) -> &'a serde_json::Value {
    report["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["policy"] == policy)
        .unwrap_or_else(|| panic!("no {policy} in {report}"))
}

/// GIVEN the spike trace and a downstream that takes fewer writes than the default mode drives
/// WHEN the policies are compared
/// THEN sluice dead-letters nothing and drains within its target plus the cold-start allowance
/// (130 s), the default mode dead-letters, and a static cap of 2 drains far later.
#[test]
fn the_spike_scores_say_which_policy_keeps_every_message() {
    let o = sluice(&["scale", "simulate", "--trace", "spike", "-o", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sluice_score = score(&report, "sluice");
    assert_eq!(sluice_score["dead_lettered"], 0, "{sluice_score}");
    assert!(
        sluice_score["drain_secs"].as_u64().unwrap() <= 130,
        "{sluice_score}"
    );
    assert!(
        score(&report, "aws-default")["dead_lettered"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(score(&report, "static:2")["drain_secs"].as_u64().unwrap() > 390);
    assert_eq!(report["scores"].as_array().unwrap().len(), 5);

    let table = sluice(&["scale", "simulate", "--policy", "sluice,static:4"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("dead-lettered") && text.contains("static:4"),
        "{text}"
    );
}

#[test]
fn a_csv_trace_runs_and_bad_input_is_named() {
    let dir = std::env::temp_dir().join(format!("sluice-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("arrivals.csv");
    let lines: Vec<String> = (0..600)
        .map(|s| format!("{s},{}", if s < 60 { 500 } else { 5 }))
        .collect();
    std::fs::write(&csv, format!("second,arrivals\n{}\n", lines.join("\n"))).unwrap();
    let o = sluice(&[
        "scale",
        "simulate",
        "--csv",
        csv.to_str().unwrap(),
        "--policy",
        "sluice",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["seconds"], 600);
    let s = score(&report, "sluice");
    assert_eq!(
        s["completed"].as_u64().unwrap()
            + s["dead_lettered"].as_u64().unwrap()
            + s["left"].as_u64().unwrap(),
        60 * 500 + 540 * 5
    );

    std::fs::write(&csv, "1\nlots\n").unwrap();
    for (args, cause) in [
        (vec!["--trace", "weekly"], "unknown trace \"weekly\""),
        (vec!["--policy", "static:1"], "unknown policy \"static:1\""),
        (
            vec!["--csv", csv.to_str().unwrap()],
            "line 2: \"lots\" is not a number",
        ),
        (
            vec!["--capacity", "0"],
            "--capacity must be a positive number",
        ),
    ] {
        let o = sluice(&[&["scale", "simulate"], &args[..]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.lines().next().unwrap_or("").contains(cause),
            "{args:?}: {err}"
        );
    }
}
