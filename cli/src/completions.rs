//! `sluice completions SHELL`: a completion script for the shell, on stdout.
//!
//! For bash: `sluice completions bash > ~/.local/share/bash-completion/completions/sluice`;
//! for zsh: `sluice completions zsh > "${fpath[1]}/_sluice"`; for fish:
//! `sluice completions fish > ~/.config/fish/completions/sluice.fish`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::Outcome;

/// Arguments of `sluice completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsArgs {
    /// Prints the completion script of `C`.
    pub fn run<C: CommandFactory>(self) -> anyhow::Result<Outcome> {
        let mut command = C::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "sluice", &mut script);
        out!("{}", String::from_utf8_lossy(&script));
        Ok(Outcome::Ok)
    }
}
