//! One benchmark per stage, each on fixed-seed data built outside the timed loop.
//!
//! `cargo bench --bench stages` prints the median time per iteration and devices (or rows) per
//! second. The README quotes the figures and the machine.

use divan::Bencher;
use divan::counter::ItemsCount;
use sentinel::chaos::{ChaosOptions, chaos};
use sentinel::config::Config;
use sentinel::generate::{GenerateOptions, generate};
use sentinel::recover::{RecoverOptions, recover};
use sentinel::schema::parse_timestamp;
use sentinel::workspace::Workspace;

fn main() {
    divan::main();
}

const DEVICES: u64 = 1_000_000;

fn generate_options(dir: &std::path::Path) -> GenerateOptions {
    GenerateOptions {
        devices: DEVICES,
        seed: 42,
        as_of_us: parse_timestamp("2026-11-25T12:00:00Z").unwrap(),
        out: dir.join("telemetry.parquet"),
    }
}

/// Chaos at rate 0.05 of `input` into `dir`.
fn chaos_options(dir: &std::path::Path, input: &std::path::Path) -> ChaosOptions {
    ChaosOptions {
        input: input.to_path_buf(),
        out: dir.join("telemetry.chaos.parquet"),
        log: dir.join("chaos_log.parquet"),
        rate: 0.05,
        seed: 42,
    }
}

/// generate: 1M devices into Parquet.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn generate_1m_devices(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let opts = generate_options(dir.path());
    bencher
        .counter(ItemsCount::new(DEVICES))
        .bench(|| generate(&config, &opts, &|_| {}).unwrap());
}

/// chaos: the 1M-device fleet (about 1.13M rows) at rate 0.05.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn chaos_1m_devices(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let fleet = generate(&Config::default(), &generate_options(dir.path()), &|_| {}).unwrap();
    let opts = chaos_options(dir.path(), &fleet.path);
    bencher
        .counter(ItemsCount::new(fleet.rows))
        .bench(|| chaos(&opts, &|_| {}).unwrap());
}

/// recover: the chaos output of the 1M-device fleet (about 1.14M rows), all outputs and the
/// DuckDB load included.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn recover_1m_devices(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let fleet = generate(&config, &generate_options(dir.path()), &|_| {}).unwrap();
    let corrupted = chaos_options(dir.path(), &fleet.path);
    let chaotic = chaos(&corrupted, &|_| {}).unwrap();
    let ws = Workspace::new(dir.path().join("out"));
    let opts = RecoverOptions {
        inputs: vec![corrupted.out.clone()],
        as_of_us: parse_timestamp("2026-11-25T12:00:00Z").unwrap(),
    };
    bencher
        .counter(ItemsCount::new(chaotic.rows_out))
        .bench(|| recover(&config, &opts, &ws).unwrap());
}
