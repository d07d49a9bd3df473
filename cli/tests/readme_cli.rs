//! The README's CLI section and `sluice --help` agree: every command is listed, with exactly the
//! flags its `--help` shows, and the flags every command takes are described once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

/// Flags described once for every command, not on each command's line.
const COMMON: [&str; 9] = [
    "--endpoint-url",
    "--region",
    "--profile",
    "--output",
    "--prefix",
    "--contracts",
    "--state-dir",
    "--help",
    "--version",
];

fn help(path: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

fn flags(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

/// The subcommands a `--help` lists.
fn subcommands(text: &str) -> Vec<String> {
    text.split("Commands:")
        .nth(1)
        .unwrap_or_default()
        .split("Options:")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_owned)
        .collect()
}

/// The README's CLI section: its command block, and the prose after it.
fn readme_cli() -> (Vec<String>, String) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("\n## CLI\n")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap()
        .to_owned();
    let block = section.split("```").nth(1).unwrap();
    let lines = block
        .lines()
        .filter(|l| l.starts_with("sluice "))
        .map(str::to_owned)
        .collect();
    (lines, section)
}

#[test]
fn the_readme_lists_every_command_with_the_flags_its_help_shows() {
    let (lines, section) = readme_cli();
    for flag in COMMON.iter().take(7) {
        assert!(
            section.contains(flag),
            "{flag} is described in the CLI section"
        );
    }
    let mut paths: Vec<Vec<String>> = Vec::new();
    for top in subcommands(&help(&[])) {
        let nested = subcommands(&help(&[&top]));
        if nested.is_empty() || top == "invoke" {
            paths.push(vec![top]);
        } else {
            paths.extend(nested.into_iter().map(|n| vec![top.clone(), n]));
        }
    }
    assert!(paths.len() >= 10, "{paths:?}");
    for path in paths {
        let prefix = format!("sluice {} ", path.join(" "));
        let documented: Vec<&String> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
        assert!(
            !documented.is_empty(),
            "the README lists `{}`",
            prefix.trim()
        );
        let in_readme: BTreeSet<String> = documented.iter().flat_map(|l| flags(l)).collect();
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let in_help: BTreeSet<String> = flags(&help(&refs))
            .into_iter()
            .filter(|f| !COMMON.contains(&f.as_str()))
            .collect();
        assert_eq!(
            in_readme,
            in_help,
            "the README's `{}` line has the flags its --help shows",
            prefix.trim()
        );
    }
}
