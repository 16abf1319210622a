//! Hostile inputs (issue 12): malformed and exotic Parquet files, NDJSON that does not fit the
//! contract, compressed exports in nested folders, files that are not telemetry. Whatever the
//! file, recover exits 0 or 1 with the file named: never a panic, never half-written outputs.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::util::{AS_OF, Workdir};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

fn fixture_csv() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet.csv"))
        .unwrap()
}

/// `recover --json` of `inputs` (plus `extra` flags); the exit code, stdout and stderr.
fn recover(w: &Workdir, inputs: &[&Path], extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["--json", "recover", "--as-of", AS_OF];
    let texts: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    for t in &texts {
        args.extend(["--input", t.as_str()]);
    }
    args.extend(extra);
    let out = w.cmd(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let code = out.status.code().unwrap_or(-1);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (code, json, stderr)
}

fn counts(s: &serde_json::Value) -> (u64, u64, u64) {
    (
        s["rows_in"].as_u64().unwrap(),
        s["rows_clean"].as_u64().unwrap(),
        s["rows_quarantined"].as_u64().unwrap(),
    )
}

/// The fixture's verdicts as text: 34 rows, 23 clean, 11 quarantined.
const FIXTURE_COUNTS: (u64, u64, u64) = (34, 23, 11);

#[test]
fn the_hostile_parquet_corpus_is_read_or_refused_never_a_panic() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus: {files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let w = Workdir::new();
        let (code, summary, stderr) = recover(&w, &[&file], &[]);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{name}: a panic reached the user: {stderr}"
        );
        let stem = name.trim_end_matches(".parquet");
        if let Some(kind) = stem.strip_prefix("ok_") {
            assert_eq!(code, 0, "{name}: {stderr}");
            let want = match kind {
                "zero_row_groups" => (0, 0, 0),
                "typed_widths" | "float16" => (3, 3, 0),
                _ => FIXTURE_COUNTS,
            };
            assert_eq!(counts(&summary), want, "{name}");
            continue;
        }
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(&name), "{name} not named: {stderr}");
        assert!(!w.path("out").exists(), "{name}: something was written");
        if let Some(kind) = stem.strip_prefix("type_") {
            let (column, found) = match kind {
                "decimal" => ("battery_pct", "decimal"),
                "struct" => ("rssi_dbm", "struct"),
                "list" => ("boot_failures", "list"),
                "bool_timestamp" => ("reported_at", "bool"),
                "date" => ("update_started_at", "date"),
                "float_for_int" => ("retry_count", "float64"),
                "binary_id" => ("device_id", "binary"),
                other => panic!("no expectation for type_{other}"),
            };
            assert!(
                stderr.contains(&format!("`{column}`")) && stderr.contains(found),
                "{name}: {stderr}"
            );
        } else {
            assert!(name.starts_with("bad_"), "{name}: unknown group");
        }
    }
}

/// Every single byte of a small Parquet file set to 0xFF or 0x00 in turn (every third position):
/// each damaged file is read or refused with an error naming it; a panic fails the test.
#[test]
fn damaged_parquet_bytes_are_errors_not_panics() {
    use sentinel::recover::ingest::{self, Format, Input};
    let good = std::fs::read(corpus().join("ok_dictionary.parquet")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.parquet");
    let (mut read, mut refused) = (0, 0);
    for pos in (0..good.len()).step_by(3) {
        for byte in [0xFFu8, 0x00] {
            let mut bytes = good.clone();
            if bytes[pos] == byte {
                continue;
            }
            bytes[pos] = byte;
            std::fs::write(&path, &bytes).unwrap();
            let input = Input {
                path: path.clone(),
                format: Format::Parquet,
            };
            let outcome = ingest::parquet_rows(&input)
                .and_then(|_| ingest::read(&input, 0).and_then(|lf| Ok(lf.collect()?.height())));
            match outcome {
                Ok(_) => read += 1,
                Err(e) => {
                    refused += 1;
                    let text = format!("{e:#}");
                    assert!(text.contains("damaged.parquet"), "byte {pos}: {text}");
                }
            }
        }
    }
    assert!(read > 0 && refused > 0, "read {read}, refused {refused}");
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

fn write_zst(path: &Path, bytes: &[u8]) {
    std::fs::write(path, zstd::bulk::compress(bytes, 3).unwrap()).unwrap();
}

/// The fixture's rows as NDJSON lines (every value a JSON string; empty cells left out).
fn fixture_ndjson(lines: std::ops::Range<usize>) -> String {
    let csv = fixture_csv();
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let rows: Vec<&str> = rows.collect();
    let mut out = String::new();
    for row in &rows[lines] {
        let obj: serde_json::Map<String, serde_json::Value> = header
            .iter()
            .zip(row.split(','))
            .filter(|(_, v)| !v.is_empty())
            // The fixture quotes one cell (to keep its spaces) and holds no comma in any.
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(v.trim_matches('"').to_string()),
                )
            })
            .collect();
        out.push_str(&serde_json::to_string(&obj).unwrap());
        out.push('\n');
    }
    out
}

