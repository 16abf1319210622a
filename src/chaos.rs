//! `chaos` (SPEC section 9): corrupts about `rate` of the rows of a telemetry file the way real
//! exports go wrong, deterministically per seed, and logs every change with the reason the sanitizer
//! must give for it.
//!
//! Each input row's fate is a pure function of (seed, row index): a hash decides whether the row is
//! touched, which kind of corruption it gets, and which column and value. So the plan needs no
//! memory, the output does not depend on chunk sizes or threads, and a first pass over the row
//! indices alone can tell which typed columns will receive text. Those columns are written as text
//! (in the contract's text forms, `schema::format_float` and `schema::format_timestamp`), because a
//! Parquet column has one type for the whole file.
//!
//! Duplicates are inserted, not overwritten: an exact duplicate is a copy of a row placed right
//! after it (the copy is quarantined, the original kept); a conflicting duplicate is a copy with a
//! different `retry_count` (both rows are quarantined). Every other kind edits one row in place.
//! `source_row` in the log is the row's index in the output file, which is what the sanitizer
//! reports; `input_row` is the row of the input it came from, and `inserted` marks the copies.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use polars::prelude::{
    BooleanChunked, DataFrame, DataType, Field, Float64Chunked, IdxCa, IdxSize, Int32Chunked,
    Int64Chunked, IntoColumn, IntoSeries, NewChunkedArray, ParallelStrategy, ParquetReader,
    PlSmallStr, PolarsResult, Schema, SchemaExt, SerReader, Series, StringChunked,
    StringChunkedBuilder, TimeUnit, UInt64Chunked,
};
use serde::Serialize;

use fake::Fake;
use fake::faker::company::en::CompanyName;
use fake::faker::internet::en::{IPv4, SafeEmail};
use fake::faker::lorem::en::Word;
use fake::faker::name::en::Name;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::schema::{self, Kind};
use crate::support::mix;
use crate::support::parallel;
use crate::support::parquet;
use crate::vocab::Reason;
use crate::workspace::{self, AtomicFile};

/// Rows read, corrupted and written at a time.
pub const CHUNK_ROWS: usize = 262_144;

/// Salt that separates the chaos stream from the generator's for the same seed.
const SALT: u64 = 0xC4A0_5EED_0000_0001;

/// The kinds of corruption, with the reason the sanitizer must give (None: benign noise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChaosKind {
    MissingRequired,
    TypeMismatch,
    OutOfRange,
    UnknownCategory,
    UnparseableTimestamp,
    FutureTimestamp,
    SignalDrop,
    ExactDuplicate,
    ConflictingDuplicate,
    BenignPadding,
    BenignCase,
    BenignVersionPrefix,
}

/// Relative weight of each kind among the corrupted rows.
const KIND_WEIGHTS: [(ChaosKind, u64); 12] = [
    (ChaosKind::MissingRequired, 10),
    (ChaosKind::TypeMismatch, 12),
    (ChaosKind::OutOfRange, 10),
    (ChaosKind::UnknownCategory, 9),
    (ChaosKind::UnparseableTimestamp, 6),
    (ChaosKind::FutureTimestamp, 6),
    (ChaosKind::SignalDrop, 7),
    (ChaosKind::ExactDuplicate, 8),
    (ChaosKind::ConflictingDuplicate, 6),
    (ChaosKind::BenignPadding, 10),
    (ChaosKind::BenignCase, 8),
    (ChaosKind::BenignVersionPrefix, 8),
];

impl ChaosKind {
    pub const ALL: [ChaosKind; 12] = [
        ChaosKind::MissingRequired,
        ChaosKind::TypeMismatch,
        ChaosKind::OutOfRange,
        ChaosKind::UnknownCategory,
        ChaosKind::UnparseableTimestamp,
        ChaosKind::FutureTimestamp,
        ChaosKind::SignalDrop,
        ChaosKind::ExactDuplicate,
        ChaosKind::ConflictingDuplicate,
        ChaosKind::BenignPadding,
        ChaosKind::BenignCase,
        ChaosKind::BenignVersionPrefix,
    ];

