//! `generate` (SPEC section 9): a synthetic fleet's telemetry after an OTA campaign, as Parquet in
//! the canonical column order and types.
//!
//! The fleet is built in blocks of [`BLOCK`] devices. Each block draws from its own random stream,
//! seeded from (seed, block number), so the bytes written depend only on (devices, seed, as_of) and
//! not on how many threads generate the blocks. Each block is one Parquet row group, and only a few
//! blocks are in memory at a time, so memory stays flat at any fleet size.
//!
//! Each device first draws its *outcome* (the device state the SPEC's rules will give it), then the
//! raw values that lead there. That keeps every generated row clean and every state reachable, and it
//! lets the planted bottlenecks below be exact statements about the data:
//!
//! - a weak-signal region ([`weak_region`], `ap-south` by default): RSSI around −103 dBm instead
//!   of −78, and 12% more failures (download timeouts and silent devices). Its failure rate is
//!   far above the 5% HALT gate, while every other region stays near 2%.
//! - a degraded gateway ([`degraded_gateway`], `gw-us-east-07` by default): 20% more failures
//!   (checksum mismatches, timeouts, stalls) for the devices behind it.
//! - a brick-prone cohort ([`brick_cohort`], SEN-100 devices updating from 3.9.8): 30% of them
//!   boot-loop or fail to write flash and end up BRICKED.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use polars::prelude::{
    ChunkedBuilder, DataFrame, Float64Type, Int32Type, Int64Type, IntoColumn, PolarsResult,
    PrimitiveChunkedBuilder, StringChunkedBuilder, TimeUnit,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Serialize;

use crate::config::Config;
use crate::schema;
use crate::support::mix;
use crate::support::parallel;
use crate::support::parquet;
use crate::vocab::{ErrorCode, OtaStatus};
use crate::workspace::AtomicFile;

/// Devices per random stream.
/// A block is one Parquet row group of about 150,000 rows.
pub const BLOCK: u64 = 131_072;

/// The firmware every device is being updated to.
pub const FIRMWARE_TARGET: &str = "4.2.0";
/// Firmware the fleet updates from, with weights.
const FIRMWARE_FROM: [(&str, f64); 5] = [
    ("4.1.2", 38.0),
    ("4.1.0", 26.0),
    ("4.0.3", 16.0),
    ("3.9.8", 10.0),
    ("3.7.1", 10.0),
];

/// Share of the fleet by region name; a configured region not listed here weighs 5.
const REGION_WEIGHTS: [(&str, f64); 12] = [
    ("us-east", 18.0),
    ("us-west", 12.0),
    ("ca-central", 5.0),
    ("sa-east", 5.0),
    ("eu-west", 13.0),
    ("eu-central", 11.0),
    ("eu-north", 5.0),
    ("me-central", 4.0),
    ("af-south", 3.0),
    ("ap-south", 8.0),
    ("ap-southeast", 8.0),
    ("ap-northeast", 8.0),
];

/// Share of the fleet by model name; a configured model not listed here weighs 10.
const MODEL_WEIGHTS: [(&str, f64); 5] = [
    ("SEN-100", 32.0),
    ("SEN-200", 24.0),
    ("THERM-10", 18.0),
    ("CAM-300", 14.0),
    ("GW-500", 12.0),
];

const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;

/// What `generate` is asked to do.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub devices: u64,
    pub seed: u64,
    /// The moment the telemetry is exported, µs since the epoch (UTC).
    pub as_of_us: i64,
    pub out: PathBuf,
}

/// What `generate` did.
#[derive(Clone, Debug, Serialize)]
pub struct GenerateSummary {
    pub devices: u64,
    pub rows: u64,
    pub path: PathBuf,
    pub seconds: f64,
}

/// The planted bottlenecks of a fleet, named in the configured spelling.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bottlenecks {
    pub weak_region: String,
    pub degraded_gateway: String,
    pub degraded_gateway_region: String,
    pub brick_model: String,
    pub brick_firmware_from: String,
}

