//! The configuration is documented once and deployed once: the README's table, `template.yaml`
//! and the variables the functions really read must agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::BTreeSet;

use sluice_pipeline::IngestConfig;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The variables ingest looks up, found by answering every lookup with a valid value.
fn read_by_ingest() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    IngestConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        Some(
            if name.starts_with("SLUICE_MAX") || name.ends_with("CONCURRENCY") {
                "1"
            } else {
                "x"
            }
            .to_owned(),
        )
    })
    .unwrap();
    asked.into_inner()
}

/// `NAME: value` lines of the `Variables:` block of a function in the template.
fn template_variables(template: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut in_block = None;
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
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

#[test]
fn readme_template_and_code_agree_on_ingest_configuration() {
    let code = read_by_ingest();
    let template = template_variables(&repo_file("template.yaml"));
    let readme = readme_variables(&repo_file("README.md"), "ingest");
    let sluice_only = |s: &BTreeSet<String>| -> BTreeSet<String> {
        s.iter()
            .filter(|v| v.starts_with("SLUICE_"))
            .cloned()
            .collect()
    };
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
