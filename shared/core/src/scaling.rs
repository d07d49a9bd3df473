//! Queue-depth scaling: the policy that sets an event source mapping's `MaximumConcurrency`.
//!
//! [`decide`] is a pure function of an [`Observation`] (the queue, the measured rate, the
//! downstream's throttles, the current setting), a [`ScalingConfig`] and the [`ScalerState`] the
//! previous call returned. It returns a [`Decision`] with its [`Reason`], and the next state.
//! No clock and no I/O: the scaler function, `sluice local run` and the simulator call the same
//! code.
//!
//! The rules, in order:
//! 1. **Need.** The concurrency that keeps up with arrivals and drains the visible backlog within
//!    the backlog target, less the cold-start allowance: `(arrivals/s + visible / (target −
//!    cold start)) / (messages/s per concurrent batch)`. The arrival rate is smoothed (half the
//!    last minute, half the average before), so a burst is not counted in full twice. The rate
//!    per batch is calibrated from the pipeline's own metrics; without one, a backlog doubles
//!    the setting.
//! 2. **Downstream first.** While the downstream throttles (or fails retriably), the setting backs
//!    off multiplicatively and a ceiling is kept there; the ceiling rises by a step a minute once
//!    the throttling stops (additive increase, multiplicative decrease). A spike never drives more
//!    batches into a table than it takes, so it never turns into dead letters.
//! 3. **Bounds.** Never above the maximum, never below the baseline, never below the batches in
//!    flight (lowering under them would stall nothing but says something false).
//! 4. **Up at once, down slowly.** An increase applies at once. A decrease applies only when every
//!    recommendation of the last stabilisation window was lower (HPA's rule), at most once a
//!    window, and not within the tolerance. A throttling back-off is the exception: it applies at
//!    once.

use serde::{Deserialize, Serialize};

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingConfig {
    /// A backlog is drained within this many seconds (the acceptable latency).
    pub backlog_target_secs: f64,
    /// The least concurrency kept, even when idle (AWS takes 2 at the least).
    pub min: u32,
    /// The most concurrency ever set (AWS takes 1,000 at the most).
    pub max: u32,
    /// Seconds a new concurrent batch takes before it processes (poller ramp and cold start),
    /// taken off the backlog target.
    pub cold_start_secs: f64,
    /// How long every recommendation must have been lower before a decrease, and the least time
    /// between two decreases.
    pub scale_down_window_secs: u64,
    /// Decreases within this fraction of the current setting are not made.
    pub tolerance: f64,
    /// While the downstream throttles, the setting is multiplied by this (0 < f < 1).
    pub throttle_factor: f64,
    /// Once the throttling stops, the ceiling it left rises by this many batches a minute.
    pub recovery_per_min: f64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            backlog_target_secs: 120.0,
            min: 2,
            max: 100,
            cold_start_secs: 10.0,
            scale_down_window_secs: 300,
            tolerance: 0.1,
            throttle_factor: 0.5,
            recovery_per_min: 2.0,
        }
    }
}

impl ScalingConfig {
    /// Checks the settings: every problem, in words.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !(self.backlog_target_secs.is_finite() && self.backlog_target_secs > 0.0) {
            problems.push("backlog_target_secs must be a positive number".to_owned());
        }
        if !(2..=1000).contains(&self.min) || !(2..=1000).contains(&self.max) {
            problems.push("min and max must be between 2 and 1000 (AWS's bounds)".to_owned());
        }
        if self.min > self.max {
            problems.push(format!("min ({}) is above max ({})", self.min, self.max));
        }
        if !(self.cold_start_secs.is_finite() && self.cold_start_secs >= 0.0) {
            problems.push("cold_start_secs must be zero or more".to_owned());
        }
        if !(self.tolerance.is_finite() && (0.0..0.5).contains(&self.tolerance)) {
            problems.push("tolerance must be at least 0 and under 0.5".to_owned());
        }
        if !(self.throttle_factor > 0.0 && self.throttle_factor < 1.0) {
            problems.push("throttle_factor must be between 0 and 1".to_owned());
        }
        if !(self.recovery_per_min.is_finite() && self.recovery_per_min > 0.0) {
            problems.push("recovery_per_min must be a positive number".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The seconds a backlog has to drain in once new batches are running.
    fn drain_secs(&self) -> f64 {
        (self.backlog_target_secs - self.cold_start_secs).max(self.backlog_target_secs * 0.25)
    }
}

/// What the scaler sees at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds on any monotonic clock (the same one across calls).
    pub now_secs: u64,
    /// Messages waiting (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Messages being processed (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Age of the oldest message, seconds.
    pub oldest_age_secs: f64,
    /// Messages arriving per second, lately.
    pub arrivals_per_sec: f64,
    /// Messages completed per second, lately.
    pub completions_per_sec: f64,
    /// Messages one concurrent batch processes per second (records ÷ `BatchDuration`), when
    /// measured.
    pub rate_per_batch: Option<f64>,
    /// The most messages in one batch.
    pub batch_size: u32,
    /// Throttles and retriable failures downstream per second, lately.
    pub throttles_per_sec: f64,
    /// The current `MaximumConcurrency`.
    pub current: u32,
}

