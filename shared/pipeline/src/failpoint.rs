//! Fail points: named places where a test crashes the process, as `kill -9` would, to show that
//! a crash there loses nothing.
//!
//! They exist only in a build with the `failpoints` feature (`sluice` built with
//! `--features failpoints`); elsewhere [`hit`] is an empty function. In such a build,
//! `SLUICE_FAILPOINT=<name>[:<n>]` aborts the process at the `n`th time (default 1) it passes
//! the fail point `name`. The points:
//!
//! | name | where |
//! |---|---|
//! | `ingest.after_raw_put` | a raw object is written, its batch not yet answered |
//! | `ingest.after_dead_letter` | a dead letter is sent, its batch not yet answered |
//! | `ingest.before_response` | the batch is handled, the answer not yet given |
//! | `transform.after_typed_write` | a typed row is written, the message not yet answered |
//! | `transform.after_dead_letter` | a dead letter is sent, the message not yet answered |
//! | `transform.before_response` | the messages are handled, the answer not yet given |
//! | `redrive.after_send` | a dead letter is sent back, not yet deleted from the DLQ |
//! | `replay.after_batch` | a batch of replay messages is sent, the next not yet |

/// Every fail point, by name.
pub const POINTS: &[&str] = &[
    "ingest.after_raw_put",
    "ingest.after_dead_letter",
    "ingest.before_response",
    "transform.after_typed_write",
    "transform.after_dead_letter",
    "transform.before_response",
    "redrive.after_send",
    "replay.after_batch",
];

/// Passes the fail point `name`: aborts the process when `SLUICE_FAILPOINT` says so.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var("SLUICE_FAILPOINT").ok()?;
        let (point, n) = match spec.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((point, n.max(1)))
    });
    if let Some((point, n)) = armed {
        if point == name && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("fail point {name}: aborting the process (pass {n})");
            std::process::abort();
        }
    }
}

/// Passes the fail point `name`: nothing, in a build without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}
