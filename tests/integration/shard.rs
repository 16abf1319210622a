//! Scale-out by device: `partition`, `recover --shard K/N` and `merge`, run as separate
//! processes, give exactly what a plain `recover` of the same inputs gives (database contents,
//! stage rows, recovery plan, summary and report numbers), duplicates and conflicts across input
//! files included; a killed shard re-runs to the same result; a merge that lacks a shard, or
//! holds one of another run, changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sentinel::config::Config;
use sentinel::recover::shard::{Shard, merge, shard_of};
use sentinel::recover::{RecoverOptions, recover};
use sentinel::workspace::Workspace;

use crate::util::{AS_OF, Workdir, as_of_us, read_parquet};

/// `sentinel --workdir <workdir> <args>`.
fn sentinel(workdir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .arg("--workdir")
        .arg(workdir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(workdir: &Path, args: &[&str]) -> String {
    let out = sentinel(workdir, args);
    assert!(
        out.status.success(),
        "sentinel {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(workdir: &Path, args: &[&str]) -> String {
    let out = sentinel(workdir, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "sentinel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Two inputs that relate across files: a chaos file and a second copy of it, so that every row
/// of the copy is a DUPLICATE of the first file's row, or, where chaos made conflicting reports,
/// a CONFLICT with rows of both files.
fn inputs(w: &Workdir) -> Vec<PathBuf> {
    w.generate(3000, 11);
    w.ok(&["--quiet", "chaos", "--rate", "0.3", "--seed", "5"]);
    let chaos = w.path("chaos.parquet");
    std::fs::rename(w.path("out/raw/telemetry.chaos.parquet"), &chaos).unwrap();
    let copy = w.path("chaos-again.parquet");
    std::fs::copy(&chaos, &copy).unwrap();
    vec![chaos, copy]
}

fn input_args(inputs: &[PathBuf]) -> Vec<String> {
    inputs
        .iter()
        .flat_map(|p| ["--input".to_string(), p.display().to_string()])
        .collect()
}

/// Everything a run leaves that must not depend on how it was computed, in a comparable form.
#[derive(Debug, PartialEq)]
struct Outcome {
    clean: Vec<String>,
    triage: Vec<String>,
    device_state: Vec<String>,
    runs: Vec<String>,
    plan: Vec<String>,
    report: serde_json::Value,
}

/// The rows of a query, each as DuckDB's text of the whole row, sorted.
fn rows(db: &duckdb::Connection, sql: &str) -> Vec<String> {
    let mut stmt = db
        .prepare(&format!("SELECT t::VARCHAR FROM ({sql}) AS t ORDER BY 1"))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<duckdb::Result<_>>()
        .unwrap()
}

fn outcome(workdir: &Path) -> Outcome {
    ok(workdir, &["--quiet", "report"]);
    let db = duckdb::Connection::open_with_flags(
        workdir.join("sentinel.duckdb"),
        duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .unwrap(),
    )
    .unwrap();
    let run_id: String = db
        .query_row("SELECT run_id FROM runs", [], |r| r.get(0))
        .unwrap();
    let plan = std::fs::read_to_string(
        workdir
            .join("stage")
            .join(&run_id)
            .join("recovery_plan.csv"),
    )
    .unwrap();
    let mut lines = plan.lines();
    let header = lines.next().unwrap().to_string();
    let mut plan: Vec<String> = lines.map(str::to_string).collect();
    plan.sort();
    plan.insert(0, header);
    let report = workdir.join("reports").join(&run_id).join("summary.json");
    Outcome {
        clean: rows(&db, "SELECT * FROM telemetry_clean"),
        triage: rows(&db, "SELECT * FROM triage_queue"),
        device_state: rows(&db, "SELECT * FROM device_state"),
        runs: rows(
            &db,
            "SELECT * EXCLUDE (started_at, finished_at, shards) FROM runs",
        ),
        plan,
        report: serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap(),
    }
}

/// recover's or merge's --json summary without what depends on the process (paths, times).
fn numbers(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    for key in ["outputs", "timings", "shard", "shards"] {
        v.as_object_mut().unwrap().remove(key);
    }
    v
}

#[test]
fn shards_as_separate_processes_equal_a_plain_recover() {
    let w = Workdir::new();
    let inputs = inputs(&w);
    let args = input_args(&inputs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let plain = w.path("plain");
    let mut recover = vec!["--json", "recover", "--as-of", AS_OF];
    recover.extend(&args);
    let plain_summary = numbers(&ok(&plain, &recover));
    let expected = outcome(&plain);
    // The inputs do relate across files.
    let reasons = &plain_summary["quarantined_by_reason"];
    assert!(reasons["DUPLICATE"].as_u64().unwrap() > 2000, "{reasons}");
    assert!(reasons["CONFLICT"].as_u64().unwrap() > 200, "{reasons}");

    for n in [1u32, 3, 8] {
        let work = w.path(&format!("sharded-{n}"));
        let shards = n.to_string();
        let mut partition = vec![
            "--quiet",
            "partition",
            "--shards",
            &shards,
            "--as-of",
            AS_OF,
        ];
        partition.extend(&args);
        ok(&work, &partition);
        let dataset = work.join("partition");
        let dataset = dataset.to_str().unwrap();
        // Any order: the last shard first.
        for k in (0..n).rev() {
            let shard = format!("{k}/{n}");
            let out = ok(
                &work,
                &["--json", "recover", "--input", dataset, "--shard", &shard],
            );
            assert!(out.contains(&format!("\"shard\":\"{shard}\"")), "{out}");
        }
        assert!(
            !work.join("sentinel.duckdb").exists(),
            "a shard wrote the database"
        );
        let merged = numbers(&ok(&work, &["--json", "merge"]));
        assert_eq!(merged, plain_summary, "{n} shards: the summary");
        assert_eq!(outcome(&work), expected, "{n} shards: the run's data");
    }

    // Shards of the unsplit inputs, each filtering its devices as it reads.
    let work = w.path("filtered");
    for k in 0..3 {
        let shard = format!("{k}/3");
        let mut recover = vec!["--quiet", "recover", "--as-of", AS_OF, "--shard", &shard];
        recover.extend(&args);
        ok(&work, &recover);
    }
    let merged = numbers(&ok(&work, &["--json", "merge"]));
    assert_eq!(merged, plain_summary, "filtered shards: the summary");
    assert_eq!(outcome(&work), expected, "filtered shards: the run's data");
}

#[test]
fn bucketed_shards_equal_the_bucketed_plain_run() {
    // In-process, with buckets of 700 rows: the split that filters a shard's rows and buckets
    // them at once is the one a 100M-row shard takes.
    let w = Workdir::new();
    let inputs = inputs(&w);
    let config = Config::default();
    let options = |shard| RecoverOptions {
        inputs: inputs.clone(),
        as_of_us: as_of_us(),
        bucket_rows: 700,
        // Buckets on disk, as at 100M rows.
        memory_rows: 0,
        skip_unknown: false,
        shard,
    };
    let plain = Workspace::new(w.path("plain"));
    let mut expected =
        serde_json::to_value(recover(&config, &options(None), &plain).unwrap()).unwrap();
    let sharded = Workspace::new(w.path("sharded"));
    for k in 0..3 {
        recover(
            &config,
            &options(Some(Shard { index: k, count: 3 })),
            &sharded,
        )
        .unwrap();
    }
    let mut merged = serde_json::to_value(merge(&sharded, None, 2).unwrap()).unwrap();
    for v in [&mut expected, &mut merged] {
        for key in ["outputs", "timings", "shard", "shards"] {
            v.as_object_mut().unwrap().remove(key);
        }
    }
    assert_eq!(merged, expected);
    assert_eq!(outcome(&w.path("sharded")), outcome(&w.path("plain")));
}

#[test]
fn partition_places_every_row_and_keeps_rows_without_an_id_in_shard_zero() {
    let w = Workdir::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet.csv");
    let inputs = inputs(&w);
    let work = w.path("out");
    let summary: serde_json::Value = serde_json::from_str(&ok(
        &work,
        &[
            "--json",
            "partition",
            "--shards",
            "5",
            "--input",
            inputs[0].to_str().unwrap(),
            "--input",
            fixture.to_str().unwrap(),
        ],
    ))
    .unwrap();
    let expected_rows = read_parquet(&inputs[0]).height()
        + std::fs::read_to_string(&fixture).unwrap().lines().count()
        - 1;
    assert_eq!(summary["rows_in"], expected_rows as u64);
    let per_shard: Vec<u64> = summary["rows_per_shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(per_shard.iter().sum::<u64>(), expected_rows as u64);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("partition/_partition.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["rows_per_shard"], summary["rows_per_shard"]);
    let mut no_id = 0;
    for (k, rows) in per_shard.iter().enumerate() {
        let part = read_parquet(&work.join(format!("partition/shard={k}/part-00000.parquet")));
        assert_eq!(part.height() as u64, *rows, "shard {k}");
        assert!(*rows > 0, "shard {k} is empty");
        let ids = part.column("device_id").unwrap().str().unwrap().clone();
        for id in ids.iter() {
            let valid = id.is_some_and(|i| sentinel::schema::is_valid_id(i.trim()));
            no_id += usize::from(!valid);
            assert_eq!(shard_of(id, 5), k as u32, "{id:?} in shard {k}");
            assert!(valid || k == 0, "{id:?} without a usable id in shard {k}");
        }
    }
    assert!(
        no_id > 10,
        "the chaos file has rows without a usable id: {no_id}"
    );

    // Partitioning again replaces the dataset; a folder that is not one is refused.
    ok(
        &work,
        &[
            "--quiet",
            "partition",
            "--shards",
            "2",
            "--input",
            inputs[1].to_str().unwrap(),
        ],
    );
    assert!(!work.join("partition/shard=4").exists());
    std::fs::create_dir_all(w.path("mine")).unwrap();
    std::fs::write(w.path("mine/notes.txt"), "mine").unwrap();
    let err = fails(
        &work,
        &[
            "partition",
            "--shards",
            "2",
            "--input",
            inputs[1].to_str().unwrap(),
            "--out",
            w.path("mine").to_str().unwrap(),
        ],
    );
    assert!(err.contains("is not a partition"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.path("mine/notes.txt")).unwrap(),
        "mine"
    );
}

/// Files under `dir` whose names start with a dot and end in `.tmp`: what a killed writer leaves.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            found.push(entry);
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_killed_shard_reruns_to_the_same_result_and_merge_refuses_what_is_not_a_whole_run() {
    let w = Workdir::new();
    let inputs = inputs(&w);
    let args = input_args(&inputs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plain = w.path("plain");
    let mut recover = vec!["--quiet", "recover", "--as-of", AS_OF];
    recover.extend(&args);
    ok(&plain, &recover);
    let expected = outcome(&plain);

    let work = w.path("sharded");
    let mut partition = vec!["--quiet", "partition", "--shards", "3", "--as-of", AS_OF];
    partition.extend(&args);
    ok(&work, &partition);
    let dataset = work.join("partition");
    let dataset = dataset.to_str().unwrap();
    let shard = |k: u32| -> Vec<String> {
        [
            "--quiet",
            "recover",
            "--input",
            dataset,
            "--shard",
            &format!("{k}/3"),
        ]
        .map(String::from)
        .to_vec()
    };
    ok(
        &work,
        &shard(0).iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // A published run of other data, whose database must not change while merges fail.
    let mut other = vec!["--quiet", "recover", "--as-of", "2026-11-26T00:00:00Z"];
    other.extend(&args);
    ok(&work, &other);
    let db_rows = |dir: &Path| {
        let db = duckdb::Connection::open(dir.join("sentinel.duckdb")).unwrap();
        (
            rows(&db, "SELECT * EXCLUDE (finished_at) FROM runs"),
            rows(
                &db,
                "SELECT run_id, count(*) FROM device_state GROUP BY run_id",
            ),
        )
    };
    let before = db_rows(&work);

    // Shard 1 killed at several moments, then a merge that lacks shards 1 and 2.
    for delay_ms in [0, 20, 60, 150] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .arg("--workdir")
            .arg(&work)
            .args(shard(1))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let run_dir = walk(&work.join("stage"))
        .into_iter()
        .find(|p| p.ends_with("shard=0/manifest.json"))
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    // Whatever a killed shard left, no manifest unless its files were all in place.
    if run_dir.join("shard=1/manifest.json").exists() {
        std::fs::remove_dir_all(run_dir.join("shard=1")).unwrap();
    }
    let err = fails(&work, &["merge", "--run-id", &run_id]);
    assert!(
        err.contains("shards missing (shard 1, 2)") || err.contains("shard 1 has no manifest.json"),
        "{err}"
    );
    assert_eq!(
        db_rows(&work),
        before,
        "a failed merge changed the database"
    );

    // The re-run of the killed shard cleans what it left; shard 2 completes the run.
    ok(
        &work,
        &shard(1).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(temporaries(&run_dir.join("shard=1")), Vec::<PathBuf>::new());
    ok(
        &work,
        &shard(2).iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // A file changed after its shard finished is refused by name.
    let clean = run_dir.join("shard=2/clean.parquet");
    let bytes = std::fs::read(&clean).unwrap();
    std::fs::write(&clean, &bytes[..bytes.len() - 1]).unwrap();
    let err = fails(&work, &["merge", "--run-id", &run_id]);
    assert!(
        err.contains("shard=2/clean.parquet") && err.contains("manifest"),
        "{err}"
    );
    std::fs::write(&clean, &bytes).unwrap();

    // A shard's manifest in another shard's folder: a duplicated shard.
    let manifest1 = std::fs::read(run_dir.join("shard=1/manifest.json")).unwrap();
    let manifest2 = std::fs::read(run_dir.join("shard=2/manifest.json")).unwrap();
    std::fs::write(run_dir.join("shard=2/manifest.json"), &manifest1).unwrap();
    let err = fails(&work, &["merge", "--run-id", &run_id]);
    assert!(err.contains("shard 1 is duplicated"), "{err}");
    std::fs::write(run_dir.join("shard=2/manifest.json"), &manifest2).unwrap();

    // A shard of another run copied in.
    let text = String::from_utf8(manifest2.clone()).unwrap();
    std::fs::write(
        run_dir.join("shard=2/manifest.json"),
        text.replace(&run_id, "0123456789abcdef"),
    )
    .unwrap();
    let err = fails(&work, &["merge", "--run-id", &run_id]);
    assert!(err.contains("belongs to run 0123456789abcdef"), "{err}");
    std::fs::write(run_dir.join("shard=2/manifest.json"), &manifest2).unwrap();
    assert_eq!(
        db_rows(&work),
        before,
        "a failed merge changed the database"
    );

    ok(&work, &["--quiet", "merge", "--run-id", &run_id]);
    // The other run is still there; the merged one equals the plain one.
    let db = duckdb::Connection::open(work.join("sentinel.duckdb")).unwrap();
    assert_eq!(rows(&db, "SELECT run_id FROM runs").len(), 2);
    drop(db);
    ok(&work, &["--quiet", "prune", "--keep", "1"]);
    assert_eq!(outcome(&work), expected);
}

#[test]
fn shard_flags_are_checked() {
    let w = Workdir::new();
    let input = w.generate(50, 1);
    let input = input.to_str().unwrap();
    // Unsplit inputs need one as-of for every shard: a usage error.
    let out = w
        .cmd(&["recover", "--input", input, "--shard", "0/2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--as-of"));
    let out = w
        .cmd(&[
            "recover", "--input", input, "--shard", "2/2", "--as-of", AS_OF,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 <= K < N"));
    // A partition of 2 shards asked for one of 3.
    w.ok(&["--quiet", "partition", "--shards", "2", "--input", input]);
    let dataset = w.path("out/partition");
    let err = w.fails(
        &[
            "recover",
            "--input",
            dataset.to_str().unwrap(),
            "--shard",
            "0/3",
        ],
        1,
    );
    assert!(err.contains("holds 2 shards"), "{err}");
    // Nothing to merge.
    let err = w.fails(&["merge"], 1);
    assert!(err.contains("no shard outputs"), "{err}");
}

#[test]
fn the_dataset_is_every_published_run_hive_partitioned() {
    let w = Workdir::new();
    let inputs = inputs(&w);
    let args = input_args(&inputs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let work = w.path("out");
    // A plain run, then a sharded run of the same inputs at another as-of.
    let mut recover = vec!["--quiet", "recover", "--as-of", AS_OF];
    recover.extend(&args);
    ok(&work, &recover);
    let later = "2026-11-26T00:00:00Z";
    for k in 0..3 {
        let shard = format!("{k}/3");
        let mut recover = vec!["--quiet", "recover", "--as-of", later, "--shard", &shard];
        recover.extend(&args);
        ok(&work, &recover);
    }
    ok(&work, &["--quiet", "merge"]);

    // Read without Sentinel's views: DuckDB over the folder, hive partitioning on.
    let db = duckdb::Connection::open_in_memory().unwrap();
    for (table, view) in [
        ("telemetry_clean", "telemetry_clean"),
        ("triage_queue", "triage_queue"),
        ("device_state", "device_state"),
    ] {
        let glob = work.join("dataset").join(table).join("*/*/*.parquet");
        let from_dataset = rows(
            &db,
            &format!(
                "SELECT * EXCLUDE (shard) FROM read_parquet('{}', hive_partitioning = true, \
                 hive_types = {{'run_id': VARCHAR, 'shard': INTEGER}})",
                glob.display()
            ),
        );
        let views = duckdb::Connection::open(work.join("sentinel.duckdb")).unwrap();
        let from_views = rows(&views, &format!("SELECT * FROM {view}"));
        assert!(from_views.len() > 100, "{table}");
        assert_eq!(from_dataset.len(), from_views.len(), "{table}");
        // Same rows once the columns are in the same order (hive columns come last).
        let columns: Vec<String> = {
            let mut stmt = views
                .prepare(&format!("SELECT column_name FROM (DESCRIBE {view})"))
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<duckdb::Result<_>>()
                .unwrap()
        };
        let ordered = rows(
            &db,
            &format!(
                "SELECT {} FROM read_parquet('{}', hive_partitioning = true, \
                 hive_types = {{'run_id': VARCHAR, 'shard': INTEGER}})",
                columns.join(", "),
                glob.display()
            ),
        );
        assert_eq!(ordered, from_views, "{table}");
    }
    let shards = |run: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(work.join("dataset/device_state").join(run))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let runs = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(work.join("dataset/device_state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(runs().len(), 2, "{:?}", runs());
    let mut layouts: Vec<Vec<String>> = runs().iter().map(|r| shards(r)).collect();
    layouts.sort();
    assert_eq!(
        layouts,
        vec![vec!["shard=0"], vec!["shard=0", "shard=1", "shard=2"]]
    );

    // Pruned runs leave the dataset with their files: no link keeps their bytes.
    ok(&work, &["--quiet", "prune", "--keep", "1"]);
    assert_eq!(runs().len(), 1);
    assert_eq!(shards(&runs()[0]), vec!["shard=0", "shard=1", "shard=2"]);
    use std::os::unix::fs::MetadataExt;
    let part = work
        .join("dataset/device_state")
        .join(&runs()[0])
        .join("shard=1/part-0.parquet");
    assert_eq!(
        std::fs::metadata(part).unwrap().nlink(),
        2,
        "a stage file and its link"
    );
}
