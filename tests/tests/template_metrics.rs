//! Every metric that `template.yaml`'s alarms and dashboard watch, and that the README lists, is
//! one the code emits, with the dimensions it emits it with (`sluice_aws::metrics::CATALOG`,
//! which the functions' own tests hold to what they really emit). An alarm on a metric nobody
//! emits never fires; the emulator does not evaluate alarms, so only this test can say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use sluice_aws::metrics::CATALOG;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Resources of the template: logical id to its lines.
fn resources(template: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_resources = false;
    let mut current: Option<String> = None;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_resources = line.trim_end() == "Resources:";
            current = None;
            continue;
        }
        if !in_resources {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 2 && line.trim_end().ends_with(':') && !line.trim_start().starts_with('#') {
            let name = line.trim().trim_end_matches(':').to_owned();
            out.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if let Some(c) = &current {
            out.entry(c.clone()).or_default().push(line.to_owned());
        }
    }
    out
}

fn resource_type(lines: &[String]) -> &str {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Type: "))
        .unwrap_or_default()
}

/// A metric an alarm watches: namespace, name, and dimensions (name, value as written).
#[derive(Debug, Default)]
struct Watched {
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
}

fn watched(lines: &[String]) -> Vec<Watched> {
    let mut out: Vec<Watched> = Vec::new();
    let mut pending_dim: Option<String> = None;
    for l in lines {
        let t = l.trim();
        if let Some(ns) = t.strip_prefix("Namespace: ") {
            out.push(Watched {
                namespace: ns.to_owned(),
                ..Watched::default()
            });
        } else if let Some(n) = t.strip_prefix("MetricName: ") {
            out.last_mut().unwrap().name = n.to_owned();
        } else if let Some(n) = t.strip_prefix("- Name: ") {
            pending_dim = Some(n.to_owned());
        } else if let Some(v) = t.strip_prefix("Value: ") {
            if let Some(n) = pending_dim.take() {
                out.last_mut().unwrap().dimensions.push((n, v.to_owned()));
            }
        }
    }
    out
}

/// Whether the catalogue has `metric` of `function` with exactly these dimensions.
fn emitted(function: &str, dims: &[&str], metric: &str) -> bool {
    CATALOG.iter().any(|e| {
        e.function == function
            && e.dimensions.iter().copied().collect::<BTreeSet<_>>()
                == dims.iter().copied().collect()
            && e.metrics.contains(&metric)
    })
}

const LAMBDA_METRICS: &[&str] = &[
    "Errors",
    "Invocations",
    "Throttles",
    "Duration",
    "IteratorAge",
    "DestinationDeliveryFailures",
    "ConcurrentExecutions",
];
const SQS_METRICS: &[&str] = &[
    "ApproximateNumberOfMessagesVisible",
    "ApproximateAgeOfOldestMessage",
];

#[test]
fn every_alarm_watches_a_metric_that_is_emitted_with_its_dimensions() {
    let template = repo_file("template.yaml");
    let res = resources(&template);
    let of_type = |t: &str| -> BTreeSet<String> {
        res.iter()
            .filter(|(_, l)| resource_type(l) == t)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let functions = of_type("AWS::Serverless::Function");
    let queues = of_type("AWS::SQS::Queue");
    let alarms = of_type("AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 20, "{alarms:?}");
    let mut problems = Vec::new();
    for alarm in &alarms {
        let metrics = watched(&res[alarm]);
        if metrics.is_empty() {
            problems.push(format!("{alarm}: watches no metric"));
        }
        for m in metrics {
            let dims: Vec<&str> = m.dimensions.iter().map(|(n, _)| n.as_str()).collect();
            let ok = match m.namespace.as_str() {
                "Sluice" => {
                    let function = m
                        .dimensions
                        .iter()
                        .find(|(n, _)| n == "Function")
                        .map_or("", |(_, v)| v.as_str());
                    emitted(function, &dims, &m.name)
                }
                "AWS/Lambda" => {
                    LAMBDA_METRICS.contains(&m.name.as_str())
                        && m.dimensions.len() == 1
                        && m.dimensions[0].0 == "FunctionName"
                        && m.dimensions[0]
                            .1
                            .strip_prefix("!Ref ")
                            .is_some_and(|f| functions.contains(f))
                }
                "AWS/SQS" => {
                    SQS_METRICS.contains(&m.name.as_str())
                        && m.dimensions.len() == 1
                        && m.dimensions[0].0 == "QueueName"
                        && m.dimensions[0]
                            .1
                            .strip_prefix("!GetAtt ")
                            .and_then(|v| v.strip_suffix(".QueueName"))
                            .is_some_and(|q| queues.contains(q))
                }
                _ => false,
            };
            if !ok {
                problems.push(format!(
                    "{alarm}: {} {} {:?} is not emitted (or names no resource of the template)",
                    m.namespace, m.name, m.dimensions
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_dashboard_shows_only_emitted_metrics() {
    let template = repo_file("template.yaml");
    let res = resources(&template);
    let lines = &res["Dashboard"];
    let start = lines
        .iter()
        .position(|l| l.contains("DashboardBody: !Sub |"))
        .unwrap();
    let body: String = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut sluice = 0;
    for widget in doc["widgets"].as_array().unwrap() {
        for metric in widget["properties"]["metrics"].as_array().unwrap() {
            let parts = metric.as_array().unwrap();
            if let Some(expr) = parts[0]["expression"].as_str() {
                // SEARCH('{Sluice,Function,Table} MetricName="RowsWritten"', ...)
                let inner = expr.split('{').nth(1).unwrap();
                let (schema, rest) = inner.split_once('}').unwrap();
                let mut keys = schema.split(',');
                assert_eq!(keys.next(), Some("Sluice"), "{expr}");
                let dims: Vec<&str> = keys.collect();
                let name = rest.split('"').nth(1).unwrap();
                assert!(
                    CATALOG
                        .iter()
                        .any(|e| e.dimensions == dims.as_slice() && e.metrics.contains(&name)),
                    "{expr}: no function emits {name} with {dims:?}"
                );
                sluice += 1;
            } else if parts[0] == "Sluice" {
                let name = parts[1].as_str().unwrap();
                assert_eq!(parts[2], "Function", "{metric}");
                let function = parts[3].as_str().unwrap();
                assert!(
                    emitted(function, &["Function"], name),
                    "{function} does not emit {name}"
                );
                sluice += 1;
            }
        }
    }
    assert!(sluice >= 8, "{sluice} sluice metrics on the dashboard");
}

#[test]
fn the_readme_lists_exactly_the_catalogue() {
    let readme = repo_file("README.md");
    let section = readme
        .split("## Metrics")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut listed: BTreeMap<(String, Vec<String>), BTreeSet<String>> = BTreeMap::new();
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| function"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let metrics: BTreeSet<String> = ticked(cells[3])
            .into_iter()
            .filter(|m| !m.contains(' ') && m.chars().next().is_some_and(char::is_uppercase))
            .collect();
        listed
            .entry((cells[1].to_owned(), ticked(cells[2])))
            .or_default()
            .extend(metrics);
    }
    let catalogue: BTreeMap<(String, Vec<String>), BTreeSet<String>> = CATALOG
        .iter()
        .map(|e| {
            (
                (
                    e.function.to_owned(),
                    e.dimensions.iter().map(|d| (*d).to_owned()).collect(),
                ),
                e.metrics.iter().map(|m| (*m).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(listed, catalogue);
}
