//! Writing source values as compact JSON text: for `json` fields, and for values `_extra` keeps
//! as text. DynamoDB values become plain JSON (`N` as number literals, `B` as base64).

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
    // JSON escapes only quotes, backslashes and control characters: text without them is
    // written as it is, with no string in between.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // Serialising a str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// `[a,b,…]`, each item written by `item`.
fn push_list<T>(items: &[T], out: &mut String, item: impl Fn(&T, &mut String)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(x, out);
    }
    out.push(']');
}

fn write_ddb_json(v: &AttributeValue, out: &mut String) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match v {
        AttributeValue::Null(_) => out.push_str("null"),
        AttributeValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AttributeValue::N(n) => out.push_str(n),
        AttributeValue::S(s) => push_json_string(s, out),
        AttributeValue::B(b) => push_json_string(&b64(b), out),
        AttributeValue::L(l) => push_list(l, out, write_ddb_json),
        AttributeValue::M(m) => {
            let mut sorted: Vec<(&String, &AttributeValue)> = m.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
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
        AttributeValue::Ss(s) => push_list(s, out, |x, out| push_json_string(x, out)),
        AttributeValue::Ns(n) => push_list(n, out, |x, out| out.push_str(x)),
        AttributeValue::Bs(b) => push_list(b, out, |x, out| {
            out.push('"');
            out.push_str(&b64(x));
            out.push('"');
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Strings are written as serde_json writes them, escapes and all.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(
            s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}/é😀])*",
        ) {
            let mut out = String::from("x");
            push_json_string(&s, &mut out);
            proptest::prop_assert_eq!(&out[1..], serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn sets_and_lists_are_json_arrays() {
        let mut out = String::new();
        write_ddb_json(
            &AttributeValue::L(vec![
                AttributeValue::Ss(vec!["a\"b".into(), "c".into()]),
                AttributeValue::Ns(vec!["1".into(), "2.50".into()]),
                AttributeValue::Bs(vec![vec![0, 1], vec![]]),
                AttributeValue::L(vec![]),
                AttributeValue::Ss(vec![]),
            ]),
            &mut out,
        );
        assert_eq!(out, r#"[["a\"b","c"],[1,2.50],["AAE=",""],[],[]]"#);
    }
}
