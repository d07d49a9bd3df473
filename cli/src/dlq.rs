//! `sluice dlq`: inspect the dead letters, send them back after a fix, copy them out, purge them.
//!
//! The queues are the local pipeline's (`--prefix`), or, with `--from-env`, those the
//! `SLUICE_*` variables name, as the functions get them (`SLUICE_DLQ_URL`,
//! `SLUICE_DLQ_FIFO_URL`, `SLUICE_INGEST_QUEUE_URL`, `SLUICE_INGEST_FIFO_QUEUE_URL`,
//! `SLUICE_TRANSFORM_QUEUE_URL`, `SLUICE_RAW_BUCKET`, `SLUICE_CONTRACTS`). Reading never
//! consumes: every letter read is hidden while the command runs and given back at its end.
//!
//! Exit codes: `stats`, `list`, `show` and `export` 0 (`show` 1 when no letter has the id);
//! `redrive` 0 when every selected letter went back (or, with `--dry-run`, would), 1 when some
//! were left; `purge` 0; 2 when a command could not run.
//!
//! `--output json` prints, for `stats`: `{"queues": [...], "complete": true, "messages": 12,
//! "letters": 11, "duplicates": 1, "by_step": {...}, "by_table": {...}, "by_class": {...},
//! "by_code": {...}, "by_fingerprint": [{"code", "fingerprint", "count", "example"}],
//! "oldest_ms": ...}`; for `list`: `{"complete": true, "letters": [{"message_id", "queue",
//! "failure_id", "step", "table", "class", "code", "failed_at", "retry_count",
//! "receive_count", "error"}]}`; for `show`: `{"letters": [{..., "body", "verdict"}]}`; for
//! `redrive`: the summary (`dry_run`, `read`, `matched`, `redriven`, `left`,
//! `copies_deleted`, `errors`, `complete`, `by_class`, and `letters` with each `verdict` and
//! `fate`); for `redrive --server-side`: `{"server_side": [{"queue", "task_handle", "status",
//! "moved", "to_move", "failure_reason"}]}`; for `export` and `purge`: `{"letters": N, "to": ...,
//! "deleted": N}`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::metrics::Sink;
use sluice_aws::raw_objects::S3RawObjects;
use sluice_core::dead_letter::DeadLetter;
use sluice_pipeline::dlq::{DlqEntry, Held, READ_BUDGET};
use sluice_pipeline::ingest::Ingest;
use sluice_pipeline::recovery::judge::Judge;
use sluice_pipeline::recovery::select::{error_text, facets, parse_time, Filter, Stats};
use sluice_pipeline::recovery::streams::StreamReaders;
use sluice_pipeline::recovery::{RecoveryConfig, Redrive, RedriveOptions, RedriveSummary};

use crate::error::{InvalidInput, Outcome};
use crate::local::LocalOpts;
use crate::output::{self, Output};

/// Arguments of `sluice dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    local: LocalOpts,
    /// Take the queues, bucket and contracts from the SLUICE_* variables (as the functions get
    /// them) instead of the local pipeline of --prefix.
    #[arg(long, global = true)]
    from_env: bool,
}

