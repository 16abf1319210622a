//! `analyze` (SPEC section 8): the questions in `queries/*.sql`, compiled into the binary, run by
//! DuckDB against one run of the database, on a read-only connection.
//!
//! A query sees the run and its thresholds through the temporary table `params` (one row:
//! run_id, as_of, finished_at, halt_failure_rate, gate_min_devices, min_cohort), filled with bound
//! parameters from the run's recorded configuration, and the macros `wilson_low(k, n)` and
//! `wilson_high(k, n)`, the 95% Wilson score interval of k failures in n devices. A user's own
//! `.sql` file sees the same, and can neither write nor read outside the runs' data: the
//! connection is read-only, file access is confined to `stage/` (the views read the runs' Parquet
//! files there), the configuration is locked, and only a single query statement may run
//! ([`Session::query_user`]), so `COPY … TO` cannot overwrite a stage file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use duckdb::types::{TimeUnit, Value};
use duckdb::{AccessMode, Connection, params};
use serde::Serialize;

use crate::config::Config;
use crate::schema;
use crate::warehouse::{self, db_error};
use crate::workspace::{ReadersLock, Workspace};

/// One question: its name (the file name without `.sql`) and its SQL.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! query {
    ($name:literal) => {
        Query {
            name: $name,
            sql: include_str!(concat!("../queries/", $name, ".sql")),
        }
    };
}

/// The built-in questions, in the order `analyze` prints them.
pub const QUERIES: [Query; 9] = [
    query!("region_failure_rank"),
    query!("cohort_bottlenecks"),
    query!("gateway_hotspots"),
    query!("error_mix"),
    query!("rollout_gate"),
    query!("state_matrix"),
    query!("recovery_roi"),
    query!("run_trend"),
    query!("triage_summary"),
];

/// A built-in question by name.
pub fn builtin(name: &str) -> Option<Query> {
    QUERIES.iter().copied().find(|q| q.name == name)
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The run a session analyzes.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub run_id: String,
    pub as_of: String,
    pub finished_at: String,
    #[serde(skip)]
    pub config: Config,
}

/// A read-only session on the database with `params` and the Wilson macros in place.
pub struct Session {
    conn: Connection,
    pub run: Run,
    _readers: Option<ReadersLock>,
}

/// One cell of a result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Cell {
    /// The cell as text: empty for null, floats in the shortest form that reads back the same.
    pub fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => schema::format_float(*f),
            Cell::Text(s) => s.clone(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// The result of one query.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The index of a column, or an error naming the query.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("query {} has no column {name}", self.name))
    }

    /// The rows as a JSON array of objects keyed by column name, keys in column order (serde_json's
    /// map would sort them), one object per line.
    pub fn to_json(&self) -> String {
        let keys: Vec<String> = self
            .columns
            .iter()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .collect();
        let objects: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let fields: Vec<String> = keys
                    .iter()
                    .zip(row)
                    .map(|(k, cell)| {
                        format!("{k}: {}", serde_json::to_string(cell).unwrap_or_default())
                    })
                    .collect();
                format!("{{{}}}", fields.join(", "))
            })
            .collect();
        if objects.is_empty() {
            "[]".to_string()
        } else {
            format!("[\n  {}\n]", objects.join(",\n  "))
        }
    }
}