    /// The name in the chaos log.
    pub fn name(self) -> &'static str {
        match self {
            ChaosKind::MissingRequired => "missing_required",
            ChaosKind::TypeMismatch => "type_mismatch",
            ChaosKind::OutOfRange => "out_of_range",
            ChaosKind::UnknownCategory => "unknown_category",
            ChaosKind::UnparseableTimestamp => "unparseable_timestamp",
            ChaosKind::FutureTimestamp => "future_timestamp",
            ChaosKind::SignalDrop => "signal_drop",
            ChaosKind::ExactDuplicate => "exact_duplicate",
            ChaosKind::ConflictingDuplicate => "conflicting_duplicate",
            ChaosKind::BenignPadding => "benign_padding",
            ChaosKind::BenignCase => "benign_case",
            ChaosKind::BenignVersionPrefix => "benign_version_prefix",
        }
    }

    /// The reason code the sanitizer must give a row changed this way; None for benign noise.
    pub fn expected_reason(self) -> Option<Reason> {
        match self {
            ChaosKind::MissingRequired => Some(Reason::MissingRequired),
            ChaosKind::TypeMismatch | ChaosKind::UnparseableTimestamp => Some(Reason::TypeMismatch),
            ChaosKind::OutOfRange => Some(Reason::OutOfRange),
            ChaosKind::UnknownCategory => Some(Reason::UnknownCategory),
            ChaosKind::FutureTimestamp => Some(Reason::BadTimestamp),
            ChaosKind::SignalDrop => Some(Reason::SignalDrop),
            ChaosKind::ExactDuplicate => Some(Reason::Duplicate),
            ChaosKind::ConflictingDuplicate => Some(Reason::Conflict),
            ChaosKind::BenignPadding | ChaosKind::BenignCase | ChaosKind::BenignVersionPrefix => {
                None
            }
        }
    }
}

/// What one input row gets: a kind and a hash that picks the column and value.
#[derive(Clone, Copy, Debug)]
struct RowPlan {
    kind: ChaosKind,
    pick: u64,
}

fn plan_row(seed: u64, rate: f64, row: u64) -> Option<RowPlan> {
    let h = mix(seed ^ SALT, row);
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u >= rate {
        return None;
    }
    let total: u64 = KIND_WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut k = mix(h, 1) % total;
    let kind = KIND_WEIGHTS
        .iter()
        .find(|(_, w)| {
            if k < *w {
                true
            } else {
                k -= w;
                false
            }
        })
        .map(|(kind, _)| *kind)
        .expect("weights cover the range");
    Some(RowPlan {
        kind,
        pick: mix(h, 2),
    })
}

fn choose<T: Copy>(options: &[T], pick: u64, salt: u64) -> T {
    options[(mix(pick, salt) % options.len() as u64) as usize]
}

const TYPE_MISMATCH_COLUMNS: [&str; 10] = [
    schema::DEVICE_ID,
    schema::GATEWAY_ID,
    schema::FIRMWARE_FROM,
    schema::FIRMWARE_TARGET,
    schema::FIRMWARE_REPORTED,
    schema::DOWNLOAD_PCT,
    schema::BATTERY_PCT,
    schema::RSSI_DBM,
    schema::BOOT_FAILURES,
    schema::RETRY_COUNT,
];
const TIMESTAMP_COLUMNS: [&str; 3] = [
    schema::UPDATE_STARTED_AT,
    schema::LAST_HEARTBEAT_AT,
    schema::REPORTED_AT,
];

/// The column a text-producing plan writes text into, decided without looking at the data.
fn text_target(plan: &RowPlan) -> Option<&'static str> {
    match plan.kind {
        ChaosKind::TypeMismatch => Some(choose(&TYPE_MISMATCH_COLUMNS, plan.pick, 3)),
        ChaosKind::UnparseableTimestamp => Some(choose(&TIMESTAMP_COLUMNS, plan.pick, 3)),
        _ => None,
    }
}

/// Garbage text for a number, id or version column: what real exports carry in the wrong place
/// (people's names, e-mail addresses, IP addresses, UUIDs, words, units), drawn with `fake` from
/// a generator seeded by the row's pick, so the output stays byte-deterministic. A draw that
/// would parse in `column` (an IP address is a valid id) is replaced by a fixed piece of garbage.
fn garbage_for(column: &str, pick: u64) -> String {
    if column == schema::DEVICE_ID && pick % 5 == 4 {
        return "X".repeat(65);
    }
    let mut rng = Pcg64Mcg::seed_from_u64(mix(pick, 7));
    let value: String = match mix(pick, 8) % 7 {
        0 => Name().fake_with_rng(&mut rng),
        1 => SafeEmail().fake_with_rng(&mut rng),
        2 => IPv4().fake_with_rng(&mut rng),
        3 => uuid(&mut rng),
        4 => Word().fake_with_rng(&mut rng),
        5 => format!("{}%", rng.random_range(0..=100u32)),
        _ => CompanyName().fake_with_rng(&mut rng),
    };
    if parses_in(column, &value) {
        let fixed: &[&str] = match column {
            schema::DEVICE_ID => &["dev#0042", "SEN 100 7F3A", "SEN-100/7F3A"],
            schema::GATEWAY_ID => &["gw/us-east/07", "#gw-01", "gw us-east 07"],
            schema::FIRMWARE_FROM | schema::FIRMWARE_TARGET | schema::FIRMWARE_REPORTED => {
                &["4.2", "04.2.0", "latest", "4.2.0.1", "4.x.0"]
            }
            _ => &["abc", "12%", "N/A", "--", "1,5"],
        };
        return choose(fixed, pick, 4).to_string();
    }
    value
}

