//! Turns parsed flags into validated options, calls one stage per command, and prints the
//! summary: a human one on stderr (unless --quiet) and, with --json, one JSON object on stdout.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::analytics::{self, Format, QUERIES, Session};
use crate::chaos::{self, ChaosOptions};
use crate::cli::{Cli, Command, RunArgs, Shell};
use crate::config::Config;
use crate::generate::{self, GenerateOptions};
use crate::parallel;
use crate::recover::{self, RecoverOptions};
use crate::report;
use crate::warehouse;
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
            .any(|p| crate::shard::open_partition(p).is_ok_and(|m| m.is_some()))
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
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(0)
        }
        Command::Completions(args) => {
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
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("rendering the manual page")?;
            std::io::stdout()
                .write_all(&page)
                .context("writing the manual page")?;
            Ok(0)
        }
        Command::Generate(args) => {
            let opts = GenerateOptions {
                devices: args.fleet.devices,
                seed: args.fleet.seed,
                as_of_us: args.as_of.unwrap_or_else(now_whole_seconds),
                out: args.out.unwrap_or_else(|| ws.raw_telemetry()),
            };
            let summary = generate_step(&config, &opts, &out)?;
            out.summary(&summary, || generate_text(&summary))?;
            Ok(0)
        }
        Command::Chaos(args) => {
            let opts = ChaosOptions {
                input: args.input.unwrap_or_else(|| ws.raw_telemetry()),
                out: args.out.unwrap_or_else(|| ws.chaos_telemetry()),
                log: args.log.unwrap_or_else(|| ws.chaos_log()),
                rate: args.rate,
                seed: args.seed,
            };
            let summary = chaos_step(&opts, &out)?;
            out.summary(&summary, || chaos_text(&summary))?;
            Ok(0)
        }
        Command::Recover(args) => {
            // A partitioned input proposes the as-of it was split with.
            let proposed = args
                .input
                .iter()
                .find_map(|p| crate::shard::open_partition(p).ok().flatten())
                .map(|m| m.as_of_us);
            let opts = RecoverOptions {
                inputs: args.input,
                as_of_us: args.as_of.or(proposed).unwrap_or_else(now_whole_seconds),
                bucket_rows: recover::BUCKET_ROWS,
                skip_unknown: args.skip_unknown,
                shard: args.shard,
            };
            let summary = recover_step(&config, &opts, &ws, &out)?;
            out.summary(&summary, || recover_text(&summary))?;
            Ok(0)
        }
        Command::Partition(args) => {
            let opts = crate::shard::PartitionOptions {
                inputs: args.input,
                shards: args.shards,
                out: args.out.unwrap_or_else(|| ws.partition_dir()),
                as_of_us: args.as_of.unwrap_or_else(now_whole_seconds),
                skip_unknown: args.skip_unknown,
            };
            let spinner = out.spinner("partitioning by device");
            let summary = crate::shard::partition(&opts);
            spinner.finish_and_clear();
            let summary = summary?;
            out.summary(&summary, || {
                format!(
                    "{} rows into {} shards in {} ({}; {:.2} s)",
                    summary.rows_in,
                    summary.shards,
                    summary.out,
                    summary
                        .rows_per_shard
                        .iter()
                        .enumerate()
                        .map(|(k, n)| format!("shard {k}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    summary.seconds
                )
            })?;
            Ok(0)
        }
        Command::Merge(args) => {
            let spinner = out.spinner("merging shards");
            let summary = crate::shard::merge(&ws, args.run_id.as_deref(), parallel::threads());
            spinner.finish_and_clear();
            let summary = summary?;
            out.summary(&summary, || {
                format!(
                    "merged {} shards\n{}",
                    summary.shards,
                    recover_text(&summary.run)
                )
            })?;
            Ok(0)
        }
        Command::Analyze(args) => {
            let session = Session::open(&ws, args.run_id.as_deref(), parallel::threads())?;
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
        Command::Report(args) => {
            let summary = report_step(&ws, args.run_id.as_deref(), &out)?;
            out.summary(&summary, || report_text(&summary))?;
            Ok(0)
        }
        Command::Run(args) => gauntlet(&config, &ws, &out, args),
        Command::Prune(args) => {
            let summary = prune_step(&ws, args.keep)?;
            out.summary(&summary, || {
                format!(
                    "kept {} runs, removed {}{}",
                    summary.kept.len(),
                    summary.removed.len(),
                    if summary.removed.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", summary.removed.join(", "))
                    }
                )
            })?;
            Ok(0)
        }
    }
}

