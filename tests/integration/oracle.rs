//! A row-by-row reading of SPEC sections 4 and 5 for canonical, typed telemetry: what the tests
//! hold the generator to (no row it writes may be quarantined; every state must occur). It is
//! deliberately written apart from the crate's own code, so the two can check each other.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;
use sentinel::config::Config;
use sentinel::schema;

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub device_id: Option<String>,
    pub region: Option<String>,
    pub hw_model: Option<String>,
    pub gateway_id: Option<String>,
    pub firmware_from: Option<String>,
    pub firmware_target: Option<String>,
    pub firmware_reported: Option<String>,
    pub ota_status: Option<String>,
    pub error_code: Option<String>,
    pub download_pct: Option<f64>,
    pub battery_pct: Option<f64>,
    pub rssi_dbm: Option<i32>,
    pub boot_failures: Option<i32>,
    pub retry_count: Option<i32>,
    pub update_started_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub reported_at: Option<i64>,
}

fn texts(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}
fn floats(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().f64().unwrap().iter().collect()
}
fn ints(df: &DataFrame, name: &str) -> Vec<Option<i32>> {
    df.column(name).unwrap().i32().unwrap().iter().collect()
}
fn times(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    let s = df
        .column(name)
        .unwrap()
        .as_materialized_series()
        .to_physical_repr();
    s.i64().unwrap().iter().collect()
}

/// The rows of a frame in the canonical schema.
pub fn rows(df: &DataFrame) -> Vec<Row> {
    let t = |n| texts(df, n);
    let (ids, regions, models, gws) = (t("device_id"), t("region"), t("hw_model"), t("gateway_id"));
    let (from, target, reported) = (
        t("firmware_from"),
        t("firmware_target"),
        t("firmware_reported"),
    );
    let (status, error) = (t("ota_status"), t("error_code"));
    let (dl, bat) = (floats(df, "download_pct"), floats(df, "battery_pct"));
    let (rssi, boot, retry) = (
        ints(df, "rssi_dbm"),
        ints(df, "boot_failures"),
        ints(df, "retry_count"),
    );
    let (started, hb, rep) = (
        times(df, "update_started_at"),
        times(df, "last_heartbeat_at"),
        times(df, "reported_at"),
    );
    (0..df.height())
        .map(|i| Row {
            device_id: ids[i].clone(),
            region: regions[i].clone(),
            hw_model: models[i].clone(),
            gateway_id: gws[i].clone(),
            firmware_from: from[i].clone(),
            firmware_target: target[i].clone(),
            firmware_reported: reported[i].clone(),
            ota_status: status[i].clone(),
            error_code: error[i].clone(),
            download_pct: dl[i],
            battery_pct: bat[i],
            rssi_dbm: rssi[i],
            boot_failures: boot[i],
            retry_count: retry[i],
            update_started_at: started[i],
            last_heartbeat_at: hb[i],
            reported_at: rep[i],
        })
        .collect()
}

