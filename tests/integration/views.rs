//! The data views over the runs' stage files (SPEC section 7): they answer from any working
//! directory and after the work directory is moved, user SQL reads nothing but the runs' data and
//! writes nothing, `prune` removes runs' rows and files together, and a database of the earlier
//! layout (data tables as tables) keeps its history.

use std::path::{Path, PathBuf};

use std::process::Command;

use crate::util::{AS_OF, Workdir};

/// `sentinel --workdir <root>/<workdir> <args>`, run from the test's temp dir.
fn sentinel_in(w: &Workdir, workdir: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .current_dir(w.root())
        .arg("--workdir")
        .arg(w.path(workdir))
        .args(args)
        .output()
        .unwrap()
}

fn fixture(w: &Workdir) -> PathBuf {
    let input = w.path("fleet.csv");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet.csv"),
        &input,
    )
    .unwrap();
    input
}

fn recover_at(w: &Workdir, input: &Path, as_of: &str) -> String {
    let out = w.ok(&[
        "--json",
        "recover",
        "--input",
        input.to_str().unwrap(),
        "--as-of",
        as_of,
    ]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    s["run_id"].as_str().unwrap().to_string()
}

/// Counts through the stock DuckDB library, not Sentinel's session.
fn count(db: &Path, sql: &str) -> duckdb::Result<i64> {
    let conn = duckdb::Connection::open(db)?;
    conn.query_row(sql, [], |r| r.get(0))
}

fn stage_runs(out: &Path) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(out.join("stage"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    runs.sort();
    runs
}

#[test]
fn the_views_answer_from_anywhere_and_after_the_work_directory_moves() {
    let w = Workdir::new();
    let input = fixture(&w);
    let run = recover_at(&w, &input, AS_OF);
    // The test runs with the crate as its working directory, not the work directory.
    let db = w.path("out/sentinel.duckdb");
    assert_eq!(
        count(&db, "SELECT count(*) FROM telemetry_clean").unwrap(),
        23
    );
    assert_eq!(count(&db, "SELECT count(*) FROM triage_queue").unwrap(), 11);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM device_state WHERE run_id = '{run}'")
        )
        .unwrap(),
        22
    );
    assert!(w.path(&format!("out/stage/{run}/clean.parquet")).is_file());

    std::fs::rename(w.path("out"), w.path("moved")).unwrap();
    let db = w.path("moved/sentinel.duckdb");
    assert!(
        count(&db, "SELECT count(*) FROM telemetry_clean").is_err(),
        "the old paths are gone"
    );
    // Sentinel answers at once: its sessions define their views where the directory is now.
    let out = sentinel_in(
        &w,
        "moved",
        &["analyze", "--query", "state_matrix", "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices: i64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["devices"].as_i64().unwrap())
        .sum();
    assert_eq!(devices, 22);
    // The next writer repairs the database's own views for every other reader.
    let out = sentinel_in(&w, "moved", &["prune", "--keep", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM telemetry_clean").unwrap(),
        23
    );
}

fn digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            // Lock files (stage/.readers.lock) are not stage data.
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn user_sql_reads_the_runs_data_and_nothing_else_and_writes_nothing() {
    let w = Workdir::new();
    let input = fixture(&w);
    let run = recover_at(&w, &input, AS_OF);
    let clean = std::fs::canonicalize(w.path(&format!("out/stage/{run}/clean.parquet"))).unwrap();
    let clean = clean.display().to_string();
    let raw = std::fs::canonicalize(&input).unwrap().display().to_string();
    let before = digest(&w.path("out/stage"));
    let db_before = std::fs::read(w.path("out/sentinel.duckdb")).unwrap();

    // Reading the runs' own files directly is allowed.
    std::fs::write(
        w.path("direct.sql"),
        format!("SELECT count(*) AS n FROM read_parquet('{clean}');"),
    )
    .unwrap();
    let out = w.ok(&["analyze", "--query", "direct.sql", "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "n\n23");

    let hostile = [
        (
            "copy_over.sql",
            format!("COPY (SELECT 1 AS x) TO '{clean}' (FORMAT parquet)"),
        ),
        (
            "copy_view.sql",
            format!("COPY device_state TO '{clean}' (FORMAT parquet)"),
        ),
        (
            "copy_then.sql",
            format!("SELECT 1; COPY (SELECT 2) TO '{clean}'"),
        ),
        (
            "comment.sql",
            format!("SELECT 1 -- )\n); COPY (SELECT 2) TO '{clean}'; --"),
        ),
        (
            "sneaky.sql",
            format!(
                "SELECT 1 -- )\n); COPY (SELECT 2 AS x) TO '{clean}' (FORMAT parquet); SELECT (1"
            ),
        ),
        ("outside.sql", format!("SELECT * FROM read_csv('{raw}')")),
        (
            "passwd.sql",
            "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        ),
        ("glob.sql", "SELECT * FROM glob('/*')".to_string()),
        ("attach.sql", "ATTACH 'elsewhere.duckdb' AS e".to_string()),
        ("export.sql", "EXPORT DATABASE 'dump'".to_string()),
        ("install.sql", "INSTALL httpfs".to_string()),
        ("set.sql", "SET enable_external_access = true".to_string()),
        ("temp.sql", "CREATE TEMP TABLE t AS SELECT 1".to_string()),
        ("delete.sql", "DELETE FROM runs".to_string()),
        (
            "pragma.sql",
            "PRAGMA enable_checkpoint_on_shutdown".to_string(),
        ),
    ];
    for (file, sql) in &hostile {
        std::fs::write(w.path(file), sql).unwrap();
        let err = w.fails(&["analyze", "--query", file], 1);
        assert!(err.contains(file), "{file}: {err}");
    }
    assert_eq!(digest(&w.path("out/stage")), before, "a stage file changed");
    assert_eq!(
        std::fs::read(w.path("out/sentinel.duckdb")).unwrap(),
        db_before
    );
    for leak in ["elsewhere.duckdb", "dump"] {
        assert!(
            !w.path(leak).exists() && !w.path("out").join(leak).exists(),
            "{leak}"
        );
    }
}

#[test]
fn prune_keeps_the_latest_runs_and_removes_the_others_rows_and_files_together() {
    let w = Workdir::new();
    let input = fixture(&w);
    let runs: Vec<String> = [
        "2026-11-25T12:00:00Z",
        "2026-11-26T12:00:00Z",
        "2026-11-27T12:00:00Z",
    ]
    .iter()
    .map(|t| recover_at(&w, &input, t))
    .collect();
    std::fs::create_dir(w.path("out/stage/0000orphan")).unwrap();
    let db = w.path("out/sentinel.duckdb");
    assert_eq!(
        count(&db, "SELECT count(DISTINCT run_id) FROM device_state").unwrap(),
        3
    );

    let out = w.ok(&["--json", "prune", "--keep", "2"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["removed"], serde_json::json!([runs[0]]));
    assert_eq!(s["kept"], serde_json::json!([runs[2], runs[1]]));
    let mut kept = vec![runs[1].clone(), runs[2].clone()];
    kept.sort();
    assert_eq!(
        stage_runs(&w.path("out")),
        kept,
        "the orphan folder goes too"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM runs").unwrap(), 2);
    assert_eq!(
        count(&db, "SELECT count(DISTINCT run_id) FROM telemetry_clean").unwrap(),
        2
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM device_state WHERE run_id = '{}'",
                runs[0]
            )
        )
        .unwrap(),
        0
    );
    // run_trend still answers over the two runs left.
    let out = w.ok(&["analyze", "--query", "run_trend", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["run_id"] != runs[0].as_str())
    );

    w.fails(&["prune", "--keep", "0"], 2);
    w.fails(&["prune"], 2);
    let empty = Workdir::new();
    let err = empty.fails(&["prune", "--keep", "1"], 1);
    assert!(err.contains("no database"), "{err}");
}

/// A database of the earlier layout held the data as tables: the next writer moves each run's
/// rows into its stage folder and puts views in their place, keeping every run.
#[test]
fn a_database_with_data_tables_is_migrated_to_views() {
    let w = Workdir::new();
    let input = fixture(&w);
    let run = recover_at(&w, &input, AS_OF);
    let db = w.path("out/sentinel.duckdb");
    {
        let conn = duckdb::Connection::open(&db).unwrap();
        for t in ["telemetry_clean", "triage_queue", "device_state"] {
            conn.execute_batch(&format!(
                "CREATE TABLE {t}_old AS SELECT * FROM {t}; DROP VIEW {t}; ALTER TABLE {t}_old RENAME TO {t};"
            ))
            .unwrap();
        }
    }
    std::fs::remove_dir_all(w.path(&format!("out/stage/{run}"))).unwrap();
    w.ok(&["--quiet", "prune", "--keep", "10"]);
    for (file, view, n) in [
        ("clean.parquet", "telemetry_clean", 23),
        ("triage.parquet", "triage_queue", 11),
        ("device_state.parquet", "device_state", 22),
    ] {
        assert!(
            w.path(&format!("out/stage/{run}/{file}")).is_file(),
            "{file}"
        );
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM {view}")).unwrap(),
            n,
            "{view}"
        );
    }
    let kind: String = duckdb::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'device_state'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "VIEW");
}
