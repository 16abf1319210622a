//! Reading telemetry inputs for `recover` (SPEC sections 3 and 10): files or folders of Parquet,
//! CSV or NDJSON, chosen by extension, checked against the column contract, and tagged with where
//! every row came from.
//!
//! A file whose columns do not fit the contract rejects the whole run before anything is written:
//! a missing required column, or a typed column of a type that does not fit (a boolean
//! battery_pct). CSV and NDJSON values are read as text, so the text rules of the sanitizer apply
//! to them; Parquet columns keep their types when they fit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use polars::prelude::{
    CsvEncoding, CsvReadOptions, DataFrame, DataType, Expr, Field, IntoLazy, JsonFormat,
    JsonReader, LazyFrame, NULL, ParquetReader, Schema, SerReader, TimeUnit, col, concat_str, lit,
    when,
};

use crate::schema::{self, Kind};

/// Column holding the input file's path, as given (a folder's files: folder/name).
pub const SOURCE_FILE: &str = "source_file";
/// Column holding the 0-based row index within its file.
pub const SOURCE_ROW: &str = "source_row";
/// Column holding the input's position in the run (0 for the first file).
pub const SOURCE_INDEX: &str = "source_index";

/// The formats `recover` reads, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    Ndjson,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

/// One input file, in run order.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub format: Format,
}

/// Expands `paths` into input files in run order: files as given, a folder's telemetry files in
/// name order. Fails on a missing path, a file of an unknown extension, or a folder without any
/// telemetry file.
pub fn resolve(paths: &[PathBuf]) -> Result<Vec<Input>> {
    if paths.is_empty() {
        bail!("no --input given");
    }
    let mut inputs = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("input {}", path.display()))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("listing input folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && Format::of(p).is_some())
                .collect();
            if files.is_empty() {
                bail!(
                    "input folder {} holds no .parquet, .csv, .ndjson or .jsonl file",
                    path.display()
                );
            }
            files.sort();
            inputs.extend(files.into_iter().map(|p| Input {
                format: Format::of(&p).expect("filtered on format"),
                path: p,
            }));
        } else {
            let Some(format) = Format::of(path) else {
                bail!(
                    "input {}: unknown format (expected .parquet, .csv, .ndjson or .jsonl)",
                    path.display()
                );
            };
            inputs.push(Input {
                path: path.clone(),
                format,
            });
        }
    }
    Ok(inputs)
}

/// Whether a column of `dtype` may feed a contract column of `kind` (SPEC section 3).
fn fits(kind: Kind, dtype: &DataType) -> bool {
    match kind {
        _ if dtype.is_string() || dtype == &DataType::Null => true,
        Kind::Text => false,
        Kind::Float => dtype.is_primitive_numeric(),
        Kind::Int => dtype.is_integer(),
        Kind::Timestamp => matches!(dtype, DataType::Datetime(..)),
    }
}

/// A column as text: text as received, typed values in the contract's text forms (floats as polars
/// prints them, integers in decimal, timestamps as RFC 3339 in UTC with microseconds; the physical
/// value of a zoned timestamp is already UTC).
fn as_text(name: &str, dtype: &DataType) -> Expr {
    let c = col(name);
    let text = match dtype {
        d if d.is_string() => c,
        DataType::Datetime(unit, _) => {
            // RFC 3339 text for years 0001 to 9999. A value beyond them (a typed column can hold
            // year 294,247) has no RFC 3339 spelling: it is written as its raw count, which the
            // sanitizer then rejects as a TYPE_MISMATCH. Out-of-range values are nulled before
            // formatting, which would otherwise panic, and before ms -> µs, which could overflow.
            let (lo_us, hi_us) = (
                schema::days_from_civil(1, 1, 1) * 86_400_000_000,
                schema::days_from_civil(10_000, 1, 1) * 86_400_000_000 - 1,
            );
            let raw = c.to_physical();
            let (lo, hi, suffix) = match unit {
                TimeUnit::Nanoseconds => (i64::MIN, i64::MAX, "ns"),
                TimeUnit::Microseconds => (lo_us, hi_us, "us"),
                TimeUnit::Milliseconds => (lo_us / 1000, hi_us / 1000, "ms"),
            };
            let in_range = raw.clone().gt_eq(lit(lo)).and(raw.clone().lt_eq(lit(hi)));
            let safe = when(in_range.clone())
                .then(raw.clone())
                .otherwise(lit(NULL));
            let micros = match unit {
                TimeUnit::Nanoseconds => safe.floor_div(lit(1000i64)),
                TimeUnit::Microseconds => safe,
                TimeUnit::Milliseconds => safe * lit(1000i64),
            };
            let formatted = micros
                .cast(DataType::Datetime(TimeUnit::Microseconds, None))
                .dt()
                .to_string("%Y-%m-%dT%H:%M:%S%.6fZ");
            when(in_range.or(raw.clone().is_null()))
                .then(formatted)
                .otherwise(concat_str(
                    [
                        raw.cast(DataType::String),
                        lit(format!(" {suffix} since 1970-01-01T00:00:00Z")),
                    ],
                    "",
                    false,
                ))
        }
        d if d.is_float() => c.cast(DataType::Float64).cast(DataType::String),
        _ => c.cast(DataType::String),
    };
    text.alias(name)
}