impl Session {
    /// Opens the database read-only and selects the run: `run_id`, or the run finished last.
    /// The session defines its own views over the runs' stage files where the work directory is
    /// now, and may read files in `stage/` and nowhere else.
    pub fn open(ws: &Workspace, run_id: Option<&str>, threads: usize) -> Result<Session> {
        let db = &ws.database();
        if !db.is_file() {
            bail!(
                "no database at {} (run `sentinel recover` or `sentinel run` first)",
                db.display()
            );
        }
        let config = duckdb::Config::default()
            .access_mode(AccessMode::ReadOnly)
            .and_then(|c| c.threads(threads as i64))
            .and_then(|c| c.enable_autoload_extension(false))
            .with_context(|| format!("configuring DuckDB for {}", db.display()))?;
        let conn = Connection::open_with_flags(db, config)
            .map_err(db_error)
            .map_err(|e| {
                if e.to_string().contains("lock") {
                    e.context(
                        "another sentinel process (recover or run) is writing the database; \
                         try again when it has finished",
                    )
                } else {
                    e
                }
            })
            .with_context(|| format!("opening database {} read-only", db.display()))?;
        // Held while the session lives: prune waits for it before deleting a run's files.
        let readers = ws.read_lock()?;
        let run = select_run(&conn, db, run_id)?;
        // File access is confined to the stage folder (the views read it), then the views are
        // defined over the work directory's current location.
        let stage = std::path::absolute(ws.stage_root())
            .with_context(|| format!("resolving {}", ws.stage_root().display()))?;
        conn.execute_batch(&format!(
            "SET allowed_directories = ['{}/']; SET enable_external_access = false;",
            stage.to_string_lossy().replace('\'', "''")
        ))
        .map_err(db_error)
        .context("confining the session to the stage folder")?;
        warehouse::define_views(&conn, ws, true)?;
        conn.execute_batch(&format!(
            "CREATE TEMP MACRO wilson_low(k, n) AS
                 CASE WHEN n <= 0 THEN NULL
                      WHEN k <= 0 THEN 0.0
                      ELSE greatest(0.0,
                     (k / n + {z2} / (2 * n) - {z} * sqrt((k / n) * (1 - k / n) / n + {z2} / (4 * n * n)))
                     / (1 + {z2} / n)) END;
             CREATE TEMP MACRO wilson_high(k, n) AS
                 CASE WHEN n <= 0 THEN NULL
                      WHEN k >= n THEN 1.0
                      ELSE least(1.0,
                     (k / n + {z2} / (2 * n) + {z} * sqrt((k / n) * (1 - k / n) / n + {z2} / (4 * n * n)))
                     / (1 + {z2} / n)) END;
             CREATE TEMP TABLE params (
                 run_id VARCHAR, as_of TIMESTAMP, finished_at TIMESTAMP,
                 halt_failure_rate DOUBLE, gate_min_devices BIGINT, min_cohort BIGINT);",
            z = Z95,
            z2 = Z95 * Z95,
        ))
        .context("preparing the analysis session")?;
        conn.execute(
            "INSERT INTO params
             SELECT run_id, as_of, finished_at, ?, ?, ? FROM runs WHERE run_id = ?",
            params![
                run.config.gate.halt_failure_rate,
                run.config.gate.gate_min_devices,
                run.config.gate.min_cohort,
                run.run_id,
            ],
        )
        .context("binding the run's parameters")?;
        conn.execute_batch("SET lock_configuration = true;")
            .context("locking the session's configuration")?;
        Ok(Session {
            conn,
            run,
            _readers: readers,
        })
    }

    /// Runs a user's query. Only a query may run: the text is placed inside `SELECT * FROM (…)`,
    /// which only a single query statement (SELECT, WITH, FROM, VALUES, DESCRIBE, SUMMARIZE, SHOW)
    /// survives, so a COPY, ATTACH, SET, CREATE, INSERT or several statements are refused before
    /// anything runs. The session also cannot write the database (read-only) nor touch files
    /// outside `stage/`; the wrapper is what keeps `COPY … TO` from overwriting a stage file.
    pub fn query_user(&self, name: &str, sql: &str) -> Result<Table> {
        let body = sql.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        let wrapped = format!("SELECT * FROM (\n{body}\n)");
        // The binding's `prepare` executes every statement but the last, so more than one
        // statement (a comment closing the parenthesis early, then a COPY) is refused before it.
        let statements = statement_count(&wrapped)?;
        if statements > 1 {
            bail!(
                "query {name} holds {statements} statements: only one query may run (SELECT, \
                 WITH, FROM, VALUES, DESCRIBE, SUMMARIZE or SHOW)"
            );
        }
        self.query(name, &wrapped).map_err(|e| {
            if format!("{e:#}").contains("Parser Error") {
                e.context(
                    "only one query may run (SELECT, WITH, FROM, VALUES, DESCRIBE, SUMMARIZE \
                         or SHOW); statements that change anything are refused",
                )
            } else {
                e
            }
        })
    }

    /// Runs one query; `name` labels the result and the errors.
    pub fn query(&self, name: &str, sql: &str) -> Result<Table> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(db_error)
            .with_context(|| format!("query {name} cannot run"))?;
        let mut rows = stmt
            .query([])
            .map_err(db_error)
            .with_context(|| format!("running query {name}"))?;
        let columns = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
        let mut out = Vec::new();
        while let Some(row) = rows
            .next()
            .with_context(|| format!("running query {name}"))?
        {
            let mut cells = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let value: Value = row
                    .get(i)
                    .with_context(|| format!("reading column {column} of query {name}"))?;
                cells.push(cell(value));
            }
            out.push(cells);
        }
        Ok(Table {
            name: name.to_string(),
            columns,
            rows: out,
        })
    }

    /// Runs a built-in question.
    pub fn builtin(&self, query: Query) -> Result<Table> {
        self.query(query.name, query.sql)
    }
}

