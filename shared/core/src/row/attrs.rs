//! A typed row's own attributes ([`RowAttrs`]).

use std::sync::Arc;

use serde_dynamo::AttributeValue;

/// A typed row's own attributes: its key, its fields and `_extra`. A row has a few, so they are
/// kept in a vector and found by name, with names shared with the contract's fields; a held
/// row is about half the size a hash map makes it. Two are equal when they hold the same
/// attributes, in any order.
#[derive(Debug, Clone, Default)]
pub struct RowAttrs(Vec<(Arc<str>, AttributeValue)>);

impl RowAttrs {
    /// Room for `n` attributes.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.get_key_value(name).map(|(_, v)| v)
    }

    /// The shared name and the value of `name`.
    pub fn get_key_value(&self, name: &str) -> Option<(&Arc<str>, &AttributeValue)> {
        self.0
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(k, v)| (k, v))
    }

    /// The value of `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut AttributeValue> {
        self.0
            .iter_mut()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| v)
    }

    /// Whether the row has `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: Arc<str>, value: AttributeValue) -> Option<AttributeValue> {
        match self.get_mut(&name) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push((name, value));
                None
            }
        }
    }

    /// The value of `name`, set to `init` first when the row has none.
    pub fn get_or_insert(&mut self, name: &str, init: AttributeValue) -> &mut AttributeValue {
        let at = match self.0.iter().position(|(k, _)| **k == *name) {
            Some(at) => at,
            None => {
                self.0.push((Arc::from(name), init));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<AttributeValue> {
        let at = self.0.iter().position(|(k, _)| **k == *name)?;
        Some(self.0.swap_remove(at).1)
    }

    /// How many attributes the row has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the row has none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The attributes, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &AttributeValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The values, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &AttributeValue> {
        self.0.iter().map(|(_, v)| v)
    }

    /// The slots the row reserves, used or not (for [`super::TypedRow::held_bytes`]).
    pub(super) fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl PartialEq for RowAttrs {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

/// For tests: `row.item["total"]`.
#[cfg(test)]
impl std::ops::Index<&str> for RowAttrs {
    type Output = AttributeValue;

    /// The value of `name`; panics when the row has none, as a map's index does.
    fn index(&self, name: &str) -> &AttributeValue {
        match self.get(name) {
            Some(v) => v,
            None => panic!("the row has no attribute {name:?}"),
        }
    }
}

impl FromIterator<(Arc<str>, AttributeValue)> for RowAttrs {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, AttributeValue)>>(iter: I) -> Self {
        let mut attrs = Self::default();
        for (k, v) in iter {
            attrs.insert(k, v);
        }
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn a_name_holds_one_value_and_order_does_not_matter() {
        let mut a = RowAttrs::default();
        assert_eq!(a.insert("x".into(), s("1")), None);
        assert_eq!(a.insert("y".into(), s("2")), None);
        assert_eq!(a.insert("x".into(), s("3")), Some(s("1")));
        assert_eq!(a.len(), 2);
        assert_eq!(a["x"], s("3"));
        let b: RowAttrs = [("y".into(), s("2")), ("x".into(), s("3"))]
            .into_iter()
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.remove("x"), Some(s("3")));
        assert_eq!(a.remove("x"), None);
        assert!(!a.contains_key("x") && a.contains_key("y"));
        assert_ne!(a, b);
        *a.get_or_insert("y", s("unused")) = s("4");
        *a.get_or_insert("z", s("5")) = s("6");
        assert_eq!(
            (a.get("y"), a.get("z"), a.len()),
            (Some(&s("4")), Some(&s("6")), 2)
        );
    }
}