fn fixture_csv_rows(lines: std::ops::Range<usize>) -> String {
    let csv = fixture_csv();
    let mut rows = csv.lines();
    let header = rows.next().unwrap();
    let rows: Vec<&str> = rows.collect();
    let mut out = format!("{header}\n");
    for row in &rows[lines] {
        out.push_str(row);
        out.push('\n');
    }
    out
}

/// A folder of compressed exports in hive-style partitions gives exactly the run of the plain
/// fixture: every row read, in name order.
#[test]
fn compressed_exports_in_nested_partitions_are_read_in_name_order() {
    let w = Workdir::new();
    let plain = w.path("fleet.csv");
    std::fs::write(&plain, fixture_csv()).unwrap();
    let (code, whole, stderr) = recover(&w, &[&plain], &[]);
    assert_eq!(code, 0, "{stderr}");

    let root = w.path("exports");
    for part in [
        "date=2026-11-24",
        "date=2026-11-25/hour=00",
        "date=2026-11-25/hour=01",
    ] {
        std::fs::create_dir_all(root.join(part)).unwrap();
    }
    write_gz(
        &root.join("date=2026-11-24/part-0.csv.gz"),
        fixture_csv_rows(0..10).as_bytes(),
    );
    write_zst(
        &root.join("date=2026-11-25/hour=00/part-0.ndjson.zst"),
        fixture_ndjson(10..20).as_bytes(),
    );
    write_gz(
        &root.join("date=2026-11-25/hour=01/part-0.jsonl.gz"),
        fixture_ndjson(20..30).as_bytes(),
    );
    std::fs::write(
        root.join("date=2026-11-25/hour=01/part-1.csv"),
        fixture_csv_rows(30..34),
    )
    .unwrap();
    let w2 = Workdir::new();
    let (code, split, stderr) = recover(&w2, &[&root], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&split), counts(&whole));
    assert_eq!(
        split["quarantined_by_reason"],
        whole["quarantined_by_reason"]
    );
    assert_eq!(split["devices_by_state"], whole["devices_by_state"]);
    let inputs: Vec<String> = split["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let p = v.as_str().unwrap();
            p[p.find("exports/").unwrap() + 8..].to_string()
        })
        .collect();
    assert_eq!(
        inputs,
        [
            "date=2026-11-24/part-0.csv.gz",
            "date=2026-11-25/hour=00/part-0.ndjson.zst",
            "date=2026-11-25/hour=01/part-0.jsonl.gz",
            "date=2026-11-25/hour=01/part-1.csv",
        ]
    );
}

