//! Device state and recovery action (SPEC section 5) as polars lazy expressions: the latest clean
//! report of every device, its state by the first rule that matches, its action, the action's
//! cost, and a rationale sentence with the values that decided it.
//!
//! A null never satisfies a comparison here (each condition is `fill_null(false)`), except that a
//! null retry_count counts as 0, as the SPEC says.

use polars::prelude::{
    Column, DataType, Expr, Field, IntoColumn, LazyFrame, PolarsResult, Series,
    StringChunkedBuilder, as_struct, col, len, lit, when,
};

use crate::config::{Config, Costs, Thresholds};
use crate::recover::ingest::{SOURCE_FILE, SOURCE_ROW};
use crate::recover::sanitize::Rows;
use crate::schema;
use crate::vocab::{Action, ErrorCode, OtaStatus, State, texts};

fn flag(e: Expr) -> Expr {
    e.fill_null(lit(false))
}

fn one_of(e: Expr, values: &[&str]) -> Expr {
    values
        .iter()
        .map(|v| e.clone().eq(lit(*v)))
        .reduce(Expr::or)
        .map(flag)
        .unwrap_or(lit(false))
}

/// The latest clean report of each device (greatest reported_at), with `reports`, the device's
/// number of clean reports.
///
/// SPEC 5's tie rule (the later input file, then the greater source_row) cannot fire here: two
/// clean reports never share (device_id, reported_at), because such rows are all CONFLICT when
/// they differ and all but the first DUPLICATE when they do not. So one window over the device
/// suffices; `recover` checks that exactly one row per device remains.
pub fn latest_reports(clean: LazyFrame) -> PolarsResult<LazyFrame> {
    latest_reports_of(clean, Rows::Related)
}

/// [`latest_reports`] of clean rows that may be known to be lone ([`Rows::Lone`]): each is then
/// its device's one report.
pub fn latest_reports_of(clean: LazyFrame, rows: Rows) -> PolarsResult<LazyFrame> {
    if rows == Rows::Lone {
        return Ok(clean.with_columns([lit(1u32).cast(DataType::UInt32).alias("reports")]));
    }
    let device = [col(schema::DEVICE_ID)];
    Ok(clean
        .with_columns([
            len()
                .over(device.clone())?
                .cast(DataType::UInt32)
                .alias("reports"),
            col(schema::REPORTED_AT)
                .max()
                .over(device)?
                .alias("__latest"),
        ])
        .filter(col(schema::REPORTED_AT).eq(col("__latest"))))
}

/// Adds `stale`, `state`, `failed`, `action`, `cost_usd`, `truck_roll_avoided`,
/// `cost_avoided_usd` and `rationale` to the latest reports.
pub fn classify(latest: LazyFrame, config: &Config, as_of_us: i64) -> LazyFrame {
    let t = &config.thresholds;
    let facts = Facts::new(config, as_of_us);
    latest
        .with_columns([stale(t, as_of_us).alias("stale")])
        .with_columns([state(&facts).alias("state")])
        .with_columns([
            one_of(col("state"), &texts(&State::FAILED, State::as_str)).alias("failed"),
            action(&facts, t).alias("action"),
        ])
        .with_columns([
            cost(&config.costs_usd).alias("cost_usd"),
            one_of(col("action"), &texts(&Action::REMOTE, Action::as_str))
                .alias("truck_roll_avoided"),
        ])
        .with_columns([
            when(col("truck_roll_avoided"))
                .then(lit(config.costs_usd.FIELD_SERVICE))
                .otherwise(lit(0.0))
                .alias("cost_avoided_usd"),
            rationale(&facts, t).alias("rationale"),
        ])
        .select(device_state_columns())
}

/// Whether the device has gone silent: no heartbeat, or none within heartbeat_timeout of as_of.
fn stale(t: &Thresholds, as_of_us: i64) -> Expr {
    let heartbeat_cut = as_of_us - (t.heartbeat_timeout_hours * HOUR_US) as i64;
    let heartbeat = col(schema::LAST_HEARTBEAT_AT).cast(DataType::Int64);
    heartbeat
        .clone()
        .is_null()
        .or(flag(heartbeat.lt(lit(heartbeat_cut))))
}

