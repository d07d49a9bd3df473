//! A discrete-time model of an SQS event source mapping and its function, to compare scaling
//! policies on the same traffic before any of them runs on AWS (`sluice scale simulate`).
//!
//! One step is one second. The model has what decides whether a spike drains or turns into
//! dead letters:
//! - **the queue**: arrivals from a [`Trace`]; a received message is invisible until its batch
//!   ends, and a failed one until its visibility timeout passes; after `max_receive_count`
//!   receives it goes to the DLQ;
//! - **the mapping in its default mode**: it starts at 5 concurrent batches and adds up to 300 a
//!   minute while messages wait (up to 1,000), capped by the policy's `MaximumConcurrency`;
//! - **the function**: a batch takes its cold start (when no warm instance is free), an overhead,
//!   and a time per record; an instance stays warm for ten minutes;
//! - **the downstream**: a write capacity per second shared by every running batch. Above it, the
//!   excess of writes is throttled; the SDK tries each write three times, so a record fails when
//!   all three are throttled, and its message comes back after the visibility timeout.
//!
//! Each [`Policy`] sees what a scaler sees (queue attributes and the pipeline's metrics over its
//! interval) and returns a setting. The result is a [`Score`] per policy and a [`Sample`] a
//! second for plots. Seeded, so a run can be repeated exactly.

use std::collections::VecDeque;

use serde::Serialize;
use sluice_core::scaling::{decide, Observation, ScalerState, ScalingConfig};

/// The mapping, the function and the downstream.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// Messages in one batch at most.
    pub batch_size: u32,
    /// Seconds a failed message stays invisible.
    pub visibility_timeout_secs: u64,
    /// Receives before the queue's redrive policy moves a message to the DLQ.
    pub max_receive_count: u32,
    /// Seconds of work per record.
    pub per_record_secs: f64,
    /// Seconds of work per batch besides its records.
    pub batch_overhead_secs: f64,
    /// Seconds a batch waits for a new instance.
    pub cold_start_secs: f64,
    /// The function's memory, GB (for GB-seconds).
    pub memory_gb: f64,
    /// Writes a second the downstream takes (a DynamoDB table's write capacity).
    pub downstream_writes_per_sec: f64,
    /// The mapping's concurrency at the start, and its most (the default mode's).
    pub esm_start: u32,
    /// The default mode's most.
    pub esm_max: u32,
    /// Concurrent batches the default mode adds a minute.
    pub esm_ramp_per_min: u32,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            batch_size: 10,
            visibility_timeout_secs: 60,
            max_receive_count: 5,
            per_record_secs: 0.01,
            batch_overhead_secs: 0.05,
            cold_start_secs: 1.0,
            memory_gb: 0.128,
            downstream_writes_per_sec: 2_000.0,
            esm_start: 5,
            esm_max: 1_000,
            esm_ramp_per_min: 300,
        }
    }
}

/// Arrivals per second.
#[derive(Debug, Clone)]
pub enum Trace {
    /// Nothing for a minute, then `rate` a second for the rest.
    Step {
        /// Messages a second.
        rate: f64,
        /// Seconds in all.
        secs: u64,
    },
    /// `base` a second, and at `at` a burst of `burst` messages over ten seconds.
    Spike {
        /// Messages a second outside the burst.
        base: f64,
        /// Messages in the burst.
        burst: u64,
        /// When the burst starts.
        at: u64,
        /// Seconds in all.
        secs: u64,
    },
    /// A day: `low` at night, `high` at the afternoon peak, a sine between.
    Daily {
        /// Messages a second at the trough.
        low: f64,
        /// Messages a second at the peak.
        high: f64,
    },
    /// Ramps from 0 to `peak` a second over each `period`, then drops.
    Sawtooth {
        /// Messages a second at the top.
        peak: f64,
        /// Seconds a tooth.
        period: u64,
        /// Seconds in all.
        secs: u64,
    },
    /// Arrivals a second, as given (a CSV of one number a line).
    Given(Vec<f64>),
}

