//! The structure of a contract file, checked over its value tree before any typed reading, so
//! every structural problem (an unknown key, a value of the wrong kind, a bad `unit`) is found
//! in one pass, with its path and line. What is wrong is then left out, and the semantic checks
//! run on the rest, so one run reports every problem of both kinds.

use serde_json::{Map, Value};

/// The keys a contract has, and those a field and a source have.
const TOP: &[&str] = &[
    "name",
    "version",
    "description",
    "sources",
    "primary_key",
    "unknown_fields",
    "fields",
];
const SOURCE: &[&str] = &["table", "formats"];
const FIELD: &[&str] = &[
    "name",
    "type",
    "required",
    "from",
    "default",
    "unit",
    "scale",
    "description",
];
const FORMATS: &[&str] = &["ddb-stream", "ddb-kinesis", "app", "debezium", "dms"];
const UNITS: &[&str] = &["s", "ms", "us", "ns", "days"];

/// A structural problem: the path of the entry, and what is wrong.
pub(super) type Problem = (String, String);

/// Checks `doc` and returns it with every wrong entry left out (so it reads as a contract file
/// when only those entries were wrong), and the problems found.
pub(super) fn check(doc: Value) -> (Value, Vec<Problem>) {
    let mut problems = Vec::new();
    let Value::Object(top) = doc else {
        problems.push((String::new(), "a contract is a map of keys".to_owned()));
        return (Value::Null, problems);
    };
    let mut out = Map::new();
    for (key, value) in top {
        match key.as_str() {
            "name" | "description" => keep_string(&mut out, &mut problems, "", &key, value),
            "version" => match value.as_u64() {
                Some(_) => {
                    out.insert(key, value);
                }
                None => problems.push((
                    key,
                    format!("must be a whole number, found {}", kind(&value)),
                )),
            },
            "unknown_fields" => match value.as_str() {
                Some("ignore" | "keep") => {
                    out.insert(key, value);
                }
                _ => problems.push((
                    key,
                    format!("must be `ignore` or `keep`, found {}", show(&value)),
                )),
            },
            "primary_key" => match value {
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    out.insert(key, Value::Array(items));
                }
                other => problems.push((
                    key,
                    format!("must be a list of field names, found {}", kind(&other)),
                )),
            },
            "sources" => {
                let list = list_of(&mut problems, "sources", value, |p, path, item| {
                    source(p, path, item)
                });
                out.insert(key, list);
            }
            "fields" => {
                let list = list_of(&mut problems, "fields", value, |p, path, item| {
                    field(p, path, item)
                });
                out.insert(key, list);
            }
            other => problems.push((other.to_owned(), unknown(TOP))),
        }
    }
    for required in ["name", "version", "sources", "primary_key", "fields"] {
        if !out.contains_key(required) && !problems.iter().any(|(p, _)| p == required) {
            problems.push((required.to_owned(), "is required".to_owned()));
        }
    }
    (Value::Object(out), problems)
}

fn list_of(
    problems: &mut Vec<Problem>,
    path: &str,
    value: Value,
    each: impl Fn(&mut Vec<Problem>, &str, Value) -> Option<Value>,
) -> Value {
    match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| each(problems, &format!("{path}[{i}]"), item))
                .collect(),
        ),
        other => {
            problems.push((
                path.to_owned(),
                format!("must be a list, found {}", kind(&other)),
            ));
            Value::Array(Vec::new())
        }
    }
}

fn source(problems: &mut Vec<Problem>, path: &str, item: Value) -> Option<Value> {
    let Value::Object(entries) = item else {
        problems.push((
            path.to_owned(),
            format!("must be a map with `table`, found {}", kind(&item)),
        ));
        return None;
    };
    let mut out = Map::new();
    for (key, value) in entries {
        match key.as_str() {
            "table" => keep_string(&mut out, problems, path, &key, value),
            "formats" => match value {
                Value::Array(items) => {
                    let mut good = Vec::new();
                    for (i, f) in items.into_iter().enumerate() {
                        match f.as_str() {
                            Some(s) if FORMATS.contains(&s) => good.push(f),
                            _ => problems.push((
                                format!("{path}.formats[{i}]"),
                                format!(
                                    "unknown format {}; expected one of {}",
                                    show(&f),
                                    FORMATS.join(", ")
                                ),
                            )),
                        }
                    }
                    out.insert(key, Value::Array(good));
                }
                other => problems.push((
                    format!("{path}.formats"),
                    format!("must be a list of formats, found {}", kind(&other)),
                )),
            },
            other => problems.push((format!("{path}.{other}"), unknown(SOURCE))),
        }
    }
    if !out.contains_key("table") {
        if !problems.iter().any(|(p, _)| p == &format!("{path}.table")) {
            problems.push((format!("{path}.table"), "is required".to_owned()));
        }
        return None;
    }
    Some(Value::Object(out))
}

