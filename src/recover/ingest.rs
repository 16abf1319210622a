//! Reading telemetry inputs for `recover` (SPEC sections 3 and 10): files or folders of Parquet,
//! CSV or NDJSON (CSV and NDJSON also gzip- or zstd-compressed), chosen by extension, checked
//! against the column contract, and tagged with where every row came from.
//!
//! A file whose columns do not fit the contract rejects the whole run before anything is written:
//! a missing required column (or NDJSON key), or a typed column of a type that does not fit (a
//! boolean battery_pct, a decimal, a nested column). CSV and NDJSON values are read as text, so the
//! text rules of the sanitizer apply to them; Parquet columns keep their types when they fit.
//!
//! Input files come from anywhere, so no file may crash the program: Parquet types are checked
//! from the footer before any page is decoded, only contract columns are decoded, and every
//! reader runs under [`guarded`], which turns a panic inside a decoder into an error naming the
//! file.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use anyhow::{Context, Result, bail, ensure};
use polars::io::parquet::read::FileMetadata;
use polars::prelude::{
    ArrowDataType, BooleanChunked, Column, CsvEncoding, CsvReadOptions, DataFrame, DataType,
    Engine, Expr, Field, IntoLazy, JsonFormat, JsonReader, LazyCsvReader, LazyFileListReader,
    LazyFrame, LazyJsonLineReader, NULL, ParquetReader, PlRefPath, PlanCallback, PolarsResult,
    RowIndex, Schema, SerReader, TimeUnit, UnionArgs, col, concat_str, lit, when,
};

use crate::schema::{self, Kind};
use crate::support::parquet;

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
    /// A part file of `sentinel partition` (`shard=K/part-*.parquet`): the contract columns as
    /// text and the rows' original `source_file`, `source_row` and `source_index`.
    Partition,
}

/// How a CSV or NDJSON file is compressed, by its last extension (`.gz`, `.zst`). Parquet files
/// compress their own pages and are never wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a file name says, and the name without that extension.
    fn split(name: &str) -> (Compression, &str) {
        let lower = name.to_ascii_lowercase();
        for (ext, c) in [
            (".gz", Compression::Gzip),
            (".zst", Compression::Zstd),
            (".zstd", Compression::Zstd),
        ] {
            if lower.ends_with(ext) {
                return (c, &name[..name.len() - ext.len()]);
            }
        }
        (Compression::None, name)
    }

    /// The compression of the file at `path`.
    pub fn of(path: &Path) -> Compression {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        Compression::split(&name).0
    }
}

/// The extensions `recover` reads, for messages.
pub const KNOWN_EXTENSIONS: &str = ".parquet, .csv, .ndjson or .jsonl (CSV and NDJSON also \
                                    compressed, as .gz or .zst)";

impl Format {
    /// The format of a file by its name: `.parquet`, `.csv`, `.ndjson`, `.jsonl`, the last three
    /// optionally followed by `.gz` or `.zst`.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        let (compression, name) = Compression::split(name);
        let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" if compression == Compression::None => Some(Format::Parquet),
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

/// The inputs of a run in run order, and the files of input folders that were skipped because
/// they are not telemetry (only with `skip_unknown`).
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub inputs: Vec<Input>,
    pub skipped: Vec<PathBuf>,
}

/// Expands `paths` into input files in run order: files as given, a folder's files in name order,
/// nested folders (hive-style `date=2026-11-30/` partitions among them) included, depth first.
/// Fails on a missing path, a named file of an unknown format, and a folder without any
/// telemetry file. A folder's file of another format is an error naming it, unless
/// `skip_unknown`: then it is listed in `skipped`, so that no file is ever left out silently.
pub fn resolve(paths: &[PathBuf], skip_unknown: bool) -> Result<Resolved> {
    if paths.is_empty() {
        bail!("no --input given");
    }
    let mut resolved = Resolved::default();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("input {}", path.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            let mut visited = Vec::new();
            walk(path, &mut files, &mut visited)?;
            files.sort();
            let before = resolved.inputs.len();
            for file in files {
                match Format::of(&file) {
                    Some(format) => resolved.inputs.push(Input { path: file, format }),
                    None if skip_unknown => resolved.skipped.push(file),
                    None => bail!(
                        "input folder {}: {} is not a telemetry file (expected {KNOWN_EXTENSIONS}); \
                         move it out of the folder or pass --skip-unknown to skip such files",
                        path.display(),
                        file.display()
                    ),
                }
            }
            if resolved.inputs.len() == before {
                bail!(
                    "input folder {} holds no telemetry file ({KNOWN_EXTENSIONS})",
                    path.display()
                );
            }
        } else {
            let Some(format) = Format::of(path) else {
                bail!(
                    "input {}: unknown format (expected {KNOWN_EXTENSIONS})",
                    path.display()
                );
            };
            resolved.inputs.push(Input {
                path: path.clone(),
                format,
            });
        }
    }
    Ok(resolved)
}

