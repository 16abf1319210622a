//! `recover` (SPEC sections 4, 5 and 7): reads the inputs, sanitizes and triages every report,
//! classifies every device and plans its recovery, then publishes the stage files and the database.
//!
//! Publishing is all or nothing. The stage files (`stage/<run_id>/`) are written under temporary
//! names, the row accounting is checked, the files are renamed into place as one set, and then
//! the database takes the run (its ledger row, and views over its files) in one transaction. Any
//! failure before that leaves the previous outputs and the database as they were.

pub mod census;
pub mod classify;
pub mod ingest;
pub mod sanitize;
pub mod shard;

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use polars::prelude::{
    BooleanChunked, CsvWriter, DataFrame, DataType, Expr, IntoLazy, LazyFrame, Schema, SerWriter,
    UnionArgs, col, concat, len, lit, when,
};
use serde::Serialize;

use crate::config::Config;
use crate::schema;
use crate::support::parallel;
use crate::support::parquet;
use crate::vocab::Action;
use crate::warehouse::{self, RunRecord};
use crate::workspace::{self, AtomicFile, Workspace};
use ingest::{SOURCE_FILE, SOURCE_ROW};
use sanitize::{PRIMARY_REASON, PROBLEMS, Rows};
use shard::Shard;

/// What `recover` is asked to do.
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    pub inputs: Vec<PathBuf>,
    pub as_of_us: i64,
    /// Inputs with more rows are processed in buckets of about this many rows; [`BUCKET_ROWS`]
    /// (0) chooses by the inputs' size ([`bucket_rows_for`]).
    pub bucket_rows: usize,
    /// Bucketed inputs of at most this many rows (estimated) keep their buckets in memory;
    /// larger ones write them to scratch files and read each back once. [`MEMORY_ROWS`] is the
    /// default.
    pub memory_rows: usize,
    /// Skip an input folder's files of other formats (listed in the summary and the run ledger)
    /// instead of failing on them.
    pub skip_unknown: bool,
    /// Recover one shard of the run (`--shard K/N`): its stage files and manifest go to
    /// `stage/<run_id>/shard=K/`, and `merge` publishes the run once every shard is there.
    pub shard: Option<Shard>,
}