const HOUR_US: f64 = 3_600_000_000f64;

/// What the rules look at in a device's latest clean report, each a boolean (or value)
/// expression; `stale` is the column of that name.
struct Facts {
    status: Expr,
    full: Expr,
    boot: Expr,
    succeeded: Expr,
    false_success: Expr,
    silent_after_download: Expr,
    started_long_ago: Expr,
    retries: Expr,
    battery_ok: Expr,
    signal_ok: Expr,
    is_dual: Expr,
    flash: Expr,
}

impl Facts {
    fn new(config: &Config, as_of_us: i64) -> Facts {
        let t = &config.thresholds;
        let campaign_cut = as_of_us - (t.campaign_timeout_hours * HOUR_US) as i64;
        let status = col(schema::OTA_STATUS);
        let full = flag(col(schema::DOWNLOAD_PCT).eq(lit(100.0)));
        let succeeded = flag(status.clone().eq(OtaStatus::Succeeded.lit()));
        let dual_bank: Vec<&str> = config
            .models
            .iter()
            .filter(|(_, m)| m.dual_bank)
            .map(|(n, _)| n.as_str())
            .collect();
        Facts {
            boot: flag(col(schema::BOOT_FAILURES).gt_eq(lit(t.brick_boot_failures))),
            silent_after_download: col("stale").and(full.clone()).and(one_of(
                status.clone(),
                &texts(
                    &[
                        OtaStatus::Installing,
                        OtaStatus::Failed,
                        OtaStatus::TimedOut,
                    ],
                    OtaStatus::as_str,
                ),
            )),
            false_success: succeeded.clone().and(flag(
                col(schema::FIRMWARE_REPORTED).eq(col(schema::FIRMWARE_FROM)),
            )),
            started_long_ago: flag(
                col(schema::UPDATE_STARTED_AT)
                    .cast(DataType::Int64)
                    .lt(lit(campaign_cut)),
            ),
            retries: col(schema::RETRY_COUNT)
                .fill_null(lit(0i32))
                .cast(DataType::Int64),
            battery_ok: col(schema::BATTERY_PCT)
                .is_null()
                .or(flag(col(schema::BATTERY_PCT).gt_eq(lit(t.min_battery_pct)))),
            signal_ok: col(schema::RSSI_DBM)
                .is_null()
                .or(flag(col(schema::RSSI_DBM).gt_eq(lit(t.min_rssi_dbm)))),
            is_dual: one_of(col(schema::HW_MODEL), &dual_bank),
            flash: flag(col(schema::ERROR_CODE).eq(ErrorCode::FlashWrite.lit())),
            status,
            full,
            succeeded,
        }
    }
}

/// The state: the first of SPEC section 5's rules that matches.
fn state(f: &Facts) -> Expr {
    let status = &f.status;
    when(f.boot.clone().or(f.silent_after_download.clone()))
        .then(State::Bricked.lit())
        .when(col("stale"))
        .then(State::Unreachable.lit())
        .when(f.succeeded.clone().and(flag(
            col(schema::FIRMWARE_REPORTED).eq(col(schema::FIRMWARE_TARGET)),
        )))
        .then(State::Healthy.lit())
        .when(flag(status.clone().eq(OtaStatus::RolledBack.lit())).or(f.false_success.clone()))
        .then(State::RolledBack.lit())
        .when(one_of(
            status.clone(),
            &texts(&[OtaStatus::Failed, OtaStatus::TimedOut], OtaStatus::as_str),
        ))
        .then(State::Partial.lit())
        .when(
            one_of(
                status.clone(),
                &texts(
                    &[
                        OtaStatus::Queued,
                        OtaStatus::Downloading,
                        OtaStatus::Installing,
                    ],
                    OtaStatus::as_str,
                ),
            )
            .and(f.started_long_ago.clone()),
        )
        .then(State::Stalled.lit())
        .otherwise(State::Updating.lit())
}