/// A hold on the work directory: whole for a writing command, shared among shard recovers.
enum Lock {
    Whole(#[allow(dead_code)] crate::workspace::WorkdirLock),
    Shared(#[allow(dead_code)] crate::workspace::ReadersLock),
}

/// `prune`: the database must exist (there is nothing to prune otherwise).
fn prune_step(ws: &Workspace, keep: u64) -> Result<warehouse::PruneSummary> {
    let db = ws.database();
    if !db.is_file() {
        bail!(
            "no database at {} (run `sentinel recover` or `sentinel run` first)",
            db.display()
        );
    }
    let mut conn = warehouse::open(&db, parallel::threads())?;
    warehouse::prune(&mut conn, ws, usize::try_from(keep).unwrap_or(usize::MAX))
}

/// What `run` did, step by step.
#[derive(Serialize)]
struct RunSummary {
    generate: generate::GenerateSummary,
    chaos: chaos::ChaosSummary,
    recover: recover::RecoverSummary,
    gate: Vec<GateRow>,
    halted_regions: Vec<String>,
    report: report::ReportSummary,
    exit_code: u8,
}

#[derive(Serialize)]
struct GateRow {
    region: String,
    devices: u64,
    failure_rate: f64,
    decision: String,
}

/// `run`: every stage in order with one as-of, on the workdir's default paths.
fn gauntlet(config: &Config, ws: &Workspace, out: &Output, args: RunArgs) -> Result<u8> {
    let as_of_us = args.as_of.unwrap_or_else(now_whole_seconds);
    let generate_opts = GenerateOptions {
        devices: args.fleet.devices,
        seed: args.fleet.seed,
        as_of_us,
        out: ws.raw_telemetry(),
    };
    let chaos_opts = ChaosOptions {
        input: ws.raw_telemetry(),
        out: ws.chaos_telemetry(),
        log: ws.chaos_log(),
        rate: args.chaos_rate,
        seed: args.fleet.seed,
    };
    let generated = generate_step(config, &generate_opts, out)?;
    out.step(|| generate_text(&generated));
    let chaos = chaos_step(&chaos_opts, out)?;
    out.step(|| chaos_text(&chaos));
    let recover_opts = RecoverOptions {
        inputs: vec![ws.chaos_telemetry()],
        as_of_us,
        bucket_rows: recover::BUCKET_ROWS,
        skip_unknown: false,
        shard: None,
    };
    let recovered = recover_step(config, &recover_opts, ws, out)?;
    out.step(|| recover_text(&recovered));

    // analyze: the rollout gate of this run decides the exit code.
    let gate_table = {
        let session = Session::open(ws, Some(&recovered.run_id), parallel::threads())?;
        session.builtin(analytics::builtin("rollout_gate").context("the rollout_gate query")?)?
    };
    let col = |name: &str| gate_table.column(name);
    let (region, devices_col, rate_col, decision) = (
        col("region")?,
        col("devices")?,
        col("failure_rate")?,
        col("decision")?,
    );
    let gate: Vec<GateRow> = gate_table
        .rows
        .iter()
        .map(|r| GateRow {
            region: r[region].text(),
            devices: r[devices_col].as_f64().unwrap_or(0.0) as u64,
            failure_rate: r[rate_col].as_f64().unwrap_or(0.0),
            decision: r[decision].text(),
        })
        .collect();
    let halted = crate::vocab::halted_regions(
        gate.iter()
            .map(|g| (g.region.as_str(), g.decision.as_str())),
    );

    let reported = report_step(ws, Some(&recovered.run_id), out)?;
    let exit_code = if args.fail_on_halt && !halted.is_empty() {
        3
    } else {
        0
    };
    let summary = RunSummary {
        generate: generated,
        chaos,
        recover: recovered,
        gate,
        halted_regions: halted,
        report: reported,
        exit_code,
    };
    out.summary(&summary, || {
        let gate: Vec<String> = summary
            .gate
            .iter()
            .map(|g| {
                format!(
                    "{} {} ({:.1}%)",
                    g.region,
                    g.decision,
                    100.0 * g.failure_rate
                )
            })
            .collect();
        let mut text = format!(
            "rollout gate: {}\nreport: {}",
            gate.join(", "),
            Path::new(&summary.report.dir).join("report.html").display()
        );
        if !summary.halted_regions.is_empty() {
            text.push_str(&format!(
                "\nHALT: {}{}",
                summary.halted_regions.join(", "),
                if exit_code == 3 {
                    " (exit code 3: --fail-on-halt)"
                } else {
                    ""
                }
            ));
        }
        text
    })?;
    Ok(exit_code)
}

fn generate_step(
    config: &Config,
    opts: &GenerateOptions,
    out: &Output,
) -> Result<generate::GenerateSummary> {
    let bar = out.progress(opts.devices, "generating", "devices");
    let summary = generate::generate(config, opts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(summary)
}

fn generate_text(s: &generate::GenerateSummary) -> String {
    format!(
        "generated {} devices ({} reports) into {} in {:.2} s ({} devices/s)",
        s.devices,
        s.rows,
        s.path.display(),
        s.seconds,
        human_rate(s.devices as f64 / s.seconds.max(1e-9))
    )
}

fn chaos_step(opts: &ChaosOptions, out: &Output) -> Result<chaos::ChaosSummary> {
    if !opts.input.is_file() {
        bail!(
            "chaos input {} does not exist or is not a file (run `sentinel generate` first, or pass --input)",
            opts.input.display()
        );
    }
    let bar = out.progress(0, "corrupting", "rows");
    let summary = chaos::chaos(opts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(summary)
}

fn chaos_text(s: &chaos::ChaosSummary) -> String {
    let kinds: Vec<String> = s.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "corrupted {} of {} rows into {} ({} rows out; log {}) in {:.2} s\n  kinds: {}",
        s.rows_logged,
        s.rows_in,
        s.out.display(),
        s.rows_out,
        s.log.display(),
        s.seconds,
        kinds.join(", ")
    )
}

fn recover_step(
    config: &Config,
    opts: &RecoverOptions,
    ws: &Workspace,
    out: &Output,
) -> Result<recover::RecoverSummary> {
    let spinner = out.spinner("recovering: sanitize, triage, classify, load");
    let summary = recover::recover(config, opts, ws);
    spinner.finish_and_clear();
    summary
}

fn recover_text(s: &recover::RecoverSummary) -> String {
    let list = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let skipped = if s.skipped.is_empty() {
        String::new()
    } else {
        format!(
            "\n  skipped {} files that are not telemetry (--skip-unknown): {}",
            s.skipped.len(),
            s.skipped.join(", ")
        )
    };
    let shard = s.shard.as_ref().map_or(String::new(), |k| {
        format!(", shard {k} (merge publishes the run)")
    });
    format!(
        "run {}{shard}: {} rows in, {} clean, {} quarantined ({})\n  {} devices: {}\n  actions: {}\n  {} blind devices; cost ${:.2}; {} truck rolls avoided (${:.2}); {:.2} s{}",
        s.run_id,
        s.rows_in,
        s.rows_clean,
        s.rows_quarantined,
        list(&s.quarantined_by_reason),
        s.devices,
        list(&s.devices_by_state),
        list(&s.devices_by_action),
        s.blind_devices,
        s.cost_usd,
        s.truck_rolls_avoided,
        s.cost_avoided_usd,
        s.timings.get("total").copied().unwrap_or(0.0),
        skipped
    )
}

fn report_step(
    ws: &Workspace,
    run_id: Option<&str>,
    out: &Output,
) -> Result<report::ReportSummary> {
    let spinner = out.spinner("writing the report");
    let summary = report::report(ws, run_id, parallel::threads());
    spinner.finish_and_clear();
    summary
}

fn report_text(s: &report::ReportSummary) -> String {
    format!(
        "report of run {} in {} ({} files, {:.2} s): {}",
        s.run_id,
        s.dir,
        s.files.len(),
        s.seconds,
        Path::new(&s.dir).join("report.html").display()
    )
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
        .query_user(&name, &sql)
        .with_context(|| format!("in query file {}", path.display()))
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

/// Now, in whole seconds, as µs since the epoch.
fn now_whole_seconds() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    secs * 1_000_000
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
