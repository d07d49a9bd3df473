//! Reading untrusted JSON documents: bounds, validation and lossless compaction.
//!
//! A raw line must hold the source record exactly as received (DESIGN §3.1): JSON-equal, with
//! every number literal kept as written, on one line. [`read_document`] checks a document
//! against the [`Limits`], validates it, and removes only the insignificant whitespace between
//! tokens, so pretty-printed bodies become one line without a round trip through a value tree.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::value::RawValue;

use crate::error::DecodeError;

/// Bounds on what a single record may be. A record over a bound becomes a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest record, in bytes of JSON text, that is landed.
    pub max_record_bytes: usize,
    /// The deepest nesting of JSON arrays and objects that is accepted.
    pub max_depth: usize,
}

impl Limits {
    /// The default largest record: 1 MiB, the largest SQS message.
    pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
    /// The default deepest nesting. DynamoDB allows 32 levels of nested attributes, which take
    /// two JSON levels each in DynamoDB JSON, plus the record's own envelope.
    pub const DEFAULT_MAX_DEPTH: usize = 100;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// Reads one JSON document from untrusted bytes.
///
/// Returns the document, compacted when it held whitespace between tokens. Errors are precise:
/// empty, invalid UTF-8, too large, too deep, truncated, trailing content, or not JSON.
pub fn read_document<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Cow<'a, str>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
        detail: e.to_string(),
    })?;
    read_str(text, limits)
}

/// Like [`read_document`], for text that is already known to be UTF-8.
pub fn read_str<'a>(text: &'a str, limits: &Limits) -> Result<Cow<'a, str>, DecodeError> {
    read_checked::<false>(text, limits, true).map(|(text, _)| text)
}

/// Like [`read_str`], for a value the event's parser has already read as JSON (a record of a
/// stream event): its syntax is not checked again, everything else is.
pub fn read_raw<'a>(raw: &'a RawValue, limits: &Limits) -> Result<Cow<'a, str>, DecodeError> {
    read_checked::<false>(raw.get(), limits, false).map(|(text, _)| text)
}

/// Like [`read_raw`], and in the same pass where the members of the value (an object) and of
/// its members' objects lie in `raw.get()`, so that a few of them can be read without another
/// pass over the whole value.
pub fn read_raw_members<'a>(
    raw: &'a RawValue,
    limits: &Limits,
) -> Result<(Cow<'a, str>, Vec<Member>), DecodeError> {
    read_checked::<true>(raw.get(), limits, false)
}

/// A member of a JSON object, found by [`read_raw_members`]: where its name and value lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// 1 for a member of the outer object, 2 for a member of an object that is the value of
    /// one of those.
    pub depth: u8,
    /// For a member at depth 2, the index of the member at depth 1 whose value holds it.
    pub parent: Option<usize>,
    /// The name as written between its quotes (escapes are not undone).
    pub name: Range<usize>,
    /// The value's text, without the whitespace around it.
    pub value: Range<usize>,
}

fn read_checked<'a, const MEMBERS: bool>(
    text: &'a str,
    limits: &Limits,
    parse: bool,
) -> Result<(Cow<'a, str>, Vec<Member>), DecodeError> {
    if text.is_empty() {
        return Err(DecodeError::Empty);
    }
    if text.trim().is_empty() {
        return Err(DecodeError::WhitespaceOnly);
    }
    if text.len() > limits.max_record_bytes {
        return Err(DecodeError::TooLarge {
            size: text.len(),
            limit: limits.max_record_bytes,
        });
    }
    // The depth scan runs first: it is linear and needs no stack, so hostile nesting is refused
    // before any parser sees it.
    let (scan, compacted, members) = scan_with::<true, MEMBERS>(text);
    if scan.max_depth > limits.max_depth {
        return Err(DecodeError::TooDeep {
            limit: limits.max_depth,
        });
    }
    if parse {
        serde_json::from_str::<&RawValue>(text).map_err(|e| match comment_line(text) {
            Some(line) => DecodeError::CommentLines { line },
            None => DecodeError::from_json(&e),
        })?;
    }
    if let Some((unit, at)) = scan.lone_surrogate {
        return Err(lone(unit, at));
    }
    Ok((compacted.map_or(Cow::Borrowed(text), Cow::Owned), members))
}