/// Every file below `dir`, following symbolic links but entering each real folder once.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, visited: &mut Vec<PathBuf>) -> Result<()> {
    let real = std::fs::canonicalize(dir).with_context(|| format!("input {}", dir.display()))?;
    if visited.contains(&real) {
        return Ok(());
    }
    visited.push(real);
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("listing input folder {}", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("listing input folder {}", dir.display()))?
            .path();
        let meta = std::fs::metadata(&path).with_context(|| format!("input {}", path.display()))?;
        if meta.is_dir() {
            walk(&path, files, visited)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
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

/// Whether a Parquet column of `dtype` (as its footer declares it) may feed a contract column of
/// `kind`: the same rule as [`fits`], decided before any page is decoded. 128-bit integers are
/// refused: polars is built without them and Parquet stores them only as decimals.
fn parquet_fits(kind: Kind, dtype: &ArrowDataType) -> bool {
    use ArrowDataType as A;
    let text = matches!(dtype, A::Utf8 | A::LargeUtf8 | A::Utf8View | A::Null);
    let int = matches!(
        dtype,
        A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64
    );
    match kind {
        _ if text => true,
        Kind::Text => false,
        Kind::Float => int || matches!(dtype, A::Float16 | A::Float32 | A::Float64),
        Kind::Int => int,
        Kind::Timestamp => matches!(dtype, A::Timestamp(..)),
    }
}

/// A Parquet column type as a user would name it in a message.
fn parquet_type_name(dtype: &ArrowDataType) -> String {
    use ArrowDataType as A;
    match dtype {
        A::Boolean => "bool".into(),
        A::Decimal(p, s) | A::Decimal32(p, s) | A::Decimal64(p, s) => format!("decimal({p}, {s})"),
        A::Decimal256(p, s) => format!("decimal256({p}, {s})"),
        A::Struct(_) => "struct".into(),
        A::List(_) | A::LargeList(_) | A::FixedSizeList(..) => "list".into(),
        A::Map(..) => "map".into(),
        A::Date32 | A::Date64 => "date".into(),
        A::Time32(_) | A::Time64(_) => "time of day".into(),
        A::Duration(_) => "duration".into(),
        A::Interval(_) => "interval".into(),
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => {
            "binary (bytes without a string annotation)".into()
        }
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Opens a Parquet file for reading with its footer read. Columns are typed as the Arrow schema a
/// writer may have stored beside the Parquet schema (the `ARROW:schema` key) says, unless it makes
/// a contract column a dictionary: then the file is typed by the Parquet schema alone, so that a
/// dictionary-encoded text column is text, not a categorical this polars build cannot represent.
/// (The Arrow schema is kept otherwise: it is what names a float16 column a float.)
fn open_parquet(path: &Path) -> Result<ParquetReader<File>> {
    let name = path.display();
    let open = || File::open(path).with_context(|| format!("opening {name}"));
    let unreadable = || format!("{name}: not a readable Parquet file");
    let mut reader = ParquetReader::new(open()?);
    let dictionary = {
        let schema = reader.schema().with_context(unreadable)?;
        schema::COLUMNS.iter().any(|c| {
            schema
                .get(c.name)
                .is_some_and(|f| matches!(f.dtype(), ArrowDataType::Dictionary(..)))
        })
    };
    if !dictionary {
        return Ok(reader);
    }
    let mut metadata = FileMetadata::clone(reader.get_metadata().with_context(unreadable)?);
    metadata.key_value_metadata = None;
    // A fresh reader: the first one has cached the schema it derived.
    let mut reader = ParquetReader::new(open()?);
    reader.set_metadata(Arc::new(metadata));
    Ok(reader)
}

/// Checks a Parquet file's columns against the contract from its footer alone, before any data
/// is decoded. Returns the contract columns the file holds, in contract order, and its rows.
fn parquet_columns(reader: &mut ParquetReader<File>, name: &str) -> Result<(Vec<String>, usize)> {
    let schema = reader
        .schema()
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    let mut present = Vec::new();
    for c in &schema::COLUMNS {
        match schema.get(c.name) {
            Some(field) if parquet_fits(c.kind, field.dtype()) => present.push(c.name.to_string()),
            Some(field) => bail!(
                "{name}: column `{}` has type {}, expected {} or text",
                c.name,
                parquet_type_name(field.dtype()),
                c.kind.name()
            ),
            None if c.required => bail!("{name}: required column `{}` is missing", c.name),
            None => {}
        }
    }
    let rows = reader
        .num_rows()
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    Ok((present, rows))
}

/// How many calls of [`guarded`] are running: while any is, panics are not printed (they become
/// errors that name the file).
static GUARDED: AtomicUsize = AtomicUsize::new(0);

/// Runs a reader or decoder of the file `name` and turns a panic inside it into an error naming
/// the file. A damaged file (a page header that lies about its size, an undecodable page) can
/// make a decoder panic; that must reach the user as exit 1 with the file named, not as a crash.
pub fn guarded<T>(name: &str, read: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.load(Ordering::SeqCst) == 0 {
                default(info);
            }
        }));
    });
    GUARDED.fetch_add(1, Ordering::SeqCst);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(read));
    GUARDED.fetch_sub(1, Ordering::SeqCst);
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no detail".into());
            bail!(
                "{name}: could not be read: the file is damaged or encoded in a way Sentinel \
                 cannot decode (decoder: {what})"
            )
        }
    }
}

/// The shape of a JSON value, as far as the contract cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Scalar,
    Object,
    Array,
}

/// The contract columns an NDJSON file holds (a key present in at least one record), checked:
/// a value that is an object or an array rejects the file, as a column of a type that does not
/// fit does in Parquet. Records are scanned by hand (keys and the first byte of each value), so
/// numbers are never parsed here: the reader keeps them as their text.
fn ndjson_columns(bytes: &[u8], name: &str) -> Result<Vec<bool>> {
    let mut present = vec![false; schema::COLUMNS.len()];
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        ndjson_line(line, i, name, &mut present)?;
    }
    Ok(present)
}

/// Checks one NDJSON line (0-based index `i`) as [`ndjson_columns`] does and marks the contract
/// columns it holds in `present`. Returns whether the line holds a record.
fn ndjson_line(line: &[u8], i: usize, name: &str, present: &mut [bool]) -> Result<bool> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(false);
    }
    let mut bad = None;
    scan_object(line, &mut |key, shape| {
        if let Some(c) = schema::COLUMNS
            .iter()
            .position(|c| c.name.as_bytes() == key)
        {
            present[c] = true;
            if shape != Shape::Scalar && bad.is_none() {
                bad = Some((c, shape));
            }
        }
    })
    .map_err(|what| anyhow::anyhow!("{name}: line {}: {what}", i + 1))?;
    if let Some((c, shape)) = bad {
        let c = &schema::COLUMNS[c];
        bail!(
            "{name}: line {}: column `{}` holds a JSON {}, expected {} or text",
            i + 1,
            c.name,
            if shape == Shape::Object {
                "object"
            } else {
                "array"
            },
            c.kind.name()
        );
    }
    Ok(true)
}

