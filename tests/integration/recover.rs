//! `sentinel recover` on a hand-written fixture that covers every reason, every state and every
//! action rule, read as CSV, NDJSON and Parquet; re-runs; bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use sentinel::recover::{RecoverOptions, recover};
use sentinel::workspace::Workspace;

use crate::util::{Workdir, read_parquet};

const AS_OF: &str = "2026-11-25T12:00:00Z";
const FIXTURE: &str = include_str!("../fixtures/fleet.csv");

/// The fixture as text columns, exactly as the CSV holds it.
fn fixture_frame(w: &Workdir) -> DataFrame {
    let path = w.path("fleet.csv");
    std::fs::write(&path, FIXTURE).unwrap();
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path))
        .unwrap()
        .finish()
        .unwrap()
}

/// Writes the fixture in `format` and returns its path.
fn write_fixture(w: &Workdir, format: &str) -> PathBuf {
    let mut df = fixture_frame(w);
    let path = w.path(&format!("fleet.{format}"));
    match format {
        "csv" => {}
        "parquet" => {
            ParquetWriter::new(std::fs::File::create(&path).unwrap())
                .finish(&mut df)
                .unwrap();
        }
        "ndjson" => {
            // Plain numbers become JSON numbers: a JSON number is read as its text.
            let mut out = String::new();
            for i in 0..df.height() {
                let mut obj = serde_json::Map::new();
                for c in df.columns() {
                    let v = c.str().unwrap().get(i);
                    let value = match v {
                        None => serde_json::Value::Null,
                        Some(t) if t.parse::<i64>().is_ok() => {
                            serde_json::Value::Number(t.parse::<i64>().unwrap().into())
                        }
                        Some(t) => serde_json::Value::String(t.to_string()),
                    };
                    obj.insert(c.name().to_string(), value);
                }
                out.push_str(&serde_json::Value::Object(obj).to_string());
                out.push('\n');
            }
            std::fs::write(&path, out).unwrap();
        }
        _ => unreachable!(),
    }
    path
}