/// What `recover` did: the summary printed on stderr and, with --json, on stdout.
#[derive(Clone, Debug, Serialize)]
pub struct RecoverSummary {
    pub run_id: String,
    pub as_of: String,
    pub inputs: Vec<String>,
    /// Files of input folders that are not telemetry, skipped on request (`--skip-unknown`).
    pub skipped: Vec<String>,
    pub rows_in: u64,
    pub rows_clean: u64,
    pub rows_quarantined: u64,
    /// Quarantined rows by primary reason.
    pub quarantined_by_reason: BTreeMap<String, u64>,
    pub devices: u64,
    pub devices_by_state: BTreeMap<String, u64>,
    pub devices_by_action: BTreeMap<String, u64>,
    /// Devices seen only in quarantined rows: no clean report, no state.
    pub blind_devices: u64,
    pub cost_usd: f64,
    pub truck_rolls_avoided: u64,
    pub cost_avoided_usd: f64,
    pub outputs: BTreeMap<String, String>,
    /// Seconds per step.
    pub timings: BTreeMap<String, f64>,
    /// The shard recovered (`K/N`), when only one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// The run id: a fingerprint of the inputs' contents (in run order), as_of and the configuration.
/// `content` is the inputs' content fingerprint ([`shard::content_fingerprint`]).
fn run_id(content: &str, as_of_us: i64, config: &Config) -> String {
    let mut run = blake3::Hasher::new();
    run.update(content.as_bytes());
    run.update(&as_of_us.to_le_bytes());
    run.update(config.to_toml().as_bytes());
    run.finalize().to_hex()[..16].to_string()
}

/// Counts of `column`'s values in `df`, as a sorted map.
fn counts(df: &DataFrame, column: &str) -> Result<BTreeMap<String, u64>> {
    let grouped = df
        .clone()
        .lazy()
        .group_by([col(column)])
        .agg([len().alias("n")])
        .collect()?;
    let keys = grouped.column(column)?.cast(&DataType::String)?;
    let keys = keys.str()?;
    let n = grouped.column("n")?.cast(&DataType::UInt64)?;
    let n = n.u64()?;
    Ok((0..grouped.height())
        .map(|i| {
            (
                keys.get(i).unwrap_or("null").to_string(),
                n.get(i).unwrap_or(0),
            )
        })
        .collect())
}

/// A text cell that a spreadsheet would read as a formula gets a leading apostrophe.
fn neutralized(name: &str) -> Expr {
    let c = col(name);
    when(
        c.clone()
            .str()
            .contains(lit(crate::support::FORMULA_START_PATTERN), false)
            .fill_null(lit(false)),
    )
    .then(polars::prelude::concat_str(
        [lit("'"), c.clone()],
        "",
        false,
    ))
    .otherwise(c)
    .alias(name)
}

/// The recovery plan: devices whose action is not NONE or WAIT, text cells neutralized.
fn recovery_plan(device_state: &DataFrame) -> Result<DataFrame> {
    let text = [
        schema::DEVICE_ID,
        schema::REGION,
        schema::HW_MODEL,
        schema::GATEWAY_ID,
        "state",
        "action",
        "rationale",
        SOURCE_FILE,
    ];
    let mut cols: Vec<Expr> = text.iter().map(|c| neutralized(c)).collect();
    cols.extend([col("cost_usd"), col("cost_avoided_usd"), col(SOURCE_ROW)]);
    Ok(device_state
        .clone()
        .lazy()
        .filter(
            col("action")
                .neq(Action::None.lit())
                .and(col("action").neq(Action::Wait.lit())),
        )
        .select(cols)
        .collect()?)
}

/// `RecoverOptions::bucket_rows` for "choose by the inputs' size" ([`bucket_rows_for`]).
pub const BUCKET_ROWS: usize = 0;

/// Rows per bucket for inputs of `rows` rows. `--threads` buckets are computed at once and
/// finished ones wait to be written, so memory follows the bucket size: at 11.4M rows on two
/// threads, 400,000-row buckets peaked at 2.2-2.5 GB, 250,000-row ones at 1.4-1.6 GB in the same
/// time. But every read slice adds a piece to every bucket file, so the split's work grows with
/// slices x buckets: at 113.8M rows, 250,000-row buckets (455 of them) made the split 2.6 times
/// slower. Small buckets up to 24M rows (a 10M-device fleet as CSV is estimated at 16.4M),
/// 400,000-row ones beyond (2.8 GB at 113.8M rows).
pub fn bucket_rows_for(rows: usize) -> usize {
    if rows <= 24_000_000 { 250_000 } else { 400_000 }
}

/// The number of buckets for `rows` rows: one when they fit in one bucket, else enough for
/// buckets of at most `bucket_rows` rows, rounded up to a multiple of `threads` so that the last
/// round of buckets keeps every worker busy (at 1.14M rows, 5 buckets on 2 threads left one
/// core idle for a third of the run; 6 did not).
fn bucket_count(rows: usize, bucket_rows: usize, threads: usize) -> usize {
    let buckets = rows.div_ceil(bucket_rows.max(1)).max(1);
    if buckets == 1 {
        return 1;
    }
    buckets.next_multiple_of(threads.max(1))
}

/// `RecoverOptions::memory_rows` by default. Buckets kept in memory spare the split encoding,
/// writing and reading back every row, which pays while the inputs are small: at 1.14M rows
/// 3.33 -> 3.12 s (medians of 3, alternated) with the same peak (1.0 GB); at 2.5M rows 6.6 -> 6.3 s for 0.6 GB more; at 5M
/// rows no faster for 1.2 GB more; at 11.4M rows slower (28.8 -> 33.7 s, 5.1 GB: the held
/// frames take fresh pages where scratch files let the split reuse its memory).
pub const MEMORY_ROWS: usize = 2_000_000;

/// A bucket's rows, waiting for a worker: a scratch file, or the frames the split kept.
enum Bucket {
    File(PathBuf),
    Frames(Mutex<Vec<DataFrame>>),
}

impl Bucket {
    /// The bucket's rows as one frame in run order; its file or frames are let go.
    fn take(&self) -> Result<DataFrame> {
        match self {
            Bucket::File(path) => {
                let raw = ingest::read_scratch(path)?;
                std::fs::remove_file(path).ok();
                Ok(raw)
            }
            Bucket::Frames(frames) => {
                let frames = std::mem::take(&mut *frames.lock().expect("a bucket's frames"));
                ingest::joined(frames)
            }
        }
    }
}

/// The run's totals, summed over buckets.
#[derive(Default)]
struct Totals {
    rows_in: u64,
    rows_clean: u64,
    rows_quarantined: u64,
    blind: u64,
    devices: u64,
    reasons: BTreeMap<String, u64>,
    states: BTreeMap<String, u64>,
    actions: BTreeMap<String, u64>,
    cost_usd: f64,
    cost_avoided_usd: f64,
    truck_rolls_avoided: u64,
    /// Seconds spent per step, summed over buckets.
    seconds: BTreeMap<&'static str, f64>,
}

/// Money summed over buckets, rounded to cents: the sum's last bits depend on the order of the
/// additions, the cents do not.
pub(crate) fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Adds counts by key (of buckets, or of shards) into `into`.
pub(crate) fn add(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_default() += n;
    }
}

