//! Normalization, validation and triage (SPEC section 4) as polars lazy expressions: every row is
//! clean or quarantined with its reasons, and nothing is dropped, repaired or deduplicated.
//!
//! Every input column arrives as text (`ingest` turns typed Parquet values into the contract's text
//! forms), so one parsing path serves Parquet, CSV and NDJSON alike, and the raw values the triage
//! queue shows are exactly what the duplicate check compares. For each contract column the
//! sanitizer computes a normalized text (`__n_*`, trimmed, empty as null), a typed value (`__v_*`,
//! null unless valid) and at most one column reason (`__r_*`); row-level reasons follow.
//!
//! Null semantics: a polars filter and its negation both drop rows whose predicate is null, so
//! every flag here is made non-null (`fill_null(false)`) before it decides anything. Numbers,
//! timestamps, ids and versions are parsed by small Rust kernels, one pass per column
//! ([`format_layer`]): a parsed value is null exactly when the text does not have the column's
//! format (a TYPE_MISMATCH), so a null tells a mismatch from an out-of-range value.

use std::hash::BuildHasher;

use polars::prelude::{
    BooleanChunked, ChunkedArray, Column, DataType, Expr, Field, Float64Type, Int64Type,
    IntoColumn, LazyFrame, NULL, NewChunkedArray, PlHashMap, PlRandomState, PolarsNumericType,
    PolarsResult, StringChunked, StructChunked, TimeUnit, UInt32Chunked, as_struct, col, lit, when,
};
use polars_arrow::array::{
    Array, BooleanArray, MutableBinaryViewArray, PrimitiveArray, Utf8ViewArray, View,
};
use polars_arrow::bitmap::MutableBitmap;
use polars_arrow::datatypes::ArrowDataType;

use crate::config::Config;
use crate::recover::ingest::{SOURCE_FILE, SOURCE_INDEX, SOURCE_ROW};
use crate::schema::{self, Kind};
use crate::vocab::{ErrorCode, OtaStatus, Reason};

/// `problems` as one `;`-joined text (see [`explain`]); empty for a clean row.
pub const PROBLEMS: &str = "problems";
pub const PRIMARY_REASON: &str = "primary_reason";
pub const PRIORITY: &str = "priority";

fn n(name: &str) -> String {
    format!("__n_{name}")
}
fn v(name: &str) -> String {
    format!("__v_{name}")
}
fn r(name: &str) -> String {
    format!("__r_{name}")
}
fn xv(name: &str) -> String {
    format!("__x_{name}")
}
fn ok(name: &str) -> String {
    format!("__ok_{name}")
}

fn flag(e: Expr) -> Expr {
    e.fill_null(lit(false))
}

/// A text column normalized (SPEC section 3): trimmed of Unicode White_Space (as `str::trim`),
/// empty text as null. The trimmed texts are views into the column's own buffers
/// ([`substrings`]), so no text is copied, and a column none of whose values changes (numbers
/// and timestamps, nearly always) is passed on as it is.
fn normalized(name: &str) -> Expr {
    kernel(col(name), DataType::String, |s| {
        substrings(s, |t| {
            if !t.is_empty() && is_trimmed(t) {
                return Some(t);
            }
            Some(t.trim()).filter(|t| !t.is_empty())
        })
    })
    .alias(n(name))
}

/// `s` with each text replaced by `part(text)`, which must be a part of the text it is given
/// (or None for null): the new views point into `s`'s own buffers, or hold the part inline, so
/// no text is copied. A chunk none of whose texts changes is passed on as it is. (The trim
/// built a new column text by text: 0.44 s of recover's CPU at 1.14M rows.)
fn substrings(s: &StringChunked, part: impl Fn(&str) -> Option<&str>) -> Column {
    let chunks: Vec<Utf8ViewArray> = s.downcast_iter().map(|a| substrings_of(a, &part)).collect();
    StringChunked::from_chunk_iter(s.name().clone(), chunks).into_column()
}

fn substrings_of(a: &Utf8ViewArray, part: &impl Fn(&str) -> Option<&str>) -> Utf8ViewArray {
    let mut views: Option<Vec<View>> = None;
    let mut validity: Option<MutableBitmap> = None;
    for (i, view) in a.views().iter().enumerate() {
        if a.is_null(i) {
            continue;
        }
        let text = a.value(i);
        let new = part(text);
        if new.is_some_and(|p| p.len() == text.len()) {
            continue;
        }
        let views = views.get_or_insert_with(|| a.views().as_slice().to_vec());
        match new {
            None => {
                validity
                    .get_or_insert_with(|| match a.validity() {
                        Some(v) => v.clone().make_mut(),
                        None => {
                            let mut all = MutableBitmap::with_capacity(a.len());
                            all.extend_constant(a.len(), true);
                            all
                        }
                    })
                    .set(i, false);
            }
            Some(p) => {
                // The views below may only point into the text's own bytes (see SAFETY).
                let start = (p.as_ptr() as usize)
                    .checked_sub(text.as_ptr() as usize)
                    .filter(|start| p.len() <= text.len().saturating_sub(*start))
                    .expect("a part lies within its text");
                views[i] =
                    View::new_from_bytes(p.as_bytes(), view.buffer_idx, view.offset + start as u32);
            }
        }
    }
    let Some(views) = views else {
        return a.clone();
    };
    let validity = match validity {
        Some(v) => Some(v.into()),
        None => a.validity().cloned(),
    };
    let buffers = a.data_buffers().clone();
    // SAFETY: every view is `a`'s own or was made by `View::new_from_bytes` from a part of one of
    // `a`'s texts, which is UTF-8 cut at character boundaries (a `&str`), inline or at its own
    // offset in the buffer the text is in; the buffers are `a`'s. These are the invariants
    // `try_new` checks, by decoding every text again (a third of this function's time).
    #[allow(unsafe_code)]
    unsafe {
        Utf8ViewArray::new_unchecked_unknown_md(
            ArrowDataType::Utf8View,
            views.into(),
            buffers,
            validity,
            None,
        )
    }
}

/// Whether `str::trim` leaves `t` as it is. A text that starts and ends with an ASCII character
/// that is not White_Space (nearly every value) is trimmed already: only its first and last
/// bytes are looked at, where `str::trim` decoded both ends (4% of recover's CPU at 1M rows).
fn is_trimmed(t: &str) -> bool {
    // The ASCII characters of Unicode White_Space: tab, line feed, vertical tab, form feed,
    // carriage return, space.
    let space = |b: u8| b == b' ' || (0x09..=0x0d).contains(&b);
    match t.as_bytes() {
        [] => true,
        [first, .., last] | [first @ last] if first.is_ascii() && last.is_ascii() => {
            !space(*first) && !space(*last)
        }
        _ => t.trim().len() == t.len(),
    }
}

