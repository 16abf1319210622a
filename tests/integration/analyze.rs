//! `sentinel analyze`: the planted bottlenecks come out on top, the trend across runs, snapshots
//! of every query on the fixture, users' own SQL (read-only) and bad input.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::{AS_OF, Workdir};

const FIXTURE: &str = include_str!("../fixtures/fleet.csv");

/// The built-in queries, in the order `analyze` prints them.
const QUERIES: [&str; 9] = [
    "region_failure_rank",
    "cohort_bottlenecks",
    "gateway_hotspots",
    "error_mix",
    "rollout_gate",
    "state_matrix",
    "recovery_roi",
    "run_trend",
    "triage_summary",
];

/// `analyze --query <name> --format json` as rows.
fn query(w: &Workdir, name: &str, extra: &[&str]) -> Vec<BTreeMap<String, Value>> {
    let mut args = vec!["analyze", "--query", name, "--format", "json"];
    args.extend_from_slice(extra);
    let out = w.ok(&args);
    serde_json::from_slice(&out.stdout).expect("one JSON array of objects")
}

fn text(row: &BTreeMap<String, Value>, key: &str) -> String {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {row:?}"))
        .to_string()
}

fn number(row: &BTreeMap<String, Value>, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {row:?}"))
}

/// A generated fleet without chaos, recovered at [`AS_OF`].
fn recovered_fleet(devices: u64) -> Workdir {
    let w = Workdir::new();
    let raw = w.generate(devices, 42);
    w.recover(&raw);
    w
}

#[test]
fn planted_bottlenecks_come_out_on_top() {
    let w = recovered_fleet(60_000);

    let hotspots = query(&w, "gateway_hotspots", &[]);
    let us_east: Vec<_> = hotspots
        .iter()
        .filter(|r| text(r, "region") == "us-east")
        .collect();
    assert_eq!(text(us_east[0], "gateway_id"), "gw-us-east-07");
    assert_eq!(number(us_east[0], "rank"), 1.0);
    assert!(number(us_east[0], "lift") > 3.0, "{:?}", us_east[0]);
    // Ranks restart in every region, and no region lists more than five gateways.
    for region in ["us-east", "eu-west", "ap-south"] {
        let ranks: Vec<f64> = hotspots
            .iter()
            .filter(|r| text(r, "region") == region)
            .map(|r| number(r, "rank"))
            .collect();
        assert_eq!(ranks.first(), Some(&1.0), "{region}");
        assert!(ranks.len() <= 5, "{region}: {ranks:?}");
    }

    // The brick-prone cohort is planted in every region and tops each of them.
    let cohorts = query(&w, "cohort_bottlenecks", &[]);
    let mut regions_seen = 0;
    for row in cohorts.iter().filter(|r| number(r, "rank") == 1.0) {
        assert_eq!(
            (text(row, "hw_model"), text(row, "firmware_from")),
            ("SEN-100".to_string(), "3.9.8".to_string()),
            "{row:?}"
        );
        assert!(number(row, "devices") >= 30.0, "min_cohort: {row:?}");
        regions_seen += 1;
    }
    assert_eq!(regions_seen, 12);
    assert!(cohorts.iter().all(|r| number(r, "rank") <= 3.0));

    // The weak-signal region is the one region the gate halts.
    let gate = query(&w, "rollout_gate", &[]);
    assert_eq!(gate.len(), 12);
    let halted: Vec<String> = gate
        .iter()
        .filter(|r| text(r, "decision") == "HALT")
        .map(|r| text(r, "region"))
        .collect();
    assert_eq!(halted, ["ap-south"]);
    assert_eq!(
        text(&gate[0], "region"),
        "ap-south",
        "HALT regions come first"
    );

    // ap-south also ranks first by the Wilson lower bound.
    let ranked = query(&w, "region_failure_rank", &[]);
    assert_eq!(text(&ranked[0], "region"), "ap-south");
    for row in &ranked {
        let (low, rate, high) = (
            number(row, "wilson_low"),
            number(row, "failure_rate"),
            number(row, "wilson_high"),
        );
        assert!(low <= rate && rate <= high, "{row:?}");
    }
}

