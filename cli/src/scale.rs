//! `sluice scale`: queue-depth scaling.
//!
//! `simulate` runs scaling policies side by side on the same traffic through a model of an SQS
//! event source mapping, its function and a downstream that throttles above its capacity
//! (`sluice_local::simulate`), and prints a score per policy. Exit codes: 0; 1 for invalid
//! input (an unknown trace or policy, a bad CSV, settings out of range); 2 could not run.
//!
//! `--output json` prints `{"trace", "seconds", "model": {...}, "scores": [{"policy",
//! "drain_secs", "p99_age_secs", "max_backlog", "dead_lettered", "throttled_writes",
//! "gb_seconds", "changes", "completed", "left"}]}`.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_core::scaling::ScalingConfig;
use sluice_local::simulate::{run, Model, Policy, Score, Trace};

use crate::error::{InvalidInput, Outcome};
use crate::output::{self, Output};

/// Arguments of `sluice scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(subcommand)]
    command: ScaleCommand,
}

#[derive(Debug, Subcommand)]
enum ScaleCommand {
    /// Compare scaling policies on a trace through a model of a mapping and its downstream.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// A built-in trace: step, spike, daily or sawtooth.
    #[arg(long, default_value = "spike", conflicts_with = "csv")]
    trace: String,
    /// A CSV of arrivals a second (one number a line, or `second,arrivals`) instead of a trace.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// The policies to compare: sluice, aws-default, static:N, keda, target-tracking.
    #[arg(
        long = "policy",
        value_delimiter = ',',
        default_value = "sluice,aws-default,static:2,keda,target-tracking"
    )]
    policies: Vec<String>,
    /// Writes a second the downstream takes before it throttles.
    #[arg(long, default_value_t = 2_000.0)]
    capacity: f64,
    /// Seconds of work a record takes.
    #[arg(long, default_value_t = 0.01)]
    per_record_secs: f64,
    /// Messages in a batch.
    #[arg(long, default_value_t = 10)]
    batch_size: u32,
    /// sluice's backlog target, seconds (and target tracking's latency target).
    #[arg(long, default_value_t = 120.0)]
    target_secs: f64,
    /// The most concurrency a policy sets.
    #[arg(long, default_value_t = 1000)]
    max: u32,
    /// The seed of the model's randomness: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also draw backlog, batches running and throttles over time, a panel a policy, as SVG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    trace: &'a str,
    seconds: u64,
    model: &'a Model,
    scores: &'a [Score],
}

impl ScaleArgs {
    /// Runs the subcommand.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        match self.command {
            ScaleCommand::Simulate(args) => args.run(out),
        }
    }
}

impl SimulateArgs {
    fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let invalid = |e: String| anyhow::Error::new(InvalidInput(e));
        let (trace, name) = match &self.csv {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let trace = Trace::from_csv(&text)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                (trace, path.display().to_string())
            }
            None => (
                Trace::named(&self.trace).ok_or_else(|| {
                    invalid(format!(
                        "unknown trace {:?}: use step, spike, daily or sawtooth, or --csv FILE",
                        self.trace
                    ))
                })?,
                self.trace.clone(),
            ),
        };
        let cfg = ScalingConfig {
            backlog_target_secs: self.target_secs,
            max: self.max,
            ..ScalingConfig::default()
        };
        cfg.validate().map_err(invalid)?;
        if !(self.capacity.is_finite() && self.capacity > 0.0) {
            return Err(invalid("--capacity must be a positive number".into()));
        }
        if !(self.per_record_secs.is_finite() && self.per_record_secs > 0.0) {
            return Err(invalid(
                "--per-record-secs must be a positive number".into(),
            ));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(invalid("--batch-size must be from 1 to 10000".into()));
        }
        let policies = self
            .policies
            .iter()
            .map(|p| Policy::named(p.trim(), &cfg))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let model = Model {
            downstream_writes_per_sec: self.capacity,
            per_record_secs: self.per_record_secs,
            batch_size: self.batch_size,
            ..Model::default()
        };
        if let Some(path) = &self.plot {
            if path.extension().and_then(|e| e.to_str()) != Some("svg") {
                return Err(invalid(format!(
                    "--plot {}: the chart is drawn as SVG; name the file *.svg",
                    path.display()
                )));
            }
        }
        let spinner = output::spinner("simulating");
        let runs: Vec<_> = policies
            .iter()
            .map(|p| {
                if let Some(s) = &spinner {
                    s.set_message(format!("simulating {}", p.label()));
                }
                run(&model, &trace, p, self.seed)
            })
            .collect();
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        if let Some(path) = &self.plot {
            let panels: Vec<_> = runs
                .iter()
                .map(|(score, samples)| (score.policy.clone(), samples.clone()))
                .collect();
            crate::plot::draw(
                path,
                &format!(
                    "trace {name}: downstream {} writes/s, {} s a record",
                    self.capacity, self.per_record_secs
                ),
                &panels,
            )
            .with_context(|| format!("drawing {}", path.display()))?;
        }
        let scores: Vec<Score> = runs.into_iter().map(|(s, _)| s).collect();
        if out.json() {
            output::print_json(&Report {
                trace: &name,
                seconds: trace.secs(),
                model: &model,
                scores: &scores,
            })?;
            return Ok(Outcome::Ok);
        }
        let mut t = output::table(&[
            "policy",
            "drain (s)",
            "p99 age (s)",
            "max backlog",
            "dead-lettered",
            "throttled writes",
            "GB-s",
            "changes",
        ]);
        for s in &scores {
            t.add_row(vec![
                s.policy.clone(),
                s.drain_secs.map_or_else(|| "-".into(), |d| d.to_string()),
                s.p99_age_secs.to_string(),
                s.max_backlog.to_string(),
                s.dead_lettered.to_string(),
                s.throttled_writes.to_string(),
                format!("{:.0}", s.gb_seconds),
                s.changes.to_string(),
            ]);
        }
        outln!(
            "trace {name} ({} s); downstream {} writes/s; {} s a record, batches of {}",
            trace.secs(),
            self.capacity,
            self.per_record_secs,
            self.batch_size
        );
        outln!("{t}");
        Ok(Outcome::Ok)
    }
}