/// Maps a normalized text caselessly ([`schema::fold`]: Unicode full case folding) onto
/// `vocabulary`, in the vocabulary's spelling; null when it is not a word of it (the first word
/// wins should two fold alike). One pass: fold and look up, instead of a when/then per word that
/// built a string column each.
fn vocabulary_value(text: Expr, vocabulary: &[String]) -> Expr {
    let mut words: PlHashMap<String, String> = PlHashMap::default();
    for word in vocabulary {
        words
            .entry(schema::fold(word).into_owned())
            .or_insert_with(|| word.clone());
    }
    // A text spelled exactly as a word (nearly all) maps without folding: to the word its fold
    // maps to, which is itself unless an earlier word folds alike.
    let exact: PlHashMap<String, String> = vocabulary
        .iter()
        .map(|w| (w.clone(), words[schema::fold(w).as_ref()].clone()))
        .collect();
    text.map(
        move |c| {
            let s = c.str()?;
            let word = |v: &str| -> Option<&str> {
                exact
                    .get(v)
                    .or_else(|| words.get(schema::fold(v).as_ref()))
                    .map(String::as_str)
            };
            let words: Utf8ViewArray = s
                .downcast_iter()
                .flat_map(|a| a.iter().map(|v| v.and_then(word)))
                .collect::<MutableBinaryViewArray<str>>()
                .freeze();
            Ok(StringChunked::from_chunk_iter(s.name().clone(), [words]).into_column())
        },
        |_, field| Ok(Field::new(field.name().clone(), DataType::String)),
    )
}

/// The column-level reasons, by code: a column's reason is stored as its index here plus one (0:
/// no reason), so that clean rows, the great majority, never build a string.
const COLUMN_REASONS: [Reason; 5] = [
    Reason::MissingRequired,
    Reason::TypeMismatch,
    Reason::OutOfRange,
    Reason::UnknownCategory,
    Reason::BadTimestamp,
];

/// The row-level reasons after them, each with the flag column that raises it.
const ROW_REASONS: [(&str, Reason); 4] = [
    ("__signal_drop", Reason::SignalDrop),
    ("__inconsistent", Reason::Inconsistent),
    ("__conflict", Reason::Conflict),
    ("__duplicate", Reason::Duplicate),
];

/// Whether the row has any reason at all.
const BAD: &str = "__bad";

/// The valid device id as a number ([`dense_index`]): the key of the two windows over a device.
const DEVICE: &str = "__device";

/// The parsed `reported_at` where it parses, else null: with [`DEVICE`], CONFLICT's key.
const AT: &str = "__at";

fn code(reason: Reason) -> u8 {
    COLUMN_REASONS
        .iter()
        .position(|r| *r == reason)
        .expect("a column-level reason") as u8
        + 1
}

/// The reason code of one column: the first of missing / type / range / category / timestamp.
fn reason(pairs: Vec<(Expr, Reason)>) -> Expr {
    let mut chain = when(lit(false))
        .then(lit(0u8))
        .when(lit(false))
        .then(lit(0u8));
    for (cond, reason) in pairs {
        chain = chain.when(flag(cond)).then(lit(code(reason)));
    }
    chain.otherwise(lit(0u8))
}

/// Value and reason expressions of one contract column, from its normalized text.
fn column_exprs(c: &schema::Column, config: &Config, as_of_us: i64) -> (Expr, Expr) {
    let t = col(n(c.name));
    let missing = if c.required {
        t.clone().is_null()
    } else {
        lit(false)
    };
    match (c.name, c.kind) {
        (schema::DEVICE_ID | schema::GATEWAY_ID, _) => {
            let ok = col(ok(c.name));
            let value = when(ok.clone())
                .then(t.clone())
                .otherwise(lit(NULL).cast(DataType::String));
            (
                value,
                reason(vec![
                    (missing, Reason::MissingRequired),
                    (t.is_not_null().and(ok.not()), Reason::TypeMismatch),
                ]),
            )
        }
        (schema::REGION | schema::HW_MODEL | schema::OTA_STATUS | schema::ERROR_CODE, _) => {
            let vocabulary: Vec<String> = match c.name {
                schema::REGION => config.regions.clone(),
                schema::HW_MODEL => config.models.keys().cloned().collect(),
                schema::OTA_STATUS => OtaStatus::ALL.iter().map(|s| s.to_string()).collect(),
                _ => ErrorCode::ALL.iter().map(|s| s.to_string()).collect(),
            };
            let value = vocabulary_value(t.clone(), &vocabulary);
            // The value is materialized before the reasons are computed (see `annotate`).
            let unknown = t.is_not_null().and(col(v(c.name)).is_null());
            (
                value,
                reason(vec![
                    (missing, Reason::MissingRequired),
                    (unknown, Reason::UnknownCategory),
                ]),
            )
        }
        (schema::FIRMWARE_FROM | schema::FIRMWARE_TARGET | schema::FIRMWARE_REPORTED, _) => {
            let ok = col(ok(c.name));
            let value = when(ok.clone())
                .then(kernel(t.clone(), DataType::String, |s| {
                    substrings(s, |v| Some(v.strip_prefix(['v', 'V']).unwrap_or(v)))
                }))
                .otherwise(lit(NULL).cast(DataType::String));
            (
                value,
                reason(vec![
                    (missing, Reason::MissingRequired),
                    (t.is_not_null().and(ok.not()), Reason::TypeMismatch),
                ]),
            )
        }
        (_, Kind::Float) => {
            let (is_number, x) = (col(ok(c.name)), col(xv(c.name)));
            let (lo, hi) = schema::PCT_RANGE;
            let bad = x
                .clone()
                .is_null()
                .or(flag(x.clone().is_nan()))
                .or(x.clone().lt(lit(lo)))
                .or(x.clone().gt(lit(hi)));
            let type_mismatch = t.clone().is_not_null().and(is_number.clone().not());
            let out_of_range = is_number.and(flag(bad.clone()));
            let value = when(flag(bad).not())
                .then(x)
                .otherwise(lit(NULL).cast(DataType::Float64));
            (
                value,
                reason(vec![
                    (missing, Reason::MissingRequired),
                    (type_mismatch, Reason::TypeMismatch),
                    (out_of_range, Reason::OutOfRange),
                ]),
            )
        }
        (_, Kind::Int) => {
            let (is_int, x) = (col(ok(c.name)), col(xv(c.name)));
            let (lo, hi) = if c.name == schema::RSSI_DBM {
                schema::RSSI_RANGE
            } else {
                schema::COUNT_RANGE
            };
            let bad = x
                .clone()
                .is_null()
                .or(x.clone().lt(lit(lo)))
                .or(x.clone().gt(lit(hi)));
            let type_mismatch = t.clone().is_not_null().and(is_int.clone().not());
            let out_of_range = is_int.and(flag(bad.clone()));
            let value = when(flag(bad).not())
                .then(x.cast(DataType::Int32))
                .otherwise(lit(NULL).cast(DataType::Int32));
            (
                value,
                reason(vec![
                    (missing, Reason::MissingRequired),
                    (type_mismatch, Reason::TypeMismatch),
                    (out_of_range, Reason::OutOfRange),
                ]),
            )
        }
        (_, Kind::Timestamp) => {
            let (micros, valid) = (col(xv(c.name)), col(ok(c.name)));
            let type_mismatch = t.clone().is_not_null().and(valid.clone().not());
            let earliest = schema::parse_timestamp("2000-01-01T00:00:00Z").expect("constant");
            let latest = as_of_us + 5 * 60 * 1_000_000;
            let mut bad_time = micros
                .clone()
                .gt(lit(latest))
                .or(micros.clone().lt(lit(earliest)));
            if c.name == schema::REPORTED_AT {
                // reported_at earlier than update_started_at: the report predates its own update.
                bad_time = bad_time.or(micros
                    .clone()
                    .lt(col(v(schema::UPDATE_STARTED_AT)).cast(DataType::Int64)));
            }
            let bad_time = valid.clone().and(flag(bad_time));
            let value = when(valid.and(bad_time.clone().not()))
                .then(micros)
                .otherwise(lit(NULL).cast(DataType::Int64))
                .cast(DataType::Datetime(TimeUnit::Microseconds, None));
            (
                value,
                reason(vec![
                    (missing, Reason::MissingRequired),
                    (type_mismatch, Reason::TypeMismatch),
                    (bad_time, Reason::BadTimestamp),
                ]),
            )
        }
        _ => unreachable!("every text column is an id, an enum or a version"),
    }
}