#[test]
fn run_trend_shows_each_regions_change_between_runs() {
    let w = Workdir::new();
    let raw = w.generate(5_000, 7);
    let raw = raw.to_str().unwrap();
    // A day later, every device that has not been heard from since goes silent: failures rise.
    w.ok(&["--quiet", "recover", "--input", raw, "--as-of", AS_OF]);
    w.ok(&[
        "--quiet",
        "recover",
        "--input",
        raw,
        "--as-of",
        "2026-11-26T12:00:00Z",
    ]);

    let first = query(&w, "region_failure_rank", &[]);
    let trend = query(&w, "run_trend", &[]);
    assert_eq!(trend.len(), 24, "12 regions x 2 runs");
    let runs: Vec<String> = trend.iter().map(|r| text(r, "as_of")).collect();
    assert!(
        runs[..12].iter().all(|t| t == "2026-11-25T12:00:00Z"),
        "{runs:?}"
    );
    assert!(
        runs[12..].iter().all(|t| t == "2026-11-26T12:00:00Z"),
        "{runs:?}"
    );
    for row in &trend[..12] {
        assert!(
            row["delta"].is_null(),
            "a region's first run has no delta: {row:?}"
        );
    }
    let earlier: BTreeMap<String, f64> = trend[..12]
        .iter()
        .map(|r| (text(r, "region"), number(r, "failure_rate")))
        .collect();
    for row in &trend[12..] {
        let region = text(row, "region");
        let want = number(row, "failure_rate") - earlier[&region];
        assert!((number(row, "delta") - want).abs() < 2e-6, "{row:?}");
        assert!(number(row, "delta") > 0.0, "silence is failure: {row:?}");
    }
    // The latest run is analyzed by default; the earlier one by --run-id.
    let ledger_ids: Vec<String> = trend.iter().map(|r| text(r, "run_id")).collect();
    let (old_id, new_id) = (ledger_ids[0].clone(), ledger_ids[12].clone());
    assert_ne!(old_id, new_id);
    let old = query(&w, "region_failure_rank", &["--run-id", &old_id]);
    assert_ne!(first, old, "the default is the latest run");
    let old_trend = query(&w, "run_trend", &["--run-id", &old_id]);
    assert_eq!(old_trend.len(), 12, "the trend stops at the analyzed run");
    for row in &old {
        assert_eq!(number(row, "failure_rate"), earlier[&text(row, "region")]);
    }
}

/// The fixture recovered with thresholds small enough for its 22 devices to form cohorts.
fn fixture_run() -> Workdir {
    let w = Workdir::new();
    std::fs::write(w.path("fleet.csv"), FIXTURE).unwrap();
    std::fs::write(
        w.path("small.toml"),
        "[gate]\nhalt_failure_rate = 0.25\ngate_min_devices = 4\nmin_cohort = 2\n",
    )
    .unwrap();
    w.ok(&[
        "--quiet",
        "--config",
        "small.toml",
        "recover",
        "--input",
        "fleet.csv",
        "--as-of",
        AS_OF,
    ]);
    w
}