/// [`ndjson_columns`] over a file, line by line, in bounded memory; also counts the records.
/// None when the file starts with a byte-order mark (such a file is read whole).
fn ndjson_columns_streamed(path: &Path, name: &str) -> Result<Option<(Vec<bool>, usize)>> {
    use std::io::BufRead;
    let file = File::open(path).with_context(|| format!("opening {name}"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    if reader
        .fill_buf()
        .with_context(|| format!("reading {name}"))?
        .starts_with(b"\xEF\xBB\xBF")
    {
        return Ok(None);
    }
    let mut present = vec![false; schema::COLUMNS.len()];
    let mut records = 0;
    let mut line = Vec::new();
    for i in 0.. {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {name}"))?;
        if n == 0 {
            break;
        }
        records += usize::from(ndjson_line(&line, i, name, &mut present)?);
    }
    Ok(Some((present, records)))
}

/// Calls `on_key` with each top-level key of a JSON object (its text between the quotes, escapes
/// resolved) and the shape of its value. Syntax it does not need to understand is left to the
/// NDJSON reader, which rejects what is not JSON.
fn scan_object(line: &[u8], on_key: &mut dyn FnMut(&[u8], Shape)) -> Result<(), String> {
    let mut pos = skip_space(line, 0);
    if line.get(pos) != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    pos += 1;
    loop {
        pos = skip_space(line, pos);
        match line.get(pos) {
            Some(b'}') | None => return Ok(()),
            Some(b',') => {
                pos += 1;
                continue;
            }
            Some(b'"') => {}
            Some(_) => return Ok(()),
        }
        let end = string_end(line, pos);
        let raw = &line[pos + 1..end.saturating_sub(1).max(pos + 1)];
        let key: std::borrow::Cow<[u8]> = if raw.contains(&b'\\') {
            match serde_json::from_slice::<String>(&line[pos..end]) {
                Ok(k) => k.into_bytes().into(),
                Err(_) => raw.into(),
            }
        } else {
            raw.into()
        };
        pos = skip_space(line, end);
        if line.get(pos) != Some(&b':') {
            return Ok(());
        }
        pos = skip_space(line, pos + 1);
        let shape = match line.get(pos) {
            Some(b'{') => Shape::Object,
            Some(b'[') => Shape::Array,
            _ => Shape::Scalar,
        };
        on_key(&key, shape);
        pos = value_end(line, pos);
    }
}

fn skip_space(line: &[u8], mut pos: usize) -> usize {
    while line.get(pos).is_some_and(|b| b.is_ascii_whitespace()) {
        pos += 1;
    }
    pos
}

/// The position just past the string that starts (with its quote) at `pos`.
fn string_end(line: &[u8], mut pos: usize) -> usize {
    pos += 1;
    while let Some(&b) = line.get(pos) {
        pos += 1;
        match b {
            b'\\' => pos += 1,
            b'"' => return pos,
            _ => {}
        }
    }
    line.len()
}

/// The position just past the value that starts at `pos`: a string, a balanced object or array,
/// or a bare scalar up to the next `,` or `}`.
fn value_end(line: &[u8], mut pos: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = line.get(pos) {
        match b {
            b'"' => {
                pos = string_end(line, pos);
                if depth == 0 {
                    return pos;
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return pos + 1;
                }
            }
            b',' | b'}' if depth == 0 => return pos,
            _ => {}
        }
        pos += 1;
    }
    line.len()
}

/// A reader of a CSV or NDJSON file's bytes, decompressed when its name ends in `.gz` or `.zst`,
/// and what to say when reading it fails.
fn decoder(path: &Path) -> Result<(Box<dyn Read>, String)> {
    let name = path.display();
    let file = File::open(path).with_context(|| format!("opening {name}"))?;
    Ok(match Compression::of(path) {
        Compression::None => (Box::new(file), format!("reading {name}")),
        Compression::Gzip => (
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
            format!("{name}: not a readable gzip file"),
        ),
        Compression::Zstd => (
            Box::new(
                zstd::stream::read::Decoder::new(file)
                    .with_context(|| format!("{name}: not a readable zstd file"))?,
            ),
            format!("{name}: not a readable zstd file"),
        ),
    })
}

/// The bytes of a CSV or NDJSON file, decompressed when its name ends in `.gz` or `.zst`.
fn contents(path: &Path) -> Result<Vec<u8>> {
    let (mut reader, failure) = decoder(path)?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).context(failure)?;
    Ok(bytes)
}

/// A compressed CSV or NDJSON input decompressed into a temporary file in `dir` (named like the
/// input without its compression extension), so that it can be streamed like a plain one; the
/// file is removed when the returned handle is dropped.
fn decompressed(input: &Input, dir: &Path) -> Result<tempfile::NamedTempFile> {
    let name = input.path.display();
    let suffix = match input.format {
        Format::Ndjson => ".ndjson",
        _ => ".csv",
    };
    let mut spill = tempfile::Builder::new()
        .prefix(".input.")
        .suffix(suffix)
        .tempfile_in(dir)
        .with_context(|| format!("creating a file to decompress {name} into"))?;
    let (mut reader, failure) = decoder(&input.path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer).context(failure.clone())?;
        if n == 0 {
            break;
        }
        spill
            .write_all(&buffer[..n])
            .with_context(|| format!("decompressing {name} into {}", spill.path().display()))?;
    }
    spill
        .flush()
        .with_context(|| format!("decompressing {name} into {}", spill.path().display()))?;
    Ok(spill)
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

/// Checks a Parquet input's columns from its footer and returns its row count; None for CSV and
/// NDJSON, which have no footer (they are checked as they are read).
pub fn parquet_rows(input: &Input) -> Result<Option<usize>> {
    if !matches!(input.format, Format::Parquet | Format::Partition) {
        return Ok(None);
    }
    let name = input.path.display().to_string();
    guarded(&name, || {
        let mut reader = open_parquet(&input.path)?;
        Ok(Some(parquet_columns(&mut reader, &name)?.1))
    })
}

/// The device_id column, as text (as [`read`] gives it), of a Parquet input's rows
/// `offset..offset + len`: all that recover's census ([`super::census`]) reads.
pub fn read_ids(input: &Input, rows: (usize, usize)) -> Result<Column> {
    let name = input.path.display().to_string();
    let df = guarded(&name, || {
        open_parquet(&input.path)?
            .with_columns(Some(vec![schema::DEVICE_ID.to_string()]))
            .with_slice(Some(rows))
            .finish()
            .with_context(|| format!("{name}: not a readable Parquet file"))
    })?;
    let dtype = df.column(schema::DEVICE_ID)?.dtype().clone();
    let text = df
        .lazy()
        .select([as_text(schema::DEVICE_ID, &dtype)])
        .collect()
        .with_context(|| format!("reading {name}"))?;
    Ok(text.column(schema::DEVICE_ID)?.clone())
}

/// Like [`read`], but of a Parquet input only the rows `offset..offset + len` (source_row keeps
/// counting from the file's first row). CSV and NDJSON inputs are read whole here (see
/// [`stream_text`] for batches).
pub fn read_rows(input: &Input, index: usize, rows: Option<(usize, usize)>) -> Result<LazyFrame> {
    let path = &input.path;
    let name = path.display().to_string();
    if input.format == Format::Partition {
        return read_partition(path, rows);
    }
    let offset = match (input.format, rows) {
        (Format::Parquet, Some((offset, _))) => offset,
        _ => 0,
    };
    // Which contract columns the file holds: known from the header (CSV), the footer (Parquet) or
    // a scan of the records (NDJSON, whose reader fills absent keys with nulls).
    let mut ndjson_present = None;
    let df: DataFrame = match input.format {
        Format::Parquet | Format::Partition => guarded(&name, || {
            let mut reader = open_parquet(path)?;
            let (present, _) = parquet_columns(&mut reader, &name)?;
            reader
                .with_columns(Some(present))
                .with_slice(rows)
                .finish()
                .with_context(|| format!("{name}: not a readable Parquet file"))
        })?,
        // No schema inference: every CSV column is read as text.
        Format::Csv => {
            let options = csv_options();
            guarded(&name, || {
                match Compression::of(path) {
                    Compression::None => options
                        .try_into_reader_with_file_path(Some(path.clone()))
                        .and_then(|r| r.finish()),
                    _ => options
                        .into_reader_with_file_handle(Cursor::new(contents(path)?))
                        .finish(),
                }
                .with_context(|| format!("{name}: not a readable CSV file"))
            })?
        }
        Format::Ndjson => {
            let mut bytes = contents(path)?;
            // A byte-order mark, as Windows tools write one, is not part of the first record.
            if bytes.starts_with(b"\xEF\xBB\xBF") {
                bytes.drain(..3);
            }
            let present = ndjson_columns(&bytes, &name)?;
            let df = if present.iter().any(|p| *p) {
                guarded(&name, || {
                    JsonReader::new(Cursor::new(bytes))
                        .with_json_format(JsonFormat::JsonLines)
                        .with_schema(text_schema())
                        .finish()
                        .with_context(|| format!("{name}: not a readable NDJSON file"))
                })?
            } else if bytes.iter().all(u8::is_ascii_whitespace) {
                // No record at all: an empty export, not a file without columns.
                DataFrame::empty_with_schema(&text_schema())
            } else {
                bail!(
                    "{name}: no record holds any of the contract's columns (required column `{}` is missing)",
                    schema::DEVICE_ID
                );
            };
            ndjson_present = Some(present);
            df
        }
    };
    let exprs = contract_exprs(&name, df.schema(), ndjson_present.as_deref(), df.height())?;
    Ok(df
        .lazy()
        .select(exprs)
        .with_row_index(SOURCE_ROW, None)
        .with_columns([
            (col(SOURCE_ROW).cast(DataType::UInt64) + lit(offset as u64)),
            lit(name).alias(SOURCE_FILE),
            source_index(index),
        ]))
}

/// The input's number as the `source_index` column: UInt32, as in [`text_frame_schema`]. A bare
/// `lit` of an integer is a dynamic literal that polars materializes as Int32 when nothing else
/// fixes its type, so the one-piece run wrote Int32 where the bucketed run wrote UInt32.
fn source_index(index: usize) -> Expr {
    lit(index as u32).cast(DataType::UInt32).alias(SOURCE_INDEX)
}

/// Reads rows of a part file of `sentinel partition`: the columns [`read`] gives, with the
/// source columns as the file holds them (where each row came from in the original inputs).
fn read_partition(path: &Path, rows: Option<(usize, usize)>) -> Result<LazyFrame> {
    let name = path.display().to_string();
    let mut order = vec![SOURCE_ROW.to_string()];
    order.extend(schema::COLUMNS.iter().map(|c| c.name.to_string()));
    order.extend([SOURCE_FILE.to_string(), SOURCE_INDEX.to_string()]);
    let df = guarded(&name, || {
        let mut reader = open_parquet(path)?;
        let schema = reader
            .schema()
            .with_context(|| format!("{name}: not a readable Parquet file"))?;
        for column in &order {
            if schema.get(column.as_str()).is_none() {
                bail!(
                    "{name}: not a part file of `sentinel partition`: column `{column}` is missing"
                );
            }
        }
        reader
            .with_columns(Some(order.clone()))
            .with_slice(rows)
            .finish()
            .with_context(|| format!("{name}: not a readable Parquet file"))
    })?;
    for (column, dtype) in df.schema().iter() {
        let fits = match column.as_str() {
            SOURCE_ROW | SOURCE_INDEX => dtype.is_integer(),
            _ => dtype.is_string() || dtype == &DataType::Null,
        };
        if !fits {
            bail!(
                "{name}: not a part file of `sentinel partition`: column `{column}` has type {dtype}"
            );
        }
    }
    Ok(df.lazy().select(
        order
            .iter()
            .map(|c| match c.as_str() {
                SOURCE_ROW => col(c.as_str()).cast(DataType::UInt64),
                SOURCE_INDEX => col(c.as_str()).cast(DataType::UInt32),
                _ => col(c.as_str()).cast(DataType::String),
            })
            .collect::<Vec<_>>(),
    ))
}

/// The 17 contract columns of a file with columns `schema`, as text: typed columns that fit
/// converted, missing optional ones null. A missing required column, or one of a type that does
/// not fit, rejects the file. `ndjson_present` says which columns some NDJSON record holds.
fn contract_exprs(
    name: &str,
    schema: &Schema,
    ndjson_present: Option<&[bool]>,
    height: usize,
) -> Result<Vec<Expr>> {
    let mut exprs = Vec::with_capacity(schema::COLUMNS.len() + 3);
    for (i, c) in schema::COLUMNS.iter().enumerate() {
        let held = ndjson_present.is_none_or(|p| p[i] || height == 0);
        match schema.get(c.name) {
            Some(dtype) if held && fits(c.kind, dtype) => exprs.push(as_text(c.name, dtype)),
            Some(dtype) if held => bail!(
                "{name}: column `{}` has type {dtype}, expected {} or text",
                c.name,
                c.kind.name()
            ),
            _ if c.required => bail!("{name}: required column `{}` is missing", c.name),
            _ => exprs.push(
                lit(polars::prelude::NULL)
                    .cast(DataType::String)
                    .alias(c.name),
            ),
        }
    }
    Ok(exprs)
}

/// The CSV read options of every CSV input: a header, no schema inference (every column is
/// text), an empty file is no error, and bytes that are not UTF-8 become U+FFFD, which no column
/// accepts: the row is quarantined with a reason instead of the whole file being refused.
fn csv_options() -> CsvReadOptions {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_raise_if_empty(false)
        .map_parse_options(|p| p.with_encoding(CsvEncoding::LossyUtf8))
}

/// Whether an input is read in batches, in bounded memory: Parquet in slices of its row groups,
/// a plain CSV or NDJSON file through polars' streaming engine (a compressed one is first
/// decompressed into a temporary file when recover splits it into buckets, see [`split`]).
pub fn streams(input: &Input) -> bool {
    match input.format {
        Format::Parquet | Format::Partition => true,
        Format::Csv | Format::Ndjson => {
            Compression::of(&input.path) == Compression::None && streamable(&input.path)
        }
    }
}

/// Whether polars' streaming text readers can open this path as one file: UTF-8, and (the NDJSON
/// scanner always expands patterns) without a character a glob pattern would read.
fn streamable(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|p| !p.contains(['*', '?', '[', ']', '{', '}']))
}

