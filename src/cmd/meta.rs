//! `config`, `completions` and `man`: what the program says about itself.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, Shell};
use crate::config::Config;

/// `config`: the effective configuration as TOML.
pub(super) fn config(config: &Config) -> Result<u8> {
    print!("{}", config.to_toml());
    Ok(0)
}

/// `completions`: a completion script for one shell.
pub(super) fn completions(args: CompletionsArgs) -> Result<u8> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sentinel", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(0)
}

/// `man`: the manual page.
pub(super) fn man() -> Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("rendering the manual page")?;
    std::io::stdout()
        .write_all(&page)
        .context("writing the manual page")?;
    Ok(0)
}