/// Which letters: every condition given must hold.
#[derive(Debug, Clone, Default, Args)]
struct FilterArgs {
    /// Only letters of this step (ingest, transform).
    #[arg(long)]
    step: Option<String>,
    /// Only letters of this table.
    #[arg(long)]
    table: Option<String>,
    /// Only letters of this error class (contract_violation, no_contract, bad_format,
    /// too_large, source_truncated, internal, retriable, or unprocessed for changes a queue's
    /// redrive policy moved or a stream mapping gave up).
    #[arg(long)]
    class: Option<String>,
    /// Only letters with this error code (missing_field, type_mismatch, not_json…).
    #[arg(long)]
    code: Option<String>,
    /// Only letters whose message contains this text.
    #[arg(long)]
    contains: Option<String>,
    /// Only letters that failed at or after this time (RFC 3339, a date, or an age: 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only letters that failed before this time (RFC 3339, a date, or an age: 2h, 7d).
    #[arg(long)]
    until: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        let now = chrono::Utc::now().timestamp_millis();
        let time = |t: &Option<String>| -> anyhow::Result<Option<i64>> {
            t.as_deref()
                .map(|t| parse_time(t, now).map_err(|e| anyhow::Error::new(InvalidInput(e))))
                .transpose()
        };
        Ok(Filter {
            step: self.step.clone(),
            table: self.table.clone(),
            class: self.class.clone(),
            code: self.code.clone(),
            contains: self.contains.clone(),
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
        })
    }
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count the letters by step, table, error class, error code and error fingerprint.
    Stats {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// List the letters, oldest first, without consuming them.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
    /// Show every copy of one letter, by its message id or failure id, and what sending it
    /// back now would do.
    Show {
        /// A message id or a failure id.
        id: String,
    },
    /// Send letters back to where they failed, after a fix: each is judged by the current
    /// decoder and contracts first, and one that would fail again stays unless --all.
    Redrive {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many letters.
        #[arg(long)]
        max: Option<usize>,
        /// At most this many letters sent back per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Judge and report only: send nothing, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send back the letters that would fail again too.
        #[arg(long)]
        all: bool,
        /// How long the pass reads each queue, in seconds. The letters it reads stay hidden from
        /// other readers that long and 30 s more, so after a pass cut short (an interrupt, a
        /// crash) the letters it had read come back only then
        #[arg(long, default_value_t = sluice_pipeline::dlq::READ_BUDGET.as_secs(), value_parser = clap::value_parser!(u64).range(1..=43_000))]
        read_secs: u64,
        /// On AWS only: move the whole queue with SQS's own StartMessageMoveTask (no filter,
        /// no judging), when it holds nothing but source messages a queue's redrive policy
        /// moved; each goes back to the queue it came from.
        #[arg(long, conflicts_with_all = ["dry_run", "all", "max", "step", "table", "class", "code", "contains", "since", "until", "read_secs"])]
        server_side: bool,
    },
    /// Copy letters out (body, attributes, receive count, origin queue) as NDJSON, to a file or
    /// to s3://bucket/prefix/; they stay on the queue unless --drain.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// A file, or s3://bucket/prefix/.
        #[arg(long)]
        to: String,
        /// Delete the letters once the copy is written.
        #[arg(long)]
        drain: bool,
    },
    /// Delete letters for good (export them first to keep a copy).
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// What the commands share.
struct Setup {
    sdk: SdkConfig,
    config: RecoveryConfig,
}

impl DlqArgs {
    /// Runs the subcommand.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let setup = self.setup().await?;
        let sqs = sqs_client(&setup.sdk);
        match &self.command {
            DlqCommand::Stats { filter } => stats(&setup, &sqs, &filter.filter()?, out).await,
            DlqCommand::List { filter, max } => {
                list(&setup, &sqs, &filter.filter()?, *max, out).await
            }
            DlqCommand::Show { id } => show(&setup, &sqs, id, out).await,
            DlqCommand::Redrive {
                filter,
                max,
                rate,
                dry_run,
                all,
                read_secs,
                server_side,
            } => {
                if *server_side {
                    return server_side_move(&setup, &sqs, *rate, out).await;
                }
                let options = RedriveOptions {
                    filter: filter.filter()?,
                    max: *max,
                    dry_run: *dry_run,
                    all: *all,
                    rate: *rate,
                    budget: std::time::Duration::from_secs(*read_secs),
                    ..RedriveOptions::default()
                };
                redrive(&setup, &sqs, &options, out).await
            }
            DlqCommand::Export { filter, to, drain } => {
                export(&setup, &sqs, &filter.filter()?, to, *drain, out).await
            }
            DlqCommand::Purge { filter, yes } => {
                purge(&setup, &sqs, &filter.filter()?, *yes, out).await
            }
        }
    }

    async fn setup(&self) -> anyhow::Result<Setup> {
        let sdk = self.local.aws.sdk_config().await?;
        let vars = if self.from_env {
            None
        } else {
            Some(self.local.pipeline(&sdk).await?.variables())
        };
        let lookup = |name: &str| {
            vars.as_ref()
                .and_then(|v| v.get(name).cloned())
                .or_else(|| std::env::var(name).ok())
        };
        let config = RecoveryConfig::from_lookup(lookup).map_err(|e| {
            anyhow::Error::new(InvalidInput(if self.from_env {
                format!("{e}; with --from-env, set the variables the functions get")
            } else {
                format!("{e}; pass --contracts DIR")
            }))
        })?;
        Ok(Setup { sdk, config })
    }
}