impl Trace {
    /// A built-in trace by name: `step`, `spike`, `daily` or `sawtooth`.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "step" => Self::Step {
                rate: 300.0,
                secs: 1_800,
            },
            "spike" => Self::Spike {
                base: 20.0,
                burst: 100_000,
                at: 300,
                secs: 3_600,
            },
            "daily" => Self::Daily {
                low: 5.0,
                high: 400.0,
            },
            "sawtooth" => Self::Sawtooth {
                peak: 600.0,
                period: 600,
                secs: 3_600,
            },
            _ => return None,
        })
    }

    /// Reads a CSV of arrivals a second: one number a line (the last column of a line, so
    /// `second,arrivals` works too); a header line is skipped.
    pub fn from_csv(text: &str) -> Result<Self, String> {
        let mut rates = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let field = line.rsplit(',').next().unwrap_or(line).trim();
            match field.parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => rates.push(r),
                Ok(_) => {
                    return Err(format!(
                        "line {}: {field:?} is not a rate of zero or more",
                        i + 1
                    ))
                }
                Err(_) if i == 0 => {}
                Err(_) => return Err(format!("line {}: {field:?} is not a number", i + 1)),
            }
        }
        if rates.is_empty() {
            return Err("the CSV has no arrivals".to_owned());
        }
        Ok(Self::Given(rates))
    }

    /// Seconds the trace lasts.
    pub fn secs(&self) -> u64 {
        match self {
            Self::Step { secs, .. } | Self::Spike { secs, .. } | Self::Sawtooth { secs, .. } => {
                *secs
            }
            Self::Daily { .. } => 86_400,
            Self::Given(r) => r.len() as u64,
        }
    }

    /// When the load that must be drained starts (a spike's burst), if the trace has one.
    pub fn burst(&self) -> Option<(u64, u64)> {
        match self {
            Self::Spike { at, .. } => Some((*at, at + 10)),
            _ => None,
        }
    }

    /// Expected arrivals in second `t`.
    pub fn rate(&self, t: u64) -> f64 {
        match self {
            Self::Step { rate, .. } => {
                if t < 60 {
                    0.0
                } else {
                    *rate
                }
            }
            Self::Spike {
                base, burst, at, ..
            } => {
                if (*at..at + 10).contains(&t) {
                    base + *burst as f64 / 10.0
                } else {
                    *base
                }
            }
            Self::Daily { low, high } => {
                // Lowest at 03:00, highest at 15:00.
                let phase = (t as f64 / 86_400.0 - 0.375) * std::f64::consts::TAU;
                low + (high - low) * (1.0 + phase.sin()) / 2.0
            }
            Self::Sawtooth { peak, period, .. } => {
                peak * (t % (*period).max(1)) as f64 / (*period).max(1) as f64
            }
            Self::Given(r) => r.get(t as usize).copied().unwrap_or(0.0),
        }
    }
}

/// A scaling policy under test.
#[derive(Debug, Clone)]
pub enum Policy {
    /// sluice's policy ([`sluice_core::scaling::decide`]), every minute.
    Sluice(ScalingConfig),
    /// No `MaximumConcurrency`: the default mode alone.
    AwsDefault,
    /// A fixed `MaximumConcurrency`.
    Static(u32),
    /// KEDA's SQS scaler: (visible + in flight) ÷ a target per replica, every 30 s, lowered
    /// only after a 300 s cool-down.
    Keda {
        /// Messages per replica.
        per_replica: u32,
        /// The most.
        max: u32,
    },
    /// Target tracking on the backlog per instance: acceptable backlog = latency target ÷ time
    /// per message, every minute.
    TargetTracking {
        /// Seconds a message may wait.
        latency_secs: f64,
        /// The most.
        max: u32,
    },
}

impl Policy {
    /// A policy by name: `sluice`, `aws-default`, `static:N`, `keda`, `target-tracking`.
    pub fn named(name: &str, sluice: &ScalingConfig) -> Result<Self, String> {
        Ok(match name {
            "sluice" => Self::Sluice(sluice.clone()),
            "aws-default" => Self::AwsDefault,
            "keda" => Self::Keda {
                per_replica: 100,
                max: sluice.max,
            },
            "target-tracking" => Self::TargetTracking {
                latency_secs: sluice.backlog_target_secs,
                max: sluice.max,
            },
            other => match other.strip_prefix("static:").map(str::parse::<u32>) {
                Some(Ok(n)) if (2..=1000).contains(&n) => Self::Static(n),
                _ => {
                    return Err(format!(
                        "unknown policy {other:?}: use sluice, aws-default, static:N (N from 2 \
                         to 1000), keda or target-tracking"
                    ))
                }
            },
        })
    }

