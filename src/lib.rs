//! Sentinel: a batch engine for a fleet's telemetry after a firmware (OTA) campaign.
//!
//! ```text
//! generate ──> raw Parquet ──> chaos ──> corrupted Parquet (+ chaos log)
//!                                             │
//! recover:  ingest ─> sanitize (normalize, validate, triage) ─> classify (latest report, state,
//!           action, cost) ─> stage Parquet + recovery plan ─> warehouse (DuckDB, one transaction)
//! scale-out: partition (inputs ─> shard=K/ by device) ─> recover --shard K/N (anywhere, any
//!           order) ─> merge (checks the N manifests, publishes one run)
//! analyze:  analytics (queries/*.sql on a read-only DuckDB session)
//! ```
//!
//! Modules in the order data flows. Stages never call each other: they meet through the column
//! contract (`schema`), the files `workspace` names, and small summary structs. Only `commands`
//! knows which stage runs when.

pub mod analytics;
pub mod chaos;
pub mod charts;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod config;
pub mod generate;
pub mod ingest;
pub mod parallel;
pub mod parquet;
pub mod recover;
pub mod report;
pub mod sanitize;
pub mod schema;
pub mod shard;
pub mod vocab;
pub mod warehouse;
pub mod workspace;