/// The weak-signal region: `ap-south` when configured, else the last region.
pub fn weak_region(config: &Config) -> usize {
    config
        .region_index("ap-south")
        .unwrap_or(config.regions.len() - 1)
}

/// The region of the degraded gateway: the most populous one other than the weak region.
fn degraded_region(plan: &FleetPlan) -> usize {
    (0..plan.regions.len())
        .filter(|&r| r != plan.weak_region || plan.regions.len() == 1)
        .max_by(|&a, &b| {
            plan.region_weights[a]
                .total_cmp(&plan.region_weights[b])
                .then(b.cmp(&a))
        })
        .unwrap_or(0)
}

/// The planted bottlenecks for this configuration.
pub fn bottlenecks(config: &Config) -> Bottlenecks {
    let plan = FleetPlan::new(config);
    Bottlenecks {
        weak_region: plan.regions[plan.weak_region].clone(),
        degraded_gateway: plan.gateway_name(plan.degraded_region, plan.degraded_gateway),
        degraded_gateway_region: plan.regions[plan.degraded_region].clone(),
        brick_model: plan.models[plan.brick_model].clone(),
        brick_firmware_from: FIRMWARE_FROM[BRICK_FIRMWARE].0.to_string(),
    }
}

/// Index into FIRMWARE_FROM of the brick-prone cohort's firmware.
const BRICK_FIRMWARE: usize = 3;

/// Everything about the fleet that does not change per device.
struct FleetPlan {
    regions: Vec<String>,
    region_weights: Vec<f64>,
    region_cdf: Vec<f64>,
    gateways: Vec<usize>,
    gateway_names: Vec<Vec<String>>,
    models: Vec<String>,
    /// The models as they may appear in a device id (see [`id_slug`]).
    model_slugs: Vec<String>,
    model_battery: Vec<bool>,
    model_cdf: Vec<f64>,
    firmware_cdf: Vec<f64>,
    weak_region: usize,
    degraded_region: usize,
    degraded_gateway: usize,
    brick_model: usize,
}

fn cdf(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1)
}

impl FleetPlan {
    fn new(config: &Config) -> FleetPlan {
        let weight_of = |table: &[(&str, f64)], name: &str, default: f64| {
            table
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or(default, |(_, w)| *w)
        };
        let regions = config.regions.clone();
        let region_weights: Vec<f64> = regions
            .iter()
            .map(|r| weight_of(&REGION_WEIGHTS, r, 5.0))
            .collect();
        let gateways = region_weights
            .iter()
            .map(|w| 3 + (w / 2.0) as usize)
            .collect();
        // Models in a fixed order: the config's table is sorted by name.
        let models: Vec<String> = config.models.keys().cloned().collect();
        let model_battery = config.models.values().map(|m| m.battery).collect();
        let model_weights: Vec<f64> = models
            .iter()
            .map(|m| weight_of(&MODEL_WEIGHTS, m, 10.0))
            .collect();
        let brick_model = models
            .iter()
            .position(|m| m.eq_ignore_ascii_case("SEN-100"))
            .or_else(|| config.models.values().position(|m| !m.dual_bank))
            .unwrap_or(0);
        let weak_region = weak_region(config);
        let mut plan = FleetPlan {
            region_cdf: cdf(&region_weights),
            region_weights,
            regions,
            gateway_names: Vec::new(),
            gateways,
            model_cdf: cdf(&model_weights),
            model_slugs: models.iter().map(|m| id_slug(m, 48)).collect(),
            models,
            model_battery,
            firmware_cdf: cdf(&FIRMWARE_FROM.map(|(_, w)| w)),
            weak_region,
            degraded_region: 0,
            degraded_gateway: 0,
            brick_model,
        };
        plan.degraded_region = degraded_region(&plan);
        plan.degraded_gateway = 6.min(plan.gateways[plan.degraded_region] - 1);
        plan.gateway_names = (0..plan.regions.len())
            .map(|r| {
                (0..plan.gateways[r])
                    .map(|g| plan.gateway_name(r, g))
                    .collect()
            })
            .collect();
        plan
    }

