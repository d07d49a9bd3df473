//! Coalescing: within one raw object, only the newest change of each key is written, with the
//! fields it left unchanged filled from earlier changes of the key.

use std::collections::HashMap;

use super::extra::{as_extra_column, extra_of, set_extra};
use super::*;

/// Keeps, for each (table, key), only the row with the highest `seq`; a later row wins a tie.
/// Returns the winners in first-seen order and how many rows they superseded.
///
/// A winner that left fields unchanged (Debezium's unavailable TOAST values) takes them from the
/// newest earlier change of its key that has them, as the stored row would have; fields an
/// earlier full image had as null become known-missing.
pub fn coalesce(rows: impl IntoIterator<Item = TypedRow>) -> (Vec<TypedRow>, usize) {
    let mut groups: Vec<Vec<(TypedRow, ())>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut superseded = 0;
    for row in rows {
        let id = (row.table.clone(), row.key_id());
        match index.get(&id) {
            None => {
                index.insert(id, groups.len());
                groups.push(vec![(row, ())]);
            }
            Some(&i) => {
                superseded += 1;
                push_change(&mut groups[i], row, ());
            }
        }
    }
    let winners = groups
        .into_iter()
        .filter_map(newest_of)
        .map(|(row, ())| row)
        .collect();
    (winners, superseded)
}

/// Adds a change of one key to those kept so far, dropping every change that can no longer alter
/// what [`newest_of`] makes of them. In `seq` order (arrival order among equal `seq`s), a change
/// that carries every field (nothing unchanged) hides all the changes before it, since the fill
/// stops there. So a batch keeps, per key, the changes from its newest complete one on: memory
/// grows with keys, not with lines, and the result is the same as keeping them all.
pub fn push_change<T>(group: &mut Vec<(TypedRow, T)>, row: TypedRow, attached: T) {
    if group.is_empty() {
        group.push((row, attached));
        return;
    }
    if group
        .iter()
        .any(|(kept, _)| kept.unchanged.is_empty() && kept.seq > row.seq)
    {
        // A newer complete change hides it.
        return;
    }
    if row.unchanged.is_empty() {
        // It hides every kept change before it: lower `seq`s, and equal ones that came earlier.
        group.retain(|(kept, _)| kept.seq > row.seq);
    }
    group.push((row, attached));
}

/// The newest of several rows of one key, each with something attached (such as its commit
/// time): the highest `seq`, a later one winning a tie, with the fields it left unchanged filled
/// from the newest earlier row that has them. `None` for no rows.
pub fn newest_of<T>(mut group: Vec<(TypedRow, T)>) -> Option<(TypedRow, T)> {
    // Stable: among equal `seq`s the later row stays later, and so wins.
    group.sort_by(|a, b| a.0.seq.cmp(&b.0.seq));
    group
        .into_iter()
        .reduce(|(prev, _), (next, attached)| (fill_unchanged(prev, next), attached))
}