/// Per-column format work, materialized as columns once because the checks that follow read
/// them many times (polars is built without common-subexpression elimination here): the parsed
/// value of number and timestamp columns (`__x_*`, null when the text does not have the column's
/// format) and whether id and version texts have theirs (`__ok_*`); vocabulary columns need no
/// format layer ([`vocabulary_value`]). Parsing is one Rust pass per column
/// ([`schema::parse_float`], [`schema::parse_int`], [`schema::parse_timestamp`],
/// [`schema::is_valid_id`], [`schema::is_version`]): the equivalent chains of polars string
/// expressions (regex checks, slices and casts per field) were most of the sanitizer's time.
fn format_layer(c: &schema::Column) -> Vec<Expr> {
    let t = col(n(c.name));
    match c.kind {
        Kind::Float => {
            vec![
                kernel(t, DataType::Float64, |s| {
                    number_column::<Float64Type>(s, schema::parse_float)
                })
                .alias(xv(c.name)),
            ]
        }
        Kind::Int => {
            vec![
                kernel(t, DataType::Int64, |s| {
                    number_column::<Int64Type>(s, schema::parse_int)
                })
                .alias(xv(c.name)),
            ]
        }
        Kind::Timestamp => vec![
            kernel(t, DataType::Int64, |s| {
                number_column::<Int64Type>(s, schema::parse_timestamp)
            })
            .alias(xv(c.name)),
        ],
        Kind::Text => match c.name {
            schema::DEVICE_ID | schema::GATEWAY_ID => {
                vec![
                    kernel(t, DataType::Boolean, |s| {
                        bool_column(s, schema::is_valid_id)
                    })
                    .alias(ok(c.name)),
                ]
            }
            schema::FIRMWARE_FROM | schema::FIRMWARE_TARGET | schema::FIRMWARE_REPORTED => {
                vec![
                    kernel(t, DataType::Boolean, |s| bool_column(s, schema::is_version))
                        .alias(ok(c.name)),
                ]
            }
            // Vocabulary columns: looked up as their value is computed (`vocabulary_value`).
            _ => vec![],
        },
    }
}

/// Whether a number or timestamp column's text has its format: its parsed value is not null.
fn parsed_flag(c: &schema::Column) -> Option<Expr> {
    matches!(c.kind, Kind::Float | Kind::Int | Kind::Timestamp)
        .then(|| col(xv(c.name)).is_not_null().alias(ok(c.name)))
}

/// A Rust function over a text column as an expression of type `dtype`.
fn kernel(text: Expr, dtype: DataType, f: fn(&StringChunked) -> Column) -> Expr {
    text.map(
        move |c| Ok(f(c.str()?)),
        move |_, field| Ok(Field::new(field.name().clone(), dtype.clone())),
    )
}

// The kernels below read each chunk's texts straight from its array and build one array, as
// the ChunkedArray builder did: its iterator chains the chunks (a flattening iterator) and its
// builder appends value by value, together about a third of the format layer's time.

fn number_column<T: PolarsNumericType>(
    s: &StringChunked,
    parse: fn(&str) -> Option<T::Native>,
) -> Column {
    let values: PrimitiveArray<T::Native> = s
        .downcast_iter()
        .flat_map(|a| a.iter().map(|v| v.and_then(parse)))
        .collect();
    ChunkedArray::<T>::from_chunk_iter(s.name().clone(), [values]).into_column()
}

/// A number per distinct text, in order of first appearance; null for null. The windows over a
/// device ([`conflicts`], [`has_clean`]) index arrays by it instead of hashing the text again.
fn dense_index(s: &StringChunked) -> Column {
    let mut seen: PlHashMap<&str, u32> =
        PlHashMap::with_capacity_and_hasher(s.len(), Default::default());
    UInt32Chunked::from_iter_options(
        s.name().clone(),
        s.iter().map(|v| {
            v.map(|t| {
                let next = seen.len() as u32;
                *seen.entry(t).or_insert(next)
            })
        }),
    )
    .into_column()
}

/// Rows per [`dense_index`] value.
fn rows_per_device(device: &UInt32Chunked) -> Vec<u32> {
    let mut rows = vec![0u32; device.len()];
    for d in device.iter().flatten() {
        rows[d as usize] += 1;
    }
    rows
}

/// CONFLICT: whether the row's key (device, parsed time; both set) has more than one distinct
/// raw row, that is more than one row that is first of its raw values (`__first`). A device with
/// one row shares no key with another row, so only the rows of the others (a few percent) are
/// counted in a hash map.
fn conflicts(s: &StructChunked) -> PolarsResult<Column> {
    let device = s.field_by_name(DEVICE)?;
    let device = device.u32()?;
    let at = s.field_by_name(AT)?;
    let at = at.i64()?;
    let first = s.field_by_name("__first")?;
    let first = first.bool()?;
    let rows = rows_per_device(device);
    let keys: Vec<Option<(u32, i64)>> = device
        .iter()
        .zip(at.iter())
        .map(|(d, t)| Some((d?, t?)).filter(|(d, _)| rows[*d as usize] > 1))
        .collect();
    let mut variants: PlHashMap<(u32, i64), u32> = PlHashMap::default();
    for (key, first) in keys.iter().zip(first.iter()) {
        if let Some(key) = key {
            *variants.entry(*key).or_default() += u32::from(first.unwrap_or(false));
        }
    }
    Ok(BooleanChunked::from_iter_values(
        s.name().clone(),
        keys.iter().map(|k| k.is_some_and(|k| variants[&k] > 1)),
    )
    .into_column())
}

/// Whether no earlier row has all 17 raw values equal (a null equals a null only), that is
/// whether the row is not a DUPLICATE. Two identical rows share their raw device_id and
/// reported_at, so rows are chained by a hash of that pair and a row is compared value by value
/// only with the earlier rows of its chain that are first themselves (a few percent of rows
/// repeat the pair). One pass and one hash table, where hashing whole rows, or a join of the
/// repeated pairs' verdicts, went over every column.
fn first_of_raw(s: &StructChunked) -> PolarsResult<Column> {
    let fields = s.fields_as_series();
    let columns = fields
        .iter()
        .map(|f| f.rechunk().str().cloned())
        .collect::<PolarsResult<Vec<StringChunked>>>()?;
    let arrays: Vec<_> = columns.iter().map(|c| c.downcast_as_array()).collect();
    let field = |name: &str| {
        fields
            .iter()
            .position(|f| f.name().as_str() == name)
            .map(|i| arrays[i])
            .expect("a contract column")
    };
    let (ids, times) = (field(schema::DEVICE_ID), field(schema::REPORTED_AT));
    let same = |a: usize, b: usize| arrays.iter().all(|x| x.get(a) == x.get(b));
    let hasher = PlRandomState::default();
    // The latest first row of each pair's chain; `earlier[i]` is the first row of the same pair
    // chained before row i.
    let mut latest: PlHashMap<u64, u32> =
        PlHashMap::with_capacity_and_hasher(s.len(), Default::default());
    let mut earlier = vec![u32::MAX; s.len()];
    let mut first = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        let key = hasher.hash_one((ids.get(i), times.get(i)));
        let mut is_first = true;
        if let Some(&head) = latest.get(&key) {
            let mut j = head;
            while j != u32::MAX {
                if same(i, j as usize) {
                    is_first = false;
                    break;
                }
                j = earlier[j as usize];
            }
        }
        if is_first && let Some(head) = latest.insert(key, i as u32) {
            earlier[i] = head;
        }
        first.push(is_first);
    }
    Ok(BooleanChunked::from_iter_values(s.name().clone(), first.into_iter()).into_column())
}

