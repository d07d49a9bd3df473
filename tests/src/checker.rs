//! An independent checker of what the pipeline did with every change it was sent, in the manner
//! of Jepsen's checkers and Kafka's `assertSeqnos`.
//!
//! It knows nothing of sluice's code: it is given what was sent (from the workload's own log
//! of the sources), what the typed tables held at several moments (a history of snapshots, the
//! last one after the pipeline drained), and what the dead-letter queue holds, each already read
//! into plain values by the caller. It shares no code with `sluice audit`, which decides what
//! every raw line must have become through the same `decide` the transform runs: two
//! implementations that agree are the point.
//!
//! Per typed key it sorts every sent change into exactly one outcome:
//! - **typed**: the key's final row is this change (same `seq`, same values; a tombstone for a
//!   delete);
//! - **stale**: a newer change of the key is the final row, so this one was superseded;
//! - **dead-lettered**: a dead letter names this change (a poison change must end here);
//! - **lost**: none of these. A change newer than the final row that no dead letter holds was
//!   dropped; so was a poison change with no dead letter.
//!
//! And it counts what must never happen:
//! - **duplicate effects**: a change both typed and still dead-lettered (a person would act on
//!   a change already applied);
//! - **nonmonotonic**: a key whose row's `seq` went back between two snapshots;
//! - **resurrected**: a key alive in the final snapshot although a delete newer than its row
//!   was sent and not dead-lettered, or alive again at a `seq` not above an earlier tombstone;
//! - **phantoms**: a row whose `seq` no sent change of its key has;
//! - **diverged**: a row at a sent change's `seq` whose values are not that change's.
//!
//! Given raw staging as well ([`check_with_staging`]), it also counts:
//! - **unstaged**: a sent change with no raw line and no dead letter (raw staging must hold
//!   every change that got past ingest, or it cannot be replayed);
//! - **out of order**: in a group whose order the source promises (a FIFO message group, the
//!   changes of one item on a DynamoDB stream shard), a change whose last landing in raw
//!   staging comes before the last landing of a change the source gave earlier. The last
//!   landing is the one acknowledged: a retry lands a change again, and SQS and the stream
//!   only move on once a change is acknowledged.
//!
//! Extra copies of one dead letter (the same `failure_id`, sent again after an answer was lost)
//! are counted apart, as `duplicate_letters`: SQS delivers at least once, so a failure is
//! counted once by its id, as `sluice audit` and the redrive count it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One change the workload sent, as the workload knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The typed table (contract) the change belongs to.
    pub table: String,
    /// The key, as the typed table's key attribute holds it, written as text.
    pub key: String,
    /// The change's ordering token, as the typed row's `_seq` holds it: the checker only
    /// compares these, so the caller writes them in a form that sorts as the source orders.
    pub seq: String,
    /// What the change must do.
    pub effect: Effect,
}

/// What a sent change must do to its typed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Insert or update: the row holds these fields (others may be present too).
    Put(BTreeMap<String, Value>),
    /// Delete: the row becomes a tombstone.
    Delete,
    /// A change no contract accepts: it must end as a dead letter.
    Poison,
}

/// A typed row as a snapshot saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The row's `_seq`.
    pub seq: String,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// Its other attributes, as plain JSON values.
    pub fields: BTreeMap<String, Value>,
}

/// Every typed row at one moment, by (table, key).
pub type Snapshot = BTreeMap<(String, String), Row>;

/// A dead letter, with the change it holds when the caller could tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// Its `failure_id`.
    pub failure_id: String,
    /// The change it holds: (table, key, seq), when its original could be read.
    pub change: Option<(String, String, String)>,
    /// Why it is there: its error code, or what moved it.
    pub code: String,
}

