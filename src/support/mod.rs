//! Helpers shared by several stages, none of them a stage: the allocator's settings (`memory`),
//! the worker pool that keeps output order (`parallel`), the Parquet writer settings (`parquet`),
//! the seed mixer of the generator and chaos (`mix`), the clock (`now_us`), and the
//! spreadsheet-formula rule of every CSV Sentinel writes (`neutralize`).

pub mod memory;
pub mod parallel;
pub mod parquet;

/// Now, in µs since the epoch: the one clock (run ledger times, shard manifests, the default
/// as-of).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// SplitMix64 of (seed, stream): independent seeds for independent streams.
pub fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The characters that make a spreadsheet read a cell as a formula when it starts with one.
pub const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// The same rule as a regular expression, for polars' `str().contains`.
pub const FORMULA_START_PATTERN: &str = r"^[=+\-@\t\r]";

/// A text cell that a spreadsheet would take for a formula gets a leading `'` (the recovery plan,
/// analyze's CSV and table output).
pub fn neutralize(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_START) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralizes_formula_cells_only() {
        for bad in ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx"] {
            assert_eq!(neutralize(bad), format!("'{bad}"));
        }
        assert_eq!(neutralize("us-east"), "us-east");
        // The pattern says the same as the characters.
        let re: String = FORMULA_START
            .iter()
            .map(|c| match c {
                '-' => "\\-".to_string(),
                '\t' => "\\t".to_string(),
                '\r' => "\\r".to_string(),
                c => c.to_string(),
            })
            .collect();
        assert_eq!(FORMULA_START_PATTERN, format!("^[{re}]"));
    }
}