fn is_semver(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

/// The reasons SPEC section 4 gives one canonical row on its own (DUPLICATE and CONFLICT, which
/// need the other rows, come from `duplicates`).
pub fn row_problems(r: &Row, config: &Config, as_of: i64) -> Vec<String> {
    let mut p = Vec::new();
    let required = [
        ("device_id", r.device_id.is_some()),
        ("region", r.region.is_some()),
        ("hw_model", r.hw_model.is_some()),
        ("firmware_from", r.firmware_from.is_some()),
        ("firmware_target", r.firmware_target.is_some()),
        ("ota_status", r.ota_status.is_some()),
        ("update_started_at", r.update_started_at.is_some()),
        ("reported_at", r.reported_at.is_some()),
    ];
    for (c, present) in required {
        if !present {
            p.push(format!("{c}:MISSING_REQUIRED"));
        }
    }
    for (c, v) in [("device_id", &r.device_id), ("gateway_id", &r.gateway_id)] {
        if v.as_deref().is_some_and(|v| !schema::is_valid_id(v)) {
            p.push(format!("{c}:TYPE_MISMATCH"));
        }
    }
    for (c, v) in [
        ("firmware_from", &r.firmware_from),
        ("firmware_target", &r.firmware_target),
        ("firmware_reported", &r.firmware_reported),
    ] {
        if v.as_deref().is_some_and(|v| !is_semver(v)) {
            p.push(format!("{c}:TYPE_MISMATCH"));
        }
    }
    for (c, v) in [
        ("download_pct", r.download_pct),
        ("battery_pct", r.battery_pct),
    ] {
        if v.is_some_and(|x| !(0.0..=100.0).contains(&x)) {
            p.push(format!("{c}:OUT_OF_RANGE"));
        }
    }
    if r.rssi_dbm.is_some_and(|x| !(-140..=0).contains(&x)) {
        p.push("rssi_dbm:OUT_OF_RANGE".into());
    }
    for (c, v) in [
        ("boot_failures", r.boot_failures),
        ("retry_count", r.retry_count),
    ] {
        if v.is_some_and(|x| !(0..=1000).contains(&x)) {
            p.push(format!("{c}:OUT_OF_RANGE"));
        }
    }
    if r.region
        .as_deref()
        .is_some_and(|v| config.region_index(v).is_none())
    {
        p.push("region:UNKNOWN_CATEGORY".into());
    }
    if r.hw_model
        .as_deref()
        .is_some_and(|v| !config.models.keys().any(|m| m.eq_ignore_ascii_case(v)))
    {
        p.push("hw_model:UNKNOWN_CATEGORY".into());
    }
    if r.ota_status
        .as_deref()
        .is_some_and(|v| sentinel::vocab::OtaStatus::parse(v).is_none())
    {
        p.push("ota_status:UNKNOWN_CATEGORY".into());
    }
    if r.error_code
        .as_deref()
        .is_some_and(|v| sentinel::vocab::ErrorCode::parse(v).is_none())
    {
        p.push("error_code:UNKNOWN_CATEGORY".into());
    }
    let y2000 = schema::parse_timestamp("2000-01-01T00:00:00Z").unwrap();
    for (c, v) in [
        ("update_started_at", r.update_started_at),
        ("last_heartbeat_at", r.last_heartbeat_at),
        ("reported_at", r.reported_at),
    ] {
        if v.is_some_and(|t| t > as_of + 300_000_000 || t < y2000) {
            p.push(format!("{c}:BAD_TIMESTAMP"));
        }
    }
    if let (Some(rep), Some(start)) = (r.reported_at, r.update_started_at)
        && rep < start
    {
        p.push("reported_at:BAD_TIMESTAMP".into());
    }
    if r.download_pct.is_none()
        && r.battery_pct.is_none()
        && r.rssi_dbm.is_none()
        && r.boot_failures.is_none()
        && r.last_heartbeat_at.is_none()
        && r.firmware_reported.is_none()
    {
        p.push("*:SIGNAL_DROP".into());
    }
    let succeeded_short =
        r.ota_status.as_deref() == Some("succeeded") && r.download_pct.is_some_and(|d| d < 100.0);
    let foreign_image = r.firmware_reported.is_some()
        && r.firmware_target.is_some()
        && r.firmware_from.is_some()
        && r.firmware_reported != r.firmware_target
        && r.firmware_reported != r.firmware_from;
    if succeeded_short || foreign_image {
        p.push("*:INCONSISTENT".into());
    }
    p
}

/// Row indices that SPEC section 4 quarantines as DUPLICATE or CONFLICT.
pub fn duplicates(rows: &[Row]) -> HashSet<usize> {
    let mut by_key: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let (Some(id), Some(t)) = (r.device_id.as_deref(), r.reported_at) {
            by_key.entry((id, t)).or_default().push(i);
        }
    }
    let mut out = HashSet::new();
    for group in by_key.values().filter(|g| g.len() > 1) {
        if group.iter().all(|&i| rows[i] == rows[group[0]]) {
            out.extend(group.iter().skip(1));
        } else {
            out.extend(group.iter());
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Bricked,
    Unreachable,
    Healthy,
    RolledBack,
    Partial,
    Stalled,
    Updating,
}

impl State {
    pub fn failed(self) -> bool {
        !matches!(self, State::Healthy | State::Updating)
    }
}

/// SPEC section 5's state of a device whose latest clean report is `r`.
pub fn state(r: &Row, config: &Config, as_of: i64) -> State {
    let hour = 3_600_000_000f64;
    let t = &config.thresholds;
    let stale = r
        .last_heartbeat_at
        .is_none_or(|h| (h as f64) < as_of as f64 - t.heartbeat_timeout_hours * hour);
    let status = r.ota_status.as_deref().unwrap();
    let full = r.download_pct == Some(100.0);
    if r.boot_failures
        .is_some_and(|b| i64::from(b) >= t.brick_boot_failures)
        || (stale && full && ["installing", "failed", "timed_out"].contains(&status))
    {
        return State::Bricked;
    }
    if stale {
        return State::Unreachable;
    }
    if status == "succeeded" && r.firmware_reported == r.firmware_target {
        return State::Healthy;
    }
    if status == "rolled_back" || (status == "succeeded" && r.firmware_reported == r.firmware_from)
    {
        return State::RolledBack;
    }
    if ["failed", "timed_out"].contains(&status) {
        return State::Partial;
    }
    let started = r.update_started_at.unwrap() as f64;
    if ["queued", "downloading", "installing"].contains(&status)
        && started < as_of as f64 - t.campaign_timeout_hours * hour
    {
        return State::Stalled;
    }
    State::Updating
}

/// The latest report of each device (greatest reported_at, ties to the later row).
pub fn latest(rows: &[Row]) -> HashMap<String, usize> {
    let mut out: HashMap<String, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let id = r.device_id.clone().unwrap();
        let e = out.entry(id).or_insert(i);
        if rows[*e].reported_at <= r.reported_at {
            *e = i;
        }
    }
    out
}
