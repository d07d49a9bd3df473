//! Which letters a command acts on: what each letter is about (its [`Facets`]), filters over
//! them, error fingerprints, and the counts `sluice dlq stats` prints. Pure, no I/O.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sluice_core::dead_letter::{DeadLetter, Holds};
use sluice_core::time::rfc3339_to_ms;

use crate::dlq::DlqEntry;

/// The class given to messages that stand for changes never processed (DESIGN §3.6, kinds 2
/// and 3): they carry no failure envelope, so no class of their own.
pub const UNPROCESSED: &str = "unprocessed";

/// What a letter is about, the same way for every kind of letter, for filters and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facets<'a> {
    /// `ingest` or `transform`: the step that failed, or that the message was meant for.
    pub step: &'static str,
    /// The table, when known.
    pub table: Option<&'a str>,
    /// The error class; [`UNPROCESSED`] for changes never processed; `other` for the rest.
    pub class: &'a str,
    /// The error code; `on_failure` for a stream mapping's on-failure record, `moved` for a
    /// message a queue's redrive policy moved, `no_work` for one that asks for nothing.
    pub code: &'a str,
    /// The failure's `failure_id`, for envelopes.
    pub failure_id: Option<&'a str>,
    /// When it failed (epoch ms): the envelope's `failed_at`, else when it was sent.
    pub at_ms: Option<i64>,
}

/// The facets of a letter.
pub fn facets(e: &DlqEntry) -> Facets<'_> {
    match &e.letter {
        DeadLetter::Envelope(env) => Facets {
            step: env.step.as_str(),
            table: env.table.as_deref(),
            class: env.error_class.as_str(),
            code: env.error_code.as_deref().unwrap_or_default(),
            failure_id: Some(&env.failure_id),
            at_ms: rfc3339_to_ms(&env.failed_at).or(e.sent_ms),
        },
        DeadLetter::StreamBatch(b) => Facets {
            step: "ingest",
            table: b.stream_arn.as_deref().and_then(table_of_stream_arn),
            class: UNPROCESSED,
            code: "on_failure",
            failure_id: None,
            at_ms: b.timestamp.as_deref().and_then(rfc3339_to_ms).or(e.sent_ms),
        },
        DeadLetter::Moved(m) => {
            let (step, table, class, code) = match &m.holds {
                Holds::Change { table, .. } => {
                    ("ingest", Some(table.as_str()), UNPROCESSED, "moved")
                }
                Holds::Unreadable { .. } => ("ingest", None, UNPROCESSED, "moved"),
                Holds::Objects { refs } => (
                    "transform",
                    refs.first().and_then(|r| table_of_raw_ref(r)),
                    UNPROCESSED,
                    "moved",
                ),
                Holds::RawLine { table, .. } => {
                    ("transform", table.as_deref(), UNPROCESSED, "moved")
                }
                Holds::Nothing { .. } => ("transform", None, "other", "no_work"),
            };
            Facets {
                step,
                table,
                class,
                code,
                failure_id: None,
                at_ms: e.sent_ms,
            }
        }
    }
}

/// The table of a DynamoDB stream ARN (`arn:aws:dynamodb:…:table/NAME/stream/…`).
fn table_of_stream_arn(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":table/")?.1;
    Some(rest.split_once('/').map_or(rest, |(t, _)| t))
}

/// The table of a raw object reference (`s3://bucket/raw/<table>/dt=…`).
fn table_of_raw_ref(r: &str) -> Option<&str> {
    let key = r.strip_prefix("s3://")?.split_once('/')?.1;
    key.strip_prefix("raw/")?.split('/').next()
}

/// Which letters to act on. Every condition given must hold; none given matches every letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The step (`ingest`, `transform`).
    pub step: Option<String>,
    /// The table.
    pub table: Option<String>,
    /// The error class (`contract_violation`…, or `unprocessed`).
    pub class: Option<String>,
    /// The error code (`missing_field`…).
    pub code: Option<String>,
    /// Text the message body must contain.
    pub contains: Option<String>,
    /// Failed at or after (epoch ms).
    pub since_ms: Option<i64>,
    /// Failed before (epoch ms).
    pub until_ms: Option<i64>,
}