/// Whether the row's device ([`dense_index`]) has a row that is not bad; false without a device.
fn has_clean(s: &StructChunked) -> PolarsResult<Column> {
    let device = s.field_by_name(DEVICE)?;
    let device = device.u32()?;
    let bad = s.field_by_name(BAD)?;
    let bad = bad.bool()?;
    let mut clean = vec![false; device.len()];
    for (d, b) in device.iter().zip(bad.iter()) {
        if let (Some(d), Some(false)) = (d, b) {
            clean[d as usize] = true;
        }
    }
    Ok(BooleanChunked::from_iter_values(
        s.name().clone(),
        device.iter().map(|d| d.is_some_and(|d| clean[d as usize])),
    )
    .into_column())
}

/// A Rust function over a struct of columns that relates rows, giving a boolean column. Applied
/// to the whole frame, never a part: polars evaluates a `map` (an elementwise function) chunk by
/// chunk when the frame comes in several, which would hide a row's relatives in other chunks.
fn struct_kernel(fields: Vec<Expr>, f: fn(&StructChunked) -> PolarsResult<Column>) -> Expr {
    as_struct(fields).apply(
        move |c| f(c.struct_()?),
        |_, field| Ok(Field::new(field.name().clone(), DataType::Boolean)),
    )
}

fn bool_column(s: &StringChunked, check: fn(&str) -> bool) -> Column {
    let values: BooleanArray = s
        .downcast_iter()
        .flat_map(|a| a.iter().map(|v| v.map(check)))
        .collect();
    BooleanChunked::from_chunk_iter(s.name().clone(), [values]).into_column()
}

/// What the rows of a frame given to [`annotate_rows`] may share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Rows of any devices, each device's rows all in the frame, in run order.
    Related,
    /// Rows none of which shares its trimmed device id with another row of the run (recover's
    /// census): the rules that relate rows have nothing to relate. No row is a DUPLICATE or a
    /// CONFLICT (both need a second row with the same id), and a row's device has a clean
    /// report exactly when the row is clean.
    Lone,
}

/// Adds to `raw` (the 17 contract columns as text, plus the source columns) the typed values, a
/// reason code per column (`__r_*`), the row-level reason flags, `__bad` (any reason) and
/// `priority`. The frame must hold the run's inputs in run order: "earlier" rows come first.
/// [`explain`] spells the reasons out; [`clean`] and [`triage`] split the rows.
pub fn annotate(raw: LazyFrame, config: &Config, as_of_us: i64) -> PolarsResult<LazyFrame> {
    annotate_rows(raw, config, as_of_us, Rows::Related)
}

/// [`annotate`] of rows that may be known to be lone ([`Rows::Lone`]), which skips the windows
/// over devices and the duplicate search: the same columns, the same values.
pub fn annotate_rows(
    raw: LazyFrame,
    config: &Config,
    as_of_us: i64,
    rows: Rows,
) -> PolarsResult<LazyFrame> {
    let normalized_cols: Vec<Expr> = schema::COLUMNS.iter().map(|c| normalized(c.name)).collect();
    // update_started_at first: reported_at's check reads its value.
    let (started, started_reason) = column_exprs(
        schema::column(schema::UPDATE_STARTED_AT).expect("contract"),
        config,
        as_of_us,
    );
    // Values first, reasons after: a reason may read its column's materialized value.
    let mut values = Vec::new();
    let mut reasons = Vec::new();
    for c in schema::COLUMNS
        .iter()
        .filter(|c| c.name != schema::UPDATE_STARTED_AT)
    {
        let (value, reason) = column_exprs(c, config, as_of_us);
        values.push(value.alias(v(c.name)));
        reasons.push(reason.alias(r(c.name)));
    }

    let signal_drop = schema::COLUMNS
        .iter()
        .filter(|c| c.signal)
        .map(|c| col(n(c.name)).is_null())
        .reduce(Expr::and)
        .expect("signal columns");
    let inconsistent = flag(
        col(v(schema::OTA_STATUS))
            .eq(lit("succeeded"))
            .and(col(v(schema::DOWNLOAD_PCT)).lt(lit(100.0))),
    )
    .or(flag(
        col(v(schema::FIRMWARE_REPORTED))
            .neq(col(v(schema::FIRMWARE_TARGET)))
            .and(col(v(schema::FIRMWARE_REPORTED)).neq(col(v(schema::FIRMWARE_FROM)))),
    ));
    // The rules that relate rows: DUPLICATE, CONFLICT and whether the device has a clean report
    // (windows over a device numbered by `dense_index`); lone rows have nothing to relate.
    let (first, conflict, device, device_has_clean) = match rows {
        Rows::Related => {
            // DUPLICATE: a row is first when no earlier row has all 17 raw values equal
            // ([`first_of_raw`]).
            let first = struct_kernel(
                schema::COLUMNS.iter().map(|c| col(c.name)).collect(),
                first_of_raw,
            );
            // The key is the normalized id and the parsed time (SPEC section 4): a reported_at
            // that parses takes part even when it is a BAD_TIMESTAMP, and so does a row that is
            // bad in any other column. `__x_reported_at` is meaningful only where
            // `__ok_reported_at` holds.
            let parsed_at = when(col(ok(schema::REPORTED_AT)))
                .then(col(xv(schema::REPORTED_AT)))
                .otherwise(lit(NULL).cast(DataType::Int64));
            let conflict = struct_kernel(
                vec![col(DEVICE), parsed_at.alias(AT), col("__first")],
                conflicts,
            );
            (
                first,
                conflict,
                // Numbers devices across the whole frame (see [`struct_kernel`]).
                col(v(schema::DEVICE_ID)).apply(
                    |c| Ok(dense_index(c.str()?)),
                    |_, field| Ok(Field::new(field.name().clone(), DataType::UInt32)),
                ),
                struct_kernel(vec![col(DEVICE), col(BAD)], has_clean),
            )
        }
        Rows::Lone => (
            lit(true),
            lit(false),
            lit(NULL).cast(DataType::UInt32),
            col(BAD).not(),
        ),
    };

    let bad = schema::COLUMNS
        .iter()
        .map(|c| col(r(c.name)).gt(lit(0u8)))
        .chain(ROW_REASONS.iter().map(|(flag_col, _)| col(*flag_col)))
        .reduce(Expr::or)
        .expect("reasons");
    let priority = when(
        col(v(schema::DEVICE_ID))
            .is_null()
            .or(device_has_clean.not()),
    )
    .then(lit("P1"))
    .otherwise(lit("P2"));

    let numbers: Vec<Expr> = schema::COLUMNS.iter().flat_map(format_layer).collect();
    let stamps: Vec<Expr> = schema::COLUMNS.iter().filter_map(parsed_flag).collect();
    Ok(raw
        .with_columns(normalized_cols)
        .with_columns(numbers)
        .with_columns(stamps)
        .with_columns([
            started.alias(v(schema::UPDATE_STARTED_AT)),
            started_reason.alias(r(schema::UPDATE_STARTED_AT)),
        ])
        .with_columns(values)
        .with_columns([device.alias(DEVICE)])
        .with_columns(reasons)
        .with_columns([
            flag(signal_drop).alias("__signal_drop"),
            inconsistent.alias("__inconsistent"),
            first.alias("__first"),
        ])
        .with_columns([
            conflict.alias("__conflict"),
            col("__first").not().alias("__duplicate"),
        ])
        .with_columns([bad.alias(BAD)])
        .with_columns([priority.alias(PRIORITY)])
        .select(kept_columns()))
}

