//! The column contract of raw telemetry (SPEC section 3): names, canonical types, which columns are
//! required, and the vocabularies of the enum columns. Every stage takes column names and types
//! from here, so the contract lives in exactly one place.
//!
//! The text form of typed values (`format_float`, `format_timestamp`) is part of the contract too:
//! chaos writes it when a corrupted typed column turns into text, and the sanitizer must read it back
//! to the same value, so both sides use these functions.

use std::borrow::Cow;

use polars::prelude::{AnyValue, DataType, Field, Schema, TimeUnit};

/// The canonical type of a raw column, as the clean table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text (ids, enums, versions).
    Text,
    /// 64-bit float.
    Float,
    /// 32-bit signed integer.
    Int,
    /// Timestamp in microseconds since the Unix epoch, UTC.
    Timestamp,
}

impl Kind {
    /// The polars data type that holds this kind canonically.
    pub fn dtype(self) -> DataType {
        match self {
            Kind::Text => DataType::String,
            Kind::Float => DataType::Float64,
            Kind::Int => DataType::Int32,
            Kind::Timestamp => DataType::Datetime(TimeUnit::Microseconds, None),
        }
    }

    /// The name used in messages and in the README's schema table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Float => "float64",
            Kind::Int => "int32",
            Kind::Timestamp => "timestamp (UTC, µs)",
        }
    }
}

/// One column of the raw telemetry contract.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Part of the device's signal: a row with all signal columns null is a SIGNAL_DROP.
    pub signal: bool,
}

const fn col(name: &'static str, kind: Kind, required: bool, signal: bool) -> Column {
    Column {
        name,
        kind,
        required,
        signal,
    }
}

pub const DEVICE_ID: &str = "device_id";
pub const REGION: &str = "region";
pub const HW_MODEL: &str = "hw_model";
pub const GATEWAY_ID: &str = "gateway_id";
pub const FIRMWARE_FROM: &str = "firmware_from";
pub const FIRMWARE_TARGET: &str = "firmware_target";
pub const FIRMWARE_REPORTED: &str = "firmware_reported";
pub const OTA_STATUS: &str = "ota_status";
pub const ERROR_CODE: &str = "error_code";
pub const DOWNLOAD_PCT: &str = "download_pct";
pub const BATTERY_PCT: &str = "battery_pct";
pub const RSSI_DBM: &str = "rssi_dbm";
pub const BOOT_FAILURES: &str = "boot_failures";
pub const RETRY_COUNT: &str = "retry_count";
pub const UPDATE_STARTED_AT: &str = "update_started_at";
pub const LAST_HEARTBEAT_AT: &str = "last_heartbeat_at";
pub const REPORTED_AT: &str = "reported_at";

/// The raw telemetry columns in canonical order.
pub const COLUMNS: [Column; 17] = [
    col(DEVICE_ID, Kind::Text, true, false),
    col(REGION, Kind::Text, true, false),
    col(HW_MODEL, Kind::Text, true, false),
    col(GATEWAY_ID, Kind::Text, false, false),
    col(FIRMWARE_FROM, Kind::Text, true, false),
    col(FIRMWARE_TARGET, Kind::Text, true, false),
    col(FIRMWARE_REPORTED, Kind::Text, false, true),
    col(OTA_STATUS, Kind::Text, true, false),
    col(ERROR_CODE, Kind::Text, false, false),
    col(DOWNLOAD_PCT, Kind::Float, false, true),
    col(BATTERY_PCT, Kind::Float, false, true),
    col(RSSI_DBM, Kind::Int, false, true),
    col(BOOT_FAILURES, Kind::Int, false, true),
    col(RETRY_COUNT, Kind::Int, false, false),
    col(UPDATE_STARTED_AT, Kind::Timestamp, true, false),
    col(LAST_HEARTBEAT_AT, Kind::Timestamp, false, true),
    col(REPORTED_AT, Kind::Timestamp, true, false),
];