/// Refuses an escaped lone surrogate (`"\ud800"` with no low half after it, or a low half
/// alone): valid JSON syntax, but no Unicode text, so no string field, DynamoDB string or
/// reader of raw staging in another language can hold it. `text` must be valid JSON, where a
/// backslash only ever starts an escape inside a string.
pub fn check_surrogates(text: &str) -> Result<(), DecodeError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(offset) = memchr::memchr(b'\\', &bytes[i..]) {
        let at = i + offset;
        match escape(bytes, at) {
            Escape::Lone(unit) => return Err(lone(unit, at)),
            Escape::Len(n) => i = at + n,
        }
        if i >= bytes.len() {
            break;
        }
    }
    Ok(())
}

/// What the escape at `at` (a backslash) is.
enum Escape {
    /// An escape of this many bytes: `\n` and the like, `\uXXXX`, or a surrogate pair.
    Len(usize),
    /// An escaped lone surrogate.
    Lone(u16),
}

fn escape(bytes: &[u8], at: usize) -> Escape {
    let unit = |at: usize| -> Option<u16> {
        if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    match unit(at) {
        Some(high @ 0xD800..=0xDBFF) => {
            if matches!(unit(at + 6), Some(0xDC00..=0xDFFF)) {
                Escape::Len(12)
            } else {
                Escape::Lone(high)
            }
        }
        Some(low @ 0xDC00..=0xDFFF) => Escape::Lone(low),
        Some(_) => Escape::Len(6),
        // Any other escape is two bytes (`\\`, `\"`, `\n`…).
        None => Escape::Len(2),
    }
}

fn lone(unit: u16, at: usize) -> DecodeError {
    DecodeError::InvalidUtf8 {
        detail: format!(
            "an escaped lone surrogate \\u{unit:04x} at byte {at}: half of a UTF-16 pair with no \
             other half is not text"
        ),
    }
}

/// The first line that is a comment (`#` or `//`), as people paste from tools and docs.
fn comment_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with('#') || t.starts_with("//")
        })
        .map(|i| i + 1)
}

struct Scan {
    max_depth: usize,
    /// The first escaped lone surrogate and where it is.
    lone_surrogate: Option<(u16, usize)>,
}

/// One pass over the text: its nesting depth and the first escaped lone surrogate. Strings are
/// crossed with a vectorised search for their end.
fn scan(text: &str) -> Scan {
    scan_with::<false, false>(text).0
}

/// [`scan`], and in the same pass the text without the whitespace between its tokens, when any
/// lies outside its strings (`None` when the text is compact already).
fn scan_compacting(text: &str) -> (Scan, Option<String>) {
    let (scan, compacted, _) = scan_with::<true, false>(text);
    (scan, compacted)
}

/// The scan, compacting when `COMPACT`, and noting the [`Member`]s at depths 1 and 2 when
/// `MEMBERS`. `text` must be valid JSON: a string followed by a colon is a member's name.
fn scan_with<const COMPACT: bool, const MEMBERS: bool>(
    text: &str,
) -> (Scan, Option<String>, Vec<Member>) {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    let mut lone_surrogate = None;
    let mut out: Option<String> = None;
    let mut members = Vec::new();
    // The member whose value is being crossed, at depths 1 and 2.
    let mut open: [Option<usize>; 3] = [None; 3];
    // Where the text not yet copied to `out` begins.
    let mut run_start = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i = string_end(bytes, start, &mut lone_surrogate);
                if MEMBERS && (depth == 1 || depth == 2) {
                    let colon = skip_space(bytes, i);
                    if bytes.get(colon) == Some(&b':') {
                        open[depth] = Some(members.len());
                        let value = skip_space(bytes, colon + 1);
                        members.push(Member {
                            depth: if depth == 1 { 1 } else { 2 },
                            parent: if depth == 2 { open[1] } else { None },
                            name: start..i.saturating_sub(1),
                            value: value..value,
                        });
                    }
                }
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b'}' | b']' => {
                if MEMBERS && depth <= 2 {
                    close(&mut members, &mut open[depth], bytes, i);
                }
                depth = depth.saturating_sub(1);
            }
            b',' if MEMBERS && depth <= 2 => close(&mut members, &mut open[depth], bytes, i),
            b' ' | b'\n' | b'\r' | b'\t' if COMPACT => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[run_start..i]);
                run_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(o) = &mut out {
        o.push_str(&text[run_start..]);
    }
    let scan = Scan {
        max_depth,
        lone_surrogate,
    };
    (scan, out, members)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).copied().is_some_and(is_space) {
        i += 1;
    }
    i
}