    /// `gw-<region>-NN`, the region as [`id_slug`] spells it.
    fn gateway_name(&self, region: usize, gateway: usize) -> String {
        let slug = id_slug(&self.regions[region], 56).to_ascii_lowercase();
        format!("gw-{slug}-{:02}", gateway + 1)
    }
}

/// The device state a device is generated to end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Healthy,
    Updating,
    Partial,
    RolledBack,
    Stalled,
    Bricked,
    Unreachable,
}

/// Why a device fails, which shapes its error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    None,
    Base,
    WeakSignal,
    Gateway,
    BrickCohort,
}

/// Column builders of one block; a block becomes one row group.
struct Block {
    device_id: StringChunkedBuilder,
    region: StringChunkedBuilder,
    hw_model: StringChunkedBuilder,
    gateway_id: StringChunkedBuilder,
    firmware_from: StringChunkedBuilder,
    firmware_target: StringChunkedBuilder,
    firmware_reported: StringChunkedBuilder,
    ota_status: StringChunkedBuilder,
    error_code: StringChunkedBuilder,
    download_pct: PrimitiveChunkedBuilder<Float64Type>,
    battery_pct: PrimitiveChunkedBuilder<Float64Type>,
    rssi_dbm: PrimitiveChunkedBuilder<Int32Type>,
    boot_failures: PrimitiveChunkedBuilder<Int32Type>,
    retry_count: PrimitiveChunkedBuilder<Int32Type>,
    update_started_at: PrimitiveChunkedBuilder<Int64Type>,
    last_heartbeat_at: PrimitiveChunkedBuilder<Int64Type>,
    reported_at: PrimitiveChunkedBuilder<Int64Type>,
    rows: usize,
}

/// firmware_reported: the old image or the target.
const REPORTED_FROM: u8 = 0;
const REPORTED_TARGET: u8 = 1;

/// The statuses and error codes the generator draws, by short name.
const QUEUED: OtaStatus = OtaStatus::Queued;
const DOWNLOADING: OtaStatus = OtaStatus::Downloading;
const INSTALLING: OtaStatus = OtaStatus::Installing;
const SUCCEEDED: OtaStatus = OtaStatus::Succeeded;
const FAILED: OtaStatus = OtaStatus::Failed;
const ROLLED_BACK: OtaStatus = OtaStatus::RolledBack;
const TIMED_OUT: OtaStatus = OtaStatus::TimedOut;
const E_DOWNLOAD_TIMEOUT: ErrorCode = ErrorCode::DownloadTimeout;
const E_CHECKSUM_MISMATCH: ErrorCode = ErrorCode::ChecksumMismatch;
const E_SIGNATURE_INVALID: ErrorCode = ErrorCode::SignatureInvalid;
const E_INSUFFICIENT_STORAGE: ErrorCode = ErrorCode::InsufficientStorage;
const E_FLASH_WRITE: ErrorCode = ErrorCode::FlashWrite;
const E_POWER_LOSS: ErrorCode = ErrorCode::PowerLoss;
const E_BOOT_LOOP: ErrorCode = ErrorCode::BootLoop;

/// One report before it is pushed into the block.
struct Report {
    status: OtaStatus,
    error: Option<ErrorCode>,
    download: Option<f64>,
    reported_fw: Option<u8>,
    boot_failures: Option<i32>,
    retry_count: Option<i32>,
    heartbeat: Option<i64>,
    reported_at: i64,
}

struct DeviceGen<'a> {
    plan: &'a FleetPlan,
    rng: Pcg64Mcg,
    as_of: i64,
}

