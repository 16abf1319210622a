//! Faults that really happen: processes killed with SIGKILL mid-run, two writers on one work
//! directory, hostile and broken input files, arbitrary raw rows.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use polars::prelude::*;
use proptest::prelude::*;
use sentinel::config::Config;
use sentinel::recover::classify;
use sentinel::recover::ingest::{self, Format, Input};
use sentinel::recover::sanitize;

use crate::util::{AS_OF, Workdir, as_of_us, read_parquet};

const LATER: &str = "2026-11-26T12:00:00Z";

fn spawn(w: &Workdir, args: &[&str]) -> Child {
    w.cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sentinel")
}

/// The run ids the database holds, read through `analyze` (which opens it read-only).
fn runs_in_db(w: &Workdir) -> Vec<String> {
    let out = w.ok(&["analyze", "--query", "run_trend", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    ids.dedup();
    ids
}

/// Files and folders whose name starts with a dot below `dir`: leftovers of an interrupted write.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // stage/.readers.lock is the readers' lock file, kept on purpose, not a leftover.
            if name.starts_with('.') && name != ".readers.lock" {
                found.push(entry.path().display().to_string());
            } else if entry.path().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn a_kill_at_any_moment_leaves_the_previous_outputs_readable() {
    let w = Workdir::new();
    w.ok(&["--quiet", "run", "--devices", "20000", "--as-of", AS_OF]);
    let first = runs_in_db(&w);
    assert_eq!(first.len(), 1);
    let report = w.path("out/reports").join(&first[0]).join("summary.json");
    let report_bytes = std::fs::read(&report).unwrap();

    // A much larger run with another as_of, killed at several moments: during generate, chaos,
    // recover (reading, sanitizing, writing stage files, loading DuckDB) and report.
    let big = ["--quiet", "run", "--devices", "400000", "--as-of", LATER];
    for delay_ms in [100, 400, 900, 1600, 2500, 3500, 5000, 7000] {
        let mut child = spawn(&w, &big);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // The database opens and still holds the first run (and the new one only if it committed).
        let runs = runs_in_db(&w);
        assert!(runs.contains(&first[0]), "after {delay_ms} ms: {runs:?}");
        assert!(runs.len() <= 2, "after {delay_ms} ms: {runs:?}");
        // Every published run's stage files are whole Parquet files; a run killed before its
        // publication left no folder under its name, or a whole one.
        for run in &runs {
            let dir = w.path("out/stage").join(run);
            let states = read_parquet(&dir.join("device_state.parquet")).height();
            let clean = read_parquet(&dir.join("clean.parquet")).height();
            let triage = read_parquet(&dir.join("triage.parquet")).height();
            assert!(
                states > 0 && clean >= states && triage > 0,
                "after {delay_ms} ms: run {run}"
            );
        }
        for raw in [
            "telemetry.parquet",
            "telemetry.chaos.parquet",
            "chaos_log.parquet",
        ] {
            read_parquet(&w.path("out/raw").join(raw));
        }
        // The first run's report is untouched.
        assert_eq!(
            std::fs::read(&report).unwrap(),
            report_bytes,
            "after {delay_ms} ms"
        );
        if finished {
            break;
        }
    }

    // The next run succeeds and sweeps what the killed ones left behind.
    w.ok(&["--quiet", "run", "--devices", "20000", "--as-of", AS_OF]);
    assert_eq!(std::fs::read(&report).unwrap(), report_bytes);
    assert_eq!(leftovers(&w.path("out")), Vec::<String>::new());
    assert!(!w.path("out/sentinel.lock").exists());
}

#[test]
fn a_second_writer_fails_at_once_and_a_reader_is_told_why() {
    let w = Workdir::new();
    w.ok(&["--quiet", "generate", "--devices", "1000", "--as-of", AS_OF]);
    let mut child = spawn(
        &w,
        &["--quiet", "run", "--devices", "400000", "--as-of", AS_OF],
    );
    let lock = w.path("out/sentinel.lock");
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != pid {
        assert!(Instant::now() < deadline, "the run never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    for args in [
        vec!["generate", "--devices", "10"],
        vec!["recover", "--input", "out/raw/telemetry.parquet"],
        vec!["report"],
        vec!["run", "--devices", "10"],
    ] {
        let started = Instant::now();
        let err = w.fails(&args, 1);
        assert!(
            err.contains("in use by another sentinel process") && err.contains(&pid),
            "{args:?}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fails at once, not after waiting"
        );
    }
    // A reader beside the writer either reads or says why it cannot.
    let out = w
        .cmd(&["analyze", "--query", "rollout_gate"])
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no database") || err.contains("lock"), "{err}");
        assert_eq!(out.status.code(), Some(1));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the first writer was not disturbed");
    assert!(!lock.exists(), "the lock file goes with its holder");
    w.ok(&["--quiet", "report"]);
}

/// Writes a one-row Parquet file from the fixture's first row with `change` applied.
fn parquet_with(w: &Workdir, name: &str, change: impl FnOnce(&mut DataFrame)) -> String {
    let fixture = include_str!("../fixtures/fleet.csv");
    let two_lines: String = fixture.lines().take(2).collect::<Vec<_>>().join("\n");
    std::fs::write(w.path("one.csv"), two_lines).unwrap();
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(w.path("one.csv")))
        .unwrap()
        .finish()
        .unwrap();
    std::fs::remove_file(w.path("one.csv")).unwrap();
    change(&mut df);
    ParquetWriter::new(std::fs::File::create(w.path(name)).unwrap())
        .finish(&mut df)
        .unwrap();
    name.to_string()
}

fn recover_summary(w: &Workdir, input: &str) -> serde_json::Value {
    let out = w.ok(&[
        "--json", "--quiet", "recover", "--input", input, "--as-of", AS_OF,
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn broken_files_are_rejected_with_the_file_named_and_nothing_written() {
    let w = Workdir::new();
    let good = parquet_with(&w, "good.parquet", |_| {});
    let bytes = std::fs::read(w.path(&good)).unwrap();
    std::fs::write(w.path("truncated.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(w.path("zero.parquet"), b"").unwrap();
    std::fs::write(
        w.path("garbage.parquet"),
        b"\x00\x01garbage\xff".repeat(100),
    )
    .unwrap();
    std::fs::create_dir(w.path("nothing_here")).unwrap();
    std::fs::write(w.path("nothing_here/readme.txt"), "no telemetry").unwrap();
    for (input, what) in [
        ("truncated.parquet", "truncated.parquet"),
        ("zero.parquet", "zero.parquet"),
        ("garbage.parquet", "garbage.parquet"),
        ("missing.parquet", "missing.parquet"),
        ("nothing_here", "nothing_here"),
    ] {
        let err = w.fails(&["recover", "--input", input, "--as-of", AS_OF], 1);
        assert!(err.contains(what), "{input}: {err}");
        assert!(!err.contains("panicked"), "{input}: {err}");
        assert!(!w.path("out").exists(), "{input} left {:?}", w.files());
    }
}

#[test]
fn hostile_values_are_quarantined_with_reasons_not_crashes() {
    let w = Workdir::new();
    // Non-UTF-8 bytes in a CSV field.
    let header = include_str!("../fixtures/fleet.csv")
        .lines()
        .next()
        .unwrap();
    let first = include_str!("../fixtures/fleet.csv")
        .lines()
        .nth(1)
        .unwrap();
    let mut bytes = format!("{header}\n{first}\n").into_bytes();
    bytes.extend_from_slice(b"D\xff\xfe01");
    bytes.extend_from_slice(first.strip_prefix("D01").unwrap().as_bytes());
    bytes.push(b'\n');
    std::fs::write(w.path("latin1.csv"), bytes).unwrap();
    // They become U+FFFD, which no column accepts: the row is quarantined, the file is read.
    let s = recover_summary(&w, "latin1.csv");
    assert_eq!(
        (s["rows_in"].as_u64(), s["rows_clean"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(s["quarantined_by_reason"]["TYPE_MISMATCH"], 1, "{s}");

    // A 1 MB device id is quarantined as a type mismatch.
    let huge = "A".repeat(1 << 20);
    std::fs::write(
        w.path("huge.csv"),
        format!(
            "{header}\n{first}\n{huge}{}\n",
            first.strip_prefix("D01").unwrap()
        ),
    )
    .unwrap();
    let s = recover_summary(&w, "huge.csv");
    assert_eq!(s["rows_quarantined"], 1);
    assert_eq!(s["quarantined_by_reason"]["TYPE_MISMATCH"], 1);

    // NaN and infinities in typed float columns are out of range.
    for (name, value) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
    ] {
        let file = parquet_with(&w, &format!("{name}.parquet"), |df| {
            df.with_column(Column::new("battery_pct".into(), [value]))
                .unwrap();
        });
        let s = recover_summary(&w, &file);
        assert_eq!(s["quarantined_by_reason"]["OUT_OF_RANGE"], 1, "{name}: {s}");
    }

    // Timestamps at the edges of what a typed column can hold: quarantined, not overflowed. Within
    // 1677-2262 (nanoseconds) they are far future or past; beyond year 9999 they have no RFC 3339
    // spelling at all.
    for (name, value, unit) in [
        ("max_ns", i64::MAX, TimeUnit::Nanoseconds),
        ("min_ns", i64::MIN, TimeUnit::Nanoseconds),
        ("max_us", i64::MAX, TimeUnit::Microseconds),
        ("min_ms", i64::MIN, TimeUnit::Milliseconds),
    ] {
        let file = parquet_with(&w, &format!("{name}.parquet"), |df| {
            let ts = Int64Chunked::from_vec("reported_at".into(), vec![value])
                .into_datetime(unit, None)
                .into_column();
            df.with_column(ts).unwrap();
        });
        let s = recover_summary(&w, &file);
        assert_eq!(s["rows_quarantined"], 1, "{name}: {s}");
        let reason = if name.ends_with("ns") {
            "BAD_TIMESTAMP"
        } else {
            "TYPE_MISMATCH"
        };
        assert_eq!(s["quarantined_by_reason"][reason], 1, "{name}: {s}");
    }
    // And as text, beyond any calendar the parser knows.
    for text in [
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "+275760-09-13T00:00:00Z",
    ] {
        std::fs::write(
            w.path("far.csv"),
            format!(
                "{header}\n{}\n",
                first.replace("2026-11-25T11:30:00Z", text)
            ),
        )
        .unwrap();
        let s = recover_summary(&w, "far.csv");
        assert_eq!(s["rows_quarantined"], 1, "{text}: {s}");
    }
}

/// Any text in any column, nulls anywhere: a value from the column's own vocabulary, something
/// close to it, or anything at all.
fn cell() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => prop_oneof![
            Just("us-east"), Just("SEN-100"), Just("4.2.0"), Just("v4.1.2"), Just("succeeded"),
            Just("FAILED"), Just("E_FLASH_WRITE"), Just("100"), Just("-101"), Just("1e2"),
            Just("nan"), Just("-inf"), Just("3.0"), Just("2026-11-25T11:30:00Z"),
            Just("2026-11-25 11:30:00.123456789+05:30"), Just("D01"), Just(" gw-1 "),
        ]
        .prop_map(|s| Some(s.to_string())),
        3 => any::<String>().prop_map(Some),
        1 => "[0-9eE+.-]{0,12}".prop_map(Some),
        1 => "[0-9T:Z+. -]{0,30}".prop_map(Some),
    ]
}

fn rows() -> impl Strategy<Value = Vec<Vec<Option<String>>>> {
    let row = proptest::collection::vec(cell(), sentinel::schema::COLUMNS.len());
    proptest::collection::vec(row, 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Arbitrary rows through ingest (NDJSON), sanitize and classify: no panic, every row clean
    /// or quarantined and never both, every quarantined row with a reason, one state per device.
    #[test]
    fn arbitrary_rows_are_accounted_for(rows in rows()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.ndjson");
        let mut text = String::new();
        for row in &rows {
            let obj: serde_json::Map<String, serde_json::Value> = sentinel::schema::COLUMNS
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.to_string(), v.clone().map_or(serde_json::Value::Null, serde_json::Value::String)))
                .collect();
            text.push_str(&serde_json::Value::Object(obj).to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let config = Config::default();
        let input = Input { path, format: Format::Ndjson };
        let annotated = sanitize::annotate(ingest::read(&input, 0).unwrap(), &config, as_of_us())
            .unwrap()
            .collect()
            .unwrap();
        prop_assert_eq!(annotated.height(), rows.len());
        let clean = sanitize::clean(annotated.clone().lazy()).collect().unwrap();
        let triage = sanitize::triage(annotated.lazy()).collect().unwrap();
        prop_assert_eq!(clean.height() + triage.height(), rows.len());
        let mut sources: Vec<u64> = clean
            .column("source_row").unwrap().cast(&DataType::UInt64).unwrap().u64().unwrap()
            .into_no_null_iter()
            .chain(triage.column("source_row").unwrap().cast(&DataType::UInt64).unwrap().u64().unwrap().into_no_null_iter())
            .collect();
        sources.sort_unstable();
        prop_assert_eq!(sources, (0..rows.len() as u64).collect::<Vec<_>>());
        let reasons = triage.column("primary_reason").unwrap();
        prop_assert_eq!(reasons.null_count(), 0);
        let states = classify::classify(
            classify::latest_reports(clean.clone().lazy()).unwrap(),
            &config,
            as_of_us(),
        )
        .collect()
        .unwrap();
        let devices = clean.column("device_id").unwrap().n_unique().unwrap();
        prop_assert_eq!(states.height(), devices);
        prop_assert_eq!(states.column("state").unwrap().null_count(), 0);
    }
}
