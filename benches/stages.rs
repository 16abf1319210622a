//! One benchmark per stage, each on fixed-seed data built outside the timed loop.
//!
//! `cargo bench --bench stages` prints the median time per iteration and devices (or rows) per
//! second. The README quotes the figures and the machine.

use divan::Bencher;
use divan::counter::ItemsCount;
use sentinel::analytics::{QUERIES, Session};
use sentinel::chaos::{ChaosOptions, chaos};
use sentinel::config::Config;
use sentinel::generate::{GenerateOptions, generate};
use sentinel::recover::{BUCKET_ROWS, MEMORY_ROWS, RecoverOptions, recover};
use sentinel::report::report;
use sentinel::schema::parse_timestamp;
use sentinel::workspace::Workspace;

fn main() {
    // As the binary does: the runs measured keep their freed memory.
    sentinel::support::memory::keep_freed_memory();
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

/// recover: the chaos output of the 1M-device fleet (about 1.14M rows), all outputs and the run's
/// publication in the database included.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn recover_1m_devices(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let fleet = generate(&config, &generate_options(dir.path()), &|_| {}).unwrap();
    let corrupted = chaos_options(dir.path(), &fleet.path);
    let chaotic = chaos(&corrupted, &|_| {}).unwrap();
    let ws = Workspace::new(dir.path().join("out"));
    let opts = recover_options(&corrupted.out);
    bencher
        .counter(ItemsCount::new(chaotic.rows_out))
        .bench(|| recover(&config, &opts, &ws).unwrap());
}

fn recover_options(input: &std::path::Path) -> RecoverOptions {
    RecoverOptions {
        inputs: vec![input.to_path_buf()],
        as_of_us: parse_timestamp("2026-11-25T12:00:00Z").unwrap(),
        bucket_rows: BUCKET_ROWS,
        memory_rows: MEMORY_ROWS,
        skip_unknown: false,
        shard: None,
    }
}

/// A work directory holding the recovered 1M-device fleet, built outside the timed loop.
fn recovered() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let fleet = generate(&config, &generate_options(dir.path()), &|_| {}).unwrap();
    let corrupted = chaos_options(dir.path(), &fleet.path);
    chaos(&corrupted, &|_| {}).unwrap();
    let ws = Workspace::new(dir.path().join("out"));
    recover(&config, &recover_options(&corrupted.out), &ws).unwrap();
    (dir, ws)
}

/// analyze: all nine queries on the 1M-device run, read-only session included.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn analyze_1m_devices(bencher: Bencher) {
    let (_dir, ws) = recovered();
    bencher.bench(|| {
        let session = Session::open(&ws, None, 2).unwrap();
        QUERIES
            .iter()
            .map(|q| session.builtin(*q).unwrap().rows.len())
            .sum::<usize>()
    });
}

/// report: charts (PNG and SVG), report.html, report.md and summary.json of the 1M-device run.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn report_1m_devices(bencher: Bencher) {
    let (_dir, ws) = recovered();
    bencher.bench(|| report(&ws, None, 2).unwrap());
}

/// recover's outputs of the 1M-device run, read back outside the timed loops: the chaos input
/// (its path), the three stage frames by file name, and the plan.
struct FloorData {
    _dir: tempfile::TempDir,
    input: std::path::PathBuf,
    outputs: Vec<(&'static str, polars::prelude::DataFrame)>,
    plan: polars::prelude::DataFrame,
}

fn floor_data() -> FloorData {
    use polars::prelude::SerReader;
    let (dir, ws) = recovered();
    let input = dir.path().join("telemetry.chaos.parquet");
    let stage = std::fs::read_dir(ws.stage_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let outputs = ["clean.parquet", "triage.parquet", "device_state.parquet"]
        .into_iter()
        .map(|name| (name, read_parquet(&stage.join(name))))
        .collect();
    let plan = polars::prelude::CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(stage.join("recovery_plan.csv")))
        .unwrap()
        .finish()
        .unwrap();
    FloorData {
        _dir: dir,
        input,
        outputs,
        plan,
    }
}

fn read_parquet(path: &std::path::Path) -> polars::prelude::DataFrame {
    use polars::prelude::{ParquetReader, SerReader};
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// Writes one of the floor's outputs into `dir` as the floor does.
fn floor_write(data: &FloorData, part: &str, dir: &std::path::Path) {
    use polars::prelude::{CsvWriter, SerWriter};
    if part == "recovery_plan.csv" {
        let mut plan = data.plan.clone();
        CsvWriter::new(std::fs::File::create(dir.join(part)).unwrap())
            .finish(&mut plan)
            .unwrap();
        return;
    }
    let (name, df) = data.outputs.iter().find(|(n, _)| *n == part).unwrap();
    let mut df = df.clone();
    sentinel::support::parquet::writer(std::fs::File::create(dir.join(name)).unwrap())
        .set_parallel(true)
        .finish(&mut df)
        .unwrap();
}

/// The floor under recover: read the same 1.14M-row chaos input and write outputs of the same
/// shape (recover's own clean, triage and device_state frames of that input, and its plan) with
/// the same writer settings, doing nothing else. recover_1m_devices over this is how far recover
/// is from its I/O.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn recover_floor_1m_devices(bencher: Bencher) {
    let data = floor_data();
    let out = tempfile::tempdir().unwrap();
    let rows = read_parquet(&data.input).height() as u64;
    bencher.counter(ItemsCount::new(rows)).bench(|| {
        let raw = read_parquet(&data.input);
        for part in [
            "clean.parquet",
            "triage.parquet",
            "device_state.parquet",
            "recovery_plan.csv",
        ] {
            floor_write(&data, part, out.path());
        }
        raw.height()
    });
}

/// The floor's parts one at a time: reading the input, and writing each output.
#[divan::bench(
    sample_count = 3,
    sample_size = 1,
    args = ["read input", "clean.parquet", "triage.parquet", "device_state.parquet", "recovery_plan.csv"]
)]
fn recover_floor_part(bencher: Bencher, part: &str) {
    let data = floor_data();
    let out = tempfile::tempdir().unwrap();
    bencher.bench(|| {
        if part == "read input" {
            read_parquet(&data.input).height();
        } else {
            floor_write(&data, part, out.path());
        }
    });
}