    /// The name it is shown by.
    pub fn label(&self) -> String {
        match self {
            Self::Sluice(_) => "sluice".into(),
            Self::AwsDefault => "aws-default".into(),
            Self::Static(n) => format!("static:{n}"),
            Self::Keda { .. } => "keda".into(),
            Self::TargetTracking { .. } => "target-tracking".into(),
        }
    }

    fn interval(&self) -> u64 {
        match self {
            Self::Keda { .. } => 30,
            _ => 60,
        }
    }

    fn initial(&self, model: &Model) -> u32 {
        match self {
            Self::Sluice(c) => c.min,
            Self::AwsDefault => model.esm_max,
            Self::Static(n) => *n,
            Self::Keda { .. } | Self::TargetTracking { .. } => 2,
        }
    }
}

/// How a policy did.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// The policy.
    pub policy: String,
    /// Seconds from the burst's start until the queue was empty again (`None`: no burst in the
    /// trace, or never drained).
    pub drain_secs: Option<u64>,
    /// The 99th percentile of a completed message's age, seconds.
    pub p99_age_secs: u64,
    /// The most messages waiting or in flight.
    pub max_backlog: u64,
    /// Messages the queue moved to the DLQ.
    pub dead_lettered: u64,
    /// Writes the downstream throttled.
    pub throttled_writes: u64,
    /// Compute, GB-seconds.
    pub gb_seconds: f64,
    /// Times the setting changed.
    pub changes: u32,
    /// Messages completed.
    pub completed: u64,
    /// Messages still waiting or in flight at the end.
    pub left: u64,
}

/// One second of a run, for plots.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// The second.
    pub t: u64,
    /// Messages waiting or in flight.
    pub backlog: u64,
    /// Batches running.
    pub running: u32,
    /// The policy's setting.
    pub setting: u32,
    /// Writes throttled this second.
    pub throttled: u64,
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    arrived: u64,
    receives: u32,
}

#[derive(Debug)]
struct Batch {
    msgs: Vec<Msg>,
    started: f64,
    ends: f64,
}

/// Takes up to a batch of messages off the queue, starting at `at`.
fn start_batch(model: &Model, queue: &mut VecDeque<Msg>, at: f64, cold: bool) -> Batch {
    let n = (model.batch_size as usize).min(queue.len());
    let msgs: Vec<Msg> = queue.drain(..n).collect();
    let work = model.batch_overhead_secs
        + msgs.len() as f64 * model.per_record_secs
        + if cold { model.cold_start_secs } else { 0.0 };
    Batch {
        msgs,
        started: at,
        ends: at + work,
    }
}