/// About how many rows an input holds, to size recover's buckets: a Parquet footer's count;
/// otherwise the file's size over 128 bytes (a report is 150 to 250 bytes of CSV or NDJSON, so
/// this errs towards more, smaller buckets), four times that for a compressed file.
pub fn estimated_rows(input: &Input) -> Result<usize> {
    if let Some(rows) = parquet_rows(input)? {
        return Ok(rows);
    }
    let bytes = std::fs::metadata(&input.path)
        .with_context(|| format!("input {}", input.path.display()))?
        .len() as usize;
    Ok(match Compression::of(&input.path) {
        Compression::None => bytes / 128,
        _ => bytes / 32,
    })
}

/// Rows per batch of a streamed CSV or NDJSON file.
const CSV_BATCH_ROWS: usize = 1 << 18;

/// Streams a plain CSV or NDJSON input (see [`streams`]) through polars' streaming engine
/// and calls `each` with every batch, in file order, with the columns [`read`] gives. At most a
/// few batches are in memory at once: the engine waits while `each` works. An NDJSON file is first
/// checked line by line (the shapes and keys [`read`] checks); one that starts with a byte-order
/// mark is read whole instead.
pub fn stream_text(
    input: &Input,
    index: usize,
    each: &mut dyn FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    stream_text_from(input, &input.path, index, each)
}

