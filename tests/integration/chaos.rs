//! `sentinel chaos`: determinism, a log that explains every changed cell and only those, benign
//! noise, type changes, and bad input.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;
use sentinel::chaos::ChaosKind;
use sentinel::schema;

use crate::util::{Workdir, read_parquet};

#[derive(Debug, Clone)]
struct Entry {
    column: String,
    kind: String,
    before: Option<String>,
    after: Option<String>,
    expected_reason: Option<String>,
    input_row: u64,
    inserted: bool,
}

fn cell(df: &DataFrame, column: &str, row: usize) -> Option<String> {
    schema::value_text(&df.column(column).unwrap().get(row).unwrap())
}

fn log_entries(df: &DataFrame) -> BTreeMap<u64, Entry> {
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        let text = |c: &str| cell(df, c, i);
        let source_row: u64 = text("source_row").unwrap().parse().unwrap();
        let entry = Entry {
            column: text("column").unwrap(),
            kind: text("kind").unwrap(),
            before: text("before"),
            after: text("after"),
            expected_reason: text("expected_reason"),
            input_row: text("input_row").unwrap().parse().unwrap(),
            inserted: df
                .column("inserted")
                .unwrap()
                .bool()
                .unwrap()
                .get(i)
                .unwrap(),
        };
        assert!(
            out.insert(source_row, entry).is_none(),
            "source_row {source_row} logged twice"
        );
    }
    out
}

fn run_chaos(w: &Workdir, rate: &str, seed: &str) -> (DataFrame, DataFrame, DataFrame) {
    w.ok(&["--quiet", "chaos", "--rate", rate, "--seed", seed]);
    (
        read_parquet(&w.path("out/raw/telemetry.parquet")),
        read_parquet(&w.path("out/raw/telemetry.chaos.parquet")),
        read_parquet(&w.path("out/raw/chaos_log.parquet")),
    )
}

/// What a benign change must normalize back to: trimmed, case-folded, without a `v` prefix.
fn normalized(column: &str, value: &str) -> String {
    let v = value.trim();
    match column {
        "firmware_from" | "firmware_target" | "firmware_reported" => {
            v.strip_prefix(['v', 'V']).unwrap_or(v).to_string()
        }
        "region" | "hw_model" | "ota_status" | "error_code" => v.to_lowercase(),
        _ => v.to_string(),
    }
}

#[test]
fn the_log_explains_every_changed_cell_and_only_those() {
    let w = Workdir::new();
    // Over 262,144 rows: more than one chunk, so row numbering must carry across chunks.
    w.generate(250_000, 3);
    let (input, output, log_df) = run_chaos(&w, "0.2", "9");
    let log = log_entries(&log_df);
    let signal: Vec<&str> = schema::COLUMNS
        .iter()
        .filter(|c| c.signal)
        .map(|c| c.name)
        .collect();

    let mut next_input = 0u64;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut changed_rows = 0;
    for j in 0..output.height() {
        let entry = log.get(&(j as u64));
        let i = match entry {
            Some(e) if e.inserted => e.input_row,
            _ => {
                next_input += 1;
                if let Some(e) = entry {
                    assert_eq!(e.input_row, next_input - 1, "output row {j}");
                }
                next_input - 1
            }
        } as usize;
        let mut differs = Vec::new();
        for c in &schema::COLUMNS {
            let (a, b) = (cell(&input, c.name, i), cell(&output, c.name, j));
            if a != b {
                differs.push((c.name, a, b));
            }
        }
        if !differs.is_empty() {
            changed_rows += 1;
        }
        let Some(e) = entry else {
            assert!(
                differs.is_empty(),
                "output row {j} changed without a log entry: {differs:?}"
            );
            continue;
        };
        *kinds.entry(e.kind.clone()).or_default() += 1;
        let kind = ChaosKind::ALL
            .iter()
            .find(|k| k.name() == e.kind)
            .expect("known kind");
        assert_eq!(
            e.expected_reason.as_deref(),
            kind.expected_reason().map(sentinel::vocab::Reason::as_str),
            "{e:?}"
        );
        match *kind {
            ChaosKind::SignalDrop => {
                assert_eq!(e.column, "*");
                for (c, _, b) in &differs {
                    assert!(signal.contains(c) && b.is_none(), "signal drop changed {c}");
                }
                for c in &signal {
                    assert_eq!(cell(&output, c, j), None);
                }
            }
            ChaosKind::ExactDuplicate => {
                assert!(e.inserted && differs.is_empty(), "{e:?} {differs:?}");
                assert_eq!(log.get(&(j as u64 - 1)).map(|p| p.kind.as_str()), None);
            }
            ChaosKind::ConflictingDuplicate if !e.inserted => {
                assert!(e.column == "*" && differs.is_empty(), "{e:?} {differs:?}");
                let copy = &log[&(j as u64 + 1)];
                assert!(copy.inserted && copy.input_row == i as u64, "{copy:?}");
            }
            _ => {
                assert_eq!(differs.len(), 1, "row {j} {e:?}: {differs:?}");
                let (c, a, b) = &differs[0];
                assert_eq!(
                    (e.column.as_str(), &e.before, &e.after),
                    (*c, a, b),
                    "row {j}"
                );
                if kind.expected_reason().is_none() {
                    let (a, b) = (a.as_deref().unwrap(), b.as_deref().unwrap());
                    assert_ne!(a, b);
                    assert_eq!(
                        normalized(c, a),
                        normalized(c, b),
                        "benign noise must stay valid"
                    );
                }
            }
        }
    }
    assert_eq!(
        next_input as usize,
        input.height(),
        "every input row reaches the output once"
    );
    assert_eq!(
        changed_rows,
        log.values()
            .filter(|e| e.kind != "exact_duplicate"
                && (e.inserted || e.kind != "conflicting_duplicate"))
            .count()
    );
    for k in ChaosKind::ALL {
        assert!(
            kinds.get(k.name()).copied().unwrap_or(0) > 10,
            "kind {} too rare: {kinds:?}",
            k.name()
        );
    }
    // About 20% of the rows.
    let corrupted = log.values().filter(|e| !e.inserted).count() as f64 / input.height() as f64;
    assert!((0.18..0.22).contains(&corrupted), "{corrupted}");
}