/// The action for the `state` column (SPEC section 5's second table).
fn action(f: &Facts, t: &Thresholds) -> Expr {
    let st = col("state");
    when(st.clone().eq(State::Healthy.lit()))
        .then(Action::None.lit())
        .when(st.clone().eq(State::Updating.lit()))
        .then(Action::Wait.lit())
        .when(one_of(
            st.clone(),
            &texts(
                &[State::Partial, State::RolledBack, State::Stalled],
                State::as_str,
            ),
        ))
        .then(
            when(f.retries.clone().gt_eq(lit(t.max_retries)))
                .then(Action::Escalate.lit())
                .when(f.battery_ok.clone().and(f.signal_ok.clone()))
                .then(Action::RetryOta.lit())
                .otherwise(Action::Defer.lit()),
        )
        .when(st.eq(State::Bricked.lit()))
        .then(
            when(f.is_dual.clone())
                .then(Action::RemoteRollback.lit())
                .when(f.flash.clone())
                .then(Action::Rma.lit())
                .otherwise(Action::FieldService.lit()),
        )
        .otherwise(
            when(f.full.clone())
                .then(Action::FieldService.lit())
                .otherwise(Action::Wait.lit()),
        )
}

/// The cost of the `action` column, from the configuration.
fn cost(costs: &Costs) -> Expr {
    let mut cost = when(lit(false))
        .then(lit(0.0))
        .when(lit(false))
        .then(lit(0.0));
    for (a, usd) in costs.by_action() {
        cost = cost.when(col("action").eq(a.lit())).then(lit(usd));
    }
    cost.otherwise(lit(0.0))
}

/// The rationale: `<why the state> -> <action>[: <why the action>]`, with the values that decided
/// them (SPEC section 5). One Rust pass over the latest reports ([`Why`]): as a polars when/then
/// chain, every branch's sentence was assembled for every device before the chain picked one,
/// about half of classify's time. The facts are the rules' own expressions, so the sentence
/// follows the state and action exactly.
fn rationale(f: &Facts, t: &Thresholds) -> Expr {
    let why = Why::new(t);
    as_struct(vec![
        col("state"),
        col("action"),
        f.boot.clone().alias("__boot"),
        f.silent_after_download.clone().alias("__silent"),
        col("stale"),
        f.false_success.clone().alias("__false_success"),
        f.succeeded.clone().alias("__succeeded"),
        f.is_dual.clone().alias("__dual"),
        f.battery_ok.clone().alias("__battery_ok"),
        f.retries.clone().alias("__retries"),
        col(schema::LAST_HEARTBEAT_AT).cast(DataType::Int64),
        col(schema::UPDATE_STARTED_AT).cast(DataType::Int64),
        col(schema::BOOT_FAILURES).cast(DataType::Int64),
        col(schema::RSSI_DBM).cast(DataType::Int64),
        col(schema::DOWNLOAD_PCT),
        col(schema::BATTERY_PCT),
        col(schema::OTA_STATUS),
        col(schema::ERROR_CODE),
        col(schema::HW_MODEL),
        col(schema::FIRMWARE_TARGET),
        col(schema::FIRMWARE_FROM),
    ])
    .map(
        move |c| why.column(&c),
        |_, field| Ok(Field::new(field.name().clone(), DataType::String)),
    )
}

/// What a rationale quotes of one device (a null never satisfies a flag).
struct Row<'a> {
    state: Option<&'a str>,
    action: Option<&'a str>,
    boot: bool,
    silent: bool,
    stale: bool,
    false_success: bool,
    succeeded: bool,
    dual: bool,
    battery_ok: Option<bool>,
    retries: Option<i64>,
    heartbeat: Option<i64>,
    started: Option<i64>,
    boot_failures: Option<i64>,
    rssi_dbm: Option<i64>,
    download_pct: Option<f64>,
    battery_pct: Option<f64>,
    status: Option<&'a str>,
    error_code: Option<&'a str>,
    model: Option<&'a str>,
    target: Option<&'a str>,
    from: Option<&'a str>,
}

/// The value at `i` of a primitive Arrow array, None where null.
fn at<T: polars_arrow::types::NativeType>(
    a: &polars_arrow::array::PrimitiveArray<T>,
    i: usize,
) -> Option<T> {
    use polars_arrow::array::Array;
    a.is_valid(i).then(|| a.value(i))
}

