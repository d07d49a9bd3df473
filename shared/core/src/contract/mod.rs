//! Table contracts (DESIGN §3.4): what a typed table holds and where each field comes from.
//!
//! One file per typed table, in YAML (`.yaml`, `.yml`) or TOML (`.toml`):
//!
//! ```yaml
//! name: orders                 # the typed table
//! version: 2                   # raise it on every change; rows of older versions are rewritten
//! sources:                     # the source tables (and optionally formats) that feed it
//!   - table: orders
//!     formats: [ddb-stream, app]
//! primary_key: [order_id]      # one field (partition key) or two (partition and sort key)
//! unknown_fields: ignore       # or `keep`: source columns no field reads go under `_extra`
//! fields:
//!   - name: order_id
//!     type: string
//!     required: true
//!   - name: total
//!     type: decimal
//!     from: amounts.total      # a path into the source image: renames and nesting
//!   - name: status
//!     type: string
//!     default: new
//! ```
//!
//! [`parse`] checks a file completely and reports every problem with the file, the field path
//! and what is wrong, so `sluice contracts validate` can list them all at once.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_dynamo::AttributeValue;

use crate::change::Format;
pub use crate::field_type::FieldType;
use crate::time::TimeUnit;
use crate::typing::coerce_json;

mod structure;

/// The contract file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractFile {
    name: String,
    version: u64,
    #[serde(default)]
    description: Option<String>,
    sources: Vec<SourceFile>,
    primary_key: Vec<String>,
    #[serde(default)]
    unknown_fields: UnknownFields,
    fields: Vec<FieldFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    table: String,
    #[serde(default)]
    formats: Vec<Format>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    default: Option<serde_json::Value>,
    #[serde(default)]
    unit: Option<TimeUnit>,
    #[serde(default)]
    scale: Option<i32>,
    #[serde(default)]
    description: Option<String>,
}

/// What to do with source columns that no field reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    /// Drop them.
    #[default]
    Ignore,
    /// Store them, as they came, in a map attribute `_extra`.
    Keep,
}

/// One field of a typed table.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The attribute name in the typed table, shared by every row typed under the contract.
    pub name: Arc<str>,
    /// Its type.
    pub ty: FieldType,
    /// Whether a change without it is a contract violation.
    pub required: bool,
    /// The path into the source image, segment by segment (the name when not given).
    pub from: Vec<String>,
    /// The value used when the source has none, already typed.
    pub default: Option<AttributeValue>,
    /// The unit of numbers for a timestamp, date or time field, when the source does not say.
    pub unit: Option<TimeUnit>,
    /// For a decimal field: string values are Kafka Connect Decimal bytes (base64) with this
    /// scale, for Debezium events that come without their schema.
    pub scale: Option<i32>,
}

impl Field {
    /// The source path as written, for messages.
    pub fn from_path(&self) -> String {
        self.from.join(".")
    }
}

/// A source table that feeds a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The source table as raw lines name it.
    pub table: String,
    /// The formats accepted from it; empty means every format.
    pub formats: Vec<Format>,
}

impl Source {
    /// Whether a change of `table` in `format` feeds this contract.
    pub fn matches(&self, table: &str, format: Format) -> bool {
        self.table == table && (self.formats.is_empty() || self.formats.contains(&format))
    }
}

/// A checked contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The typed table's name (without any deployment prefix).
    pub name: String,
    /// The contract version; rows written under an older version are rewritten.
    pub version: u64,
    /// A description for people.
    pub description: Option<String>,
    /// The source tables that feed it.
    pub sources: Vec<Source>,
    /// Indices into `fields` of the partition key and, optionally, the sort key.
    pub primary_key: Vec<usize>,
    /// What happens to source columns no field reads.
    pub unknown_fields: UnknownFields,
    /// The fields.
    pub fields: Vec<Field>,
}

impl Contract {
    /// The key fields, partition key first.
    pub fn key_fields(&self) -> impl Iterator<Item = &Field> {
        self.primary_key.iter().filter_map(|&i| self.fields.get(i))
    }

    /// The typed table's key schema: (attribute, `S`/`N`/`B`), partition key first.
    pub fn key_schema(&self) -> Vec<(String, &'static str)> {
        self.key_fields()
            .map(|f| (f.name.to_string(), f.ty.key_attribute_type().unwrap_or("S")))
            .collect()
    }

