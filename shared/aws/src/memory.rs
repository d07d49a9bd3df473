//! One in-memory adapter for every port, for unit, property and fixture tests (feature
//! `test-util`). Typed rows are written through [`sluice_core::row::apply_write`], the same
//! model of the ordering guard and the conditional writes as the DynamoDB adapter, so a test on
//! memory sees the rows DynamoDB would hold.
//!
//! [`Faults`] makes a port fail the way AWS fails: retriably (an outage, throttling) or for good
//! (a refusal). [`Memory::discarding`] keeps nothing, for tests that measure the handler's own
//! allocations.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::GzipDecoder;
use sluice_core::envelope::FailureEnvelope;
use sluice_core::row::{apply_write, Item, TypedRow, WriteOutcome};
use tokio::io::BufReader;

use crate::error::AwsError;
use crate::ports::{DeadLetters, ObjectReader, RawObjects, RawStore, TypedTables};

/// How the in-memory ports fail.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Raw writes of keys containing this fail retriably, as under an S3 outage.
    pub raw_puts_failing: Option<String>,
    /// Raw writes of keys containing this are refused for good, as S3 refuses a write it is
    /// not allowed.
    pub raw_puts_refused: Option<String>,
    /// Every dead letter fails to send, retriably.
    pub dead_letters_failing: bool,
    /// Every typed write fails retriably, as under throttling that outlasts the retries.
    pub writes_failing: bool,
}

/// An object's bytes, shared by every reader of it.
#[derive(Debug, Clone)]
struct Shared(Arc<[u8]>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Raw objects, typed rows and dead letters, in memory.
#[derive(Debug)]
pub struct Memory {
    bucket: String,
    keep: bool,
    faults: Faults,
    /// Shared, so that reading an object copies nothing.
    objects: Mutex<BTreeMap<String, Shared>>,
    object_lines: Mutex<BTreeMap<String, usize>>,
    lines: AtomicUsize,
    /// By `<table>/<key id>`: a hash map, so a write costs the same however many rows it holds.
    rows: Mutex<HashMap<String, Item>>,
    dead: Mutex<Vec<FailureEnvelope>>,
    dead_count: AtomicUsize,
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

impl Memory {
    /// An empty store, bucket `mem`, that keeps everything and never fails.
    pub fn new() -> Self {
        Self {
            bucket: "mem".into(),
            keep: true,
            faults: Faults::default(),
            objects: Mutex::default(),
            object_lines: Mutex::default(),
            lines: AtomicUsize::new(0),
            rows: Mutex::default(),
            dead: Mutex::default(),
            dead_count: AtomicUsize::new(0),
        }
    }

    /// A store that counts what it is given and keeps nothing.
    pub fn discarding() -> Self {
        Self {
            keep: false,
            ..Self::new()
        }
    }

    /// The same store, failing as `faults` says.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The same store, under another bucket name (for `s3://` references).
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// Stores an object as if it had been written to raw staging.
    pub fn put_object(&self, key: impl Into<String>, bytes: Vec<u8>) {
        lock(&self.objects).insert(key.into(), Shared(bytes.into()));
    }

    /// The objects written, by key.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.objects)
            .iter()
            .map(|(k, v)| (k.clone(), v.0.to_vec()))
            .collect()
    }

    /// The objects written by [`RawStore::put_raw`], with their line counts, by key.
    pub fn object_lines(&self) -> Vec<(String, usize)> {
        lock(&self.object_lines)
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    /// Raw lines written, kept or not.
    pub fn lines_landed(&self) -> usize {
        self.lines.load(Ordering::SeqCst)
    }

    /// The typed rows, by `<table>/<key id>`.
    pub fn rows(&self) -> BTreeMap<String, Item> {
        lock(&self.rows)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The dead letters sent, in order.
    pub fn dead_letters(&self) -> Vec<FailureEnvelope> {
        lock(&self.dead).clone()
    }

    /// Dead letters sent, kept or not.
    pub fn dead_letter_count(&self) -> usize {
        self.dead_count.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn failing(operation: &'static str, target: &str, retriable: bool, what: &str) -> AwsError {
    let mut e = AwsError::local(operation, target.to_owned(), what.to_owned());
    e.retriable = retriable;
    e
}

impl RawStore for Memory {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_raw(&self, key: &str, body: Vec<u8>, lines: usize) -> Result<(), AwsError> {
        let matches = |needle: &Option<String>| needle.as_deref().is_some_and(|n| key.contains(n));
        if matches(&self.faults.raw_puts_failing) {
            return Err(failing("PutObject", key, true, "injected outage"));
        }
        if matches(&self.faults.raw_puts_refused) {
            return Err(failing("PutObject", key, false, "injected refusal"));
        }
        self.lines.fetch_add(lines, Ordering::SeqCst);
        if self.keep {
            lock(&self.objects).insert(key.to_owned(), Shared(body.into()));
            lock(&self.object_lines).insert(key.to_owned(), lines);
        }
        Ok(())
    }
}

impl RawObjects for Memory {
    async fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader, AwsError> {
        let target = format!("s3://{bucket}/{key}");
        let bytes = lock(&self.objects)
            .get(key)
            .cloned()
            .ok_or_else(|| failing("GetObject", &target, false, "NoSuchKey"))?;
        let cursor = BufReader::new(std::io::Cursor::new(bytes));
        Ok(if key.ends_with(".gz") {
            Box::pin(BufReader::new(GzipDecoder::new(cursor)))
        } else {
            Box::pin(cursor)
        })
    }
}

impl TypedTables for Memory {
    async fn put_row(&self, row: &TypedRow) -> Result<WriteOutcome, AwsError> {
        if self.faults.writes_failing {
            return Err(failing("PutItem", &row.table, true, "injected throttling"));
        }
        let mut rows = lock(&self.rows);
        let id = format!("{}/{}", row.table, row.key_id());
        let mut slot = rows.remove(&id);
        let outcome = apply_write(&mut slot, row);
        if let Some(item) = slot {
            rows.insert(id, item);
        }
        Ok(outcome)
    }
}

impl DeadLetters for Memory {
    async fn send(&self, envelope: FailureEnvelope) -> Result<(), AwsError> {
        if self.faults.dead_letters_failing {
            return Err(failing("SendMessage", "memory", true, "injected outage"));
        }
        self.dead_count.fetch_add(1, Ordering::SeqCst);
        if self.keep {
            lock(&self.dead).push(envelope);
        }
        Ok(())
    }
}