/// Reads every letter of every queue without consuming any.
async fn read_all(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
) -> anyhow::Result<(Vec<DlqEntry>, Option<String>)> {
    let spinner = output::spinner("reading the dead letters");
    let held = hold(setup, sqs).await?;
    let incomplete = held.incomplete();
    let entries = held.entries.clone();
    held.finish(sqs, &[]).await?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    Ok((entries, incomplete))
}

/// Reads every letter of every queue, holding them hidden, and the failed stream invocations an
/// S3 on-failure destination keeps (letters too). What is read is given back if the rest fails.
async fn hold(setup: &Setup, sqs: &aws_sdk_sqs::Client) -> anyhow::Result<Held> {
    let mut held = Held::read(sqs, &setup.config.dlq_urls, READ_BUDGET).await?;
    if let Err(e) = held
        .add_s3_failures(&s3_client(&setup.sdk), &setup.config.ingest.raw_bucket)
        .await
    {
        held.finish(sqs, &[]).await?;
        return Err(e.into());
    }
    Ok(held)
}

/// Says, on stderr, why a read did not cover the whole queue.
fn incomplete_note(why: Option<&str>) {
    if let Some(why) = why {
        eprintln!(
            "note: the dead-letter queue was read only in part ({why}); the rest was not counted"
        );
    }
}

fn age(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let secs = (chrono::Utc::now().timestamp_millis() - ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[derive(Serialize)]
struct StatsJson<'a> {
    queues: &'a [String],
    complete: bool,
    #[serde(flatten)]
    stats: &'a Stats,
}

async fn stats(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    filter: &Filter,
    out: Output,
) -> anyhow::Result<Outcome> {
    let (entries, incomplete) = read_all(setup, sqs).await?;
    let complete = incomplete.is_none();
    let s = Stats::of(&entries, filter);
    if out.json() {
        output::print_json(&StatsJson {
            queues: &setup.config.dlq_urls,
            complete,
            stats: &s,
        })?;
        return Ok(Outcome::Ok);
    }
    outln!(
        "{} letter(s) ({} message(s), {} duplicate copie(s)); oldest failed {} ago",
        s.letters,
        s.messages,
        s.duplicates,
        age(s.oldest_ms)
    );
    if s.letters > 0 {
        let mut t = output::table(&["by", "value", "letters"]);
        for (by, counts) in [
            ("step", &s.by_step),
            ("table", &s.by_table),
            ("class", &s.by_class),
            ("code", &s.by_code),
        ] {
            for (value, n) in counts {
                t.add_row(vec![by.to_owned(), value.clone(), n.to_string()]);
            }
        }
        outln!("{t}");
        let mut t = output::table(&["letters", "class and code", "error (values taken out)"]);
        for f in s.by_fingerprint.iter().take(20) {
            t.add_row(vec![
                f.count.to_string(),
                f.code.clone(),
                shorten(&f.fingerprint, 120),
            ]);
        }
        outln!("{t}");
    }
    incomplete_note(incomplete.as_deref());
    Ok(Outcome::Ok)
}

#[derive(Serialize)]
struct LetterJson<'a> {
    message_id: &'a str,
    queue: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_id: Option<&'a str>,
    step: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<&'a str>,
    class: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_at: Option<String>,
    retry_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_count: Option<u32>,
    error: String,
}

