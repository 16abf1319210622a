//! The command line (SPEC section 10): commands, flags and their help, nothing else. Flags become
//! a validated `Config` and stage options in `commands.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sentinel turns the telemetry of an IoT fleet after a firmware (OTA) campaign into answers:
/// which reports are corrupt and why, what state every device is in, and what to do about it.
///
/// Every command reads and writes inside one work directory (--workdir). Exit codes: 0 success,
/// 1 runtime or input error, 2 command-line usage error, 3 a region is HALT and --fail-on-halt was
/// given.
#[derive(Debug, Parser)]
#[command(name = "sentinel", version, max_term_width = 100)]
pub struct Cli {
    /// Folder that holds everything the commands read and write: raw/ (telemetry), stage/,
    /// reports/ and the database. Created when missing. Default: the SENTINEL_WORKDIR environment
    /// variable when set (the container image sets /data), else sentinel-out.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "SENTINEL_WORKDIR",
        default_value = "sentinel-out",
        hide_default_value = true,
        hide_env = true
    )]
    pub workdir: PathBuf,

    /// TOML file that overrides any part of the built-in configuration (regions, models,
    /// thresholds, costs, gate). `sentinel config` prints the effective configuration to start
    /// from. Default: the built-in values.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Worker threads for generation, chaos, recover's buckets, Parquet encoding and queries;
    /// at least 1. Default: one per core.
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,

    /// Print nothing on stderr but errors: no progress, no summary.
    #[arg(long, global = true)]
    pub quiet: bool,

    /// Print the command's summary as one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic fleet's telemetry after an OTA campaign, with planted bottlenecks,
    /// into raw/telemetry.parquet. The same devices, seed and as-of always give the same bytes.
    Generate(GenerateArgs),
    /// Corrupt a telemetry file the way real exports go wrong (nulls, garbage, impossible values,
    /// bad timestamps, dropped signals, duplicates, conflicts, and benign noise), and log every
    /// change with the reason the sanitizer must give.
    Chaos(ChaosArgs),
    /// Sanitize and triage every report of the inputs, classify every device and plan its
    /// recovery: writes clean.parquet, triage.parquet, device_state.parquet and recovery_plan.csv
    /// into stage/<run_id>/, and records the run in sentinel.duckdb in one transaction.
    Recover(RecoverArgs),
    /// Split inputs into N shards by device (a stable hash of the device id) as a Parquet
    /// dataset, partition/shard=K/ by default, so that `recover --shard K/N` can run each shard
    /// on its own machine or process. The shards' rows add up to the inputs'.
    Partition(PartitionArgs),
    /// Check that every shard of a run is recovered, consistent and unaltered, and publish the
    /// run in sentinel.duckdb in one transaction, as one run (analyze and report then work as
    /// after a plain recover). Writes the run's merged recovery_plan.csv.
    Merge(MergeArgs),
    /// Answer the analytics questions (queries/*.sql, compiled in) about one run of the database:
    /// regional failure ranks, cohort and gateway bottlenecks, error mix, the rollout gate, the
    /// state matrix, recovery ROI, the trend across runs and the triage summary.
    Analyze(AnalyzeArgs),
    /// Write the exec report of one run into reports/<run_id>/: four charts as PNG and SVG
    /// (failure heatmap, recovery ROI, state breakdown, triage reasons), a self-contained
    /// report.html, report.md for pasting, and summary.json with the KPIs and gate decisions.
    Report(ReportArgs),
    /// The gauntlet: generate, chaos, recover, analyze and report in order with one as-of, on
    /// the workdir's default paths. Prints the rollout gate and the report's path.
    Run(RunArgs),
    /// Print the effective configuration (built-in defaults with --config applied) as TOML.
    Config,
    /// Keep the N runs that finished last and remove the others: their rows in the run ledger
    /// (and so in the data views) and their stage files under stage/<run_id>/, together. Reports
    /// in reports/ stay. Waits for analyze sessions still reading the removed runs.
    Prune(PruneArgs),
    /// Print a shell completion script for bash, zsh or fish on stdout. For bash, for example:
    /// `sentinel completions bash > ~/.local/share/bash-completion/completions/sentinel`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout: `sentinel man > sentinel.1; man ./sentinel.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// Telemetry to split, as for `recover --input`: files or folders of Parquet, CSV or NDJSON.
    /// Repeat the flag for several inputs; every input's rows of one device land in one shard.
    /// Required.
    #[arg(long, value_name = "PATH", required = true)]
    pub input: Vec<PathBuf>,

    /// How many shards, at least 1. Required.
    #[arg(long, value_name = "N", required = true,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub shards: u32,

    /// Folder to write the dataset into (`_partition.json` and `shard=K/part-00000.parquet`);
    /// an earlier partition there is replaced. Default: <workdir>/partition.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// The as-of the shards are recovered with unless `recover --as-of` says otherwise (RFC
    /// 3339), so that every shard of the run measures from one moment. Default: now, in whole
    /// seconds.
    #[arg(long, value_name = "T", value_parser = parse_as_of)]
    pub as_of: Option<i64>,

    /// Skip the files of an input folder that are not telemetry, as for `recover`.
    #[arg(long)]
    pub skip_unknown: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The sharded run to merge. Default: the run whose shards finished last.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// How many runs to keep (the ones that finished last); at least 1. Required.
    #[arg(long, value_name = "N", required = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for: bash, zsh or fish.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// The shells `completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run to report on, as recover printed it. Default: the run that finished last.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,

    /// Share of rows chaos corrupts, between 0 and 1. Chaos uses the fleet's --seed. Default:
    /// 0.05.
    #[arg(
        long,
        value_name = "R",
        default_value_t = 0.05,
        hide_default_value = true,
        allow_negative_numbers = true,
        value_parser = parse_rate
    )]
    pub chaos_rate: f64,

    /// The one moment (RFC 3339) every step uses: the export time of the generated fleet and
    /// the as-of of recovery. Default: now, in whole seconds.
    #[arg(long, value_name = "T", value_parser = parse_as_of)]
    pub as_of: Option<i64>,

    /// Exit with code 3 when the rollout gate says HALT for any region (every output is still
    /// written), so a script or CI job can stop the rollout.
    #[arg(long)]
    pub fail_on_halt: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// One question to answer: a built-in query's name (region_failure_rank, cohort_bottlenecks,
    /// gateway_hotspots, error_mix, rollout_gate, state_matrix, recovery_roi, run_trend,
    /// triage_summary) or the path of your own .sql file holding one SELECT. Your SQL runs on a
    /// read-only connection without access to files or the network, and sees the run through the
    /// table `params` (run_id, as_of, finished_at, halt_failure_rate, gate_min_devices,
    /// min_cohort) and the macros wilson_low(k, n) and wilson_high(k, n). Default: all built-in
    /// queries.
    #[arg(long, value_name = "NAME|FILE")]
    pub query: Option<String>,

    /// The run to analyze, as recover printed it. Default: the run that finished last.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// How to print the results: table (aligned columns), csv, or json (one array of objects per
    /// query; with several queries, one object keyed by query name). Default: table, or json
    /// with --json.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<crate::analytics::Format>,
}