/// Whether `text` is a valid value of the id, version or number column `column`: garbage must
/// not be.
fn parses_in(column: &str, text: &str) -> bool {
    let text = text.trim();
    match column {
        schema::DEVICE_ID | schema::GATEWAY_ID => schema::is_valid_id(text),
        schema::FIRMWARE_FROM | schema::FIRMWARE_TARGET | schema::FIRMWARE_REPORTED => {
            schema::is_version(text)
        }
        _ => schema::parse_float(text).is_some(),
    }
}

/// A random version-4 UUID, as exports print them.
fn uuid(rng: &mut Pcg64Mcg) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A time as exports that are not RFC 3339 write it: day-first and month-first dates, dotted
/// dates, month names, no offset, Unix seconds, impossible fields, a word. Seeded by the pick.
fn unparseable_timestamp(pick: u64) -> String {
    let mut rng = Pcg64Mcg::seed_from_u64(mix(pick, 9));
    let (y, mo, d) = (
        rng.random_range(2024..=2026u32),
        rng.random_range(1..=12u32),
        rng.random_range(1..=28u32),
    );
    let (h, mi, sec) = (
        rng.random_range(0..24u32),
        rng.random_range(0..60u32),
        rng.random_range(0..60u32),
    );
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match mix(pick, 10) % 8 {
        0 => format!("{d:02}/{mo:02}/{y} {h:02}:{mi:02}"),
        1 => format!(
            "{mo:02}/{d:02}/{y} {:02}:{mi:02} {}",
            (h + 11) % 12 + 1,
            if h < 12 { "AM" } else { "PM" }
        ),
        2 => format!("{d:02}.{mo:02}.{y} {h:02}:{mi:02}:{sec:02}"),
        3 => format!("{} {d}, {y} {h:02}:{mi:02}", MONTHS[mo as usize - 1]),
        4 => format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02}"),
        5 => rng
            .random_range(1_700_000_000..1_800_000_000u64)
            .to_string(),
        6 => format!("{y}-{:02}-{d:02}T{:02}:{mi:02}:00Z", mo + 12, h + 24),
        _ => Word().fake_with_rng(&mut rng),
    }
}

/// A value of a column, typed as the output column holds it or as text.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Float(f64),
    Int(i64),
    Time(i64),
}

impl Cell {
    fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Text(s) => Some(s.clone()),
            Cell::Float(x) => Some(schema::format_float(*x)),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Time(t) => Some(schema::format_timestamp(*t)),
        }
    }
}

/// What `chaos` is asked to do.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub input: PathBuf,
    pub out: PathBuf,
    pub log: PathBuf,
    pub rate: f64,
    pub seed: u64,
}

/// What `chaos` did.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosSummary {
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows in the log (each changed or inserted row once).
    pub rows_logged: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Typed columns that the output holds as text.
    pub text_columns: Vec<&'static str>,
    pub out: PathBuf,
    pub log: PathBuf,
    pub seconds: f64,
}

/// One row of the chaos log.
struct LogEntry {
    source_row: u64,
    column: String,
    kind: ChaosKind,
    before: Option<String>,
    after: Option<String>,
    input_row: u64,
    inserted: bool,
}

/// Reads the input's schema and checks that every contract column is there with a usable type.
fn input_schema(path: &Path) -> Result<(Schema, usize)> {
    let file =
        File::open(path).with_context(|| format!("opening chaos input {}", path.display()))?;
    let mut reader = ParquetReader::new(file);
    let arrow = reader
        .schema()
        .with_context(|| format!("reading {}: not a readable Parquet file", path.display()))?;
    let rows = reader
        .num_rows()
        .with_context(|| format!("reading {}: not a readable Parquet file", path.display()))?;
    let schema = Schema::from_arrow_schema(&arrow);
    for c in &schema::COLUMNS {
        let Some(dtype) = schema.get(c.name) else {
            bail!(
                "{}: required column `{}` is missing",
                path.display(),
                c.name
            );
        };
        let fits = match c.kind {
            _ if dtype.is_string() => true,
            Kind::Text => false,
            Kind::Float => dtype.is_primitive_numeric(),
            Kind::Int => dtype.is_integer(),
            Kind::Timestamp => matches!(dtype, DataType::Datetime(..)),
        };
        if !fits {
            bail!(
                "{}: column `{}` has type {dtype}, expected {} or text",
                path.display(),
                c.name,
                c.kind.name()
            );
        }
    }
    Ok((schema, rows))
}

