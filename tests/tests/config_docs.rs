//! The configuration is documented once and deployed once: the README's table, `template.yaml`
//! and the variables the functions really read must agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::BTreeSet;

use sluice_pipeline::recovery::RecoveryConfig;
use sluice_pipeline::scaler::ScalerConfig;
use sluice_pipeline::{IngestConfig, TransformConfig};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A valid value for any variable, so that every lookup is made.
fn any_value(name: &str) -> Option<String> {
    match name {
        "SLUICE_SCALER_MAPPINGS" => {
            return Some("ingest:0a1b2c3d-0000-4000-8000-000000000001".into())
        }
        "SLUICE_SCALER_STATE" => return Some("s3://x/scaler/state.json".into()),
        _ if name.starts_with("SLUICE_SCALE_") => return Some("60".into()),
        _ => {}
    }
    let numeric = ["SLUICE_MAX", "CONCURRENCY", "TTL", "RETRIES"]
        .iter()
        .any(|n| name.contains(n));
    Some(if numeric { "1" } else { "x" }.to_owned())
}

/// The variables ingest looks up.
fn read_by_ingest() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    IngestConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        any_value(name)
    })
    .unwrap();
    asked.into_inner()
}

/// The variables transform looks up.
fn read_by_transform() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    TransformConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        any_value(name)
    })
    .unwrap();
    asked.into_inner()
}

/// The variables the redrive function looks up.
fn read_by_redrive() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    RecoveryConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        any_value(name)
    })
    .unwrap();
    asked.into_inner()
}

/// The variables the scaler function looks up.
fn read_by_scaler() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    ScalerConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        any_value(name)
    })
    .unwrap();
    asked.into_inner()
}

/// `NAME: value` lines of the `Variables:` block of one resource of the template.
fn template_variables(template: &str, resource: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut in_resource = false;
    let mut in_block = None;
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent == 2 && line.trim_end().ends_with(':') && !line.trim_start().starts_with('#') {
            in_resource = line.trim() == format!("{resource}:");
            in_block = None;
            continue;
        }
        if !in_resource {
            continue;
        }
        match in_block {
            None if line.trim() == "Variables:" => in_block = Some(indent),
            Some(block) if !line.trim().is_empty() && indent <= block => in_block = None,
            Some(_) => {
                if let Some((name, _)) = line.trim().split_once(':') {
                    vars.insert(name.to_owned());
                }
            }
            None => {}
        }
    }
    vars
}

/// Variables in the README's configuration table whose "used by" column names `function`.
fn readme_variables(readme: &str, function: &str) -> BTreeSet<String> {
    readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.trim_matches('`');
            let used_by = cells.get(2)?;
            (used_by
                .split(',')
                .any(|u| u.trim() == function || u.trim() == "all"))
            .then(|| name.to_owned())
        })
        .collect()
}

fn sluice_only(s: &BTreeSet<String>) -> BTreeSet<String> {
    s.iter()
        .filter(|v| v.starts_with("SLUICE_"))
        .cloned()
        .collect()
}

#[test]
fn readme_template_and_code_agree_on_ingest_configuration() {
    let code = read_by_ingest();
    let template = template_variables(&repo_file("template.yaml"), "IngestFunction");
    let readme = readme_variables(&repo_file("README.md"), "ingest");
    assert!(!code.is_empty());
    assert_eq!(
        sluice_only(&template),
        code,
        "template.yaml sets exactly what ingest reads"
    );
    assert_eq!(
        sluice_only(&readme),
        code,
        "the README documents exactly what ingest reads"
    );
    assert!(template.contains("RUST_LOG") && readme.contains("RUST_LOG"));
    assert!(template.contains("MIMALLOC_PURGE_DELAY") && readme.contains("MIMALLOC_PURGE_DELAY"));
}

