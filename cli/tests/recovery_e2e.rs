//! End to end through `sluice dlq` and the redrive function: fix a contract, then send the
//! quarantine back, against a real AWS-compatible endpoint. Each test has a local pipeline of
//! its own, made with `sluice local up`, fed through its ingest queue and run with `sluice local
//! run`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use sluice_tests::faults::{Fault, FaultProxy, Rule};
use sluice_tests::{env, scan, unique, TestEnv};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `email` is required: records without one are quarantined.
const STRICT: &str = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, required: true}\n  - {name: age, type: int}\n";
/// The fix: `email` is optional with a default.
const FIXED: &str = "name: people\nversion: 2\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, default: unknown@example.com}\n  - {name: age, type: int}\n";

/// One local pipeline of its own.
struct Pipe {
    prefix: String,
    contracts: PathBuf,
    state: PathBuf,
    endpoint: String,
}

impl Pipe {
    async fn new(env: &TestEnv, contract: &str) -> Self {
        let prefix = unique("rc");
        let contracts = std::env::temp_dir().join(format!("{prefix}-contracts"));
        std::fs::create_dir_all(&contracts).unwrap();
        std::fs::write(contracts.join("people.yaml"), contract).unwrap();
        let p = Self {
            state: std::env::temp_dir().join(format!("{prefix}-state")),
            prefix,
            contracts,
            endpoint: env.endpoint.clone(),
        };
        let o = p.run(&["local", "up"]);
        assert!(o.status.success(), "local up: {}", text(&o));
        p
    }