impl DeviceGen<'_> {
    fn u(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.u() < p
    }

    fn between(&mut self, low: i64, high: i64) -> i64 {
        self.rng.random_range(low..high)
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = 1.0 - self.u();
        let u2 = self.u();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn pct(&mut self, low: f64, high: f64) -> f64 {
        ((low + (high - low) * self.u()) * 10.0).round() / 10.0
    }

    fn retries(&mut self) -> i32 {
        let u = self.u();
        match u {
            _ if u < 0.35 => 0,
            _ if u < 0.55 => 1,
            _ if u < 0.70 => 2,
            _ if u < 0.80 => 3,
            _ if u < 0.88 => 4,
            _ => self.rng.random_range(5..9),
        }
    }

    fn outcome(
        &mut self,
        region: usize,
        gateway: Option<usize>,
        model: usize,
        fw: usize,
    ) -> (Outcome, Cause) {
        let plan = self.plan;
        if model == plan.brick_model && fw == BRICK_FIRMWARE && self.chance(0.30) {
            return (Outcome::Bricked, Cause::BrickCohort);
        }
        if region == plan.degraded_region
            && gateway == Some(plan.degraded_gateway)
            && self.chance(0.20)
        {
            let o = if self.chance(0.7) {
                Outcome::Partial
            } else {
                Outcome::Stalled
            };
            return (o, Cause::Gateway);
        }
        if region == plan.weak_region && self.chance(0.12) {
            let o = if self.chance(0.65) {
                Outcome::Partial
            } else {
                Outcome::Unreachable
            };
            return (o, Cause::WeakSignal);
        }
        if self.chance(0.009) {
            let u = self.u();
            let o = match u {
                _ if u < 0.32 => Outcome::Partial,
                _ if u < 0.54 => Outcome::RolledBack,
                _ if u < 0.74 => Outcome::Unreachable,
                _ if u < 0.88 => Outcome::Stalled,
                _ => Outcome::Bricked,
            };
            return (o, Cause::Base);
        }
        if self.chance(0.045) {
            (Outcome::Updating, Cause::None)
        } else {
            (Outcome::Healthy, Cause::None)
        }
    }

    /// The final report of a device in `outcome`, and when its update started.
    fn final_report(&mut self, outcome: Outcome, cause: Cause) -> (Report, i64) {
        let as_of = self.as_of;
        let reported_at = as_of - self.between(0, 10 * MINUTE);
        let mut started = as_of - self.between(30 * MINUTE, 46 * HOUR);
        let mut r = Report {
            status: SUCCEEDED,
            error: None,
            download: Some(100.0),
            reported_fw: Some(REPORTED_TARGET),
            boot_failures: Some(0),
            retry_count: Some(0),
            heartbeat: None,
            reported_at,
        };
        match outcome {
            Outcome::Healthy => self.outcome_healthy(&mut r, &mut started),
            Outcome::Updating => self.outcome_updating(&mut r),
            Outcome::Partial => self.outcome_partial(&mut r, cause),
            Outcome::RolledBack => self.outcome_rolled_back(&mut r),
            Outcome::Stalled => self.outcome_stalled(&mut r, &mut started),
            Outcome::Bricked => self.outcome_bricked(&mut r, cause),
            Outcome::Unreachable => self.outcome_unreachable(&mut r, cause),
        }
        (r, started)
    }

    /// A heartbeat within 6 hours before the report.
    fn fresh(&mut self, reported_at: i64) -> Option<i64> {
        Some(reported_at - self.between(0, 6 * HOUR))
    }

    /// A heartbeat 26 to 60 hours before the report, or none at all (15%).
    fn stale_heartbeat(&mut self, reported_at: i64) -> Option<i64> {
        if self.chance(0.15) {
            None
        } else {
            Some(reported_at - self.between(26 * HOUR, 60 * HOUR))
        }
    }

    /// The update succeeded and the device confirms the new image.
    fn outcome_healthy(&mut self, r: &mut Report, started: &mut i64) {
        *started = self.as_of - self.between(30 * MINUTE, 68 * HOUR);
        r.boot_failures = Some(if self.chance(0.9) {
            0
        } else {
            self.rng.random_range(1..3)
        });
        r.retry_count = Some(if self.chance(0.8) {
            0
        } else {
            self.rng.random_range(1..4)
        });
        r.heartbeat = self.fresh(r.reported_at);
    }

    /// Still on its way: queued, downloading, installing, or a success not yet confirmed.
    fn outcome_updating(&mut self, r: &mut Report) {
        r.reported_fw = Some(REPORTED_FROM);
        let u = self.u();
        if u < 0.25 {
            r.status = QUEUED;
            r.download = if self.chance(0.5) { Some(0.0) } else { None };
        } else if u < 0.65 {
            r.status = DOWNLOADING;
            r.download = Some(self.pct(1.0, 99.0));
        } else if u < 0.85 {
            r.status = INSTALLING;
        } else {
            // Succeeded, not yet confirmed by the device.
            r.reported_fw = None;
        }
        r.heartbeat = self.fresh(r.reported_at);
    }

    /// Failed or timed out; the error follows the planted cause.
    fn outcome_partial(&mut self, r: &mut Report, cause: Cause) {
        r.reported_fw = Some(REPORTED_FROM);
        let (status, error, download) = match cause {
            Cause::WeakSignal => (
                if self.chance(0.6) { TIMED_OUT } else { FAILED },
                E_DOWNLOAD_TIMEOUT,
                self.pct(5.0, 95.0),
            ),
            Cause::Gateway if self.chance(0.6) => (FAILED, E_CHECKSUM_MISMATCH, 100.0),
            Cause::Gateway => (TIMED_OUT, E_DOWNLOAD_TIMEOUT, self.pct(5.0, 95.0)),
            _ => match self.rng.random_range(0..5) {
                0 => (TIMED_OUT, E_DOWNLOAD_TIMEOUT, self.pct(5.0, 95.0)),
                1 => (FAILED, E_CHECKSUM_MISMATCH, 100.0),
                2 => (FAILED, E_SIGNATURE_INVALID, 100.0),
                3 => (FAILED, E_INSUFFICIENT_STORAGE, self.pct(0.0, 100.0)),
                _ => (FAILED, E_POWER_LOSS, self.pct(10.0, 100.0)),
            },
        };
        r.status = status;
        r.error = Some(error);
        r.download = Some(download);
        r.boot_failures = Some(self.rng.random_range(0..3));
        r.retry_count = Some(self.retries());
        r.heartbeat = self.fresh(r.reported_at);
    }

    /// Rolled back, or a false success (booted back into the old image).
    fn outcome_rolled_back(&mut self, r: &mut Report) {
        r.reported_fw = Some(REPORTED_FROM);
        if self.chance(0.85) {
            r.status = ROLLED_BACK;
            r.error = match self.rng.random_range(0..3) {
                0 => None,
                1 => Some(E_SIGNATURE_INVALID),
                _ => Some(E_BOOT_LOOP),
            };
            r.boot_failures = Some(self.rng.random_range(0..3));
        }
        // else: a false success, the device booted back into the old image.
        r.retry_count = Some(self.retries());
        r.heartbeat = self.fresh(r.reported_at);
    }

    /// Queued, downloading or installing for longer than the campaign timeout.
    fn outcome_stalled(&mut self, r: &mut Report, started: &mut i64) {
        *started = self.as_of - self.between(49 * HOUR, 70 * HOUR);
        r.reported_fw = Some(REPORTED_FROM);
        match self.rng.random_range(0..3) {
            0 => {
                r.status = QUEUED;
                r.download = Some(0.0);
            }
            1 => {
                r.status = DOWNLOADING;
                r.download = Some(self.pct(1.0, 99.0));
            }
            _ => r.status = INSTALLING,
        }
        r.retry_count = Some(self.retries());
        r.heartbeat = self.fresh(r.reported_at);
    }

    /// Boot-looping, or silent after a full download while installing.
    fn outcome_bricked(&mut self, r: &mut Report, cause: Cause) {
        let boot_loop = cause == Cause::BrickCohort && self.chance(0.8) || self.chance(0.6);
        r.retry_count = Some(self.retries());
        if boot_loop {
            r.status = [FAILED, ROLLED_BACK, INSTALLING][self.rng.random_range(0..3)];
            r.error = Some(if self.chance(0.6) {
                E_BOOT_LOOP
            } else {
                E_FLASH_WRITE
            });
            r.boot_failures = Some(self.rng.random_range(3..13));
            r.reported_fw = if self.chance(0.5) {
                Some(REPORTED_FROM)
            } else {
                None
            };
            r.heartbeat = if self.chance(0.7) {
                self.fresh(r.reported_at)
            } else {
                self.stale_heartbeat(r.reported_at)
            };
        } else {
            // Went silent after the image was fully downloaded, while installing.
            r.status = [INSTALLING, FAILED, TIMED_OUT][self.rng.random_range(0..3)];
            r.error = match r.status {
                INSTALLING => None,
                _ if self.chance(0.5) => Some(E_POWER_LOSS),
                _ => Some(E_FLASH_WRITE),
            };
            r.boot_failures = if self.chance(0.5) {
                None
            } else {
                Some(self.rng.random_range(0..3))
            };
            r.reported_fw = None;
            r.heartbeat = Some(r.reported_at - self.between(26 * HOUR, 60 * HOUR));
        }
    }

    /// Silent: before the download finished, after a success, or after a rollback.
    fn outcome_unreachable(&mut self, r: &mut Report, cause: Cause) {
        r.retry_count = Some(self.retries());
        r.heartbeat = self.stale_heartbeat(r.reported_at);
        if self.chance(0.6) || cause == Cause::WeakSignal {
            // Silent before the image was fully downloaded.
            r.reported_fw = Some(REPORTED_FROM);
            match self.rng.random_range(0..3) {
                0 => {
                    r.status = QUEUED;
                    r.download = None;
                }
                1 => {
                    r.status = DOWNLOADING;
                    r.download = Some(self.pct(1.0, 99.0));
                }
                _ => {
                    r.status = TIMED_OUT;
                    r.error = Some(E_DOWNLOAD_TIMEOUT);
                    r.download = Some(self.pct(1.0, 99.0));
                }
            }
        } else if self.chance(0.7) {
            // Reported success, then never confirmed the new image.
            r.reported_fw = None;
        } else {
            r.status = ROLLED_BACK;
            r.reported_fw = Some(REPORTED_FROM);
        }
    }

    /// The device's earlier progress snapshots, oldest first.
    fn snapshots(&mut self, count: usize, started: i64, last: &Report) -> Vec<Report> {
        let gap = last.reported_at - started;
        let mut fracs: Vec<f64> = (0..count).map(|_| 0.05 + 0.85 * self.u()).collect();
        fracs.sort_by(f64::total_cmp);
        let mut download = 0.0;
        fracs
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let at = started + (gap as f64 * f) as i64 + i as i64;
                let (status, dl) = if i == 0 && self.chance(0.5) {
                    (QUEUED, Some(0.0))
                } else {
                    download = self.pct(download + 1.0, 99.0).max(download + 0.1).min(99.9);
                    (DOWNLOADING, Some(download))
                };
                Report {
                    status,
                    error: None,
                    download: dl,
                    reported_fw: Some(REPORTED_FROM),
                    boot_failures: Some(0),
                    retry_count: Some(last.retry_count.unwrap_or(0).min(i as i32)),
                    heartbeat: Some(at - self.between(0, 5 * MINUTE)),
                    reported_at: at,
                }
            })
            .collect()
    }
}