/// What the scaler remembers between calls (small, serialisable: it is kept where a cold start
/// reads it back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalerState {
    /// The recommendations of the last window, oldest first: (seconds, concurrency).
    pub recent: Vec<(u64, u32)>,
    /// When the setting was last lowered without throttling.
    pub last_decrease_secs: Option<u64>,
    /// The ceiling a throttling left, and when it was last raised or set.
    pub ceiling: Option<(f64, u64)>,
    /// The arrival rate, smoothed: half the last observation, half the average before it. A
    /// burst counts in the backlog as soon as it is queued; taken at its full rate as well, it
    /// would be counted twice in the minute it arrives.
    pub arrivals_avg: Option<f64>,
}

/// Why the policy decided what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The backlog and the arrivals need this many batches.
    Need {
        /// Batches needed, before the bounds.
        needed: f64,
        /// Messages waiting.
        visible: u64,
        /// Messages/s per batch used.
        rate_per_batch: f64,
    },
    /// No rate is known yet and messages wait: doubling.
    NoRate {
        /// Messages waiting.
        visible: u64,
    },
    /// The downstream throttles: backing off.
    Throttled {
        /// Throttles per second.
        throttles_per_sec: f64,
        /// The new ceiling.
        ceiling: f64,
    },
    /// Held under the ceiling a throttling left.
    Ceiling {
        /// The ceiling.
        ceiling: f64,
        /// What the backlog alone would take.
        wanted: u32,
    },
    /// Lower is recommended, but not for a whole window yet (or a decrease was made within it).
    Stabilising {
        /// The highest recommendation of the window.
        highest: u32,
    },
    /// Within the tolerance of the current setting.
    WithinTolerance,
    /// A stream's lag against the backlog target.
    IteratorAge {
        /// The iterator age, seconds.
        age_secs: f64,
        /// The backlog target, seconds.
        target_secs: f64,
    },
    /// No iterator age was measured lately: left as it is.
    Unmeasured,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Need {
                needed,
                visible,
                rate_per_batch,
            } => write!(
                f,
                "{visible} waiting at {rate_per_batch:.1} msg/s per batch need {needed:.1} batches"
            ),
            Self::NoRate { visible } => {
                write!(f, "{visible} waiting and no rate measured yet: doubling")
            }
            Self::Throttled {
                throttles_per_sec,
                ceiling,
            } => write!(
                f,
                "downstream throttles ({throttles_per_sec:.1}/s): backing off to {ceiling:.1}"
            ),
            Self::Ceiling { ceiling, wanted } => write!(
                f,
                "{wanted} wanted, held at {ceiling:.1} since the downstream throttled"
            ),
            Self::Stabilising { highest } => write!(
                f,
                "lower is recommended, but {highest} was within the stabilisation window"
            ),
            Self::WithinTolerance => write!(f, "within the tolerance of the current setting"),
            Self::IteratorAge {
                age_secs,
                target_secs,
            } => write!(
                f,
                "iterator age {age_secs:.0} s against a target of {target_secs:.0} s"
            ),
            Self::Unmeasured => write!(f, "no iterator age measured lately: left as it is"),
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The new `MaximumConcurrency`, or `None` to leave it.
    pub set: Option<u32>,
    /// What the policy recommends now, bounds applied (before stabilisation).
    pub recommended: u32,
    /// Why.
    pub reason: Reason,
}

