//! Adversarial text against an independent reading of SPEC sections 3 and 4: every kind of
//! Unicode space, signs, exponents, NaN spellings, offsets, leap seconds, hour 24, 30 February,
//! years 0000 and 10000, long fractions; and every case variant of every vocabulary word.
//!
//! The oracle below is written from the SPEC's words alone, a character at a time, without the
//! crate's regexes or polars: where the two disagree, one of them misreads the contract.

use polars::prelude::*;
use proptest::prelude::*;
use sentinel::config::Config;
use sentinel::recover::ingest::{SOURCE_FILE, SOURCE_INDEX, SOURCE_ROW};
use sentinel::recover::sanitize;

use crate::util::{AS_OF, as_of_us};

/// A valid report as text; `device_id` is filled per row so that rows never relate.
const BASE: [(&str, &str); 17] = [
    ("device_id", ""),
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
];

/// Sanitizes rows given as (column, text) overrides of [`BASE`]; returns per row its problems
/// and the clean values (empty when quarantined).
fn sanitize_rows(rows: &[Vec<(&str, String)>]) -> Vec<(String, Option<DataFrame>)> {
    let annotated = sanitize::annotate(raw_frame(rows), &Config::default(), as_of_us())
        .unwrap()
        .collect()
        .unwrap();
    let explained = sanitize::explain(annotated.clone().lazy())
        .collect()
        .unwrap();
    let problems = explained.column(sanitize::PROBLEMS).unwrap().str().unwrap();
    let clean = sanitize::clean(annotated.lazy()).collect().unwrap();
    let rows_of_clean = clean
        .column(SOURCE_ROW)
        .unwrap()
        .cast(&DataType::UInt64)
        .unwrap();
    let rows_of_clean = rows_of_clean.u64().unwrap();
    (0..rows.len())
        .map(|i| {
            let p = problems.get(i).unwrap().to_string();
            let at = (0..clean.height()).find(|&j| rows_of_clean.get(j) == Some(i as u64));
            (p, at.map(|j| clean.slice(j as i64, 1)))
        })
        .collect()
}

/// The raw frame `annotate` takes: [`BASE`] with the rows' overrides, in one file.
fn raw_frame(rows: &[Vec<(&str, String)>]) -> LazyFrame {
    let columns: Vec<Column> = BASE
        .iter()
        .map(|(name, base)| {
            let values: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| match r.iter().find(|(c, _)| c == name) {
                    Some((_, v)) => v.clone(),
                    None if *name == "device_id" => format!("P{i}"),
                    None => base.to_string(),
                })
                .collect();
            StringChunked::from_iter_values((*name).into(), values.iter().map(String::as_str))
                .into_column()
        })
        .chain([
            StringChunked::from_iter_values(SOURCE_FILE.into(), rows.iter().map(|_| "t.csv"))
                .into_column(),
        ])
        .collect();
    DataFrame::new(rows.len(), columns)
        .unwrap()
        .lazy()
        .with_row_index(SOURCE_ROW, None)
        .with_columns([lit(0u32).alias(SOURCE_INDEX)])
}

// ---- the cross-row rules ---------------------------------------------------------------------

/// device_id spellings: three that normalize to `D1`, another device, one that is not an id
/// (TYPE_MISMATCH) and an empty one (MISSING_REQUIRED). Ids are not enums: `d1` is not `D1`.
const IDS: [&str; 7] = ["D1", " D1", "D1\u{a0}", "d1", "D2\t", "bad id!", ""];

/// reported_at spellings with their parsed times (hours after 11:00; None when they do not parse):
/// three of one instant, another instant, a future one that parses but is a BAD_TIMESTAMP, and
/// one that does not parse (TYPE_MISMATCH, no key).
const TIMES: [(&str, Option<u32>); 6] = [
    ("2026-11-25T11:30:00Z", Some(30)),
    ("2026-11-25 11:30:00.000000Z", Some(30)),
    ("2026-11-25T12:30:00+01:00", Some(30)),
    ("2026-11-25T11:00:00Z", Some(0)),
    ("2030-01-01T00:00:00Z", Some(999)),
    ("soon", None),
];

/// battery_pct spellings: two valid ones of one value and an OUT_OF_RANGE one.
const BATTERIES: [&str; 3] = ["87.5", "87.50", "150"];