/// How many statements DuckDB's own parser finds in `sql` (0 when it does not parse), counted on a
/// scratch in-memory database: nothing is executed.
///
/// `unsafe` here, and only here: the binding offers no way to split statements without executing
/// all but the last. The calls follow the C API's contract: every handle is created before use and
/// destroyed once, on every path.
#[allow(unsafe_code)]
fn statement_count(sql: &str) -> Result<usize> {
    use duckdb::ffi;
    use std::ptr::null_mut;
    let text = std::ffi::CString::new(sql).context("a query holds a NUL byte")?;
    let mut db: ffi::duckdb_database = null_mut();
    // SAFETY: a null path opens an in-memory database; `db` is an out-pointer we own.
    if unsafe { ffi::duckdb_open(std::ptr::null(), &mut db) } != ffi::duckdb_state_DuckDBSuccess {
        bail!("opening a scratch DuckDB to parse a query");
    }
    let mut con: ffi::duckdb_connection = null_mut();
    // SAFETY: `db` is open; `con` is an out-pointer we own.
    let connected = unsafe { ffi::duckdb_connect(db, &mut con) };
    if connected != ffi::duckdb_state_DuckDBSuccess {
        // SAFETY: `db` was opened above and is closed once.
        unsafe { ffi::duckdb_close(&mut db) };
        bail!("connecting to a scratch DuckDB to parse a query");
    }
    let mut extracted: ffi::duckdb_extracted_statements = null_mut();
    // SAFETY: `con` is connected, `text` is a NUL-terminated string that outlives the call.
    let n = unsafe { ffi::duckdb_extract_statements(con, text.as_ptr(), &mut extracted) };
    // SAFETY: each handle was created above and is destroyed exactly once.
    unsafe {
        ffi::duckdb_destroy_extracted(&mut extracted);
        ffi::duckdb_disconnect(&mut con);
        ffi::duckdb_close(&mut db);
    }
    Ok(n as usize)
}

/// Finds the run to analyze and its recorded configuration.
fn select_run(conn: &Connection, db: &Path, run_id: Option<&str>) -> Result<Run> {
    let has_runs: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'",
            [],
            |r| r.get(0),
        )
        .with_context(|| format!("reading the run ledger of {}", db.display()))?;
    if has_runs == 0 {
        bail!(
            "database {} holds no runs (run `sentinel recover` first)",
            db.display()
        );
    }
    let sql = "SELECT run_id, epoch_us(as_of), epoch_us(finished_at), config FROM runs
               WHERE status = 'completed' AND (? IS NULL OR run_id = ?)
               ORDER BY finished_at DESC, run_id DESC LIMIT 1";
    let mut stmt = conn.prepare(sql).context("reading the run ledger")?;
    let mut rows = stmt
        .query(params![run_id, run_id])
        .context("reading the run ledger")?;
    let Some(row) = rows.next().context("reading the run ledger")? else {
        match run_id {
            Some(id) => bail!(
                "run {id:?} does not exist in {} (`sentinel analyze --query run_trend` lists the runs)",
                db.display()
            ),
            None => bail!(
                "database {} holds no completed run (run `sentinel recover` first)",
                db.display()
            ),
        }
    };
    let run_id: String = row.get(0)?;
    let as_of: i64 = row.get(1)?;
    let finished_at: i64 = row.get(2)?;
    let config_toml: String = row.get(3)?;
    let config = Config::from_toml(&config_toml)
        .with_context(|| format!("reading the configuration recorded for run {run_id}"))?;
    Ok(Run {
        run_id,
        as_of: timestamp_text(as_of),
        finished_at: timestamp_text(finished_at),
        config,
    })
}