impl Block {
    fn new(capacity: usize) -> Block {
        let text = |name: &str| StringChunkedBuilder::new(name.into(), capacity);
        Block {
            device_id: text(schema::DEVICE_ID),
            region: text(schema::REGION),
            hw_model: text(schema::HW_MODEL),
            gateway_id: text(schema::GATEWAY_ID),
            firmware_from: text(schema::FIRMWARE_FROM),
            firmware_target: text(schema::FIRMWARE_TARGET),
            firmware_reported: text(schema::FIRMWARE_REPORTED),
            ota_status: text(schema::OTA_STATUS),
            error_code: text(schema::ERROR_CODE),
            download_pct: PrimitiveChunkedBuilder::new(schema::DOWNLOAD_PCT.into(), capacity),
            battery_pct: PrimitiveChunkedBuilder::new(schema::BATTERY_PCT.into(), capacity),
            rssi_dbm: PrimitiveChunkedBuilder::new(schema::RSSI_DBM.into(), capacity),
            boot_failures: PrimitiveChunkedBuilder::new(schema::BOOT_FAILURES.into(), capacity),
            retry_count: PrimitiveChunkedBuilder::new(schema::RETRY_COUNT.into(), capacity),
            update_started_at: PrimitiveChunkedBuilder::new(
                schema::UPDATE_STARTED_AT.into(),
                capacity,
            ),
            last_heartbeat_at: PrimitiveChunkedBuilder::new(
                schema::LAST_HEARTBEAT_AT.into(),
                capacity,
            ),
            reported_at: PrimitiveChunkedBuilder::new(schema::REPORTED_AT.into(), capacity),
            rows: 0,
        }
    }