/// The column named `name`, if it is part of the contract.
pub fn column(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// The canonical schema of raw telemetry (what `generate` writes).
pub fn canonical_schema() -> Schema {
    COLUMNS
        .iter()
        .map(|c| Field::new(c.name.into(), c.kind.dtype()))
        .collect()
}

/// Bounds of the numeric columns (inclusive).
pub const PCT_RANGE: (f64, f64) = (0.0, 100.0);
pub const RSSI_RANGE: (i64, i64) = (-140, 0);
pub const COUNT_RANGE: (i64, i64) = (0, 1000);

/// Pattern of device and gateway ids.
pub const ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$";

/// The caseless form of a vocabulary word (SPEC section 3): Unicode full case folding, so that
/// `ſen-100` and `SEN-100` (U+017F, long s) or `K` and `k` (U+212A, the Kelvin sign) compare
/// equal. ASCII text, the usual case, is lower-cased without a table lookup.
pub fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    } else {
        Cow::Owned(caseless::default_case_fold_str(text))
    }
}

/// A float column's text (SPEC section 3): decimal notation (`87`, `-87.5`, `.5`, `5.`, `1e2`;
/// ASCII digits, at most one sign), or the tokens nan, inf, infinity in any case with at most one
/// sign. None when it is neither (a TYPE_MISMATCH); NaN and infinities (also `1e400`) come back
/// as such, to be OUT_OF_RANGE.
pub fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let negative = text.starts_with('-');
    if is_decimal(unsigned) {
        let x: f64 = unsigned.parse().ok()?;
        return Some(if negative { -x } else { x });
    }
    match fold(unsigned).as_ref() {
        "nan" => Some(f64::NAN),
        "inf" | "infinity" => Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }),
        _ => None,
    }
}

/// Unsigned decimal notation: digits with an optional point and at least one digit, then an
/// optional exponent (`e`/`E`, an optional sign, digits).
fn is_decimal(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i, i - start)
    };
    let (mut i, whole) = digits(0);
    let mut fraction = 0;
    if b.get(i) == Some(&b'.') {
        (i, fraction) = digits(i + 1);
    }
    if whole + fraction == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (end, exponent) = digits(i);
        if exponent == 0 {
            return false;
        }
        i = end;
    }
    i == b.len()
}

/// An integer column's text: ASCII digits with at most one sign (`3.0` and `1e2` are not
/// integers). None when it is not one (a TYPE_MISMATCH); a value beyond 64 bits comes back as
/// the extreme of its sign, out of every column's range.
pub fn parse_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let negative = text.starts_with('-');
    Some(
        text.strip_prefix('+')
            .unwrap_or(text)
            .parse()
            .unwrap_or(if negative { i64::MIN } else { i64::MAX }),
    )
}

/// A semantic version `MAJOR.MINOR.PATCH`, numbers without leading zeros, an optional leading
/// `v` or `V`.
pub fn is_version(text: &str) -> bool {
    let bare = text.strip_prefix(['v', 'V']).unwrap_or(text).as_bytes();
    let mut parts = 0;
    for part in bare.split(|&b| b == b'.') {
        parts += 1;
        let ok = !part.is_empty()
            && part.iter().all(u8::is_ascii_digit)
            && (part.len() == 1 || part[0] != b'0');
        if !ok {
            return false;
        }
    }
    parts == 3
}

/// Whether `id` satisfies [`ID_PATTERN`] (used by the generator's own checks and by tests).
pub fn is_valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..].iter().all(|&b| ID_BYTES[b as usize])
}

/// The bytes [`ID_PATTERN`] allows after the first: one lookup per byte.
const ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-');
        b += 1;
    }
    table
};

/// Text form of a float: Rust's shortest representation that reads back to the same value
/// (`87.5`, `100`, `NaN`, `inf`).
pub fn format_float(x: f64) -> String {
    format!("{x}")
}

/// Text form of a timestamp in µs since the epoch: RFC 3339 in UTC with microseconds,
/// `2026-11-25T13:45:12.123456Z`.
pub fn format_timestamp(us: i64) -> String {
    let mut out = String::with_capacity(27);
    write_timestamp(us, &mut out);
    out
}

