//! Sentinel: a batch engine for a fleet's telemetry after a firmware (OTA) campaign.
//!
//! ```text
//! generate ──> raw Parquet ──> chaos ──> corrupted Parquet (+ chaos log)
//! ```
//!
//! Modules in the order data flows. Stages never call each other: they meet through the column
//! contract (`schema`), the files `workspace` names, and small summary structs. Only `commands`
//! knows which stage runs when.

pub mod chaos;
pub mod cli;
pub mod commands;
pub mod config;
pub mod generate;
pub mod parallel;
pub mod parquet;
pub mod schema;
pub mod workspace;
