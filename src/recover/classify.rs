//! Device state and recovery action (SPEC section 5) as polars lazy expressions: the latest clean
//! report of every device, its state by the first rule that matches, its action, the action's
//! cost, and a rationale sentence with the values that decided it.
//!
//! A null never satisfies a comparison here (each condition is `fill_null(false)`), except that a
//! null retry_count counts as 0, as the SPEC says.

use polars::prelude::{
    DataType, Expr, Field, IntoColumn, LazyFrame, NULL, NewChunkedArray, PolarsResult,
    StringChunked, col, concat_str, len, lit, when,
};

use crate::config::{Config, Costs, Thresholds};
use crate::recover::ingest::{SOURCE_FILE, SOURCE_ROW};
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

/// A value as text for a rationale; `null` when missing.
fn text(e: Expr) -> Expr {
    e.cast(DataType::String).fill_null(lit("null"))
}

/// A timestamp (µs, UTC) as a rationale quotes it, `2026-11-24 06:00:00.000000`; `null` when
/// missing. One Rust pass over the column: polars' own cast formats through chrono's strftime,
/// which was the largest single item of classify's profile.
fn time_text(e: Expr) -> Expr {
    e.map(
        |c| {
            let us = c.to_physical_repr();
            let us = us.i64()?;
            let mut buf = String::with_capacity(27);
            let texts = StringChunked::from_iter_values(
                c.name().clone(),
                us.iter().map(|v| match v {
                    Some(us) => {
                        buf.clear();
                        schema::write_timestamp(us, &mut buf);
                        // 2026-11-24T06:00:00.000000Z -> 2026-11-24 06:00:00.000000 (clean
                        // timestamps have four-digit years: 2000 to as_of + 5 minutes).
                        if buf.as_bytes().get(10) == Some(&b'T') {
                            buf.replace_range(10..11, " ");
                        }
                        buf.pop();
                        buf.clone()
                    }
                    None => "null".to_string(),
                }),
            );
            Ok(texts.into_column())
        },
        |_, field| Ok(Field::new(field.name().clone(), DataType::String)),
    )
}

fn sentence(parts: Vec<Expr>) -> Expr {
    concat_str(parts, "", false)
}