/// The rationale's phrases, thresholds spelled out once. A sentence that quotes a missing text
/// value is null, as concatenating a null is in SQL; a missing number or time is quoted as `null`.
struct Why {
    boot: String,
    timeout: String,
    over: String,
    retry_ok: String,
    retry_but: String,
    battery_low: String,
    rssi_low: String,
    escalate: String,
    rma: String,
}

impl Why {
    fn new(t: &Thresholds) -> Why {
        Why {
            boot: format!(" >= {} on ", t.brick_boot_failures),
            timeout: format!(" (timeout {} h), download_pct=", t.heartbeat_timeout_hours),
            over: format!(" (over {} h)", t.campaign_timeout_hours),
            retry_ok: format!(" < {}, battery and signal sufficient", t.max_retries),
            retry_but: format!(" < {} but ", t.max_retries),
            battery_low: format!(" < {}", t.min_battery_pct),
            rssi_low: format!(" < {}", t.min_rssi_dbm),
            escalate: format!(" >= {}", t.max_retries),
            rma: format!("{} on single-bank ", ErrorCode::FlashWrite),
        }
    }

    /// The rationale of every row of `c`, a struct of [`rationale`]'s fields.
    fn column(&self, c: &Column) -> PolarsResult<Column> {
        // Fields are read by name, so the struct's order does not matter.
        let s = c.struct_()?;
        let fields = |names: &[&str]| -> PolarsResult<Vec<Series>> {
            names
                .iter()
                .map(|name| Ok(s.field_by_name(name)?.rechunk()))
                .collect()
        };
        let texts = fields(&[
            "state",
            "action",
            schema::OTA_STATUS,
            schema::ERROR_CODE,
            schema::HW_MODEL,
            schema::FIRMWARE_TARGET,
            schema::FIRMWARE_FROM,
        ])?;
        let flags = fields(&[
            "__boot",
            "__silent",
            "stale",
            "__false_success",
            "__succeeded",
            "__dual",
            "__battery_ok",
        ])?;
        let ints = fields(&[
            "__retries",
            schema::LAST_HEARTBEAT_AT,
            schema::UPDATE_STARTED_AT,
            schema::BOOT_FAILURES,
            schema::RSSI_DBM,
        ])?;
        let floats = fields(&[schema::DOWNLOAD_PCT, schema::BATTERY_PCT])?;
        // One chunk each (rechunked above): read through the Arrow arrays, whose `get` is an
        // index, where ChunkedArray::get first finds the chunk (4% of a 10M run's CPU).
        let texts = texts
            .iter()
            .map(|f| Ok(f.str()?.downcast_as_array()))
            .collect::<PolarsResult<Vec<_>>>()?;
        let flags = flags
            .iter()
            .map(|f| Ok(f.bool()?.downcast_as_array()))
            .collect::<PolarsResult<Vec<_>>>()?;
        let ints = ints
            .iter()
            .map(|f| Ok(f.i64()?.downcast_as_array()))
            .collect::<PolarsResult<Vec<_>>>()?;
        let floats = floats
            .iter()
            .map(|f| Ok(f.f64()?.downcast_as_array()))
            .collect::<PolarsResult<Vec<_>>>()?;
        let [state, action, status, error_code, model, target, from] = texts[..] else {
            unreachable!("seven text fields")
        };
        let [
            boot,
            silent,
            stale,
            false_success,
            succeeded,
            dual,
            battery_ok,
        ] = flags[..]
        else {
            unreachable!("seven flags")
        };
        let [retries, heartbeat, started, boot_failures, rssi_dbm] = ints[..] else {
            unreachable!("five integers")
        };
        let [download_pct, battery_pct] = floats[..] else {
            unreachable!("two numbers")
        };
        let mut out = StringChunkedBuilder::new(c.name().clone(), c.len());
        let (mut line, mut action_why) = (String::with_capacity(192), String::with_capacity(96));
        for i in 0..c.len() {
            let row = Row {
                state: state.get(i),
                action: action.get(i),
                boot: boot.get(i).unwrap_or(false),
                silent: silent.get(i).unwrap_or(false),
                stale: stale.get(i).unwrap_or(false),
                false_success: false_success.get(i).unwrap_or(false),
                succeeded: succeeded.get(i).unwrap_or(false),
                dual: dual.get(i).unwrap_or(false),
                battery_ok: battery_ok.get(i),
                retries: at(retries, i),
                heartbeat: at(heartbeat, i),
                started: at(started, i),
                boot_failures: at(boot_failures, i),
                rssi_dbm: at(rssi_dbm, i),
                download_pct: at(download_pct, i),
                battery_pct: at(battery_pct, i),
                status: status.get(i),
                error_code: error_code.get(i),
                model: model.get(i),
                target: target.get(i),
                from: from.get(i),
            };
            line.clear();
            action_why.clear();
            let written = self.state_why(&row, &mut line).and_then(|()| {
                line.push_str(" -> ");
                line.push_str(row.action?);
                if self.action_why(&row, &mut action_why).is_some() {
                    line.push_str(": ");
                    line.push_str(&action_why);
                }
                Some(())
            });
            match written {
                Some(()) => out.append_value(&line),
                None => out.append_null(),
            }
        }
        Ok(out.finish().into_column())
    }

