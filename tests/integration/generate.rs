//! `sentinel generate`: determinism, the column contract, clean data, reachable states, the
//! planted bottlenecks, and bad arguments.

use std::collections::{BTreeMap, HashMap};

use sentinel::config::Config;
use sentinel::generate::bottlenecks;
use sentinel::schema;

use crate::oracle::{self, State};
use crate::util::{AS_OF, Workdir, as_of_us, read_parquet};

#[test]
fn same_arguments_give_the_same_bytes_and_another_seed_differs() {
    let (a, b, c) = (Workdir::new(), Workdir::new(), Workdir::new());
    let fa = std::fs::read(a.generate(40_000, 7)).unwrap();
    let fb = std::fs::read(b.generate(40_000, 7)).unwrap();
    let fc = std::fs::read(c.generate(40_000, 8)).unwrap();
    assert!(
        fa == fb,
        "same devices, seed and as_of must give the same bytes"
    );
    assert!(fa != fc, "another seed must give another fleet");
}

#[test]
fn thread_count_does_not_change_the_bytes() {
    let (a, b) = (Workdir::new(), Workdir::new());
    // Several blocks of 131,072 devices, so that threads really share the work.
    let args = |threads: &'static str| {
        vec![
            "--quiet",
            "--threads",
            threads,
            "generate",
            "--devices",
            "300000",
            "--as-of",
            AS_OF,
        ]
    };
    a.ok(&args("1"));
    b.ok(&args("2"));
    let fa = std::fs::read(a.path("out/raw/telemetry.parquet")).unwrap();
    let fb = std::fs::read(b.path("out/raw/telemetry.parquet")).unwrap();
    assert!(fa == fb);
}

#[test]
fn columns_follow_the_contract_in_name_type_and_order() {
    let w = Workdir::new();
    let df = read_parquet(&w.generate(1_000, 1));
    let got: Vec<(String, String)> = df
        .schema()
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
    let want: Vec<(String, String)> = schema::canonical_schema()
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0].0, "device_id");
    assert_eq!(
        got[16],
        ("reported_at".to_string(), "datetime[μs]".to_string())
    );
}

#[test]
fn fleet_is_clean_reaches_every_state_and_plants_the_bottlenecks() {
    let w = Workdir::new();
    let devices = 60_000;
    let df = read_parquet(&w.generate(devices, 42));
    let config = Config::default();
    let as_of = as_of_us();
    let rows = oracle::rows(&df);

    // Zero rows that SPEC section 4 would quarantine.
    for (i, r) in rows.iter().enumerate() {
        let p = oracle::row_problems(r, &config, as_of);
        assert!(p.is_empty(), "row {i} would be quarantined: {p:?} {r:?}");
    }
    assert!(oracle::duplicates(&rows).is_empty());

    // Every device appears; about 10% of them with 2 or 3 reports.
    let latest = oracle::latest(&rows);
    assert_eq!(latest.len() as u64, devices);
    let mut per_device: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        *per_device
            .entry(r.device_id.as_deref().unwrap())
            .or_default() += 1;
    }
    let multi = per_device.values().filter(|&&n| n > 1).count() as f64 / devices as f64;
    assert!((0.08..=0.12).contains(&multi), "multi-report share {multi}");
    assert!(per_device.values().all(|&n| (1..=3).contains(&n)));

    // Every state occurs; the overall failure rate is 2-4%.
    let states: Vec<(State, &oracle::Row)> = latest
        .values()
        .map(|&i| (oracle::state(&rows[i], &config, as_of), &rows[i]))
        .collect();
    let mut by_state: BTreeMap<State, usize> = BTreeMap::new();
    for (s, _) in &states {
        *by_state.entry(*s).or_default() += 1;
    }
    assert_eq!(by_state.len(), 7, "states reached: {by_state:?}");
    let failed = states.iter().filter(|(s, _)| s.failed()).count() as f64 / devices as f64;
    assert!((0.02..=0.04).contains(&failed), "failure rate {failed}");

    // The planted bottlenecks.
    let planted = bottlenecks(&config);
    let rate = |filter: &dyn Fn(&oracle::Row) -> bool| {
        let group: Vec<_> = states.iter().filter(|(_, r)| filter(r)).collect();
        let failed = group.iter().filter(|(s, _)| s.failed()).count();
        (failed as f64 / group.len().max(1) as f64, group.len())
    };
    // Weak-signal region: over the 5% gate; most regions far below it.
    let (weak, weak_n) = rate(&|r| r.region.as_deref() == Some(planted.weak_region.as_str()));
    assert!(
        weak > 0.08 && weak_n >= 100,
        "weak region {weak} over {weak_n}"
    );
    let below = config
        .regions
        .iter()
        .filter(|reg| rate(&|r| r.region.as_deref() == Some(reg.as_str())).0 < 0.04)
        .count();
    assert!(below >= 9, "only {below} regions below 4%");
    // Degraded gateway: the worst gateway of its region by far.
    let region = planted.degraded_gateway_region.as_str();
    let gateways: Vec<String> = {
        let mut g: Vec<String> = rows
            .iter()
            .filter(|r| r.region.as_deref() == Some(region))
            .filter_map(|r| r.gateway_id.clone())
            .collect();
        g.sort();
        g.dedup();
        g
    };
    let (bad, _) = rate(&|r| r.gateway_id.as_deref() == Some(planted.degraded_gateway.as_str()));
    for g in gateways.iter().filter(|g| **g != planted.degraded_gateway) {
        let (other, _) = rate(&|r| r.gateway_id.as_deref() == Some(g.as_str()));
        assert!(
            bad > other + 0.08,
            "{} at {bad} vs {g} at {other}",
            planted.degraded_gateway
        );
    }
    // Brick-prone cohort: mostly BRICKED, far above every other (model, firmware_from) cohort.
    let cohort = |r: &oracle::Row| {
        r.hw_model.as_deref() == Some(planted.brick_model.as_str())
            && r.firmware_from.as_deref() == Some(planted.brick_firmware_from.as_str())
    };
    let bricked = states
        .iter()
        .filter(|(s, r)| cohort(r) && *s == State::Bricked)
        .count() as f64;
    let (cohort_rate, cohort_n) = rate(&cohort);
    assert!(
        bricked / cohort_n as f64 > 0.2,
        "cohort bricked share {}",
        bricked / cohort_n as f64
    );
    for model in config.models.keys() {
        for fw in ["4.1.2", "4.1.0", "4.0.3", "3.9.8", "3.7.1"] {
            if *model == planted.brick_model && fw == planted.brick_firmware_from {
                continue;
            }
            let (other, _) = rate(&|r| {
                r.hw_model.as_deref() == Some(model) && r.firmware_from.as_deref() == Some(fw)
            });
            assert!(
                cohort_rate > other + 0.15,
                "cohort {cohort_rate} vs {model}/{fw} {other}"
            );
        }
    }
}