fn letter_json(e: &DlqEntry) -> LetterJson<'_> {
    let f = facets(e);
    LetterJson {
        message_id: &e.message_id,
        queue: &e.queue_url,
        failure_id: f.failure_id,
        step: f.step,
        table: f.table,
        class: f.class,
        code: f.code,
        failed_at: f.at_ms.map(sluice_core::time::ms_to_rfc3339),
        retry_count: match &e.letter {
            DeadLetter::Envelope(env) => env.retry_count,
            _ => 0,
        },
        receive_count: e.receive_count,
        error: error_text(e),
    }
}

async fn list(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    filter: &Filter,
    max: usize,
    out: Output,
) -> anyhow::Result<Outcome> {
    let (mut entries, incomplete) = read_all(setup, sqs).await?;
    let complete = incomplete.is_none();
    entries.retain(|e| filter.matches(e));
    entries.sort_by_key(|e| facets(e).at_ms.unwrap_or(i64::MAX));
    let total = entries.len();
    entries.truncate(max);
    if out.json() {
        #[derive(Serialize)]
        struct ListJson<'a> {
            complete: bool,
            matched: usize,
            letters: Vec<LetterJson<'a>>,
        }
        output::print_json(&ListJson {
            complete,
            matched: total,
            letters: entries.iter().map(letter_json).collect(),
        })?;
        return Ok(Outcome::Ok);
    }
    let mut t = output::table(&[
        "message id",
        "age",
        "step",
        "table",
        "class / code",
        "retries",
        "error",
    ]);
    for e in &entries {
        let j = letter_json(e);
        t.add_row(vec![
            j.message_id.to_owned(),
            age(facets(e).at_ms),
            j.step.to_owned(),
            j.table.unwrap_or("-").to_owned(),
            format!("{} / {}", j.class, j.code),
            j.retry_count.to_string(),
            shorten(&j.error, 100),
        ]);
    }
    outln!("{t}");
    outln!(
        "{} of {total} matching letter(s) shown{}",
        entries.len(),
        if entries.len() < total {
            "; raise --max to see more"
        } else {
            ""
        }
    );
    incomplete_note(incomplete.as_deref());
    Ok(Outcome::Ok)
}

/// The contracts and the clients a judgement needs.
struct Tools {
    contracts: std::sync::Arc<sluice_core::contract_set::ContractSet>,
    objects: S3RawObjects,
}

async fn tools(setup: &Setup) -> anyhow::Result<Tools> {
    let s3 = s3_client(&setup.sdk);
    let source = sluice_pipeline::contracts::ContractSource::parse(&setup.config.contracts);
    let contracts = sluice_pipeline::contracts::load(&source, &s3)
        .await
        .with_context(|| {
            format!(
                "could not read the contracts from {}",
                setup.config.contracts
            )
        })?;
    Ok(Tools {
        contracts: std::sync::Arc::new(contracts),
        objects: S3RawObjects::new(s3),
    })
}