/// SPEC 4's cross-row rules read directly, for rows that differ from [`BASE`] only in
/// (device_id, reported_at, battery_pct) given as indices: per row (DUPLICATE, CONFLICT,
/// quarantined, priority).
fn cross_row_oracle(rows: &[(usize, usize, usize)]) -> Vec<(bool, bool, bool, &'static str)> {
    let id = |r: &(usize, usize, usize)| {
        let t = IDS[r.0].trim();
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric())).then_some(t)
    };
    let key = |r: &(usize, usize, usize)| Some((id(r)?, TIMES[r.1].1?));
    let row_local_bad = |r: &(usize, usize, usize)| {
        id(r).is_none() || TIMES[r.1].1.is_none_or(|h| h == 999) || BATTERIES[r.2] == "150"
    };
    let verdicts: Vec<(bool, bool, bool)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let duplicate = rows[..i].contains(r);
            let conflict = key(r)
                .is_some_and(|k| rows.iter().any(|other| key(other) == Some(k) && other != r));
            (
                duplicate,
                conflict,
                duplicate || conflict || row_local_bad(r),
            )
        })
        .collect();
    rows.iter()
        .zip(&verdicts)
        .map(|(r, &(duplicate, conflict, bad))| {
            let has_clean = id(r).is_some_and(|d| {
                rows.iter()
                    .zip(&verdicts)
                    .any(|(other, v)| id(other) == Some(d) && !v.2)
            });
            (
                duplicate,
                conflict,
                bad,
                if has_clean { "P2" } else { "P1" },
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// DUPLICATE, CONFLICT and priority over rows of a few devices that share keys under
    /// different spellings, repeat each other, and are bad for other reasons.
    #[test]
    fn cross_row_rules_follow_the_contract(
        picks in prop::collection::vec((0..IDS.len(), 0..TIMES.len(), 0..BATTERIES.len()), 1..16)
    ) {
        let rows: Vec<Vec<(&str, String)>> = picks
            .iter()
            .map(|&(i, t, b)| {
                vec![
                    ("device_id", IDS[i].to_string()),
                    ("reported_at", TIMES[t].0.to_string()),
                    ("battery_pct", BATTERIES[b].to_string()),
                ]
            })
            .collect();
        let annotated = sanitize::annotate(raw_frame(&rows), &Config::default(), as_of_us())
            .unwrap();
        let explained = sanitize::explain(annotated).collect().unwrap();
        let problems = explained.column(sanitize::PROBLEMS).unwrap().str().unwrap();
        let priority = explained.column("priority").unwrap().str().unwrap();
        for (i, (duplicate, conflict, bad, p1)) in cross_row_oracle(&picks).into_iter().enumerate() {
            let got = problems.get(i).unwrap();
            let row = &picks[i];
            prop_assert_eq!(got.contains("*:DUPLICATE"), duplicate, "row {} {:?}: {}", i, row, got);
            prop_assert_eq!(got.contains("*:CONFLICT"), conflict, "row {} {:?}: {}", i, row, got);
            prop_assert_eq!(!got.is_empty(), bad, "row {} {:?}: {}", i, row, got);
            prop_assert_eq!(priority.get(i).unwrap(), p1, "row {} {:?}: {}", i, row, got);
        }
    }
}

// ---- the oracle ------------------------------------------------------------------------------

/// SPEC 3: trimmed of Unicode White_Space; empty is null.
fn normalize(text: &str) -> Option<&str> {
    let t = text.trim_matches(char::is_whitespace);
    (!t.is_empty()).then_some(t)
}

/// Decimal notation: optional sign, digits with an optional point (at least one digit), an
/// optional exponent. ASCII digits only.
fn is_decimal(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let start = i;
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 || i == start {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// The reason of a float column 0..=100: None when valid.
fn float_reason(text: &str) -> Option<&'static str> {
    let t = normalize(text)?;
    let bare = t.strip_prefix(['+', '-']).unwrap_or(t);
    if ["nan", "inf", "infinity"].contains(&bare.to_ascii_lowercase().as_str()) && bare.is_ascii() {
        return Some("OUT_OF_RANGE");
    }
    if !is_decimal(t) {
        return Some("TYPE_MISMATCH");
    }
    let x: f64 = t.parse().unwrap();
    (!(x.is_finite() && (0.0..=100.0).contains(&x))).then_some("OUT_OF_RANGE")
}

/// The reason of an integer column within `lo..=hi`.
fn int_reason(text: &str, lo: i64, hi: i64) -> Option<&'static str> {
    let t = normalize(text)?;
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some("TYPE_MISMATCH");
    }
    match t.parse::<i128>() {
        Ok(x) if (lo as i128..=hi as i128).contains(&x) => None,
        _ => Some("OUT_OF_RANGE"),
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// µs since 1970 of an RFC 3339 text as SPEC 3 reads it, or None when it does not parse.
fn parse_rfc3339(t: &str) -> Option<i64> {
    let c: Vec<char> = t.chars().collect();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s: String = c.get(from..from + len)?.iter().collect();
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if c.get(4) != Some(&'-')
        || c.get(7) != Some(&'-')
        || !matches!(c.get(10), Some('T' | 't' | ' '))
    {
        return None;
    }
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if c.get(13) != Some(&':') || c.get(16) != Some(&':') {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if c.get(i) == Some(&'.') {
        i += 1;
        let start = i;
        while c.get(i).is_some_and(|ch| ch.is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits: String = c[start..i]
            .iter()
            .chain(std::iter::repeat_n(&'0', 6))
            .take(6)
            .collect();
        frac_us = digits.parse().unwrap();
    }
    let offset_s = match c.get(i..)? {
        ['Z' | 'z'] => 0,
        [sign @ ('+' | '-'), h1, h2, ':', m1, m2] => {
            let oh: String = [*h1, *h2].iter().collect();
            let om: String = [*m1, *m2].iter().collect();
            if !oh.bytes().chain(om.bytes()).all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().unwrap(), om.parse().unwrap());
            if oh > 23 || om > 59 {
                return None;
            }
            (oh * 3600 + om * 60) * if *sign == '-' { -1 } else { 1 }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut days = 0i64;
    if y >= 1970 {
        for year in 1970..y {
            days += if days_in_month(year, 2) == 29 {
                366
            } else {
                365
            };
        }
    } else {
        for year in y..1970 {
            days -= if days_in_month(year, 2) == 29 {
                366
            } else {
                365
            };
        }
    }
    for month in 1..mo {
        days += days_in_month(y, month);
    }
    days += d - 1;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_s) * 1_000_000 + frac_us)
}

fn timestamp_reason(text: &str) -> Option<&'static str> {
    let t = normalize(text)?;
    let Some(us) = parse_rfc3339(t) else {
        return Some("TYPE_MISMATCH");
    };
    let earliest = parse_rfc3339("2000-01-01T00:00:00Z").unwrap();
    let latest = parse_rfc3339(AS_OF).unwrap() + 5 * 60 * 1_000_000;
    (us < earliest || us > latest).then_some("BAD_TIMESTAMP")
}

/// The expected problems: reason-major, then in contract column order.
fn expected(battery: &str, rssi: &str, heartbeat: &str) -> String {
    let found = [
        ("battery_pct", float_reason(battery)),
        ("rssi_dbm", int_reason(rssi, -140, 0)),
        ("last_heartbeat_at", timestamp_reason(heartbeat)),
    ];
    let mut out = Vec::new();
    for reason in ["TYPE_MISMATCH", "OUT_OF_RANGE", "BAD_TIMESTAMP"] {
        for (column, r) in &found {
            if *r == Some(reason) {
                out.push(format!("{column}:{reason}"));
            }
        }
    }
    out.join(";")
}

// ---- the adversarial strategies ---------------------------------------------------------------

/// White space of every kind (SPEC 3 trims Unicode White_Space), and look-alikes that are not.
const SPACES: [&str; 14] = [
    "", " ", "\t", "\n", "\r\n", "\u{a0}", "\u{85}", "\u{1680}", "\u{2002}", "\u{2009}",
    "\u{202f}", "\u{3000}", "\u{200b}", "\u{feff}",
];

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(options)
}

fn number_text() -> impl Strategy<Value = String> {
    let signs: &'static [&str] = &["", "", "+", "-", "\u{2212}", "+-"];
    let mantissas: &'static [&str] = &[
        "0",
        "7",
        "87",
        "87.5",
        ".5",
        "5.",
        "100",
        "100.0",
        "100.0000000001",
        "00042",
        "1_000",
        "1,5",
        "0x10",
        "\u{661}\u{662}",
        "\u{ff11}\u{ff10}",
        ".",
        "",
        "12%",
        "99999999999999999999999",
    ];
    let exponents: &'static [&str] = &["", "", "e2", "E-3", "e+400", "e", "E+", "e-999", "e1.5"];
    let specials: &'static [&str] = &[
        "nan",
        "NaN",
        "NAN",
        "inf",
        "Inf",
        "INFINITY",
        "infinity",
        "infinite",
        "\u{131}nf",
        "nan(1)",
        "snan",
    ];
    prop_oneof![
        4 => (pick(&SPACES), pick(signs), pick(mantissas), pick(exponents), pick(&SPACES))
            .prop_map(|(a, s, m, e, z)| format!("{a}{s}{m}{e}{z}")),
        1 => (pick(signs), pick(specials), pick(&SPACES)).prop_map(|(s, x, z)| format!("{s}{x}{z}")),
    ]
}

