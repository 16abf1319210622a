//! Sentinel: a batch engine for a fleet's telemetry after a firmware (OTA) campaign.
//!
//! ```text
//! generate ──> raw Parquet ──> chaos ──> corrupted Parquet (+ chaos log)
//!                                             │
//! recover:  ingest ─> sanitize (normalize, validate, triage) ─> classify (latest report, state,
//!           action, cost) ─> stage Parquet + recovery plan ─> warehouse (DuckDB, one transaction)
//! scale-out: partition (inputs ─> shard=K/ by device) ─> recover --shard K/N (anywhere, any
//!           order) ─> merge (checks the N manifests, publishes one run)
//! analyze:  analytics (queries/*.sql on a read-only, sandboxed DuckDB session)
//! report:   charts (PNG, SVG) + report.html / report.md / summary.json (reports/ templates)
//! ```
//!
//! Modules in the order data flows. Stages never call each other: they meet through the column
//! contract (`schema`, `vocab`), the files `workspace` names, and small summary structs. Only
//! `cmd` knows which stage runs when.

// The contract every stage shares.
pub mod config;
pub mod schema;
pub mod vocab;
pub mod workspace;

// The stages, in pipeline order.
pub mod analytics;
pub mod chaos;
pub mod generate;
pub mod recover;
pub mod report;
pub mod warehouse;

// The command line: flags, then one thin file per command.
pub mod cli;
pub mod cmd;

// Helpers shared by several stages.
pub mod support;
