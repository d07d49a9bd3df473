//! `make bench`: sluice's handlers measured on one core through the in-memory ports, side by
//! side with the peers in `bench/peers/` (run by `infra/bench.sh`).
//!
//! - [`transform`] runs the real transform handler on one raw object held in memory.
//! - [`ingest`] runs the real ingest handler on DynamoDB Streams events held in memory.
//! - [`cold_start`] times a function binary from spawn to its first request to a Lambda Runtime
//!   API served here on the loopback address.
//! - [`check`] sums the typed rows as the peers' `check:` lines do, so the results can be
//!   compared value by value.
//! - [`sample`] builds raw lines of the generator's shape in Rust, for the per-stage
//!   micro-benchmarks (`benches/stages.rs`).
//! - [`measure`] holds what every command shares: medians and the process's peak RSS.
//! - [`plot`] draws the table of a `results.json` as an SVG bar chart.

pub mod check;
pub mod cold_start;
pub mod ingest;
pub mod measure;
pub mod plot;
pub mod sample;
pub mod transform;