fn field(problems: &mut Vec<Problem>, path: &str, item: Value) -> Option<Value> {
    let Value::Object(entries) = item else {
        problems.push((
            path.to_owned(),
            format!(
                "must be a map with `name` and `type`, found {}",
                kind(&item)
            ),
        ));
        return None;
    };
    let label = entries
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| path.to_owned(), |n| format!("{path} ({n})"));
    let mut out = Map::new();
    for (key, value) in entries {
        let at = format!("{label}.{key}");
        match key.as_str() {
            "name" | "type" | "from" | "description" => {
                keep_string(&mut out, problems, &label, &key, value)
            }
            "required" => match value {
                Value::Bool(_) => {
                    out.insert(key, value);
                }
                other => {
                    problems.push((at, format!("must be true or false, found {}", kind(&other))))
                }
            },
            "default" => {
                out.insert(key, value);
            }
            "unit" => match value.as_str() {
                Some(u) if UNITS.contains(&u) => {
                    out.insert(key, value);
                }
                _ => problems.push((
                    at,
                    format!(
                        "unknown unit {}; expected one of {}",
                        show(&value),
                        UNITS.join(", ")
                    ),
                )),
            },
            "scale" => match value.as_i64().and_then(|s| i32::try_from(s).ok()) {
                Some(_) => {
                    out.insert(key, value);
                }
                None => problems.push((
                    at,
                    format!("must be a whole number, found {}", show(&value)),
                )),
            },
            other => problems.push((format!("{label}.{other}"), unknown(FIELD))),
        }
    }
    for required in ["name", "type"] {
        if !out.contains_key(required) {
            let at = format!("{label}.{required}");
            if !problems.iter().any(|(p, _)| p == &at) {
                problems.push((at, "is required".to_owned()));
            }
            return None;
        }
    }
    Some(Value::Object(out))
}

fn keep_string(
    out: &mut Map<String, Value>,
    problems: &mut Vec<Problem>,
    path: &str,
    key: &str,
    value: Value,
) {
    if value.is_string() {
        out.insert(key.to_owned(), value);
    } else if matches!(value, Value::Bool(_) | Value::Number(_)) {
        // A YAML scalar such as `n`, `on` or `1` is text where text is expected.
        out.insert(key.to_owned(), Value::String(value.to_string()));
    } else {
        let at = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        };
        problems.push((at, format!("must be text, found {}", kind(&value))));
    }
}

fn unknown(allowed: &[&str]) -> String {
    format!("unknown key; expected one of {}", allowed.join(", "))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => kind(other).to_owned(),
    }
}

/// The line (from 1) a problem at `path` most likely stands on: the last key of the path (or,
/// for a list item, its value) as it appears in the file, after the lines of the earlier parts.
pub(super) fn line_of(text: &str, path: &str) -> Option<usize> {
    let mut start = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        // `fields[2] (total)` or `formats[1]`: find the key, then the n-th item or the named one.
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        let named = part
            .split_once(" (")
            .and_then(|(_, n)| n.strip_suffix(')'))
            .map(str::to_owned);
        let key = key.trim();
        let found = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let t = l
                .trim_start()
                .trim_start_matches("- ")
                .trim_start_matches('[');
            t.starts_with(&format!("{key}:"))
                || t.starts_with(&format!("{key} ="))
                || t.starts_with(&format!("[[{key}]]"))
                || t.starts_with(&format!("{key}]]"))
        });
        let Some((i, _)) = found else {
            return (start > 0).then_some(start);
        };
        start = i;
        let index = rest.split(']').next().and_then(|n| n.parse::<usize>().ok());
        if lines[start].contains(": [") || lines[start].contains("= [") {
            // A list written on one line: its items stand on the key's line.
        } else if let Some(n) = index {
            // A YAML list starts after its key; a TOML array of tables starts at it.
            let first = if lines[start].trim_start().starts_with("[[") {
                start
            } else {
                start + 1
            };
            let items: Vec<usize> = lines
                .iter()
                .enumerate()
                .skip(first)
                .filter(|(_, l)| {
                    let t = l.trim_start();
                    t.starts_with("- ") || t.starts_with(&format!("[[{key}]]"))
                })
                .map(|(j, _)| j)
                .collect();
            if let Some(j) = items.get(n) {
                start = *j;
            }
        } else if let Some(name) = named {
            if let Some((j, _)) = lines
                .iter()
                .enumerate()
                .skip(start)
                .find(|(_, l)| l.contains(&name))
            {
                start = j;
            }
        }
    }
    Some(start + 1)
}