/// Adds `problems` (`;`-joined `column:REASON`, reason-major then in column order; empty when
/// clean) and `primary_reason` (the first of them) to rows of `annotate`. Run on the quarantined
/// rows only. One Rust pass over the reason codes and flags: the equivalent when/then per
/// (reason, column) pair built 89 string columns and joined them (0.4 of recover's 5.5 s of CPU
/// at 1.14M rows).
pub fn explain(annotated: LazyFrame) -> LazyFrame {
    let mut fields: Vec<Expr> = schema::COLUMNS.iter().map(|c| col(r(c.name))).collect();
    fields.extend(ROW_REASONS.iter().map(|(flag_col, _)| col(*flag_col)));
    let problems = as_struct(fields).map(
        |c| problems(c.struct_()?),
        |_, field| Ok(Field::new(field.name().clone(), DataType::String)),
    );
    // The first problem is the primary reason: column-level reasons come first, in the order
    // of COLUMN_REASONS, then the row-level ones in the order of ROW_REASONS.
    let primary = kernel(col(PROBLEMS), DataType::String, |s| {
        StringChunked::from_iter_options(
            s.name().clone(),
            s.iter().map(|v| {
                v.and_then(|v| v.split(';').next())
                    .and_then(|first| first.split_once(':'))
                    .map(|(_, reason)| reason)
            }),
        )
        .into_column()
    });
    annotated
        .with_columns([problems.alias(PROBLEMS)])
        .with_columns([primary.alias(PRIMARY_REASON)])
}

/// The `problems` text of each row from its column reason codes (one field per contract column,
/// in contract order) and its row-level flags (in the order of [`ROW_REASONS`]).
fn problems(s: &StructChunked) -> PolarsResult<Column> {
    let fields = s.fields_as_series();
    let columns = schema::COLUMNS.len();
    let codes = fields[..columns]
        .iter()
        .map(|f| {
            let f = f.cast(&DataType::UInt8)?;
            Ok(f.u8()?.iter().map(|v| v.unwrap_or(0)).collect())
        })
        .collect::<PolarsResult<Vec<Vec<u8>>>>()?;
    let flags = fields[columns..]
        .iter()
        .map(|f| Ok(f.bool()?.iter().map(|v| v.unwrap_or(false)).collect()))
        .collect::<PolarsResult<Vec<Vec<bool>>>>()?;
    let column_labels: Vec<(u8, Vec<String>)> = COLUMN_REASONS
        .iter()
        .map(|reason| {
            let labels = schema::COLUMNS
                .iter()
                .map(|c| format!("{}:{reason}", c.name))
                .collect();
            (code(*reason), labels)
        })
        .collect();
    let row_labels: Vec<String> = ROW_REASONS
        .iter()
        .map(|(_, reason)| format!("*:{reason}"))
        .collect();
    let mut out = MutableBinaryViewArray::<str>::with_capacity(s.len());
    let mut text = String::new();
    for row in 0..s.len() {
        text.clear();
        let mut add = |label: &str| {
            if !text.is_empty() {
                text.push(';');
            }
            text.push_str(label);
        };
        for (reason, labels) in &column_labels {
            for (c, label) in labels.iter().enumerate() {
                if codes[c][row] == *reason {
                    add(label);
                }
            }
        }
        for (f, label) in row_labels.iter().enumerate() {
            if flags[f][row] {
                add(label);
            }
        }
        out.push_value(&text);
    }
    Ok(StringChunked::from_chunk_iter(s.name().clone(), [out.freeze()]).into_column())
}

/// What `annotate` keeps: raw texts, typed values, the verdict and the source.
fn kept_columns() -> Vec<Expr> {
    let mut cols: Vec<Expr> = schema::COLUMNS.iter().map(|c| col(c.name)).collect();
    cols.extend(schema::COLUMNS.iter().map(|c| col(v(c.name))));
    cols.extend(schema::COLUMNS.iter().map(|c| col(r(c.name))));
    cols.extend(ROW_REASONS.iter().map(|(flag_col, _)| col(*flag_col)));
    cols.extend([BAD, PRIORITY, SOURCE_FILE, SOURCE_ROW, SOURCE_INDEX].map(col));
    cols
}

/// The column of `annotate`'s output that holds the validated, normalized device id.
pub fn valid_device_id() -> String {
    v(schema::DEVICE_ID)
}

/// Clean rows in the canonical schema, plus where they came from.
pub fn clean(annotated: LazyFrame) -> LazyFrame {
    let mut cols: Vec<Expr> = schema::COLUMNS
        .iter()
        .map(|c| col(v(c.name)).alias(c.name))
        .collect();
    cols.extend([col(SOURCE_FILE), col(SOURCE_ROW), col(SOURCE_INDEX)]);
    annotated.filter(col(BAD).not()).select(cols)
}

/// The triage column with the row's device id as validated and normalized: null when the raw
/// id is missing or invalid. Blind devices are counted on it.
pub const DEVICE_KEY: &str = "device_key";

/// Quarantined rows: raw values as text, `problems` as a list, primary reason, priority, device
/// key, source.
pub fn triage(annotated: LazyFrame) -> LazyFrame {
    let mut cols: Vec<Expr> = vec![col(SOURCE_FILE), col(SOURCE_ROW)];
    cols.extend([
        col(PROBLEMS).str().split(lit(";")).alias(PROBLEMS),
        col(PRIMARY_REASON),
        col(PRIORITY),
        col(valid_device_id()).alias(DEVICE_KEY),
    ]);
    cols.extend(schema::COLUMNS.iter().map(|c| col(c.name)));
    explain(annotated.filter(col(BAD))).select(cols)
}

#[cfg(test)]
mod tests {
    use polars::prelude::{
        DataFrame, IntoColumn, IntoLazy, NewChunkedArray, StringChunked, UInt64Chunked,
    };

    use super::*;

    const AS_OF: &str = "2026-11-25T12:00:00Z";

    /// Column overrides of the valid base row.
    type Changes = Vec<(&'static str, Option<&'static str>)>;

