//! Reconciliation: proves that nothing was lost between the sources, raw staging, the typed
//! tables and the dead-letter queue.
//!
//! Every change a source emitted is in one of five states (DESIGN §4): typed, stale,
//! dead-lettered (a failure envelope says why), in flight (on a queue, not yet past its
//! retries), or **unprocessed** (moved to the DLQ without an envelope by a queue's redrive
//! policy, or known only by a stream mapping's on-failure record). The audit is clean only when
//! nothing is unprocessed, nothing is in flight, and:
//! - every raw line is accounted for exactly once: **typed** (it is the line the stored row
//!   came from), **stale** (a newer or equal change of its key is stored), **quarantined** (its
//!   dead letter is on the DLQ) or **control** (it touches no row). Any other line is lost;
//! - the stored row of every key is the one its newest raw line types to, field by field, `seq`
//!   and contract version included; a typed row with no raw line behind it has lost its lineage;
//! - for DynamoDB sources, the source table and the typed table hold the same keys and the same
//!   typed values, and every deleted key is a tombstone.
//!
//! A dead letter counts once per `failure_id`, however many copies a retried batch left. What
//! the audit could not read (a DLQ too large to read within [`sluice_pipeline::dlq::READ_BUDGET`]) is said,
//! and an audit that could not read everything is not clean.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;

use serde_dynamo::AttributeValue;
use sluice_aws::AwsError;
use sluice_core::change::{Change, Image, Route};
use sluice_core::contract::{Contract, FieldType};
use sluice_core::json::Limits;
use sluice_core::row::{
    type_change, RowMeta, TypedRow, DELETED_ATTR, RAW_ATTR, SEQ_ATTR, VERSION_ATTR,
};
use sluice_core::typing::canonical_decimal;
use sluice_core::{Format, Op, Seq};

use sluice_core::decide::{decide, ContractResult, DecideContext, LineOutcome};
use sluice_pipeline::contracts::ContractSet;
use sluice_pipeline::dlq::DlqSnapshot;

/// What to audit.
pub struct AuditInput<'a> {
    /// S3, for raw staging.
    pub s3: &'a aws_sdk_s3::Client,
    /// SQS, for the DLQ.
    pub sqs: &'a aws_sdk_sqs::Client,
    /// DynamoDB, for typed and source tables.
    pub ddb: &'a aws_sdk_dynamodb::Client,
    /// The raw bucket.
    pub raw_bucket: &'a str,
    /// The dead-letter queues: the DLQ, and the FIFO ingest queue's when there is one.
    pub dlq_urls: &'a [String],
    /// The contracts.
    pub contracts: &'a ContractSet,
    /// The typed tables' name prefix.
    pub typed_table_prefix: &'a str,
    /// DynamoDB source tables fed through streams.
    pub source_tables: &'a [String],
    /// The pipeline's queues (name, URL), whose messages are changes still in flight.
    pub queues: &'a [(String, String)],
    /// Told what the audit is reading, as it goes (for a progress line).
    pub progress: Option<&'a (dyn Fn(&str) + Send + Sync)>,
}

/// The accounting of one contract.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableAudit {
    /// The contract (typed table) name.
    pub contract: String,
    /// Raw lines that feed it.
    pub raw_lines: usize,
    /// Lines the stored rows came from.
    pub typed: usize,
    /// Lines superseded by a newer or equal change of their key.
    pub stale: usize,
    /// Lines whose dead letter is on the DLQ.
    pub quarantined: usize,
    /// Lines that touch no row.
    pub control: usize,
    /// Rows in the typed table, live and tombstones.
    pub rows: usize,
    /// Tombstones among them.
    pub tombstones: usize,
    /// Keys in the DynamoDB source table, for stream-fed contracts.
    pub source_keys: Option<usize>,
}

/// The audit's findings.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuditReport {
    /// Per contract.
    pub tables: Vec<TableAudit>,
    /// Raw lines of tables no contract takes, and whether each is on the DLQ.
    pub uncontracted_lines: usize,
    /// Dead letters on the DLQ, by step and class, each `failure_id` once.
    pub dead_letters: BTreeMap<String, usize>,
    /// Copies of dead letters beyond the first (a retried batch sent them again): not counted.
    pub duplicate_dead_letters: usize,
    /// Changes never processed: messages moved to the DLQ by a queue's redrive policy, and
    /// stream ranges known only by an on-failure record, one line each.
    pub unprocessed: Vec<String>,
    /// Messages still on the pipeline's queues (queue name, visible + in flight + delayed).
    pub in_flight: Vec<(String, u64)>,
    /// What the audit could not read, so could not check.
    pub unread: Vec<String>,
    /// Every difference found. Empty means nothing was lost.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// Whether the audit found nothing wrong: no difference, nothing unprocessed, nothing in
    /// flight, and everything read.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
            && self.unprocessed.is_empty()
            && self.in_flight.is_empty()
            && self.unread.is_empty()
    }

    /// How many findings keep the audit from being clean.
    pub fn findings(&self) -> usize {
        self.problems.len() + self.unprocessed.len() + self.in_flight.len() + self.unread.len()
    }
}