/// The synthetic fleet's flags, shared by `generate` and `run`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Number of devices in the fleet, at least 1. About 10% of them send two or three reports,
    /// so the file holds about 1.13 rows per device. Default: 10000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        hide_default_value = true,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub devices: u64,

    /// Seed of the random streams (the generator's, and chaos's in `run`); another seed gives
    /// another fleet. Default: 42.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 42,
        hide_default_value = true
    )]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,

    /// The moment the telemetry is exported (RFC 3339, e.g. 2026-11-25T12:00:00Z). All report
    /// times fall before it. Default: now, in whole seconds.
    #[arg(long, value_name = "T", value_parser = parse_as_of)]
    pub as_of: Option<i64>,

    /// Where to write the Parquet file. Default: <workdir>/raw/telemetry.parquet.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Telemetry Parquet file to corrupt. Default: <workdir>/raw/telemetry.parquet.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Where to write the corrupted file. Default: <workdir>/raw/telemetry.chaos.parquet.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Where to write the chaos log (Parquet: source_row, column, kind, before, after,
    /// expected_reason, input_row, inserted). Default: <workdir>/raw/chaos_log.parquet.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Share of input rows to corrupt, between 0 and 1. Duplicates add a row each, so the
    /// output grows by about rate x 14%. Default: 0.05.
    #[arg(
        long,
        value_name = "R",
        default_value_t = 0.05,
        hide_default_value = true,
        allow_negative_numbers = true,
        value_parser = parse_rate
    )]
    pub rate: f64,

    /// Seed that decides which rows are corrupted and how. Default: 42.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 42,
        hide_default_value = true
    )]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Telemetry to recover: a .parquet, .csv, .ndjson or .jsonl file (CSV and NDJSON also
    /// compressed as .gz or .zst), or a folder of them, nested folders such as hive-style
    /// `date=2026-11-30/` partitions included, read in name order. Repeat the flag for several
    /// inputs; duplicates and conflicts are found across all of them. Required.
    #[arg(long, value_name = "PATH", required = true)]
    pub input: Vec<PathBuf>,

    /// Skip the files of an input folder that are not telemetry (other extensions) instead of
    /// failing on the first one. Skipped files are listed in the summary and recorded with the
    /// run (`runs.skipped_inputs`). Default: off, so no file is ever left out silently.
    #[arg(long)]
    pub skip_unknown: bool,

    /// The moment the telemetry describes (RFC 3339): heartbeats and timeouts are measured from
    /// it, and timestamps more than 5 minutes after it are quarantined. Default: now, in whole
    /// seconds.
    #[arg(long, value_name = "T", value_parser = parse_as_of)]
    pub as_of: Option<i64>,

    /// Recover only shard K of N (0 <= K < N): the devices whose id hashes to K (see
    /// `partition`). The input is a dataset written by `partition --shards N`, or any inputs,
    /// read whole and filtered (then --as-of is required, so that every shard measures from one
    /// moment). Writes stage/<run_id>/shard=K/ with a manifest and leaves the database alone;
    /// shards of one run may run at once, anywhere, in any order, and `merge` publishes the run.
    /// The run id is the one a plain recover of the same inputs has.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::recover::shard::Shard>,
}

/// Parses `--rate` and `--chaos-rate`: a share between 0 and 1.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(r) => Err(format!("{r} is not between 0 and 1")),
        Err(_) => Err(format!("{text:?} is not a number between 0 and 1")),
    }
}

/// Parses `--as-of`: an RFC 3339 timestamp, into µs since the epoch.
pub fn parse_as_of(text: &str) -> Result<i64, String> {
    crate::schema::parse_timestamp(text.trim()).ok_or_else(|| {
        format!("{text:?} is not an RFC 3339 timestamp such as 2026-11-25T12:00:00Z")
    })
}
