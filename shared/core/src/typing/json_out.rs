//! Writing source values as compact JSON text: for `json` fields, and for values `_extra` keeps
//! as text. DynamoDB values become plain JSON (`N` as number literals, `B` as base64).

use std::collections::BTreeMap;

use base64::Engine;
use serde_dynamo::AttributeValue;

use crate::value::SrcRef;

/// Writes a source value as compact JSON. DynamoDB values map to JSON naturally: `N` becomes a
/// number literal with its exact text, `B` base64 text, sets arrays.
pub fn write_json(value: SrcRef<'_>, out: &mut String) -> Result<(), &'static str> {
    match value {
        SrcRef::Json(raw) => {
            out.push_str(&crate::json::compact_raw(raw));
            Ok(())
        }
        SrcRef::Ddb(v) => {
            write_ddb_json(v, out);
            Ok(())
        }
        SrcRef::Str(s) => {
            push_json_string(s, out);
            Ok(())
        }
        SrcRef::Num(n) => {
            out.push_str(n);
            Ok(())
        }
        SrcRef::Bin(b) => {
            push_json_string(&base64::engine::general_purpose::STANDARD.encode(b), out);
            Ok(())
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serialising a str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn write_ddb_json(v: &AttributeValue, out: &mut String) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match v {
        AttributeValue::Null(_) => out.push_str("null"),
        AttributeValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AttributeValue::N(n) => out.push_str(n),
        AttributeValue::S(s) => push_json_string(s, out),
        AttributeValue::B(b) => push_json_string(&b64(b), out),
        AttributeValue::L(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ddb_json(item, out);
            }
            out.push(']');
        }
        AttributeValue::M(m) => {
            let sorted: BTreeMap<&String, &AttributeValue> = m.iter().collect();
            out.push('{');
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                write_ddb_json(item, out);
            }
            out.push('}');
        }
        AttributeValue::Ss(s) => {
            let items: Vec<String> = s
                .iter()
                .map(|x| serde_json::to_string(x).unwrap_or_default())
                .collect();
            out.push_str(&format!("[{}]", items.join(",")));
        }
        AttributeValue::Ns(n) => out.push_str(&format!("[{}]", n.join(","))),
        AttributeValue::Bs(b) => {
            let items: Vec<String> = b.iter().map(|x| format!("\"{}\"", b64(x))).collect();
            out.push_str(&format!("[{}]", items.join(",")));
        }
    }
}