/// Corrupts `opts.input` into `opts.out` and logs every change into `opts.log`. `progress` is
/// called with the number of input rows done after each chunk.
pub fn chaos(opts: &ChaosOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<ChaosSummary> {
    if !(0.0..=1.0).contains(&opts.rate) {
        bail!("--rate must be between 0 and 1, got {}", opts.rate);
    }
    let started = Instant::now();
    let (in_schema, rows_in) = input_schema(&opts.input)?;

    // First pass over row indices only: which typed columns receive text somewhere, and how many
    // rows each chunk inserts (so every chunk knows where its rows land in the output).
    let chunks = rows_in.div_ceil(CHUNK_ROWS) as u64;
    let mut text_columns: Vec<&'static str> = schema::COLUMNS
        .iter()
        .filter(|c| c.kind == Kind::Text || in_schema.get(c.name).is_some_and(DataType::is_string))
        .map(|c| c.name)
        .collect();
    let mut first_out = Vec::with_capacity(chunks as usize);
    let mut rows_out = 0u64;
    parallel::ordered(
        chunks,
        |chunk| {
            let rows =
                chunk * CHUNK_ROWS as u64..((chunk + 1) * CHUNK_ROWS as u64).min(rows_in as u64);
            let mut targets: Vec<&'static str> = Vec::new();
            let mut inserted = 0u64;
            for row in rows.clone() {
                let Some(plan) = plan_row(opts.seed, opts.rate, row) else {
                    continue;
                };
                if let Some(target) = text_target(&plan).filter(|t| !targets.contains(t)) {
                    targets.push(target);
                }
                inserted += u64::from(matches!(
                    plan.kind,
                    ChaosKind::ExactDuplicate | ChaosKind::ConflictingDuplicate
                ));
            }
            Ok((targets, rows.end - rows.start + inserted))
        },
        |_, (targets, rows)| {
            for t in targets {
                if !text_columns.contains(&t) {
                    text_columns.push(t);
                }
            }
            first_out.push(rows_out);
            rows_out += rows;
            Ok(())
        },
    )?;
    let out_kinds: Vec<Kind> = schema::COLUMNS
        .iter()
        .map(|c| {
            if text_columns.contains(&c.name) {
                Kind::Text
            } else {
                c.kind
            }
        })
        .collect();
    let extras: Vec<(PlSmallStr, DataType)> = in_schema
        .iter()
        .filter(|(name, _)| schema::column(name).is_none())
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    let out_schema: Schema = schema::COLUMNS
        .iter()
        .zip(&out_kinds)
        .map(|(c, k)| Field::new(c.name.into(), k.dtype()))
        .chain(extras.iter().map(|(n, d)| Field::new(n.clone(), d.clone())))
        .collect();

    let out_file = AtomicFile::create(&opts.out)?;
    let log_file = AtomicFile::create(&opts.log)?;
    let out_writer = parquet::Writer::new(out_file.file(), &out_schema, parquet::KEPT)
        .with_context(|| format!("starting {}", opts.out.display()))?;
    let log_writer = parquet::Writer::new(log_file.file(), &log_schema(), parquet::KEPT)
        .with_context(|| format!("starting {}", opts.log.display()))?;

    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rows_logged = 0u64;
    parallel::ordered(
        chunks,
        |chunk| {
            let offset = chunk as usize * CHUNK_ROWS;
            let len = CHUNK_ROWS.min(rows_in - offset);
            let file = File::open(&opts.input)
                .with_context(|| format!("opening chaos input {}", opts.input.display()))?;
            let input = ParquetReader::new(file)
                .read_parallel(ParallelStrategy::None)
                .with_slice(Some((offset, len)))
                .finish()
                .with_context(|| format!("reading {}", opts.input.display()))?;
            let (df, log) = corrupt_chunk(
                &input,
                &out_kinds,
                &extras,
                opts,
                offset as u64,
                first_out[chunk as usize],
            )
            .with_context(|| format!("corrupting rows of {}", opts.input.display()))?;
            let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
            for e in log
                .iter()
                .filter(|e| e.kind != ChaosKind::ConflictingDuplicate || e.inserted)
            {
                *kinds.entry(e.kind.name()).or_default() += 1;
            }
            let logged = log.len() as u64;
            let data = out_writer
                .encode(&df)
                .with_context(|| format!("encoding {}", opts.out.display()))?;
            let log = log_writer
                .encode(&log_frame(log)?)
                .with_context(|| format!("encoding {}", opts.log.display()))?;
            Ok((data, log, kinds, logged, offset + len))
        },
        |_, (data, log, kinds, logged, done)| {
            out_writer
                .write(data)
                .with_context(|| format!("writing {}", opts.out.display()))?;
            log_writer
                .write(log)
                .with_context(|| format!("writing {}", opts.log.display()))?;
            for (k, n) in kinds {
                *by_kind.entry(k).or_default() += n;
            }
            rows_logged += logged;
            progress(done as u64);
            Ok(())
        },
    )?;
    out_writer
        .finish()
        .with_context(|| format!("finishing {}", opts.out.display()))?;
    log_writer
        .finish()
        .with_context(|| format!("finishing {}", opts.log.display()))?;
    drop((out_writer, log_writer));
    // The corrupted file and its log describe each other: published as a pair.
    workspace::commit_all(vec![out_file, log_file])?;
    Ok(ChaosSummary {
        rows_in: rows_in as u64,
        rows_out,
        rows_logged,
        by_kind,
        text_columns: schema::COLUMNS
            .iter()
            .zip(&out_kinds)
            .filter(|(c, k)| c.kind != Kind::Text && **k == Kind::Text)
            .map(|(c, _)| c.name)
            .collect(),
        out: opts.out.clone(),
        log: opts.log.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The log's columns: source_row, column, kind, before, after, expected_reason, input_row, inserted.
pub fn log_schema() -> Schema {
    [
        Field::new("source_row".into(), DataType::UInt64),
        Field::new("column".into(), DataType::String),
        Field::new("kind".into(), DataType::String),
        Field::new("before".into(), DataType::String),
        Field::new("after".into(), DataType::String),
        Field::new("expected_reason".into(), DataType::String),
        Field::new("input_row".into(), DataType::UInt64),
        Field::new("inserted".into(), DataType::Boolean),
    ]
    .into_iter()
    .collect()
}

fn log_frame(log: Vec<LogEntry>) -> PolarsResult<DataFrame> {
    let n = log.len();
    let columns = vec![
        UInt64Chunked::from_iter_values("source_row".into(), log.iter().map(|e| e.source_row))
            .into_column(),
        StringChunked::from_iter_values("column".into(), log.iter().map(|e| e.column.as_str()))
            .into_column(),
        StringChunked::from_iter_values("kind".into(), log.iter().map(|e| e.kind.name()))
            .into_column(),
        StringChunked::from_iter_options("before".into(), log.iter().map(|e| e.before.as_deref()))
            .into_column(),
        StringChunked::from_iter_options("after".into(), log.iter().map(|e| e.after.as_deref()))
            .into_column(),
        StringChunked::from_iter_options(
            "expected_reason".into(),
            log.iter()
                .map(|e| e.kind.expected_reason().map(Reason::as_str)),
        )
        .into_column(),
        UInt64Chunked::from_iter_values("input_row".into(), log.iter().map(|e| e.input_row))
            .into_column(),
        BooleanChunked::from_iter_values("inserted".into(), log.iter().map(|e| e.inserted))
            .into_column(),
    ];
    DataFrame::new(n, columns)
}

/// A chunk's contract columns in canonical order, each as its output kind (typed columns in their
/// canonical dtype, the others as text in the contract's text forms).
fn canonical_columns(chunk: &DataFrame, out_kinds: &[Kind]) -> Result<Vec<Series>> {
    schema::COLUMNS
        .iter()
        .zip(out_kinds)
        .map(|(c, kind)| {
            let s = chunk.column(c.name)?.as_materialized_series().clone();
            let out = match kind {
                Kind::Text if s.dtype().is_string() => s,
                Kind::Text => as_text(&s)?,
                Kind::Timestamp => {
                    let DataType::Datetime(unit, _) = s.dtype() else {
                        bail!("column `{}` is not a timestamp", c.name);
                    };
                    let unit = *unit;
                    let phys = s.to_physical_repr();
                    let micros: Int64Chunked = phys
                        .i64()?
                        .iter()
                        .map(|v| v.map(|v| schema::to_micros(v, unit)))
                        .collect();
                    micros
                        .into_datetime(TimeUnit::Microseconds, None)
                        .into_series()
                }
                _ => s.strict_cast(&kind.dtype())?,
            };
            Ok(out.with_name(c.name.into()))
        })
        .collect()
}

/// A typed column in the contract's text forms.
fn as_text(s: &Series) -> Result<Series> {
    use std::fmt::Write;
    let name = s.name().clone();
    Ok(match s.dtype() {
        DataType::Datetime(unit, _) => {
            let unit = *unit;
            let phys = s.to_physical_repr();
            text_series(name, s.len(), phys.i64()?.iter(), |v, b| {
                schema::write_timestamp(schema::to_micros(v, unit), b)
            })
        }
        d if d.is_float() => {
            let f = s.cast(&DataType::Float64)?;
            text_series(name, s.len(), f.f64()?.iter(), |v, b| {
                let _ = write!(b, "{v}");
            })
        }
        d if d.is_integer() => {
            let i = s.cast(&DataType::Int64)?;
            text_series(name, s.len(), i.i64()?.iter(), |v, b| {
                let _ = write!(b, "{v}");
            })
        }
        d => bail!("column `{}` of type {d} has no text form", s.name()),
    })
}

/// Formats values through one reused buffer: no allocation per value.
fn text_series<T>(
    name: PlSmallStr,
    len: usize,
    values: impl Iterator<Item = Option<T>>,
    write: impl Fn(T, &mut String),
) -> Series {
    let mut out = StringChunkedBuilder::new(name, len);
    let mut buf = String::with_capacity(32);
    for v in values {
        match v {
            Some(v) => {
                buf.clear();
                write(v, &mut buf);
                out.append_value(&buf);
            }
            None => out.append_null(),
        }
    }
    out.finish().into_series()
}

/// What one kind of chaos does to a row.
enum Change {
    /// One column gets a new value.
    Set(&'static str, Cell),
    /// Every signal column goes null (SIGNAL_DROP).
    DropSignals,
    /// A copy of the row follows it; a conflicting copy has another retry_count.
    Duplicate { conflicting: bool },
}

/// The change `plan` makes to a row whose cells (as text) `cell` gives by column name; `kind`
/// gives each output column's kind. One function per kind below.
fn change(
    plan: &RowPlan,
    cell: &dyn Fn(&str) -> Option<String>,
    kind: &dyn Fn(&str) -> Kind,
) -> Change {
    let pick = plan.pick;
    let (column, value) = match plan.kind {
        ChaosKind::MissingRequired => missing_required(pick, kind),
        ChaosKind::TypeMismatch | ChaosKind::UnparseableTimestamp => type_mismatch(plan),
        ChaosKind::OutOfRange => out_of_range(pick),
        ChaosKind::UnknownCategory => unknown_category(pick),
        ChaosKind::FutureTimestamp => future_timestamp(pick, cell, kind),
        ChaosKind::SignalDrop => return Change::DropSignals,
        ChaosKind::ExactDuplicate => return Change::Duplicate { conflicting: false },
        ChaosKind::ConflictingDuplicate => return Change::Duplicate { conflicting: true },
        ChaosKind::BenignPadding => benign_padding(pick, cell),
        ChaosKind::BenignCase => benign_case(pick, cell),
        ChaosKind::BenignVersionPrefix => benign_version_prefix(pick, cell),
    };
    Change::Set(column, value)
}

/// MISSING_REQUIRED: a required column null, or blank where the column is text.
fn missing_required(pick: u64, kind: &dyn Fn(&str) -> Kind) -> (&'static str, Cell) {
    let required: Vec<&'static str> = schema::COLUMNS
        .iter()
        .filter(|c| c.required)
        .map(|c| c.name)
        .collect();
    let column = choose(&required, pick, 3);
    let value = if kind(column) == Kind::Text && pick.is_multiple_of(2) {
        Cell::Text(choose(&["", "   ", "\t"], pick, 4).to_string())
    } else {
        Cell::Null
    };
    (column, value)
}

/// TYPE_MISMATCH: garbage text in a typed column, or a timestamp no parser takes.
fn type_mismatch(plan: &RowPlan) -> (&'static str, Cell) {
    let column = text_target(plan).expect("text kinds have a target");
    let value = if plan.kind == ChaosKind::TypeMismatch {
        garbage_for(column, plan.pick)
    } else {
        unparseable_timestamp(plan.pick)
    };
    (column, Cell::Text(value))
}

/// OUT_OF_RANGE: a number outside its bounds, NaN or infinite.
fn out_of_range(pick: u64) -> (&'static str, Cell) {
    let column = choose(
        &[
            schema::DOWNLOAD_PCT,
            schema::BATTERY_PCT,
            schema::RSSI_DBM,
            schema::BOOT_FAILURES,
            schema::RETRY_COUNT,
        ],
        pick,
        3,
    );
    let value = match column {
        // Above 100 only: a negative download of a succeeded row would also be INCONSISTENT.
        schema::DOWNLOAD_PCT => {
            Cell::Float(choose(&[100.5, 250.0, f64::NAN, f64::INFINITY], pick, 4))
        }
        schema::BATTERY_PCT => {
            Cell::Float(choose(&[-1.0, 180.5, f64::NAN, f64::NEG_INFINITY], pick, 4))
        }
        schema::RSSI_DBM => Cell::Int(choose(&[12, -200, 5], pick, 4)),
        schema::BOOT_FAILURES => Cell::Int(choose(&[-1, 5000], pick, 4)),
        _ => Cell::Int(choose(&[-2, 99_999], pick, 4)),
    };
    (column, value)
}

/// UNKNOWN_CATEGORY: a region, model, status or error code outside its vocabulary.
fn unknown_category(pick: u64) -> (&'static str, Cell) {
    let column = choose(
        &[
            schema::REGION,
            schema::HW_MODEL,
            schema::OTA_STATUS,
            schema::ERROR_CODE,
        ],
        pick,
        3,
    );
    let value = match column {
        schema::REGION => choose(&["mars-north", "us-east-9", "antarctica"], pick, 4),
        schema::HW_MODEL => choose(&["SEN-999", "TOASTER-1"], pick, 4),
        schema::OTA_STATUS => choose(&["paused", "exploded", "unknown"], pick, 4),
        _ => choose(&["E_GREMLINS", "E_UNKNOWN"], pick, 4),
    };
    (column, Cell::Text(value.to_string()))
}

/// BAD_TIMESTAMP: a timestamp ten years later.
fn future_timestamp(
    pick: u64,
    cell: &dyn Fn(&str) -> Option<String>,
    kind: &dyn Fn(&str) -> Kind,
) -> (&'static str, Cell) {
    const TEN_YEARS: i64 = 3650 * 86_400 * 1_000_000;
    let column = choose(&TIMESTAMP_COLUMNS, pick, 3);
    let current = cell(column)
        .as_deref()
        .and_then(schema::parse_timestamp)
        .unwrap_or(4_070_908_800_000_000 - TEN_YEARS);
    let value = current + TEN_YEARS;
    let value = if kind(column) == Kind::Text {
        Cell::Text(schema::format_timestamp(value))
    } else {
        Cell::Time(value)
    };
    (column, value)
}

/// A conflicting copy's retry_count: one more (one less at the bound), same kind of cell.
fn conflicting_retry_count(current: Option<&str>, kind: Kind) -> Cell {
    let n = current.and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
    let next = if n >= 1000 { n - 1 } else { n + 1 };
    if kind == Kind::Text {
        Cell::Text(next.to_string())
    } else {
        Cell::Int(next)
    }
}

/// Benign: blanks around a text value, which normalization trims.
fn benign_padding(pick: u64, cell: &dyn Fn(&str) -> Option<String>) -> (&'static str, Cell) {
    let texts = [
        schema::DEVICE_ID,
        schema::REGION,
        schema::HW_MODEL,
        schema::GATEWAY_ID,
        schema::FIRMWARE_FROM,
        schema::FIRMWARE_TARGET,
        schema::FIRMWARE_REPORTED,
        schema::OTA_STATUS,
        schema::ERROR_CODE,
    ];
    let (column, v) = first_present(&texts, pick, &|n| cell(n), schema::REGION);
    let padded = match pick % 4 {
        0 => format!(" {v}"),
        1 => format!("{v}  "),
        2 => format!("\t{v}\n"),
        _ => format!("  {v} \r\n"),
    };
    (column, Cell::Text(padded))
}

/// Benign: an enum value in another case, which caseless matching accepts.
fn benign_case(pick: u64, cell: &dyn Fn(&str) -> Option<String>) -> (&'static str, Cell) {
    let enums = [
        schema::REGION,
        schema::HW_MODEL,
        schema::OTA_STATUS,
        schema::ERROR_CODE,
    ];
    let (column, v) = first_present(&enums, pick, &|n| cell(n), schema::REGION);
    let upper = v.to_uppercase();
    let changed = if upper != v { upper } else { v.to_lowercase() };
    (column, Cell::Text(changed))
}

/// Benign: a version with a leading `v` or `V`, which the contract accepts and drops.
fn benign_version_prefix(pick: u64, cell: &dyn Fn(&str) -> Option<String>) -> (&'static str, Cell) {
    let versions = [
        schema::FIRMWARE_FROM,
        schema::FIRMWARE_TARGET,
        schema::FIRMWARE_REPORTED,
    ];
    let (column, v) = first_present(&versions, pick, &|n| cell(n), schema::FIRMWARE_TARGET);
    let prefix = if pick.is_multiple_of(2) { "v" } else { "V" };
    (column, Cell::Text(format!("{prefix}{v}")))
}

/// Corrupts one chunk. `first_row` is the chunk's first input row, `first_out` the output row its
/// first row lands on.
fn corrupt_chunk(
    chunk: &DataFrame,
    out_kinds: &[Kind],
    extras: &[(PlSmallStr, DataType)],
    opts: &ChaosOptions,
    first_row: u64,
    first_out: u64,
) -> Result<(DataFrame, Vec<LogEntry>)> {
    let columns = canonical_columns(chunk, out_kinds)?;
    let col_index = |name: &str| {
        schema::COLUMNS
            .iter()
            .position(|c| c.name == name)
            .expect("contract column")
    };
    let cell = |col: usize, row: usize| -> Option<String> {
        columns[col]
            .get(row)
            .ok()
            .as_ref()
            .and_then(schema::value_text)
    };

    let mut take: Vec<IdxSize> = Vec::with_capacity(chunk.height() + chunk.height() / 16);
    // (column, output row within the chunk, new value)
    let mut edits: Vec<(usize, usize, Cell)> = Vec::new();
    let mut log = Vec::new();
    for local in 0..chunk.height() {
        let input_row = first_row + local as u64;
        take.push(local as IdxSize);
        let out_row = take.len() - 1;
        let source_row = first_out + out_row as u64;
        let Some(plan) = plan_row(opts.seed, opts.rate, input_row) else {
            continue;
        };
        let mut entry = LogEntry {
            source_row,
            column: "*".into(),
            kind: plan.kind,
            before: None,
            after: None,
            input_row,
            inserted: false,
        };
        let set = |edits: &mut Vec<_>, entry: &mut LogEntry, column: &str, value: Cell| {
            let c = col_index(column);
            entry.column = column.to_string();
            entry.before = cell(c, local);
            entry.after = value.text();
            edits.push((c, out_row, value));
        };
        let row_cell = |name: &str| cell(col_index(name), local);
        let kind_of = |name: &str| out_kinds[col_index(name)];
        match change(&plan, &row_cell, &kind_of) {
            Change::Set(column, value) => set(&mut edits, &mut entry, column, value),
            Change::DropSignals => {
                let mut before = Vec::new();
                for c in schema::COLUMNS.iter().filter(|c| c.signal) {
                    let i = col_index(c.name);
                    before.push(format!(
                        "{}={}",
                        c.name,
                        cell(i, local).unwrap_or_else(|| "null".into())
                    ));
                    edits.push((i, out_row, Cell::Null));
                }
                entry.before = Some(before.join(";"));
            }
            Change::Duplicate { conflicting } => {
                take.push(local as IdxSize);
                let mut copy = LogEntry {
                    source_row: source_row + 1,
                    column: "*".into(),
                    kind: plan.kind,
                    before: None,
                    after: None,
                    input_row,
                    inserted: true,
                };
                if conflicting {
                    let c = col_index(schema::RETRY_COUNT);
                    let current = cell(c, local);
                    let value = conflicting_retry_count(current.as_deref(), out_kinds[c]);
                    copy.column = schema::RETRY_COUNT.into();
                    copy.before = current;
                    copy.after = value.text();
                    edits.push((c, out_row + 1, value));
                    log.push(entry);
                }
                log.push(copy);
                continue;
            }
        }
        log.push(entry);
    }

    let idx = IdxCa::from_vec("take".into(), take);
    let mut out_columns = Vec::with_capacity(columns.len() + extras.len());
    edits.sort_by_key(|(c, r, _)| (*c, *r));
    for (c, series) in columns.iter().enumerate() {
        let taken = series.take(&idx)?;
        let lo = edits.partition_point(|(ec, _, _)| *ec < c);
        let hi = edits.partition_point(|(ec, _, _)| *ec <= c);
        out_columns.push(apply_edits(taken, out_kinds[c], &edits[lo..hi])?.into_column());
    }
    for (name, _) in extras {
        out_columns.push(chunk.column(name)?.take(&idx)?);
    }
    let mut df = DataFrame::new(idx.len(), out_columns)?;
    df.rechunk_mut();
    Ok((df, log))
}

/// The first non-null value among `columns`, starting at a position chosen by `pick`; falls back
/// to `fallback` (a required column).
fn first_present(
    columns: &[&'static str],
    pick: u64,
    value: &dyn Fn(&str) -> Option<String>,
    fallback: &'static str,
) -> (&'static str, String) {
    let start = (mix(pick, 3) % columns.len() as u64) as usize;
    (0..columns.len())
        .map(|i| columns[(start + i) % columns.len()])
        .find_map(|c| value(c).filter(|v| !v.trim().is_empty()).map(|v| (c, v)))
        .unwrap_or_else(|| (fallback, value(fallback).unwrap_or_default()))
}

/// Applies sorted edits (one column, output rows ascending) to a column of kind `kind`.
fn apply_edits(series: Series, kind: Kind, edits: &[(usize, usize, Cell)]) -> Result<Series> {
    if edits.is_empty() {
        return Ok(series);
    }
    let name = series.name().clone();
    let mut next = edits.iter().peekable();
    let mut edit_at = |row: usize| -> Option<&Cell> {
        // Several edits of one cell cannot happen (one plan per row), but take the last if so.
        let mut found = None;
        while let Some((_, r, v)) = next.peek() {
            if *r != row {
                break;
            }
            found = Some(v);
            next.next();
        }
        found
    };
    let out = match kind {
        Kind::Text => {
            let ca = series.str()?;
            let texts: Vec<Option<String>> = edits.iter().map(|(_, _, v)| v.text()).collect();
            let mut k = 0;
            let edited = StringChunked::from_iter_options(
                name.clone(),
                ca.iter().enumerate().map(|(i, v)| {
                    let mut out = v;
                    while k < edits.len() && edits[k].1 == i {
                        out = texts[k].as_deref();
                        k += 1;
                    }
                    out
                }),
            );
            edited.into_series()
        }
        Kind::Float => {
            let ca = series.f64()?;
            let edited: Float64Chunked = ca
                .iter()
                .enumerate()
                .map(|(i, v)| match edit_at(i) {
                    Some(Cell::Float(x)) => Some(*x),
                    Some(_) => None,
                    None => v,
                })
                .collect();
            edited.into_series()
        }
        Kind::Int => {
            let ca = series.i32()?;
            let edited: Int32Chunked = ca
                .iter()
                .enumerate()
                .map(|(i, v)| match edit_at(i) {
                    Some(Cell::Int(x)) => Some(*x as i32),
                    Some(_) => None,
                    None => v,
                })
                .collect();
            edited.into_series()
        }
        Kind::Timestamp => {
            let phys = series.to_physical_repr();
            let ca = phys.i64()?;
            let edited: Int64Chunked = ca
                .iter()
                .enumerate()
                .map(|(i, v)| match edit_at(i) {
                    Some(Cell::Time(x)) => Some(*x),
                    Some(_) => None,
                    None => v,
                })
                .collect();
            edited
                .into_datetime(TimeUnit::Microseconds, None)
                .into_series()
        }
    };
    Ok(out.with_name(name))
}