#[test]
fn readme_template_and_code_agree_on_transform_configuration() {
    let read = read_by_transform();
    // What Lambda sets for every function is read, never set by the template: the README says
    // what it is used for.
    let from_lambda: BTreeSet<String> = read
        .iter()
        .filter(|v| v.starts_with("AWS_LAMBDA_"))
        .cloned()
        .collect();
    assert_eq!(
        from_lambda,
        BTreeSet::from(["AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned()])
    );
    assert!(repo_file("README.md").contains("`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`"));
    let code = sluice_only(&read);
    assert_eq!(code.len() + from_lambda.len(), read.len(), "{read:?}");
    let template = template_variables(&repo_file("template.yaml"), "TransformFunction");
    let readme = readme_variables(&repo_file("README.md"), "transform");
    assert!(code.contains("SLUICE_CONTRACTS"));
    assert!(template.contains("MIMALLOC_PURGE_DELAY") && readme.contains("MIMALLOC_PURGE_DELAY"));
    assert_eq!(
        sluice_only(&template),
        code,
        "template.yaml sets exactly what transform reads"
    );
    assert_eq!(
        sluice_only(&readme),
        code,
        "the README documents exactly what transform reads"
    );
    assert!(template.contains("RUST_LOG"));
}

#[test]
fn readme_template_and_code_agree_on_redrive_configuration() {
    let code = read_by_redrive();
    let template = template_variables(&repo_file("template.yaml"), "RedriveFunction");
    let readme = readme_variables(&repo_file("README.md"), "redrive");
    assert!(
        code.contains("SLUICE_TRANSFORM_QUEUE_URL") && code.contains("SLUICE_REDRIVE_MAX_RETRIES")
    );
    assert_eq!(
        sluice_only(&template),
        code,
        "template.yaml sets exactly what redrive reads"
    );
    assert_eq!(
        sluice_only(&readme),
        code,
        "the README documents exactly what redrive reads"
    );
    assert!(template.contains("RUST_LOG"));
}

#[test]
fn readme_template_and_code_agree_on_scaler_configuration() {
    let code = read_by_scaler();
    let template = template_variables(&repo_file("template.yaml"), "ScalerFunction");
    let readme = readme_variables(&repo_file("README.md"), "scaler");
    assert!(code.contains("SLUICE_SCALER_MAPPINGS") && code.contains("SLUICE_SCALE_TARGET_SECS"));
    assert_eq!(
        sluice_only(&template),
        code,
        "template.yaml sets exactly what the scaler reads"
    );
    assert_eq!(
        sluice_only(&readme),
        code,
        "the README documents exactly what the scaler reads"
    );
    assert!(template.contains("RUST_LOG"));
}

/// The lines of one resource of the template.
fn template_resource(template: &str, resource: &str) -> String {
    let mut lines = template
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {resource}:"));
    let first = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("   ") || l.starts_with("  #"))
        .collect();
    format!("{first}\n{}", rest.join("\n"))
}

#[test]
fn the_capacity_alarm_watches_the_metric_the_scaler_emits() {
    let alarm = template_resource(&repo_file("template.yaml"), "ScalerCapacityExhaustedAlarm");
    assert!(alarm.contains("Namespace: Sluice"), "{alarm}");
    assert!(alarm.contains("MetricName: CapacityExhausted"), "{alarm}");
    assert!(
        alarm.contains(&format!("Value: {}", sluice_pipeline::scaler::FUNCTION)),
        "{alarm}"
    );
    let code = repo_file("shared/pipeline/src/scaler/mod.rs");
    assert!(code.contains("\"CapacityExhausted\""));
}

#[test]
fn every_event_source_mapping_reports_batch_item_failures() {
    let template = repo_file("template.yaml");
    let mappings = template
        .matches("Type: AWS::Lambda::EventSourceMapping")
        .count();
    let reporting = template
        .matches("FunctionResponseTypes: [ReportBatchItemFailures]")
        .count();
    assert!(mappings >= 2, "{mappings} mappings");
    assert_eq!(
        mappings, reporting,
        "every mapping sets ReportBatchItemFailures"
    );
}