fn timestamp_text() -> impl Strategy<Value = String> {
    let years: &'static [&str] = &[
        "2026", "2026", "2025", "2000", "1999", "0000", "10000", "999", "2024",
    ];
    let months: &'static [&str] = &["11", "11", "02", "01", "12", "13", "00", "1"];
    let days: &'static [&str] = &["25", "24", "01", "29", "30", "31", "00", "32"];
    let seps: &'static [&str] = &["T", "T", "t", " ", "  ", "_"];
    let hours: &'static [&str] = &["00", "11", "12", "23", "24", "9"];
    let minutes: &'static [&str] = &["00", "04", "05", "59", "60"];
    let seconds: &'static [&str] = &["00", "59", "60", "61", "5"];
    let fractions: &'static [&str] = &[
        "",
        "",
        ".",
        ".1",
        ".999999",
        ".1234567",
        ".123456789012345678901234567890",
    ];
    let offsets: &'static [&str] = &[
        "Z", "Z", "z", "+00:00", "-00:00", "+05:30", "-05:00", "+24:00", "-23:59", "+0530", "",
        " UTC", "+05:60",
    ];
    (
        (
            pick(&SPACES),
            pick(years),
            pick(months),
            pick(days),
            pick(seps),
        ),
        (
            pick(hours),
            pick(minutes),
            pick(seconds),
            pick(fractions),
            pick(offsets),
        ),
        pick(&SPACES),
    )
        .prop_map(|((a, y, mo, d, sep), (h, mi, s, f, o), z)| {
            format!("{a}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{f}{o}{z}")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Numbers and timestamps of every adversarial shape get exactly the oracle's reasons.
    #[test]
    fn adversarial_numbers_and_timestamps_follow_the_contract(
        rows in prop::collection::vec((number_text(), number_text(), timestamp_text()), 40)
    ) {
        let input: Vec<Vec<(&str, String)>> = rows
            .iter()
            .map(|(battery, rssi, heartbeat)| {
                vec![
                    ("battery_pct", battery.clone()),
                    ("rssi_dbm", rssi.clone()),
                    ("last_heartbeat_at", heartbeat.clone()),
                ]
            })
            .collect();
        let got = sanitize_rows(&input);
        for ((battery, rssi, heartbeat), (problems, _)) in rows.iter().zip(&got) {
            prop_assert_eq!(
                problems,
                &expected(battery, rssi, heartbeat),
                "battery {:?}, rssi {:?}, heartbeat {:?}",
                battery,
                rssi,
                heartbeat
            );
        }
    }
}

/// Strings that case-fold to `c` under Unicode full case folding, from CaseFolding.txt, written
/// out here by hand rather than taken from the crate's folding.
fn case_variants(c: char) -> Vec<String> {
    let mut v = vec![
        c.to_ascii_lowercase().to_string(),
        c.to_ascii_uppercase().to_string(),
    ];
    match c.to_ascii_lowercase() {
        's' => v.push("\u{17f}".into()),  // LATIN SMALL LETTER LONG S
        'k' => v.push("\u{212a}".into()), // KELVIN SIGN
        _ => {}
    }
    v
}

/// Ligatures that fold to several letters: (letters, ligature).
const LIGATURES: [(&str, &str); 6] = [
    ("ffi", "\u{fb03}"),
    ("ff", "\u{fb00}"),
    ("fi", "\u{fb01}"),
    ("fl", "\u{fb02}"),
    ("st", "\u{fb06}"),
    ("ss", "\u{df}"),
];

/// A spelling of `word` that is caselessly equal to it, chosen by `choices`.
fn variant(word: &str, choices: &[u8]) -> String {
    let lower = word.to_ascii_lowercase();
    let mut out = String::new();
    let mut i = 0;
    let mut k = 0;
    let mut next = || {
        k += 1;
        choices[k % choices.len()] as usize
    };
    while i < lower.len() {
        if let Some((letters, lig)) = LIGATURES.iter().find(|(l, _)| lower[i..].starts_with(l))
            && next() % 3 == 0
        {
            out.push_str(lig);
            i += letters.len();
            continue;
        }
        let c = word[i..].chars().next().unwrap();
        let options = case_variants(c);
        out.push_str(&options[next() % options.len()]);
        i += c.len_utf8();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// Any case variant or case-folded spelling of a valid value, padded with any white space, is
    /// clean and stored in the contract's (or the configuration's) spelling.
    #[test]
    fn every_caseless_spelling_of_a_vocabulary_word_is_clean(
        choices in prop::collection::vec(any::<u8>(), 1..64),
        pad in (pick(&SPACES[..12]), pick(&SPACES[..12])),
    ) {
        let config = Config::default();
        let mut words: Vec<(&str, String)> = Vec::new();
        words.extend(config.regions.iter().map(|r| ("region", r.clone())));
        words.extend(config.models.keys().map(|m| ("hw_model", m.clone())));
        words.extend(sentinel::vocab::OtaStatus::ALL.iter().map(|s| ("ota_status", s.to_string())));
        words.extend(sentinel::vocab::ErrorCode::ALL.iter().map(|s| ("error_code", s.to_string())));
        let rows: Vec<Vec<(&str, String)>> = words
            .iter()
            .enumerate()
            .map(|(i, (column, word))| {
                let mut row = vec![(*column, format!("{}{}{}", pad.0, variant(word, &choices[i % choices.len()..]), pad.1))];
                // Statuses other than succeeded need no firmware confirmation; errors go with failures.
                if *column == "error_code" {
                    row.push(("ota_status", "failed".to_string()));
                    row.push(("firmware_reported", "4.1.2".to_string()));
                }
                if *column == "ota_status" && word != "succeeded" {
                    row.push(("firmware_reported", "4.1.2".to_string()));
                }
                row
            })
            .collect();
        let got = sanitize_rows(&rows);
        for ((column, word), (row, (problems, clean))) in words.iter().zip(rows.iter().zip(&got)) {
            prop_assert_eq!(problems.as_str(), "", "{:?} as {:?}", word, row[0].1);
            let clean = clean.as_ref().expect("a clean row");
            let stored = clean.column(column).unwrap().str().unwrap().get(0).map(str::to_string);
            prop_assert_eq!(stored.as_deref(), Some(word.as_str()));
        }
    }
}

/// The oracle itself on the cases the issue names.
#[test]
fn the_oracle_reads_the_named_cases() {
    assert_eq!(
        timestamp_reason("2026-11-25T11:00:60Z"),
        Some("TYPE_MISMATCH"),
        "leap second"
    );
    assert_eq!(
        timestamp_reason("2026-11-25T24:00:00Z"),
        Some("TYPE_MISMATCH"),
        "hour 24"
    );
    assert_eq!(
        timestamp_reason("2026-02-30T11:00:00Z"),
        Some("TYPE_MISMATCH"),
        "30 February"
    );
    assert_eq!(
        timestamp_reason("0000-01-01T00:00:00Z"),
        Some("BAD_TIMESTAMP"),
        "year 0000"
    );
    assert_eq!(
        timestamp_reason("10000-01-01T00:00:00Z"),
        Some("TYPE_MISMATCH"),
        "year 10000"
    );
    assert_eq!(
        timestamp_reason("2024-02-29T00:00:00.123456789Z"),
        None,
        "leap day, long fraction"
    );
    assert_eq!(
        timestamp_reason("2026-11-25T12:05:00.0000001Z"),
        None,
        "truncated to µs"
    );
    assert_eq!(
        timestamp_reason("2026-11-25T12:05:00.000001Z"),
        Some("BAD_TIMESTAMP")
    );
    assert_eq!(
        timestamp_reason("2026-11-25T13:00:00+01:00"),
        None,
        "an offset"
    );
    assert_eq!(float_reason("\u{3000}-0\u{a0}"), None);
    assert_eq!(float_reason("-inf"), Some("OUT_OF_RANGE"));
    assert_eq!(float_reason("1e400"), Some("OUT_OF_RANGE"));
    assert_eq!(float_reason("\u{200b}5"), Some("TYPE_MISMATCH"));
    assert_eq!(int_reason("+0", -140, 0), None);
    assert_eq!(int_reason("-1e2", -140, 0), Some("TYPE_MISMATCH"));
    let got = sanitize_rows(&[vec![
        ("last_heartbeat_at", "2026-11-25T11:00:60Z".to_string()),
        ("battery_pct", "+Infinity".to_string()),
    ]]);
    assert_eq!(
        got[0].0,
        "last_heartbeat_at:TYPE_MISMATCH;battery_pct:OUT_OF_RANGE"
    );
}
