//! The DuckDB database file (SPEC section 7): the table `runs` (the run ledger) and the views
//! `telemetry_clean`, `triage_queue` and `device_state` over every published run's stage files,
//! each row tagged with its `run_id`.
//!
//! The data stays in the runs' Parquet files (`stage/<run_id>/`): copying every clean row into
//! DuckDB's own storage cost about 2 µs a row, a fifth of recover, and the views answer the
//! analytics about as fast as tables. A view names its files by absolute path, so it answers from
//! any working directory, in Sentinel and in the stock `duckdb` CLI; when the work directory has
//! moved, the next writer redefines the views ([`publish`], [`prune`]) and every reading session
//! defines its own temporary ones over the current location ([`define_views`] with `temp`).
//!
//! A run is published by one transaction (its ledger row and the views); its files are in place
//! before that, so a process killed at any moment leaves the database as it was before or after,
//! never pointing at files that are not there.

use std::path::Path;

use anyhow::{Context, Result};
use duckdb::{Connection, params};

use crate::workspace::Workspace;

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
    /// How many shards the run was recovered in (`merge`); None for a plain recover.
    pub shards: Option<u32>,
}

/// The data tables, as views over each run's stage file of that name (SPEC section 7).
pub const DATA_TABLES: [(&str, &str); 3] = [
    ("telemetry_clean", "clean.parquet"),
    ("triage_queue", "triage.parquet"),
    ("device_state", "device_state.parquet"),
];

/// Opens (or creates) the database with Sentinel's settings: `threads` worker threads, a memory
/// limit, and spill files next to the database.
pub fn open(db: &Path, threads: usize) -> Result<Connection> {
    let spill = db.with_extension("duckdb.tmp");
    let config = duckdb::Config::default()
        .threads(threads as i64)
        .and_then(|c| c.max_memory("4GB"))
        .and_then(|c| c.with("temp_directory", spill.to_string_lossy()))
        // Rows are identified by run_id and source columns, never by insertion order; without
        // it DuckDB reads and copies (the migration of old tables) in parallel with less memory.
        .and_then(|c| c.with("preserve_insertion_order", "false"))
        .with_context(|| format!("configuring DuckDB for {}", db.display()))?;
    Connection::open_with_flags(db, config)
        .map_err(db_error)
        .with_context(|| format!("opening database {}", db.display()))
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

/// A text as a SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A path as an absolute SQL string literal.
fn path_literal(path: &Path) -> Result<String> {
    let abs = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    Ok(literal(&abs.to_string_lossy()))
}

/// Creates the run ledger when missing (and adds columns that later versions introduced).
fn ensure_runs(conn: &Connection) -> Result<()> {
    conn.execute_batch(
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
            skipped_inputs VARCHAR,
            shards INTEGER
        );
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS skipped_inputs VARCHAR;
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS shards INTEGER;",
    )
    .context("creating table runs")
}

/// A database of an earlier version held the data tables as tables: each run's rows are written
/// out as that run's stage files (unless they exist) and the tables dropped, so that the views can
/// take their names and no run's history is lost.
fn migrate_tables(conn: &Connection, ws: &Workspace) -> Result<()> {
    for (table, file) in DATA_TABLES {
        let kind: Option<String> = conn
            .query_row(
                "SELECT table_type FROM information_schema.tables
                 WHERE table_schema = 'main' AND table_name = ?",
                params![table],
                |r| r.get(0),
            )
            .ok();
        if kind.as_deref() != Some("BASE TABLE") {
            continue;
        }
        let mut stmt = conn.prepare(&format!("SELECT DISTINCT run_id FROM {table}"))?;
        let runs: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<duckdb::Result<_>>()
            .with_context(|| format!("reading the runs of table {table}"))?;
        for run_id in runs {
            let dest = ws.stage_dir(&run_id).join(file);
            if dest.exists() {
                continue;
            }
            std::fs::create_dir_all(ws.stage_dir(&run_id))
                .with_context(|| format!("creating {}", ws.stage_dir(&run_id).display()))?;
            conn.execute_batch(&format!(
                "COPY (SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = {}) TO {}
                 (FORMAT parquet, COMPRESSION lz4_raw)",
                literal(&run_id),
                path_literal(&dest)?
            ))
            .map_err(db_error)
            .with_context(|| {
                format!("moving table {table} of run {run_id} to {}", dest.display())
            })?;
        }
        conn.execute_batch(&format!("DROP TABLE {table}"))
            .with_context(|| format!("dropping table {table}"))?;
    }
    Ok(())
}