/// The counts of one check. Every count but `sent`, `typed`, `stale`, `dead_lettered` and
/// `duplicate_letters` must be 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Changes sent.
    pub sent: usize,
    /// Changes that are their key's final row.
    pub typed: usize,
    /// Changes superseded by a newer one of their key.
    pub stale: usize,
    /// Changes a dead letter holds (each counted once, however many copies).
    pub dead_lettered: usize,
    /// Of those, changes the contract accepts: on the queue because of a fault, for a person or
    /// the redrive to bring back. Not lost, but not typed yet either.
    pub stranded: usize,
    /// Changes neither typed, stale nor dead-lettered.
    pub lost: usize,
    /// Changes both typed and dead-lettered.
    pub duplicate_effects: usize,
    /// Extra copies of a dead letter (one `failure_id` more than once): counted once, not an
    /// anomaly.
    pub duplicate_letters: usize,
    /// Keys whose `seq` went back between snapshots.
    pub nonmonotonic: usize,
    /// Keys alive that a newer delete should have removed.
    pub resurrected: usize,
    /// Rows at a `seq` that no sent change of their key has.
    pub phantoms: usize,
    /// Rows at a sent change's `seq` with other values.
    pub diverged: usize,
    /// Changes neither in raw staging nor dead-lettered (counted only given raw staging).
    pub unstaged: usize,
    /// Changes that landed in raw staging before one their source gave earlier, in a group
    /// whose order the source promises (counted only given raw staging).
    pub out_of_order: usize,
    /// Groups whose order was checked.
    pub ordered_groups: usize,
}

impl Counts {
    /// Whether nothing that must never happen happened.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicate_effects == 0
            && self.nonmonotonic == 0
            && self.resurrected == 0
            && self.phantoms == 0
            && self.diverged == 0
            && self.unstaged == 0
            && self.out_of_order == 0
    }
}

/// The counts, and a line per anomaly naming the key, for a person to start from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The counts.
    pub counts: Counts,
    /// One line per anomaly.
    pub anomalies: Vec<String>,
    /// Stranded changes by the code of their dead letter.
    pub stranded_by_code: BTreeMap<String, usize>,
}