#[test]
fn a_file_that_is_not_telemetry_stops_the_run_unless_skipped_and_recorded() {
    let w = Workdir::new();
    let root = w.path("exports");
    std::fs::create_dir_all(root.join("nested")).unwrap();
    std::fs::write(root.join("a.csv"), fixture_csv()).unwrap();
    std::fs::write(root.join("nested/_SUCCESS"), "").unwrap();
    std::fs::write(root.join("nested/readme.txt"), "exported by the backend").unwrap();
    std::fs::write(root.join("z.parquet.gz"), "not read").unwrap();

    let (code, _, stderr) = recover(&w, &[&root], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("_SUCCESS") && stderr.contains("--skip-unknown"),
        "{stderr}"
    );
    assert!(!w.path("out").exists());

    let (code, s, stderr) = recover(&w, &[&root], &["--skip-unknown"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&s), FIXTURE_COUNTS);
    let skipped: Vec<String> = s["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            Path::new(v.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(skipped, ["_SUCCESS", "readme.txt", "z.parquet.gz"]);
    let db = duckdb::Connection::open(w.path("out/sentinel.duckdb")).unwrap();
    let recorded: String = db
        .query_row("SELECT skipped_inputs FROM runs", [], |r| r.get(0))
        .unwrap();
    let recorded: Vec<String> = serde_json::from_str(&recorded).unwrap();
    assert_eq!(recorded.len(), 3);
    assert!(recorded[0].ends_with("nested/_SUCCESS"), "{recorded:?}");

    // Without --skip-unknown a named file of another format is an error either way.
    let (code, _, stderr) = recover(&w, &[&root.join("nested/readme.txt")], &["--skip-unknown"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("readme.txt") && stderr.contains("unknown format"),
        "{stderr}"
    );
}

#[test]
fn ndjson_that_does_not_fit_the_contract_is_rejected_like_csv_and_parquet() {
    let w = Workdir::new();
    let lines = fixture_ndjson(0..5);
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "no_status.ndjson",
            lines.replace("\"ota_status\"", "\"status\""),
            &["`ota_status`", "missing"],
        ),
        (
            "object.jsonl",
            lines.replacen(
                "\"battery_pct\":\"80\"",
                "\"battery_pct\":{\"value\":80}",
                1,
            ),
            &["`battery_pct`", "object", "line 1"],
        ),
        (
            "array.ndjson",
            lines.replace(
                "\"reported_at\":\"2026-11-25T11:30:00Z\"",
                "\"reported_at\":[\"2026-11-25T11:30:00Z\"]",
            ),
            &["`reported_at`", "array"],
        ),
        (
            "not_objects.ndjson",
            format!("{lines}[1, 2, 3]\n"),
            &["line 6", "not a JSON object"],
        ),
        (
            "no_contract.ndjson",
            "{\"hello\": \"world\"}\n".to_string(),
            &["`device_id`", "missing"],
        ),
    ];
    for (name, text, needles) in cases {
        assert_ne!(text, lines, "{name}: the case changes nothing");
        let path = w.path(name);
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = recover(&w, &[&path], &[]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{name} lacks {needle}: {stderr}");
        }
        assert!(!w.path("out").exists(), "{name}: something was written");
    }

    // A required key absent from some records only: those rows are MISSING_REQUIRED.
    let some: String = lines
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).unwrap();
            if i == 2 {
                obj.remove("hw_model");
            }
            serde_json::to_string(&obj).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!some.lines().nth(2).unwrap().contains("hw_model"));
    let path = w.path("some.ndjson");
    std::fs::write(&path, some).unwrap();
    let (code, s, stderr) = recover(&w, &[&path], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(s["quarantined_by_reason"]["MISSING_REQUIRED"], 1, "{s}");

    // Numbers and booleans are scalars: read as their text.
    let typed = "{\"device_id\":\"N1\",\"region\":\"us-east\",\"hw_model\":\"SEN-100\",\
        \"firmware_from\":\"4.1.2\",\"firmware_target\":\"4.2.0\",\"firmware_reported\":\"4.2.0\",\
        \"ota_status\":\"succeeded\",\"download_pct\":100,\"battery_pct\":87.5,\"rssi_dbm\":-70,\
        \"boot_failures\":0,\"retry_count\":true,\"update_started_at\":\"2026-11-25T02:00:00Z\",\
        \"last_heartbeat_at\":\"2026-11-25T11:00:00Z\",\"reported_at\":\"2026-11-25T11:30:00Z\"}\n";
    let path = w.path("typed.ndjson");
    std::fs::write(&path, typed).unwrap();
    let (code, s, stderr) = recover(&w, &[&path], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&s), (1, 0, 1));
    assert_eq!(s["quarantined_by_reason"]["TYPE_MISMATCH"], 1, "{s}");
}

/// A region and a model whose names a spreadsheet reads as formulas: every such cell of the
/// recovery plan is neutralized with a leading apostrophe, and the plan still lists them.
#[test]
fn formula_like_names_are_neutralized_in_the_recovery_plan() {
    let w = Workdir::new();
    std::fs::write(
        w.path("formulas.toml"),
        r#"regions = ["=HYPERLINK(1)", "+east", "-west", "@north"]

[models."@SEN"]
dual_bank = false
battery = true

[models."=GW"]
dual_bank = true
battery = false
"#,
    )
    .unwrap();
    w.ok(&[
        "--quiet",
        "--config",
        "formulas.toml",
        "run",
        "--devices",
        "3000",
        "--as-of",
        AS_OF,
    ]);
    let plan = std::fs::read_to_string(w.stage("recovery_plan.csv")).unwrap();
    let mut neutralized = std::collections::BTreeSet::new();
    for line in plan.lines().skip(1) {
        for cell in line.split(',') {
            let cell = cell.trim_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a live formula: {line}"
            );
            if let Some(rest) = cell.strip_prefix('\'') {
                neutralized.insert(rest.chars().next().unwrap());
            }
        }
    }
    for first in ['=', '+', '-', '@'] {
        assert!(
            neutralized.contains(&first),
            "no neutralized {first} cell:\n{plan}"
        );
    }
}

