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

use serde::Deserialize;
use serde_dynamo::AttributeValue;

use crate::change::Format;
pub use crate::field_type::FieldType;
use crate::time::TimeUnit;
use crate::typing::coerce_json;

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
    /// The attribute name in the typed table.
    pub name: String,
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
            .map(|f| (f.name.clone(), f.ty.key_attribute_type().unwrap_or("S")))
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
    /// The path of the offending entry, such as `fields[2].type`; empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
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
/// extension.
pub fn parse(file: &str, text: &str) -> Result<Contract, ContractErrors> {
    let err = |field: &str, message: String| ContractError {
        file: file.to_owned(),
        field: field.to_owned(),
        message,
    };
    let raw: ContractFile = if file.ends_with(".toml") {
        toml::from_str(text)
            .map_err(|e| ContractErrors(vec![err("", e.to_string().trim().to_owned())]))?
    } else if file.ends_with(".yaml") || file.ends_with(".yml") {
        serde_saphyr::from_str(text)
            .map_err(|e| ContractErrors(vec![err("", e.to_string().trim().to_owned())]))?
    } else {
        return Err(ContractErrors(vec![err(
            "",
            "a contract file ends in .yaml, .yml or .toml".into(),
        )]));
    };
    check(file, raw)
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
                name: f.name.clone(),
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
        match fields.iter().position(|f| &f.name == k) {
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
mod tests {
    use super::*;

    const ORDERS: &str = r#"
name: orders
version: 2
sources:
  - table: orders
    formats: [ddb-stream, app]
primary_key: [order_id]
unknown_fields: keep
fields:
  - name: order_id
    type: string
  - name: total
    type: decimal
    from: amounts.total
  - name: status
    type: string
    default: new
  - name: tags
    type: set<string>
  - name: lines
    type: list<json>
"#;

    #[test]
    fn parses_yaml() {
        let c = parse("orders.yaml", ORDERS).unwrap();
        assert_eq!(c.name, "orders");
        assert_eq!(c.version, 2);
        assert_eq!(c.fields[1].from, ["amounts", "total"]);
        assert_eq!(c.fields[2].default, Some(AttributeValue::S("new".into())));
        assert_eq!(c.fields[3].ty, FieldType::Set(Box::new(FieldType::String)));
        assert!(c.fields[0].required, "key fields are required");
        assert_eq!(c.unknown_fields, UnknownFields::Keep);
        assert!(c.accepts("orders", Format::App));
        assert!(!c.accepts("orders", Format::Dms));
        assert!(!c.accepts("customers", Format::App));
    }

    #[test]
    fn parses_toml() {
        let text = r#"
name = "customers"
version = 1
primary_key = ["id", "region"]
[[sources]]
table = "customers"
[[fields]]
name = "id"
type = "int"
[[fields]]
name = "region"
type = "string"
[[fields]]
name = "since"
type = "timestamp"
unit = "ms"
"#;
        let c = parse("customers.toml", text).unwrap();
        assert_eq!(
            c.key_fields().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["id", "region"]
        );
        assert_eq!(c.fields[2].unit, Some(TimeUnit::Milliseconds));
        assert!(
            c.accepts("customers", Format::Dms),
            "no formats means every format"
        );
    }

    #[test]
    fn reports_every_problem_with_file_and_field() {
        let text = r#"
name: "bad name!"
version: 0
sources: []
primary_key: [missing, total, tags]
fields:
  - name: _seq
    type: string
  - name: total
    type: float
  - name: total
    type: money
  - name: tags
    type: set<bool>
  - name: status
    type: string
    required: true
    default: x
  - name: n
    type: int
    default: abc
  - name: at
    type: string
    unit: ms
  - name: born
    type: date
    unit: ms
  - name: price
    type: float
    scale: 2
"#;
        let errs = parse("bad.yaml", text).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(has("bad.yaml: name: must be 1 to 200"), "{text:#?}");
        assert!(has("bad.yaml: version: must be 1 or more"));
        assert!(has("bad.yaml: sources: must name at least one"));
        assert!(has(
            "fields[0] (_seq).name: names starting with `_` are reserved"
        ));
        assert!(has("fields[2] (total).name: is used by an earlier field"));
        assert!(has("fields[2] (total).type: unknown type \"money\""));
        assert!(has(
            "fields[3] (tags).type: a set holds strings, numbers or binaries, not bool"
        ));
        assert!(has(
            "fields[4] (status).default: a required field has no default"
        ));
        assert!(has("fields[5] (n).default: does not fit the field's type"));
        assert!(has(
            "fields[6] (at).unit: a timestamp or time field has a unit of s, ms, us or ns; a date field has `days`"
        ));
        assert!(has("fields[7] (born).unit: a timestamp or time field"));
        assert!(has(
            "fields[8] (price).scale: only a decimal field has a scale"
        ));
        assert!(has("primary_key: names one field"));
        assert!(has("primary_key[0]: \"missing\" is not a field"));
        assert!(has("primary_key[1]: \"total\" is a float"));
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_reported() {
        let e = parse("x.yaml", "name: [unclosed").unwrap_err();
        assert!(e.to_string().starts_with("x.yaml: "), "{e}");
        let e = parse(
            "x.yaml",
            &ORDERS.replace("unknown_fields", "unknown_feilds"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown_feilds"), "{e}");
        let e = parse("x.toml", "name = ").unwrap_err();
        assert!(e.to_string().starts_with("x.toml: "), "{e}");
        let e = parse("x.json", "{}").unwrap_err();
        assert!(e.to_string().contains(".yaml, .yml or .toml"), "{e}");
    }

    #[test]
    fn field_types_parse_and_print() {
        for t in [
            "string",
            "list<int>",
            "set<decimal>",
            "list<list<timestamp>>",
            "set<binary>",
        ] {
            assert_eq!(FieldType::parse(t).unwrap().to_string(), t);
        }
        assert_eq!(
            FieldType::parse(" list < int > ").unwrap().to_string(),
            "list<int>"
        );
        assert!(FieldType::parse("set<list<int>>").is_err());
        assert!(FieldType::parse("list<>").is_err());
    }

    #[test]
    fn the_published_json_schema_matches_the_parser() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/contract.schema.json")).unwrap();
        let keys = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let top = keys(&schema["properties"]);
        assert_eq!(
            top,
            [
                "name",
                "version",
                "description",
                "sources",
                "primary_key",
                "unknown_fields",
                "fields"
            ]
            .into_iter()
            .map(String::from)
            .collect()
        );
        let field = keys(&schema["properties"]["fields"]["items"]["properties"]);
        assert_eq!(
            field,
            [
                "name",
                "type",
                "required",
                "from",
                "default",
                "unit",
                "scale",
                "description"
            ]
            .into_iter()
            .map(String::from)
            .collect()
        );
        // Every key the schema allows is one the parser takes: a contract using all of them parses.
        let every = r#"
name: all
version: 1
description: every key
sources: [{table: t, formats: [app, ddb-stream, debezium, dms, ddb-kinesis]}]
primary_key: [id]
unknown_fields: keep
fields:
  - {name: id, type: string, required: true, from: id, description: key}
  - {name: at, type: timestamp, unit: ms, default: 0}
  - {name: price, type: decimal, scale: 2}
  - {name: opens, type: time, unit: us}
  - {name: born, type: date, unit: days}
"#;
        parse("all.yaml", every).unwrap();
        // The example contracts shipped for the demo check.
        for (name, text) in [
            (
                "orders.yaml",
                include_str!("../../../infra/contracts/orders.yaml"),
            ),
            (
                "customers.toml",
                include_str!("../../../infra/contracts/customers.toml"),
            ),
        ] {
            parse(name, text).unwrap();
        }
    }
}