fn recover_json(w: &Workdir, inputs: &[&Path], as_of: &str) -> serde_json::Value {
    let mut args: Vec<String> = vec!["--json".into(), "--quiet".into(), "recover".into()];
    for i in inputs {
        args.push("--input".into());
        args.push(i.display().to_string());
    }
    args.extend(["--as-of".into(), as_of.into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_slice(&w.ok(&refs).stdout).unwrap()
}

fn map(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// (device_id -> (state, action)) from stage/device_state.parquet.
fn states(w: &Workdir) -> BTreeMap<String, (String, String)> {
    let df = read_parquet(&w.stage("device_state.parquet"));
    let (ids, st, ac) = (
        df.column("device_id").unwrap().str().unwrap(),
        df.column("state").unwrap().str().unwrap(),
        df.column("action").unwrap().str().unwrap(),
    );
    (0..df.height())
        .map(|i| {
            (
                ids.get(i).unwrap().to_string(),
                (
                    st.get(i).unwrap().to_string(),
                    ac.get(i).unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// (source_row -> (problems joined by ';', priority)) from stage/triage.parquet.
fn verdicts(w: &Workdir) -> BTreeMap<u64, (String, String)> {
    let df = read_parquet(&w.stage("triage.parquet"));
    let rows = df.column("source_row").unwrap().u64().unwrap();
    let problems = df.column("problems").unwrap().list().unwrap();
    let priority = df.column("priority").unwrap().str().unwrap();
    (0..df.height())
        .map(|i| {
            let p = problems.get_as_series(i).unwrap();
            let joined: Vec<String> = p
                .str()
                .unwrap()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect();
            (
                rows.get(i).unwrap(),
                (joined.join(";"), priority.get(i).unwrap().to_string()),
            )
        })
        .collect()
}

#[test]
fn the_fixture_gives_every_reason_state_and_action_in_every_format() {
    let mut results = Vec::new();
    for format in ["csv", "ndjson", "parquet"] {
        let w = Workdir::new();
        let input = write_fixture(&w, format);
        let s = recover_json(&w, &[&input], AS_OF);
        assert_eq!(s["rows_in"], 34, "{format}");
        assert_eq!(s["rows_clean"], 23, "{format}");
        assert_eq!(s["rows_quarantined"], 11, "{format}");
        assert_eq!(
            map(&s["quarantined_by_reason"]),
            expected(&[
                ("MISSING_REQUIRED", 1),
                ("TYPE_MISMATCH", 2),
                ("OUT_OF_RANGE", 1),
                ("UNKNOWN_CATEGORY", 1),
                ("BAD_TIMESTAMP", 1),
                ("SIGNAL_DROP", 1),
                ("INCONSISTENT", 1),
                ("CONFLICT", 2),
                ("DUPLICATE", 1),
            ]),
            "{format}"
        );
        assert_eq!(s["devices"], 22);
        assert_eq!(
            map(&s["devices_by_state"]),
            expected(&[
                ("HEALTHY", 5),
                ("UPDATING", 3),
                ("PARTIAL", 4),
                ("ROLLED_BACK", 2),
                ("STALLED", 1),
                ("BRICKED", 4),
                ("UNREACHABLE", 3)
            ])
        );
        assert_eq!(
            map(&s["devices_by_action"]),
            expected(&[
                ("NONE", 5),
                ("WAIT", 5),
                ("RETRY_OTA", 4),
                ("DEFER", 2),
                ("ESCALATE", 1),
                ("REMOTE_ROLLBACK", 1),
                ("RMA", 1),
                ("FIELD_SERVICE", 3)
            ])
        );
        assert_eq!(s["blind_devices"], 7);
        assert!(
            (s["cost_usd"].as_f64().unwrap() - 1690.22).abs() < 1e-9,
            "{}",
            s["cost_usd"]
        );
        assert_eq!(s["truck_rolls_avoided"], 7);
        assert!((s["cost_avoided_usd"].as_f64().unwrap() - 2450.0).abs() < 1e-9);

        let st = states(&w);
        let want = [
            ("D01", "HEALTHY", "NONE"),
            ("D02", "UPDATING", "WAIT"),
            ("D03", "PARTIAL", "RETRY_OTA"),
            ("D04", "PARTIAL", "DEFER"),
            ("D05", "PARTIAL", "DEFER"),
            ("D06", "PARTIAL", "ESCALATE"),
            ("D07", "ROLLED_BACK", "RETRY_OTA"),
            ("D08", "ROLLED_BACK", "RETRY_OTA"),
            ("D09", "STALLED", "RETRY_OTA"),
            ("D10", "BRICKED", "REMOTE_ROLLBACK"),
            ("D11", "BRICKED", "RMA"),
            ("D12", "BRICKED", "FIELD_SERVICE"),
            ("D13", "BRICKED", "FIELD_SERVICE"),
            ("D14", "UNREACHABLE", "WAIT"),
            ("D15", "UNREACHABLE", "FIELD_SERVICE"),
            ("D16", "UNREACHABLE", "WAIT"),
            ("D17", "UPDATING", "WAIT"),
            ("D18", "HEALTHY", "NONE"),
            ("D20", "UPDATING", "WAIT"),
            ("D22", "HEALTHY", "NONE"),
            ("D23", "HEALTHY", "NONE"),
            ("D30", "HEALTHY", "NONE"),
        ];
        let want: BTreeMap<String, (String, String)> = want
            .iter()
            .map(|(d, s, a)| (d.to_string(), (s.to_string(), a.to_string())))
            .collect();
        assert_eq!(st, want, "{format}");

        let v = verdicts(&w);
        let want: BTreeMap<u64, (String, String)> = [
            (20, "battery_pct:TYPE_MISMATCH", "P2"),
            (21, "region:UNKNOWN_CATEGORY", "P1"),
            (24, "hw_model:MISSING_REQUIRED", "P1"),
            (25, "rssi_dbm:OUT_OF_RANGE", "P1"),
            (26, "reported_at:BAD_TIMESTAMP", "P1"),
            (27, "*:SIGNAL_DROP", "P1"),
            (28, "*:INCONSISTENT", "P1"),
            (29, "*:CONFLICT", "P1"),
            (30, "*:CONFLICT", "P1"),
            (32, "*:DUPLICATE", "P2"),
            (33, "device_id:TYPE_MISMATCH", "P1"),
        ]
        .iter()
        .map(|(r, p, q)| (*r, (p.to_string(), q.to_string())))
        .collect();
        assert_eq!(v, want, "{format}");

        // The rationale carries the deciding values.
        let ds = read_parquet(&w.stage("device_state.parquet"));
        let ids = ds.column("device_id").unwrap().str().unwrap();
        let why = ds.column("rationale").unwrap().str().unwrap();
        let of = |d: &str| {
            (0..ds.height())
                .find(|&i| ids.get(i) == Some(d))
                .map(|i| why.get(i).unwrap().to_string())
                .unwrap()
        };
        assert_eq!(
            of("D11"),
            "boot_failures=3 >= 3 on single-bank SEN-100 -> RMA: E_FLASH_WRITE on single-bank SEN-100"
        );
        assert!(
            of("D04").contains("battery_pct=10") && of("D04").ends_with("< 25"),
            "{}",
            of("D04")
        );
        results.push((st, v));
    }
    assert!(results.windows(2).all(|p| p[0] == p[1]));
}

#[test]
fn the_recovery_plan_lists_actionable_devices_with_neutralized_cells() {
    let w = Workdir::new();
    let input = write_fixture(&w, "csv");
    recover_json(&w, &[&input], AS_OF);
    let plan = std::fs::read_to_string(w.stage("recovery_plan.csv")).unwrap();
    let lines: Vec<&str> = plan.lines().collect();
    assert_eq!(lines.len(), 1 + 12, "{plan}");
    assert!(
        lines[0].starts_with("device_id,region,hw_model,gateway_id,state,action"),
        "{}",
        lines[0]
    );
    assert!(!plan.contains("NONE") && !plan.contains(",WAIT,"));
    for line in &lines[1..] {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{line}"
            );
        }
    }
}

#[test]
fn rerunning_replaces_the_run_and_a_new_as_of_adds_one() {
    let w = Workdir::new();
    let input = write_fixture(&w, "csv");
    let first = recover_json(&w, &[&input], AS_OF);
    let again = recover_json(&w, &[&input], AS_OF);
    assert_eq!(first["run_id"], again["run_id"]);
    let db = duckdb::Connection::open(w.path("out/sentinel.duckdb")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM runs"), 1);
    assert_eq!(count("SELECT count(*) FROM telemetry_clean"), 23);
    assert_eq!(count("SELECT count(*) FROM triage_queue"), 11);
    assert_eq!(count("SELECT count(*) FROM device_state"), 22);
    drop(db);
    let later = recover_json(&w, &[&input], "2026-11-26T12:00:00Z");
    assert_ne!(later["run_id"], first["run_id"]);
    let db = duckdb::Connection::open(w.path("out/sentinel.duckdb")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM runs"), 2);
    // A day later, D26's report (5 min 1 s past the first as_of) is no longer in the future: its
    // device gets a state too, beside the first run's 22.
    assert_eq!(count("SELECT count(*) FROM device_state"), 22 + 23);
    assert_eq!(
        count("SELECT count(DISTINCT run_id) FROM telemetry_clean"),
        2
    );
    assert_eq!(count("SELECT rows_in FROM runs ORDER BY as_of LIMIT 1"), 34);
}

#[test]
fn duplicates_and_conflicts_are_found_across_inputs() {
    let w = Workdir::new();
    let csv = write_fixture(&w, "csv");
    let parquet = write_fixture(&w, "parquet");
    let s = recover_json(&w, &[&csv, &parquet], AS_OF);
    assert_eq!(s["rows_in"], 68);
    // Every row of the second file repeats one of the first: all 34 are quarantined as duplicates
    // (rows already conflicting stay conflicts), and the first file's verdicts are unchanged.
    assert_eq!(s["rows_clean"], 23);
    assert_eq!(s["rows_quarantined"], 45);
}

#[test]
fn an_empty_input_is_an_empty_run() {
    let w = Workdir::new();
    let header = FIXTURE.lines().next().unwrap();
    std::fs::write(w.path("empty.csv"), format!("{header}\n")).unwrap();
    let s = recover_json(&w, &[&w.path("empty.csv")], AS_OF);
    assert_eq!(
        (
            s["rows_in"].as_u64(),
            s["rows_clean"].as_u64(),
            s["devices"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(w.stage("device_state.parquet").exists());
}

#[test]
fn bad_input_is_rejected_and_nothing_is_written() {
    let w = Workdir::new();
    let err = w.fails(&["recover", "--input", "nowhere.csv"], 1);
    assert!(err.contains("nowhere.csv"), "{err}");
    std::fs::write(w.path("notes.txt"), "hello").unwrap();
    let err = w.fails(&["recover", "--input", "notes.txt"], 1);
    assert!(
        err.contains("notes.txt") && err.contains("unknown format"),
        "{err}"
    );
    std::fs::create_dir(w.path("empty_dir")).unwrap();
    let err = w.fails(&["recover", "--input", "empty_dir"], 1);
    assert!(err.contains("empty_dir"), "{err}");
    let without_status: String = FIXTURE
        .lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            if cells.len() > 7 {
                cells.remove(7);
            }
            cells.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(w.path("no_status.csv"), without_status).unwrap();
    let err = w.fails(&["recover", "--input", "no_status.csv"], 1);
    assert!(
        err.contains("no_status.csv") && err.contains("ota_status"),
        "{err}"
    );
    let mut df = fixture_frame(&w);
    let flags = BooleanChunked::from_iter_values(
        "battery_pct".into(),
        (0..df.height()).map(|i| i % 2 == 0),
    );
    df.with_column(flags.into_column()).unwrap();
    ParquetWriter::new(std::fs::File::create(w.path("bool.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    let err = w.fails(&["recover", "--input", "bool.parquet"], 1);
    assert!(
        err.contains("bool.parquet") && err.contains("battery_pct") && err.contains("bool"),
        "{err}"
    );
    std::fs::write(w.path("garbage.parquet"), b"PAR1 not really").unwrap();
    let err = w.fails(&["recover", "--input", "garbage.parquet"], 1);
    assert!(err.contains("garbage.parquet"), "{err}");
    assert!(!w.path("out").exists(), "nothing written: {:?}", w.files());
    let err = w.fails(&["recover"], 2);
    assert!(err.contains("--input"), "{err}");
}

/// A generated fleet of `devices` and its chaos file at `rate`, both seeded with `seed`, in `dir`:
/// (the clean file, the chaos file).
fn chaos_fleet(dir: &Path, devices: u64, seed: u64, rate: f64) -> (PathBuf, PathBuf) {
    use sentinel::chaos::{ChaosOptions, chaos};
    use sentinel::config::Config;
    use sentinel::generate::{GenerateOptions, generate};

    let raw = dir.join("telemetry.parquet");
    generate(
        &Config::default(),
        &GenerateOptions {
            devices,
            seed,
            as_of_us: sentinel::schema::parse_timestamp(AS_OF).unwrap(),
            out: raw.clone(),
        },
        &|_| {},
    )
    .unwrap();
    let corrupted = dir.join("telemetry.chaos.parquet");
    chaos(
        &ChaosOptions {
            input: raw.clone(),
            out: corrupted.clone(),
            log: dir.join("log.parquet"),
            rate,
            seed,
        },
        &|_| {},
    )
    .unwrap();
    (raw, corrupted)
}

/// How `recover_in` keeps its buckets.
#[derive(Clone, Copy, Debug)]
enum Buckets {
    InMemory,
    OnDisk,
}

/// Recovers `inputs` in-process into `dir/name` with buckets of `bucket_rows` held as `buckets`
/// says: its workspace and its summary without outputs and timings.
fn recover_in(
    dir: &Path,
    name: &str,
    inputs: Vec<PathBuf>,
    bucket_rows: usize,
    buckets: Buckets,
) -> (Workspace, serde_json::Value) {
    let ws = Workspace::new(dir.join(name));
    let opts = RecoverOptions {
        inputs,
        as_of_us: sentinel::schema::parse_timestamp(AS_OF).unwrap(),
        bucket_rows,
        memory_rows: match buckets {
            Buckets::InMemory => usize::MAX,
            Buckets::OnDisk => 0,
        },
        skip_unknown: false,
        shard: None,
    };
    let config = sentinel::config::Config::default();
    let mut summary = serde_json::to_value(recover(&config, &opts, &ws).unwrap()).unwrap();
    summary.as_object_mut().unwrap().remove("outputs");
    summary.as_object_mut().unwrap().remove("timings");
    (ws, summary)
}

/// Asserts that two runs of `id` hold the same stage rows (sorted) and recovery plan lines.
fn assert_same_stage_files(a: &Workspace, b: &Workspace, id: &str, label: &str) {
    let sorted = |path: PathBuf, by: &[&str]| {
        read_parquet(&path)
            .sort(by.to_vec(), SortMultipleOptions::default())
            .unwrap()
    };
    for (file, by) in [
        (a.clean(id), &["source_index", "source_row"][..]),
        (a.triage(id), &["source_file", "source_row"][..]),
        (a.device_state(id), &["device_id"][..]),
    ] {
        let name = file.file_name().unwrap().to_owned();
        let (x, y) = (sorted(file, by), sorted(b.stage_dir(id).join(&name), by));
        assert_eq!(x.height(), y.height(), "{label} {name:?}");
        // equals_missing compares values across integer types: the column types are held apart.
        assert_eq!(x.schema(), y.schema(), "{label}: {name:?} column types");
        assert!(x.equals_missing(&y), "{label}: {name:?} differs");
    }
    let lines = |ws: &Workspace| {
        let text = std::fs::read_to_string(ws.recovery_plan(id)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(lines(a), lines(b), "{label}: recovery plan");
}

/// Recovers `inputs` in one piece, then in buckets of `bucket_rows` held in memory and on disk,
/// asserts that the bucketed runs equal the one-piece run (summary, stage rows, plan), and
/// returns the one-piece run's summary. Every run's folder under `dir` is removed after.
fn recover_every_way(
    dir: &Path,
    inputs: &[PathBuf],
    bucket_rows: usize,
    label: &str,
) -> serde_json::Value {
    let (whole, whole_summary) =
        recover_in(dir, "whole", inputs.to_vec(), usize::MAX, Buckets::InMemory);
    let id = whole_summary["run_id"].as_str().unwrap();
    for buckets in [Buckets::InMemory, Buckets::OnDisk] {
        let name = format!("{buckets:?}");
        let (split, split_summary) = recover_in(dir, &name, inputs.to_vec(), bucket_rows, buckets);
        assert_eq!(whole_summary, split_summary, "{label} {name}");
        assert_same_stage_files(&whole, &split, id, &format!("{label} {name}"));
        std::fs::remove_dir_all(dir.join(&name)).unwrap();
    }
    std::fs::remove_dir_all(dir.join("whole")).unwrap();
    whole_summary
}

/// Recover in buckets (the path for inputs larger than a bucket), whether the buckets are held in
/// memory or written to scratch files, and in one piece give the same run: the same summary, the
/// same rows in every stage file and the same analytics, also when duplicates and conflicts span
/// two input files.
#[test]
fn buckets_give_exactly_the_in_memory_results() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, corrupted) = chaos_fleet(dir.path(), 20_000, 11, 0.2);
    let inputs = vec![corrupted, raw];
    let summary = recover_every_way(dir.path(), &inputs, 4_000, "buckets");
    assert!(summary["quarantined_by_reason"]["DUPLICATE"].as_u64() > Some(1000));
    assert!(summary["quarantined_by_reason"]["CONFLICT"].as_u64() > Some(100));
}

/// The split partitions each read slice a block at a time: 32K rows while there are at most 64
/// buckets, at least 512 rows per bucket beyond. The input is one file of about 90K rows, a chaos
/// fleet twice over: every row of its second half repeats one of the first, and DUPLICATE flags
/// the later one, so a bucket must keep its rows in run order across blocks. It crosses block
/// borders both ways (12 buckets: three blocks of up to 32K rows; about 90: two of up to 46K),
/// and the buckets, in memory and on disk, still give exactly the one-piece run.
#[test]
fn buckets_cut_from_several_blocks_give_exactly_the_in_memory_results() {
    let dir = tempfile::tempdir().unwrap();
    let (_, corrupted) = chaos_fleet(dir.path(), 40_000, 17, 0.1);
    let mut both = read_parquet(&corrupted);
    both.vstack_mut(&read_parquet(&corrupted)).unwrap();
    let input = dir.path().join("both.parquet");
    ParquetWriter::new(std::fs::File::create(&input).unwrap())
        .finish(&mut both)
        .unwrap();
    let inputs = vec![input];
    let few = recover_every_way(dir.path(), &inputs, 8_000, "12 buckets");
    let rows = few["rows_in"].as_u64().unwrap();
    assert!(
        rows > 2 * 32_768,
        "{rows} rows: three blocks of 32K or more"
    );
    assert!(few["quarantined_by_reason"]["DUPLICATE"].as_u64() > Some(30_000));
    let many = recover_every_way(dir.path(), &inputs, 1_000, "about 90 buckets");
    assert!(
        rows > 512 * rows.div_ceil(1_000),
        "{rows} rows: two blocks or more"
    );
    assert_eq!(few, many);
}

/// CSV and NDJSON exports of a chaos fleet (the text every column holds after ingest, some of it
/// garbage), recovered in memory and in buckets: plain CSV and NDJSON files are then streamed in
/// batches, a gzip CSV and a zstd NDJSON too, from decompressed copies in the bucket folder when
/// the buckets are on disk. Every path gives the same run.
#[test]
fn streamed_csv_and_ndjson_give_exactly_the_in_memory_results() {
    use sentinel::recover::ingest::{Format, Input, read};

    let dir = tempfile::tempdir().unwrap();
    let (_, corrupted) = chaos_fleet(dir.path(), 15_000, 5, 0.3);
    // The chaos file as text, the way ingest reads it, written out as CSV, gzip CSV and NDJSON.
    let input = Input {
        path: corrupted.clone(),
        format: Format::Parquet,
    };
    let mut text = read(&input, 0)
        .unwrap()
        .drop(by_name(
            ["source_row", "source_file", "source_index"],
            true,
            false,
        ))
        .collect()
        .unwrap();
    let csv = dir.path().join("export.csv");
    CsvWriter::new(std::fs::File::create(&csv).unwrap())
        .finish(&mut text)
        .unwrap();
    let gz = dir.path().join("export2.csv.gz");
    {
        let bytes = std::fs::read(&csv).unwrap();
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut enc, &bytes).unwrap();
        enc.finish().unwrap();
    }
    // The NDJSON export carries a key outside the contract, which every reader ignores.
    let ndjson = dir.path().join("export3.ndjson");
    let mut with_extra = text
        .clone()
        .lazy()
        .with_column(lit("x").alias("exporter_note"))
        .collect()
        .unwrap();
    JsonWriter::new(std::fs::File::create(&ndjson).unwrap())
        .with_json_format(JsonFormat::JsonLines)
        .finish(&mut with_extra)
        .unwrap();

    let zst = dir.path().join("export4.ndjson.zst");
    std::fs::write(
        &zst,
        zstd::bulk::compress(&std::fs::read(&ndjson).unwrap(), 3).unwrap(),
    )
    .unwrap();

    for inputs in [
        vec![csv.clone()],
        vec![csv.clone(), gz.clone()],
        vec![ndjson.clone(), csv.clone()],
        vec![zst.clone(), gz.clone()],
    ] {
        let label = format!("{inputs:?}");
        let summary = recover_every_way(dir.path(), &inputs, 3_000, &label);
        assert!(
            summary["rows_in"].as_u64() > Some(15_000),
            "{label}: {summary}"
        );
        assert!(summary["quarantined_by_reason"]["TYPE_MISMATCH"].as_u64() > Some(300));
        // The decompressed copies of the compressed inputs went with the bucket folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 7, "{label}");
    }
}

/// A gzip export cut short, large enough to be split into buckets on disk (so it is decompressed
/// into a temporary file and streamed): the run fails naming the file and gzip, and leaves no
/// stage folder, no bucket folder and no decompressed copy behind.
#[test]
fn a_compressed_export_cut_short_in_buckets_fails_naming_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(std::io::Cursor::new(FIXTURE.as_bytes().to_vec()))
        .finish()
        .unwrap();
    // The fixture 200 times over: about 7,000 rows, 1.3 MB of CSV.
    let copies: Vec<DataFrame> = (0..200).map(|_| df.clone()).collect();
    for copy in &copies[1..] {
        df.vstack_mut(copy).unwrap();
    }
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv).finish(&mut df).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &csv).unwrap();
    let gz = enc.finish().unwrap();
    let input = dir.path().join("cut.csv.gz");
    std::fs::write(&input, &gz[..gz.len() * 2 / 3]).unwrap();

    let work = dir.path().join("work");
    let ws = Workspace::new(work.clone());
    let opts = RecoverOptions {
        inputs: vec![input],
        as_of_us: sentinel::schema::parse_timestamp(AS_OF).unwrap(),
        bucket_rows: 100,
        memory_rows: 0,
        skip_unknown: false,
        shard: None,
    };
    let error = recover(&sentinel::config::Config::default(), &opts, &ws).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("cut.csv.gz") && message.contains("gzip"),
        "{message}"
    );
    let left: Vec<String> = std::fs::read_dir(&work)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "sentinel.lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Two Parquet inputs, halves of one chaos fleet, the second with a damaged page past its device
/// ids: the census (device ids only) reads both, the split writes the first input's lone devices
/// to the stage files and then fails on the second. The error names that file, and the run leaves
/// no stage folder, no bucket folder and no temporary file behind.
#[test]
fn a_page_damaged_past_the_census_fails_naming_the_file_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, corrupted) = chaos_fleet(dir.path(), 6_000, 3, 0.05);
    let df = read_parquet(&corrupted);
    let half = df.height() / 2;
    let write = |name: &str, mut part: DataFrame| {
        let path = dir.path().join(name);
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .with_compression(ParquetCompression::Uncompressed)
            .with_statistics(StatisticsOptions::empty())
            .finish(&mut part)
            .unwrap();
        path
    };
    let good = write("good.parquet", df.slice(0, half));
    let marker = "zz-damaged-region-marker";
    let second = df
        .slice(half as i64, df.height() - half)
        .lazy()
        .with_column(lit(marker).alias("region"))
        .collect()
        .unwrap();
    let damaged = write("damaged.parquet", second);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the marker's bytes");
    // The length in front of the region value's bytes, made to point far past the page.
    bytes[at - 4..at].copy_from_slice(&[0xFF; 4]);
    std::fs::write(&damaged, &bytes).unwrap();

    let work = dir.path().join("work");
    let opts = RecoverOptions {
        inputs: vec![good, damaged],
        as_of_us: sentinel::schema::parse_timestamp(AS_OF).unwrap(),
        bucket_rows: 500,
        memory_rows: 0,
        skip_unknown: false,
        shard: None,
    };
    let error = recover(
        &sentinel::config::Config::default(),
        &opts,
        &Workspace::new(work.clone()),
    )
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("damaged.parquet"), "{message}");
    let left: Vec<String> = walkdir(&work)
        .into_iter()
        .filter(|n| !n.ends_with("sentinel.lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Every file and folder under `dir` (none when it does not exist).
fn walkdir(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            found.push(path.display().to_string());
            found.extend(walkdir(&path));
        }
    }
    found
}

/// Every device's rationale on the fixture fleet, which reaches every branch of the state and
/// action sentences: the exact text is the contract's "values that decided it" (SPEC section 5).
#[test]
fn every_rationale_of_the_fixture_fleet() {
    let w = Workdir::new();
    let input = write_fixture(&w, "csv");
    recover_json(&w, &[&input], AS_OF);
    let ds = read_parquet(&w.stage("device_state.parquet"));
    let column = |name: &str| ds.column(name).unwrap().str().unwrap().clone();
    let (ids, st, ac, why) = (
        column("device_id"),
        column("state"),
        column("action"),
        column("rationale"),
    );
    let mut lines: Vec<String> = (0..ds.height())
        .map(|i| {
            format!(
                "{} {}/{}: {}",
                ids.get(i).unwrap(),
                st.get(i).unwrap(),
                ac.get(i).unwrap(),
                why.get(i).unwrap_or("<null>")
            )
        })
        .collect();
    lines.sort();
    insta::assert_snapshot!("fixture_rationales", lines.join("\n"));
}