/// The batches that in-flight messages occupy.
fn in_flight_batches(obs: &Observation) -> u32 {
    let size = u64::from(obs.batch_size.max(1));
    u32::try_from(obs.in_flight.div_ceil(size)).unwrap_or(u32::MAX)
}

/// Decides the next setting. See the module documentation for the rules.
pub fn decide(
    cfg: &ScalingConfig,
    obs: &Observation,
    state: &ScalerState,
) -> (Decision, ScalerState) {
    let now = obs.now_secs;
    let mut next = state.clone();
    let current = obs.current.max(1);
    let floor = cfg.min.max(in_flight_batches(obs)).min(cfg.max);

    // 1. Need.
    let rate = obs
        .rate_per_batch
        .filter(|r| r.is_finite() && *r > 0.0)
        .or_else(|| {
            (obs.completions_per_sec > 0.0).then(|| obs.completions_per_sec / f64::from(current))
        });
    let observed = if obs.arrivals_per_sec.is_finite() {
        obs.arrivals_per_sec.max(0.0)
    } else {
        0.0
    };
    let arrivals = next
        .arrivals_avg
        .map_or(observed, |avg| (avg + observed) / 2.0);
    next.arrivals_avg = Some(arrivals);
    let (wanted, reason) = match rate {
        Some(r) => {
            let needed = (arrivals + obs.visible as f64 / cfg.drain_secs()) / r;
            (
                clamp_u32(needed.ceil()),
                Reason::Need {
                    needed,
                    visible: obs.visible,
                    rate_per_batch: r,
                },
            )
        }
        None if obs.visible > 0 => (
            current.saturating_mul(2),
            Reason::NoRate {
                visible: obs.visible,
            },
        ),
        None => (
            cfg.min,
            Reason::Need {
                needed: 0.0,
                visible: 0,
                rate_per_batch: 0.0,
            },
        ),
    };

    // 2. Downstream first.
    let throttled = obs.throttles_per_sec.is_finite() && obs.throttles_per_sec > 0.0;
    let (wanted, reason) = downstream_first(
        &mut next,
        Backoff {
            now,
            current,
            throttles_per_sec: obs.throttles_per_sec,
            factor: cfg.throttle_factor,
            least: f64::from(cfg.min),
            recovery_per_min: cfg.recovery_per_min,
            top: f64::from(cfg.max),
        },
        wanted,
        reason,
    );

    // 3. Bounds, and 4. up at once, down slowly.
    settle(
        cfg,
        state,
        next,
        Settle {
            now,
            current,
            actual: obs.current,
            floor,
            top: cfg.max,
            wanted,
            throttled,
        },
        reason,
    )
}

/// How [`downstream_first`] backs off and recovers.
struct Backoff {
    now: u64,
    current: u32,
    throttles_per_sec: f64,
    factor: f64,
    /// The ceiling never goes below this.
    least: f64,
    recovery_per_min: f64,
    /// A ceiling that recovers to this is dropped.
    top: f64,
}

/// Rule 2, shared by both policies: while the downstream throttles, the ceiling is the setting
/// (or the ceiling, if lower) times the factor; once it stops, the ceiling rises by a step a
/// minute and is dropped at the top. Returns what is wanted under it, and why.
fn downstream_first(
    next: &mut ScalerState,
    b: Backoff,
    mut wanted: u32,
    mut reason: Reason,
) -> (u32, Reason) {
    let throttled = b.throttles_per_sec.is_finite() && b.throttles_per_sec > 0.0;
    if throttled {
        let base = next
            .ceiling
            .map_or(f64::from(b.current), |(c, _)| c.min(f64::from(b.current)));
        let ceiling = (base * b.factor).max(b.least);
        next.ceiling = Some((ceiling, b.now));
        reason = Reason::Throttled {
            throttles_per_sec: b.throttles_per_sec,
            ceiling,
        };
        wanted = wanted.min(clamp_u32(ceiling.floor()));
    } else if let Some((ceiling, since)) = next.ceiling {
        let raised = ceiling + b.recovery_per_min * (b.now.saturating_sub(since) as f64 / 60.0);
        if raised >= b.top {
            next.ceiling = None;
        } else {
            next.ceiling = Some((raised, b.now));
            let cap = clamp_u32(raised.floor()).max(1);
            if wanted > cap {
                reason = Reason::Ceiling {
                    ceiling: raised,
                    wanted,
                };
                wanted = cap;
            }
        }
    }
    (wanted, reason)
}

