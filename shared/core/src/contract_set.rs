//! A loaded set of contracts, looked up by the source table and format of a change.

use std::sync::Arc;

use crate::change::Format;
use crate::contract::{self, Contract, ContractErrors};

/// A loaded set of contracts, looked up by source table and format.
#[derive(Debug, Default)]
pub struct ContractSet {
    contracts: Vec<Arc<Contract>>,
    /// Files that did not check, with their problems.
    pub rejected: Vec<ContractErrors>,
}

impl ContractSet {
    /// Builds a set from (file name, text) pairs.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut set = Self::default();
        for (name, text) in files {
            match contract::parse(&name, &text) {
                Ok(c) => set.contracts.push(Arc::new(c)),
                Err(e) => set.rejected.push(e),
            }
        }
        set.contracts.sort_by(|a, b| a.name.cmp(&b.name));
        set
    }

    /// The contracts fed by `table` in `format`.
    pub fn for_source(&self, table: &str, format: Format) -> Vec<Arc<Contract>> {
        self.contracts
            .iter()
            .filter(|c| c.accepts(table, format))
            .cloned()
            .collect()
    }

    /// Every contract.
    pub fn all(&self) -> &[Arc<Contract>] {
        &self.contracts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_is_rejected_and_the_rest_are_served() {
        let good = "name: t\nversion: 1\nsources: [{table: src}]\nprimary_key: [id]\nfields: [{name: id, type: int}]\n";
        let set = ContractSet::from_files([
            ("good.yaml".to_owned(), good.to_owned()),
            ("bad.yaml".to_owned(), "name: [".to_owned()),
        ]);
        assert_eq!(set.all().len(), 1);
        assert_eq!(set.rejected.len(), 1);
        assert_eq!(set.for_source("src", Format::App).len(), 1);
        assert!(set.for_source("other", Format::App).is_empty());
    }
}