async fn show(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    id: &str,
    out: Output,
) -> anyhow::Result<Outcome> {
    let (entries, incomplete) = read_all(setup, sqs).await?;
    let found: Vec<&DlqEntry> = entries
        .iter()
        .filter(|e| e.message_id == id || facets(e).failure_id == Some(id))
        .collect();
    if found.is_empty() {
        incomplete_note(incomplete.as_deref());
        return Err(anyhow::Error::new(InvalidInput(format!(
            "no letter on the dead-letter queue has the message id or failure id {id:?}; \
             `sluice dlq list` shows them"
        ))));
    }
    let tools = tools(setup).await?;
    let judge = Judge {
        contracts: &tools.contracts,
        ingest: &setup.config.ingest,
        max_line_bytes: setup.config.max_line_bytes,
        max_message_bytes: sluice_aws::dead_letters::FALLBACK_MAX_MESSAGE_BYTES,
        objects: &tools.objects,
        now_ms: chrono::Utc::now().timestamp_millis(),
    };
    let mut shown = Vec::new();
    for e in found {
        let verdict = judge.plan(e).await.verdict;
        shown.push((e, verdict));
    }
    if out.json() {
        #[derive(Serialize)]
        struct ShowJson<'a> {
            #[serde(flatten)]
            letter: LetterJson<'a>,
            body: serde_json::Value,
            verdict: &'a sluice_pipeline::recovery::Verdict,
        }
        let letters: Vec<ShowJson<'_>> = shown
            .iter()
            .map(|(e, v)| ShowJson {
                letter: letter_json(e),
                body: serde_json::from_str(&e.body)
                    .unwrap_or_else(|_| serde_json::Value::String(e.body.clone())),
                verdict: v,
            })
            .collect();
        output::print_json(&serde_json::json!({ "letters": letters }))?;
        return Ok(Outcome::Ok);
    }
    for (e, verdict) in &shown {
        let j = letter_json(e);
        let mut t = output::table(&["", ""]);
        t.add_row(vec!["message id".to_owned(), j.message_id.to_owned()]);
        t.add_row(vec!["queue".to_owned(), j.queue.to_owned()]);
        if let Some(f) = j.failure_id {
            t.add_row(vec!["failure id".to_owned(), f.to_owned()]);
        }
        t.add_row(vec!["step".to_owned(), j.step.to_owned()]);
        t.add_row(vec!["table".to_owned(), j.table.unwrap_or("-").to_owned()]);
        t.add_row(vec![
            "class / code".to_owned(),
            format!("{} / {}", j.class, j.code),
        ]);
        t.add_row(vec![
            "failed".to_owned(),
            format!(
                "{} ({} ago)",
                j.failed_at.clone().unwrap_or_default(),
                age(facets(e).at_ms)
            ),
        ]);
        t.add_row(vec!["retries".to_owned(), j.retry_count.to_string()]);
        t.add_row(vec!["error".to_owned(), j.error.clone()]);
        if let DeadLetter::Envelope(env) = &e.letter {
            if let Some(r) = &env.raw_ref {
                t.add_row(vec!["raw line".to_owned(), r.clone()]);
            }
            if let Some(r) = &env.original_ref {
                t.add_row(vec!["original at".to_owned(), r.clone()]);
            }
            if let Some(o) = &env.original {
                t.add_row(vec!["original".to_owned(), shorten(o, 2000)]);
            }
        } else {
            t.add_row(vec!["body".to_owned(), shorten(&e.body, 2000)]);
        }
        t.add_row(vec!["sent back now".to_owned(), verdict.describe()]);
        outln!("{t}");
    }
    Ok(Outcome::Ok)
}

/// Why a queue's letters cannot be moved by `StartMessageMoveTask`, or `None` when they can:
/// it sends each message to the queue whose redrive policy moved it there, so every letter
/// must be such a message. sluice's failure envelopes and stream on-failure records were sent
/// to the DLQ directly and have no source queue to go back to.
fn server_side_refusal(entries: &[DlqEntry]) -> Option<String> {
    let others = entries
        .iter()
        .filter(|e| !matches!(e.letter, DeadLetter::Moved(_)))
        .count();
    (others > 0).then(|| {
        format!(
            "{others} of the {} letter(s) were not moved there by a queue's redrive policy \
             (failure envelopes or stream on-failure records), and StartMessageMoveTask has \
             no source queue to send them to; run `sluice dlq redrive` without --server-side, \
             which sends each kind where it belongs",
            entries.len()
        )
    })
}

