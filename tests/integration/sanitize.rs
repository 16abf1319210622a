//! The sanitizer against the chaos injector: every change chaos logs earns exactly the reason it
//! expects, benign noise and untouched rows stay clean, for many seeds and rates.

use std::collections::HashMap;

use polars::prelude::*;
use proptest::prelude::*;
use sentinel::chaos::{ChaosOptions, chaos};
use sentinel::config::Config;
use sentinel::generate::{GenerateOptions, generate};
use sentinel::recover::ingest::{self, Format, Input};
use sentinel::recover::sanitize;

use crate::util::as_of_us;

fn check_chaos_reasons(devices: u64, seed: u64, rate: f64) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let raw = dir.path().join("telemetry.parquet");
    let opts = GenerateOptions {
        devices,
        seed,
        as_of_us: as_of_us(),
        out: raw.clone(),
    };
    generate(&config, &opts, &|_| {}).unwrap();
    let corrupted = dir.path().join("telemetry.chaos.parquet");
    let log_path = dir.path().join("chaos_log.parquet");
    let copts = ChaosOptions {
        input: raw,
        out: corrupted.clone(),
        log: log_path.clone(),
        rate,
        seed,
    };
    let written = chaos(&copts, &|_| {}).unwrap();

    let input = Input {
        path: corrupted,
        format: Format::Parquet,
    };
    let annotated = sanitize::annotate(ingest::read(&input, 0).unwrap(), &config, as_of_us())
        .unwrap()
        .collect()
        .unwrap();
    // Row accounting: every row is clean or quarantined, never both.
    let clean = sanitize::clean(annotated.clone().lazy())
        .collect()
        .unwrap()
        .height();
    let quarantined = sanitize::triage(annotated.clone().lazy())
        .collect()
        .unwrap()
        .height();
    assert_eq!(
        annotated.height() as u64,
        written.rows_out,
        "every row read"
    );
    assert_eq!(
        (clean + quarantined) as u64,
        written.rows_out,
        "clean xor quarantined"
    );
    let annotated = sanitize::explain(annotated.lazy()).collect().unwrap();
    let problems = annotated
        .column(sanitize::PROBLEMS)
        .unwrap()
        .str()
        .unwrap()
        .clone();
    let primary = annotated
        .column(sanitize::PRIMARY_REASON)
        .unwrap()
        .str()
        .unwrap()
        .clone();
    let rows = annotated
        .column(ingest::SOURCE_ROW)
        .unwrap()
        .u64()
        .unwrap()
        .clone();

    let log = crate::util::read_parquet(&log_path);
    let mut expected: HashMap<u64, (String, Option<String>)> = HashMap::new();
    for i in 0..log.height() {
        let row = log
            .column("source_row")
            .unwrap()
            .u64()
            .unwrap()
            .get(i)
            .unwrap();
        let kind = log
            .column("kind")
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .unwrap()
            .to_string();
        let reason = log
            .column("expected_reason")
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .map(str::to_string);
        expected.insert(row, (kind, reason));
    }
    for i in 0..annotated.height() {
        let row = rows.get(i).unwrap();
        assert_eq!(row, i as u64, "rows stay in input order");
        let got = problems.get(i).unwrap();
        match expected.get(&row) {
            Some((kind, Some(reason))) => {
                assert_eq!(
                    primary.get(i),
                    Some(reason.as_str()),
                    "row {row} ({kind}): {got}"
                );
                assert!(
                    !got.contains(';'),
                    "row {row} ({kind}) earns only {reason}: {got}"
                );
            }
            Some((kind, None)) => assert_eq!(got, "", "row {row}: benign {kind} must stay clean"),
            None => assert_eq!(got, "", "row {row}: untouched but quarantined"),
        }
    }
}

#[test]
fn a_large_chaos_run_is_fully_explained() {
    check_chaos_reasons(20_000, 42, 0.2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn every_chaos_entry_yields_its_expected_reason(seed in any::<u64>(), rate in 0.0f64..=1.0) {
        check_chaos_reasons(1_500, seed, rate);
    }
}