    /// Whether a change of `table` in `format` feeds this contract.
    pub fn accepts(&self, table: &str, format: Format) -> bool {
        self.sources.iter().any(|s| s.matches(table, format))
    }
}

/// One problem in a contract file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    /// The file.
    pub file: String,
    /// The line (from 1) the problem most likely stands on, when it can be told.
    pub line: Option<usize>,
    /// The path of the offending entry, such as `fields[2].type`; empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one contract file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ContractErrors(pub Vec<ContractError>);

/// Whether a file name is a contract file (by extension).
pub fn is_contract_file(name: &str) -> bool {
    [".yaml", ".yml", ".toml"].iter().any(|e| name.ends_with(e))
}

/// Parses and checks one contract file. `file` names it in errors and picks the syntax by
/// extension. Every problem is reported at once: the structural ones (unknown keys, values of
/// the wrong kind) and the semantic ones (an unknown type, a key that is not a field), each with
/// its path and, where it can be told, its line.
pub fn parse(file: &str, text: &str) -> Result<Contract, ContractErrors> {
    let err = |field: String, message: String| ContractError {
        file: file.to_owned(),
        line: structure::line_of(text, &field),
        field,
        message,
    };
    let syntax = |message: String| {
        // The parser's first line says it all; the rest is a snippet of the file.
        let first = message.lines().next().unwrap_or_default().trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        ContractErrors(vec![ContractError {
            file: file.to_owned(),
            line: line_in(first),
            field: String::new(),
            message: first.to_owned(),
        }])
    };
    // The typed reading first: it knows which YAML scalars are text (a field named `n` or `on`).
    let typed: Result<ContractFile, String> = if file.ends_with(".toml") {
        toml::from_str(text).map_err(|e| e.to_string())
    } else if file.ends_with(".yaml") || file.ends_with(".yml") {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    } else {
        return Err(syntax(
            "a contract file ends in .yaml, .yml or .toml".into(),
        ));
    };
    let (raw, mut errors) = match typed {
        Ok(raw) => (raw, Vec::new()),
        Err(first) => {
            // Not a contract as written: read it as a plain document, find every structural
            // problem, and check the rest of it.
            let doc: serde_json::Value = if file.ends_with(".toml") {
                toml::from_str(text).map_err(|e| syntax(e.to_string()))?
            } else {
                serde_saphyr::from_str(text).map_err(|e| syntax(e.to_string()))?
            };
            let (doc, problems) = structure::check(doc);
            let mut errors: Vec<ContractError> =
                problems.into_iter().map(|(p, m)| err(p, m)).collect();
            if errors.is_empty() {
                return Err(syntax(first));
            }
            match serde_json::from_value::<ContractFile>(doc) {
                Ok(raw) => (raw, errors),
                Err(_) => {
                    errors.sort_by_key(|e| e.line);
                    return Err(ContractErrors(errors));
                }
            }
        }
    };
    match check(file, raw) {
        Ok(contract) if errors.is_empty() => Ok(contract),
        Ok(_) => Err(ContractErrors(errors)),
        Err(ContractErrors(semantic)) => {
            errors.extend(semantic.into_iter().map(|e| ContractError {
                line: structure::line_of(text, &e.field),
                ..e
            }));
            errors.sort_by_key(|e| e.line);
            Err(ContractErrors(errors))
        }
    }
}