impl Filter {
    /// Whether no condition is given.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether the letter meets every condition.
    pub fn matches(&self, e: &DlqEntry) -> bool {
        let f = facets(e);
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        eq(&self.step, Some(f.step))
            && eq(&self.table, f.table)
            && eq(&self.class, Some(f.class))
            && eq(&self.code, Some(f.code))
            && self.contains.as_deref().is_none_or(|c| e.body.contains(c))
            && self
                .since_ms
                .is_none_or(|s| f.at_ms.is_some_and(|at| at >= s))
            && self
                .until_ms
                .is_none_or(|u| f.at_ms.is_some_and(|at| at < u))
    }
}

/// Reads a time for `--since` and `--until`: RFC 3339 (`2026-11-30T10:00:00Z`), a date
/// (`2026-11-30`, midnight UTC), or an age before `now_ms` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if let Some(ms) = rfc3339_to_ms(t) {
        return Ok(ms);
    }
    if let Some(ms) = rfc3339_to_ms(&format!("{t}T00:00:00Z")) {
        return Ok(ms);
    }
    let unit = t.chars().last().and_then(|c| match c {
        's' => Some(1_000i64),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    });
    if let Some(unit) = unit {
        if let Ok(n) = t[..t.len() - 1].parse::<i64>() {
            if n >= 0 {
                return Ok(now_ms.saturating_sub(n.saturating_mul(unit)));
            }
        }
    }
    Err(format!(
        "{text:?} is not a time: give RFC 3339 (2026-11-30T10:00:00Z), a date (2026-11-30) or \
         an age (90s, 15m, 2h, 7d)"
    ))
}

/// An error message with its values taken out, so that failures of one cause count together:
/// quoted text becomes `"…"`, numbers `N`, and long hexadecimal ids `…`.
pub fn fingerprint(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut chars = error.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Skip to the closing quote, honouring escapes.
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == '"' {
                        break;
                    }
                }
                out.push_str("\"…\"");
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(&mask_word(&word));
            }
            c => out.push(c),
        }
    }
    out
}

/// A word as it stands in a fingerprint: a number is `N`, a long hexadecimal id `…`, any other
/// word itself.
fn mask_word(word: &str) -> String {
    let digits = word.chars().any(|c| c.is_ascii_digit());
    let numeric = digits
        && word
            .chars()
            .all(|c| c.is_ascii_digit() || c == 'e' || c == 'E');
    let hex_id = digits && word.len() >= 8 && word.chars().all(|c| c.is_ascii_hexdigit());
    if numeric {
        "N".to_owned()
    } else if hex_id {
        "…".to_owned()
    } else {
        word.to_owned()
    }
}

/// The counts of `sluice dlq stats`: each failure once, by each facet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Messages read.
    pub messages: usize,
    /// Distinct letters: each `failure_id` once, and every message without one.
    pub letters: usize,
    /// Copies of a failure beyond the first (a retried batch sent it again).
    pub duplicates: usize,
    /// Letters by step.
    pub by_step: BTreeMap<String, usize>,
    /// Letters by table (`-` when unknown).
    pub by_table: BTreeMap<String, usize>,
    /// Letters by error class.
    pub by_class: BTreeMap<String, usize>,
    /// Letters by error code.
    pub by_code: BTreeMap<String, usize>,
    /// Letters by error fingerprint, most frequent first.
    pub by_fingerprint: Vec<FingerprintCount>,
    /// When the oldest letter failed (epoch ms).
    pub oldest_ms: Option<i64>,
}

/// How many letters share an error fingerprint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FingerprintCount {
    /// The error class and code.
    pub code: String,
    /// The error with its values taken out.
    pub fingerprint: String,
    /// How many letters.
    pub count: usize,
    /// One letter's full error, as an example.
    pub example: String,
}