#[test]
fn every_query_matches_its_snapshot_on_the_fixture() {
    let w = fixture_run();
    let run_id = query(&w, "run_trend", &[])[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for name in QUERIES {
        let out = w.ok(&["analyze", "--query", name]);
        let shown = String::from_utf8(out.stdout)
            .unwrap()
            .replace(&run_id, "[run_id________]");
        insta::assert_snapshot!(name, shown);
    }
    // The whole set as CSV, one section per query.
    let out = w.ok(&["analyze", "--format", "csv"]);
    let csv = String::from_utf8(out.stdout).unwrap();
    let sections: Vec<&str> = csv.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(sections, QUERIES.map(|q| format!("# {q}")));
}

#[test]
fn json_has_every_documented_column_in_order() {
    let w = fixture_run();
    let columns: [(&str, &[&str]); 9] = [
        (
            "region_failure_rank",
            &[
                "region",
                "devices",
                "failed",
                "failure_rate",
                "wilson_low",
                "wilson_high",
                "rank",
            ],
        ),
        (
            "cohort_bottlenecks",
            &[
                "region",
                "hw_model",
                "firmware_from",
                "firmware_target",
                "devices",
                "failed",
                "failure_rate",
                "wilson_low",
                "rank",
            ],
        ),
        (
            "gateway_hotspots",
            &[
                "region",
                "gateway_id",
                "devices",
                "failed",
                "failure_rate",
                "lift",
                "rank",
            ],
        ),
        (
            "error_mix",
            &["region", "error_code", "devices", "share", "rank"],
        ),
        (
            "rollout_gate",
            &[
                "region",
                "devices",
                "failed",
                "failure_rate",
                "wilson_high",
                "decision",
            ],
        ),
        (
            "state_matrix",
            &["region", "hw_model", "devices", "failed", "failure_rate"],
        ),
        (
            "recovery_roi",
            &[
                "region",
                "action",
                "devices",
                "cost_usd",
                "truck_rolls_avoided",
                "cost_avoided_usd",
                "roi",
            ],
        ),
        (
            "run_trend",
            &["run_id", "as_of", "region", "failure_rate", "delta"],
        ),
        (
            "triage_summary",
            &["primary_reason", "column", "rows", "blind_devices"],
        ),
    ];
    // All queries at once: one object keyed by query name, each an array of objects whose keys
    // come in the documented order.
    let out = w.ok(&["--json", "analyze"]);
    let all: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.keys().count(), 9);
    for (name, want) in columns {
        let rows = all[name].as_array().unwrap();
        assert!(!rows.is_empty(), "{name} is empty on the fixture");
        let keys = rows[0].as_object().unwrap();
        assert!(
            want.iter().all(|k| keys.contains_key(*k)),
            "{name}: {keys:?}"
        );
        // The keys' order, read from the text of the query's first object.
        let out = w.ok(&["analyze", "--query", name, "--format", "json"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let first = &text[..text.find('}').unwrap()];
        let at: Vec<usize> = want
            .iter()
            .map(|k| {
                first
                    .find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{name}.{k}"))
            })
            .collect();
        assert!(at.windows(2).all(|p| p[0] < p[1]), "{name}: {first}");
    }
    // The fixture's triage: 11 quarantined rows, 7 blind devices.
    let triage = &all["triage_summary"].as_array().unwrap();
    let rows: f64 = triage.iter().map(|r| r["rows"].as_f64().unwrap()).sum();
    assert_eq!(rows, 11.0);
}

#[test]
fn users_sql_runs_read_only_without_external_access() {
    let w = fixture_run();
    std::fs::write(
        w.path("mine.sql"),
        "-- devices per state of the analyzed run\n\
         SELECT state, count(*) AS devices FROM device_state\n\
         WHERE run_id = (SELECT run_id FROM params) GROUP BY state ORDER BY state;\n",
    )
    .unwrap();
    let rows = query(&w, "mine.sql", &[]);
    let total: f64 = rows.iter().map(|r| number(r, "devices")).sum();
    assert_eq!(total, 22.0);

    for (file, sql) in [
        ("write.sql", "DELETE FROM device_state"),
        ("create.sql", "CREATE TABLE x AS SELECT 1"),
        ("file.sql", "SELECT * FROM read_csv('fleet.csv')"),
        ("copy.sql", "COPY (SELECT 1) TO 'leak.csv'"),
        ("attach.sql", "ATTACH 'other.duckdb'"),
        ("unlock.sql", "SET enable_external_access = true"),
    ] {
        std::fs::write(w.path(file), sql).unwrap();
        let err = w.fails(&["analyze", "--query", file], 1);
        assert!(err.contains(file), "{file}: {err}");
    }
    assert!(!w.path("leak.csv").exists());
    assert!(!w.path("other.duckdb").exists());
    // Nothing was changed: the run still has its 22 devices.
    let rows = query(&w, "mine.sql", &[]);
    assert_eq!(rows.iter().map(|r| number(r, "devices")).sum::<f64>(), 22.0);
}

#[test]
fn bad_input_is_a_clear_error() {
    let empty = Workdir::new();
    let err = empty.fails(&["analyze"], 1);
    assert!(
        err.contains("no database") && err.contains("sentinel.duckdb"),
        "{err}"
    );

    let w = fixture_run();
    let err = w.fails(&["analyze", "--query", "no_such_query"], 1);
    assert!(
        err.contains("no_such_query") && err.contains("rollout_gate"),
        "{err}"
    );
    std::fs::write(w.path("broken.sql"), "SELEC region FROM device_state").unwrap();
    let err = w.fails(&["analyze", "--query", "broken.sql"], 1);
    assert!(
        err.contains("broken.sql") && err.contains("syntax error"),
        "{err}"
    );
    let err = w.fails(&["analyze", "--run-id", "0123456789abcdef"], 1);
    assert!(
        err.contains("0123456789abcdef") && err.contains("does not exist"),
        "{err}"
    );
    w.fails(&["analyze", "--format", "xml"], 2);
}
