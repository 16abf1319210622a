//! Turns parsed flags into validated options, calls one stage per command, and prints the
//! summary: a human one on stderr (unless --quiet) and, with --json, one JSON object on stdout.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::analytics::{self, Format, QUERIES, Session};
use crate::chaos::{self, ChaosOptions};
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::generate::{self, GenerateOptions};
use crate::parallel;
use crate::recover::{self, RecoverOptions};
use crate::workspace::Workspace;

/// Runs one command; the result is the process exit code.
pub fn execute(cli: Cli) -> Result<u8> {
    set_threads(cli.threads)?;
    let config = Config::load(cli.config.as_deref())?;
    let ws = Workspace::new(&cli.workdir);
    let out = Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    match cli.command {
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(0)
        }
        Command::Generate(args) => {
            if args.devices < 1 {
                bail!("--devices must be at least 1, got {}", args.devices);
            }
            let opts = GenerateOptions {
                devices: args.devices as u64,
                seed: args.seed,
                as_of_us: args.as_of.unwrap_or_else(now_whole_seconds),
                out: args.out.unwrap_or_else(|| ws.raw_telemetry()),
            };
            let bar = out.progress(opts.devices, "generating devices");
            let summary = generate::generate(&config, &opts, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            out.summary(&summary, || {
                format!(
                    "generated {} devices ({} reports) into {} in {:.2} s ({:.0} devices/s)",
                    summary.devices,
                    summary.rows,
                    summary.path.display(),
                    summary.seconds,
                    summary.devices as f64 / summary.seconds.max(1e-9)
                )
            })?;
            Ok(0)
        }
        Command::Recover(args) => {
            let opts = RecoverOptions {
                inputs: args.input,
                as_of_us: args.as_of.unwrap_or_else(now_whole_seconds),
            };
            let summary = recover::recover(&config, &opts, &ws)?;
            out.summary(&summary, || {
                let list = |m: &std::collections::BTreeMap<String, u64>| {
                    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
                };
                format!(
                    "run {}: {} rows in, {} clean, {} quarantined ({})\n  {} devices: {}\n  actions: {}\n  {} blind devices; cost ${:.2}; {} truck rolls avoided (${:.2}); {:.2} s",
                    summary.run_id,
                    summary.rows_in,
                    summary.rows_clean,
                    summary.rows_quarantined,
                    list(&summary.quarantined_by_reason),
                    summary.devices,
                    list(&summary.devices_by_state),
                    list(&summary.devices_by_action),
                    summary.blind_devices,
                    summary.cost_usd,
                    summary.truck_rolls_avoided,
                    summary.cost_avoided_usd,
                    summary.timings.get("total").copied().unwrap_or(0.0)
                )
            })?;
            Ok(0)
        }
        Command::Analyze(args) => {
            let session =
                Session::open(&ws.database(), args.run_id.as_deref(), parallel::threads())?;
            let tables = match args.query.as_deref() {
                None => QUERIES
                    .iter()
                    .map(|q| session.builtin(*q))
                    .collect::<Result<Vec<_>>>()?,
                Some(q) => vec![user_or_builtin(&session, q)?],
            };
            let format = args.format.unwrap_or(if cli.json {
                Format::Json
            } else {
                Format::Table
            });
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(analytics::render(&tables, format).as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing the results")?;
            Ok(0)
        }
        Command::Chaos(args) => {
            if !(0.0..=1.0).contains(&args.rate) {
                bail!("--rate must be between 0 and 1, got {}", args.rate);
            }
            let opts = ChaosOptions {
                input: args.input.unwrap_or_else(|| ws.raw_telemetry()),
                out: args.out.unwrap_or_else(|| ws.chaos_telemetry()),
                log: args.log.unwrap_or_else(|| ws.chaos_log()),
                rate: args.rate,
                seed: args.seed,
            };
            if !opts.input.is_file() {
                bail!(
                    "chaos input {} does not exist or is not a file (run `sentinel generate` first, or pass --input)",
                    opts.input.display()
                );
            }
            let bar = out.progress(0, "corrupting rows");
            let summary = chaos::chaos(&opts, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            out.summary(&summary, || {
                let kinds: Vec<String> = summary
                    .by_kind
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                format!(
                    "corrupted {} of {} rows into {} ({} rows out; log {}) in {:.2} s\n  kinds: {}",
                    summary.rows_logged,
                    summary.rows_in,
                    summary.out.display(),
                    summary.rows_out,
                    summary.log.display(),
                    summary.seconds,
                    kinds.join(", ")
                )
            })?;
            Ok(0)
        }
    }
}

/// `--query`: a built-in question by name, else the path of a user's `.sql` file.
fn user_or_builtin(session: &Session, query: &str) -> Result<analytics::Table> {
    if let Some(q) = analytics::builtin(query) {
        return session.builtin(q);
    }
    let path = std::path::Path::new(query);
    if !path.is_file() {
        let names: Vec<&str> = QUERIES.iter().map(|q| q.name).collect();
        bail!(
            "--query {query:?} is neither a built-in query ({}) nor a .sql file",
            names.join(", ")
        );
    }
    let sql = std::fs::read_to_string(path)
        .with_context(|| format!("reading query file {}", path.display()))?;
    let name = path
        .file_stem()
        .map_or_else(|| query.to_string(), |s| s.to_string_lossy().into_owned());
    session
        .query(&name, &sql)
        .with_context(|| format!("in query file {}", path.display()))
}

/// Where a command's messages go.
struct Output {
    quiet: bool,
    json: bool,
}

impl Output {
    /// A progress bar on stderr when it is a terminal; a hidden one otherwise (cron, pipes).
    fn progress(&self, total: u64, what: &str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
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

/// Now, in whole seconds, as µs since the epoch.
fn now_whole_seconds() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    secs * 1_000_000
}

/// Sizes the thread pools once, before any of them starts.
fn set_threads(threads: Option<usize>) -> Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    // polars sizes its pool from this variable when the pool is first used, which is after
    // this point; nothing else runs yet, so no other thread can be reading the environment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("POLARS_MAX_THREADS", n.to_string());
    }
    crate::parallel::set_threads(n);
    Ok(())
}

/// Whether an error is a closed stdout (`sentinel ... | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