/// The text schema CSV and NDJSON files are read with: every contract column as text.
fn text_schema() -> Arc<Schema> {
    Arc::new(
        schema::COLUMNS
            .iter()
            .map(|c| Field::new(c.name.into(), DataType::String))
            .collect(),
    )
}

/// Reads one input into a frame with the 17 contract columns as text (missing optional columns
/// as null), plus `source_file`, `source_row` and `source_index`.
pub fn read(input: &Input, index: usize) -> Result<LazyFrame> {
    read_rows(input, index, None)
}

/// The number of rows of a Parquet input, from its footer; None for CSV and NDJSON, which are
/// read whole.
pub fn parquet_rows(input: &Input) -> Result<Option<usize>> {
    if input.format != Format::Parquet {
        return Ok(None);
    }
    let name = input.path.display();
    let file = File::open(&input.path).with_context(|| format!("opening {name}"))?;
    let rows = ParquetReader::new(file)
        .num_rows()
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    Ok(Some(rows))
}

/// Like [`read`], but of a Parquet input only the rows `offset..offset + len` (source_row keeps
/// counting from the file's first row). CSV and NDJSON inputs are always read whole.
pub fn read_rows(input: &Input, index: usize, rows: Option<(usize, usize)>) -> Result<LazyFrame> {
    let path = &input.path;
    let name = path.display().to_string();
    let offset = match (input.format, rows) {
        (Format::Parquet, Some((offset, _))) => offset,
        _ => 0,
    };
    let df: DataFrame = match input.format {
        Format::Parquet => {
            let file = File::open(path).with_context(|| format!("opening {name}"))?;
            ParquetReader::new(file)
                .with_slice(rows)
                .finish()
                .with_context(|| format!("{name}: not a readable Parquet file"))?
        }
        // No schema inference: every CSV column is read as text.
        Format::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .with_raise_if_empty(false)
            // Bytes that are not UTF-8 become U+FFFD, which no column accepts: the row is
            // quarantined with a reason instead of the whole file being refused.
            .map_parse_options(|p| p.with_encoding(CsvEncoding::LossyUtf8))
            .try_into_reader_with_file_path(Some(path.clone()))
            .and_then(|r| r.finish())
            .with_context(|| format!("{name}: not a readable CSV file"))?,
        Format::Ndjson => {
            let file = File::open(path).with_context(|| format!("opening {name}"))?;
            let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
            if empty {
                DataFrame::empty_with_schema(&text_schema())
            } else {
                JsonReader::new(file)
                    .with_json_format(JsonFormat::JsonLines)
                    .with_schema(text_schema())
                    .finish()
                    .with_context(|| format!("{name}: not a readable NDJSON file"))?
            }
        }
    };
    let mut exprs = Vec::with_capacity(schema::COLUMNS.len() + 3);
    for c in &schema::COLUMNS {
        match df.schema().get(c.name) {
            Some(dtype) if fits(c.kind, dtype) => exprs.push(as_text(c.name, dtype)),
            Some(dtype) => bail!(
                "{name}: column `{}` has type {dtype}, expected {} or text",
                c.name,
                c.kind.name()
            ),
            None if c.required => bail!("{name}: required column `{}` is missing", c.name),
            None => exprs.push(
                lit(polars::prelude::NULL)
                    .cast(DataType::String)
                    .alias(c.name),
            ),
        }
    }
    Ok(df
        .lazy()
        .select(exprs)
        .with_row_index(SOURCE_ROW, None)
        .with_columns([
            (col(SOURCE_ROW).cast(DataType::UInt64) + lit(offset as u64)),
            lit(name).alias(SOURCE_FILE),
            lit(index as u32).alias(SOURCE_INDEX),
        ]))
}