/// Ends the value of the member `open` (if any) before the delimiter at `at`.
fn close(members: &mut [Member], open: &mut Option<usize>, bytes: &[u8], at: usize) {
    if let Some(member) = open.take().and_then(|m| members.get_mut(m)) {
        let mut end = at;
        while end > member.value.start && is_space(bytes[end - 1]) {
            end -= 1;
        }
        member.value.end = end;
    }
}

/// Where the string whose content starts at `i` ends: just past its closing quote, or the end
/// of the text when it has none. Notes the first escaped lone surrogate in `lone`.
fn string_end(bytes: &[u8], mut i: usize, lone: &mut Option<(u16, usize)>) -> usize {
    while let Some(at) = quote_or_backslash(bytes, i) {
        if bytes[at] == b'"' {
            return at + 1;
        }
        i = match escape(bytes, at) {
            Escape::Len(n) => at + n,
            Escape::Lone(unit) => {
                lone.get_or_insert((unit, at));
                at + 6
            }
        };
    }
    bytes.len()
}

/// The first `"` or `\` at or after `i`. Most strings of a record are short (type keys, names,
/// small values), so eight bytes are tested at a time in a word before a vectorised search
/// takes over for a long one.
pub(crate) fn quote_or_backslash(bytes: &[u8], i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let rest = bytes.get(i..)?;
    let mut words = rest.chunks_exact(8);
    for (n, chunk) in words.by_ref().take(4).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let (q, b) = (w ^ QUOTES, w ^ BACKSLASHES);
        // A byte of `q` or `b` is zero where `w` holds a quote or a backslash; the lowest byte
        // flagged is always a true one (a borrow only flags bytes above it).
        let found = (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGH;
        if found != 0 {
            return Some(i + n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let from = rest.len() - words.remainder().len() - words.len() * 8;
    memchr::memchr2(b'"', b'\\', &rest[from..]).map(|at| i + from + at)
}

/// Removes whitespace between tokens of valid JSON; strings and literals stay byte for byte.
pub fn compact(text: &str) -> String {
    scan_compacting(text).1.unwrap_or_else(|| text.to_owned())
}

/// Compacts a borrowed raw value, borrowing when it is already compact.
pub fn compact_raw(raw: &RawValue) -> Cow<'_, str> {
    let text = raw.get();
    scan_compacting(text)
        .1
        .map_or(Cow::Borrowed(text), Cow::Owned)
}

/// The nesting depth of a JSON text, counted without a parser.
pub fn depth(text: &str) -> usize {
    scan(text).max_depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<Cow<'_, str>, DecodeError> {
        read_str(s, &Limits::default())
    }

    #[test]
    fn the_first_quote_or_backslash_is_found_at_any_offset() {
        // Every position of a quote or backslash in texts of every length around the word and
        // the vectorised search, with bytes on either side that differ by one bit from them.
        for len in 0..80 {
            for at in 0..=len {
                for mark in [b'"', b'\\'] {
                    let mut text = vec![b'#'; len];
                    text.extend([b']', b'\x80']);
                    if at < len {
                        text[at] = mark;
                    }
                    if at + 3 < len {
                        // A second one above: a borrow may flag bytes above the first.
                        text[at + 3] = b'"';
                    }
                    for from in 0..=text.len() {
                        let want = text[from..]
                            .iter()
                            .position(|b| *b == b'"' || *b == b'\\')
                            .map(|p| p + from);
                        assert_eq!(quote_or_backslash(&text, from), want, "{len} {at} {from}");
                    }
                }
            }
        }
        assert_eq!(quote_or_backslash(b"ab", 3), None);
        assert_eq!(quote_or_backslash(b"\"\"\"\"\"\"\"\"\\", 8), Some(8));
    }

    #[test]
    fn members_at_the_first_two_depths_are_found_where_they_lie() {
        let text = r#"{ "a" : 1 , "b":{"c": [ {"d":1} ] ,"e" : "x:\",}" }, "f":[{"g":2}],"h":{} }"#;
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        let (compacted, members) = read_raw_members(&raw, &Limits::default()).unwrap();
        assert_eq!(
            compacted,
            r#"{"a":1,"b":{"c":[{"d":1}],"e":"x:\",}"},"f":[{"g":2}],"h":{}}"#
        );
        let found: Vec<_> = members
            .iter()
            .map(|m| {
                (
                    m.depth,
                    m.parent,
                    &text[m.name.clone()],
                    &text[m.value.clone()],
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (1, None, "a", "1"),
                (1, None, "b", r#"{"c": [ {"d":1} ] ,"e" : "x:\",}" }"#),
                (2, Some(1), "c", r#"[ {"d":1} ]"#),
                (2, Some(1), "e", r#""x:\",}""#),
                (1, None, "f", r#"[{"g":2}]"#),
                (1, None, "h", "{}"),
            ]
        );
    }

    #[test]
    fn compacts_without_touching_strings_or_literals() {
        let pretty = "{\n  \"a\" : 1.50E+2,\n  \"b\": \"x  y\\\" z\",\n  \"c\": [ 1 , 2 ]\n}";
        assert_eq!(
            read(pretty).unwrap(),
            r#"{"a":1.50E+2,"b":"x  y\" z","c":[1,2]}"#
        );
    }

    #[test]
    fn a_parsed_value_is_checked_and_compacted_like_text() {
        let raw = |t: &str| serde_json::from_str::<Box<RawValue>>(t).unwrap();
        let l = Limits::default();
        let pretty = raw("{ \"a\" : [ 1, \"x y\" ] }");
        assert_eq!(read_raw(&pretty, &l).unwrap(), r#"{"a":[1,"x y"]}"#);
        let compact = raw(r#"{"a":1}"#);
        assert!(matches!(read_raw(&compact, &l).unwrap(), Cow::Borrowed(_)));
        let lone = raw(r#"{"a":"\ud800"}"#);
        assert_eq!(read_raw(&lone, &l).unwrap_err().code(), "invalid_utf8");
        let deep = raw(&format!("{}{}", "[".repeat(5), "]".repeat(5)));
        let shallow = Limits { max_depth: 3, ..l };
        assert_eq!(read_raw(&deep, &shallow).unwrap_err().code(), "too_deep");
        let small = Limits {
            max_record_bytes: 4,
            ..l
        };
        assert_eq!(read_raw(&pretty, &small).unwrap_err().code(), "too_large");
    }

    #[test]
    fn borrows_compact_input() {
        assert!(matches!(read(r#"{"a":1}"#).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn each_malformation_has_its_own_code() {
        let cases = [
            ("", "empty"),
            ("  \n\t", "whitespace_only"),
            ("{\"a\":1}\n# a comment kcat printed", "comment_lines"),
            ("// pasted from the docs\n{\"a\":1}", "comment_lines"),
            ("Test message.", "not_json"),
            ("{\"a\": [1, 2", "truncated"),
            ("{\"a\":1}{\"b\":2}", "trailing_content"),
        ];
        for (input, code) in cases {
            assert_eq!(read(input).unwrap_err().code(), code, "input {input:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let err = read_document(b"{\"a\":\"\xff\"}", &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_utf8");
    }

    #[test]
    fn ten_thousand_levels_deep_is_too_deep_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            read(&deep).unwrap_err(),
            DecodeError::TooDeep { limit: 100 }
        );
        // Truncated and deep at once: still refused by depth, never by recursion.
        assert_eq!(
            read(&"{\"a\":".repeat(10_000)).unwrap_err().code(),
            "too_deep"
        );
    }

    #[test]
    fn too_large_is_refused() {
        let limits = Limits {
            max_record_bytes: 8,
            max_depth: 10,
        };
        let err = read_str(r#"{"a":"123456789"}"#, &limits).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { size: 17, limit: 8 });
    }

    /// The byte-at-a-time scan and compaction that the vectorised ones replace.
    fn reference(text: &str) -> (usize, bool, String) {
        let (mut depth, mut max_depth, mut ws) = (0usize, 0usize, false);
        let (mut in_string, mut escaped, mut run_start) = (false, false, 0usize);
        let mut out = String::new();
        for (i, b) in text.bytes().enumerate() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b' ' | b'\n' | b'\r' | b'\t' => {
                    ws = true;
                    out.push_str(&text[run_start..i]);
                    run_start = i + 1;
                }
                _ => {}
            }
        }
        out.push_str(&text[run_start..]);
        (max_depth, ws, out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Depth, whitespace, compaction and lone surrogates are found as the byte-at-a-time
        /// reading found them, on text that is JSON and on text that is not.
        #[test]
        fn the_vectorised_scan_agrees_with_the_byte_at_a_time_one(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just("\"".to_owned()),
                proptest::prelude::Just("\\".to_owned()),
                proptest::prelude::Just("\\\"".to_owned()),
                proptest::prelude::Just("\\\\".to_owned()),
                proptest::prelude::Just("\\ud800".to_owned()),
                proptest::prelude::Just("\\udc00".to_owned()),
                proptest::prelude::Just("\\ud83d\\ude00".to_owned()),
                proptest::prelude::Just("\\u00e9".to_owned()),
                proptest::prelude::Just("\\u12\"4".to_owned()),
                "[{}\\[\\]:, \n\tax0é]{1,4}",
            ], 0..24),
        ) {
            let text = parts.concat();
            let (depth, ws, compacted) = reference(&text);
            let got = scan(&text);
            proptest::prop_assert_eq!(got.max_depth, depth, "{:?}", text);
            proptest::prop_assert_eq!(compact(&text), compacted, "{:?}", text);
            // The pass that compacts as it scans finds the same, and copies only when it must.
            let (fused, copy) = scan_compacting(&text);
            proptest::prop_assert_eq!(fused.max_depth, got.max_depth);
            proptest::prop_assert_eq!(fused.lone_surrogate, got.lone_surrogate);
            proptest::prop_assert_eq!(copy.is_some(), ws, "{:?}", text);
            // On JSON text, where a backslash is always in a string, the scan finds the lone
            // surrogate the search over every backslash finds.
            if serde_json::from_str::<&RawValue>(&text).is_ok() {
                let scanned = got.lone_surrogate.map(|(u, at)| lone(u, at));
                proptest::prop_assert_eq!(scanned, check_surrogates(&text).err(), "{:?}", text);
            }
        }
    }

    #[test]
    fn a_pretty_document_with_a_lone_surrogate_is_refused_for_it() {
        let e = read_str("{ \"a\": \"x\\ud800\" }", &Limits::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_utf8");
        assert!(e.to_string().contains("at byte 9"), "{e}");
    }

    #[test]
    fn lone_surrogates_are_invalid_text_and_pairs_are_fine() {
        let l = Limits::default();
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"x\uDBFFy"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"\ud83d":1}"#,
            r#"{"a":["ok","\ud800"]}"#,
        ] {
            let e = read_str(bad, &l).unwrap_err();
            assert_eq!(e.code(), "invalid_utf8", "{bad}");
            assert!(e.to_string().contains("lone surrogate"), "{e}");
        }
        for good in [
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\\ud800"}"#,
            r#"{"a":"\\\\","b":"\u00e9\n"}"#,
            r#"{"a":"😀"}"#,
        ] {
            assert!(read_str(good, &l).is_ok(), "{good}");
        }
    }
}