/// [`stream_text`] reading the bytes from `path`, a plain file with the input's contents (the
/// input's own path, or its decompressed copy); rows are still named after the input.
fn stream_text_from(
    input: &Input,
    path: &Path,
    index: usize,
    each: &mut dyn FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    let path = &path.to_path_buf();
    let name = input.path.display().to_string();
    let text_path = path
        .to_str()
        .with_context(|| format!("{name}: not a UTF-8 path"))?;
    let row_index = Some(RowIndex {
        name: SOURCE_ROW.into(),
        offset: 0,
    });
    let (contract, scan) = match input.format {
        Format::Csv => {
            // The header alone says which contract columns the file holds.
            let header = guarded(&name, || {
                csv_options()
                    .with_n_rows(Some(0))
                    .try_into_reader_with_file_path(Some(path.clone()))
                    .and_then(|r| r.finish())
                    .with_context(|| format!("{name}: not a readable CSV file"))
            })?;
            let scan = LazyCsvReader::new(PlRefPath::new(text_path))
                .with_glob(false)
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .with_raise_if_empty(false)
                .with_encoding(CsvEncoding::LossyUtf8)
                .with_row_index(row_index)
                .finish()
                .with_context(|| format!("{name}: not a readable CSV file"))?;
            (contract_exprs(&name, header.schema(), None, 1)?, scan)
        }
        _ => {
            let Some((present, records)) = ndjson_columns_streamed(path, &name)? else {
                return each(read(input, index)?.collect()?);
            };
            if records == 0 {
                return each(read(input, index)?.collect()?);
            }
            if !present.iter().any(|p| *p) {
                bail!(
                    "{name}: no record holds any of the contract's columns (required column `{}` is missing)",
                    schema::DEVICE_ID
                );
            }
            let scan = LazyJsonLineReader::new(PlRefPath::new(text_path))
                .with_schema(Some(text_schema()))
                .with_row_index(row_index)
                .finish()
                .with_context(|| format!("{name}: not a readable NDJSON file"))?;
            (
                contract_exprs(&name, &text_schema(), Some(&present), records)?,
                scan,
            )
        }
    };
    let mut columns = vec![col(SOURCE_ROW).cast(DataType::UInt64)];
    columns.extend(contract);
    columns.extend([lit(name.clone()).alias(SOURCE_FILE), source_index(index)]);
    let lazy = scan.select(columns);
    let (tx, rx) = std::sync::mpsc::sync_channel::<DataFrame>(2);
    std::thread::scope(|scope| {
        let query = scope.spawn(move || {
            guarded(&name, || {
                lazy.sink_batches(
                    PlanCallback::new(move |df: DataFrame| Ok(tx.send(df).is_err())),
                    true,
                    std::num::NonZeroUsize::new(CSV_BATCH_ROWS),
                )?
                .collect_with_engine(Engine::Streaming)
                .with_context(|| format!("{name}: not readable"))
            })
        });
        let mut result = Ok(());
        for df in rx.iter() {
            result = each(df);
            if result.is_err() {
                break;
            }
        }
        drop(rx);
        let read = query
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("{}: the reader failed", path.display())));
        result.and(read.map(|_| ()))
    })
}