/// `sluice dlq redrive --server-side`: SQS moves the whole queue itself.
async fn server_side_move(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    rate: Option<f64>,
    out: Output,
) -> anyhow::Result<Outcome> {
    if let Some(endpoint) = setup.sdk.endpoint_url() {
        anyhow::bail!(
            "--server-side runs SQS's StartMessageMoveTask, which only AWS runs, and this \
             command talks to {endpoint}; run `sluice dlq redrive` without --server-side, \
             which moves the same letters on any endpoint"
        );
    }
    let (entries, incomplete) = read_all(setup, sqs).await?;
    if let Some(why) = incomplete {
        anyhow::bail!(
            "the dead-letter queue could not be read whole ({why}), so what a whole-queue move \
             would send is unknown; run `sluice dlq redrive`, which judges each letter"
        );
    }
    if let Some(why) = server_side_refusal(&entries) {
        anyhow::bail!("{why}");
    }
    let mut results = Vec::new();
    for url in &setup.config.dlq_urls {
        if !entries.iter().any(|e| &e.queue_url == url) {
            continue;
        }
        let arn = sluice_local::provision::queue_arn(sqs, url).await?;
        let mut start = sqs.start_message_move_task().source_arn(&arn);
        if let Some(rate) = rate {
            // SQS takes a whole number of messages per second, from 1 to 500.
            start = start.max_number_of_messages_per_second(rate.clamp(1.0, 500.0).round() as i32);
        }
        let handle = start
            .send()
            .await
            .with_context(|| format!("starting a message move task on {arn}"))?
            .task_handle
            .unwrap_or_default();
        let bar = output::stderr_is_terminal().then(|| {
            let b = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{spinner} server-side move [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let task = loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let tasks = sqs
                .list_message_move_tasks()
                .source_arn(&arn)
                .max_results(10)
                .send()
                .await
                .with_context(|| format!("reading the message move tasks of {arn}"))?;
            // The most recent task comes first, and a source runs one task at a time: it is
            // this one (a finished task no longer shows its handle).
            let Some(task) = tasks.results.unwrap_or_default().into_iter().next() else {
                continue;
            };
            if let Some(b) = &bar {
                b.set_length(
                    task.approximate_number_of_messages_to_move
                        .unwrap_or(0)
                        .max(0) as u64,
                );
                b.set_position(task.approximate_number_of_messages_moved.max(0) as u64);
            }
            if task.status.as_deref() != Some("RUNNING") {
                break task;
            }
        };
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        results.push(serde_json::json!({
            "queue": url,
            "task_handle": handle,
            "status": task.status,
            "moved": task.approximate_number_of_messages_moved,
            "to_move": task.approximate_number_of_messages_to_move,
            "failure_reason": task.failure_reason,
        }));
    }
    let failed = results.iter().any(|r| r["status"] != "COMPLETED");
    if out.json() {
        output::print_json(&serde_json::json!({ "server_side": results }))?;
    } else {
        let mut t = output::table(&["queue", "status", "moved", "failure"]);
        for r in &results {
            t.add_row(vec![
                r["queue"].as_str().unwrap_or("-").to_owned(),
                r["status"].as_str().unwrap_or("-").to_owned(),
                r["moved"].to_string(),
                r["failure_reason"].as_str().unwrap_or("").to_owned(),
            ]);
        }
        outln!("{t}");
    }
    Ok(if failed { Outcome::Found } else { Outcome::Ok })
}

async fn redrive(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    options: &RedriveOptions,
    out: Output,
) -> anyhow::Result<Outcome> {
    let tools = tools(setup).await?;
    let ingest = Ingest::from_sdk(setup.config.ingest.clone(), &setup.sdk, Sink::Discard);
    let streams = StreamReaders::from_sdk(&setup.sdk);
    let s3 = s3_client(&setup.sdk);
    let run = Redrive {
        config: &setup.config,
        sqs,
        objects: &tools.objects,
        ingest: &ingest,
        contracts: &tools.contracts,
        max_line_bytes: setup.config.max_line_bytes,
        s3: Some(&s3),
        streams: Some(&streams),
    };
    let mut depth = 0;
    for url in &setup.config.dlq_urls {
        depth += sluice_aws::listing::queue_depth(sqs, url)
            .await
            .unwrap_or(0);
    }
    let bar = output::stderr_is_terminal().then(|| {
        let b = ProgressBar::new(options.max.map_or(depth, |m| depth.min(m as u64)));
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} redrive [{bar:30}] {pos}/{len} letters ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let progress = |s: &RedriveSummary| {
        if let Some(b) = &bar {
            b.set_position(s.matched as u64);
            b.set_message(format!(
                "{} {}, {} left",
                s.redriven,
                if s.dry_run {
                    "would go back"
                } else {
                    "sent back"
                },
                s.left
            ));
        }
    };
    let started = std::time::Instant::now();
    let summary = run.run(options, Some(&progress)).await?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = if summary.left > 0 {
        Outcome::Found
    } else {
        Outcome::Ok
    };
    if out.json() {
        output::print_json(&summary)?;
        return Ok(outcome);
    }
    let mut t = output::table(&[
        "step and class",
        if summary.dry_run {
            "would go back"
        } else {
            "sent back"
        },
        "left",
    ]);
    for (class, tally) in &summary.by_class {
        t.add_row(vec![
            class.clone(),
            tally.redriven.to_string(),
            tally.left.to_string(),
        ]);
    }
    if !summary.by_class.is_empty() {
        outln!("{t}");
    }
    let left: Vec<_> = summary
        .letters
        .iter()
        .filter(|l| {
            !matches!(
                l.fate,
                sluice_pipeline::recovery::Fate::Redriven
                    | sluice_pipeline::recovery::Fate::WouldRedrive
            )
        })
        .collect();
    if !left.is_empty() {
        let mut t = output::table(&["left", "table", "why"]);
        for l in left.iter().take(20) {
            t.add_row(vec![
                l.failure_id.clone().unwrap_or_else(|| l.message_id.clone()),
                l.table.clone().unwrap_or_else(|| "-".into()),
                shorten(
                    &l.note.clone().map_or_else(
                        || l.verdict.describe(),
                        |n| format!("{}: {n}", l.verdict.describe()),
                    ),
                    140,
                ),
            ]);
        }
        outln!("{t}");
        if left.len() > 20 {
            outln!("… and {} more (see --output json)", left.len() - 20);
        }
    }
    outln!(
        "redrive{}: {} letter(s) selected of {} read; {} {}, {} left{}{} in {:.1} s",
        if summary.dry_run { " (dry run)" } else { "" },
        summary.matched,
        summary.read,
        summary.redriven,
        if summary.dry_run {
            "would go back"
        } else {
            "sent back"
        },
        summary.left,
        if summary.copies_deleted > 0 {
            format!(", {} duplicate copie(s) deleted", summary.copies_deleted)
        } else {
            String::new()
        },
        if summary.errors > 0 {
            format!(", {} error(s)", summary.errors)
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    incomplete_note(summary.incomplete.as_deref());
    Ok(outcome)
}

/// One letter as `export` writes it.
#[derive(Serialize)]
struct Exported<'a> {
    message_id: &'a str,
    queue: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_queue: Option<&'a str>,
    attributes: serde_json::Map<String, serde_json::Value>,
    body: &'a str,
}

fn exported(e: &DlqEntry) -> Exported<'_> {
    Exported {
        message_id: &e.message_id,
        queue: &e.queue_url,
        sent_at: e.sent_ms.map(sluice_core::time::ms_to_rfc3339),
        receive_count: e.receive_count,
        group_id: e.group_id.as_deref(),
        source_queue: e.source_arn.as_deref(),
        attributes: e
            .message_attributes
            .iter()
            .map(|(k, v)| {
                let mut a = serde_json::json!({ "dataType": v.data_type() });
                if let Some(s) = v.string_value() {
                    a["stringValue"] = s.into();
                }
                if let Some(b) = v.binary_value() {
                    a["binaryValue"] = aws_smithy_types::base64::encode(b.as_ref()).into();
                }
                (k.clone(), a)
            })
            .collect(),
        body: &e.body,
    }
}

async fn export(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    filter: &Filter,
    to: &str,
    drain: bool,
    out: Output,
) -> anyhow::Result<Outcome> {
    let spinner = output::spinner("reading the dead letters");
    let held = hold(setup, sqs).await?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let chosen: Vec<&DlqEntry> = held.entries.iter().filter(|e| filter.matches(e)).collect();
    let mut text = String::new();
    for e in &chosen {
        text.push_str(&serde_json::to_string(&exported(e))?);
        text.push('\n');
    }
    let ids: Vec<String> = chosen.iter().map(|e| e.message_id.clone()).collect();
    let written = write_export(setup, to, text).await;
    let incomplete = held.incomplete();
    let complete = incomplete.is_none();
    // Deleted only once the copy is written; given back whatever happened.
    let deleted = held
        .finish(sqs, if drain && written.is_ok() { &ids } else { &[] })
        .await?;
    let target = written?;
    if out.json() {
        output::print_json(&serde_json::json!({
            "letters": ids.len(), "to": target, "deleted": deleted, "complete": complete,
        }))?;
    } else {
        outln!(
            "exported {} letter(s) to {target}{}",
            ids.len(),
            if drain {
                format!("; {deleted} deleted from the queue")
            } else {
                "; they stay on the queue (--drain deletes them)".to_owned()
            }
        );
        incomplete_note(incomplete.as_deref());
    }
    Ok(Outcome::Ok)
}

async fn write_export(setup: &Setup, to: &str, text: String) -> anyhow::Result<String> {
    if let Some(rest) = to.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(anyhow::Error::new(InvalidInput(format!(
                "{to:?} names no bucket; pass --to s3://bucket/prefix/"
            ))));
        }
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        let key = format!(
            "{prefix}dlq-export-{}.ndjson",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        );
        s3_client(&setup.sdk)
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(text.into_bytes().into())
            .send()
            .await
            .map_err(|e| {
                sluice_aws::AwsError::from_sdk("PutObject", format!("s3://{bucket}/{key}"), e)
            })?;
        Ok(format!("s3://{bucket}/{key}"))
    } else {
        let mut f = std::fs::File::create(to)
            .with_context(|| format!("could not create {to}; pass a writable --to path"))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("could not write {to}"))?;
        Ok(to.to_owned())
    }
}

