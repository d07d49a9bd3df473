//! Tests of contract parsing: both syntaxes, every problem at once, lines, the JSON schema.

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
        c.key_fields().map(|f| &*f.name).collect::<Vec<_>>(),
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
    assert!(has("bad.yaml:2: name: must be 1 to 200"), "{text:#?}");
    assert!(has("bad.yaml:3: version: must be 1 or more"));
    assert!(has("bad.yaml:4: sources: must name at least one"));
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
fn structural_and_semantic_problems_are_all_reported_in_one_run() {
    let text = "name: orders
version: 1
colour: blue
sources: [{table: orders}]
primary_key: [order_id]
fields:
  - name: id
    type: string
  - name: total
    type: money
  - name: at
    type: timestamp
    unit: minutes
  - name: amount
    type: decimal
    scale: abc
  - name: id
    type: int
";
    let errs = parse("six.yaml", text).unwrap_err().0;
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let expect = [
        "six.yaml:3: colour: unknown key",
        "six.yaml:5: primary_key[0]: \"order_id\" is not a field",
        "six.yaml:10: fields[1] (total).type: unknown type \"money\"",
        "six.yaml:13: fields[2] (at).unit: unknown unit \"minutes\"",
        "six.yaml:16: fields[3] (amount).scale: must be a whole number",
        "six.yaml:17: fields[4] (id).name: is used by an earlier field",
    ];
    assert_eq!(errs.len(), 6, "{shown:#?}");
    for e in expect {
        assert!(shown.iter().any(|s| s.starts_with(e)), "{e} in {shown:#?}");
    }
}

#[test]
fn toml_problems_have_lines_too() {
    let text = "name = \"t\"\nversion = 1\nprimary_key = [\"id\"]\n\n[[sources]]\ntable = \"t\"\n\n[[fields]]\nname = \"id\"\ntype = \"string\"\n\n[[fields]]\nname = \"n\"\ntype = \"number\"\n";
    let errs = parse("t.toml", text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(14), "the type line: {errs:?}");
}

#[test]
fn syntax_errors_and_unknown_keys_are_reported() {
    let e = parse("x.yaml", "name: [unclosed").unwrap_err();
    assert!(
        e.to_string().starts_with("x.yaml:1: line 1 column 7"),
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    let e = parse(
        "x.yaml",
        &ORDERS.replace("unknown_fields", "unknown_feilds"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown_feilds"), "{e}");
    let e = parse("x.toml", "name = ").unwrap_err();
    assert!(e.to_string().starts_with("x.toml:"), "{e}");
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
        serde_json::from_str(include_str!("../../../../schemas/contract.schema.json")).unwrap();
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
            include_str!("../../../../infra/contracts/orders.yaml"),
        ),
        (
            "customers.toml",
            include_str!("../../../../infra/contracts/customers.toml"),
        ),
    ] {
        parse(name, text).unwrap();
    }
}
