//! The commands: each file turns one command's flags into a stage's options, calls the stage, and
//! prints its summary (a human one on stderr unless --quiet; with --json, one JSON object on
//! stdout). This file takes the work directory's lock, dispatches, and holds what every command
//! shares: the output, progress bars, rates as a person reads them, --threads.

mod analyze;
mod chaos;
mod generate;
mod merge;
mod meta;
mod partition;
mod prune;
mod recover;
mod report;
mod run;

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use clap::CommandFactory;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::workspace::Workspace;

/// Runs one command; the result is the process exit code.
pub fn execute(cli: Cli) -> Result<u8> {
    set_threads(cli.threads)?;
    let config = Config::load(cli.config.as_deref())?;
    let ws = Workspace::new(&cli.workdir);
    // A shard of unsplit inputs needs the one as-of of its run (a partition carries one).
    if let Command::Recover(args) = &cli.command
        && args.shard.is_some()
        && args.as_of.is_none()
        && !args
            .input
            .iter()
            .any(|p| crate::recover::shard::open_partition(p).is_ok_and(|m| m.is_some()))
    {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--shard over inputs that `sentinel partition` did not write needs --as-of: \
                 every shard of a run must measure from the same moment",
            )
            .exit();
    }
    // Commands that write into the work directory hold it; analyze and config only read.
    // Shards of one run share it, with each other only.
    let _lock = match &cli.command {
        Command::Recover(args) if args.shard.is_some() => Some(Lock::Shared(ws.lock_shared()?)),
        Command::Generate(_)
        | Command::Chaos(_)
        | Command::Recover(_)
        | Command::Report(_)
        | Command::Prune(_)
        | Command::Partition(_)
        | Command::Merge(_)
        | Command::Run(_) => Some(Lock::Whole(ws.lock()?)),
        Command::Analyze(_) | Command::Config | Command::Completions(_) | Command::Man => None,
    };
    let out = Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    match cli.command {
        Command::Config => meta::config(&config),
        Command::Completions(args) => meta::completions(args),
        Command::Man => meta::man(),
        Command::Generate(args) => generate::run(&config, &ws, &out, args),
        Command::Chaos(args) => chaos::run(&ws, &out, args),
        Command::Recover(args) => recover::run(&config, &ws, &out, args),
        Command::Partition(args) => partition::run(&ws, &out, args),
        Command::Merge(args) => merge::run(&ws, &out, args),
        Command::Analyze(args) => analyze::run(&ws, cli.json, args),
        Command::Report(args) => report::run(&ws, &out, args),
        Command::Run(args) => run::run(&config, &ws, &out, args),
        Command::Prune(args) => prune::run(&ws, &out, args),
    }
}

/// A hold on the work directory: whole for a writing command, shared among shard recovers.
enum Lock {
    Whole(#[allow(dead_code)] crate::workspace::WorkdirLock),
    Shared(#[allow(dead_code)] crate::workspace::ReadersLock),
}

/// A rate in three significant figures with a K or M suffix: 494K, 1.95M, 812.
pub fn human_rate(per_sec: f64) -> String {
    let (value, suffix) = if per_sec >= 1e6 {
        (per_sec / 1e6, "M")
    } else if per_sec >= 1e3 {
        (per_sec / 1e3, "K")
    } else {
        (per_sec, "")
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// Where a command's messages go.
struct Output {
    quiet: bool,
    json: bool,
}

impl Output {
    /// A progress bar on stderr when it is a terminal; a hidden one otherwise (cron, pipes).
    /// A progress bar over `total` `unit`s (devices, rows), its rate as a person reads it
    /// (`494K devices/s`).
    fn progress(&self, total: u64, what: &str, unit: &'static str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} {rate} eta {eta}",
            )
            .expect("valid template")
            .with_key(
                "rate",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} {unit}/s", human_rate(state.per_sec()));
                },
            )
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }

    /// A spinner on stderr for a step without a row count, when stderr is a terminal.
    fn spinner(&self, what: &str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// One finished step of `run`, on stderr unless --quiet.
    fn step(&self, human: impl FnOnce() -> String) {
        if !self.quiet {
            eprintln!("{}", human());
        }
    }

    fn summary<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        if !self.quiet {
            eprintln!("{}", human());
        }
        if self.json {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer(&mut stdout, value).context("writing the JSON summary")?;
            writeln!(stdout).context("writing the JSON summary")?;
        }
        Ok(())
    }
}

/// Now, in whole seconds, as µs since the epoch: the default as-of.
fn now_whole_seconds() -> i64 {
    crate::support::now_us().div_euclid(1_000_000) * 1_000_000
}

/// Sizes the thread pools once, before any of them starts.
fn set_threads(threads: Option<u64>) -> Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    // clap keeps it at 1 or more.
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    // polars sizes its pool from this variable when the pool is first used, which is after
    // this point; nothing else runs yet, so no other thread can be reading the environment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("POLARS_MAX_THREADS", n.to_string());
    }
    crate::support::parallel::set_threads(n);
    Ok(())
}

/// Whether an error is a closed stdout (`sentinel ... | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::human_rate;

    #[test]
    fn rates_read_like_a_person_writes_them() {
        assert_eq!(human_rate(493_668.18), "494K");
        assert_eq!(human_rate(1_953_000.0), "1.95M");
        assert_eq!(human_rate(12_340.0), "12.3K");
        assert_eq!(human_rate(2_000_000.0), "2M");
        assert_eq!(human_rate(812.4), "812");
        assert_eq!(human_rate(0.0), "0");
    }
}
