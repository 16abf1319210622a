//! `run`: the gauntlet, every stage in order with one as-of; the rollout gate decides the exit
//! code with --fail-on-halt.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Output, now_whole_seconds};
use crate::analytics::{self, Session};
use crate::chaos::{self, ChaosOptions};
use crate::cli::RunArgs;
use crate::config::Config;
use crate::generate::{self, GenerateOptions};
use crate::recover::{self, RecoverOptions};
use crate::report;
use crate::support::parallel;
use crate::workspace::Workspace;

/// What `run` did, step by step.
#[derive(Serialize)]
struct RunSummary {
    generate: generate::GenerateSummary,
    chaos: chaos::ChaosSummary,
    recover: recover::RecoverSummary,
    gate: Vec<GateRow>,
    halted_regions: Vec<String>,
    report: report::ReportSummary,
    exit_code: u8,
}

#[derive(Serialize)]
struct GateRow {
    region: String,
    devices: u64,
    failure_rate: f64,
    decision: String,
}

/// `run`: every stage in order with one as-of, on the workdir's default paths.
pub(super) fn run(config: &Config, ws: &Workspace, out: &Output, args: RunArgs) -> Result<u8> {
    let as_of_us = args.as_of.unwrap_or_else(now_whole_seconds);
    let generate_opts = GenerateOptions {
        devices: args.fleet.devices,
        seed: args.fleet.seed,
        as_of_us,
        out: ws.raw_telemetry(),
    };
    let chaos_opts = ChaosOptions {
        input: ws.raw_telemetry(),
        out: ws.chaos_telemetry(),
        log: ws.chaos_log(),
        rate: args.chaos_rate,
        seed: args.fleet.seed,
    };
    let generated = super::generate::step(config, &generate_opts, out)?;
    out.step(|| super::generate::text(&generated));
    let chaos = super::chaos::step(&chaos_opts, out)?;
    out.step(|| super::chaos::text(&chaos));
    let recover_opts = RecoverOptions {
        inputs: vec![ws.chaos_telemetry()],
        as_of_us,
        bucket_rows: recover::BUCKET_ROWS,
        memory_rows: recover::MEMORY_ROWS,
        skip_unknown: false,
        shard: None,
    };
    let recovered = super::recover::step(config, &recover_opts, ws, out)?;
    out.step(|| super::recover::text(&recovered));

    // analyze: the rollout gate of this run decides the exit code.
    let gate_table = {
        let session = Session::open(ws, Some(&recovered.run_id), parallel::threads())?;
        session.builtin(analytics::builtin("rollout_gate").context("the rollout_gate query")?)?
    };
    let col = |name: &str| gate_table.column(name);
    let (region, devices_col, rate_col, decision) = (
        col("region")?,
        col("devices")?,
        col("failure_rate")?,
        col("decision")?,
    );
    let gate: Vec<GateRow> = gate_table
        .rows
        .iter()
        .map(|r| GateRow {
            region: r[region].text(),
            devices: r[devices_col].as_f64().unwrap_or(0.0) as u64,
            failure_rate: r[rate_col].as_f64().unwrap_or(0.0),
            decision: r[decision].text(),
        })
        .collect();
    let halted = crate::vocab::halted_regions(
        gate.iter()
            .map(|g| (g.region.as_str(), g.decision.as_str())),
    );

    let reported = super::report::step(ws, Some(&recovered.run_id), out)?;
    let exit_code = if args.fail_on_halt && !halted.is_empty() {
        3
    } else {
        0
    };
    let summary = RunSummary {
        generate: generated,
        chaos,
        recover: recovered,
        gate,
        halted_regions: halted,
        report: reported,
        exit_code,
    };
    out.summary(&summary, || {
        let gate: Vec<String> = summary
            .gate
            .iter()
            .map(|g| {
                format!(
                    "{} {} ({:.1}%)",
                    g.region,
                    g.decision,
                    100.0 * g.failure_rate
                )
            })
            .collect();
        let mut text = format!(
            "rollout gate: {}\nreport: {}",
            gate.join(", "),
            Path::new(&summary.report.dir).join("report.html").display()
        );
        if !summary.halted_regions.is_empty() {
            text.push_str(&format!(
                "\nHALT: {}{}",
                summary.halted_regions.join(", "),
                if exit_code == 3 {
                    " (exit code 3: --fail-on-halt)"
                } else {
                    ""
                }
            ));
        }
        text
    })?;
    Ok(exit_code)
}
