//! Configuration (SPEC section 6): built-in defaults, overridden by a TOML file, validated once into
//! one `Config` that every stage takes by reference.
//!
//! A file overrides field by field: `[thresholds] max_retries = 3` changes that one value and keeps
//! every other default. Lists and the `[models]` table are replaced whole when given, because a
//! merged list could never drop a region. Unknown keys and wrongly typed values are errors that name
//! the key (serde's `deny_unknown_fields`, reported through toml's span-carrying errors).

use crate::vocab::Action;
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::schema::fold;

/// The validated, effective configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Regions of the fleet, in display order.
    pub regions: Vec<String>,
    /// Hardware models by name.
    pub models: BTreeMap<String, Model>,
    pub thresholds: Thresholds,
    /// Cost of each recovery action, in USD.
    pub costs_usd: Costs,
    pub gate: Gate,
}

/// What the classifier needs to know of a hardware model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Two firmware banks: a bricked device can be rolled back remotely.
    pub dual_bank: bool,
    /// Battery powered (otherwise mains powered, battery_pct is null).
    pub battery: bool,
}

/// Thresholds of the state and action rules (SPEC section 5).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// A device whose last heartbeat is older than this (hours before as_of) is stale.
    pub heartbeat_timeout_hours: f64,
    /// An update still queued/downloading/installing after this many hours is STALLED.
    pub campaign_timeout_hours: f64,
    /// This many boot failures or more means BRICKED.
    pub brick_boot_failures: i64,
    /// A retry needs at least this battery level (percent), unless mains powered.
    pub min_battery_pct: f64,
    /// A retry needs at least this signal (dBm), when reported.
    pub min_rssi_dbm: i64,
    /// Retries at or above this count escalate instead of retrying.
    pub max_retries: i64,
}

/// Cost of each action, in USD.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct Costs {
    pub NONE: f64,
    pub WAIT: f64,
    pub RETRY_OTA: f64,
    pub DEFER: f64,
    pub REMOTE_ROLLBACK: f64,
    pub ESCALATE: f64,
    pub FIELD_SERVICE: f64,
    pub RMA: f64,
}

/// The rollout gate and the analytics' noise floors (SPEC section 8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gate {
    /// A region above this failure rate (with enough devices) is HALT.
    pub halt_failure_rate: f64,
    /// A region needs this many devices before it can be HALT.
    pub gate_min_devices: i64,
    /// Cohorts smaller than this are left out of the bottleneck ranking.
    pub min_cohort: i64,
}

impl Default for Config {
    fn default() -> Self {
        let regions = [
            "us-east",
            "us-west",
            "ca-central",
            "sa-east",
            "eu-west",
            "eu-central",
            "eu-north",
            "me-central",
            "af-south",
            "ap-south",
            "ap-southeast",
            "ap-northeast",
        ];
        let models = [
            ("SEN-100", false, true),
            ("SEN-200", true, true),
            ("GW-500", true, false),
            ("CAM-300", false, false),
            ("THERM-10", false, true),
        ];
        Config {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            models: models
                .iter()
                .map(|&(name, dual_bank, battery)| (name.to_string(), Model { dual_bank, battery }))
                .collect(),
            thresholds: Thresholds::default(),
            costs_usd: Costs::default(),
            gate: Gate::default(),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            heartbeat_timeout_hours: 24.0,
            campaign_timeout_hours: 48.0,
            brick_boot_failures: 3,
            min_battery_pct: 25.0,
            min_rssi_dbm: -105,
            max_retries: 5,
        }
    }
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            NONE: 0.0,
            WAIT: 0.0,
            RETRY_OTA: 0.02,
            DEFER: 0.02,
            REMOTE_ROLLBACK: 0.10,
            ESCALATE: 40.0,
            FIELD_SERVICE: 350.0,
            RMA: 600.0,
        }
    }
}

impl Costs {
    /// Each action and its cost.
    pub fn by_action(&self) -> [(Action, f64); 8] {
        [
            (Action::None, self.NONE),
            (Action::Wait, self.WAIT),
            (Action::RetryOta, self.RETRY_OTA),
            (Action::Defer, self.DEFER),
            (Action::RemoteRollback, self.REMOTE_ROLLBACK),
            (Action::Escalate, self.ESCALATE),
            (Action::FieldService, self.FIELD_SERVICE),
            (Action::Rma, self.RMA),
        ]
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            halt_failure_rate: 0.05,
            gate_min_devices: 100,
            min_cohort: 30,
        }
    }
}