async fn purge(
    setup: &Setup,
    sqs: &aws_sdk_sqs::Client,
    filter: &Filter,
    yes: bool,
    out: Output,
) -> anyhow::Result<Outcome> {
    let held = hold(setup, sqs).await?;
    let ids: Vec<String> = held
        .entries
        .iter()
        .filter(|e| filter.matches(e))
        .map(|e| e.message_id.clone())
        .collect();
    let confirmed = yes || ids.is_empty() || {
        if !std::io::stdin().is_terminal() {
            held.finish(sqs, &[]).await?;
            return Err(anyhow::Error::new(InvalidInput(format!(
                "purge would delete {} letter(s) for good, and there is no terminal to ask; \
                 pass --yes (and `sluice dlq export` first to keep a copy)",
                ids.len()
            ))));
        }
        eprint!(
            "Delete {} letter(s) for good? `sluice dlq export` keeps a copy first. [y/N] ",
            ids.len()
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        matches!(answer.trim(), "y" | "Y" | "yes")
    };
    let deleted = held.finish(sqs, if confirmed { &ids } else { &[] }).await?;
    if out.json() {
        output::print_json(&serde_json::json!({ "letters": ids.len(), "deleted": deleted }))?;
    } else if confirmed {
        outln!("purged {deleted} letter(s)");
    } else {
        outln!("nothing deleted");
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn entry(body: &str) -> DlqEntry {
        let m = aws_sdk_sqs::types::Message::builder()
            .message_id("m")
            .body(body)
            .build();
        DlqEntry::from_message("q", &m, &sluice_core::json::Limits::default())
    }

    #[test]
    fn a_whole_queue_move_needs_nothing_but_moved_source_messages() {
        let moved =
            entry(r#"{"table":"people","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#);
        assert!(matches!(moved.letter, DeadLetter::Moved(_)));
        assert_eq!(server_side_refusal(&[moved.clone(), moved.clone()]), None);
        let envelope = entry(
            r#"{"sluice_failure":1,"failure_id":"f","step":"transform","error_class":"internal","error":"x","origin":{},"original_bytes":0,"first_failed_at":"t","failed_at":"t","retry_count":0,"pipeline_version":"0"}"#,
        );
        assert!(matches!(envelope.letter, DeadLetter::Envelope(_)));
        let why = server_side_refusal(&[moved, envelope]).unwrap();
        assert!(why.starts_with("1 of the 2 letter(s)"), "{why}");
    }
}