/// A DuckDB value as a cell: numbers stay numbers, times become RFC 3339 text, lists JSON text.
fn cell(value: Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::Boolean(b) => Cell::Bool(b),
        Value::TinyInt(i) => Cell::Int(i.into()),
        Value::SmallInt(i) => Cell::Int(i.into()),
        Value::Int(i) => Cell::Int(i.into()),
        Value::BigInt(i) => Cell::Int(i),
        Value::UTinyInt(i) => Cell::Int(i.into()),
        Value::USmallInt(i) => Cell::Int(i.into()),
        Value::UInt(i) => Cell::Int(i.into()),
        Value::UBigInt(i) => i64::try_from(i).map_or(Cell::Float(i as f64), Cell::Int),
        Value::HugeInt(i) => i64::try_from(i).map_or(Cell::Float(i as f64), Cell::Int),
        Value::UHugeInt(i) => i64::try_from(i).map_or(Cell::Float(i as f64), Cell::Int),
        Value::Float(f) => float(f.into()),
        Value::Double(f) => float(f),
        Value::Decimal(d) => d.to_string().parse().map_or(Cell::Null, float),
        Value::Timestamp(unit, t) => {
            let us = match unit {
                TimeUnit::Second => t.saturating_mul(1_000_000),
                TimeUnit::Millisecond => t.saturating_mul(1_000),
                TimeUnit::Microsecond => t,
                TimeUnit::Nanosecond => t / 1_000,
            };
            Cell::Text(timestamp_text(us))
        }
        Value::Date32(days) => {
            let (y, m, d) = schema::civil_from_days(days.into());
            Cell::Text(format!("{y:04}-{m:02}-{d:02}"))
        }
        Value::Text(s) => Cell::Text(s),
        Value::List(items) | Value::Array(items) => Cell::Text(
            serde_json::Value::Array(
                items
                    .into_iter()
                    .map(|v| serde_json::to_value(cell(v)).unwrap_or_default())
                    .collect(),
            )
            .to_string(),
        ),
        other => Cell::Text(format!("{other:?}")),
    }
}

/// RFC 3339 in UTC; whole seconds read best without a fraction of zeros.
pub fn timestamp_text(us: i64) -> String {
    schema::format_timestamp(us).replace(".000000Z", "Z")
}

/// NaN and infinities have no JSON spelling: they become null.
fn float(f: f64) -> Cell {
    if f.is_finite() {
        Cell::Float(f)
    } else {
        Cell::Null
    }
}

/// How `analyze` prints results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Writes tables in the chosen format. JSON: one array of objects for one table, an object of
/// arrays keyed by query name for several.
pub fn render(tables: &[Table], format: Format) -> String {
    match format {
        Format::Json => {
            if let [one] = tables {
                format!("{}\n", one.to_json())
            } else {
                let parts: Vec<String> = tables
                    .iter()
                    .map(|t| {
                        let name = serde_json::to_string(&t.name).unwrap_or_default();
                        format!("{name}: {}", t.to_json())
                    })
                    .collect();
                format!("{{\n{}\n}}\n", parts.join(",\n"))
            }
        }
        Format::Csv => {
            let many = tables.len() > 1;
            tables
                .iter()
                .map(|t| {
                    let mut s = String::new();
                    if many {
                        s.push_str(&format!("# {}\n", t.name));
                    }
                    s.push_str(&csv_line(
                        t.columns
                            .iter()
                            .map(|c| crate::support::neutralize(c).into_owned()),
                    ));
                    for row in &t.rows {
                        s.push_str(&csv_line(row.iter().map(|c| match c {
                            Cell::Text(text) => crate::support::neutralize(text).into_owned(),
                            other => other.text(),
                        })));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Format::Table => tables
            .iter()
            .map(|t| {
                let mut s = format!("== {} ({} rows)\n", t.name, t.rows.len());
                s.push_str(&aligned(t));
                s
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// One CSV record, quoted where needed (RFC 4180).
fn csv_line(cells: impl Iterator<Item = String>) -> String {
    let mut line = cells
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// An aligned text table: numbers to the right, text to the left, control characters escaped.
fn aligned(t: &Table) -> String {
    let shown: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.text().escape_debug().to_string())
                .collect()
        })
        .collect();
    let width = |i: usize| {
        shown
            .iter()
            .map(|r| r[i].chars().count())
            .chain([t.columns[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..t.columns.len()).map(width).collect();
    let numeric: Vec<bool> = (0..t.columns.len())
        .map(|i| {
            t.rows
                .iter()
                .all(|r| matches!(r[i], Cell::Int(_) | Cell::Float(_) | Cell::Null))
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric[i] {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut s = line(&t.columns);
    s.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for r in &shown {
        s.push_str(&line(r));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_file_opens_with_its_question_and_columns() {
        for q in QUERIES {
            assert!(q.sql.starts_with("-- Question: "), "{}", q.name);
            assert!(q.sql.contains("-- Columns: "), "{}", q.name);
        }
    }

    #[test]
    fn csv_quotes_separators_and_quotes() {
        assert_eq!(
            csv_line(["a,b".to_string(), "say \"hi\"".into(), "x".into()].into_iter()),
            "\"a,b\",\"say \"\"hi\"\"\",x\n"
        );
    }
}