/// What [`settle`] weighs.
struct Settle {
    now: u64,
    /// The current setting, at least 1.
    current: u32,
    /// The setting as observed, which a decision must differ from.
    actual: u32,
    floor: u32,
    top: u32,
    wanted: u32,
    throttled: bool,
}

/// Rules 3 and 4, shared by both policies. The recommendation is `wanted` within `floor..=top`,
/// kept in the window. Then: up at once; down at once only to back off a throttling downstream;
/// otherwise down only when every recommendation of a whole window was lower, at most once a
/// window, and beyond the tolerance.
fn settle(
    cfg: &ScalingConfig,
    state: &ScalerState,
    mut next: ScalerState,
    s: Settle,
    reason: Reason,
) -> (Decision, ScalerState) {
    let Settle {
        now,
        current,
        actual,
        floor,
        top,
        wanted,
        throttled,
    } = s;
    let window = cfg.scale_down_window_secs;
    let recommended = wanted.clamp(floor.min(top), top);
    next.recent.push((now, recommended));
    next.recent
        .retain(|(t, _)| now.saturating_sub(*t) <= window);
    let (set, reason) = if recommended > current || (recommended < current && throttled) {
        (Some(recommended), reason)
    } else if recommended == current {
        (None, reason)
    } else {
        let highest = next
            .recent
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommended)
            .max(floor);
        let window_seen = state
            .recent
            .first()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= window);
        let decreased_lately = state
            .last_decrease_secs
            .is_some_and(|t| now.saturating_sub(t) < window);
        let within =
            (f64::from(highest) - f64::from(current)).abs() <= cfg.tolerance * f64::from(current);
        if !window_seen || decreased_lately || highest >= current {
            (
                None,
                Reason::Stabilising {
                    highest: highest.max(recommended),
                },
            )
        } else if within {
            (None, Reason::WithinTolerance)
        } else {
            next.last_decrease_secs = Some(now);
            (Some(highest), reason)
        }
    };
    (
        Decision {
            set: set.filter(|s| *s != actual),
            recommended,
            reason,
        },
        next,
    )
}

/// The most `ParallelizationFactor` AWS takes.
pub const MAX_PARALLELIZATION: u32 = 10;

/// What the scaler sees of a stream mapping (DynamoDB Streams or Kinesis), whose concurrency is
/// one batch per shard times its `ParallelizationFactor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamObservation {
    /// Seconds on any monotonic clock (the same one across calls).
    pub now_secs: u64,
    /// The age of the last record read (the mapping's `IteratorAge`, its highest lately),
    /// seconds, when measured.
    pub iterator_age_secs: Option<f64>,
    /// Throttles and retriable failures downstream per second, lately.
    pub throttles_per_sec: f64,
    /// The current `ParallelizationFactor` (1 to 10).
    pub current: u32,
}

/// Decides a stream mapping's next `ParallelizationFactor`, by the same rules as [`decide`]
/// with the stream's lag in place of a queue's backlog: a stream whose iterator age is beyond
/// the backlog target doubles its factor (at most 10); one whose age is under a quarter of the
/// target is recommended one less, which applies under the stabilisation window; a throttling
/// downstream backs it off at once. Without a measured age it is left as it is.
pub fn decide_parallelization(
    cfg: &ScalingConfig,
    obs: &StreamObservation,
    state: &ScalerState,
) -> (Decision, ScalerState) {
    let now = obs.now_secs;
    let mut next = state.clone();
    let current = obs.current.clamp(1, MAX_PARALLELIZATION);
    let target = cfg.backlog_target_secs;
    let (wanted, reason) = match obs.iterator_age_secs.filter(|a| a.is_finite()) {
        None => (current, Reason::Unmeasured),
        Some(age) => {
            let wanted = if age > target {
                current.saturating_mul(2)
            } else if age < target / 4.0 {
                current.saturating_sub(1)
            } else {
                current
            };
            (
                wanted,
                Reason::IteratorAge {
                    age_secs: age,
                    target_secs: target,
                },
            )
        }
    };
    let throttled = obs.throttles_per_sec.is_finite() && obs.throttles_per_sec > 0.0;
    // A factor is a tenth of a queue's range: the ceiling recovers by one step a minute.
    let (wanted, reason) = downstream_first(
        &mut next,
        Backoff {
            now,
            current,
            throttles_per_sec: obs.throttles_per_sec,
            factor: cfg.throttle_factor,
            least: 1.0,
            recovery_per_min: 1.0,
            top: f64::from(MAX_PARALLELIZATION),
        },
        wanted,
        reason,
    );
    settle(
        cfg,
        state,
        next,
        Settle {
            now,
            current,
            actual: obs.current,
            floor: 1,
            top: MAX_PARALLELIZATION,
            wanted,
            throttled,
        },
        reason,
    )
}

