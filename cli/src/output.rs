//! How commands print: a table for people (`--output table`, the default) or JSON for scripts
//! (`--output json`). Tables fit the terminal's width; colour only on a terminal, and never
//! with `NO_COLOR` set.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// Prints a line on stdout, like `println!`, except that a reader gone away (`sluice status |
/// head`) ends the program quietly, as Unix tools do, instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints on stdout, like `print!`, with [`outln!`]'s handling of a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// Writes to stdout and flushes. When stdout is a closed pipe the program exits with 0 (the
/// reader took what it wanted); any other write error exits with 2, named on stderr.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: could not write to standard output ({e}); check where it is redirected");
        std::process::exit(2);
    }
}

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
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A spinner with a message and the time elapsed, on a terminal only (long work shows progress).
pub fn spinner(what: &str) -> Option<indicatif::ProgressBar> {
    stderr_is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        s.set_message(what.to_owned());
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    })
}