/// A typed change of one raw line for one contract.
struct LineEntry {
    /// False for the second row of one line (the old key's tombstone of a key-changing update),
    /// which is checked but not counted again.
    counted: bool,
    raw_ref: String,
    format: Format,
    seq: Seq,
    /// The typed row, or `None` when the line violates the contract.
    row: Option<TypedRow>,
}

/// Runs the audit.
pub async fn audit(input: &AuditInput<'_>) -> Result<AuditReport, AwsError> {
    let mut report = AuditReport::default();
    let say = |what: &str| {
        if let Some(p) = input.progress {
            p(what);
        }
    };
    say("reading the dead-letter queue");
    let dlq =
        DlqSnapshot::read_all(input.sqs, input.dlq_urls, sluice_pipeline::dlq::READ_BUDGET).await?;
    report.dead_letters = dlq.by_class();
    report.duplicate_dead_letters = dlq.duplicates();
    report.unprocessed = dlq.unprocessed().iter().map(|e| e.describe()).collect();
    if dlq.other() > 0 {
        report
            .dead_letters
            .insert("other (no change in it)".into(), dlq.other());
    }
    report.unread.extend(dlq.incomplete_note());
    let quarantined_refs: HashSet<String> = dlq
        .envelopes()
        .iter()
        .filter_map(|env| env.raw_ref.clone())
        .collect();
    for (name, url) in input.queues {
        let depth = sluice_aws::listing::queue_depth(input.sqs, url).await?;
        if depth > 0 {
            report.in_flight.push((name.clone(), depth));
        }
    }

    // Raw staging, line by line.
    let keys =
        sluice_aws::listing::list_keys(input.s3, input.raw_bucket, sluice_core::raw::RAW_PREFIX)
            .await?;
    let existing_objects: HashSet<String> = keys
        .iter()
        .map(|k| format!("s3://{}/{k}", input.raw_bucket))
        .collect();
    let mut per_contract: BTreeMap<String, Vec<LineEntry>> = BTreeMap::new();
    let mut control: BTreeMap<String, usize> = BTreeMap::new();
    let limits = Limits::default();
    let cx = DecideContext {
        contracts: input.contracts,
        limits: &limits,
        tombstone_expires_at: 0,
    };
    for (n, key) in keys.iter().enumerate() {
        say(&format!(
            "reading raw staging: object {} of {}",
            n + 1,
            keys.len()
        ));
        let text = read_object(input.s3, input.raw_bucket, key).await?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let raw_ref = format!("s3://{}/{key}#L{}", input.raw_bucket, i + 1);
            let dead_lettered = quarantined_refs.contains(&raw_ref);
            let mut entry = |contract: &str, format, seq: &Seq, row, counted| {
                per_contract
                    .entry(contract.to_owned())
                    .or_default()
                    .push(LineEntry {
                        counted,
                        raw_ref: raw_ref.clone(),
                        format,
                        seq: seq.clone(),
                        row,
                    });
            };
            match decide(line, &raw_ref, &cx) {
                LineOutcome::NotARawLine(_) if !dead_lettered => report.problems.push(format!(
                    "{raw_ref}: unreadable raw line and no dead letter for it"
                )),
                LineOutcome::NotARawLine(_) => {}
                LineOutcome::Undecodable {
                    line: raw,
                    error,
                    contracts,
                } => {
                    if !dead_lettered {
                        report.problems.push(format!(
                            "{raw_ref}: undecodable ({error}) and no dead letter for it"
                        ));
                    }
                    for c in &contracts {
                        entry(&c.name, raw.format, &raw.seq, None, true);
                    }
                }
                LineOutcome::Control { contracts, .. } => {
                    for c in &contracts {
                        *control.entry(c.name.clone()).or_default() += 1;
                    }
                }
                // A truncate touches no row: like a violation, it has a dead letter
                // (`source_truncated`).
                LineOutcome::Truncate {
                    line: raw,
                    change,
                    contracts,
                } if !contracts.is_empty() => {
                    for c in &contracts {
                        entry(&c.name, raw.format, &change.route.seq, None, true);
                    }
                }
                LineOutcome::Truncate { line: raw, .. }
                | LineOutcome::NoContract { line: raw, .. } => {
                    report.uncontracted_lines += 1;
                    if !dead_lettered {
                        report.problems.push(format!(
                            "{raw_ref}: table {:?} has no contract and the line has no dead letter",
                            raw.table
                        ));
                    }
                }
                LineOutcome::Typed {
                    line: raw,
                    change,
                    results,
                } => {
                    for ContractResult { contract, rows } in results {
                        match rows {
                            Ok(rows) if rows.is_empty() => {
                                *control.entry(contract.name.clone()).or_default() += 1;
                            }
                            // The second row of one line (the old key's tombstone of an update
                            // that moved the key) is checked but not counted again.
                            Ok(rows) => {
                                for (n, row) in rows.into_iter().enumerate() {
                                    entry(
                                        &contract.name,
                                        raw.format,
                                        &change.route.seq,
                                        Some(row),
                                        n == 0,
                                    );
                                }
                            }
                            Err(_) => {
                                entry(&contract.name, raw.format, &change.route.seq, None, true)
                            }
                        }
                    }
                }
            }
        }
    }

    let mut stream_keys: HashMap<String, HashSet<String>> = HashMap::new();
    for contract in input.contracts.all() {
        say(&format!("comparing the typed table of {}", contract.name));
        let table = format!("{}{}", input.typed_table_prefix, contract.name);
        let items = scan(input.ddb, &table).await?;
        let lines = per_contract.remove(&contract.name).unwrap_or_default();
        stream_keys.insert(
            contract.name.clone(),
            lines
                .iter()
                .filter(|l| matches!(l.format, Format::DdbStream | Format::DdbKinesis))
                .filter_map(|l| l.row.as_ref().map(TypedRow::key_id))
                .collect(),
        );
        let mut t = TableAudit {
            contract: contract.name.clone(),
            raw_lines: lines.iter().filter(|l| l.counted).count()
                + control.get(&contract.name).copied().unwrap_or(0),
            control: control.get(&contract.name).copied().unwrap_or(0),
            rows: items.len(),
            tombstones: items
                .iter()
                .filter(|i| i.contains_key(DELETED_ATTR))
                .count(),
            ..TableAudit::default()
        };
        let stored: HashMap<String, &HashMap<String, AttributeValue>> = items
            .iter()
            .filter_map(|i| key_id(contract, i).map(|k| (k, i)))
            .collect();
        let mut by_key: HashMap<String, Vec<&LineEntry>> = HashMap::new();
        for l in &lines {
            let key = match &l.row {
                Some(row) => row.key_id(),
                // A violating line has no typed key; account for it by its dead letter.
                None => {
                    if quarantined_refs.contains(&l.raw_ref) {
                        t.quarantined += 1;
                    } else {
                        report.problems.push(format!(
                            "{}: {}: typed no row and has no dead letter",
                            contract.name, l.raw_ref
                        ));
                    }
                    continue;
                }
            };
            by_key.entry(key).or_default().push(l);
        }
        for (key, entries) in &by_key {
            // The newest change, with unchanged TOAST columns filled from earlier ones, as the
            // stored row keeps them.
            let Some((winner, ())) = sluice_core::row::newest_of(
                entries
                    .iter()
                    .filter_map(|e| e.row.clone())
                    .map(|r| (r, ()))
                    .collect(),
            ) else {
                continue;
            };
            let winner = &winner;
            let Some(item) = stored.get(key) else {
                report.problems.push(format!(
                    "{}: key {key}: {} raw line(s) but no typed row",
                    contract.name,
                    entries.len()
                ));
                continue;
            };
            let stored_seq = str_attr(item, SEQ_ATTR).map(Seq::from_normalised);
            let stored_raw = str_attr(item, RAW_ATTR).unwrap_or_default();
            for e in entries {
                if e.raw_ref == stored_raw {
                    t.typed += usize::from(e.counted);
                } else if stored_seq.as_ref().is_some_and(|s| e.seq <= *s) {
                    t.stale += usize::from(e.counted);
                } else {
                    report.problems.push(format!(
                        "{}: key {key}: raw line {} (seq {}) is newer than the stored row",
                        contract.name, e.raw_ref, e.seq
                    ));
                }
            }
            if stored_seq.as_ref() != Some(&winner.seq) {
                report.problems.push(format!(
                    "{}: key {key}: stored seq {} but the newest raw change is {}",
                    contract.name,
                    stored_seq
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "(none)".into()),
                    winner.seq
                ));
                continue;
            }
            if num_attr(item, VERSION_ATTR).as_deref() != Some(&contract.version.to_string()) {
                report.problems.push(format!("{}: key {key}: typed under contract version {} but the contract is at {}; replay raw staging", contract.name, num_attr(item, VERSION_ATTR).unwrap_or_default(), contract.version));
            }
            if !existing_objects.contains(stored_raw.split('#').next().unwrap_or_default()) {
                report.problems.push(format!(
                    "{}: key {key}: the row's raw object {stored_raw} is missing",
                    contract.name
                ));
            }
            report
                .problems
                .extend(compare_row(contract, key, winner, item));
        }
        for key in stored.keys() {
            if !by_key.contains_key(key) {
                let raw = stored
                    .get(key)
                    .and_then(|i| str_attr(i, RAW_ATTR))
                    .unwrap_or_default();
                report.problems.push(format!("{}: key {key}: typed row without any raw line (its raw object {raw} is missing)", contract.name));
            }
        }
        report.tables.push(t);
    }

    // DynamoDB sources against their typed tables.
    for source in input.source_tables {
        say(&format!("comparing source table {source}"));
        let source_items = scan(input.ddb, source).await?;
        for contract in input.contracts.all().iter().filter(|c| {
            c.accepts(source, Format::DdbStream) || c.accepts(source, Format::DdbKinesis)
        }) {
            let table = format!("{}{}", input.typed_table_prefix, contract.name);
            let typed = scan(input.ddb, &table).await?;
            let typed: HashMap<String, &HashMap<String, AttributeValue>> = typed
                .iter()
                .filter_map(|i| key_id(contract, i).map(|k| (k, i)))
                .collect();
            let mut live_source = BTreeSet::new();
            for item in &source_items {
                let image: BTreeMap<String, AttributeValue> =
                    item.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let change = Change::new(
                    Route::new(
                        Format::DdbStream,
                        source.clone(),
                        Op::Insert,
                        Seq::parts(&[0]),
                        None,
                    ),
                    None,
                    None,
                    Some(Image::Ddb(image)),
                );
                let meta = RowMeta {
                    raw_ref: String::new(),
                    ts_ms: 0,
                    tombstone_expires_at: 0,
                };
                let Ok(Some(expected)) = type_change(&change, contract, &meta) else {
                    // The source item violates the contract: its change is on the DLQ (checked
                    // above, line by line), and the typed row may hold an older valid state.
                    if let Some(key) = source_key(contract, item) {
                        live_source.insert(key);
                    }
                    continue;
                };
                let key = expected.key_id();
                live_source.insert(key.clone());
                match typed.get(&key) {
                    None => report.problems.push(format!(
                        "{}: source {source} has key {key} but the typed table has no row",
                        contract.name
                    )),
                    Some(row) if row.contains_key(DELETED_ATTR) => report.problems.push(format!(
                        "{}: source {source} has key {key} but the typed row is a tombstone",
                        contract.name
                    )),
                    Some(row) => report.problems.extend(
                        compare_row(contract, &key, &expected, row)
                            .into_iter()
                            .map(|p| format!("{p} (against source {source})")),
                    ),
                }
            }
            let from_stream = stream_keys.get(&contract.name);
            for (key, row) in &typed {
                // Rows fed by other sources (SQS events into the same contract) are not in the
                // DynamoDB table; only keys that came through its stream are compared.
                let streamed = from_stream.is_some_and(|k| k.contains(key));
                if streamed && !row.contains_key(DELETED_ATTR) && !live_source.contains(key) {
                    report.problems.push(format!(
                        "{}: typed row {key} is live but the key is not in source {source}",
                        contract.name
                    ));
                }
            }
            if let Some(t) = report
                .tables
                .iter_mut()
                .find(|t| t.contract == contract.name)
            {
                t.source_keys = Some(live_source.len());
            }
        }
    }
    Ok(report)
}