#[test]
fn bad_arguments_fail_cleanly_and_write_nothing() {
    let w = Workdir::new();
    // Usage errors (SPEC section 10): clap's message naming the flag, exit 2.
    let err = w.fails(&["generate", "--devices", "0"], 2);
    assert!(err.contains("--devices"), "{err}");
    let err = w.fails(&["generate", "--devices", "-5"], 2);
    assert!(err.contains("--devices"), "{err}");
    let err = w.fails(&["--threads", "0", "generate"], 2);
    assert!(err.contains("--threads"), "{err}");
    let err = w.fails(&["run", "--devices", "0"], 2);
    assert!(err.contains("--devices"), "{err}");
    let err = w.fails(&["run", "--chaos-rate", "2"], 2);
    assert!(
        err.contains("--chaos-rate") && err.contains("between 0 and 1"),
        "{err}"
    );
    let err = w.fails(&["generate", "--devices", "many"], 2);
    assert!(err.contains("--devices"), "{err}");
    let err = w.fails(&["generate", "--as-of", "yesterday"], 2);
    assert!(err.contains("RFC 3339"), "{err}");
    std::fs::write(w.path("blocker"), "a file, not a folder").unwrap();
    let err = w.fails(&["generate", "--out", "blocker/telemetry.parquet"], 1);
    assert!(err.contains("blocker"), "{err}");
    assert_eq!(w.files(), vec!["blocker".to_string()]);
}

#[test]
fn json_summary_counts_devices_and_rows() {
    let w = Workdir::new();
    let out = w.ok(&[
        "--json",
        "--quiet",
        "generate",
        "--devices",
        "500",
        "--as-of",
        AS_OF,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["devices"], 500);
    let rows = read_parquet(&w.path("out/raw/telemetry.parquet")).height();
    assert_eq!(v["rows"], rows as u64);
    assert!(out.stderr.is_empty(), "--quiet prints nothing on stderr");
}

/// SPEC section 8's gate for one region: HALT, WATCH or PROCEED.
fn gate(devices: usize, failed: usize, config: &Config) -> &'static str {
    let n = devices as f64;
    let p = failed as f64 / n;
    let z = 1.959_963_984_540_054_f64;
    let high = (p + z * z / (2.0 * n) + z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt())
        / (1.0 + z * z / n);
    let g = &config.gate;
    if devices as i64 >= g.gate_min_devices && p > g.halt_failure_rate {
        "HALT"
    } else if high > g.halt_failure_rate {
        "WATCH"
    } else {
        "PROCEED"
    }
}

#[test]
fn the_default_fleet_halts_the_weak_region_and_most_regions_proceed() {
    // The built-in defaults: 10,000 devices, seed 42.
    let w = Workdir::new();
    let df = read_parquet(&w.generate(10_000, 42));
    let config = Config::default();
    let rows = oracle::rows(&df);
    let mut by_region: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for &i in oracle::latest(&rows).values() {
        let e = by_region
            .entry(rows[i].region.clone().unwrap())
            .or_default();
        e.0 += 1;
        e.1 += usize::from(oracle::state(&rows[i], &config, as_of_us()).failed());
    }
    let decisions: BTreeMap<&str, &str> = by_region
        .iter()
        .map(|(r, &(n, f))| (r.as_str(), gate(n, f, &config)))
        .collect();
    let weak = bottlenecks(&config).weak_region;
    assert_eq!(decisions[weak.as_str()], "HALT", "{decisions:?}");
    let proceed = decisions.values().filter(|d| **d == "PROCEED").count();
    assert!(
        proceed >= 9,
        "only {proceed} of 12 regions PROCEED: {decisions:?} {by_region:?}"
    );
    assert_eq!(
        decisions.values().filter(|d| **d == "HALT").count(),
        1,
        "{decisions:?}"
    );
}