    /// A valid report, as text.
    fn base() -> Vec<(&'static str, Option<String>)> {
        [
            ("device_id", "SEN-100-000000000001"),
            ("region", "us-east"),
            ("hw_model", "SEN-100"),
            ("gateway_id", "gw-us-east-01"),
            ("firmware_from", "4.1.2"),
            ("firmware_target", "4.2.0"),
            ("firmware_reported", "4.2.0"),
            ("ota_status", "succeeded"),
            ("error_code", ""),
            ("download_pct", "100"),
            ("battery_pct", "87.5"),
            ("rssi_dbm", "-71"),
            ("boot_failures", "0"),
            ("retry_count", "1"),
            ("update_started_at", "2026-11-24T10:00:00Z"),
            ("last_heartbeat_at", "2026-11-25T11:00:00Z"),
            ("reported_at", "2026-11-25T11:30:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k, Some(v.to_string())))
        .collect()
    }

    fn row(changes: &[(&'static str, Option<&str>)]) -> Vec<(&'static str, Option<String>)> {
        let mut r = base();
        for (k, val) in changes {
            let slot = r.iter_mut().find(|(c, _)| c == k).expect("contract column");
            slot.1 = val.map(str::to_string);
        }
        r
    }

    /// Runs the sanitizer on rows; returns (problems, primary_reason, priority) per row.
    fn run(rows: &[Vec<(&'static str, Option<String>)>]) -> Vec<(String, Option<String>, String)> {
        run_in_chunks(rows, rows.len().max(1))
    }

    /// [`run`] on a frame whose columns come in chunks of `chunk` rows (as frames stacked from
    /// several inputs or slices do).
    fn run_in_chunks(
        rows: &[Vec<(&'static str, Option<String>)>],
        chunk: usize,
    ) -> Vec<(String, Option<String>, String)> {
        // The source row first, as `ingest` reads it: polars splits a frame by its first
        // column's chunks.
        let mut pieces = rows
            .chunks(chunk)
            .enumerate()
            .map(|(k, piece)| frame_of(piece, (k * chunk) as u64));
        let mut df = pieces.next().unwrap_or_else(|| frame_of(&[], 0));
        for piece in pieces {
            df.vstack_mut_owned(piece).unwrap();
        }
        let raw = df.lazy().with_columns([lit(0u32).alias(SOURCE_INDEX)]);
        let as_of = schema::parse_timestamp(AS_OF).unwrap();
        let out = explain(annotate(raw, &Config::default(), as_of).unwrap())
            .collect()
            .unwrap();
        let problems = out.column(PROBLEMS).unwrap().str().unwrap().clone();
        let primary = out.column(PRIMARY_REASON).unwrap().str().unwrap().clone();
        let priority = out.column(PRIORITY).unwrap().str().unwrap().clone();
        (0..out.height())
            .map(|i| {
                (
                    problems.get(i).unwrap().to_string(),
                    primary.get(i).map(str::to_string),
                    priority.get(i).unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The raw frame of rows numbered from `first` (the source row, the contract columns as
    /// text and the source file).
    fn frame_of(rows: &[Vec<(&'static str, Option<String>)>], first: u64) -> DataFrame {
        let mut columns: Vec<_> = vec![
            UInt64Chunked::from_iter_values(SOURCE_ROW.into(), first..first + rows.len() as u64)
                .into_column(),
        ];
        columns.extend(schema::COLUMNS.iter().map(|c| {
            let values: Vec<Option<&str>> = rows
                .iter()
                .map(|r| r.iter().find(|(k, _)| *k == c.name).unwrap().1.as_deref())
                .collect();
            StringChunked::from_iter_options(c.name.into(), values.into_iter()).into_column()
        }));
        columns.push(
            StringChunked::from_iter_values(SOURCE_FILE.into(), rows.iter().map(|_| "f.csv"))
                .into_column(),
        );
        DataFrame::new(rows.len(), columns).unwrap()
    }

    fn problems_of(changes: &[(&'static str, Option<&str>)]) -> String {
        run(&[row(changes)]).remove(0).0
    }

    #[test]
    fn a_valid_row_and_benign_noise_are_clean() {
        assert_eq!(problems_of(&[]), "");
        for changes in [
            vec![("device_id", Some("  SEN-100-000000000001\t"))],
            vec![("region", Some("US-EAST"))],
            vec![("hw_model", Some("sen-100"))],
            vec![("ota_status", Some(" SUCCEEDED \r\n"))],
            vec![
                ("firmware_reported", Some("v4.2.0")),
                ("firmware_from", Some("V4.1.2")),
            ],
            vec![("error_code", Some("e_power_loss"))],
            vec![("error_code", None), ("gateway_id", Some("   "))],
            vec![("battery_pct", None)],
            vec![
                ("battery_pct", Some("1e1")),
                ("download_pct", Some("100.0")),
            ],
            vec![("rssi_dbm", Some("+0")), ("retry_count", Some("0007"))],
            vec![("reported_at", Some("2026-11-25 13:30:00+02:00"))],
            vec![("reported_at", Some("2026-11-25t11:30:00.1234567z"))],
            vec![("reported_at", Some("2026-11-25T12:04:59Z"))],
        ] {
            assert_eq!(problems_of(&changes), "", "{changes:?}");
        }
    }

    #[test]
    fn each_column_reason() {
        let cases: Vec<(Changes, &str)> = vec![
            (vec![("device_id", None)], "device_id:MISSING_REQUIRED"),
            (vec![("region", Some(" "))], "region:MISSING_REQUIRED"),
            (vec![("reported_at", None)], "reported_at:MISSING_REQUIRED"),
            (
                vec![("device_id", Some("dev#42"))],
                "device_id:TYPE_MISMATCH",
            ),
            (
                vec![("gateway_id", Some("-gw"))],
                "gateway_id:TYPE_MISMATCH",
            ),
            (
                vec![("firmware_from", Some("04.1.2"))],
                "firmware_from:TYPE_MISMATCH",
            ),
            (
                vec![("firmware_target", Some("4.2"))],
                "firmware_target:TYPE_MISMATCH",
            ),
            (
                vec![("battery_pct", Some("12%"))],
                "battery_pct:TYPE_MISMATCH",
            ),
            (
                vec![("retry_count", Some("3.0"))],
                "retry_count:TYPE_MISMATCH",
            ),
            (vec![("rssi_dbm", Some("1e2"))], "rssi_dbm:TYPE_MISMATCH"),
            (
                vec![("reported_at", Some("2026-11-25T11:30:00"))],
                "reported_at:TYPE_MISMATCH",
            ),
            (
                vec![("reported_at", Some("2026-02-30T11:30:00Z"))],
                "reported_at:TYPE_MISMATCH",
            ),
            (
                vec![("reported_at", Some("2026-11-25T24:00:00Z"))],
                "reported_at:TYPE_MISMATCH",
            ),
            (
                vec![("reported_at", Some("2026-11-25T11:30:60Z"))],
                "reported_at:TYPE_MISMATCH",
            ),
            (
                vec![("battery_pct", Some("100.5"))],
                "battery_pct:OUT_OF_RANGE",
            ),
            (
                vec![("battery_pct", Some("NaN"))],
                "battery_pct:OUT_OF_RANGE",
            ),
            (
                vec![("battery_pct", Some("-infinity"))],
                "battery_pct:OUT_OF_RANGE",
            ),
            (
                vec![("download_pct", Some("1e400"))],
                "download_pct:OUT_OF_RANGE",
            ),
            (vec![("rssi_dbm", Some("-141"))], "rssi_dbm:OUT_OF_RANGE"),
            (
                vec![("boot_failures", Some("99999999999999999999999"))],
                "boot_failures:OUT_OF_RANGE",
            ),
            (
                vec![("retry_count", Some("-1"))],
                "retry_count:OUT_OF_RANGE",
            ),
            (
                vec![("region", Some("mars-north"))],
                "region:UNKNOWN_CATEGORY",
            ),
            (
                vec![("hw_model", Some("SEN-999"))],
                "hw_model:UNKNOWN_CATEGORY",
            ),
            (
                vec![("ota_status", Some("paused"))],
                "ota_status:UNKNOWN_CATEGORY",
            ),
            (
                vec![("error_code", Some("E_GREMLINS"))],
                "error_code:UNKNOWN_CATEGORY",
            ),
            (
                vec![("reported_at", Some("2026-11-25T12:05:01Z"))],
                "reported_at:BAD_TIMESTAMP",
            ),
            (
                vec![("last_heartbeat_at", Some("1999-12-31T23:59:59Z"))],
                "last_heartbeat_at:BAD_TIMESTAMP",
            ),
            (
                vec![("update_started_at", Some("2026-11-25T11:30:00.000001Z"))],
                "reported_at:BAD_TIMESTAMP",
            ),
            (
                vec![
                    ("download_pct", None),
                    ("battery_pct", None),
                    ("rssi_dbm", None),
                    ("boot_failures", None),
                    ("last_heartbeat_at", None),
                    ("firmware_reported", None),
                ],
                "*:SIGNAL_DROP",
            ),
            (vec![("download_pct", Some("99.9"))], "*:INCONSISTENT"),
            (vec![("firmware_reported", Some("4.0.0"))], "*:INCONSISTENT"),
        ];
        for (changes, want) in cases {
            assert_eq!(problems_of(&changes), want, "{changes:?}");
        }
    }

    #[test]
    fn problems_are_listed_in_reason_order() {
        let (problems, primary, priority) = run(&[row(&[
            ("error_code", Some("E_GREMLINS")),
            ("battery_pct", Some("abc")),
            ("region", None),
        ])])
        .remove(0);
        assert_eq!(
            problems,
            "region:MISSING_REQUIRED;battery_pct:TYPE_MISMATCH;error_code:UNKNOWN_CATEGORY"
        );
        assert_eq!(primary.as_deref(), Some("MISSING_REQUIRED"));
        assert_eq!(priority, "P1", "the device has no clean report");
    }

    #[test]
    fn vocabularies_match_caselessly() {
        for changes in [
            vec![("hw_model", Some("\u{17f}en-100"))],
            vec![("region", Some("US-EA\u{17f}T"))],
            vec![("region", Some("us-ea\u{fb06}"))],
            vec![("ota_status", Some("\u{17f}ucceeded"))],
            vec![
                ("ota_status", Some("failed")),
                ("error_code", Some("e_chec\u{212a}sum_mismatch")),
            ],
            vec![
                ("ota_status", Some("failed")),
                ("error_code", Some("E_INSU\u{fb03}CIENT_STORAGE")),
            ],
            vec![("battery_pct", Some("\u{a0}80\u{2003}"))],
        ] {
            assert_eq!(problems_of(&changes), "", "{changes:?}");
        }
        // Dotless i does not fold to i, and a zero-width space is not white space.
        for (changes, want) in [
            (
                vec![("ota_status", Some("fa\u{131}led"))],
                "ota_status:UNKNOWN_CATEGORY",
            ),
            (
                vec![("region", Some("\u{200b}us-east"))],
                "region:UNKNOWN_CATEGORY",
            ),
            (
                vec![("battery_pct", Some("\u{131}nf"))],
                "battery_pct:TYPE_MISMATCH",
            ),
        ] {
            assert_eq!(problems_of(&changes), want, "{changes:?}");
        }
    }

    /// SPEC section 4: a row whose key (normalized id, parsed reported_at) parses takes part in
    /// CONFLICT even when it is quarantined for another reason.
    #[test]
    fn a_parsed_key_takes_part_in_conflict_even_when_quarantined() {
        let a = row(&[]);
        // The partner's reported_at parses but is earlier than its update_started_at.
        let started_late = row(&[("update_started_at", Some("2026-11-25T11:45:00Z"))]);
        let out = run(&[a.clone(), started_late]);
        assert_eq!(out[0].0, "*:CONFLICT");
        assert_eq!(out[1].0, "reported_at:BAD_TIMESTAMP;*:CONFLICT");
        assert!(out.iter().all(|o| o.2 == "P1"), "no clean report left");

        // Both in the future: BAD_TIMESTAMP, and the same parsed key in two spellings.
        let future = row(&[("reported_at", Some("2026-11-26T00:00:00Z"))]);
        let future_offset = row(&[("reported_at", Some("2026-11-26T02:00:00+02:00"))]);
        let out = run(&[future, future_offset]);
        for o in &out {
            assert_eq!(o.0, "reported_at:BAD_TIMESTAMP;*:CONFLICT");
        }

        // A bad value in another column.
        let bad_battery = row(&[("battery_pct", Some("abc"))]);
        let out = run(&[a.clone(), bad_battery]);
        assert_eq!(out[0].0, "*:CONFLICT");
        assert_eq!(out[1].0, "battery_pct:TYPE_MISMATCH;*:CONFLICT");

        // A padded id normalizes to the same key.
        let padded = row(&[
            ("device_id", Some(" SEN-100-000000000001 ")),
            ("rssi_dbm", Some("-999")),
        ]);
        let out = run(&[a.clone(), padded]);
        assert_eq!(out[0].0, "*:CONFLICT");
        assert_eq!(out[1].0, "rssi_dbm:OUT_OF_RANGE;*:CONFLICT");

        // A key that does not parse takes no part: the partner stays clean.
        for unparsed in [
            row(&[("reported_at", Some("2026-02-30T11:30:00Z"))]),
            row(&[("reported_at", Some("2026-11-25T11:30:00"))]),
            row(&[("device_id", Some("SEN 100 000000000001"))]),
        ] {
            let out = run(&[a.clone(), unparsed]);
            assert_eq!(out[0].0, "", "{:?}", out[1]);
            assert!(!out[1].0.contains("CONFLICT"), "{:?}", out[1]);
        }
    }

    proptest::proptest! {
        /// The fast check agrees with `str::trim` on any text, with White_Space characters
        /// (ASCII and not) placed at either end.
        #[test]
        fn is_trimmed_agrees_with_str_trim(
            body in ".{0,6}",
            ends in proptest::collection::vec(
                proptest::sample::select(vec![
                    "", " ", "\t", "\n", "\u{b}", "\u{c}", "\r", "\u{85}", "\u{a0}",
                    "\u{3000}", "\u{1c}", "x", "\u{e9}", "\u{200b}",
                ]),
                2,
            ),
        ) {
            let t = format!("{}{body}{}", ends[0], ends[1]);
            proptest::prop_assert_eq!(is_trimmed(&t), t.trim().len() == t.len(), "{:?}", t);
        }
    }

    proptest::proptest! {
        /// The normalization and the version-prefix strip, built as views into the column's
        /// own buffers, give exactly the texts and nulls that trimming and stripping each text
        /// into a new column gives: short and long texts (inline views and buffer views),
        /// White_Space at either end, empty texts and nulls, a column in two chunks.
        #[test]
        fn substrings_are_the_texts_a_copy_would_hold(
            texts in proptest::collection::vec(
                proptest::option::weighted(0.9, proptest::strategy::Strategy::prop_map(
                    proptest::collection::vec(
                        proptest::sample::select(vec![
                            " ", "\t", "\u{3000}", "\u{a0}", "v", "V", "x", "\u{e9}", "0123456789",
                        ]),
                        0..6,
                    ),
                    |parts| parts.concat(),
                )),
                0..40,
            ),
            cut in 0usize..40,
        ) {
            let cut = cut.min(texts.len());
            let mut s = StringChunked::from_iter_options("t".into(), texts[..cut].iter().map(|t| t.as_deref()));
            s.append(&StringChunked::from_iter_options("t".into(), texts[cut..].iter().map(|t| t.as_deref()))).unwrap();
            fn trim(t: &str) -> Option<&str> {
                Some(t.trim()).filter(|t| !t.is_empty())
            }
            fn strip(t: &str) -> Option<&str> {
                Some(t.strip_prefix(['v', 'V']).unwrap_or(t))
            }
            let parts: [fn(&str) -> Option<&str>; 2] = [trim, strip];
            for part in parts {
                let got = substrings(&s, part);
                let got: Vec<Option<String>> = got.str().unwrap().iter().map(|t| t.map(str::to_string)).collect();
                let expected: Vec<Option<String>> = texts.iter().map(|t| t.as_deref().and_then(part).map(str::to_string)).collect();
                proptest::prop_assert_eq!(got, expected);
            }
        }
    }

    /// DUPLICATE's kernel on its own: a row repeats an earlier one only when all 17 raw texts
    /// are equal (a null equals a null only, not an empty text); a repeat of any earlier variant
    /// of a (device_id, reported_at) pair is found, not only of the latest; the frame may come in
    /// several chunks.
    #[test]
    fn a_row_repeats_an_earlier_one_only_with_all_raw_texts_equal() {
        let a = row(&[]);
        let b = row(&[("retry_count", Some("2"))]);
        let null_code = row(&[("error_code", None)]);
        let blank: Vec<(&'static str, Option<String>)> =
            schema::COLUMNS.iter().map(|c| (c.name, None)).collect();
        let padded = row(&[("device_id", Some(" SEN-100-000000000001"))]);
        let rows = [
            a.clone(),
            b.clone(),
            a,
            null_code.clone(),
            blank.clone(),
            b,
            blank,
            null_code,
            padded,
        ];
        let frame = |rows: &[Vec<(&'static str, Option<String>)>]| {
            let columns: Vec<Column> = schema::COLUMNS
                .iter()
                .map(|c| {
                    let values = rows
                        .iter()
                        .map(|r| r.iter().find(|(k, _)| *k == c.name).unwrap().1.as_deref());
                    StringChunked::from_iter_options(c.name.into(), values).into_column()
                })
                .collect();
            DataFrame::new(rows.len(), columns).unwrap()
        };
        let mut df = frame(&rows[..4]);
        df.vstack_mut_owned(frame(&rows[4..])).unwrap();
        assert_eq!(df.column("device_id").unwrap().n_chunks(), 2);
        let fields = df.columns().to_vec();
        let s = StructChunked::from_columns("raw".into(), df.height(), &fields).unwrap();
        let first: Vec<bool> = first_of_raw(&s)
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(
            first,
            [true, true, false, true, true, false, false, false, true]
        );
    }

    /// The fixture fleet's rows whose trimmed device id no other row holds, annotated as lone
    /// rows (no windows, no duplicate search) and as related ones: the same frame, value for
    /// value, with clean and quarantined rows among them.
    #[test]
    fn lone_rows_annotate_exactly_as_related_ones() {
        use polars::prelude::{CsvReadOptions, SerReader};
        let csv = include_str!("../../tests/fixtures/fleet.csv");
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(std::io::Cursor::new(csv.as_bytes().to_vec()))
            .finish()
            .unwrap();
        let ids: Vec<String> = df
            .column(schema::DEVICE_ID)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|id| id.unwrap_or("").trim().to_string())
            .collect();
        let lone: polars::prelude::BooleanChunked = ids
            .iter()
            .map(|id| Some(ids.iter().filter(|other| *other == id).count() == 1))
            .collect();
        let raw = df
            .filter(&lone)
            .unwrap()
            .lazy()
            .with_row_index(SOURCE_ROW, None)
            .with_columns([
                lit("fleet.csv").alias(SOURCE_FILE),
                lit(0u32).alias(SOURCE_INDEX),
            ]);
        let as_of = schema::parse_timestamp(AS_OF).unwrap();
        let annotated = |rows| {
            explain(annotate_rows(raw.clone(), &Config::default(), as_of, rows).unwrap())
                .collect()
                .unwrap()
        };
        let (related, alone) = (annotated(Rows::Related), annotated(Rows::Lone));
        assert!(related.height() >= 20, "{} lone rows", related.height());
        assert!(related.equals_missing(&alone));
        let priorities = related.column(PRIORITY).unwrap().str().unwrap().clone();
        let bad = related.column(BAD).unwrap().bool().unwrap().clone();
        assert!(bad.iter().any(|b| b == Some(true)) && bad.iter().any(|b| b == Some(false)));
        // A quarantined lone row is its device's only report: P1 (blind); clean rows are P2.
        for (p, b) in priorities.iter().zip(bad.iter()) {
            assert_eq!(p, Some(if b == Some(true) { "P1" } else { "P2" }));
        }
    }

    #[test]
    fn duplicates_conflicts_and_priority() {
        let a = row(&[]);
        let b = row(&[("retry_count", Some("2"))]);
        let c = row(&[("device_id", Some("SEN-100-000000000002"))]);
        let c_padded = row(&[("device_id", Some(" SEN-100-000000000002"))]);
        let rows = [a.clone(), a.clone(), c.clone(), c_padded, b, a];
        let out = run(&rows);
        let problems: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
        // Rows 0, 1, 5 are identical and rows 4 differs on the same key: all four conflict; the
        // repeats are also duplicates. Rows 2 and 3 share a key but differ in raw text: conflict.
        assert_eq!(
            problems,
            vec![
                "*:CONFLICT",
                "*:CONFLICT;*:DUPLICATE",
                "*:CONFLICT",
                "*:CONFLICT",
                "*:CONFLICT",
                "*:CONFLICT;*:DUPLICATE",
            ]
        );
        assert!(
            out.iter().all(|o| o.2 == "P1"),
            "no device has a clean report"
        );

        // The rules that relate rows see the whole frame however it is chunked: the rows of a
        // device may sit in different chunks (polars evaluates elementwise expressions chunk by
        // chunk when a frame comes in several).
        for chunk in [1, 2, 4] {
            assert_eq!(run_in_chunks(&rows, chunk), out, "chunks of {chunk} rows");
        }

        let out = run(&[c.clone(), c, row(&[("region", Some("??"))])]);
        assert_eq!(out[0].0, "");
        assert_eq!(
            (out[1].0.as_str(), out[1].1.as_deref(), out[1].2.as_str()),
            ("*:DUPLICATE", Some("DUPLICATE"), "P2")
        );
        assert_eq!(
            out[2].2, "P1",
            "device ...001 has no clean report in this run"
        );
    }
}