/// The line a parser's message names (`… at line 3 column 5`).
fn line_in(message: &str) -> Option<usize> {
    let after = message.split("line ").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check(file: &str, raw: ContractFile) -> Result<Contract, ContractErrors> {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| {
        errors.push(ContractError {
            file: file.to_owned(),
            line: None,
            field,
            message,
        })
    };
    if !valid_table_name(&raw.name) {
        err(
            "name".into(),
            "must be 1 to 200 characters of A-Z, a-z, 0-9, `_`, `-` and `.` (it names a DynamoDB table)".into(),
        );
    }
    if raw.version == 0 {
        err("version".into(), "must be 1 or more".into());
    }
    if raw.sources.is_empty() {
        err(
            "sources".into(),
            "must name at least one source table".into(),
        );
    }
    for (i, s) in raw.sources.iter().enumerate() {
        if s.table.trim().is_empty() {
            err(format!("sources[{i}].table"), "must not be empty".into());
        }
    }
    if raw.fields.is_empty() {
        err("fields".into(), "must list at least one field".into());
    }
    let mut names = BTreeSet::new();
    let mut fields = Vec::with_capacity(raw.fields.len());
    for (i, f) in raw.fields.iter().enumerate() {
        let at = |part: &str| format!("fields[{i}] ({}).{part}", f.name);
        if f.name.is_empty() {
            err(format!("fields[{i}].name"), "must not be empty".into());
        } else if f.name.starts_with('_') {
            err(
                at("name"),
                "names starting with `_` are reserved for bookkeeping attributes".into(),
            );
        } else if !names.insert(f.name.clone()) {
            err(at("name"), "is used by an earlier field".into());
        }
        let ty = match FieldType::parse(&f.ty) {
            Ok(t) => Some(t),
            Err(e) => {
                err(at("type"), e);
                None
            }
        };
        let from: Vec<String> = f
            .from
            .as_deref()
            .unwrap_or(&f.name)
            .split('.')
            .map(str::to_owned)
            .collect();
        if from.iter().any(String::is_empty) {
            err(
                at("from"),
                "a path is names joined by `.`, none of them empty".into(),
            );
        }
        if let (Some(unit), Some(t)) = (f.unit, &ty) {
            let base = match t {
                FieldType::List(e) | FieldType::Set(e) => e.as_ref(),
                other => other,
            };
            let fits = match base {
                FieldType::Timestamp | FieldType::Time => unit != TimeUnit::Days,
                FieldType::Date => unit == TimeUnit::Days,
                _ => false,
            };
            if !fits {
                err(
                    at("unit"),
                    "a timestamp or time field has a unit of s, ms, us or ns; a date field has `days`; other fields have none".into(),
                );
            }
        }
        if f.scale.is_some() && ty.as_ref() != Some(&FieldType::Decimal) {
            err(at("scale"), "only a decimal field has a scale".into());
        }
        if f.required && f.default.is_some() {
            err(
                at("default"),
                "a required field has no default: it is required because the source must have it"
                    .into(),
            );
        }
        let _ = &f.description;
        let mut default = None;
        if let (Some(ty), Some(value)) = (&ty, &f.default) {
            match coerce_json(value, ty, f.unit) {
                Ok(v) => default = v,
                Err(e) => err(at("default"), format!("does not fit the field's type: {e}")),
            }
        }
        if let Some(ty) = ty {
            fields.push(Field {
                name: Arc::from(f.name.as_str()),
                ty,
                required: f.required,
                from,
                default,
                unit: f.unit,
                scale: f.scale,
            });
        }
    }
    let mut primary_key = Vec::new();
    if raw.primary_key.is_empty() || raw.primary_key.len() > 2 {
        err(
            "primary_key".into(),
            "names one field (the partition key) or two (partition and sort key), as DynamoDB keys have".into(),
        );
    }
    for (i, k) in raw.primary_key.iter().enumerate() {
        match fields.iter().position(|f| *f.name == **k) {
            None => err(format!("primary_key[{i}]"), format!("{k:?} is not a field")),
            Some(pos) => {
                if fields[pos].ty.key_attribute_type().is_none() {
                    err(
                        format!("primary_key[{i}]"),
                        format!(
                            "{k:?} is a {}; key fields are string, int, decimal, binary, timestamp or date",
                            fields[pos].ty
                        ),
                    );
                }
                if fields[pos].default.is_some() {
                    err(
                        format!("primary_key[{i}]"),
                        format!("{k:?} is a key field and cannot have a default"),
                    );
                }
                primary_key.push(pos);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ContractErrors(errors));
    }
    // Key fields are always required: a row cannot be written without its key.
    for &k in &primary_key {
        fields[k].required = true;
    }
    Ok(Contract {
        name: raw.name,
        version: raw.version,
        description: raw.description,
        sources: raw
            .sources
            .into_iter()
            .map(|s| Source {
                table: s.table,
                formats: s.formats,
            })
            .collect(),
        primary_key,
        unknown_fields: raw.unknown_fields,
        fields,
    })
}
#[cfg(test)]
mod tests;
