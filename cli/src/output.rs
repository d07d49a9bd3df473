//! How commands print: a table for people (`--output table`, the default) or JSON for scripts
//! (`--output json`). Tables fit the terminal's width; colour only on a terminal, and never
//! with `NO_COLOR` set.

use std::io::IsTerminal;

use clap::ValueEnum;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// The output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    #[default]
    Table,
    /// One JSON document on stdout (and JSON lines for progress), for scripts.
    Json,
}

impl Output {
    /// Whether to print JSON.
    pub fn json(self) -> bool {
        self == Self::Json
    }
}

/// Whether stdout may carry colour: a terminal, and `NO_COLOR` unset.
pub fn colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stderr is a terminal (for progress lines and spinners).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A table with a header, fitting the terminal's width.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    if !colour(std::io::stdout().is_terminal()) {
        t.force_no_tty();
    }
    t
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