/// Where [`split`] sends each row of a frame whose first row is at this position in run order
/// (rows counted over every input, in run order): a part number, [`LONE`], or None to leave the
/// row out.
pub type Key<'a> = dyn Fn(&DataFrame, u64) -> Result<Vec<Option<u32>>> + Sync + 'a;

/// The part number of a row that goes to [`Lone::compute`] instead of a part.
pub const LONE: u32 = u32::MAX;

/// What [`split`] does with the rows [`Key`] sends to [`LONE`]: `compute` takes each slice's lone
/// rows, in run order, on the worker that read them; `take` gets what it made on the calling
/// thread, in run order.
pub struct Lone<'a, R> {
    pub compute: &'a (dyn Fn(DataFrame) -> Result<R> + Sync),
    pub take: &'a mut dyn FnMut(R) -> Result<()>,
    /// The share of the rows that go to parts (0 to 1), which sizes the read slices.
    pub grouped_share: f64,
}

/// Rows read at a time from a Parquet input while splitting it.
const SPLIT_ROWS: usize = 1 << 19;

/// Rows read at a time from a Parquet input whose lone rows are computed as they are read: a
/// slice is then a unit of work of its own, and smaller slices share it out more evenly between
/// the workers (at 1.14M rows, five slices instead of three).
const LONE_SPLIT_ROWS: usize = 1 << 18;

/// The most rows read at a time when slices grow with the part count (two workers hold one each).
const MAX_SPLIT_ROWS: usize = 1 << 20;

/// Rows each part receives from one slice, at least, on average: every slice adds a piece (a row
/// group, or a scratch piece) to every part file, and pieces of a few hundred rows made the split
/// of 113.8M rows into 455 buckets (512K-row slices) 2.6 times slower than into 285 (1M-row
/// slices), and reading them back slower too. Slices grow with the part count to keep pieces of
/// this size (1M-row slices for 285 buckets).
const ROWS_PER_PIECE: usize = 3_600;

/// Rows partitioned at a time within a slice: a block's text views (16 bytes a value) fit in a
/// core's 1 MiB L2 cache.
const PARTITION_ROWS: usize = 1 << 15;

/// Rows per part a block gives at least: with many parts, blocks of [`PARTITION_ROWS`] cut every
/// part's rows into frames of a hundred rows whose per-frame costs outweigh the cache (at 113.8M
/// rows, 285 buckets, the split took 256 s instead of 145 s unblocked), so blocks grow with the
/// part count. Up to 64 parts (inputs below 16M rows at the default bucket size) blocks stay at
/// [`PARTITION_ROWS`].
const BLOCK_ROWS_PER_PART: usize = 512;

/// Where [`split`] puts each part's rows.
#[derive(Clone, Copy)]
pub enum Parts<'a> {
    /// One Parquet file per path, with the columns [`read`] gives, written whether empty or not
    /// (`partition`'s datasets).
    Files(&'a [PathBuf]),
    /// One scratch file per path, read back once by [`read_scratch`] (recover's buckets on
    /// disk): a sequence of pieces, each a small Parquet file of its own (no compression, no
    /// statistics) behind its length. One Parquet file per bucket kept the metadata of every row
    /// group of every bucket in memory until the end, which at 113.8M rows (285 buckets x 114
    /// slices, 20 columns each) grew the split's memory linearly to 4.9 GB.
    Scratch(&'a [PathBuf]),
    /// This many parts kept in memory as the frames read (recover's buckets of inputs small
    /// enough to hold): nothing is encoded, written or read back.
    Memory(usize),
}

impl Parts<'_> {
    fn len(&self) -> usize {
        match self {
            Parts::Files(paths) | Parts::Scratch(paths) => paths.len(),
            Parts::Memory(n) => *n,
        }
    }

    /// A part's name in errors: its file, or its number.
    fn name(&self, p: usize) -> String {
        match self {
            Parts::Files(paths) | Parts::Scratch(paths) => paths[p].display().to_string(),
            Parts::Memory(_) => format!("bucket {p}"),
        }
    }
}

/// What [`split`] put in each part: its row count and, for [`Parts::Memory`], its frames in run
/// order (empty otherwise).
pub struct Split {
    pub rows: Vec<u64>,
    pub frames: Vec<Vec<DataFrame>>,
}