/// chaos killed between renaming its data and its log: the next writer finishes the pair.
#[test]
fn a_killed_publication_is_finished_by_the_next_writer() {
    use sentinel::workspace::Workspace;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let (data, log) = (
        raw.join("telemetry.chaos.parquet"),
        raw.join("chaos_log.parquet"),
    );
    // The new data is in place already; the new log still waits under its temporary name.
    std::fs::write(&data, "new data").unwrap();
    std::fs::write(&log, "old log").unwrap();
    let log_tmp = raw.join(".chaos_log.parquet.a1b2.tmp");
    std::fs::write(&log_tmp, "new log").unwrap();
    std::fs::write(
        raw.join(".publish.journal"),
        format!(
            "{}\t{}\n{}\t{}\n",
            raw.join(".telemetry.chaos.parquet.c3d4.tmp").display(),
            data.display(),
            log_tmp.display(),
            log.display()
        ),
    )
    .unwrap();
    let ws = Workspace::new(dir.path());
    let lock = ws.lock().unwrap();
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "new data");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "new log");
    let mut left: Vec<String> = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["chaos_log.parquet", "telemetry.chaos.parquet"]);
    drop(lock);
}

/// A re-run of `report` killed after moving the earlier report aside and before renaming the
/// new one in: the next writer puts the earlier report back instead of sweeping it away.
#[test]
fn a_report_moved_aside_by_a_killed_rerun_is_put_back() {
    use sentinel::workspace::{ASIDE_REPORT, Workspace};
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new(dir.path());
    std::fs::create_dir_all(ws.reports_root()).unwrap();
    let aside = ws.report_aside("0123abcd").unwrap();
    std::fs::create_dir(aside.join(ASIDE_REPORT)).unwrap();
    std::fs::write(aside.join(ASIDE_REPORT).join("summary.json"), "earlier").unwrap();
    drop(ws.lock().unwrap());
    let restored = ws.report_dir("0123abcd").join("summary.json");
    assert_eq!(std::fs::read_to_string(&restored).unwrap(), "earlier");
    assert!(!aside.exists());

    // Killed after the new report arrived: the copy aside is only removed.
    let aside = ws.report_aside("0123abcd").unwrap();
    std::fs::create_dir(aside.join(ASIDE_REPORT)).unwrap();
    std::fs::write(aside.join(ASIDE_REPORT).join("summary.json"), "older").unwrap();
    drop(ws.lock().unwrap());
    assert_eq!(std::fs::read_to_string(&restored).unwrap(), "earlier");
    assert!(!aside.exists());
    let names: Vec<String> = std::fs::read_dir(ws.reports_root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["0123abcd"]);
}

/// wilson_low of no failures is exactly 0 and wilson_high of all failures exactly 1, whatever the
/// cohort size, so equal cohorts rank equal.
#[test]
fn wilson_bounds_are_exact_at_the_edges_and_equal_inputs_rank_equal() {
    let w = Workdir::new();
    let input = w.path("fleet.csv");
    std::fs::write(&input, fixture_csv()).unwrap();
    w.recover(&input);
    std::fs::write(
        w.path("edges.sql"),
        "SELECT n, wilson_low(0, n) AS low, wilson_high(n, n) AS high,
                RANK() OVER (ORDER BY wilson_low(0, n) DESC) AS rank_low,
                RANK() OVER (ORDER BY wilson_high(n, n) DESC) AS rank_high
         FROM (VALUES (1), (7), (30), (1000), (123457)) AS t(n) ORDER BY n",
    )
    .unwrap();
    let out = w.ok(&["analyze", "--query", "edges.sql", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for row in rows {
        assert_eq!(row["low"].as_f64(), Some(0.0), "{row}");
        assert_eq!(row["high"].as_f64(), Some(1.0), "{row}");
        assert_eq!(row["rank_low"].as_i64(), Some(1), "{row}");
        assert_eq!(row["rank_high"].as_i64(), Some(1), "{row}");
    }
}

/// Exports from Windows tools open with a UTF-8 byte-order mark: it is not part of the first
/// column's name (CSV) or of the first record (NDJSON).
#[test]
fn a_byte_order_mark_is_not_data() {
    let w = Workdir::new();
    let csv = w.path("bom.csv");
    std::fs::write(&csv, format!("\u{feff}{}", fixture_csv())).unwrap();
    let (code, s, stderr) = recover(&w, &[&csv], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&s), FIXTURE_COUNTS);
    let w = Workdir::new();
    let ndjson = w.path("bom.ndjson");
    std::fs::write(&ndjson, format!("\u{feff}{}", fixture_ndjson(0..34))).unwrap();
    let (code, s, stderr) = recover(&w, &[&ndjson], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&s), FIXTURE_COUNTS);
}

#[test]
fn a_corrupt_compressed_export_is_refused_naming_the_file() {
    let w = Workdir::new();
    for (name, bytes, word) in [
        (
            "broken.csv.gz",
            b"\x1f\x8b\x08\x00 not really gzip".to_vec(),
            "gzip",
        ),
        ("broken.ndjson.zst", b"(\xb5/\xfd garbage".to_vec(), "zstd"),
    ] {
        let path = w.path(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, _, stderr) = recover(&w, &[&path], &[]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(word),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!w.path("out").exists());
    }
}
