//! A raw line's members read without reading its record (see [`RawLineView::quick`]).
//!
//! Reading a line with `serde_json` crosses every byte of its record to find where it ends,
//! and the record's decoder then crosses them all again. The record is last in every line
//! sluice writes, so it ends where the line does: the members before it are read here, one
//! small value at a time and each by the same `serde_json` reader as the careful path, and the
//! record is left to its decoder.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::RawLineView;
use crate::json::quote_or_backslash;

/// The members of a raw line, in the order sluice writes them.
const MEMBERS: [&str; 10] = [
    "v",
    "format",
    "table",
    "op",
    "seq",
    "ts_ms",
    "ts_source",
    "ingested_ms",
    "origin",
    "record",
];

impl<'a> RawLineView<'a> {
    /// Reads a raw line whose record is its last member, as sluice writes every line, without
    /// reading the record: the record is taken to be the text from its member's value to the
    /// line's closing brace, unchecked. `None` for a line of any other shape (a member unknown,
    /// missing or written twice, an escape in a member's name, a value that does not read):
    /// the caller reads it with `serde_json` instead, which says what is wrong.
    ///
    /// Only for a caller that reads the record in full next and, if that fails, reads the line
    /// the careful way. That is also what makes this exact: a record that is not last leaves
    /// `,` and more after it, which no JSON reader takes as one value.
    pub fn quick(text: &'a str) -> Option<Self> {
        let mut c = Cursor { text, i: 0 };
        c.eat(b'{')?;
        let mut values: [Option<&'a str>; 9] = [None; 9];
        loop {
            let name = c.name()?;
            c.eat(b':')?;
            let slot = MEMBERS.iter().position(|m| *m == name)?;
            if slot == MEMBERS.len() - 1 {
                let record = text[c.i..]
                    .trim_matches(is_space)
                    .strip_suffix('}')?
                    .trim_end_matches(is_space);
                if record.is_empty() {
                    return None;
                }
                return Self::from_members(values, record);
            }
            let value = c.value()?;
            if values[slot].replace(value).is_some() {
                return None;
            }
            c.eat(b',')?;
        }
    }

    fn from_members(values: [Option<&'a str>; 9], record: &'a str) -> Option<Self> {
        let [v, format, table, op, seq, ts_ms, ts_source, ingested_ms, origin] = values;
        Some(Self {
            v: read(v?)?,
            format: read(format?)?,
            table: string(table?)?,
            op: read(op?)?,
            seq: read(seq?)?,
            ts_ms: read(ts_ms?)?,
            ts_source: read(ts_source?)?,
            ingested_ms: read(ingested_ms?)?,
            origin: serde_json::from_str::<&'a RawValue>(origin?).ok()?,
            record,
        })
    }
}

fn read<T: DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_str(value).ok()
}

/// A JSON string's text, borrowed when it has nothing to unescape.
fn string(value: &str) -> Option<Cow<'_, str>> {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if !inner.bytes().any(|b| b == b'\\' || b < 0x20) => Some(Cow::Borrowed(inner)),
        _ => read::<String>(value).map(Cow::Owned),
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A position in a line. It finds where values end; `serde_json` reads them.
struct Cursor<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.i).is_some_and(|b| is_space(char::from(*b))) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.text.as_bytes().get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    /// A member's name, which must hold no escape.
    fn name(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = quote_or_backslash(self.text.as_bytes(), start)?;
        if self.text.as_bytes()[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.text.get(start..end)
    }

    /// The text of the next value: a string, an object or array (brackets counted outside
    /// strings), or a number or literal (up to the next delimiter). Nothing is checked.
    fn value(&mut self) -> Option<&'a str> {
        self.skip_space();
        let bytes = self.text.as_bytes();
        let start = self.i;
        match bytes.get(start)? {
            b'"' => self.i = string_end(bytes, start + 1)?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut i = start;
                loop {
                    match bytes.get(i)? {
                        b'"' => {
                            i = string_end(bytes, i + 1)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                self.i = i + 1;
            }
            _ => {
                let len = bytes[start..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
                if len == 0 {
                    return None;
                }
                self.i = start + len;
            }
        }
        self.text.get(start..self.i)
    }
}

/// Where the string whose text starts at `i` ends: just past its closing quote.
fn string_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = quote_or_backslash(bytes, i)?;
        if bytes[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"v":1,"format":"app","table":"t","op":"insert","seq":"0000000000000000000000000000000000000007","ts_ms":5,"ts_source":"source","ingested_ms":6,"origin":{"kind":"sqs","arn":"a}\"{","id":"m"},"record":{"a":[1,{"b":"}"}]}}"#;

    fn careful(text: &str) -> Option<RawLineView<'_>> {
        serde_json::from_str(text).ok()
    }

    fn same(a: &RawLineView<'_>, b: &RawLineView<'_>) -> bool {
        (
            a.v,
            a.format,
            &a.table,
            a.op,
            &a.seq,
            a.ts_ms,
            a.ts_source,
            a.ingested_ms,
        ) == (
            b.v,
            b.format,
            &b.table,
            b.op,
            &b.seq,
            b.ts_ms,
            b.ts_source,
            b.ingested_ms,
        ) && a.origin.get() == b.origin.get()
            && a.record == b.record
    }

    #[test]
    fn a_line_as_sluice_writes_it_reads_as_the_careful_reader_reads_it() {
        let quick = RawLineView::quick(LINE).unwrap();
        assert!(same(&quick, &careful(LINE).unwrap()));
        assert_eq!(quick.record, r#"{"a":[1,{"b":"}"}]}"#);
        assert_eq!(
            quick.origin.get(),
            r#"{"kind":"sqs","arn":"a}\"{","id":"m"}"#
        );
        assert!(matches!(quick.table, Cow::Borrowed("t")));

        let spaced = LINE
            .replace(r#""v":1,"#, "  \"v\" : 1 ,\t")
            .replace(r#""record":"#, r#""record" : "#)
            .replacen("}}", "} } \r", 1);
        let spaced = format!(" {spaced}");
        let quick = RawLineView::quick(&spaced).unwrap();
        assert!(same(&quick, &careful(&spaced).unwrap()), "{spaced}");

        let escaped = LINE.replace(r#""table":"t""#, r#""table":"t\u00e9""#);
        let quick = RawLineView::quick(&escaped).unwrap();
        assert_eq!(quick.table, "t\u{e9}");
        assert!(same(&quick, &careful(&escaped).unwrap()));
    }

    #[test]
    fn any_other_shape_is_left_to_the_careful_reader() {
        let cases = [
            // The record not last: what follows it would be read as part of it.
            LINE.replace(r#","record":{"a":[1,{"b":"}"}]}"#, "")
                .replacen(r#""v":1"#, r#""record":{"a":1},"v":1"#, 1),
            // A member twice, unknown, missing, or with an escaped name.
            LINE.replacen(r#""op":"insert""#, r#""op":"insert","op":"delete""#, 1),
            LINE.replacen(r#""op":"insert""#, r#""op":"insert","extra":1"#, 1),
            LINE.replacen(r#""op":"insert","#, "", 1),
            LINE.replacen(r#""v""#, r#""\u0076""#, 1),
            // Values that do not read as their member's type.
            LINE.replacen(r#""v":1"#, r#""v":"1""#, 1),
            LINE.replacen(r#""ts_ms":5"#, r#""ts_ms":5.5"#, 1),
            LINE.replacen(r#""op":"insert""#, r#""op":"upsert""#, 1),
            LINE.replacen(r#""table":"t""#, "\"table\":\"t\u{1}\"", 1),
            LINE.replacen(r#""origin":{"#, r#""origin":{{"#, 1),
            // Not an object, cut short before the record, text after the closing brace, an
            // empty record. (A line cut short in its record leaves a record that does not read:
            // see the next test.)
            format!("[{LINE}]"),
            LINE[..40].to_owned(),
            format!("{LINE}x"),
            LINE.replace(r#""record":{"a":[1,{"b":"}"}]}}"#, r#""record":}"#),
            String::new(),
        ];
        for case in &cases {
            assert!(RawLineView::quick(case).is_none(), "{case}");
        }
    }

    #[test]
    fn a_line_that_reads_quickly_reads_the_same_carefully_or_its_record_does_not_read() {
        // Every cut and every single-byte change of a line: where the quick reader takes it,
        // either the careful reader takes it the same, or the record it found is not one JSON
        // value (so the caller, reading it next, falls back to the careful reader).
        let mut variants = Vec::new();
        for i in 0..LINE.len() {
            variants.push(LINE[..i].to_owned());
            for b in [b'"', b'}', b',', b'\\', b' ', b'x', b'1', b'{', b']'] {
                let mut bytes = LINE.as_bytes().to_vec();
                bytes[i] = b;
                if let Ok(s) = String::from_utf8(bytes) {
                    variants.push(s);
                }
            }
        }
        let mut quick_count = 0;
        for text in &variants {
            let Some(quick) = RawLineView::quick(text) else {
                continue;
            };
            quick_count += 1;
            let record_reads = serde_json::from_str::<&RawValue>(quick.record).is_ok();
            match careful(text) {
                Some(careful) => assert!(same(&quick, &careful) || !record_reads, "{text}"),
                None => assert!(!record_reads, "careful refuses, quick takes: {text}"),
            }
        }
        assert!(quick_count > 100, "{quick_count}");
    }
}