/// Splits the inputs' rows into `parts` by `key`, keeping run order within each part. `rows`
/// holds each input's row count from its Parquet footer (None for other inputs).
///
/// Inputs are taken in run order. A Parquet input is read in slices by worker threads, whose
/// pieces the calling thread appends in slice order; a plain CSV or NDJSON file is streamed in
/// batches ([`stream_text`]), a compressed one too after it is decompressed into a temporary file
/// beside the part files (parts in memory: read whole). Each part so holds its rows in run order, and
/// memory is bounded by a few slices or batches for every streamed input (parts kept in memory
/// aside).
pub fn split<R: Send>(
    inputs: &[Input],
    rows: &[Option<usize>],
    key: &Key,
    parts: Parts,
    lone: Option<Lone<R>>,
) -> Result<Split> {
    // Every input is read as the same all-text columns, so one schema serves every part;
    // the writers exist from the start so that workers can encode row groups for them.
    let schema = text_frame_schema();
    let files = match &parts {
        Parts::Files(paths) | Parts::Scratch(paths) => paths
            .iter()
            .map(|path| File::create(path).with_context(|| format!("creating {}", path.display())))
            .collect::<Result<Vec<_>>>()?,
        Parts::Memory(_) => Vec::new(),
    };
    let writers = match &parts {
        Parts::Files(_) => files
            .iter()
            .map(|file| {
                Ok(parquet::Writer::new(
                    file.try_clone()?,
                    &schema,
                    parquet::Layout::Kept {
                        plain: parquet::UNIQUE_COLUMNS,
                    },
                )?)
            })
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    // Every slice should give each part about ROWS_PER_PIECE rows; with lone rows computed
    // apart, only a share of each slice goes to the parts.
    let slice_rows = match &lone {
        None => SPLIT_ROWS.max(ROWS_PER_PIECE * parts.len()),
        Some(lone) => {
            let per_slice = (ROWS_PER_PIECE * parts.len()) as f64 / lone.grouped_share.max(0.01);
            LONE_SPLIT_ROWS.max((per_slice as usize).min(MAX_SPLIT_ROWS))
        }
    };
    let (compute_lone, mut take_lone) = match lone {
        Some(Lone { compute, take, .. }) => (Some(compute), Some(take)),
        None => (None, None),
    };
    // A frame of rows cut into pieces, one per part it has rows for, and what `compute_lone`
    // made of its lone rows (worker side).
    let pieces = |mut df: DataFrame, first: u64| -> Result<Sliced<R>> {
        // The parts' column types (a reader may give source_index as another integer).
        for (name, dtype) in schema.iter() {
            let column = df.column(name)?;
            if column.dtype() != dtype {
                let cast = column.cast(dtype)?;
                df.with_column(cast)?;
            }
        }
        let mut keys = key(&df, first)?;
        let mut made = None;
        if let Some(compute) = compute_lone
            && keys.contains(&Some(LONE))
        {
            let mask: BooleanChunked = keys.iter().map(|k| Some(*k == Some(LONE))).collect();
            made = Some(compute(df.filter(&mask)?)?);
            for k in keys.iter_mut().filter(|k| **k == Some(LONE)) {
                *k = None;
            }
        }
        if keys.iter().any(Option::is_none) {
            let mask: BooleanChunked = keys.iter().map(|k| Some(k.is_some())).collect();
            df = df.filter(&mask)?;
        }
        let keys: Vec<u32> = keys.into_iter().flatten().collect();
        ensure!(
            keys.iter().all(|&k| (k as usize) < parts.len()),
            "a row sent to no part"
        );
        df.with_column(Column::new(PART.into(), keys))?;
        // Partitioned a block at a time: each part's gather reads every column once, so over a
        // whole slice it streamed each column from memory once per part; a block's columns
        // stay in the core's cache.
        let mut by_part: Vec<Option<DataFrame>> = vec![None; parts.len()];
        let block_rows = PARTITION_ROWS.max(BLOCK_ROWS_PER_PART * parts.len());
        for offset in (0..df.height()).step_by(block_rows) {
            let block = df.slice(offset as i64, block_rows);
            for mut rows in block.partition_by_stable([PART], true)? {
                let p = rows.column(PART)?.u32()?.get(0).unwrap_or(0) as usize;
                rows.drop_in_place(PART)?;
                match &mut by_part[p] {
                    Some(part) => {
                        part.vstack_mut_owned(rows)?;
                    }
                    None => by_part[p] = Some(rows),
                }
            }
        }
        let pieces = by_part
            .into_iter()
            .enumerate()
            .filter_map(|(p, part)| Some((p, part?)))
            .map(|(p, mut part)| {
                let encoding = || format!("encoding {}", parts.name(p));
                let piece = match &parts {
                    Parts::Files(_) => {
                        part.rechunk_mut();
                        Piece::Encoded(writers[p].encode(&part).with_context(encoding)?)
                    }
                    Parts::Scratch(_) => Piece::Blob(
                        part.height(),
                        scratch_piece(&mut part).with_context(encoding)?,
                    ),
                    Parts::Memory(_) => Piece::Frame(part),
                };
                Ok((p, piece))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sliced { made, pieces })
    };
    // Where a compressed input is decompressed to be streamed: beside the part files (parts held
    // in memory are few rows, and such an input is read whole).
    let spill_dir = match &parts {
        Parts::Files(paths) | Parts::Scratch(paths) => paths.first().and_then(|p| p.parent()),
        Parts::Memory(_) => None,
    };
    let mut counts = vec![0u64; parts.len()];
    let mut frames: Vec<Vec<DataFrame>> = match parts {
        Parts::Memory(n) => (0..n).map(|_| Vec::new()).collect(),
        _ => Vec::new(),
    };
    // Appends pieces in the order they come (the calling thread's side).
    let mut append = |sliced: Sliced<R>| -> Result<()> {
        if let (Some(made), Some(take)) = (sliced.made, take_lone.as_mut()) {
            take(made)?;
        }
        for (p, piece) in sliced.pieces {
            let writing = || format!("writing {}", parts.name(p));
            match piece {
                Piece::Encoded(encoded) => {
                    counts[p] += encoded.rows as u64;
                    writers[p].write(encoded).with_context(writing)?;
                }
                Piece::Blob(rows, bytes) => {
                    counts[p] += rows as u64;
                    (&files[p]).write_all(&bytes).with_context(writing)?;
                }
                Piece::Frame(df) => {
                    counts[p] += df.height() as u64;
                    frames[p].push(df);
                }
            }
        }
        Ok(())
    };
    // The position in run order of the next input's first row.
    let mut base = 0u64;
    for (i, (input, rows)) in inputs.iter().zip(rows).enumerate() {
        // Streamed batches come in order on this thread: their positions are counted here.
        let mut next = base;
        let mut batch = |df: DataFrame| -> Result<()> {
            let first = next;
            next += df.height() as u64;
            append(pieces(df, first)?)
        };
        match rows {
            Some(rows) if input.format != Format::Csv => {
                let slices: Vec<(usize, usize)> = (0..(*rows).max(1))
                    .step_by(slice_rows)
                    .map(|offset| (offset, slice_rows.min(rows - offset)))
                    .collect();
                crate::support::parallel::ordered(
                    slices.len() as u64,
                    |n| {
                        let slice = slices[n as usize];
                        let df = read_rows(input, i, Some(slice))?
                            .collect()
                            .with_context(|| format!("reading {}", input.path.display()))?;
                        pieces(df, base + slice.0 as u64)
                    },
                    |_, p| append(p),
                )?;
                next += *rows as u64;
            }
            _ if streams(input) => stream_text(input, i, &mut batch)?,
            // A compressed text file is decompressed beside the parts and streamed from there,
            // in bounded memory, rather than decompressed into memory and read whole.
            _ if spill_dir.is_some_and(streamable) => {
                let spill = decompressed(input, spill_dir.unwrap_or(Path::new(".")))?;
                stream_text_from(input, spill.path(), i, &mut batch)?;
            }
            _ => batch(
                read(input, i)?
                    .collect()
                    .with_context(|| format!("reading {}", input.path.display()))?,
            )?,
        }
        base = next;
    }
    if let Parts::Files(paths) = parts {
        for (w, path) in writers.into_iter().zip(paths) {
            w.finish()
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(Split {
        rows: counts,
        frames,
    })
}

/// What [`split`] made of one frame on a worker: of its lone rows, and its pieces by part.
struct Sliced<R> {
    made: Option<R>,
    pieces: Vec<(usize, Piece)>,
}

/// A piece of a part, made on a worker: row groups for a part's Parquet file, a scratch piece
/// (its rows and its bytes, [`scratch_piece`]), or the rows themselves.
enum Piece {
    Encoded(parquet::Encoded),
    Blob(usize, Vec<u8>),
    Frame(DataFrame),
}

/// A scratch piece as it is appended to its part: its length (u64, little-endian), then `df` as
/// a Parquet file of its own (no compression, no statistics).
fn scratch_piece(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut bytes = vec![0; 8];
    parquet::append_file(
        &mut bytes,
        df,
        parquet::Layout::Scratch {
            plain: parquet::UNIQUE_COLUMNS,
        },
    )?;
    let len = (bytes.len() - 8) as u64;
    bytes[..8].copy_from_slice(&len.to_le_bytes());
    Ok(bytes)
}

/// Reads a scratch part written by [`split`] back: its pieces, in order, as one frame with the
/// columns [`read`] gives.
pub fn read_scratch(path: &Path) -> Result<DataFrame> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let cut_short = || anyhow::anyhow!("{}: a scratch file cut short", path.display());
    let mut frames = Vec::new();
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        let (len, after) = rest.split_first_chunk::<8>().ok_or_else(cut_short)?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| cut_short())?;
        let piece = after.get(..len).ok_or_else(cut_short)?;
        rest = &after[len..];
        let df = ParquetReader::new(Cursor::new(piece))
            .finish()
            .with_context(|| format!("reading {}", path.display()))?;
        frames.push(df);
    }
    joined(frames)
}

/// A part's pieces ([`split`]) as one frame, in their order, with the columns [`read`] gives.
pub fn joined(frames: Vec<DataFrame>) -> Result<DataFrame> {
    if frames.is_empty() {
        return Ok(DataFrame::empty_with_schema(&text_frame_schema()));
    }
    let args = UnionArgs {
        rechunk: true,
        ..UnionArgs::default()
    };
    let frames: Vec<LazyFrame> = frames.into_iter().map(DataFrame::lazy).collect();
    Ok(polars::prelude::concat(frames, args)?.collect()?)
}

/// The schema of the frames [`read`] gives: source_row, the 17 contract columns as text,
/// source_file, source_index.
pub fn text_frame_schema() -> Schema {
    let mut fields = vec![Field::new(SOURCE_ROW.into(), DataType::UInt64)];
    fields.extend(
        schema::COLUMNS
            .iter()
            .map(|c| Field::new(c.name.into(), DataType::String)),
    );
    fields.push(Field::new(SOURCE_FILE.into(), DataType::String));
    fields.push(Field::new(SOURCE_INDEX.into(), DataType::UInt32));
    fields.into_iter().collect()
}

const PART: &str = "__part";

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with the columns [`read`] gives, of `n` rows.
    fn text_frame(n: usize) -> DataFrame {
        let mut columns = vec![Column::new(
            SOURCE_ROW.into(),
            (0..n as u64).collect::<Vec<_>>(),
        )];
        for c in &schema::COLUMNS {
            let values: Vec<Option<String>> = (0..n)
                .map(|i| (i % 3 != 0).then(|| format!("{}-{i}", c.name)))
                .collect();
            columns.push(Column::new(c.name.into(), values));
        }
        columns.push(Column::new(SOURCE_FILE.into(), vec!["in.csv"; n]));
        columns.push(Column::new(SOURCE_INDEX.into(), vec![0u32; n]));
        DataFrame::new_infer_height(columns).unwrap()
    }

    /// Writes `pieces` as a scratch part the way `split` does.
    fn scratch(path: &Path, pieces: &[DataFrame]) {
        let bytes: Vec<u8> = pieces
            .iter()
            .flat_map(|piece| scratch_piece(&mut piece.clone()).unwrap())
            .collect();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_scratch_part_reads_back_as_its_pieces_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bucket-00000.pieces");
        let whole = text_frame(10);
        scratch(
            &path,
            &[whole.slice(0, 4), whole.slice(4, 1), whole.slice(5, 5)],
        );
        assert!(read_scratch(&path).unwrap().equals_missing(&whole));
        scratch(&path, &[]);
        assert_eq!(
            read_scratch(&path).unwrap().schema().as_ref(),
            &text_frame_schema()
        );
    }

    #[test]
    fn a_scratch_part_cut_short_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bucket-00000.pieces");
        scratch(&path, &[text_frame(5)]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        let err = read_scratch(&path).unwrap_err().to_string();
        assert!(
            err.contains("bucket-00000.pieces") && err.contains("cut short"),
            "{err}"
        );
    }
}
