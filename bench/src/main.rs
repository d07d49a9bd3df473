//! `sluice-bench`: measures sluice's handlers through the in-memory ports, and a function
//! binary's cold start. Each command prints one JSON line; `infra/bench.sh` runs them beside
//! the peers and compares.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_bench::{cold_start, ingest, measure, plot, transform};

/// The functions' allocator (functions/*/src/main.rs), so the handlers are measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measures sluice for `make bench`; prints one JSON line per command.
#[derive(Debug, Parser)]
#[command(name = "sluice-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the transform handler on one raw object (gzip NDJSON) through in-memory ports.
    Transform {
        /// The raw object, as `bench/peers/gen_raw.py` writes it.
        file: PathBuf,
        /// The directory holding the contracts.
        #[arg(long)]
        contracts: PathBuf,
        /// How many times to run it; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where the typed rows go: kept in memory under DynamoDB's conditional writes (and
        /// checked), or built as items and dropped (for the growth with the object's size).
        #[arg(long, value_enum, default_value_t = transform::Tables::Memory)]
        tables: transform::Tables,
    },
    /// Runs the ingest handler on every DynamoDB Streams event file (*.json) of a directory.
    Ingest {
        /// The directory, as `bench/peers/gen_ddb_events.py` writes it.
        dir: PathBuf,
        /// How many times to run it; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Times a function binary from spawn to its first request to a Runtime API served here.
    ColdStart {
        /// The function binary (`target/release/ingest`, say).
        bootstrap: PathBuf,
        /// How many cold starts; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Another variable for the function, as NAME=VALUE (repeatable).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Seconds to wait for the first request.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Draws the rates of a results.json (written by infra/bench.py) as an SVG bar chart.
    Plot {
        /// The results.
        results: PathBuf,
        /// The SVG to write.
        out: PathBuf,
    },
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

fn run(cli: Cli) -> anyhow::Result<serde_json::Value> {
    Ok(match cli.command {
        Cmd::Transform {
            file,
            contracts,
            runs,
            tables,
        } => transform::run(&file, &contracts, runs, tables)?.to_json(&file),
        Cmd::Ingest { dir, runs } => ingest::run(&dir, runs)?.to_json(&dir),
        Cmd::ColdStart {
            bootstrap,
            runs,
            env,
            timeout_secs,
        } => {
            let ms = cold_start::run(&bootstrap, runs, &env, Duration::from_secs(timeout_secs))?;
            serde_json::json!({
                "command": "cold-start",
                "bootstrap": bootstrap.display().to_string(),
                "runs": ms.len(),
                "ms": measure::median(&ms),
                "ms_all": ms,
            })
        }
        Cmd::Plot { results, out } => {
            let text = std::fs::read_to_string(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            plot::draw(&serde_json::from_str(&text)?, &out)?;
            serde_json::json!({"command": "plot", "out": out.display().to_string()})
        }
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