    /// The block as a DataFrame in the canonical schema.
    fn finish(self) -> PolarsResult<DataFrame> {
        let time = |b: PrimitiveChunkedBuilder<Int64Type>| {
            b.finish()
                .into_datetime(TimeUnit::Microseconds, None)
                .into_column()
        };
        let columns = vec![
            self.device_id.finish().into_column(),
            self.region.finish().into_column(),
            self.hw_model.finish().into_column(),
            self.gateway_id.finish().into_column(),
            self.firmware_from.finish().into_column(),
            self.firmware_target.finish().into_column(),
            self.firmware_reported.finish().into_column(),
            self.ota_status.finish().into_column(),
            self.error_code.finish().into_column(),
            self.download_pct.finish().into_column(),
            self.battery_pct.finish().into_column(),
            self.rssi_dbm.finish().into_column(),
            self.boot_failures.finish().into_column(),
            self.retry_count.finish().into_column(),
            time(self.update_started_at),
            time(self.last_heartbeat_at),
            time(self.reported_at),
        ];
        DataFrame::new(self.rows, columns)
    }
}

/// Builds the reports of devices `first..first + count`, which form block `block`.
fn build_block(
    plan: &FleetPlan,
    seed: u64,
    as_of: i64,
    block: u64,
    first: u64,
    count: u64,
) -> PolarsResult<DataFrame> {
    let mut g = DeviceGen {
        plan,
        rng: Pcg64Mcg::seed_from_u64(mix(seed, block)),
        as_of,
    };
    let mut out = Block::new((count as usize) * 115 / 100 + 16);
    let mut id = String::with_capacity(32);
    for index in first..first + count {
        let region = pick(&plan.region_cdf, g.u());
        let model = pick(&plan.model_cdf, g.u());
        let fw = pick(&plan.firmware_cdf, g.u());
        let gateway = if g.chance(0.03) {
            None
        } else {
            Some(g.rng.random_range(0..plan.gateways[region]))
        };
        let battery = if plan.model_battery[model] {
            Some(if g.chance(0.12) {
                g.pct(3.0, 25.0)
            } else {
                g.pct(25.0, 100.0)
            })
        } else {
            None
        };
        let rssi = if g.chance(0.03) {
            None
        } else if region == plan.weak_region {
            Some(g.normal(-103.0, 7.0).round().clamp(-135.0, -70.0) as i32)
        } else {
            Some(g.normal(-78.0, 10.0).round().clamp(-125.0, -40.0) as i32)
        };
        let (outcome, cause) = g.outcome(region, gateway, model, fw);
        let (last, started) = g.final_report(outcome, cause);
        let extra = match g.u() {
            u if u < 0.07 => 1,
            u if u < 0.10 => 2,
            _ => 0,
        };
        let mut reports = g.snapshots(extra, started, &last);
        // Exports are not always in time order: a third of them list the final report first.
        if extra > 0 && g.chance(0.3) {
            reports.insert(0, last);
        } else {
            reports.push(last);
        }
        id.clear();
        write_device_id(&mut id, &plan.model_slugs[model], index);
        let gateway_name = gateway.map(|gw| plan.gateway_names[region][gw].as_str());
        let fw_from = FIRMWARE_FROM[fw].0;
        for r in reports {
            out.rows += 1;
            out.device_id.append_value(&id);
            out.region.append_value(&plan.regions[region]);
            out.hw_model.append_value(&plan.models[model]);
            out.gateway_id.append_option(gateway_name);
            out.firmware_from.append_value(fw_from);
            out.firmware_target.append_value(FIRMWARE_TARGET);
            out.firmware_reported.append_option(r.reported_fw.map(|f| {
                if f == REPORTED_TARGET {
                    FIRMWARE_TARGET
                } else {
                    fw_from
                }
            }));
            out.ota_status.append_value(r.status.as_str());
            out.error_code.append_option(r.error.map(ErrorCode::as_str));
            out.download_pct.append_option(r.download);
            out.battery_pct.append_option(battery);
            out.rssi_dbm.append_option(rssi);
            // A report always carries some signal: the bootloader's boot counter at least.
            let silent = r.download.is_none()
                && battery.is_none()
                && rssi.is_none()
                && r.heartbeat.is_none()
                && r.reported_fw.is_none();
            out.boot_failures.append_option(if silent {
                Some(r.boot_failures.unwrap_or(0))
            } else {
                r.boot_failures
            });
            out.retry_count.append_option(r.retry_count);
            out.update_started_at.append_value(started);
            out.last_heartbeat_at.append_option(r.heartbeat);
            out.reported_at.append_value(r.reported_at);
        }
    }
    out.finish()
}

