//! One raw object (or one inline raw line): its lines read and decided, the rows coalesced per
//! key, the winners written and the dead letters sent.

use std::collections::HashMap;
use std::fmt::Write as _;

use futures::stream::{self, StreamExt};
use serde_json::value::RawValue;
use sluice_aws::raw_objects::RawObjects;
use sluice_aws::typed_tables::{TypedTables, WriteOutcome};
use sluice_aws::{AwsError, DeadLetters};
use sluice_core::decide::{decide, ContractResult, DecideContext, LineOutcome};
use sluice_core::envelope::{FailureEnvelope, Step};
use sluice_core::json::Limits;
use sluice_core::raw::{RawLineView, TsSource};
use sluice_core::row::TypedRow;
use sluice_core::{DecodeError, ErrorClass};

use crate::contracts::ContractSet;

use super::*;
use crate::lines::{read_line_capped, LineRead};

/// A typed row kept for writing, with its source commit time (for latency) and what it holds in
/// memory ([`TypedRow::held_bytes`]).
type Kept = (TypedRow, (Option<i64>, usize));

/// Which lines of an object to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    /// Every line.
    All,
    /// One line, by its number from 1 (a redrive of a line too large to travel inline).
    Line(usize),
    /// The lines whose source commit time is in `[since_ms, until_ms)` (a replay).
    Window {
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    },
}

/// Whether a raw line's `ts_ms` is in the window. A line whose time cannot be read is decided
/// anyway: transform then says what is wrong with it.
fn in_window(line: &[u8], since_ms: Option<i64>, until_ms: Option<i64>) -> bool {
    #[derive(serde::Deserialize)]
    struct Ts {
        ts_ms: i64,
    }
    match serde_json::from_slice::<Ts>(line) {
        Ok(Ts { ts_ms }) => {
            since_ms.is_none_or(|s| ts_ms >= s) && until_ms.is_none_or(|u| ts_ms < u)
        }
        Err(_) => true,
    }
}

// ---------------------------------------------------------------------------------------------
// One object (or one inline line)

pub(super) struct ObjectBatch<'a, O, T, D> {
    contracts: &'a ContractSet,
    deps: &'a Transform<O, T, D>,
    now_ms: i64,
    retry_count: u32,
    /// When the records first failed, for a redriven message.
    first_failed_at: Option<String>,
    /// Winners per typed table and key (see [`Self::keep`]), with the line's commit time if it
    /// came from the source.
    rows: HashMap<String, Vec<Kept>>,
    /// The bytes the rows hold; past `coalesce_max_bytes`, the winners so far are written.
    held: usize,
    dead: Vec<FailureEnvelope>,
}

impl<'a, O: RawObjects, T: TypedTables, D: DeadLetters> ObjectBatch<'a, O, T, D> {
    pub(super) fn new(
        contracts: &'a ContractSet,
        deps: &'a Transform<O, T, D>,
        now_ms: i64,
        retry_count: u32,
    ) -> Self {
        Self {
            contracts,
            deps,
            now_ms,
            retry_count,
            first_failed_at: None,
            rows: HashMap::new(),
            held: 0,
            dead: Vec::new(),
        }
    }

    /// Keeps the first failure time a redriven message carries.
    pub(super) fn first_failed_at(mut self, at: Option<String>) -> Self {
        self.first_failed_at = at;
        self
    }