/// The three Parquet stage files being written, under temporary names, one part (bucket) at a
/// time. A part's row groups are encoded by the thread that computed it ([`Stage::encode`]); the
/// calling thread appends them in part order ([`Stage::write`]). When the calling thread encoded
/// every part itself, that was the one serial step: at 11.4M rows it took 18 s of a 33 s run while
/// the workers waited for it.
struct Stage {
    files: Vec<AtomicFile>,
    schemas: Vec<Schema>,
    writers: Vec<parquet::Writer<File>>,
}

impl Stage {
    /// Starts the stage files in `dir` (the run's folder, or one shard's) for frames with the
    /// columns of `like`'s.
    fn create(dir: &Path, like: &Frames) -> Result<Stage> {
        let files = workspace::STAGE_FILES
            .iter()
            .map(|name| AtomicFile::create(&dir.join(name)))
            .collect::<Result<Vec<_>>>()?;
        let schemas: Vec<Schema> = like
            .stage()
            .iter()
            .map(|df| df.schema().as_ref().clone())
            .collect();
        let writers = files
            .iter()
            .zip(&schemas)
            .map(|(file, schema)| {
                let layout = parquet::Layout::Kept {
                    plain: parquet::UNIQUE_COLUMNS,
                };
                Ok(parquet::Writer::new(
                    file.file().try_clone()?,
                    schema,
                    layout,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stage {
            files,
            schemas,
            writers,
        })
    }

    /// Encodes a part's clean, triage and device_state rows, one row group per file (any thread).
    fn encode(&self, frames: &mut Frames) -> Result<Vec<parquet::Encoded>> {
        frames
            .stage_mut()
            .into_iter()
            .enumerate()
            .map(|(i, df)| {
                let name = self.files[i].dest().display();
                let schema = df.schema();
                if schema.as_ref() != &self.schemas[i] {
                    let differ: Vec<String> = schema
                        .iter()
                        .zip(self.schemas[i].iter())
                        .filter(|(a, b)| a != b)
                        .map(|((n, a), (_, b))| format!("{n} is {a}, the file's {b}"))
                        .collect();
                    anyhow::bail!(
                        "writing {name}: a part's columns differ from the file's ({})",
                        differ.join("; ")
                    );
                }
                self.writers[i]
                    .encode(df)
                    .with_context(|| format!("encoding {name}"))
            })
            .collect()
    }

    /// Appends a part's encoded row groups.
    fn write(&self, encoded: Vec<parquet::Encoded>) -> Result<()> {
        for ((writer, file), groups) in self.writers.iter().zip(&self.files).zip(encoded) {
            writer
                .write(groups)
                .with_context(|| format!("writing {}", file.dest().display()))?;
            file.start_writeback();
        }
        Ok(())
    }

    /// Closes the writers; the files stay under their temporary names until committed.
    fn finish(self) -> Result<Vec<AtomicFile>> {
        for (writer, file) in self.writers.into_iter().zip(&self.files) {
            writer
                .finish()
                .with_context(|| format!("writing {}", file.dest().display()))?;
        }
        Ok(self.files)
    }
}

/// The recovery plan CSV being written: its header when it is created, then each part's rows,
/// formatted on the worker that computed it ([`PlanRows::of`]), in part order.
struct PlanFile {
    file: AtomicFile,
    /// Rows written so far (the header not counted).
    rows: u64,
}

/// A part's plan rows as CSV text, without the header.
struct PlanRows {
    text: Vec<u8>,
    rows: u64,
}

impl PlanRows {
    /// Formats `plan` (any thread). At 11.4M rows formatting on the calling thread took 1.1 s of
    /// its time while it also appended every part's row groups.
    fn of(plan: &mut DataFrame) -> Result<PlanRows> {
        let mut text = Vec::new();
        CsvWriter::new(&mut text)
            .include_header(false)
            .finish(plan)
            .context("formatting the recovery plan")?;
        Ok(PlanRows {
            text,
            rows: plan.height() as u64,
        })
    }
}

impl PlanFile {
    /// Starts the plan in `dir` with the header of `like`'s columns.
    fn create(dir: &Path, like: &DataFrame) -> Result<PlanFile> {
        let file = AtomicFile::create(&dir.join(workspace::RECOVERY_PLAN))?;
        CsvWriter::new(file.file())
            .include_header(true)
            .finish(&mut like.clear())
            .with_context(|| format!("writing {}", file.dest().display()))?;
        Ok(PlanFile { file, rows: 0 })
    }

    /// Appends a part's plan rows.
    fn write(&mut self, plan: PlanRows) -> Result<()> {
        self.file
            .file()
            .write_all(&plan.text)
            .with_context(|| format!("writing {}", self.file.dest().display()))?;
        self.rows += plan.rows;
        Ok(())
    }
}

/// One bucket's results (or the whole run's).
struct Frames {
    clean: DataFrame,
    triage: DataFrame,
    device_state: DataFrame,
    plan: DataFrame,
    rows_in: u64,
    blind: u64,
    /// Seconds per step.
    seconds: Vec<(&'static str, f64)>,
}

impl Frames {
    fn stage(&self) -> [&DataFrame; 3] {
        [&self.clean, &self.triage, &self.device_state]
    }

    fn stage_mut(&mut self) -> [&mut DataFrame; 3] {
        [&mut self.clean, &mut self.triage, &mut self.device_state]
    }
}

/// A part ready to be appended: its encoded row groups, plan rows and tallies.
struct Part {
    encoded: Vec<parquet::Encoded>,
    plan: PlanRows,
    tally: Totals,
}

/// Tallies and encodes computed frames for `stage` (any thread).
fn prepare(mut frames: Frames, stage: &Stage) -> Result<Part> {
    let clock = Instant::now();
    let mut tally = Totals::of(&frames)?;
    let encoded = stage.encode(&mut frames)?;
    let plan = PlanRows::of(&mut frames.plan)?;
    *tally.seconds.entry("encode").or_default() += clock.elapsed().as_secs_f64();
    Ok(Part {
        encoded,
        plan,
        tally,
    })
}

/// Sanitizes, triages and classifies one bucket (or the whole run). Pure: several buckets may be
/// computed at once on different threads.
fn compute(raw: DataFrame, config: &Config, as_of_us: i64, rows: Rows) -> Result<Frames> {
    let rows_in = raw.height() as u64;
    let mut seconds = Vec::with_capacity(2);
    let mut clock = Instant::now();
    let mut lap = |step: &'static str| {
        seconds.push((step, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };
    let annotated = sanitize::annotate_rows(raw.lazy(), config, as_of_us, rows)?
        .collect()
        .context("sanitizing the inputs")?;
    let clean = sanitize::clean(annotated.clone().lazy()).collect()?;
    let triage = sanitize::triage(annotated.clone().lazy()).collect()?;
    // Blind devices: valid ids whose every report is quarantined (their rows are P1).
    let id = sanitize::valid_device_id();
    let blind = annotated
        .lazy()
        .filter(
            col(sanitize::PRIORITY)
                .eq(lit("P1"))
                .and(col(&id).is_not_null()),
        )
        .select([col(&id).n_unique().alias("n")])
        .collect()?
        .column("n")?
        .cast(&DataType::UInt64)?
        .u64()?
        .get(0)
        .unwrap_or(0);

    // The row-accounting invariant: every input row is clean or quarantined, never both; every
    // quarantined row has a problem.
    let rows_clean = clean.height() as u64;
    let rows_quarantined = triage.height() as u64;
    ensure!(
        rows_in == rows_clean + rows_quarantined,
        "row accounting failed: {rows_in} rows in, {rows_clean} clean + {rows_quarantined} quarantined"
    );
    let empty_problems = triage
        .clone()
        .lazy()
        .filter(
            col(PROBLEMS)
                .list()
                .len()
                .eq(lit(0u32))
                .or(col(PRIMARY_REASON).is_null()),
        )
        .collect()?
        .height();
    ensure!(
        empty_problems == 0,
        "row accounting failed: {empty_problems} quarantined rows without a problem"
    );

    lap("sanitize");
    let device_state = classify::classify(
        classify::latest_reports_of(clean.clone().lazy(), rows)?,
        config,
        as_of_us,
    )
    .collect()
    .context("classifying devices")?;
    // Lone rows are each their own device by the census, so only related rows are checked
    // (hashing every id was 1.5% of recover's CPU).
    if rows == Rows::Related {
        let ids = device_state.column(schema::DEVICE_ID)?.n_unique()?;
        ensure!(
            ids == device_state.height(),
            "device accounting failed: {} device rows for {ids} devices",
            device_state.height()
        );
    }
    let plan = recovery_plan(&device_state)?;
    lap("classify");
    Ok(Frames {
        clean,
        triage,
        device_state,
        plan,
        rows_in,
        blind,
        seconds,
    })
}

impl Totals {
    /// A part's counts and sums.
    fn of(frames: &Frames) -> Result<Totals> {
        let device_state = &frames.device_state;
        let sum = |c: &str| -> Result<f64> {
            Ok(device_state
                .column(c)?
                .as_materialized_series()
                .sum::<f64>()?)
        };
        Ok(Totals {
            rows_in: frames.rows_in,
            rows_clean: frames.clean.height() as u64,
            rows_quarantined: frames.triage.height() as u64,
            blind: frames.blind,
            devices: device_state.height() as u64,
            reasons: counts(&frames.triage, PRIMARY_REASON)?,
            states: counts(device_state, "state")?,
            actions: counts(device_state, "action")?,
            cost_usd: sum("cost_usd")?,
            cost_avoided_usd: sum("cost_avoided_usd")?,
            truck_rolls_avoided: device_state
                .column("truck_roll_avoided")?
                .bool()?
                .sum()
                .unwrap_or(0) as u64,
            seconds: frames.seconds.iter().copied().collect(),
        })
    }

    /// Appends a prepared part to the stage files and the plan, and adds its tallies; parts
    /// arrive in bucket order, so the files and the sums do not depend on which thread computed
    /// what.
    fn absorb(&mut self, part: Part, stage: &Stage, plan: &mut PlanFile) -> Result<()> {
        let clock = Instant::now();
        stage.write(part.encoded)?;
        *self.seconds.entry("write").or_default() += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        plan.write(part.plan)?;
        *self.seconds.entry("plan").or_default() += clock.elapsed().as_secs_f64();
        let t = part.tally;
        self.rows_in += t.rows_in;
        self.rows_clean += t.rows_clean;
        self.rows_quarantined += t.rows_quarantined;
        self.blind += t.blind;
        self.devices += t.devices;
        self.cost_usd += t.cost_usd;
        self.cost_avoided_usd += t.cost_avoided_usd;
        self.truck_rolls_avoided += t.truck_rolls_avoided;
        add(&mut self.reasons, &t.reasons);
        add(&mut self.states, &t.states);
        add(&mut self.actions, &t.actions);
        for (step, seconds) in t.seconds {
            *self.seconds.entry(step).or_default() += seconds;
        }
        Ok(())
    }
}

/// The bucket of a row among `buckets`: a hash of its trimmed device id. Another hash than the
/// shard's ([`shard::shard_of`]), so that the buckets of one shard are not lopsided.
fn bucket_of(id: Option<&str>, buckets: u64) -> u32 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.map(str::trim).unwrap_or("").hash(&mut h);
    (h.finish() % buckets) as u32
}

/// Folders that did not exist when a run began: dropped, it removes those of them that are empty
/// (deepest first), so that a run that fails leaves no empty stage folder behind.
struct EmptyFolders(Vec<PathBuf>);

impl EmptyFolders {
    /// `dir` and its missing ancestors.
    fn missing(dir: &Path) -> EmptyFolders {
        let folders = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        EmptyFolders(folders)
    }
}

impl Drop for EmptyFolders {
    fn drop(&mut self) {
        for dir in &self.0 {
            // Fails, as it should, on a folder that holds the published run.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs recover. `ws` names the outputs; nothing is published unless every step succeeds.
pub fn recover(config: &Config, opts: &RecoverOptions, ws: &Workspace) -> Result<RecoverSummary> {
    let started_at_us = crate::support::now_us();
    let clock = Instant::now();
    let mut timings = BTreeMap::new();
    let mut lap = |name: &str, since: &mut Instant| {
        timings.insert(name.to_string(), since.elapsed().as_secs_f64());
        *since = Instant::now();
    };
    let mut step = Instant::now();

    let source = shard::source(&opts.inputs, opts.skip_unknown, opts.shard)?;
    let inputs = &source.inputs;
    let fingerprint = match &source.fingerprint {
        Some(f) => f.clone(),
        None => shard::content_fingerprint(inputs)?,
    };
    let run_id = run_id(&fingerprint, opts.as_of_us, config);
    // A shard writes into its own folder, held against a second process on the same shard.
    let (out_dir, _shard_lock) = match opts.shard {
        Some(s) => (
            ws.shard_dir(&run_id, s.index),
            Some(ws.shard_lock(&run_id, s)?),
        ),
        None => (ws.stage_dir(&run_id), None),
    };
    // Inputs of at most `bucket_rows` rows are processed in one piece. Larger ones are split
    // by a hash of the trimmed device id into buckets of about `bucket_rows` rows, each sanitized
    // and classified on its own: every rule that relates rows (DUPLICATE, CONFLICT, the latest
    // report, blind devices, priority) relates rows of one device id, so one bucket holds all of
    // them, in run order. Memory is bounded by the bucket, not the fleet. A shard of unsplit
    // inputs keeps only its devices' rows, as they are read.
    // Row counts from the Parquet footers (which slice Parquet inputs), and every input's
    // estimated rows (which size the buckets); CSV and NDJSON files are streamed (a compressed
    // one from a decompressed temporary copy in the bucket folder).
    let counts = inputs
        .iter()
        .map(ingest::parquet_rows)
        .collect::<Result<Vec<Option<usize>>>>()?;
    let estimated = inputs
        .iter()
        .map(ingest::estimated_rows)
        .collect::<Result<Vec<usize>>>()?;
    let share = source.filter.map_or(1, |s| s.count as usize);
    let rows = estimated.iter().sum::<usize>() / share;
    let bucket_rows = match opts.bucket_rows {
        BUCKET_ROWS => bucket_rows_for(rows),
        n => n,
    };
    let buckets = bucket_count(rows, bucket_rows, parallel::threads());
    let filter = source.filter;
    let keep = |df: DataFrame| -> Result<DataFrame> {
        let Some(s) = filter else { return Ok(df) };
        let mask: BooleanChunked = shard::shards_of(&df, s.count)?
            .into_iter()
            .map(|k| Some(k == s.index))
            .collect();
        Ok(df.filter(&mask)?)
    };
    // Folders this run creates for its stage files go again if it fails (they are left empty).
    let _created = EmptyFolders::missing(&out_dir);
    let mut totals = Totals::default();
    let (stage, mut plan);
    if buckets == 1 {
        let mut frames: Vec<LazyFrame> = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let frame = ingest::read(input, i)?
                .collect()
                .with_context(|| format!("reading {}", input.path.display()))?;
            frames.push(keep(frame)?.lazy());
        }
        let raw = concat(frames, UnionArgs::default())
            .context("combining the inputs")?
            .collect()
            .context("combining the inputs")?;
        lap("read", &mut step);
        let frames = compute(raw, config, opts.as_of_us, Rows::Related)?;
        stage = Stage::create(&out_dir, &frames)?;
        plan = PlanFile::create(&out_dir, &frames.plan)?;
        totals.absorb(prepare(frames, &stage)?, &stage, &mut plan)?;
    } else {
        // The census (Parquet inputs, whose footers count their rows): rows alone with their
        // device id are computed straight from the slices they are read in, and only the
        // grouped rows go through buckets.
        let census = match counts.iter().copied().collect::<Option<Vec<usize>>>() {
            Some(rows) if rows.iter().sum::<usize>() <= u32::MAX as usize => {
                Some(census::Census::take(inputs, &rows)?)
            }
            _ => None,
        };
        // From the run's start: the inputs resolved and fingerprinted, then the census. Without
        // a census that time stays in the read step, as before there was one.
        if census.is_some() {
            lap("census", &mut step);
        }
        let grouped = census
            .as_ref()
            .map_or(rows, |c| c.grouped_rows() as usize / share);
        // At least a bucket per thread while there are grouped rows: the buckets are the run's
        // last round of work, and one bucket leaves the other cores idle through it.
        let mut buckets = bucket_count(grouped, bucket_rows, parallel::threads());
        if census.is_some() && grouped > 0 {
            buckets = buckets.max(parallel::threads());
        }
        let n = buckets as u64;
        let key = |df: &DataFrame, first: u64| -> Result<Vec<Option<u32>>> {
            let ids = df.column(schema::DEVICE_ID)?.str()?;
            Ok(ids
                .iter()
                .enumerate()
                .map(|(r, id)| {
                    if filter.is_some_and(|s| shard::shard_of(id, s.count) != s.index) {
                        None
                    } else if census.as_ref().is_some_and(|c| c.is_lone(first + r as u64)) {
                        Some(ingest::LONE)
                    } else {
                        Some(bucket_of(id, n))
                    }
                })
                .collect())
        };
        // The stage files are made for the columns of an empty part (a shard without a single
        // row still gets its empty files and manifest), before the split: lone rows are
        // written as they are read. Until the run is published they are temporary files.
        let empty = DataFrame::empty_with_schema(&ingest::text_frame_schema());
        let empty = compute(empty, config, opts.as_of_us, Rows::Related)?;
        stage = Stage::create(&out_dir, &empty)?;
        plan = PlanFile::create(&out_dir, &empty.plan)?;
        // Lone rows are computed on the worker that read them, in parts of at most a bucket's
        // rows (memory follows the bucket size), and appended in run order.
        let compute_lone = |df: DataFrame| -> Result<Vec<Part>> {
            let pieces = df.height().div_ceil(bucket_rows.max(1)).max(1);
            let len = df.height().div_ceil(pieces);
            (0..pieces)
                .map(|k| {
                    let rows = df.slice((k * len) as i64, len);
                    compute(rows, config, opts.as_of_us, Rows::Lone)
                })
                .map(|frames| prepare(frames?, &stage))
                .collect()
        };
        let mut take_lone = |parts: Vec<Part>| -> Result<()> {
            for part in parts {
                totals.absorb(part, &stage, &mut plan)?;
            }
            Ok(())
        };
        let lone = census.as_ref().map(|c| ingest::Lone {
            compute: &compute_lone,
            take: &mut take_lone,
            grouped_share: c.grouped_rows() as f64 / c.rows().max(1) as f64,
        });
        // Kept alive until every bucket is read back: the folder goes with it.
        let _scratch;
        let mut files: Vec<Bucket> = Vec::with_capacity(buckets);
        if grouped <= opts.memory_rows {
            let split = ingest::split(inputs, &counts, &key, ingest::Parts::Memory(buckets), lone)?;
            for (frames, rows) in split.frames.into_iter().zip(split.rows) {
                if rows > 0 {
                    files.push(Bucket::Frames(Mutex::new(frames)));
                }
            }
        } else {
            let dir = ws
                .bucket_dir()
                .context("creating a folder for the buckets")?;
            let paths: Vec<PathBuf> = (0..buckets)
                .map(|b| dir.path().join(format!("bucket-{b:05}.pieces")))
                .collect();
            let split = ingest::split(inputs, &counts, &key, ingest::Parts::Scratch(&paths), lone)?;
            for (path, rows) in paths.into_iter().zip(split.rows) {
                if rows > 0 {
                    files.push(Bucket::File(path));
                } else {
                    std::fs::remove_file(&path).ok();
                }
            }
            _scratch = dir;
        }
        lap("read", &mut step);
        if files.is_empty() && totals.rows_in == 0 {
            totals.absorb(prepare(empty, &stage)?, &stage, &mut plan)?;
        }
        // Buckets are computed and encoded on worker threads, several at once (polars runs much
        // of a bucket's plan on one core), and appended in bucket order on this one.
        parallel::ordered(
            files.len() as u64,
            |i| {
                let clock = Instant::now();
                let raw = files[i as usize].take()?;
                let unpack = clock.elapsed().as_secs_f64();
                let mut frames = compute(raw, config, opts.as_of_us, Rows::Related)?;
                frames.seconds.push(("unpack", unpack));
                prepare(frames, &stage)
            },
            |_, part| totals.absorb(part, &stage, &mut plan),
        )?;
    }
    step = Instant::now();
    let plan_rows = plan.rows;
    let (staged, plan_file) = (stage.finish()?, plan.file);
    let (cost_raw, avoided_raw) = (totals.cost_usd, totals.cost_avoided_usd);
    totals.cost_usd = cents(totals.cost_usd);
    totals.cost_avoided_usd = cents(totals.cost_avoided_usd);
    lap("finish", &mut step);

    let bucket_seconds = std::mem::take(&mut totals.seconds);
    let Totals {
        rows_in,
        rows_clean,
        rows_quarantined,
        blind,
        devices,
        reasons,
        states,
        actions,
        cost_usd,
        cost_avoided_usd,
        truck_rolls_avoided,
        ..
    } = totals;
    let mut outputs = BTreeMap::new();
    let mut files = staged;
    files.push(plan_file);
    for file in &files {
        outputs.insert(
            file.dest()
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            file.dest().display().to_string(),
        );
    }
    if let Some(s) = opts.shard {
        // A shard publishes its files and manifest as one set; `merge` takes the run to the
        // database once every shard is there.
        let mut entries = BTreeMap::new();
        for (file, rows) in files
            .iter()
            .zip([rows_clean, rows_quarantined, devices, plan_rows])
        {
            let name = file
                .dest()
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            entries.insert(name, shard::file_entry(&file.temp_path()?, rows)?);
        }
        let manifest = shard::ShardManifest {
            format: shard::SHARD_FORMAT.into(),
            run_id: run_id.clone(),
            shard: s.index,
            shards: s.count,
            as_of_us: opts.as_of_us,
            inputs: source.recorded.clone(),
            skipped: source.skipped.clone(),
            input_fingerprint: fingerprint.clone(),
            config_toml: config.to_toml(),
            started_at_us,
            finished_at_us: crate::support::now_us(),
            rows_in,
            rows_clean,
            rows_quarantined,
            devices,
            blind_devices: blind,
            quarantined_by_reason: reasons.clone(),
            devices_by_state: states.clone(),
            devices_by_action: actions.clone(),
            cost_usd: cost_raw,
            cost_avoided_usd: avoided_raw,
            truck_rolls_avoided,
            files: entries,
        };
        let dest = out_dir.join(shard::SHARD_MANIFEST);
        files.push(shard::json_file(&dest, &manifest)?);
        outputs.insert(shard::SHARD_MANIFEST.into(), dest.display().to_string());
        workspace::commit_all(files)?;
        lap("publish", &mut step);
    } else {
        let record = RunRecord {
            run_id: run_id.clone(),
            started_at_us,
            as_of_us: opts.as_of_us,
            inputs_json: serde_json::to_string(&source.recorded)?,
            skipped_json: serde_json::to_string(&source.skipped)?,
            input_fingerprint: fingerprint,
            rows_in,
            rows_clean,
            rows_quarantined,
            devices,
            blind_devices: blind,
            status: "completed".into(),
            config_toml: config.to_toml(),
            shards: None,
        };
        // The stage files describe one run together: published as a set, then the database
        // takes the run (its ledger row and the views over its files) in one transaction.
        // DuckDB starts (0.15-0.3 s, mostly its own setup) on another thread while the files
        // are flushed to disk and renamed; nothing is published before both are done.
        let database = ws.database();
        let (committed, opened) = std::thread::scope(|s| {
            let opening = s.spawn(|| warehouse::open(&database, parallel::threads()));
            let committed = workspace::commit_all(files);
            (committed, opening.join())
        });
        committed?;
        let mut conn = opened.map_err(|_| anyhow::anyhow!("opening the database failed"))??;
        warehouse::publish(&mut conn, &record, ws)?;
        drop(conn);
        lap("publish", &mut step);
        outputs.insert("database".into(), ws.database().display().to_string());
    }
    for (name, seconds) in bucket_seconds {
        timings.insert(name.to_string(), seconds);
    }
    timings.insert("total".into(), clock.elapsed().as_secs_f64());
    Ok(RecoverSummary {
        run_id,
        as_of: schema::format_timestamp(opts.as_of_us),
        inputs: source.recorded,
        skipped: source.skipped,
        rows_in,
        rows_clean,
        rows_quarantined,
        quarantined_by_reason: reasons,
        devices,
        devices_by_state: states,
        devices_by_action: actions,
        blind_devices: blind,
        cost_usd,
        truck_rolls_avoided,
        cost_avoided_usd,
        outputs,
        timings,
        shard: opts.shard.map(|s| s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::bucket_count;

    #[test]
    fn bucket_counts_are_a_multiple_of_the_threads() {
        // (rows, bucket rows, threads) -> buckets
        for (rows, bucket_rows, threads, expected) in [
            (0, 250_000, 2, 1),
            (250_000, 250_000, 2, 1),
            (250_001, 250_000, 2, 2),
            (1_140_000, 250_000, 2, 6),
            (1_140_000, 250_000, 1, 5),
            (11_400_000, 250_000, 2, 46),
            (600_000, 250_000, 4, 4),
            (1_100_000, 250_000, 4, 8),
        ] {
            assert_eq!(
                bucket_count(rows, bucket_rows, threads),
                expected,
                "{rows} rows, {bucket_rows} a bucket, {threads} threads"
            );
        }
    }
}
