//! How long a failed message or stream batch waits before its next try.

use std::time::Duration;

/// How long a failed message or stream batch waits before its next try: `base` after the first
/// failure, four times longer after each further one, up to `cap`, each ±10 % at random so
/// retries of many messages spread out.
///
/// Lambda makes a failed SQS message visible again only after the queue's whole visibility
/// timeout (360 s deployed), so five receives ride out about 24 minutes of outage. Locally the
/// queues' visibility timeout is kept short (a killed runner's messages come back fast), so the
/// runner backs off by itself: with the defaults (2 s, up to 120 s) the five receives of a local
/// queue ride out an outage of over two minutes before its redrive policy moves the message to
/// the dead-letter queue ([`Backoff::rides_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// How much longer each wait is than the one before.
    pub const FACTOR: u32 = 4;

    /// The wait after failure number `failures` (1 for the first), jittered.
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, fastrand::f64())
    }

    /// The wait after failure number `failures`, with `unit` in `[0, 1)` choosing the jitter:
    /// 0 is 10 % shorter than the plain wait, 1 is 10 % longer. Never more than `cap`.
    pub fn delay_with(&self, failures: u32, unit: f64) -> Duration {
        let growth = Self::FACTOR.saturating_pow(failures.saturating_sub(1).min(30));
        let plain = self.base.saturating_mul(growth).min(self.cap);
        plain
            .mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
            .min(self.cap)
    }

    /// The longest outage that `tries` tries are sure to ride out: the waits between them at
    /// their shortest. A message that its queue's redrive policy moves after `maxReceiveCount`
    /// receives has `maxReceiveCount` tries.
    pub fn rides_out(&self, tries: u32) -> Duration {
        (1..tries).map(|f| self.delay_with(f, 0.0)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_fourfold_up_to_its_cap_with_bounded_jitter() {
        let b = Backoff::default();
        let secs = |f, u| b.delay_with(f, u).as_secs_f64();
        assert!((secs(1, 0.5) - 2.0).abs() < 1e-9);
        assert!((secs(2, 0.5) - 8.0).abs() < 1e-9);
        assert!((secs(3, 0.5) - 32.0).abs() < 1e-9);
        assert!((secs(4, 0.5) - 120.0).abs() < 1e-9, "capped");
        assert!((secs(1, 0.0) - 1.8).abs() < 1e-9 && (secs(1, 1.0) - 2.2).abs() < 1e-9);
        assert!(
            (secs(9, 1.0) - 120.0).abs() < 1e-9,
            "jitter never passes the cap"
        );
        assert_eq!(b.delay_with(u32::MAX, 1.0), b.cap, "no overflow");
        for f in 1..10 {
            let d = b.delay(f);
            assert!(d >= b.delay_with(f, 0.0) && d <= b.delay_with(f, 1.0));
        }
    }

    #[test]
    fn five_receives_ride_out_a_two_minute_outage_with_the_defaults() {
        // A local queue's redrive policy moves a message after five receives: the four waits
        // between them, at their shortest, outlast two minutes of outage.
        let ride = Backoff::default().rides_out(5);
        assert!(ride > Duration::from_secs(120), "{ride:?}");
        assert!(ride < Duration::from_secs(180), "{ride:?}");
        assert_eq!(Backoff::default().rides_out(1), Duration::ZERO);
    }
}