impl Stats {
    /// Counts the letters among `entries` that `filter` matches.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a DlqEntry>, filter: &Filter) -> Self {
        let mut s = Self::default();
        let mut ids = HashSet::new();
        let mut prints: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
        for e in entries {
            if !filter.matches(e) {
                continue;
            }
            s.messages += 1;
            let f = facets(e);
            if let Some(id) = f.failure_id {
                if !ids.insert(id.to_owned()) {
                    s.duplicates += 1;
                    continue;
                }
            }
            s.letters += 1;
            *s.by_step.entry(f.step.to_owned()).or_default() += 1;
            *s.by_table
                .entry(f.table.unwrap_or("-").to_owned())
                .or_default() += 1;
            *s.by_class.entry(f.class.to_owned()).or_default() += 1;
            *s.by_code.entry(f.code.to_owned()).or_default() += 1;
            let error = error_text(e);
            let slot = prints
                .entry((format!("{} {}", f.class, f.code), fingerprint(&error)))
                .or_insert((0, error));
            slot.0 += 1;
            if let Some(at) = f.at_ms {
                s.oldest_ms = Some(s.oldest_ms.map_or(at, |o| o.min(at)));
            }
        }
        s.by_fingerprint = prints
            .into_iter()
            .map(|((code, fingerprint), (count, example))| FingerprintCount {
                code,
                fingerprint,
                count,
                example,
            })
            .collect();
        s.by_fingerprint
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        s
    }
}