    fn command_via(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
        c.current_dir(REPO)
            .args(args)
            .args([
                "--prefix",
                &self.prefix,
                "--contracts",
                self.contracts.to_str().unwrap(),
                "--state-dir",
                self.state.to_str().unwrap(),
            ])
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("RUST_BACKTRACE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command_via(&self.endpoint, args).output().unwrap()
    }

    /// Runs a command with `-o json`; its exit code and its JSON.
    fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let o = self.run(&all);
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o)));
        (o.status.code().unwrap_or(-1), v)
    }

    fn set_contract(&self, contract: &str) {
        std::fs::write(self.contracts.join("people.yaml"), contract).unwrap();
    }

    fn drain(&self) {
        let o = self.run(&["local", "run", "--until-idle", "--retry-delay-secs", "1"]);
        assert!(o.status.success(), "local run: {}", text(&o));
    }

    async fn send(&self, env: &TestEnv, bodies: &[String]) {
        let url = env
            .sqs
            .get_queue_url()
            .queue_name(format!("{}-ingest", self.prefix))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        for b in bodies {
            env.sqs
                .send_message()
                .queue_url(&url)
                .message_body(b)
                .send()
                .await
                .unwrap();
        }
    }

    /// The typed rows by id: (`_contract_version`, `email`, `age`).
    async fn rows(&self, env: &TestEnv) -> BTreeMap<String, (String, String, String)> {
        scan(env, &format!("{}-people", self.prefix))
            .await
            .into_iter()
            .map(|item| {
                let n = |k: &str| match item.get(k) {
                    Some(aws_sdk_dynamodb::types::AttributeValue::N(v)) => v.clone(),
                    Some(aws_sdk_dynamodb::types::AttributeValue::S(v)) => v.clone(),
                    _ => "-".to_owned(),
                };
                (n("id"), (n("_contract_version"), n("email"), n("age")))
            })
            .collect()
    }

    /// Every message on the DLQ, by id, with its body: read without consuming.
    async fn dlq(&self, env: &TestEnv) -> BTreeMap<String, String> {
        let url = env
            .sqs
            .get_queue_url()
            .queue_name(format!("{}-dlq", self.prefix))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        sluice_aws::dead_letters::peek_all(&env.sqs, &url, std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .messages
            .into_iter()
            .map(|m| {
                (
                    m.message_id().unwrap().to_owned(),
                    m.body().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn person(id: u32, after: &str) -> String {
    format!(r#"{{"table":"people","op":"insert","key":{{"id":{id}}},"after":{after},"seq":1}}"#)
}

/// Five people without an email (fixable), two without an email and with a wrong age (not).
fn quarantined_people() -> Vec<String> {
    let mut v: Vec<String> = (1..=5)
        .map(|i| person(i, &format!(r#"{{"id":{i},"age":{}}}"#, 20 + i)))
        .collect();
    v.push(person(6, r#"{"id":6,"age":"old"}"#));
    v.push(person(7, r#"{"id":7,"age":"young"}"#));
    v
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// GIVEN a contract that requires `email`, and seven records without one (two with a wrong
/// `age` too), all quarantined
/// WHEN the contract makes `email` optional with a default, and a person runs a dry run, then
/// the redrive, twice
/// THEN the dry run says five would pass and two still fail (type_mismatch) and leaves the DLQ
/// as it was; the redrive puts the five in the typed table under the new version and leaves the
/// two; the second redrive changes nothing; the audit is clean.
#[tokio::test]
async fn fix_the_contract_then_redrive_heals_the_quarantine() {
    let env = env().await;
    let p = Pipe::new(&env, STRICT).await;
    p.send(&env, &quarantined_people()).await;
    p.drain();
    let before = p.dlq(&env).await;
    assert_eq!(before.len(), 7, "seven letters");
    assert!(p.rows(&env).await.is_empty());

    // Before the fix, nothing would pass.
    let (code, dry) = p.json(&["dlq", "redrive", "--dry-run"]);
    assert_eq!(
        (code, count(&dry, "redriven"), count(&dry, "left")),
        (1, 0, 7),
        "{dry}"
    );

    p.set_contract(FIXED);
    let (code, dry) = p.json(&["dlq", "redrive", "--dry-run"]);
    assert_eq!(code, 1, "some would be left: {dry}");
    assert_eq!(
        (count(&dry, "redriven"), count(&dry, "left")),
        (5, 2),
        "{dry}"
    );
    let still: Vec<&serde_json::Value> = dry["letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["verdict"]["kind"] == "fails")
        .collect();
    assert_eq!(still.len(), 2);
    assert!(
        still
            .iter()
            .all(|l| l["verdict"]["code"] == "type_mismatch"),
        "{dry}"
    );
    assert_eq!(
        p.dlq(&env).await,
        before,
        "a dry run leaves the DLQ as it was"
    );

    let (code, done) = p.json(&["dlq", "redrive"]);
    assert_eq!(
        (code, count(&done, "redriven"), count(&done, "left")),
        (1, 5, 2),
        "{done}"
    );
    p.drain();
    let rows = p.rows(&env).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    for i in 1..=5 {
        assert_eq!(
            rows[&i.to_string()],
            (
                "2".to_owned(),
                "unknown@example.com".to_owned(),
                (20 + i).to_string()
            )
        );
    }
    let left = p.dlq(&env).await;
    assert_eq!(left.len(), 2, "the two that still fail stay");
    // The letters left are those of the wrong ages, as they were.
    assert!(
        left.values()
            .all(|b| b.contains(r#"\"old\""#) || b.contains(r#"\"young\""#)),
        "{left:?}"
    );

    // Again: nothing changes.
    let (_, again) = p.json(&["dlq", "redrive"]);
    assert_eq!(
        (count(&again, "redriven"), count(&again, "left")),
        (0, 2),
        "{again}"
    );
    p.drain();
    assert_eq!(p.rows(&env).await, rows);
    assert_eq!(p.dlq(&env).await.len(), 2);

    let (code, audit) = p.json(&["audit"]);
    assert_eq!(code, 0, "the audit is clean: {audit}");
}

/// GIVEN letters of two kinds (no contract for `pets`, a missing field for `people`)
/// WHEN they are listed, shown and counted with filters, and only `pets` is redriven
/// THEN the filters select exactly the matching letters, reading leaves every message on the
/// DLQ and visible, and the redrive touches only what it selected.
#[tokio::test]
async fn filters_select_exactly_and_reading_leaves_the_dlq_as_it_was() {
    let env = env().await;
    let p = Pipe::new(&env, STRICT).await;
    let mut bodies = quarantined_people()[..3].to_vec();
    bodies.extend((1..=2).map(|i| {
        format!(
            r#"{{"table":"pets","op":"insert","key":{{"id":{i}}},"after":{{"id":{i}}},"seq":1}}"#
        )
    }));
    p.send(&env, &bodies).await;
    p.drain();
    let before = p.dlq(&env).await;
    assert_eq!(before.len(), 5);

    let (_, stats) = p.json(&["dlq", "stats"]);
    assert_eq!(count(&stats, "letters"), 5, "{stats}");
    assert_eq!(stats["by_class"]["no_contract"], 2, "{stats}");
    assert_eq!(stats["by_table"]["people"], 3, "{stats}");

    let (_, pets) = p.json(&["dlq", "list", "--table", "pets"]);
    let listed = pets["letters"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{pets}");
    assert!(listed
        .iter()
        .all(|l| l["code"] == "no_contract" && l["table"] == "pets"));
    let (_, by_code) = p.json(&[
        "dlq",
        "list",
        "--class",
        "contract_violation",
        "--code",
        "missing_field",
    ]);
    assert_eq!(by_code["letters"].as_array().unwrap().len(), 3);
    let (_, none) = p.json(&["dlq", "list", "--contains", "no such text", "--since", "1h"]);
    assert_eq!(none["letters"].as_array().unwrap().len(), 0);
    let (_, future) = p.json(&["dlq", "list", "--until", "2000-01-01"]);
    assert_eq!(future["letters"].as_array().unwrap().len(), 0);

    let id = listed[0]["failure_id"].as_str().unwrap();
    let (code, shown) = p.json(&["dlq", "show", id]);
    assert_eq!(code, 0);
    assert_eq!(shown["letters"][0]["body"]["failure_id"], id, "{shown}");
    assert_eq!(shown["letters"][0]["verdict"]["kind"], "fails", "{shown}");
    let o = p.run(&["dlq", "show", "no-such-letter"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("error: no letter on the dead-letter queue")
    );

    // Reading consumed nothing and hid nothing.
    assert_eq!(p.dlq(&env).await, before);
    let o = p.run(&["dlq", "list"]);
    assert!(o.status.success());
    assert_eq!(p.dlq(&env).await, before, "every message is visible again");

    // SQS's own whole-queue move runs only on AWS, and takes no filter.
    let o = p.run(&["dlq", "redrive", "--server-side"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        err.lines().next().unwrap_or("").contains("only AWS runs"),
        "{err}"
    );
    let o = p.run(&["dlq", "redrive", "--server-side", "--table", "pets"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
    assert_eq!(p.dlq(&env).await, before, "a refused move touches nothing");

    // A contract for pets; only pets go back.
    std::fs::write(
        p.contracts.join("pets.yaml"),
        "name: pets\nversion: 1\nsources: [{table: pets}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n",
    )
    .unwrap();
    assert!(p.run(&["local", "up"]).status.success());
    let (code, done) = p.json(&["dlq", "redrive", "--table", "pets"]);
    assert_eq!(
        (code, count(&done, "matched"), count(&done, "redriven")),
        (0, 2, 2),
        "{done}"
    );
    let after = p.dlq(&env).await;
    let people: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(_, b)| !b.contains("\"pets\""))
        .collect();
    assert_eq!(after, people, "the other letters are untouched");
}

/// GIVEN quarantined letters and a fixed contract
/// WHEN the redrive sends them back but every DeleteMessage fails (the run stops between the
/// send and the delete), then runs again
/// THEN nothing is lost: the letters stay after the first run, the second sends them again and
/// deletes them, and the duplicates change no row.
#[tokio::test]
async fn a_stop_between_send_and_delete_loses_nothing() {
    let env = env().await;
    let p = Pipe::new(&env, STRICT).await;
    p.send(&env, &quarantined_people()[..5]).await;
    p.drain();
    assert_eq!(p.dlq(&env).await.len(), 5);
    p.set_contract(FIXED);

    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new("sqs", "DeleteMessage", Fault::Refuse));
    let o = p
        .command_via(&proxy.url, &["-o", "json", "dlq", "redrive"])
        .output()
        .unwrap();
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(count(&first, "errors"), 5, "{first}");
    assert!(proxy.count("sqs", "SendMessage") >= 5);
    assert_eq!(p.dlq(&env).await.len(), 5, "every letter stays");

    let (code, second) = p.json(&["dlq", "redrive"]);
    assert_eq!(
        (code, count(&second, "redriven"), count(&second, "errors")),
        (0, 5, 0),
        "{second}"
    );
    assert!(p.dlq(&env).await.is_empty());
    p.drain();
    let rows = p.rows(&env).await;
    assert_eq!(rows.len(), 5, "each once: {rows:?}");
    assert!(rows
        .values()
        .all(|(v, email, _)| v == "2" && email == "unknown@example.com"));
    assert!(
        p.dlq(&env).await.is_empty(),
        "the duplicates failed nothing"
    );
    let (code, audit) = p.json(&["audit"]);
    assert_eq!(code, 0, "{audit}");
}

/// GIVEN the same quarantine
/// WHEN the redrive function runs on its schedule before the fix and after it
/// THEN it leaves the letters before (a person's failure, no newer contract), and heals the
/// quarantine after, with no CLI command.
#[tokio::test]
async fn the_redrive_function_heals_the_quarantine_once_the_contract_is_fixed() {
    let env = env().await;
    let p = Pipe::new(&env, STRICT).await;
    p.send(&env, &quarantined_people()[..4]).await;
    p.drain();
    let vars: Vec<(String, String)> = String::from_utf8(p.run(&["local", "env"]).stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.strip_prefix("export ")?.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('\'').to_owned()))
        })
        .collect();
    let schedule = std::env::temp_dir().join(format!("{}-schedule.json", p.prefix));
    std::fs::write(
        &schedule,
        r#"{"version":"0","id":"e","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-11-30T06:00:00Z","region":"us-east-1","resources":[],"detail":{}}"#,
    )
    .unwrap();
    let invoke = || {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(REPO)
            .args(["invoke", "redrive", "--event", schedule.to_str().unwrap()])
            .envs(vars.iter().cloned())
            .env("AWS_ENDPOINT_URL", &env.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let before = invoke();
    assert_eq!(
        (count(&before, "redriven"), count(&before, "left")),
        (0, 4),
        "{before}"
    );
    assert_eq!(p.dlq(&env).await.len(), 4);

    p.set_contract(FIXED);
    let after = invoke();
    assert_eq!(
        (count(&after, "redriven"), count(&after, "left")),
        (4, 0),
        "{after}"
    );
    p.drain();
    assert_eq!(p.rows(&env).await.len(), 4);
    assert!(p.dlq(&env).await.is_empty());
}

/// GIVEN six people typed under contract v1, their changes committed over three hours
/// WHEN the contract gains a default (v2), and the middle hour is replayed: first as a dry run,
/// then in process; then everything through the transform queue
/// THEN the dry run says two rows would change; the replay rewrites those two under v2 and no
/// other; the replay of everything rewrites the rest, and a second dry run finds every row
/// equal.
#[tokio::test]
async fn replay_rewrites_every_row_of_the_range_and_only_those() {
    let env = env().await;
    let lax = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string}\n  - {name: age, type: int}\n";
    let p = Pipe::new(&env, lax).await;
    let hour = 3_600_000;
    let base = 1_796_000_400_000_i64 / hour * hour; // an hour's start
    let bodies: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"table":"people","op":"insert","key":{{"id":{i}}},"after":{{"id":{i},"age":{}}},"seq":1,"ts":{}}}"#,
                30 + i,
                base + (i / 2) * hour + 60_000
            )
        })
        .collect();
    p.send(&env, &bodies).await;
    p.drain();
    assert!(p.rows(&env).await.values().all(|(v, _, _)| v == "1"));
    p.set_contract(FIXED);

    let since = sluice_core::time::ms_to_rfc3339(base + hour);
    let until = sluice_core::time::ms_to_rfc3339(base + 2 * hour);
    let range = ["--table", "people", "--since", &since, "--until", &until];
    let (code, dry) = p.json(&[&["replay", "--dry-run"], &range[..]].concat());
    assert_eq!(code, 0, "{dry}");
    assert_eq!(dry["preview"]["lines"], 2, "{dry}");
    assert_eq!(dry["preview"]["tables"]["people"]["change"], 2, "{dry}");

    let (code, done) = p.json(&[&["replay", "--local"], &range[..]].concat());
    assert_eq!(code, 0, "{done}");
    assert_eq!(
        (done["lines"].as_u64(), done["rows_written"].as_u64()),
        (Some(2), Some(2)),
        "{done}"
    );
    let rows = p.rows(&env).await;
    let v2: Vec<&String> = rows
        .iter()
        .filter(|(_, (v, _, _))| v == "2")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(v2, ["2", "3"], "only the middle hour: {rows:?}");
    assert_eq!(rows["2"].1, "unknown@example.com");
    assert_eq!(rows["0"].1, "-", "outside the range, untouched");

    let (code, queued) = p.json(&["replay", "--table", "people"]);
    assert_eq!((code, queued["queued"].as_u64()), (0, Some(3)), "{queued}");
    p.drain();
    let rows = p.rows(&env).await;
    assert!(
        rows.values()
            .all(|(v, e, _)| v == "2" && e == "unknown@example.com"),
        "{rows:?}"
    );
    let (_, again) = p.json(&["replay", "--table", "people", "--dry-run"]);
    assert_eq!(again["preview"]["tables"]["people"]["equal"], 6, "{again}");
    let (code, audit) = p.json(&["audit"]);
    assert_eq!(code, 0, "{audit}");
}

/// GIVEN a change without an email and with an age that is not a number, quarantined under the
/// strict contract (missing email), then lettered again by a replay under the fixed contract
/// (bad age): two letters for one raw line
/// WHEN a contract that takes the age as a string is published and the DLQ is redriven
/// THEN the line is sent back once and both letters are deleted; the row is typed under the
/// newest contract and the audit is clean.
#[tokio::test]
async fn two_letters_of_one_line_go_back_once() {
    let env = env().await;
    let p = Pipe::new(&env, STRICT).await;
    p.send(&env, &[person(7, r#"{"id":7,"age":"unknown"}"#)])
        .await;
    p.drain();
    p.set_contract(FIXED);
    assert!(p.run(&["local", "up"]).status.success());
    let (_, replayed) = p.json(&["replay", "--table", "people", "--local"]);
    assert_eq!(replayed["quarantined"].as_u64(), Some(1), "{replayed}");
    let (_, stats) = p.json(&["dlq", "stats"]);
    assert_eq!(count(&stats, "letters"), 2, "{stats}");
    assert_eq!(stats["by_code"]["missing_field"], 1, "{stats}");
    assert_eq!(stats["by_code"]["type_mismatch"], 1, "{stats}");

    p.set_contract(
        &FIXED
            .replace("version: 2", "version: 3")
            .replace("{name: age, type: int}", "{name: age, type: string}"),
    );
    assert!(p.run(&["local", "up"]).status.success());
    let (code, done) = p.json(&["dlq", "redrive"]);
    assert_eq!(
        (
            code,
            count(&done, "redriven"),
            count(&done, "copies_deleted"),
            count(&done, "left")
        ),
        (0, 1, 1, 0),
        "{done}"
    );
    assert!(p.dlq(&env).await.is_empty());
    p.drain();
    let rows = p.rows(&env).await;
    assert_eq!(
        rows["7"],
        (
            "3".to_owned(),
            "unknown@example.com".to_owned(),
            "unknown".to_owned()
        )
    );
    let (code, audit) = p.json(&["audit"]);
    assert_eq!(code, 0, "{audit}");
}