impl Config {
    /// The built-in defaults, or the defaults overridden by the TOML file at `path`.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("in config file {}", path.display()))
    }

    /// Parses and validates TOML overrides of the defaults.
    pub fn from_toml(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// The effective configuration as TOML; reading it back gives the same `Config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serializes")
    }

    /// The configured spelling of `name` among the regions, compared caselessly.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        let name = fold(name);
        self.regions.iter().position(|r| fold(r) == name)
    }

    fn validate(&self) -> Result<()> {
        if self.regions.is_empty() {
            bail!("key `regions`: at least one region is required");
        }
        for (i, r) in self.regions.iter().enumerate() {
            if r.trim() != r || r.is_empty() {
                bail!("key `regions`: {r:?} is empty or has surrounding whitespace");
            }
            if self.regions[..i].iter().any(|o| fold(o) == fold(r)) {
                bail!("key `regions`: {r:?} is listed twice (regions compare caselessly)");
            }
        }
        if self.models.is_empty() {
            bail!("key `models`: at least one hardware model is required");
        }
        let names: Vec<&String> = self.models.keys().collect();
        for (i, m) in names.iter().enumerate() {
            if m.trim() != m.as_str() || m.is_empty() {
                bail!("key `models`: {m:?} is empty or has surrounding whitespace");
            }
            if names[..i].iter().any(|o| fold(o) == fold(m)) {
                bail!("key `models`: {m:?} is listed twice (models compare caselessly)");
            }
        }
        let t = &self.thresholds;
        positive(
            "thresholds.heartbeat_timeout_hours",
            t.heartbeat_timeout_hours,
        )?;
        positive(
            "thresholds.campaign_timeout_hours",
            t.campaign_timeout_hours,
        )?;
        within(
            "thresholds.brick_boot_failures",
            t.brick_boot_failures as f64,
            1.0,
            1000.0,
        )?;
        within("thresholds.min_battery_pct", t.min_battery_pct, 0.0, 100.0)?;
        within(
            "thresholds.min_rssi_dbm",
            t.min_rssi_dbm as f64,
            -140.0,
            0.0,
        )?;
        within("thresholds.max_retries", t.max_retries as f64, 0.0, 1000.0)?;
        for (key, v) in self.costs_usd.by_action() {
            within(&format!("costs_usd.{key}"), v, 0.0, 1e9)?;
        }
        let g = &self.gate;
        within("gate.halt_failure_rate", g.halt_failure_rate, 0.0, 1.0)?;
        within(
            "gate.gate_min_devices",
            g.gate_min_devices as f64,
            0.0,
            1e12,
        )?;
        within("gate.min_cohort", g.min_cohort as f64, 1.0, 1e12)?;
        Ok(())
    }
}

fn within(key: &str, value: f64, low: f64, high: f64) -> Result<()> {
    if !(low..=high).contains(&value) {
        bail!("key `{key}`: {value} is outside [{low}, {high}]");
    }
    Ok(())
}

fn positive(key: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        bail!("key `{key}`: {value} must be a positive number of hours");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_toml_round_trips() {
        let c = Config::default();
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn a_partial_file_overrides_only_its_keys() {
        let c =
            Config::from_toml("[thresholds]\nmax_retries = 3\n[gate]\nmin_cohort = 50\n").unwrap();
        assert_eq!(c.thresholds.max_retries, 3);
        assert_eq!(c.thresholds.brick_boot_failures, 3);
        assert_eq!(c.gate.min_cohort, 50);
        assert_eq!(c.gate.halt_failure_rate, 0.05);
        assert_eq!(c.regions.len(), 12);
        assert_eq!(c.models.len(), 5);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| format!("{:#}", Config::from_toml(t).unwrap_err());
        assert!(err("[gate]\nhalt_rate = 0.1\n").contains("halt_rate"));
        assert!(err("[gate]\nhalt_failure_rate = \"high\"\n").contains("halt_failure_rate"));
        assert!(err("[gate]\nhalt_failure_rate = 1.5\n").contains("gate.halt_failure_rate"));
        assert!(err("bogus = 1\n").contains("bogus"));
        assert!(err("regions = [\"a\", \"A\"]\n").contains("regions"));
        assert!(err("[thresholds\n").contains("TOML parse error"));
    }
}