#[test]
fn corrupted_typed_columns_become_text_and_the_others_keep_their_type() {
    let w = Workdir::new();
    w.generate(5_000, 1);
    let (_, output, log) = run_chaos(&w, "0.1", "1");
    let text_kinds = ["type_mismatch", "unparseable_timestamp"];
    let mut texted: HashMap<String, bool> = HashMap::new();
    for i in 0..log.height() {
        if text_kinds.contains(&cell(&log, "kind", i).unwrap().as_str()) {
            texted.insert(cell(&log, "column", i).unwrap(), true);
        }
    }
    for c in &schema::COLUMNS {
        let dtype = output.column(c.name).unwrap().dtype().clone();
        if c.kind == schema::Kind::Text || texted.contains_key(c.name) {
            assert_eq!(dtype, DataType::String, "{}", c.name);
        } else {
            assert_eq!(dtype, c.kind.dtype(), "{}", c.name);
        }
    }
    assert!(
        texted.contains_key("battery_pct") && texted.contains_key("reported_at"),
        "{texted:?}"
    );
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_differs() {
    let w = Workdir::new();
    // Over 262,144 rows, so that chunks are corrupted on several threads.
    w.generate(250_000, 5);
    let read = |w: &Workdir| {
        (
            std::fs::read(w.path("out/raw/telemetry.chaos.parquet")).unwrap(),
            std::fs::read(w.path("out/raw/chaos_log.parquet")).unwrap(),
        )
    };
    w.ok(&["--quiet", "chaos", "--seed", "11"]);
    let first = read(&w);
    w.ok(&["--quiet", "--threads", "1", "chaos", "--seed", "11"]);
    assert!(read(&w) == first, "same seed, same bytes");
    w.ok(&["--quiet", "chaos", "--seed", "12"]);
    let other = read(&w);
    assert!(other.0 != first.0 && other.1 != first.1);
}

#[test]
fn rate_zero_changes_nothing() {
    let w = Workdir::new();
    w.generate(2_000, 2);
    let (input, output, log) = run_chaos(&w, "0", "4");
    assert_eq!(log.height(), 0);
    assert!(input.equals_missing(&output));
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    let w = Workdir::new();
    let err = w.fails(&["chaos"], 1);
    assert!(
        err.contains("telemetry.parquet") && err.contains("does not exist"),
        "{err}"
    );
    let err = w.fails(&["chaos", "--input", "missing.parquet"], 1);
    assert!(err.contains("missing.parquet"), "{err}");
    std::fs::write(w.path("garbage.parquet"), b"this is not parquet at all").unwrap();
    let err = w.fails(&["chaos", "--input", "garbage.parquet"], 1);
    assert!(err.contains("garbage.parquet"), "{err}");
    std::fs::write(w.path("empty.parquet"), b"").unwrap();
    let err = w.fails(&["chaos", "--input", "empty.parquet"], 1);
    assert!(err.contains("empty.parquet"), "{err}");
    assert_eq!(
        w.files(),
        vec!["empty.parquet".to_string(), "garbage.parquet".to_string()]
    );

    w.generate(100, 1);
    for rate in ["1.5", "-0.1", "NaN"] {
        let err = w.fails(&["chaos", "--rate", rate], 2);
        assert!(
            err.contains("--rate") && err.contains("between 0 and 1"),
            "{err}"
        );
    }
    let err = w.fails(&["chaos", "--rate", "lots"], 2);
    assert!(err.contains("--rate"), "{err}");
    std::fs::write(w.path("blocker"), "a file").unwrap();
    let err = w.fails(&["chaos", "--out", "blocker/x.parquet"], 1);
    assert!(err.contains("blocker"), "{err}");
    assert!(!w.path("out/raw/telemetry.chaos.parquet").exists());
    assert!(!w.path("out/raw/chaos_log.parquet").exists());
}

#[test]
fn a_missing_column_is_named() {
    let w = Workdir::new();
    let raw = w.generate(100, 1);
    let mut df = read_parquet(&raw).drop("ota_status").unwrap();
    let file = std::fs::File::create(w.path("partial.parquet")).unwrap();
    ParquetWriter::new(file).finish(&mut df).unwrap();
    let err = w.fails(&["chaos", "--input", "partial.parquet"], 1);
    assert!(
        err.contains("partial.parquet") && err.contains("ota_status"),
        "{err}"
    );
}