/// The latest clean report of each device (greatest reported_at), with `reports`, the device's
/// number of clean reports.
///
/// SPEC 5's tie rule (the later input file, then the greater source_row) cannot fire here: two
/// clean reports never share (device_id, reported_at), because such rows are all CONFLICT when
/// they differ and all but the first DUPLICATE when they do not. So one window over the device
/// suffices; `recover` checks that exactly one row per device remains.
pub fn latest_reports(clean: LazyFrame) -> PolarsResult<LazyFrame> {
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
        .with_columns([
            stale(t, as_of_us).alias("stale"),
            // Timestamps as text once: several rationale sentences quote them.
            time_text(col(schema::LAST_HEARTBEAT_AT)).alias("__heartbeat_text"),
            time_text(col(schema::UPDATE_STARTED_AT)).alias("__started_text"),
        ])
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
            state_why(&facts, t).alias("__why_state"),
            action_why(&facts, t).alias("__why_action"),
        ])
        .with_columns([
            when(col("truck_roll_avoided"))
                .then(lit(config.costs_usd.FIELD_SERVICE))
                .otherwise(lit(0.0))
                .alias("cost_avoided_usd"),
            rationale().alias("rationale"),
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

/// The first half of the rationale: why the device is in its state, with the deciding values.
fn state_why(f: &Facts, t: &Thresholds) -> Expr {
    let st = col("state");
    let status = f.status.clone();
    let model = col(schema::HW_MODEL);
    let bank = when(f.is_dual.clone())
        .then(lit("dual-bank "))
        .otherwise(lit("single-bank "));
    when(f.boot.clone())
        .then(sentence(vec![
            lit("boot_failures="),
            text(col(schema::BOOT_FAILURES)),
            lit(format!(" >= {}", t.brick_boot_failures)),
            lit(" on "),
            bank,
            model,
        ]))
        .when(f.silent_after_download.clone())
        .then(sentence(vec![
            lit("no heartbeat since "),
            col("__heartbeat_text"),
            lit(" after a full download while "),
            status.clone(),
        ]))
        .when(col("stale"))
        .then(sentence(vec![
            lit("no heartbeat since "),
            col("__heartbeat_text"),
            lit(format!(
                " (timeout {} h), download_pct=",
                t.heartbeat_timeout_hours
            )),
            text(col(schema::DOWNLOAD_PCT)),
        ]))
        .when(st.clone().eq(State::Healthy.lit()))
        .then(sentence(vec![
            lit("succeeded and reports target "),
            col(schema::FIRMWARE_TARGET),
        ]))
        .when(f.false_success.clone())
        .then(sentence(vec![
            lit("succeeded but reports the old image "),
            col(schema::FIRMWARE_FROM),
        ]))
        .when(st.clone().eq(State::RolledBack.lit()))
        .then(sentence(vec![
            lit("ota_status=rolled_back, error_code="),
            text(col(schema::ERROR_CODE)),
        ]))
        .when(st.clone().eq(State::Partial.lit()))
        .then(sentence(vec![
            lit("ota_status="),
            status.clone(),
            lit(", error_code="),
            text(col(schema::ERROR_CODE)),
        ]))
        .when(st.eq(State::Stalled.lit()))
        .then(sentence(vec![
            status.clone(),
            lit(" since "),
            col("__started_text"),
            lit(format!(" (over {} h)", t.campaign_timeout_hours)),
        ]))
        .when(f.succeeded.clone())
        .then(lit("succeeded, new image not yet confirmed by the device"))
        .otherwise(sentence(vec![
            status,
            lit(" since "),
            col("__started_text"),
        ]))
}

/// The second half of the rationale: why this action (null for NONE, WAIT of an updating device).
fn action_why(f: &Facts, t: &Thresholds) -> Expr {
    let a = col("action");
    let model = col(schema::HW_MODEL);
    let retry_text = sentence(vec![lit("retry_count="), text(f.retries.clone())]);
    when(a.clone().eq(Action::RetryOta.lit()))
        .then(sentence(vec![
            retry_text.clone(),
            lit(format!(
                " < {}, battery and signal sufficient",
                t.max_retries
            )),
        ]))
        .when(a.clone().eq(Action::Defer.lit()))
        .then(sentence(vec![
            retry_text.clone(),
            lit(format!(" < {} but ", t.max_retries)),
            when(f.battery_ok.clone().not())
                .then(sentence(vec![
                    lit("battery_pct="),
                    text(col(schema::BATTERY_PCT)),
                    lit(format!(" < {}", t.min_battery_pct)),
                ]))
                .otherwise(sentence(vec![
                    lit("rssi_dbm="),
                    text(col(schema::RSSI_DBM)),
                    lit(format!(" < {}", t.min_rssi_dbm)),
                ])),
        ]))
        .when(a.clone().eq(Action::Escalate.lit()))
        .then(sentence(vec![
            retry_text,
            lit(format!(" >= {}", t.max_retries)),
        ]))
        .when(a.clone().eq(Action::RemoteRollback.lit()))
        .then(sentence(vec![
            lit("dual-bank "),
            model.clone(),
            lit(" can boot its previous image"),
        ]))
        .when(a.clone().eq(Action::Rma.lit()))
        .then(sentence(vec![
            lit(format!("{} on single-bank ", ErrorCode::FlashWrite)),
            model.clone(),
        ]))
        .when(
            a.clone()
                .eq(Action::FieldService.lit())
                .and(col("state").eq(State::Bricked.lit())),
        )
        .then(sentence(vec![lit("single-bank "), model]))
        .when(a.eq(Action::FieldService.lit()))
        .then(lit("image fully downloaded, device silent"))
        .otherwise(lit(NULL).cast(DataType::String))
}

/// The rationale sentence: `<why the state> -> <action>[: <why the action>]`. Both halves are
/// columns, materialized once: without common-subexpression elimination, each clone of their
/// long when/then chains would be evaluated again over every device.
fn rationale() -> Expr {
    let a = col("action");
    let (why_state, why_action) = (col("__why_state"), col("__why_action"));
    when(why_action.clone().is_null())
        .then(sentence(vec![why_state.clone(), lit(" -> "), a.clone()]))
        .otherwise(sentence(vec![
            why_state,
            lit(" -> "),
            a,
            lit(": "),
            why_action,
        ]))
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