/// Checks what was sent against the history of the typed tables and the dead letters.
/// `history` is in time order; its last snapshot is the final state.
pub fn check(sent: &[Sent], history: &[Snapshot], letters: &[Letter]) -> Report {
    let mut report = Report::default();
    let empty = Snapshot::new();
    let last = history.last().unwrap_or(&empty);

    // Dead letters: each failure once, and which changes they hold.
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for l in letters {
        *copies.entry(&l.failure_id).or_default() += 1;
    }
    report.counts.duplicate_letters = copies.values().map(|n| n - 1).sum();
    let mut lettered: BTreeMap<(&str, &str, &str), &str> = BTreeMap::new();
    for l in letters {
        if let Some((t, k, s)) = &l.change {
            lettered.insert((t.as_str(), k.as_str(), s.as_str()), l.code.as_str());
        }
    }

    let mut by_key: BTreeMap<(&str, &str), Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        by_key
            .entry((s.table.as_str(), s.key.as_str()))
            .or_default()
            .push(s);
    }
    report.counts.sent = sent.len();

    for ((table, key), changes) in &by_key {
        let row = last.get(&((*table).to_owned(), (*key).to_owned()));
        let name = format!("{table}/{key}");
        for c in changes {
            let is_lettered = lettered.contains_key(&(*table, *key, c.seq.as_str()));
            let is_row = row.is_some_and(|r| r.seq == c.seq);
            if matches!(c.effect, Effect::Poison) {
                if is_lettered {
                    report.counts.dead_lettered += 1;
                } else {
                    report.counts.lost += 1;
                    report.anomalies.push(format!(
                        "{name}: poison change at seq {} is not on the dead-letter queue",
                        c.seq
                    ));
                }
                continue;
            }
            if is_row {
                report.counts.typed += 1;
                if is_lettered {
                    report.counts.duplicate_effects += 1;
                    report.anomalies.push(format!(
                        "{name}: change at seq {} is typed and still dead-lettered",
                        c.seq
                    ));
                }
                if let Some(r) = row {
                    if let Some(why) = differs(&c.effect, r) {
                        report.counts.diverged += 1;
                        report
                            .anomalies
                            .push(format!("{name}: row at seq {}: {why}", c.seq));
                    }
                }
            } else if is_lettered {
                report.counts.dead_lettered += 1;
                report.counts.stranded += 1;
                let code = lettered
                    .get(&(*table, *key, c.seq.as_str()))
                    .copied()
                    .unwrap_or_default();
                *report.stranded_by_code.entry(code.to_owned()).or_default() += 1;
            } else if row.is_some_and(|r| r.seq > c.seq) {
                report.counts.stale += 1;
            } else {
                report.counts.lost += 1;
                report.anomalies.push(match row {
                    Some(r) => format!(
                        "{name}: change at seq {} is newer than the row (seq {}) and not dead-lettered",
                        c.seq, r.seq
                    ),
                    None => format!(
                        "{name}: change at seq {} has no row and no dead letter",
                        c.seq
                    ),
                });
            }
        }
        if let Some(r) = row {
            if !changes.iter().any(|c| c.seq == r.seq) {
                report.counts.phantoms += 1;
                report.anomalies.push(format!(
                    "{name}: the row's seq {} is no sent change's",
                    r.seq
                ));
            }
            let newer_delete = changes.iter().any(|c| {
                c.effect == Effect::Delete
                    && c.seq > r.seq
                    && !lettered.contains_key(&(*table, *key, c.seq.as_str()))
            });
            if !r.deleted && newer_delete {
                report.counts.resurrected += 1;
                report.anomalies.push(format!(
                    "{name}: alive at seq {} though a newer delete was sent",
                    r.seq
                ));
            }
        }
    }

    // The history: a key's seq never goes back, and a tombstone is never followed by a row
    // alive at a seq not above it.
    let mut seen: BTreeMap<&(String, String), (&str, Option<&str>)> = BTreeMap::new();
    let mut flagged: BTreeSet<(&(String, String), &str)> = BTreeSet::new();
    for snapshot in history {
        for (id, r) in snapshot {
            if let Some((before, deleted_at)) = seen.get(id).copied() {
                if r.seq.as_str() < before && flagged.insert((id, "nonmonotonic")) {
                    report.counts.nonmonotonic += 1;
                    report.anomalies.push(format!(
                        "{}/{}: seq went back from {before} to {}",
                        id.0, id.1, r.seq
                    ));
                }
                if let Some(d) = deleted_at {
                    if !r.deleted && r.seq.as_str() <= d && flagged.insert((id, "resurrected")) {
                        report.counts.resurrected += 1;
                        report.anomalies.push(format!(
                            "{}/{}: alive at seq {} after its tombstone at seq {d}",
                            id.0, id.1, r.seq
                        ));
                    }
                }
            }
            let entry = seen.entry(id).or_insert((r.seq.as_str(), None));
            if r.seq.as_str() > entry.0 {
                entry.0 = r.seq.as_str();
            }
            if r.deleted {
                entry.1 = Some(entry.1.map_or(r.seq.as_str(), |d| d.max(r.seq.as_str())));
            }
        }
    }
    report
}

/// A change as the checker names it: (table, key, seq).
pub type ChangeId = (String, String, String);

/// Where a raw line sits in the order raw staging was written: when it landed
/// (`ingested_ms`), its object, and its line in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedAt {
    /// The line's `ingested_ms`.
    pub ms: i64,
    /// The object's key.
    pub object: String,
    /// The line's index in the object.
    pub line: usize,
}

impl LandedAt {
    /// Whether `self` surely landed before `other`: an earlier millisecond, or an earlier line
    /// of the same object. Two objects written in the same millisecond cannot be told apart.
    fn surely_before(&self, other: &Self) -> bool {
        self.ms < other.ms
            || (self.ms == other.ms && self.object == other.object && self.line < other.line)
    }
}

