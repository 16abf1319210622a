//! The DuckDB database file (SPEC section 7): tables `runs`, `telemetry_clean`, `triage_queue` and
//! `device_state`, every row tagged with its `run_id`. A run's rows are replaced, never added twice:
//! one transaction deletes the run's previous rows and loads the new stage files, so a process
//! killed at any moment leaves the database as it was before or after, never in between.

use std::path::Path;

use anyhow::{Context, Result};
use duckdb::{Connection, params};

/// What the `runs` table records of one run.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub run_id: String,
    pub started_at_us: i64,
    pub as_of_us: i64,
    /// Input paths in run order, as a JSON array.
    pub inputs_json: String,
    /// Files of input folders skipped as not telemetry (`--skip-unknown`), as a JSON array.
    pub skipped_json: String,
    pub input_fingerprint: String,
    pub rows_in: u64,
    pub rows_clean: u64,
    pub rows_quarantined: u64,
    pub devices: u64,
    pub blind_devices: u64,
    pub status: String,
    /// The effective configuration as TOML.
    pub config_toml: String,
}

/// The Parquet files a run loads, by table.
pub struct StageFiles<'a> {
    pub telemetry_clean: &'a Path,
    pub triage_queue: &'a Path,
    pub device_state: &'a Path,
}

/// Opens (or creates) the database with Sentinel's settings: `threads` worker threads, a memory
/// limit, and spill files next to the database.
pub fn open(db: &Path, threads: usize) -> Result<Connection> {
    let spill = db.with_extension("duckdb.tmp");
    let config = duckdb::Config::default()
        .threads(threads as i64)
        .and_then(|c| c.max_memory("4GB"))
        .and_then(|c| c.with("temp_directory", spill.to_string_lossy()))
        // Rows are identified by run_id and source columns, never by insertion order; without
        // it DuckDB loads in parallel with less memory.
        .and_then(|c| c.with("preserve_insertion_order", "false"))
        .with_context(|| format!("configuring DuckDB for {}", db.display()))?;
    Connection::open_with_flags(db, config)
        .map_err(db_error)
        .with_context(|| format!("opening database {}", db.display()))
}

/// Now, in µs since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A DuckDB error as anyhow's, without the "Error code 1: Unknown error code" tail that the
/// binding appends to every message.
pub fn db_error(err: duckdb::Error) -> anyhow::Error {
    let text = err.to_string();
    let text = text
        .strip_suffix(": Error code 1: Unknown error code")
        .unwrap_or(&text);
    anyhow::anyhow!("{}", text.trim_end())
}

/// A path as a SQL string literal.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "''"))
}

/// Replaces the rows of `run.run_id` in every table with the stage files, in one transaction.
pub fn load(conn: &mut Connection, run: &RunRecord, files: &StageFiles) -> Result<()> {
    let tx = conn
        .transaction()
        .context("starting a database transaction")?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            as_of TIMESTAMP,
            inputs VARCHAR,
            input_fingerprint VARCHAR,
            rows_in BIGINT,
            rows_clean BIGINT,
            rows_quarantined BIGINT,
            devices BIGINT,
            blind_devices BIGINT,
            status VARCHAR,
            config VARCHAR,
            skipped_inputs VARCHAR
        );
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS skipped_inputs VARCHAR;",
    )
    .context("creating table runs")?;
    for (table, path) in [
        ("telemetry_clean", files.telemetry_clean),
        ("triage_queue", files.triage_queue),
        ("device_state", files.device_state),
    ] {
        let source = format!("read_parquet({})", quoted(path));
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} AS SELECT CAST(NULL AS VARCHAR) AS run_id, * FROM {source} LIMIT 0;"
        ))
        .with_context(|| format!("creating table {table}"))?;
        tx.execute(
            &format!("DELETE FROM {table} WHERE run_id = ?"),
            params![run.run_id],
        )
        .with_context(|| format!("replacing the run's rows in {table}"))?;
        tx.execute(
            &format!("INSERT INTO {table} SELECT ? AS run_id, * FROM {source}"),
            params![run.run_id],
        )
        .with_context(|| format!("loading {} into {table}", path.display()))?;
    }
    tx.execute("DELETE FROM runs WHERE run_id = ?", params![run.run_id])
        .context("replacing the run in runs")?;
    // The run finishes when its rows are in: stamped after the tables are loaded, just before
    // the commit.
    tx.execute(
        "INSERT INTO runs (run_id, started_at, finished_at, as_of, inputs, input_fingerprint,
                           rows_in, rows_clean, rows_quarantined, devices, blind_devices, status,
                           config, skipped_inputs)
         VALUES (?, make_timestamp(?), make_timestamp(?), make_timestamp(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            run.run_id,
            run.started_at_us,
            now_us(),
            run.as_of_us,
            run.inputs_json,
            run.input_fingerprint,
            run.rows_in as i64,
            run.rows_clean as i64,
            run.rows_quarantined as i64,
            run.devices as i64,
            run.blind_devices as i64,
            run.status,
            run.config_toml,
            run.skipped_json,
        ],
    )
    .context("recording the run in runs")?;
    tx.commit()
        .map_err(db_error)
        .context("committing the run to the database")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use polars::prelude::{DataFrame, IntoColumn, NewChunkedArray, StringChunked};

    use super::*;

    /// `runs.finished_at` is the moment the run's rows are in: stamped by `load` itself, after
    /// the tables are filled, never before the load began.
    #[test]
    fn finished_at_is_stamped_after_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rows.parquet");
        let mut df = DataFrame::new(
            2,
            vec![
                StringChunked::from_iter_values("device_id".into(), ["a", "b"].into_iter())
                    .into_column(),
            ],
        )
        .unwrap();
        crate::parquet::writer(std::fs::File::create(&file).unwrap())
            .finish(&mut df)
            .unwrap();
        let run = RunRecord {
            run_id: "r1".into(),
            started_at_us: 1_000_000,
            as_of_us: 2_000_000,
            inputs_json: "[]".into(),
            skipped_json: "[]".into(),
            input_fingerprint: "f".into(),
            rows_in: 2,
            rows_clean: 2,
            rows_quarantined: 0,
            devices: 2,
            blind_devices: 0,
            status: "completed".into(),
            config_toml: String::new(),
        };
        let mut conn = open(&dir.path().join("db.duckdb"), 1).unwrap();
        let before = now_us();
        let files = StageFiles {
            telemetry_clean: &file,
            triage_queue: &file,
            device_state: &file,
        };
        load(&mut conn, &run, &files).unwrap();
        let (started, finished): (i64, i64) = conn
            .query_row(
                "SELECT epoch_us(started_at), epoch_us(finished_at) FROM runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(started, 1_000_000);
        assert!(
            finished >= before,
            "finished_at {finished} before the load began {before}"
        );
        assert!(finished <= now_us());
    }
}