    /// Why the device is in its state: the first of the state rules that holds, in their order.
    fn state_why(&self, r: &Row, b: &mut String) -> Option<()> {
        let state = r.state.unwrap_or_default();
        if r.boot {
            b.push_str("boot_failures=");
            put_int(b, r.boot_failures);
            b.push_str(&self.boot);
            b.push_str(if r.dual { "dual-bank " } else { "single-bank " });
            b.push_str(r.model?);
        } else if r.silent {
            b.push_str("no heartbeat since ");
            put_time(b, r.heartbeat);
            b.push_str(" after a full download while ");
            b.push_str(r.status?);
        } else if r.stale {
            b.push_str("no heartbeat since ");
            put_time(b, r.heartbeat);
            b.push_str(&self.timeout);
            put_float(b, r.download_pct);
        } else if state == State::Healthy.as_str() {
            b.push_str("succeeded and reports target ");
            b.push_str(r.target?);
        } else if r.false_success {
            b.push_str("succeeded but reports the old image ");
            b.push_str(r.from?);
        } else if state == State::RolledBack.as_str() {
            b.push_str("ota_status=rolled_back, error_code=");
            b.push_str(r.error_code.unwrap_or("null"));
        } else if state == State::Partial.as_str() {
            b.push_str("ota_status=");
            b.push_str(r.status?);
            b.push_str(", error_code=");
            b.push_str(r.error_code.unwrap_or("null"));
        } else if state == State::Stalled.as_str() {
            b.push_str(r.status?);
            b.push_str(" since ");
            put_time(b, r.started);
            b.push_str(&self.over);
        } else if r.succeeded {
            b.push_str("succeeded, new image not yet confirmed by the device");
        } else {
            b.push_str(r.status?);
            b.push_str(" since ");
            put_time(b, r.started);
        }
        Some(())
    }

    /// Why this action; `None` for NONE and WAIT (except a silent device's field service).
    fn action_why(&self, r: &Row, b: &mut String) -> Option<()> {
        let action = r.action?;
        let retry = |b: &mut String| {
            b.push_str("retry_count=");
            put_int(b, r.retries);
        };
        if action == Action::RetryOta.as_str() {
            retry(b);
            b.push_str(&self.retry_ok);
        } else if action == Action::Defer.as_str() {
            retry(b);
            b.push_str(&self.retry_but);
            if r.battery_ok == Some(false) {
                b.push_str("battery_pct=");
                put_float(b, r.battery_pct);
                b.push_str(&self.battery_low);
            } else {
                b.push_str("rssi_dbm=");
                put_int(b, r.rssi_dbm);
                b.push_str(&self.rssi_low);
            }
        } else if action == Action::Escalate.as_str() {
            retry(b);
            b.push_str(&self.escalate);
        } else if action == Action::RemoteRollback.as_str() {
            b.push_str("dual-bank ");
            b.push_str(r.model?);
            b.push_str(" can boot its previous image");
        } else if action == Action::Rma.as_str() {
            b.push_str(&self.rma);
            b.push_str(r.model?);
        } else if action == Action::FieldService.as_str()
            && r.state == Some(State::Bricked.as_str())
        {
            b.push_str("single-bank ");
            b.push_str(r.model?);
        } else if action == Action::FieldService.as_str() {
            b.push_str("image fully downloaded, device silent");
        } else {
            return None;
        }
        Some(())
    }
}