/// Appends the text form of a timestamp to `out` (no allocation when `out` has room; chaos writes
/// millions of them).
pub fn write_timestamp(us: i64, out: &mut String) {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        // Outside four-digit years: the general (slow) path.
        use std::fmt::Write;
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            tod / 3600,
            tod % 3600 / 60,
            tod % 60
        );
        return;
    }
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |pos: usize, width: usize, mut v: i64| {
        for i in (pos..pos + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, tod / 3600);
    put(14, 2, tod % 3600 / 60);
    put(17, 2, tod % 60);
    put(20, 6, micros);
    out.push_str(std::str::from_utf8(&buf).expect("ASCII digits"));
}

/// The text form of one cell as chaos and the triage queue show it: text as is, numbers and
/// timestamps in the forms above (timestamps of any unit, naive ones read as UTC), null as `None`.
pub fn value_text(value: &AnyValue) -> Option<String> {
    Some(match value {
        AnyValue::Null => return None,
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(x) => format_float(*x),
        AnyValue::Float32(x) => format_float(f64::from(*x)),
        AnyValue::Datetime(v, unit, _) | AnyValue::DatetimeOwned(v, unit, _) => {
            format_timestamp(to_micros(*v, *unit))
        }
        other => match other.extract::<i64>() {
            Some(i) if other.is_integer() => i.to_string(),
            _ => other.to_string(),
        },
    })
}

/// A timestamp value of `unit` in microseconds.
pub fn to_micros(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Nanoseconds => value.div_euclid(1000),
        TimeUnit::Microseconds => value,
        TimeUnit::Milliseconds => value.saturating_mul(1000),
    }
}

/// Parses an RFC 3339 timestamp as SPEC section 3 defines it (`T`, `t` or one space between date
/// and time; optional fraction truncated to µs; `Z` or `±hh:mm` required) into µs since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    // At most four ASCII digits: folded directly (str::parse after from_utf8 was a third of
    // this function's time).
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() {
            return None;
        }
        s.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in rest[1..=digits].iter().enumerate().take(6) {
            micros += i64::from(c - b'0') * 10i64.pow(5 - i as u32);
        }
        rest = &rest[1 + digits..];
    }
    let offset_secs = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let s = oh * 3600 + om * 60;
            if *sign == b'+' { s } else { -s }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(secs * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_text() {
        for us in [
            0,
            1_764_078_312_123_456,
            946_684_800_000_000,
            -1,
            4_102_444_800_000_001,
        ] {
            assert_eq!(parse_timestamp(&format_timestamp(us)), Some(us), "{us}");
        }
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn rfc3339_variants_follow_the_spec() {
        let base = parse_timestamp("2026-11-25T13:45:12Z").unwrap();
        assert_eq!(parse_timestamp("2026-11-25t13:45:12Z"), Some(base));
        assert_eq!(parse_timestamp("2026-11-25 13:45:12Z"), Some(base));
        assert_eq!(parse_timestamp("2026-11-25T15:45:12+02:00"), Some(base));
        assert_eq!(
            parse_timestamp("2026-11-25T13:45:12.1234569Z"),
            Some(base + 123_456)
        );
        for bad in [
            "2026-11-25T13:45:12",
            "2026-11-25T24:00:00Z",
            "2026-11-25T13:45:60Z",
            "2026-02-30T13:45:12Z",
            "2026-11-25T13:45:12.Z",
            "yesterday",
            "2026-11-25  13:45:12Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_timestamp_of_four_digit_years_round_trips(us in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
            let text = format_timestamp(us);
            proptest::prop_assert_eq!(parse_timestamp(&text), Some(us));
            proptest::prop_assert_eq!(text.len(), 27);
        }

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_timestamp(&text);
        }

        #[test]
        fn parsing_near_misses_never_panics(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|[+-][0-9]{2}:[0-9]{2}|)") {
            if let Some(us) = parse_timestamp(&text) {
                // Whatever parses formats back to a time that parses to the same instant.
                proptest::prop_assert_eq!(parse_timestamp(&format_timestamp(us)), Some(us));
            }
        }
    }

    #[test]
    fn ids_follow_the_pattern() {
        assert!(is_valid_id("SEN-100-7F3A9C21"));
        assert!(is_valid_id("a"));
        assert!(!is_valid_id("-a"));
        assert!(!is_valid_id("dev#1"));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(is_valid_id(&"a".repeat(64)));
    }
}