fn clamp_u32(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn obs(now: u64, visible: u64, current: u32) -> Observation {
        Observation {
            now_secs: now,
            visible,
            in_flight: 0,
            oldest_age_secs: 0.0,
            arrivals_per_sec: 0.0,
            completions_per_sec: 0.0,
            rate_per_batch: Some(10.0),
            batch_size: 10,
            throttles_per_sec: 0.0,
            current,
        }
    }

    #[test]
    fn a_spike_scales_up_at_once_to_drain_within_the_target() {
        let cfg = ScalingConfig::default();
        // 10,000 waiting, 10 msg/s a batch, 110 s to drain in: 9.1 batches.
        let (d, _) = decide(&cfg, &obs(0, 10_000, 2), &ScalerState::default());
        assert_eq!(d.set, Some(10));
        assert!(matches!(d.reason, Reason::Need { .. }), "{}", d.reason);
        assert!(d.reason.to_string().contains("10000 waiting"));
    }

    #[test]
    fn the_maximum_and_the_baseline_bound_it() {
        let cfg = ScalingConfig {
            max: 5,
            ..ScalingConfig::default()
        };
        let (d, _) = decide(&cfg, &obs(0, 1_000_000, 2), &ScalerState::default());
        assert_eq!(d.set, Some(5));
        let (d, _) = decide(&cfg, &obs(0, 0, 1), &ScalerState::default());
        assert_eq!(d.set, Some(2), "never below the baseline");
    }

    #[test]
    fn a_decrease_waits_for_a_whole_window_of_lower_recommendations() {
        let cfg = ScalingConfig::default();
        let mut state = ScalerState::default();
        let mut sets = Vec::new();
        let mut current = 10;
        for minute in 0..12 {
            let (d, s) = decide(&cfg, &obs(minute * 60, 0, current), &state);
            state = s;
            current = d.set.unwrap_or(current);
            sets.push((minute, d.set));
        }
        let lowered: Vec<_> = sets.iter().filter(|(_, s)| s.is_some()).collect();
        assert_eq!(lowered, [&(5, Some(2))], "{sets:?}");
    }

    #[test]
    fn a_throttling_downstream_halves_it_at_once_and_the_ceiling_recovers_slowly() {
        let cfg = ScalingConfig::default();
        let mut o = obs(0, 100_000, 40);
        o.throttles_per_sec = 50.0;
        let (d, state) = decide(&cfg, &o, &ScalerState::default());
        assert_eq!(d.set, Some(20));
        assert!(matches!(d.reason, Reason::Throttled { .. }), "{}", d.reason);
        // Still throttling at 20: 10.
        let mut o = obs(60, 100_000, 20);
        o.throttles_per_sec = 5.0;
        let (d, state) = decide(&cfg, &o, &state);
        assert_eq!(d.set, Some(10));
        // Throttling stopped: the ceiling rises 2 a minute, not at once to what the backlog wants.
        let (d, state) = decide(&cfg, &obs(120, 100_000, 10), &state);
        assert_eq!(d.set, Some(12));
        assert!(matches!(d.reason, Reason::Ceiling { .. }), "{}", d.reason);
        let (d, _) = decide(&cfg, &obs(300, 100_000, 12), &state);
        assert_eq!(d.set, Some(18));
    }

    #[test]
    fn without_a_rate_a_backlog_doubles_it() {
        let cfg = ScalingConfig::default();
        let mut o = obs(0, 500, 4);
        o.rate_per_batch = None;
        let (d, _) = decide(&cfg, &o, &ScalerState::default());
        assert_eq!(d.set, Some(8));
        assert!(matches!(d.reason, Reason::NoRate { visible: 500 }));
    }

    fn stream(now: u64, age: Option<f64>, current: u32) -> StreamObservation {
        StreamObservation {
            now_secs: now,
            iterator_age_secs: age,
            throttles_per_sec: 0.0,
            current,
        }
    }

    #[test]
    fn a_lagging_stream_doubles_its_parallelization_up_to_ten() {
        let cfg = ScalingConfig::default();
        let (d, state) =
            decide_parallelization(&cfg, &stream(0, Some(600.0), 1), &ScalerState::default());
        assert_eq!(d.set, Some(2));
        assert_eq!(
            d.reason.to_string(),
            "iterator age 600 s against a target of 120 s"
        );
        let (d, _) = decide_parallelization(&cfg, &stream(60, Some(600.0), 8), &state);
        assert_eq!(d.set, Some(10), "never above AWS's 10");
        let (d, _) = decide_parallelization(&cfg, &stream(60, Some(600.0), 10), &state);
        assert_eq!(d.set, None);
    }

    #[test]
    fn a_caught_up_stream_steps_down_only_after_a_window_and_unmeasured_is_left() {
        let cfg = ScalingConfig::default();
        let mut state = ScalerState::default();
        let mut lowered = Vec::new();
        for minute in 0..12u64 {
            let (d, next) =
                decide_parallelization(&cfg, &stream(minute * 60, Some(1.0), 4), &state);
            state = next;
            if let Some(s) = d.set {
                lowered.push((minute, s));
            }
        }
        // The window is 300 s: the first decrease at minute 5, the next not before minute 10.
        assert_eq!(lowered, vec![(5, 3), (10, 3)]);
        let (d, _) = decide_parallelization(&cfg, &stream(0, None, 4), &ScalerState::default());
        assert_eq!((d.set, d.reason), (None, Reason::Unmeasured));
    }

    #[test]
    fn a_throttling_downstream_halves_a_stream_factor_at_once() {
        let cfg = ScalingConfig::default();
        let mut o = stream(0, Some(600.0), 8);
        o.throttles_per_sec = 3.0;
        let (d, state) = decide_parallelization(&cfg, &o, &ScalerState::default());
        assert_eq!(d.set, Some(4));
        assert!(matches!(d.reason, Reason::Throttled { .. }));
        // Still lagging a minute later, throttling over: held under the ceiling, which rises by
        // one a minute.
        let (d, _) = decide_parallelization(&cfg, &stream(60, Some(600.0), 4), &state);
        assert_eq!(d.set, Some(5));
        assert!(matches!(d.reason, Reason::Ceiling { .. }), "{}", d.reason);
    }

    #[test]
    fn bad_settings_are_named() {
        let cfg = ScalingConfig {
            min: 50,
            max: 10,
            throttle_factor: 1.5,
            ..ScalingConfig::default()
        };
        let why = cfg.validate().unwrap_err();
        assert!(why.contains("min (50) is above max (10)"), "{why}");
        assert!(why.contains("throttle_factor"), "{why}");
        assert!(ScalingConfig::default().validate().is_ok());
    }

    fn any_obs() -> impl Strategy<Value = Observation> {
        (
            0u64..2_000_000,
            0u64..50_000,
            0.0f64..5_000.0,
            prop::option::of(0.1f64..500.0),
            1u32..100,
            prop_oneof![Just(0.0), 0.0f64..100.0],
            1u32..1_000,
        )
            .prop_map(
                |(visible, in_flight, arrivals, rate, batch_size, throttles, current)| {
                    Observation {
                        now_secs: 0,
                        visible,
                        in_flight,
                        oldest_age_secs: 0.0,
                        arrivals_per_sec: arrivals,
                        completions_per_sec: 0.0,
                        rate_per_batch: rate,
                        batch_size,
                        throttles_per_sec: throttles,
                        current,
                    }
                },
            )
    }

    fn any_cfg() -> impl Strategy<Value = ScalingConfig> {
        (2u32..50, 0u32..950, 30.0f64..900.0, 60u64..900).prop_map(
            |(min, extra, target, window)| ScalingConfig {
                min,
                max: min + extra,
                backlog_target_secs: target,
                scale_down_window_secs: window,
                ..ScalingConfig::default()
            },
        )
    }

    proptest! {
        /// Never above the maximum, never below the baseline, never below the batches in flight
        /// (when the maximum allows them).
        #[test]
        fn a_stream_factor_stays_between_one_and_ten(
            age in proptest::option::of(0.0f64..100_000.0),
            throttles in prop_oneof![Just(0.0), 0.0f64..100.0],
            current in 1u32..=10,
            steps in 1usize..20,
        ) {
            let cfg = ScalingConfig::default();
            let mut state = ScalerState::default();
            let mut current = current;
            for step in 0..steps {
                let o = StreamObservation {
                    now_secs: step as u64 * 60,
                    iterator_age_secs: age,
                    throttles_per_sec: throttles,
                    current,
                };
                let (d, next) = decide_parallelization(&cfg, &o, &state);
                prop_assert!((1..=MAX_PARALLELIZATION).contains(&d.recommended));
                if let Some(s) = d.set {
                    prop_assert!((1..=MAX_PARALLELIZATION).contains(&s));
                    prop_assert_ne!(s, current);
                    current = s;
                }
                state = next;
            }
        }

        #[test]
        fn it_stays_within_its_bounds(
            cfg in any_cfg(),
            steps in prop::collection::vec((any_obs(), 1u64..600), 1..40),
        ) {
            let mut state = ScalerState::default();
            let mut now = 0;
            for (mut o, gap) in steps {
                now += gap;
                o.now_secs = now;
                let (d, next) = decide(&cfg, &o, &state);
                state = next;
                let in_flight = u32::try_from(o.in_flight.div_ceil(u64::from(o.batch_size))).unwrap();
                let floor = cfg.min.max(in_flight).min(cfg.max);
                prop_assert!(d.recommended <= cfg.max && d.recommended >= floor);
                if let Some(s) = d.set {
                    prop_assert!(s <= cfg.max && s >= floor, "{s} outside {floor}..={}", cfg.max);
                    prop_assert_ne!(s, o.current);
                }
            }
        }

        /// Without throttling, two decreases are never within one stabilisation window.
        #[test]
        fn it_never_lowers_twice_within_the_window(
            cfg in any_cfg(),
            steps in prop::collection::vec((any_obs(), 1u64..400), 1..60),
        ) {
            let mut state = ScalerState::default();
            let mut now = 0;
            let mut current = cfg.min;
            let mut last_decrease: Option<u64> = None;
            for (mut o, gap) in steps {
                now += gap;
                o.now_secs = now;
                o.current = current;
                o.throttles_per_sec = 0.0;
                let (d, next) = decide(&cfg, &o, &state);
                state = next;
                if let Some(s) = d.set {
                    if s < current {
                        if let Some(t) = last_decrease {
                            prop_assert!(now - t >= cfg.scale_down_window_secs,
                                "lowered at {t} and again at {now}");
                        }
                        last_decrease = Some(now);
                    }
                    current = s;
                }
            }
        }

        /// On a constant load the setting settles, and stays.
        #[test]
        fn it_converges_on_a_constant_load(
            arrivals in 0.0f64..2_000.0,
            rate in 1.0f64..200.0,
            start in 2u32..200,
        ) {
            let cfg = ScalingConfig { max: 1000, ..ScalingConfig::default() };
            let mut state = ScalerState::default();
            let mut current = start;
            let mut visible = 0.0f64;
            let mut changes = Vec::new();
            for minute in 0..60u64 {
                // A fluid queue: what arrives, less what the batches complete, over a minute.
                let capacity = f64::from(current) * rate * 60.0;
                visible = (visible + arrivals * 60.0 - capacity).max(0.0);
                let o = Observation {
                    now_secs: minute * 60,
                    visible: visible as u64,
                    in_flight: 0,
                    oldest_age_secs: 0.0,
                    arrivals_per_sec: arrivals,
                    completions_per_sec: 0.0,
                    rate_per_batch: Some(rate),
                    batch_size: 10,
                    throttles_per_sec: 0.0,
                    current,
                };
                let (d, next) = decide(&cfg, &o, &state);
                state = next;
                if let Some(s) = d.set {
                    changes.push((minute, s));
                    current = s;
                }
            }
            prop_assert!(changes.iter().all(|(m, _)| *m < 30), "still changing: {changes:?}");
        }
    }
}
