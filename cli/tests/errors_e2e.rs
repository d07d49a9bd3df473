//! The mistakes new users make, run as they would make them: no endpoint and no credentials, an
//! emulator that is not running, a malformed endpoint, a contract file with many problems. The
//! first line of the error names the real cause, no backtrace is printed (even with
//! `RUST_BACKTRACE=1`), and the exit code is 2 for what could not run, 1 for invalid input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

/// `sluice` with an empty environment but for what is given: no AWS variables, no profile.
fn sluice(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let home = std::env::temp_dir().join(format!("sluice-empty-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("RUST_BACKTRACE", "1")
        // No instance metadata here: the credential chain would wait for it.
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn first_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn no_backtrace(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("backtrace") && !err.contains("Backtrace") && !err.contains("at /"),
        "{err}"
    );
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const COMMANDS: [&[&str]; 5] = [
    &["status"],
    &["audit"],
    &["local", "run", "--until-idle"],
    &["local", "up"],
    &["demo", "--count", "1"],
];

#[test]
fn without_endpoint_or_credentials_it_says_this_would_call_real_aws() {
    for args in COMMANDS {
        let o = sluice(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let line = first_line(&o);
        assert!(
            line.starts_with("error: no endpoint and no AWS credentials: this would call real AWS"),
            "{args:?}: {line}"
        );
        assert!(line.contains("infra/emulator.sh env"), "{line}");
        no_backtrace(&o);
    }
}

#[test]
fn a_stopped_emulator_is_named_as_unreachable() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let vars = [
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    for args in COMMANDS {
        let o = sluice(args, &vars);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let line = first_line(&o);
        assert!(
            line.starts_with(&format!("error: cannot reach {url}")),
            "{args:?}: {line}"
        );
        assert!(line.contains("make emulator"), "{line}");
        no_backtrace(&o);
    }
}

#[test]
fn a_malformed_endpoint_is_refused_before_any_call() {
    for bad in ["htp://127.0.0.1:4566", "127.0.0.1:4566"] {
        let o = sluice(&["status", "--endpoint-url", bad], &[]);
        assert_eq!(o.status.code(), Some(2));
        let line = first_line(&o);
        assert!(
            line.starts_with(&format!(
                "error: the endpoint {bad:?} is not an http:// or https:// URL"
            )),
            "{line}"
        );
        no_backtrace(&o);
    }
}

#[test]
fn every_problem_of_a_contract_is_reported_in_one_run() {
    let dir = std::env::temp_dir().join(format!("sluice-six-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("six.yaml"),
        "name: orders\nversion: 1\ncolour: blue\nsources: [{table: orders}]\nprimary_key: [order_id]\nfields:\n  - name: id\n    type: string\n  - name: total\n    type: money\n  - name: at\n    type: timestamp\n    unit: minutes\n  - name: amount\n    type: decimal\n    scale: abc\n  - name: id\n    type: int\n",
    )
    .unwrap();
    let path = dir.join("six.yaml").display().to_string();
    let o = sluice(&["contracts", "validate", &path], &[]);
    assert_eq!(o.status.code(), Some(1), "invalid input");
    let out = String::from_utf8_lossy(&o.stdout);
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 6, "{out}");
    for needle in [
        ":3: colour",
        ":10: fields[1] (total).type",
        ":13: fields[2] (at).unit",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    no_backtrace(&o);

    let o = sluice(&["contracts", "validate", &path, "--output", "json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["invalid"], 1);
    assert_eq!(v["valid"], 0);
    let problems = v["files"][0]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 6);
    assert!(problems
        .iter()
        .all(|p| p["line"].is_u64() && p["path"].is_string() && p["message"].is_string()));

    let o = sluice(
        &["contracts", "validate", "infra/contracts", "-o", "json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["invalid"], 0);
    assert!(v["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["ok"] == true && f["contract"].is_string() && f["fields"].is_u64()));

    let o = sluice(&["contracts", "validate", "no/such/dir"], &[]);
    assert_eq!(o.status.code(), Some(1), "a wrong path is invalid input");
    assert_eq!(
        first_line(&o),
        "error: no/such/dir does not exist; pass contract files, directories of them, or s3://bucket/prefix/"
    );
}

#[test]
fn help_says_what_sluice_is_and_completions_are_printed() {
    let o = sluice(&["--help"], &[]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("change events"), "{help}");
    assert!(help.contains("--output"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let o = sluice(&["completions", shell], &[]);
        assert!(o.status.success(), "{shell}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("sluice"));
    }
}

#[test]
fn access_denied_is_named_as_such() {
    use sluice_tests::faults::{Fault, FaultProxy, Rule};
    // Whatever is behind it, the proxy answers every SQS call as AWS answers bad credentials.
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", closed_port()));
    proxy.add(
        Rule::new(
            "sqs",
            "GetQueueUrl",
            Fault::Error {
                status: 400,
                code: "InvalidClientTokenId",
                message: "The security token included in the request is invalid.",
            },
        )
        .any_operation(),
    );
    let vars = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "wrong"),
        ("AWS_SECRET_ACCESS_KEY", "wrong"),
    ];
    let o = sluice(&["status"], &vars);
    assert_eq!(o.status.code(), Some(2));
    let line = first_line(&o);
    assert!(line.starts_with("error: access denied"), "{line}");
    assert!(line.contains("InvalidClientTokenId"), "{line}");
    no_backtrace(&o);
}

/// `sluice … | head`: a reader that goes away ends sluice quietly with 0, never a panic.
#[test]
fn a_closed_pipe_on_stdout_ends_quietly() {
    use std::process::Stdio;
    for args in [
        &["completions", "bash"][..],
        &["contracts", "validate", "infra/contracts"][..],
        &["-o", "json", "contracts", "validate", "infra/contracts"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before sluice writes: its first write meets a closed pipe.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
    }
}