/// Raw staging as the checker reads it, and the orders its source promises.
#[derive(Debug, Clone, Default)]
pub struct Staging {
    /// Every raw line that holds a change, with where it landed (a change may land more than
    /// once: a retried batch lands again).
    pub landings: Vec<(ChangeId, LandedAt)>,
    /// Groups whose order the source promises, each with its changes in the source's order:
    /// a FIFO message group in send order, an item's stream records in sequence order.
    pub orders: BTreeMap<String, Vec<ChangeId>>,
    /// Changes that left their source's order by design: dead-lettered, then sent back by a
    /// redrive after later changes had gone on. Their groups are not held to the order.
    pub reordered: BTreeSet<ChangeId>,
}

/// [`check`], and raw staging against what was sent: every change staged or dead-lettered,
/// and each group's changes staged in the source's order.
pub fn check_with_staging(
    sent: &[Sent],
    history: &[Snapshot],
    letters: &[Letter],
    staging: &Staging,
) -> Report {
    let mut report = check(sent, history, letters);
    let lettered: BTreeSet<&ChangeId> = letters.iter().filter_map(|l| l.change.as_ref()).collect();
    // The last landing of each change: the one its source saw acknowledged.
    let mut last: BTreeMap<&ChangeId, &LandedAt> = BTreeMap::new();
    for (id, at) in &staging.landings {
        let e = last.entry(id).or_insert(at);
        if (at.ms, &at.object, at.line) > (e.ms, &e.object, e.line) {
            *e = at;
        }
    }
    for s in sent {
        let id = (s.table.clone(), s.key.clone(), s.seq.clone());
        if !last.contains_key(&id) && !lettered.contains(&id) {
            report.counts.unstaged += 1;
            report.anomalies.push(format!(
                "{}/{}: change at seq {} is neither in raw staging nor dead-lettered",
                s.table, s.key, s.seq
            ));
        }
    }
    for (group, changes) in &staging.orders {
        // A change on a dead-letter queue that never landed (moved by a queue's redrive policy,
        // in a stream batch given up) took the group's order with it: the source went on
        // without it, as SQS and Lambda do. Such a group is not held to the order.
        if changes
            .iter()
            .any(|c| lettered.contains(c) && !last.contains_key(c))
            || changes.iter().any(|c| staging.reordered.contains(c))
        {
            continue;
        }
        report.counts.ordered_groups += 1;
        let mut latest: Option<(&ChangeId, &LandedAt)> = None;
        for id in changes {
            // A change that never landed (dead-lettered before staging) has no place in the order.
            let Some(at) = last.get(id).copied() else {
                continue;
            };
            if let Some((before, then)) = latest {
                if at.surely_before(then) {
                    report.counts.out_of_order += 1;
                    report.anomalies.push(format!(
                        "{group}: {}/{} at seq {} landed before {}/{} at seq {}, which its source gave earlier (landings: {})",
                        id.0, id.1, id.2, before.0, before.1, before.2,
                        landings_of(&staging.landings, changes)
                    ));
                    continue;
                }
            }
            if latest.is_none_or(|(_, then)| {
                (at.ms, &at.object, at.line) > (then.ms, &then.object, then.line)
            }) {
                latest = Some((id, at));
            }
        }
    }
    report
}