/// A configured name as it may appear inside an id (`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`): other
/// characters become `-`, a name that does not start with a letter or digit gets an `x` in front,
/// and it is cut to `max` characters. Regions and models of any spelling still give valid ids.
fn id_slug(name: &str, max: usize) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '.' | ':' | '-' => c,
            _ => '-',
        })
        .collect();
    if !slug.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        slug.insert(0, 'x');
    }
    slug.chars().take(max).collect()
}

/// A unique, random-looking id per device index: the model and a 48-bit bijective scramble.
fn write_device_id(out: &mut String, model: &str, index: u64) {
    use std::fmt::Write;
    let serial = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF;
    write!(out, "{model}-{serial:012X}").expect("writing to a String");
}

/// Writes the fleet's telemetry to `opts.out`. `progress` is called with the number of devices
/// written so far after each row group.
///
/// Blocks are built and encoded on worker threads and written in order (`parallel::ordered`).
pub fn generate(
    config: &Config,
    opts: &GenerateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<GenerateSummary> {
    if opts.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let started = Instant::now();
    let plan = FleetPlan::new(config);
    let file = AtomicFile::create(&opts.out)?;
    let writer = parquet::Writer::new(file.file(), &schema::canonical_schema(), parquet::KEPT)
        .with_context(|| format!("starting {}", opts.out.display()))?;
    let blocks = opts.devices.div_ceil(BLOCK);
    let mut rows = 0u64;
    parallel::ordered(
        blocks,
        |b| {
            let first = b * BLOCK;
            let count = BLOCK.min(opts.devices - first);
            let df = build_block(&plan, opts.seed, opts.as_of_us, b, first, count)?;
            writer
                .encode(&df)
                .with_context(|| format!("encoding {}", opts.out.display()))
        },
        |b, group| {
            rows += group.rows as u64;
            writer
                .write(group)
                .with_context(|| format!("writing {}", opts.out.display()))?;
            progress(((b + 1) * BLOCK).min(opts.devices));
            Ok(())
        },
    )?;
    writer
        .finish()
        .with_context(|| format!("finishing {}", opts.out.display()))?;
    drop(writer);
    file.commit()?;
    Ok(GenerateSummary {
        devices: opts.devices,
        rows,
        path: opts.out.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