/// `next` (the newer change) with the fields it left unchanged filled from `prev`, recording
/// where each value came from.
pub(super) fn fill_unchanged(prev: TypedRow, mut next: TypedRow) -> TypedRow {
    let unchanged = std::mem::take(&mut next.unchanged);
    for field in unchanged {
        if let Some(column) = as_extra_column(&field) {
            if prev.unchanged.contains(&field) {
                next.unchanged.push(field);
            } else if !prev.is_tombstone() {
                set_extra(&mut next.item, column, extra_of(&prev.item, column));
            }
            continue;
        }
        if prev.is_tombstone() {
            // Deleted since: nothing to keep.
            next.missing.push(field.clone());
            next.filled.push((field, prev.seq.clone()));
            continue;
        }
        if prev.unchanged.contains(&field) {
            // The earlier change did not carry it either: still unknown.
            next.unchanged.push(field);
            continue;
        }
        let from = prev
            .filled
            .iter()
            .find(|(f, _)| *f == field)
            .map_or_else(|| prev.seq.clone(), |(_, s)| s.clone());
        match prev.item.get_key_value(field.as_str()) {
            Some((name, v)) => {
                next.item.insert(name.clone(), v.clone());
            }
            None => next.missing.push(field.clone()),
        }
        next.filled.push((field, from));
    }
    next
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as Map;

    use proptest::prelude::*;

    use super::super::test_support::*;
    use super::*;

    #[test]
    fn coalescing_keeps_the_highest_seq_per_key() {
        let rows: Vec<TypedRow> = [(3, "a"), (1, "a"), (2, "b"), (5, "a"), (5, "b")]
            .into_iter()
            .map(|(seq, k)| {
                let c = change(
                    Op::Update,
                    seq,
                    Some(&format!(r#"{{"order_id":"{k}","customer_id":"c{seq}"}}"#)),
                    None,
                );
                type_change(&c, &contract(), &meta()).unwrap().unwrap()
            })
            .collect();
        let (winners, superseded) = coalesce(rows);
        assert_eq!(superseded, 3);
        assert_eq!(winners.len(), 2);
        assert_eq!(winners[0].item["customer"], AttributeValue::S("c5".into()));
        assert_eq!(winners[1].item["customer"], AttributeValue::S("c5".into()));
    }

    /// A change of one key: its seq, and whether it deletes or sets a value.
    fn history() -> impl Strategy<Value = Vec<(u64, Option<u32>)>> {
        prop::collection::vec(prop::option::weighted(0.8, any::<u32>()), 1..20).prop_map(|values| {
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i as u64 + 1, v))
                .collect()
        })
    }

    fn row_for(seq: u64, value: Option<u32>, key: &str) -> TypedRow {
        let c = match value {
            Some(v) => change(
                Op::Update,
                seq,
                Some(&format!(r#"{{"order_id":"{key}","customer_id":"c{v}"}}"#)),
                None,
            ),
            None => change(
                Op::Delete,
                seq,
                None,
                Some(&format!(r#"{{"order_id":"{key}"}}"#)),
            ),
        };
        type_change(&c, &contract(), &meta()).unwrap().unwrap()
    }

    /// A table that applies writes through the guard, as the conditional write does.
    fn apply(table: &mut Map<String, TypedRow>, row: TypedRow) {
        let id = row.key_id();
        let stored = table.get(&id).map(|r| (&r.seq, r.version));
        if supersedes(stored, &row.seq, row.version) {
            table.insert(id, row);
        }
    }

    proptest! {
        /// Keeping only the changes that can still matter gives the same row as keeping them
        /// all, whatever the order, the ties and the partial (TOAST-like) changes.
        #[test]
        fn keeping_only_what_can_matter_changes_nothing(
            changes in prop::collection::vec((1u64..6, any::<bool>(), 0u32..4), 1..16),
        ) {
            let rows: Vec<TypedRow> = changes
                .iter()
                .enumerate()
                .map(|(i, (seq, partial, v))| {
                    let mut row = row_for(*seq, Some(*v * 100 + i as u32), "k");
                    if *partial {
                        row.item.remove("customer");
                        row.unchanged.push("customer".into());
                    }
                    row
                })
                .collect();
            let all: Vec<(TypedRow, usize)> = rows.iter().cloned().zip(0..).collect();
            let mut kept = Vec::new();
            for (row, i) in rows.into_iter().zip(0..) {
                push_change(&mut kept, row, i);
            }
            prop_assert!(kept.len() <= all.len());
            prop_assert_eq!(newest_of(kept), newest_of(all));
        }

        /// Any permutation or duplication of a key's changes, delivered in objects of any size,
        /// ends in the same row as applying them in order.
        #[test]
        fn any_order_and_duplication_converges(
            history in history(),
            shuffle in any::<prop::sample::Index>(),
            dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            chunk in 1usize..6,
        ) {
            let mut in_order = Map::new();
            for (seq, v) in &history {
                apply(&mut in_order, row_for(*seq, *v, "k"));
            }
            let delivery = delivery(&history, shuffle, &dups);
            let mut shuffled = Map::new();
            for object in delivery.chunks(chunk) {
                let (winners, _) = coalesce(object.iter().map(|(s, v)| row_for(*s, *v, "k")));
                for row in winners {
                    apply(&mut shuffled, row);
                }
            }
            prop_assert_eq!(in_order, shuffled);
        }
    }
}