/// Runs one policy on a trace.
pub fn run(model: &Model, trace: &Trace, policy: &Policy, seed: u64) -> (Score, Vec<Sample>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let secs = trace.secs();
    let mut queue: VecDeque<Msg> = VecDeque::new();
    // Failed messages, invisible until their second.
    let mut delayed: VecDeque<(u64, Msg)> = VecDeque::new();
    let mut running: Vec<Batch> = Vec::new();
    let mut setting = policy.initial(model);
    let mut esm = model.esm_start;
    let mut warm: VecDeque<(u64, u32)> = VecDeque::new(); // (second, running) over ten minutes
    let mut state = ScalerState::default();
    let mut last_keda_raise = 0u64;
    let mut samples = Vec::with_capacity(secs as usize);
    let mut ages: Vec<u64> = Vec::new();
    let (mut dead, mut throttled_total, mut changes) = (0u64, 0u64, 0u32);
    let mut gb_seconds = 0.0;
    let mut max_backlog = 0u64;
    // Over the policy's interval: arrivals, completions, busy batch-seconds, records, throttles.
    let (mut w_arrivals, mut w_done, mut w_busy, mut w_records, mut w_throttled) =
        (0u64, 0u64, 0.0f64, 0u64, 0u64);
    let mut carry = 0.0;
    let burst = trace.burst();
    let mut drained_at = None;
    let mut t = 0u64;
    // Runs past the trace's end until the queue is empty (at most an hour more).
    while t < secs
        || (t < secs + 3_600 && (!queue.is_empty() || !running.is_empty() || !delayed.is_empty()))
    {
        // Arrivals.
        if t < secs {
            carry += trace.rate(t);
            let n = carry.floor();
            carry -= n;
            for _ in 0..n as u64 {
                queue.push_back(Msg {
                    arrived: t,
                    receives: 0,
                });
            }
            w_arrivals += n as u64;
        }
        while delayed.front().is_some_and(|(at, _)| *at <= t) {
            if let Some((_, m)) = delayed.pop_front() {
                queue.push_back(m);
            }
        }
        // The downstream this second: what every running batch writes against the capacity.
        let slot_writes = f64::from(model.batch_size)
            / (model.batch_overhead_secs + f64::from(model.batch_size) * model.per_record_secs)
                .max(1e-6);
        let demand = running.len() as f64 * slot_writes;
        let refused = if demand > model.downstream_writes_per_sec {
            1.0 - model.downstream_writes_per_sec / demand
        } else {
            0.0
        };
        let mut throttled_now = 0u64;
        // The default mode's ramp.
        if !queue.is_empty() && running.len() as u32 >= esm.min(setting) {
            esm = (esm + model.esm_ramp_per_min.div_ceil(60)).min(model.esm_max);
        } else if queue.is_empty() && running.is_empty() {
            esm = esm
                .saturating_sub(model.esm_ramp_per_min.div_ceil(60))
                .max(model.esm_start);
        }
        let cap = esm.min(setting) as usize;
        // Batches that end within this second, in order; each frees its instance, which takes
        // the next batch at once (warm).
        let second_end = (t + 1) as f64;
        loop {
            let next = running
                .iter()
                .enumerate()
                .filter(|(_, b)| b.ends < second_end)
                .min_by(|a, b| a.1.ends.total_cmp(&b.1.ends))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let b = running.swap_remove(i);
            let took = (b.ends - b.started).max(0.0);
            gb_seconds += took * model.memory_gb;
            w_busy += took;
            for mut m in b.msgs {
                // Three tries of the write, each throttled with the share refused.
                let tries_throttled = (0..3).take_while(|_| rng.f64() < refused).count() as u64;
                throttled_now += tries_throttled;
                if tries_throttled == 3 {
                    m.receives += 1;
                    if m.receives >= model.max_receive_count {
                        dead += 1;
                    } else {
                        delayed.push_back((t + model.visibility_timeout_secs, m));
                    }
                } else {
                    ages.push(t.saturating_sub(m.arrived));
                    w_done += 1;
                }
                w_records += 1;
            }
            if running.len() < cap && !queue.is_empty() {
                running.push(start_batch(model, &mut queue, b.ends, false));
            }
        }
        throttled_total += throttled_now;
        w_throttled += throttled_now;
        // New instances for the rest of the setting: cold beyond the warm ones.
        while warm
            .front()
            .is_some_and(|(s, _)| t.saturating_sub(*s) > 600)
        {
            warm.pop_front();
        }
        let warm_instances = warm.iter().map(|(_, r)| *r).max().unwrap_or(0);
        while running.len() < cap && !queue.is_empty() {
            let cold = running.len() as u32 >= warm_instances;
            running.push(start_batch(model, &mut queue, t as f64, cold));
        }
        warm.push_back((t, running.len() as u32));
        let in_flight: u64 =
            running.iter().map(|b| b.msgs.len() as u64).sum::<u64>() + delayed.len() as u64;
        let backlog = queue.len() as u64 + in_flight;
        max_backlog = max_backlog.max(backlog);
        if let Some((start, end)) = burst {
            if t >= end && drained_at.is_none() && backlog == 0 {
                drained_at = Some(t - start);
            }
        }
        // The policy, on its interval.
        let interval = policy.interval();
        if t > 0 && t.is_multiple_of(interval) {
            let span = interval as f64;
            let next = match policy {
                Policy::Sluice(cfg) => {
                    let obs = Observation {
                        now_secs: t,
                        visible: queue.len() as u64,
                        in_flight,
                        oldest_age_secs: queue
                            .front()
                            .map_or(0.0, |m| t.saturating_sub(m.arrived) as f64),
                        arrivals_per_sec: w_arrivals as f64 / span,
                        completions_per_sec: w_done as f64 / span,
                        rate_per_batch: (w_busy > 0.0).then(|| w_records as f64 / w_busy),
                        batch_size: model.batch_size,
                        throttles_per_sec: w_throttled as f64 / span,
                        current: setting,
                    };
                    let (d, s) = decide(cfg, &obs, &state);
                    state = s;
                    d.set.unwrap_or(setting)
                }
                Policy::AwsDefault | Policy::Static(_) => setting,
                Policy::Keda { per_replica, max } => {
                    let want = u32::try_from(
                        (queue.len() as u64 + in_flight).div_ceil(u64::from((*per_replica).max(1))),
                    )
                    .unwrap_or(u32::MAX)
                    .clamp(2, *max);
                    if want > setting {
                        last_keda_raise = t;
                        want
                    } else if want < setting && t - last_keda_raise >= 300 {
                        want
                    } else {
                        setting
                    }
                }
                Policy::TargetTracking { latency_secs, max } => {
                    let per_message = if w_records > 0 {
                        w_busy / w_records as f64
                    } else {
                        model.per_record_secs
                    };
                    let acceptable = (latency_secs / per_message.max(1e-6)).max(1.0);
                    ((queue.len() as f64 / acceptable).ceil() as u32).clamp(2, *max)
                }
            };
            if next != setting {
                changes += 1;
                setting = next;
            }
            (w_arrivals, w_done, w_busy, w_records, w_throttled) = (0, 0, 0.0, 0, 0);
        }
        samples.push(Sample {
            t,
            backlog,
            running: running.len() as u32,
            setting: setting.min(model.esm_max),
            throttled: throttled_now,
        });
        t += 1;
    }
    ages.sort_unstable();
    let p99 = ages
        .get((ages.len() as f64 * 0.99) as usize)
        .or(ages.last())
        .copied()
        .unwrap_or(0);
    let left = queue.len() as u64
        + delayed.len() as u64
        + running.iter().map(|b| b.msgs.len() as u64).sum::<u64>();
    (
        Score {
            policy: policy.label(),
            drain_secs: drained_at,
            p99_age_secs: p99,
            max_backlog,
            dead_lettered: dead,
            throttled_writes: throttled_total,
            gb_seconds,
            changes,
            completed: ages.len() as u64,
            left,
        },
        samples,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn score(trace: &str, policy: &str) -> Score {
        let cfg = ScalingConfig {
            max: 1000,
            ..ScalingConfig::default()
        };
        let trace = Trace::named(trace).unwrap();
        run(
            &Model::default(),
            &trace,
            &Policy::named(policy, &cfg).unwrap(),
            7,
        )
        .0
    }

    /// Every message ends completed, dead-lettered or still queued: the model loses nothing.
    #[test]
    fn the_model_accounts_for_every_message() {
        for policy in [
            "sluice",
            "aws-default",
            "static:2",
            "keda",
            "target-tracking",
        ] {
            let s = score("spike", policy);
            let sent = 20 * 3_600 + 100_000;
            assert_eq!(
                s.completed + s.dead_lettered + s.left,
                sent,
                "{policy}: {s:?}"
            );
        }
    }

    /// On a spike the downstream cannot take at the default mode's pace, sluice dead-letters
    /// nothing and drains within its target plus the cold-start allowance, while the default
    /// mode dead-letters and a static cap of 2 drains far later.
    #[test]
    fn on_a_spike_sluice_drains_in_time_and_dead_letters_nothing() {
        let sluice = score("spike", "sluice");
        let default = score("spike", "aws-default");
        let fixed = score("spike", "static:2");
        let cfg = ScalingConfig::default();
        assert_eq!(sluice.dead_lettered, 0, "{sluice:?}");
        let limit = (cfg.backlog_target_secs + cfg.cold_start_secs) as u64;
        assert!(
            sluice.drain_secs.is_some_and(|d| d <= limit),
            "drained in {:?}, limit {limit}: {sluice:?}",
            sluice.drain_secs
        );
        assert!(default.dead_lettered > 0, "{default:?}");
        assert!(
            fixed.drain_secs.map_or(u64::MAX, |d| d) > 3 * limit,
            "{fixed:?}"
        );
    }

    #[test]
    fn a_run_is_repeatable_from_its_seed() {
        let a = score("spike", "aws-default");
        let b = score("spike", "aws-default");
        assert_eq!(
            (a.dead_lettered, a.throttled_writes, a.drain_secs),
            (b.dead_lettered, b.throttled_writes, b.drain_secs)
        );
    }

    #[test]
    fn a_csv_trace_is_read_and_its_errors_named() {
        let t = Trace::from_csv("second,arrivals\n0,5\n1,7.5\n").unwrap();
        assert_eq!((t.secs(), t.rate(1)), (2, 7.5));
        let e = Trace::from_csv("1\n-3\n").unwrap_err();
        assert_eq!(e, "line 2: \"-3\" is not a rate of zero or more");
        assert!(Trace::from_csv("").is_err());
        assert!(Policy::named("static:1", &ScalingConfig::default()).is_err());
    }
}