/// Compares the contract's fields of a stored item with the expected typed row.
fn compare_row(
    contract: &Contract,
    key: &str,
    expected: &TypedRow,
    item: &HashMap<String, AttributeValue>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if expected.is_tombstone() {
        if !item.contains_key(DELETED_ATTR) {
            problems.push(format!(
                "{}: key {key}: expected a tombstone, found a live row",
                contract.name
            ));
        }
        return problems;
    }
    if item.contains_key(DELETED_ATTR) {
        problems.push(format!(
            "{}: key {key}: expected a live row, found a tombstone",
            contract.name
        ));
        return problems;
    }
    for f in &contract.fields {
        if expected.unchanged.iter().any(|u| **u == *f.name) {
            // No raw line carries its value (an unchanged TOAST column with no earlier change):
            // whatever is stored is the value from before raw staging began.
            continue;
        }
        let want = expected.item.get(&f.name);
        let got = item.get(&*f.name);
        if !same(want, got, &f.ty) {
            problems.push(format!(
                "{}: key {key}: field {} differs: expected {}, stored {}",
                contract.name,
                f.name,
                show(want),
                show(got)
            ));
        }
    }
    problems
}

fn same(a: Option<&AttributeValue>, b: Option<&AttributeValue>, ty: &FieldType) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(AttributeValue::N(x)), Some(AttributeValue::N(y))) => {
            canonical_decimal(x).ok() == canonical_decimal(y).ok()
        }
        (Some(AttributeValue::Ns(x)), Some(AttributeValue::Ns(y))) => {
            let c = |v: &Vec<String>| -> BTreeSet<String> {
                v.iter().filter_map(|n| canonical_decimal(n).ok()).collect()
            };
            c(x) == c(y)
        }
        (Some(AttributeValue::Ss(x)), Some(AttributeValue::Ss(y))) => {
            x.iter().collect::<BTreeSet<_>>() == y.iter().collect::<BTreeSet<_>>()
        }
        (Some(AttributeValue::Bs(x)), Some(AttributeValue::Bs(y))) => {
            x.iter().collect::<BTreeSet<_>>() == y.iter().collect::<BTreeSet<_>>()
        }
        (Some(AttributeValue::L(x)), Some(AttributeValue::L(y))) => {
            let elem = match ty {
                FieldType::List(e) => e.as_ref().clone(),
                other => other.clone(),
            };
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(Some(p), Some(q), &elem))
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn show(v: Option<&AttributeValue>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => {
            let mut s = String::new();
            let _ = sluice_core::typing::write_json(sluice_core::typing::SrcRef::Ddb(v), &mut s);
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(60).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// The typed key of a source item, typing only the key fields.
fn source_key(contract: &Contract, item: &HashMap<String, AttributeValue>) -> Option<String> {
    let mut typed = HashMap::new();
    for f in contract.key_fields() {
        let value = item.get(f.from.first()?)?;
        let v = sluice_core::typing::coerce(
            sluice_core::typing::SrcRef::Ddb(value),
            &f.ty,
            f.unit,
            &f.name,
        )
        .ok()??;
        typed.insert(f.name.to_string(), v);
    }
    key_id(contract, &typed)
}

fn key_id(contract: &Contract, item: &HashMap<String, AttributeValue>) -> Option<String> {
    let key: Vec<(String, AttributeValue)> = contract
        .key_fields()
        .map(|f| item.get(&*f.name).map(|v| (f.name.to_string(), v.clone())))
        .collect::<Option<_>>()?;
    Some(
        TypedRow {
            table: contract.name.clone(),
            key,
            item: sluice_core::row::RowAttrs::default(),
            seq: Seq::parts(&[0]),
            version: 0,
            op: sluice_core::change::Op::Insert,
            source_ts: 0,
            raw_ref: String::new(),
            expires_at: 0,
            unchanged: Vec::new(),
            missing: Vec::new(),
            filled: Vec::new(),
        }
        .key_id(),
    )
}

fn str_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

fn num_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => Some(n.clone()),
        _ => None,
    }
}

async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<String, AwsError> {
    let target = format!("s3://{bucket}/{key}");
    let (bytes, _) = sluice_aws::listing::get_bytes(s3, bucket, key).await?;
    let mut text = String::new();
    if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| AwsError::local("GetObject", target, e))?;
    } else {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    Ok(text)
}

/// Every item of a table, as serde_dynamo values.
pub async fn scan(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>, AwsError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = ddb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("Scan", table, e))?;
        for item in out.items() {
            items.push(
                item.iter()
                    .map(|(k, v)| (k.clone(), AttributeValue::from(v.clone())))
                    .collect(),
            );
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(items)
}