/// A letter's error for people: the envelope's error, or what the message holds.
pub fn error_text(e: &DlqEntry) -> String {
    match &e.letter {
        DeadLetter::Envelope(env) => env.error.clone(),
        DeadLetter::StreamBatch(b) => b.to_string(),
        DeadLetter::Moved(m) => m.holds.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::DlqSnapshot;
    use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

    fn envelope(id: &str, table: &str, code: &str, error: &str, at: &str) -> String {
        serde_json::json!({"sluice_failure":1,"failure_id":id,"step":"transform",
            "error_class":"contract_violation","error_code":code,"error":error,"table":table,
            "origin":{},"original_bytes":0,"first_failed_at":at,"failed_at":at,"retry_count":0,
            "pipeline_version":"0"})
        .to_string()
    }

    fn entries(bodies: &[String]) -> DlqSnapshot {
        let messages: Vec<Message> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                Message::builder()
                    .message_id(format!("m{i}"))
                    .body(b)
                    .attributes(MessageSystemAttributeName::SentTimestamp, "1795000000000")
                    .build()
            })
            .collect();
        DlqSnapshot::from_messages(&messages, true, None)
    }

    #[test]
    fn filters_select_on_every_facet() {
        let s = entries(&[
            envelope(
                "a",
                "orders",
                "missing_field",
                "orders: field \"email\" is required",
                "2026-11-30T10:00:00Z",
            ),
            envelope(
                "b",
                "customers",
                "type_mismatch",
                "x",
                "2026-11-30T12:00:00Z",
            ),
            r#"{"table":"orders","op":"insert","key":{"id":1},"after":{"id":1},"seq":3}"#
                .to_owned(),
        ]);
        let pick = |f: Filter| -> Vec<&str> {
            s.entries
                .iter()
                .filter(|e| f.matches(e))
                .map(|e| e.message_id.as_str())
                .collect()
        };
        assert_eq!(pick(Filter::default()), ["m0", "m1", "m2"]);
        let table = |t: &str| Filter {
            table: Some(t.into()),
            ..Filter::default()
        };
        assert_eq!(pick(table("orders")), ["m0", "m2"]);
        assert_eq!(
            pick(Filter {
                class: Some(UNPROCESSED.into()),
                ..Filter::default()
            }),
            ["m2"]
        );
        assert_eq!(
            pick(Filter {
                step: Some("transform".into()),
                code: Some("type_mismatch".into()),
                ..Filter::default()
            }),
            ["m1"]
        );
        assert_eq!(
            pick(Filter {
                contains: Some("email".into()),
                ..Filter::default()
            }),
            ["m0"]
        );
        let at = |t: &str| rfc3339_to_ms(t).unwrap();
        assert_eq!(
            pick(Filter {
                since_ms: Some(at("2026-11-30T11:00:00Z")),
                ..Filter::default()
            }),
            ["m1"]
        );
        assert_eq!(
            pick(Filter {
                until_ms: Some(at("2026-11-30T11:00:00Z")),
                class: Some("contract_violation".into()),
                ..Filter::default()
            }),
            ["m0"]
        );
    }

    #[test]
    fn times_read_as_instants_dates_or_ages() {
        let now = rfc3339_to_ms("2026-11-30T12:00:00Z").unwrap();
        assert_eq!(
            parse_time("2026-11-30T10:00:00Z", now),
            rfc3339_to_ms("2026-11-30T10:00:00Z").ok_or_else(String::new)
        );
        assert_eq!(parse_time("2026-11-30", now).unwrap(), now - 12 * 3_600_000);
        assert_eq!(parse_time("2h", now).unwrap(), now - 2 * 3_600_000);
        assert_eq!(parse_time("90s", now).unwrap(), now - 90_000);
        assert_eq!(parse_time("7d", now).unwrap(), now - 7 * 86_400_000);
        for bad in ["yesterday", "-2h", "h", "2w", ""] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(e.contains("is not a time"), "{bad}: {e}");
        }
    }

    #[test]
    fn fingerprints_drop_values_and_keep_the_cause() {
        assert_eq!(
            fingerprint(r#"fields[3] (total): expected int, found "12.5x" at line 17"#),
            r#"fields[N] (total): expected int, found "…" at line N"#
        );
        assert_eq!(
            fingerprint("object s3://b/raw/x/9f8e7d6c5b4a3f2e.ndjson.gz: 3 bytes"),
            fingerprint("object s3://b/raw/x/0123456789abcdef.ndjson.gz: 40 bytes")
        );
        assert_eq!(fingerprint("value -1.5e3 too big."), "value -N.N too big.");
        assert_eq!(fingerprint(r#"a "b\"c" d"#), r#"a "…" d"#);
    }

    #[test]
    fn stats_count_each_failure_once_by_every_facet() {
        let s = entries(&[
            envelope("a", "orders", "missing_field", "orders: field \"email\" is required", "2026-11-30T10:00:00Z"),
            envelope("a", "orders", "missing_field", "orders: field \"email\" is required", "2026-11-30T10:00:00Z"),
            envelope("b", "orders", "missing_field", "orders: field \"phone\" is required", "2026-11-30T09:00:00Z"),
            envelope("c", "customers", "type_mismatch", "x", "2026-11-30T12:00:00Z"),
            r#"{"timestamp":"2026-11-30T11:00:00Z","DDBStreamBatchInfo":{"shardId":"s","streamArn":"arn:aws:dynamodb:us-east-1:1:table/orders/stream/2026"}}"#.to_owned(),
        ]);
        let st = Stats::of(&s.entries, &Filter::default());
        assert_eq!((st.messages, st.letters, st.duplicates), (5, 4, 1));
        assert_eq!(st.by_table["orders"], 3);
        assert_eq!(st.by_class[UNPROCESSED], 1);
        assert_eq!(st.by_code["on_failure"], 1);
        assert_eq!(st.by_step["transform"], 3);
        assert_eq!(st.by_fingerprint[0].count, 2, "{:?}", st.by_fingerprint);
        assert_eq!(
            st.by_fingerprint[0].fingerprint,
            "orders: field \"…\" is required"
        );
        assert_eq!(st.oldest_ms, rfc3339_to_ms("2026-11-30T09:00:00Z"));
        let only = Stats::of(
            &s.entries,
            &Filter {
                table: Some("customers".into()),
                ..Filter::default()
            },
        );
        assert_eq!((only.messages, only.letters), (1, 1));
    }
}
