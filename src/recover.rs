//! `recover` (SPEC sections 4, 5 and 7): reads the inputs, sanitizes and triages every report,
//! classifies every device and plans its recovery, then publishes the stage files and the database.
//!
//! Publishing is all or nothing. The stage files are written under temporary names, the row
//! accounting is checked, the database takes the run in one transaction reading those temporary
//! files, and only then are the files renamed into place. Any failure before that leaves the
//! previous outputs and the database as they were.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use polars::prelude::{
    CsvWriter, DataFrame, DataType, Expr, IntoLazy, LazyFrame, SerWriter, UnionArgs, col, concat,
    len, lit, when,
};
use serde::Serialize;

use crate::classify;
use crate::config::Config;
use crate::ingest::{self, SOURCE_FILE, SOURCE_ROW};
use crate::parallel;
use crate::parquet;
use crate::sanitize::{self, PRIMARY_REASON, PROBLEMS};
use crate::schema;
use crate::warehouse::{self, RunRecord, StageFiles};
use crate::workspace::{AtomicFile, Workspace};

/// What `recover` is asked to do.
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    pub inputs: Vec<PathBuf>,
    pub as_of_us: i64,
}

/// What `recover` did: the summary printed on stderr and, with --json, on stdout.
#[derive(Clone, Debug, Serialize)]
pub struct RecoverSummary {
    pub run_id: String,
    pub as_of: String,
    pub inputs: Vec<String>,
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
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The run id: a fingerprint of the inputs' contents (in run order), as_of and the configuration.
fn fingerprints(
    inputs: &[ingest::Input],
    as_of_us: i64,
    config: &Config,
) -> Result<(String, String)> {
    let mut all = blake3::Hasher::new();
    for input in inputs {
        let mut file =
            File::open(&input.path).with_context(|| format!("opening {}", input.path.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", input.path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        all.update(hasher.finalize().as_bytes());
    }
    let content = all.finalize().to_hex().to_string();
    let mut run = blake3::Hasher::new();
    run.update(content.as_bytes());
    run.update(&as_of_us.to_le_bytes());
    run.update(config.to_toml().as_bytes());
    Ok((run.finalize().to_hex()[..16].to_string(), content))
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
            .contains(lit(r"^[=+\-@\t\r]"), false)
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
                .neq(lit("NONE"))
                .and(col("action").neq(lit("WAIT"))),
        )
        .select(cols)
        .collect()?)
}

/// Runs recover. `ws` names the outputs; nothing is published unless every step succeeds.
pub fn recover(config: &Config, opts: &RecoverOptions, ws: &Workspace) -> Result<RecoverSummary> {
    let started_at_us = now_us();
    let clock = Instant::now();
    let mut timings = BTreeMap::new();
    let mut lap = |name: &str, since: &mut Instant| {
        timings.insert(name.to_string(), since.elapsed().as_secs_f64());
        *since = Instant::now();
    };
    let mut step = Instant::now();

    let inputs = ingest::resolve(&opts.inputs)?;
    let (run_id, fingerprint) = fingerprints(&inputs, opts.as_of_us, config)?;
    let mut frames: Vec<LazyFrame> = Vec::with_capacity(inputs.len());
    let mut rows_in = 0u64;
    for (i, input) in inputs.iter().enumerate() {
        let frame = ingest::read(input, i)?
            .collect()
            .with_context(|| format!("reading {}", input.path.display()))?;
        rows_in += frame.height() as u64;
        frames.push(frame.lazy());
    }
    let raw = concat(frames, UnionArgs::default()).context("combining the inputs")?;
    lap("read", &mut step);

    let annotated = sanitize::annotate(raw, config, opts.as_of_us)?
        .collect()
        .context("sanitizing the inputs")?;
    let clean = sanitize::clean(annotated.clone().lazy()).collect()?;
    let triage = sanitize::triage(annotated.clone().lazy()).collect()?;
    // Blind devices: valid ids whose every report is quarantined (their rows are P1).
    let id = sanitize::valid_device_id();
    let blind = annotated
        .clone()
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
    drop(annotated);
    lap("sanitize", &mut step);

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

    let device_state = classify::classify(
        classify::latest_reports(clean.clone().lazy())?,
        config,
        opts.as_of_us,
    )
    .collect()
    .context("classifying devices")?;
    let plan = recovery_plan(&device_state)?;
    lap("classify", &mut step);

    // Stage files under temporary names.
    let mut staged = Vec::new();
    for (df, dest) in [
        (&clean, ws.clean()),
        (&triage, ws.triage()),
        (&device_state, ws.device_state()),
    ] {
        let file = AtomicFile::create(&dest)?;
        let mut df = df.clone();
        parquet::writer(file.file())
            .set_parallel(true)
            .finish(&mut df)
            .with_context(|| format!("writing {}", dest.display()))?;
        staged.push(file);
    }
    let plan_file = AtomicFile::create(&ws.recovery_plan())?;
    {
        let mut w = plan_file.file();
        CsvWriter::new(&mut w)
            .include_header(true)
            .finish(&mut plan.clone())
            .with_context(|| format!("writing {}", ws.recovery_plan().display()))?;
    }
    lap("write", &mut step);

    let devices = device_state.height() as u64;
    let sum = |c: &str| -> Result<f64> {
        Ok(device_state
            .column(c)?
            .as_materialized_series()
            .sum::<f64>()?)
    };
    let truck_rolls_avoided = device_state
        .column("truck_roll_avoided")?
        .bool()?
        .sum()
        .unwrap_or(0) as u64;
    let record = RunRecord {
        run_id: run_id.clone(),
        started_at_us,
        finished_at_us: now_us(),
        as_of_us: opts.as_of_us,
        inputs_json: serde_json::to_string(
            &inputs
                .iter()
                .map(|i| i.path.display().to_string())
                .collect::<Vec<_>>(),
        )?,
        input_fingerprint: fingerprint,
        rows_in,
        rows_clean,
        rows_quarantined,
        devices,
        blind_devices: blind,
        status: "completed".into(),
        config_toml: config.to_toml(),
    };
    let mut conn = warehouse::open(&ws.database(), parallel::threads())?;
    warehouse::load(
        &mut conn,
        &record,
        &StageFiles {
            telemetry_clean: staged[0].temp_path(),
            triage_queue: staged[1].temp_path(),
            device_state: staged[2].temp_path(),
        },
    )?;
    drop(conn);
    lap("load", &mut step);

    let mut outputs = BTreeMap::new();
    for file in staged.into_iter().chain([plan_file]) {
        outputs.insert(
            file.dest()
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            file.dest().display().to_string(),
        );
        file.commit()?;
    }
    outputs.insert("database".into(), ws.database().display().to_string());
    timings.insert("total".into(), clock.elapsed().as_secs_f64());
    Ok(RecoverSummary {
        run_id,
        as_of: schema::format_timestamp(opts.as_of_us),
        inputs: inputs
            .iter()
            .map(|i| i.path.display().to_string())
            .collect(),
        rows_in,
        rows_clean,
        rows_quarantined,
        quarantined_by_reason: counts(&triage, PRIMARY_REASON)?,
        devices,
        devices_by_state: counts(&device_state, "state")?,
        devices_by_action: counts(&device_state, "action")?,
        blind_devices: blind,
        cost_usd: sum("cost_usd")?,
        truck_rolls_avoided,
        cost_avoided_usd: sum("cost_avoided_usd")?,
        outputs,
        timings,
    })
}