/// An integer as a rationale quotes it; `null` when missing.
fn put_int(b: &mut String, v: Option<i64>) {
    match v {
        Some(v) => b.push_str(itoa::Buffer::new().format(v)),
        None => b.push_str("null"),
    }
}

/// A number as polars casts it to text (shortest round-trip form, `100.0`, `57.3`); `null` when
/// missing.
fn put_float(b: &mut String, v: Option<f64>) {
    match v {
        Some(v) => b.push_str(zmij::Buffer::new().format(v)),
        None => b.push_str("null"),
    }
}

/// A timestamp (µs, UTC) as a rationale quotes it, `2026-11-24 06:00:00.000000`; `null` when
/// missing.
fn put_time(b: &mut String, us: Option<i64>) {
    let Some(us) = us else {
        b.push_str("null");
        return;
    };
    let start = b.len();
    schema::write_timestamp(us, b);
    // 2026-11-24T06:00:00.000000Z -> 2026-11-24 06:00:00.000000 (clean timestamps have
    // four-digit years: 2000 to as_of + 5 minutes).
    if b.as_bytes().get(start + 10) == Some(&b'T') {
        b.replace_range(start + 10..start + 11, " ");
    }
    b.pop();
}

/// The columns of device_state, in order.
pub fn device_state_columns() -> Vec<Expr> {
    let mut cols: Vec<Expr> = schema::COLUMNS.iter().map(|c| col(c.name)).collect();
    cols.extend(
        [
            "reports",
            "stale",
            "state",
            "failed",
            "action",
            "cost_usd",
            "truck_roll_avoided",
            "cost_avoided_usd",
            "rationale",
            SOURCE_FILE,
            SOURCE_ROW,
        ]
        .into_iter()
        .map(col),
    );
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{Float64Chunked, Int64Chunked, NewChunkedArray};
    use proptest::prelude::*;

    /// polars' own cast of `values` to text, nulls as `null`: what the rationale used to quote.
    fn polars_text(values: Column) -> Vec<String> {
        let text = values.cast(&DataType::String).unwrap();
        text.str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or("null").to_string())
            .collect()
    }

    proptest! {
        #[test]
        fn numbers_are_quoted_as_polars_casts_them(
            floats in proptest::collection::vec(proptest::option::of(-1.0e9f64..1.0e9), 1..50),
            whole in proptest::collection::vec(0u8..=100, 1..20),
            ints in proptest::collection::vec(proptest::option::of(any::<i64>()), 1..50),
        ) {
            // Percentages are often whole (100.0) or short decimals (57.3).
            let mut floats = floats;
            floats.extend(whole.iter().map(|w| Some(f64::from(*w))));
            floats.extend(whole.iter().map(|w| Some(f64::from(*w) / 10.0)));
            let want = polars_text(Float64Chunked::from_iter_options("x".into(), floats.iter().copied()).into_column());
            let got: Vec<String> = floats.iter().map(|v| { let mut b = String::new(); put_float(&mut b, *v); b }).collect();
            prop_assert_eq!(got, want);
            let want = polars_text(Int64Chunked::from_iter_options("x".into(), ints.iter().copied()).into_column());
            let got: Vec<String> = ints.iter().map(|v| { let mut b = String::new(); put_int(&mut b, *v); b }).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn times_are_quoted_without_the_t_and_the_z() {
        let mut b = String::from("since ");
        put_time(&mut b, Some(1_764_050_400_000_000));
        put_time(&mut b, None);
        assert_eq!(b, "since 2025-11-25 06:00:00.000000null");
    }
}