/// The completed runs whose stage files are all in place, oldest first, with their shard counts.
fn published_runs(conn: &Connection, ws: &Workspace) -> Result<Vec<(String, Option<u32>)>> {
    // A ledger of an earlier version may lack the column; the views are defined before any
    // writer adds it.
    let has_shards: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM information_schema.columns
             WHERE table_name = 'runs' AND column_name = 'shards'",
            [],
            |r| r.get(0),
        )
        .context("reading the run ledger")?;
    let shards = if has_shards { "shards" } else { "NULL" };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT run_id, {shards} FROM runs WHERE status = 'completed' ORDER BY finished_at, run_id"
        ))
        .context("reading the run ledger")?;
    let runs: Vec<(String, Option<u32>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<duckdb::Result<_>>()
        .context("reading the run ledger")?;
    Ok(runs
        .into_iter()
        .filter(|(id, shards)| {
            DATA_TABLES
                .iter()
                .all(|(_, file)| ws.run_files(id, file, *shards).iter().all(|f| f.is_file()))
        })
        .collect())
}

/// (Re)defines the three data views over the published runs' stage files, by absolute path: in
/// the database, or with `temp` as the session's own views, which take precedence over the
/// database's (a read-only session cannot redefine those).
pub fn define_views(conn: &Connection, ws: &Workspace, temp: bool) -> Result<()> {
    let runs = published_runs(conn, ws)?;
    let kind = if temp { "TEMP VIEW" } else { "VIEW" };
    for (view, file) in DATA_TABLES {
        if runs.is_empty() {
            if !temp {
                conn.execute_batch(&format!("DROP VIEW IF EXISTS {view}"))?;
            }
            continue;
        }
        // Files are listed, not globbed, and read without hive partitioning, so that a sharded
        // run's views have the columns of a plain one.
        let selects = runs
            .iter()
            .map(|(id, shards)| {
                let files = ws
                    .run_files(id, file, *shards)
                    .iter()
                    .map(|f| path_literal(f))
                    .collect::<Result<Vec<_>>>()?;
                Ok(format!(
                    "SELECT {} AS run_id, * FROM read_parquet([{}], hive_partitioning = false)",
                    literal(id),
                    files.join(", ")
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        conn.execute_batch(&format!(
            "CREATE OR REPLACE {kind} {view} AS\n{}",
            selects.join("\nUNION ALL\n")
        ))
        .map_err(db_error)
        .with_context(|| format!("defining view {view}"))?;
    }
    Ok(())
}

/// Publishes a run whose stage files are in place: its ledger row replaces any earlier row of the
/// same run id, and the views are redefined to include it, in one transaction.
pub fn publish(conn: &mut Connection, run: &RunRecord, ws: &Workspace) -> Result<()> {
    let tx = conn
        .transaction()
        .context("starting a database transaction")?;
    ensure_runs(&tx)?;
    migrate_tables(&tx, ws)?;
    tx.execute("DELETE FROM runs WHERE run_id = ?", params![run.run_id])
        .context("replacing the run in runs")?;
    // The run finishes when it is published: stamped just before the commit.
    tx.execute(
        "INSERT INTO runs (run_id, started_at, finished_at, as_of, inputs, input_fingerprint,
                           rows_in, rows_clean, rows_quarantined, devices, blind_devices, status,
                           config, skipped_inputs, shards)
         VALUES (?, make_timestamp(?), make_timestamp(?), make_timestamp(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            run.run_id,
            run.started_at_us,
            crate::support::now_us(),
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
            run.shards,
        ],
    )
    .context("recording the run in runs")?;
    define_views(&tx, ws, false)?;
    tx.commit()
        .map_err(db_error)
        .context("committing the run to the database")?;
    let runs = published_runs(conn, ws)?;
    sync_dataset(ws, &runs)
}

/// The file name of each part in the dataset.
const DATASET_PART: &str = "part-0.parquet";

/// Brings `dataset/` in line with the published runs: for each data table and run, the folder
/// `dataset/<table>/run_id=<id>/shard=<k>/` holds a hard link to the run's stage file (shard 0 for
/// a plain run), so Spark, Trino, polars or DuckDB read every run as one hive-partitioned table
/// without Sentinel, and no byte is stored twice. A run's folder is built aside and renamed into
/// place; folders of runs no longer published go. Safe to repeat; called by every writer that
/// changes the ledger.
pub fn sync_dataset(ws: &Workspace, runs: &[(String, Option<u32>)]) -> Result<()> {
    for (table, file) in DATA_TABLES {
        let root = ws.dataset_root().join(table);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        for (id, shards) in runs {
            let sources = ws.run_files(id, file, *shards);
            let dest = root.join(format!("run_id={id}"));
            let part = |k: usize| dest.join(format!("shard={k}")).join(DATASET_PART);
            let current = sources
                .iter()
                .enumerate()
                .all(|(k, src)| same_inode(src, &part(k)))
                && crate::recover::shard::shard_folders(&dest).len() == sources.len();
            if current {
                continue;
            }
            let tmp = root.join(format!(".run_id={id}.tmp"));
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp)
                    .with_context(|| format!("removing {}", tmp.display()))?;
            }
            for (k, src) in sources.iter().enumerate() {
                let dir = tmp.join(format!("shard={k}"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let link = dir.join(DATASET_PART);
                // A file system without hard links gets a copy.
                std::fs::hard_link(src, &link)
                    .or_else(|_| std::fs::copy(src, &link).map(|_| ()))
                    .with_context(|| {
                        format!("linking {} into {}", src.display(), link.display())
                    })?;
            }
            if dest.exists() {
                std::fs::remove_dir_all(&dest)
                    .with_context(|| format!("removing {}", dest.display()))?;
            }
            std::fs::rename(&tmp, &dest)
                .with_context(|| format!("renaming into place {}", dest.display()))?;
        }
        for entry in std::fs::read_dir(&root)
            .with_context(|| format!("listing {}", root.display()))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let published = name
                .strip_prefix("run_id=")
                .is_some_and(|id| runs.iter().any(|(r, _)| r == id));
            if !published {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Whether two paths name the same file (one is a hard link of the other).
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// What `prune` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PruneSummary {
    pub kept: Vec<String>,
    pub removed: Vec<String>,
}

/// Removes all but the `keep` runs that finished last (SPEC section 7): their ledger rows and the
/// views over their files in one transaction, then their stage folders, once no session is still
/// reading them. Stage folders that belong to no run (a recover killed before it published) go
/// too. Killed after the commit, the folders left behind go with the next prune.
pub fn prune(conn: &mut Connection, ws: &Workspace, keep: usize) -> Result<PruneSummary> {
    let tx = conn
        .transaction()
        .context("starting a database transaction")?;
    ensure_runs(&tx)?;
    migrate_tables(&tx, ws)?;
    let runs: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT run_id FROM runs ORDER BY finished_at DESC, run_id DESC")
            .context("reading the run ledger")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<duckdb::Result<_>>()
            .context("reading the run ledger")?
    };
    let (kept, removed) = runs.split_at(keep.min(runs.len()));
    for id in removed {
        tx.execute("DELETE FROM runs WHERE run_id = ?", params![id])
            .with_context(|| format!("removing run {id} from runs"))?;
    }
    define_views(&tx, ws, false)?;
    tx.commit()
        .map_err(db_error)
        .context("committing the pruned run ledger")?;

    // Sessions that started before the commit may still read the removed runs' files.
    let _readers = ws.readers_exclusive()?;
    for entry in std::fs::read_dir(ws.stage_root())
        .with_context(|| format!("listing {}", ws.stage_root().display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() || name.starts_with('.') || kept.contains(&name) {
            continue;
        }
        // Shards recovered but not merged yet (in no ledger row) are work in progress.
        if !runs.contains(&name)
            && crate::recover::shard::shard_folders(&entry.path())
                .iter()
                .any(|(_, d)| d.join(crate::recover::shard::SHARD_MANIFEST).is_file())
        {
            continue;
        }
        // Out of sight first: a prune killed while deleting leaves a dot-folder that the next
        // writer's sweep removes.
        let trash = ws.stage_root().join(format!(".pruned.{name}"));
        std::fs::rename(entry.path(), &trash)
            .with_context(|| format!("removing {}", entry.path().display()))?;
        std::fs::remove_dir_all(&trash).with_context(|| format!("removing {}", trash.display()))?;
    }
    // The dataset's links keep a removed run's bytes on disk until they go too.
    let published = published_runs(conn, ws)?;
    sync_dataset(ws, &published)?;
    Ok(PruneSummary {
        kept: kept.to_vec(),
        removed: removed.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use polars::prelude::{DataFrame, IntoColumn, NewChunkedArray, StringChunked};

    use super::*;

    /// `runs.finished_at` is the moment the run is published: stamped by `publish` itself,
    /// never before it began; and the views answer with the run's rows.
    #[test]
    fn finished_at_is_stamped_at_publication() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        std::fs::create_dir_all(ws.stage_dir("r1")).unwrap();
        for (_, file) in DATA_TABLES {
            let mut df = DataFrame::new(
                2,
                vec![
                    StringChunked::from_iter_values("device_id".into(), ["a", "b"].into_iter())
                        .into_column(),
                ],
            )
            .unwrap();
            crate::support::parquet::writer(
                std::fs::File::create(ws.stage_dir("r1").join(file)).unwrap(),
            )
            .finish(&mut df)
            .unwrap();
        }
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
            shards: None,
        };
        let mut conn = open(&ws.database(), 1).unwrap();
        let before = crate::support::now_us();
        publish(&mut conn, &run, &ws).unwrap();
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
            "finished_at {finished} before publication {before}"
        );
        assert!(finished <= crate::support::now_us());
        let rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM device_state WHERE run_id = 'r1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 2);
    }
}