    /// Reads an object and decides the lines `pick` selects.
    pub(super) async fn read_object(
        &mut self,
        bucket: &str,
        key: &str,
        pick: Pick,
        stats: &mut TransformStats,
    ) -> Result<(), Retry> {
        let only = match pick {
            Pick::Line(n) => Some(n),
            _ => None,
        };
        let object_ref = format!("s3://{bucket}/{key}");
        let mut reader = match self.deps.objects.open(bucket, key).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => return Err(Retry::Aws(e)),
            Err(e) => {
                self.object_failure(&object_ref, "object_unreadable", e.to_string(), stats);
                return Ok(());
            }
        };
        let max = self.deps.config.max_line_bytes;
        let mut buf = Vec::new();
        let mut raw_ref = object_ref.clone();
        let mut n = 0usize;
        loop {
            buf.clear();
            let read = match read_line_capped(&mut reader, &mut buf, max).await {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.object_failure(
                        &object_ref,
                        "object_corrupt",
                        format!("after line {n}: {e}"),
                        stats,
                    );
                    return Ok(());
                }
                Err(source) => {
                    return Err(Retry::Read {
                        object: object_ref,
                        source,
                    })
                }
            };
            n += 1;
            if let Some(wanted) = only {
                if matches!(read, LineRead::Eof) && n > wanted {
                    break;
                }
                if matches!(read, LineRead::Eof) {
                    self.object_failure(
                        &format!("{object_ref}#L{wanted}"),
                        "line_not_found",
                        format!("the object has {} line(s), not {wanted}", n - 1),
                        stats,
                    );
                    break;
                }
                if n < wanted {
                    continue;
                }
                if n > wanted {
                    break;
                }
            }
            // One buffer for every line's reference, rewritten in place.
            raw_ref.truncate(object_ref.len());
            raw_ref.push_str("#L");
            let _ = write!(raw_ref, "{n}");
            let counted = match read {
                LineRead::Line => !buf.iter().all(u8::is_ascii_whitespace),
                LineRead::TooLong(_) => true,
                LineRead::Eof => false,
            };
            if counted {
                stats.lines += 1;
            }
            match read {
                LineRead::Eof => break,
                LineRead::TooLong(size) => {
                    let err = DecodeError::TooLarge { size, limit: max };
                    let mut env = self.envelope(
                        ErrorClass::TooLarge,
                        err.code(),
                        format!("line {n}: {err}"),
                        &raw_ref,
                        None,
                    );
                    env.original_ref = Some(raw_ref.clone());
                    env.original_bytes = size;
                    self.quarantine(env, None, stats);
                }
                LineRead::Line => {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if let Pick::Window { since_ms, until_ms } = pick {
                        if !in_window(&buf, since_ms, until_ms) {
                            stats.lines -= 1;
                            continue;
                        }
                    }
                    match std::str::from_utf8(&buf) {
                        Ok(text) => {
                            self.line(text, &raw_ref, stats);
                            if self.held > self.deps.config.coalesce_max_bytes {
                                // Bounded memory for an object of any size: a key seen again
                                // later is written again, and the `_seq` guard keeps the newest.
                                tracing::debug!(
                                    held = self.held,
                                    line = n,
                                    "Writing the winners so far to bound memory."
                                );
                                stats.partial_flushes += 1;
                                self.write_winners(stats).await?;
                            }
                        }
                        Err(e) => {
                            let err = DecodeError::InvalidUtf8 {
                                detail: e.to_string(),
                            };
                            let env = self
                                .envelope(err.class(), err.code(), err.to_string(), &raw_ref, None)
                                .with_original(String::from_utf8_lossy(&buf).into_owned());
                            self.quarantine(env, None, stats);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn object_failure(
        &mut self,
        object_ref: &str,
        code: &str,
        error: String,
        stats: &mut TransformStats,
    ) {
        let mut env = self.envelope(ErrorClass::Internal, code, error, object_ref, None);
        env.original_ref = Some(object_ref.to_owned());
        self.quarantine(env, None, stats);
    }

    fn envelope(
        &self,
        class: ErrorClass,
        code: &str,
        error: String,
        raw_ref: &str,
        origin: Option<&RawValue>,
    ) -> FailureEnvelope {
        let origin = origin.map(|o| o.to_owned()).unwrap_or_else(|| {
            serde_json::value::to_raw_value(&serde_json::json!({"kind": "raw", "ref": raw_ref}))
                .unwrap_or_default()
        });
        let mut env = FailureEnvelope::new(
            Step::Transform,
            class,
            code,
            error,
            (raw_ref, ""),
            origin,
            self.now_ms,
        );
        env.raw_ref = Some(raw_ref.to_owned());
        env.retry_count = self.retry_count;
        if let Some(at) = &self.first_failed_at {
            env.first_failed_at.clone_from(at);
        }
        env
    }

    fn quarantine(
        &mut self,
        env: FailureEnvelope,
        table: Option<&str>,
        stats: &mut TransformStats,
    ) {
        *stats
            .quarantined
            .entry(env.error_class.as_str())
            .or_default() += 1;
        *stats
            .dead_letters
            .entry(env.error_code.clone().unwrap_or_default())
            .or_default() += 1;
        if let Some(t) = table {
            stats.tables.entry(t.to_owned()).or_default().quarantined += 1;
        }
        self.dead.push(env);
    }

    /// Types one raw line into rows, or dead-letters it, as [`decide`] says.
    pub(super) fn line(&mut self, text: &str, raw_ref: &str, stats: &mut TransformStats) {
        let limits = Limits {
            max_record_bytes: self.deps.config.max_line_bytes,
            max_depth: self.deps.config.max_depth,
        };
        let cx = DecideContext {
            contracts: self.contracts,
            limits: &limits,
            tombstone_expires_at: self.now_ms / 1000
                + i64::try_from(self.deps.config.tombstone_ttl_days).unwrap_or(35) * 86_400,
        };
        match decide(text, raw_ref, &cx) {
            LineOutcome::NotARawLine(err) => {
                let env = self
                    .envelope(err.class(), err.code(), err.to_string(), raw_ref, None)
                    .with_original(text.to_owned());
                self.quarantine(env, None, stats);
            }
            LineOutcome::Undecodable { line, error, .. } => {
                let env = self.line_envelope(
                    &line,
                    text,
                    raw_ref,
                    (error.class(), error.code()),
                    error.to_string(),
                );
                self.quarantine(env, Some(&line.table), stats);
            }
            LineOutcome::Control { .. } => stats.control += 1,
            LineOutcome::Truncate { line, change, .. } => {
                // Never silent, never automatic: a typed table may merge several sources and
                // outlive a truncate-and-reload, so a person decides what it means for it.
                let error = format!(
                    "source table {:?} was truncated at seq {}; typed rows from it were not removed. \
                     To follow the source, delete the typed rows whose `_seq` is below that seq, \
                     then delete this dead letter; to keep them, just delete this dead letter",
                    change.route.table, change.route.seq
                );
                tracing::warn!(table = %change.route.table, raw_ref, "A source truncate was received; sent to the dead-letter queue for a person to act on.");
                let env = self.line_envelope(
                    &line,
                    text,
                    raw_ref,
                    (ErrorClass::SourceTruncated, "source_truncated"),
                    error,
                );
                self.quarantine(env, Some(&line.table), stats);
            }
            LineOutcome::NoContract { line, change } => {
                let error = format!(
                    "no contract takes table {:?} in format {}",
                    change.route.table,
                    change.route.format.as_str()
                );
                let env = self.line_envelope(
                    &line,
                    text,
                    raw_ref,
                    (ErrorClass::NoContract, "no_contract"),
                    error,
                );
                self.quarantine(env, Some(&line.table), stats);
            }
            LineOutcome::Typed { line, results, .. } => {
                let source_ts = (line.ts_source == TsSource::Source).then_some(line.ts_ms);
                for ContractResult { contract, rows } in results {
                    match rows {
                        Ok(rows) if rows.is_empty() => stats.control += 1,
                        Ok(rows) => {
                            for row in rows {
                                self.keep(row, source_ts, stats);
                            }
                        }
                        Err(v) => {
                            let code = v.code();
                            let mut env = self.line_envelope(
                                &line,
                                text,
                                raw_ref,
                                (ErrorClass::ContractViolation, code),
                                format!("contract {} v{}: {v}", contract.name, contract.version),
                            );
                            env.contract = Some(sluice_core::envelope::ContractRef {
                                name: contract.name.clone(),
                                version: contract.version,
                            });
                            // Two contracts on one line fail with distinct ids.
                            env.failure_id = sluice_core::envelope::failure_id(
                                Step::Transform,
                                raw_ref,
                                &contract.name,
                                code,
                            );
                            self.quarantine(env, Some(&contract.name), stats);
                        }
                    }
                }
            }
        }
    }

    /// The dead letter of a raw line: its origin, table and format, and the line verbatim.
    fn line_envelope(
        &self,
        line: &RawLineView<'_>,
        text: &str,
        raw_ref: &str,
        (class, code): (ErrorClass, &str),
        error: String,
    ) -> FailureEnvelope {
        let mut env = self
            .envelope(class, code, error, raw_ref, Some(line.origin))
            .with_original(text.to_owned());
        env.table = Some(line.table.clone().into_owned());
        env.format = Some(line.format);
        env
    }

    /// Keeps the row among the changes of its key in this batch; only the newest is written.
    fn keep(&mut self, row: TypedRow, source_ts: Option<i64>, stats: &mut TransformStats) {
        // One string names the typed table and the key: the table, a separator no key id
        // starts with, then the key id.
        let mut id = String::with_capacity(row.table.len() + 32);
        id.push_str(&row.table);
        id.push('\u{1e}');
        row.push_key_id(&mut id);
        // Most keys keep one change: room for one, not the four a first push would make.
        let group = self.rows.entry(id).or_insert_with(|| Vec::with_capacity(1));
        if !group.is_empty() {
            match stats.tables.get_mut(row.table.as_str()) {
                Some(table) => table.stale += 1,
                None => stats.tables.entry(row.table.clone()).or_default().stale += 1,
            }
        }
        let held = |g: &Vec<Kept>| g.iter().map(|(_, (_, b))| b).sum::<usize>();
        let before = held(group);
        let bytes = row.held_bytes();
        // Only the changes that can still alter the winner are kept: memory grows with keys.
        sluice_core::row::push_change(group, row, (source_ts, bytes));
        self.held = self.held - before + held(group);
    }

    /// Writes the newest row of each key held so far and forgets them. A row refused for good
    /// becomes a dead letter (sent by [`Self::flush`]); a retriable failure is returned once
    /// every row of this round has been tried.
    async fn write_winners(&mut self, stats: &mut TransformStats) -> Result<(), Retry> {
        let deps = self.deps;
        let now_ms = self.now_ms;
        self.held = 0;
        let winners = std::mem::take(&mut self.rows)
            .into_values()
            .filter_map(sluice_core::row::newest_of);
        let mut writes = stream::iter(winners)
            .map(|(row, (ts, _))| async move {
                let result = deps.tables.put_row(&row).await;
                if result.is_ok() {
                    crate::failpoint::hit("transform.after_typed_write");
                }
                (row, ts, result)
            })
            .buffer_unordered(deps.config.write_concurrency);
        let mut retry = None;
        // Each outcome is counted as it comes, so no row outlives its write.
        while let Some((row, ts, result)) = writes.next().await {
            // The table's name is copied only the first time it is counted.
            let table = match stats.tables.get_mut(row.table.as_str()) {
                Some(t) => t,
                None => stats.tables.entry(row.table.clone()).or_default(),
            };
            match result {
                Ok(WriteOutcome::Written) => {
                    table.written += 1;
                    if let (Some(ts), true) = (ts, table.latency_ms.len() < 100) {
                        table.latency_ms.push((now_ms - ts).max(0) as f64);
                    }
                }
                Ok(WriteOutcome::AlreadyWritten) => table.already_written += 1,
                Ok(WriteOutcome::Stale) => table.stale += 1,
                Err(e) if e.is_retriable() => retry = Some(Retry::Aws(e)),
                Err(e) => {
                    table.quarantined += 1;
                    let raw_ref = row.raw_ref.clone();
                    let origin = serde_json::value::to_raw_value(
                        &serde_json::json!({"kind": "raw", "ref": raw_ref}),
                    )
                    .unwrap_or_default();
                    let mut env = FailureEnvelope::new(
                        Step::Transform,
                        ErrorClass::ContractViolation,
                        "write_rejected",
                        format!("DynamoDB refused the row for {}: {e}", row.table),
                        (&raw_ref, &row.table),
                        origin,
                        now_ms,
                    );
                    env.raw_ref = Some(raw_ref.clone());
                    env.original_ref = Some(raw_ref);
                    env.retry_count = self.retry_count;
                    if let Some(at) = &self.first_failed_at {
                        env.first_failed_at.clone_from(at);
                    }
                    *stats.quarantined.entry("contract_violation").or_default() += 1;
                    *stats
                        .dead_letters
                        .entry("write_rejected".to_owned())
                        .or_default() += 1;
                    self.dead.push(env);
                }
            }
        }
        match retry {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Writes the winners and sends the dead letters. Fails if anything is not durable.
    pub(super) async fn flush(mut self, stats: &mut TransformStats) -> Result<(), Retry> {
        let deps = self.deps;
        let mut retry = self.write_winners(stats).await.err();
        let dead = self.dead;
        let sent = stream::iter(dead)
            .map(|env| async move {
                let sent = deps.dead_letters.send(env).await;
                if sent.is_ok() {
                    crate::failpoint::hit("transform.after_dead_letter");
                }
                sent
            })
            .buffer_unordered(deps.config.write_concurrency)
            .collect::<Vec<Result<(), AwsError>>>()
            .await;
        for r in sent {
            if let Err(e) = r {
                tracing::error!(error = %e, "Dead letter not sent; the message will be retried.");
                retry = Some(Retry::DeadLetter(e));
            }
        }
        match retry {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }
}