/// Where each of a group's changes landed, in the source's order: `seq@ms:object#line`, each
/// landing of a change.
fn landings_of(landings: &[(ChangeId, LandedAt)], changes: &[ChangeId]) -> String {
    changes
        .iter()
        .map(|c| {
            let at: Vec<String> = landings
                .iter()
                .filter(|(id, _)| id == c)
                .map(|(_, a)| format!("{}:{}#{}", a.ms, a.object, a.line))
                .collect();
            format!("{}/{}@[{}]", c.1, c.2, at.join(" "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a row is not what the change says, if it is not.
fn differs(effect: &Effect, row: &Row) -> Option<String> {
    match effect {
        Effect::Delete if !row.deleted => Some("a delete, but the row is alive".into()),
        Effect::Delete => None,
        Effect::Put(_) if row.deleted => Some("an upsert, but the row is a tombstone".into()),
        Effect::Put(fields) => fields.iter().find_map(|(name, want)| {
            let got = row.fields.get(name);
            (got != Some(want)).then(|| format!("{name} is {got:?}, the change sent {want}"))
        }),
        Effect::Poison => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seq(n: u64) -> String {
        format!("{n:040}")
    }

    fn put(key: &str, n: u64, v: i64) -> Sent {
        Sent {
            table: "t".into(),
            key: key.into(),
            seq: seq(n),
            effect: Effect::Put(BTreeMap::from([("v".into(), json!(v))])),
        }
    }

    fn delete(key: &str, n: u64) -> Sent {
        Sent {
            effect: Effect::Delete,
            ..put(key, n, 0)
        }
    }

    fn poison(key: &str, n: u64) -> Sent {
        Sent {
            effect: Effect::Poison,
            ..put(key, n, 0)
        }
    }

    fn row(n: u64, v: Option<i64>) -> Row {
        Row {
            seq: seq(n),
            deleted: v.is_none(),
            fields: v
                .map(|v| BTreeMap::from([("v".into(), json!(v))]))
                .unwrap_or_default(),
        }
    }

    fn snap(rows: &[(&str, Row)]) -> Snapshot {
        rows.iter()
            .map(|(k, r)| (("t".to_owned(), (*k).to_owned()), r.clone()))
            .collect()
    }

    fn letter(id: &str, key: &str, n: u64) -> Letter {
        Letter {
            failure_id: id.into(),
            change: Some(("t".into(), key.into(), seq(n))),
            code: "test".into(),
        }
    }

    /// A run where everything went right: two keys, one deleted, a poison change lettered.
    fn good() -> (Vec<Sent>, Vec<Snapshot>, Vec<Letter>) {
        let sent = vec![
            put("a", 1, 10),
            put("a", 3, 30),
            put("a", 2, 20),
            put("b", 1, 1),
            delete("b", 2),
            poison("a", 4),
        ];
        let history = vec![
            snap(&[("a", row(1, Some(10)))]),
            snap(&[("a", row(3, Some(30))), ("b", row(1, Some(1)))]),
            snap(&[("a", row(3, Some(30))), ("b", row(2, None))]),
        ];
        (sent, history, vec![letter("f1", "a", 4)])
    }

    #[test]
    fn a_run_that_went_right_is_clean_and_every_change_is_counted_once() {
        let (sent, history, letters) = good();
        let r = check(&sent, &history, &letters);
        assert!(r.counts.clean(), "{r:?}");
        assert_eq!(
            r.counts,
            Counts {
                sent: 6,
                typed: 2,
                stale: 3,
                dead_lettered: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_change_newer_than_its_row_and_not_dead_lettered_is_lost() {
        let (mut sent, history, letters) = good();
        sent.push(put("a", 5, 50));
        let r = check(&sent, &history, &letters);
        assert_eq!(r.counts.lost, 1, "{r:?}");
        assert!(r.anomalies[0].contains("t/a: change at seq"), "{r:?}");
        // A lettered poison whose dead letter went missing is lost too.
        let r = check(&good().0, &good().1, &[]);
        assert_eq!(r.counts.lost, 1, "{r:?}");
        // A key with no row at all.
        let r = check(&[put("c", 1, 1)], &good().1, &[]);
        assert_eq!(r.counts.lost, 1, "{r:?}");
    }

    #[test]
    fn a_typed_change_still_lettered_is_a_duplicate_effect_and_a_second_copy_is_not() {
        let (sent, history, mut letters) = good();
        letters.push(letter("f1", "a", 4));
        let r = check(&sent, &history, &letters);
        assert!(r.counts.clean(), "{r:?}");
        assert_eq!((r.counts.duplicate_letters, r.counts.dead_lettered), (1, 1));
        let (sent, history, mut letters) = good();
        letters.push(letter("f2", "a", 3));
        let r = check(&sent, &history, &letters);
        assert_eq!(r.counts.duplicate_effects, 1, "{r:?}");
        assert_eq!(r.counts.lost, 0);
    }

    #[test]
    fn a_deleted_key_alive_again_is_resurrected() {
        // The final row is the old value although the delete was sent.
        let (sent, mut history, letters) = good();
        history.push(snap(&[("a", row(3, Some(30))), ("b", row(1, Some(1)))]));
        let r = check(&sent, &history, &letters);
        assert_eq!(r.counts.resurrected, 2, "final state and history: {r:?}");
        assert_eq!(r.counts.nonmonotonic, 1, "{r:?}");
        assert_eq!(r.counts.lost, 1, "the delete is lost: {r:?}");
    }

    #[test]
    fn a_valid_change_on_the_queue_is_stranded_not_lost() {
        let (mut sent, history, mut letters) = good();
        sent.push(put("a", 5, 50));
        letters.push(Letter {
            code: "raw_write_failed".into(),
            ..letter("f5", "a", 5)
        });
        let r = check(&sent, &history, &letters);
        assert!(r.counts.clean(), "{r:?}");
        assert_eq!((r.counts.dead_lettered, r.counts.stranded), (2, 1));
        assert_eq!(r.stranded_by_code["raw_write_failed"], 1);
    }

    #[test]
    fn a_seq_that_goes_back_is_nonmonotonic_once_per_key() {
        let (sent, mut history, letters) = good();
        history.insert(1, snap(&[("a", row(2, Some(20)))]));
        history.insert(2, snap(&[("a", row(1, Some(10)))]));
        history.insert(3, snap(&[("a", row(1, Some(10)))]));
        let r = check(&sent, &history, &letters);
        assert_eq!(r.counts.nonmonotonic, 1, "{r:?}");
    }

    #[test]
    fn a_row_no_change_made_or_with_other_values_is_reported() {
        let (sent, mut history, letters) = good();
        let last = history.last_mut().unwrap();
        last.insert(("t".into(), "a".into()), row(9, Some(90)));
        let r = check(&sent, &history, &letters);
        assert_eq!((r.counts.phantoms, r.counts.lost), (1, 0), "{r:?}");
        let (sent, mut history, letters) = good();
        let last = history.last_mut().unwrap();
        last.insert(("t".into(), "a".into()), row(3, Some(31)));
        let r = check(&sent, &history, &letters);
        assert_eq!(r.counts.diverged, 1, "{r:?}");
        assert!(r.anomalies[0].contains("v is"), "{r:?}");
    }

    fn id(key: &str, n: u64) -> ChangeId {
        ("t".into(), key.into(), seq(n))
    }

    fn at(ms: i64, object: &str, line: usize) -> LandedAt {
        LandedAt {
            ms,
            object: object.into(),
            line,
        }
    }

    /// Every change of `good()` but the poison one (dead-lettered at ingest) landed, "a" in
    /// its seq order across two objects, "b" in one.
    fn staged() -> Staging {
        Staging {
            landings: vec![
                (id("a", 1), at(10, "o1", 0)),
                (id("a", 2), at(10, "o1", 1)),
                (id("b", 1), at(10, "o1", 2)),
                (id("a", 3), at(11, "o2", 0)),
                (id("b", 2), at(11, "o2", 1)),
            ],
            orders: BTreeMap::from([
                ("key a".to_owned(), vec![id("a", 1), id("a", 2), id("a", 3)]),
                ("key b".to_owned(), vec![id("b", 1), id("b", 2)]),
            ]),
            reordered: BTreeSet::new(),
        }
    }

    #[test]
    fn staging_in_the_sources_order_with_every_change_is_clean() {
        let (sent, history, letters) = good();
        let r = check_with_staging(&sent, &history, &letters, &staged());
        assert!(r.counts.clean(), "{r:?}");
        assert_eq!(r.counts.ordered_groups, 2);
    }

    #[test]
    fn a_change_that_landed_before_an_earlier_one_is_out_of_order() {
        let (sent, history, letters) = good();
        let mut staging = staged();
        // a@3 landed before a@2 for good.
        staging.landings[3].1 = at(9, "o0", 0);
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert_eq!(r.counts.out_of_order, 1, "{r:?}");
        assert!(r.anomalies[0].starts_with("key a: t/a at seq"), "{r:?}");
        // Within one object, the line order counts.
        let mut staging = staged();
        staging.landings.swap(0, 1);
        staging.landings[0].1 = at(10, "o1", 0);
        staging.landings[1].1 = at(10, "o1", 1);
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert_eq!(r.counts.out_of_order, 1, "{r:?}");
    }

    #[test]
    fn a_retry_that_lands_a_change_again_in_order_is_no_anomaly() {
        let (sent, history, letters) = good();
        let mut staging = staged();
        // a@2 failed after a@3's object was written; both were retried, in order.
        staging.landings.push((id("a", 2), at(12, "o3", 0)));
        staging.landings.push((id("a", 3), at(12, "o3", 1)));
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert!(r.counts.clean(), "{r:?}");
        // Retried alone, a@2 now lands after a@3 for good: out of order.
        let mut staging = staged();
        staging.landings.push((id("a", 2), at(12, "o3", 0)));
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert_eq!(r.counts.out_of_order, 1, "{r:?}");
    }

    #[test]
    fn a_change_sent_back_by_a_redrive_is_not_held_to_the_order() {
        let (sent, history, letters) = good();
        let mut staging = staged();
        staging.landings[0].1 = at(20, "o9", 0);
        let r = check_with_staging(&sent, &history, &letters, &staging);
        // a@2 and a@3 both landed before a@1 for good.
        assert_eq!(r.counts.out_of_order, 2, "{r:?}");
        staging.reordered.insert(id("a", 1));
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert!(r.counts.clean(), "{r:?}");
        assert_eq!(r.counts.ordered_groups, 1, "{r:?}");
    }

    #[test]
    fn a_group_whose_change_waits_on_the_dead_letter_queue_is_not_held_to_the_order() {
        let (sent, history, mut letters) = good();
        let mut staging = staged();
        // a@1 was moved to the queue before it landed; a@3 then landed before a@2.
        staging.landings.remove(0);
        staging.landings[0].1 = at(12, "o3", 0);
        letters.push(letter("m", "a", 1));
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert!(r.counts.clean(), "{r:?}");
        assert_eq!(r.counts.ordered_groups, 1, "{r:?}");
    }

    #[test]
    fn two_objects_of_one_millisecond_cannot_be_told_apart() {
        let (sent, history, letters) = good();
        let mut staging = staged();
        staging.landings[3].1 = at(10, "o0", 5);
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert_eq!(r.counts.out_of_order, 0, "{r:?}");
    }

    #[test]
    fn a_change_neither_staged_nor_dead_lettered_is_unstaged() {
        let (sent, history, letters) = good();
        let mut staging = staged();
        staging.landings.retain(|(i, _)| *i != id("b", 1));
        let r = check_with_staging(&sent, &history, &letters, &staging);
        assert_eq!(r.counts.unstaged, 1, "{r:?}");
        assert!(!r.counts.clean());
        assert!(r.anomalies[0].contains("t/b: change at seq"), "{r:?}");
    }
}
